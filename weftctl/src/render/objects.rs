//! `weftctl get`'s tables: kubectl's columns for each kind, from the
//! objects' Kubernetes JSON (as the control plane sends them).
//!
//! Contract: [`objects_table`] never fails: an object whose JSON does not
//! decode as its kind gets a row with its name and `<unreadable>`. Columns
//! follow `kubectl get` (plus `-o wide`'s extra ones), with a leading
//! NAMESPACE column for `-A`; AGE is counted from `metadata.creationTimestamp`
//! to `now_unix`.

use std::collections::BTreeMap;
use std::time::Duration;

use weft_objects::values::ServiceType;
use weft_objects::{EndpointSlice, Kind, Namespace, NetworkPolicy, Pod, Service};
use weft_proto::v1;

use super::table;
use crate::duration;

/// The table of `objects` (all of `kind`).
pub(crate) fn objects_table(
    kind: Kind,
    objects: &[v1::Object],
    wide: bool,
    all_namespaces: bool,
    now_unix: i64,
) -> String {
    let mut header: Vec<&str> = match kind {
        Kind::Namespace => vec!["NAME", "STATUS", "AGE"],
        Kind::Pod => vec!["NAME", "READY", "STATUS", "AGE"],
        Kind::Service => vec![
            "NAME",
            "TYPE",
            "CLUSTER-IP",
            "EXTERNAL-IP",
            "PORT(S)",
            "AGE",
        ],
        Kind::EndpointSlice => vec!["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        Kind::NetworkPolicy => vec!["NAME", "POD-SELECTOR", "AGE"],
        Kind::Node => vec!["NAME"],
    };
    if wide {
        match kind {
            Kind::Pod => header.extend(["IP", "NODE"]),
            Kind::Service => header.push("SELECTOR"),
            _ => {}
        }
    }
    let namespaced = all_namespaces && kind.namespaced();
    if namespaced {
        header.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = objects
        .iter()
        .map(|o| {
            let mut row = row(kind, o, wide, now_unix).unwrap_or_else(|| {
                let mut r = vec![o.name.clone(), "<unreadable>".to_string()];
                r.resize(header.len() - usize::from(namespaced), String::new());
                r
            });
            if namespaced {
                row.insert(0, o.namespace.clone());
            }
            row
        })
        .collect();
    table(&header, &rows)
}

fn decode<T: serde::de::DeserializeOwned>(o: &v1::Object) -> Option<T> {
    serde_json::from_slice(&o.json).ok()
}

fn row(kind: Kind, o: &v1::Object, wide: bool, now: i64) -> Option<Vec<String>> {
    Some(match kind {
        Kind::Namespace => {
            let ns: Namespace = decode(o)?;
            let phase = ns.status.phase.as_ref().map(|p| p.to_string());
            vec![
                ns.metadata.name,
                phase.unwrap_or_else(|| "Active".into()),
                age(ns.metadata.creation_timestamp.as_deref(), now),
            ]
        }
        Kind::Pod => {
            let p: Pod = decode(o)?;
            let total = p.spec.containers.len().max(1);
            let ready = if p.is_ready() { total } else { 0 };
            let phase = p.status.phase.as_ref().map(|p| p.to_string());
            let mut r = vec![
                p.metadata.name.clone(),
                format!("{ready}/{total}"),
                phase.unwrap_or_else(|| "Unknown".into()),
                age(p.metadata.creation_timestamp.as_deref(), now),
            ];
            if wide {
                let ips: Vec<String> = p.ips().iter().map(|ip| ip.to_string()).collect();
                r.push(none_if_empty(ips.join(",")));
                r.push(none_if_empty(p.spec.node_name.clone()));
            }
            r
        }
        Kind::Service => {
            let s: Service = decode(o)?;
            let mut r = vec![
                s.metadata.name.clone(),
                s.service_type().to_string(),
                none_if_empty(s.spec.cluster_ip.clone()),
                external_ip(&s),
                ports(&s),
                age(s.metadata.creation_timestamp.as_deref(), now),
            ];
            if wide {
                r.push(none_if_empty(selector_text(&s.spec.selector)));
            }
            r
        }
        Kind::EndpointSlice => {
            let es: EndpointSlice = decode(o)?;
            let ports: Vec<String> = es
                .ports
                .iter()
                .filter_map(|p| p.port.map(|n| n.to_string()))
                .collect();
            vec![
                es.metadata.name.clone(),
                es.address_type
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                if ports.is_empty() {
                    "<unset>".into()
                } else {
                    ports.join(",")
                },
                endpoints_text(&es),
                age(es.metadata.creation_timestamp.as_deref(), now),
            ]
        }
        Kind::NetworkPolicy => {
            let np: NetworkPolicy = decode(o)?;
            let sel = &np.spec.pod_selector;
            let mut parts: Vec<String> = sel
                .match_labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            parts.extend(
                sel.match_expressions
                    .iter()
                    .map(|e| format!("{} {} ({})", e.key, e.operator, e.values.join(","))),
            );
            vec![
                np.metadata.name.clone(),
                none_if_empty(parts.join(",")),
                age(np.metadata.creation_timestamp.as_deref(), now),
            ]
        }
        Kind::Node => vec![o.name.clone()],
    })
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

fn selector_text(sel: &BTreeMap<String, String>) -> String {
    sel.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// kubectl's EXTERNAL-IP column.
fn external_ip(s: &Service) -> String {
    let mut ips = s.spec.external_ips.clone();
    match s.service_type() {
        ServiceType::ExternalName => return none_if_empty(s.spec.external_name.clone()),
        ServiceType::LoadBalancer => {
            let mut lb: Vec<String> = s
                .status
                .load_balancer
                .ingress
                .iter()
                .map(|i| {
                    if i.ip.is_empty() {
                        i.hostname.clone()
                    } else {
                        i.ip.clone()
                    }
                })
                .collect();
            lb.append(&mut ips);
            if lb.is_empty() {
                return "<pending>".into();
            }
            return lb.join(",");
        }
        _ => {}
    }
    none_if_empty(ips.join(","))
}

/// kubectl's PORT(S) column: `80/TCP`, `80:30080/TCP`.
fn ports(s: &Service) -> String {
    let parts: Vec<String> = s
        .spec
        .ports
        .iter()
        .map(|p| {
            let proto = p
                .protocol
                .as_ref()
                .map(|p| p.to_string())
                .unwrap_or_else(|| "TCP".into());
            if p.node_port != 0 {
                format!("{}:{}/{proto}", p.port, p.node_port)
            } else {
                format!("{}/{proto}", p.port)
            }
        })
        .collect();
    none_if_empty(parts.join(","))
}

/// kubectl's ENDPOINTS column: the first three addresses, then `+ N more...`.
fn endpoints_text(es: &EndpointSlice) -> String {
    let all: Vec<&str> = es
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().map(String::as_str))
        .collect();
    if all.is_empty() {
        return "<none>".into();
    }
    let mut s = all.iter().take(3).copied().collect::<Vec<_>>().join(",");
    if all.len() > 3 {
        s.push_str(&format!(" + {} more...", all.len() - 3));
    }
    s
}

/// The AGE column: time since `created` (RFC 3339, UTC), or `<unknown>`.
pub(crate) fn age(created: Option<&str>, now_unix: i64) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => duration::human(Duration::from_secs(now_unix.saturating_sub(t).max(0) as u64)),
        None => "<unknown>".into(),
    }
}

/// Unix seconds of `YYYY-MM-DDTHH:MM:SSZ` (fractions and offsets other
/// than `Z` are not what the control plane writes; they yield `None`).
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[19] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, ns: &str, name: &str, json: serde_json::Value) -> v1::Object {
        v1::Object {
            kind: kind.into(),
            namespace: ns.into(),
            name: name.into(),
            revision: 1,
            json: serde_json::to_vec(&json).unwrap().into(),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(parse_rfc3339("2026-12-07T17:28:40Z"), Some(1_796_664_520));
        assert_eq!(parse_rfc3339("2026-13-07T17:28:40Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(age(Some("1970-01-01T00:00:00Z"), 90), "1m30s");
        assert_eq!(age(None, 90), "<unknown>");
    }

    #[test]
    fn service_columns() {
        let svc = obj(
            "Service",
            "shop",
            "web",
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "shop", "creationTimestamp": "1970-01-01T00:00:00Z"},
                "spec": {"type": "NodePort", "clusterIP": "10.96.3.4", "selector": {"app": "web"},
                         "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
        );
        let lb = obj(
            "Service",
            "shop",
            "lb",
            serde_json::json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "lb", "namespace": "shop"},
                "spec": {"type": "LoadBalancer", "clusterIP": "10.96.3.5", "ports": [{"port": 443, "nodePort": 31000}]}}),
        );
        let t = objects_table(Kind::Service, &[svc, lb], true, true, 10);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "NAMESPACE",
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE",
                "SELECTOR"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "shop",
                "web",
                "NodePort",
                "10.96.3.4",
                "<none>",
                "80:30080/TCP,53/UDP",
                "10s",
                "app=web"
            ]
        );
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            [
                "shop",
                "lb",
                "LoadBalancer",
                "10.96.3.5",
                "<pending>",
                "443:31000/TCP",
                "<unknown>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pods_slices_and_unreadable_rows() {
        let pod = obj(
            "Pod",
            "default",
            "p1",
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p1", "namespace": "default"},
                "spec": {"nodeName": "n1"},
                "status": {"phase": "Running", "podIP": "10.244.0.5",
                           "conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        let t = objects_table(Kind::Pod, &[pod], true, false, 0);
        assert_eq!(
            t.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["p1", "1/1", "Running", "<unknown>", "10.244.0.5", "n1"]
        );
        let es = obj(
            "EndpointSlice",
            "default",
            "web-abcde",
            serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-abcde", "namespace": "default"},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]},
                              {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}],
                "ports": [{"port": 8080}]}),
        );
        let t = objects_table(Kind::EndpointSlice, &[es], false, false, 0);
        assert!(t.contains("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."), "{t}");
        let bad = v1::Object {
            kind: "Service".into(),
            name: "x".into(),
            json: b"not json".to_vec().into(),
            ..Default::default()
        };
        let t = objects_table(Kind::Service, &[bad], false, false, 0);
        assert_eq!(
            t.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            ["x", "<unreadable>"]
        );
    }
}
