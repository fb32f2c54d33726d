//! The tables `weftctl lab up` and `weftctl lab status` print; the
//! connectivity matrix and summary are the shared ones of
//! [`super::check`].

use std::collections::BTreeMap;
use std::time::Duration;

use weft_agent_api::StatusResult;
use weft_lab::Cluster;

pub(crate) use super::check::{report, rtt_text};
use super::table;

/// NAME, POD CIDR, ENDPOINT, PEERS (with their last handshake), from each
/// agent's status (`None`: it did not answer).
pub(crate) fn nodes(
    cluster: &Cluster,
    statuses: &BTreeMap<String, Result<StatusResult, String>>,
) -> String {
    let rows: Vec<Vec<String>> = cluster
        .nodes()
        .iter()
        .map(|n| {
            let cidr = n
                .pod_cidr
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into());
            vec![
                n.name.clone(),
                cidr,
                n.endpoint.to_string(),
                peers(statuses.get(&n.name)),
            ]
        })
        .collect();
    table(&["NAME", "POD CIDR", "ENDPOINT", "PEERS"], &rows)
}

/// "n2 (handshake 1.2s ago), n3 (no handshake)".
pub(crate) fn peers(status: Option<&Result<StatusResult, String>>) -> String {
    match status {
        None => "-".into(),
        Some(Err(e)) => format!("(agent not answering: {e})"),
        Some(Ok(s)) => match &s.dataplane {
            None => format!(
                "(data plane down: {})",
                s.dataplane_error.as_deref().unwrap_or("no answer")
            ),
            Some(dp) if dp.peers.is_empty() => "(none)".into(),
            Some(dp) => {
                let mut peers: Vec<_> = dp.peers.iter().collect();
                peers.sort_by_key(|p| natural(&p.name));
                if peers.len() <= 3 {
                    return peers
                        .iter()
                        .map(|p| match p.last_handshake_ms {
                            Some(ms) => format!(
                                "{} (handshake {} ago)",
                                p.name,
                                age(Duration::from_millis(ms))
                            ),
                            None => format!("{} (no handshake)", p.name),
                        })
                        .collect::<Vec<_>>()
                        .join(", ");
                }
                let never: Vec<&str> = peers
                    .iter()
                    .filter(|p| p.last_handshake_ms.is_none())
                    .map(|p| p.name.as_str())
                    .collect();
                let latest = peers.iter().filter_map(|p| p.last_handshake_ms).min();
                let mut text = format!(
                    "{} peers, {} with a handshake",
                    peers.len(),
                    peers.len() - never.len()
                );
                if let Some(ms) = latest {
                    text.push_str(&format!(" (latest {} ago)", age(Duration::from_millis(ms))));
                }
                if !never.is_empty() {
                    text.push_str(&format!("; none yet with {}", never.join(", ")));
                }
                text
            }
        },
    }
}

/// Sorts `n2` before `n10`: the name's non-digit prefix, then its number.
fn natural(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (prefix, number) = name.split_at(name.len() - digits);
    (prefix.to_string(), number.parse().unwrap_or(0))
}

/// POD, NODE, IP.
pub(crate) fn pods(cluster: &Cluster) -> String {
    let rows: Vec<Vec<String>> = cluster
        .pods()
        .iter()
        .map(|p| vec![p.name.clone(), p.node.clone(), p.ip.to_string()])
        .collect();
    table(&["POD", "NODE", "IP"], &rows)
}

/// "0.4s", "12s", "3m5s".
pub(crate) fn age(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else {
        format!("{}h{}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut names = vec!["n10", "n2", "n1", "cp"];
        names.sort_by_key(|n| natural(n));
        assert_eq!(names, ["cp", "n1", "n2", "n10"]);
    }

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_millis(420)), "0.4s");
        assert_eq!(age(Duration::from_secs(75)), "1m15s");
    }
}
