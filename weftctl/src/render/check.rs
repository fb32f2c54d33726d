//! What a connectivity check prints, the same for the local lab and for
//! real hosts: the ✓/✗ matrix and a one-line summary.

use std::time::Duration;

use weft_lab::check::Connectivity;

use super::table::table;

/// Above this many pods and nodes, the matrix shows marks without RTTs.
const WIDE: usize = 12;

/// The whole report: a heading, the [`matrix`], the [`summary`].
pub(crate) fn report(c: &Connectivity) -> String {
    format!(
        "CONNECTIVITY (ICMP echo, mean round trip)\n{}\n{}\n",
        matrix(c),
        summary(c)
    )
}

/// The matrix: one row per source (pods, then nodes), one column per
/// destination (pods, then nodes' overlay addresses); `✓ RTT` (`✓` alone in
/// a big cluster) or `✗`, `-` for a pod or node to itself. Only sources
/// with checks get a row (one node's part has only that node's rows).
pub(crate) fn matrix(c: &Connectivity) -> String {
    let names = c.inventory.names();
    let mut header = vec!["FROM \\ TO"];
    header.extend(names.iter().copied());
    let rows: Vec<Vec<String>> = names
        .iter()
        .filter(|from| c.checks.is_empty() || c.checks.iter().any(|x| x.from == **from))
        .map(|from| {
            let mut row = vec![from.to_string()];
            row.extend(names.iter().map(|to| match c.get(from, to) {
                Some(check) if check.ok() => match check.stats.average() {
                    Some(rtt) if names.len() <= WIDE => format!("✓ {}", rtt_text(rtt)),
                    _ => "✓".into(),
                },
                Some(_) => "✗".into(),
                None if from == to => "-".into(),
                None => "·".into(),
            }));
            row
        })
        .collect();
    table(&header, &rows)
}

/// A one-line summary of the check, with the failures named.
pub(crate) fn summary(c: &Connectivity) -> String {
    let total = c.checks.len();
    let failed: Vec<String> = c
        .failures()
        .map(|f| {
            format!(
                "{} -> {} ({}, {})",
                f.from,
                f.to,
                f.to_ip,
                f.kind.describe()
            )
        })
        .collect();
    let mut rtts: Vec<Duration> = c
        .checks
        .iter()
        .flat_map(|x| x.stats.rtts.iter().copied())
        .collect();
    rtts.sort();
    let spread = match (rtts.first(), rtts.last()) {
        (Some(min), Some(max)) => {
            let n = u32::try_from(rtts.len()).unwrap_or(u32::MAX).max(1);
            let mean = rtts.iter().sum::<Duration>() / n;
            format!(
                " Round trips: min {}, mean {}, max {}.",
                rtt_text(*min),
                rtt_text(mean),
                rtt_text(*max)
            )
        }
        _ => String::new(),
    };
    let not_run = if c.not_run.is_empty() {
        String::new()
    } else {
        format!(" Not run: {}.", c.not_run.join("; "))
    };
    if total == 0 {
        "No pods, so nothing to check.".to_string()
    } else if failed.is_empty() && c.not_run.is_empty() {
        format!(
            "All {total} checks passed (pod to pod, pod to node, node to pod, node to node) in {:.1}s.{spread}",
            c.elapsed.as_secs_f64()
        )
    } else if failed.is_empty() {
        format!("Every check that ran passed, but some did not run.{not_run}")
    } else {
        format!(
            "{} of {total} checks FAILED: {}{not_run}",
            failed.len(),
            failed.join("; ")
        )
    }
}

/// "0.31ms", "4.2ms", "15ms".
pub(crate) fn rtt_text(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 0.1 {
        format!("{}µs", d.as_micros())
    } else if ms < 1.0 {
        format!("{ms:.2}ms")
    } else if ms < 10.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use weft_lab::check::{plan, Inventory, InventoryNode, InventoryPod};
    use weft_lab::PingStats;

    fn connectivity(ok: impl Fn(&str, &str) -> bool) -> Connectivity {
        let inventory = Inventory {
            nodes: vec![
                InventoryNode {
                    name: "n1".into(),
                    address: "10.244.1.1".parse().unwrap(),
                    netns: None,
                },
                InventoryNode {
                    name: "n2".into(),
                    address: "10.244.0.1".parse().unwrap(),
                    netns: None,
                },
            ],
            pods: vec![InventoryPod {
                name: "n1-p1".into(),
                node: "n1".into(),
                address: "10.244.1.2".parse().unwrap(),
                netns: PathBuf::from("/run/netns/n1-p1"),
            }],
        };
        let mut checks = plan(&inventory).unwrap();
        for c in &mut checks {
            if ok(&c.from, &c.to) {
                c.stats = PingStats {
                    sent: 3,
                    received: 3,
                    rtts: vec![Duration::from_micros(312); 3],
                };
            }
        }
        Connectivity {
            inventory,
            checks,
            elapsed: Duration::from_millis(400),
            not_run: vec![],
        }
    }

    #[test]
    fn the_matrix_and_the_summary() {
        let c = connectivity(|_, _| true);
        assert_eq!(
            matrix(&c),
            "FROM \\ TO  n1-p1     n1        n2\n\
             n1-p1      -         ✓ 0.31ms  ✓ 0.31ms\n\
             n1         ✓ 0.31ms  -         ✓ 0.31ms\n\
             n2         ✓ 0.31ms  ✓ 0.31ms  -\n"
        );
        assert_eq!(
            summary(&c),
            "All 6 checks passed (pod to pod, pod to node, node to pod, node to node) in 0.4s. \
             Round trips: min 0.31ms, mean 0.31ms, max 0.31ms."
        );
        let mut c = connectivity(|from, _| from != "n2");
        c.not_run = vec!["n2: ssh: connect to host 198.51.100.12 port 22: No route to host".into()];
        assert!(matrix(&c).ends_with("n2         ✗         ✗         -\n"));
        assert_eq!(
            summary(&c),
            "2 of 6 checks FAILED: n2 -> n1-p1 (10.244.1.2, node to pod); \
             n2 -> n1 (10.244.1.1, node to node) \
             Not run: n2: ssh: connect to host 198.51.100.12 port 22: No route to host."
        );
    }

    #[test]
    fn rtts() {
        assert_eq!(rtt_text(Duration::from_micros(312)), "0.31ms");
        assert_eq!(rtt_text(Duration::from_micros(42)), "42µs");
        assert_eq!(rtt_text(Duration::from_micros(4_210)), "4.2ms");
        assert_eq!(rtt_text(Duration::from_millis(15)), "15ms");
    }
}
