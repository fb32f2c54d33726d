//! A pod's cluster identity as `pod_add` carries it: its Kubernetes
//! namespace and name, labels and named ports, how the command lines spell
//! them (`--label k=v`, `--port http=8080/TCP`), and their validation.
//!
//! Contract:
//! - [`validate_pod_meta`] checks everything a `pod_add` says about the
//!   pod's identity with Kubernetes' rules (weft-objects' validators) and
//!   returns every problem, each naming the request field and quoting the
//!   value as the API server would (`labels: Invalid value: "-x": name part
//!   must consist of ...`). It never panics, whatever the input.
//! - A pod with a `pod_name` belongs to the cluster under
//!   `(pod_namespace or "default", pod_name)`: the agent registers it with
//!   the control plane. Labels and ports need a `pod_name`.
//! - [`parse_label`] and [`NamedPort::parse`] read the command-line
//!   spellings; their errors say what was expected.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use weft_objects::field::{FieldError, FieldPath};
use weft_objects::names::{is_dns1123_label, is_dns1123_subdomain, is_port_name, is_port_num};
use weft_objects::validation::validate_labels;

/// The namespace of a pod whose `pod_add` names none.
pub const DEFAULT_POD_NAMESPACE: &str = "default";

/// The protocols a pod port may have (weft serves TCP and UDP).
pub const PORT_PROTOCOLS: &[&str] = &["TCP", "UDP"];

/// At most this many labels on one pod.
pub const MAX_LABELS: usize = 64;

/// At most this many ports on one pod.
pub const MAX_PORTS: usize = 64;

/// A named container port of a pod: what a Service's named `targetPort`
/// and a NetworkPolicy's named port resolve to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedPort {
    /// The port's name (an IANA service name: `http`, `metrics`); may be
    /// empty for a port that has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The port number, 1 to 65535.
    pub port: u32,
    /// `TCP` or `UDP`; `TCP` if absent.
    #[serde(default = "tcp")]
    pub protocol: String,
}

fn tcp() -> String {
    "TCP".to_string()
}

impl NamedPort {
    /// Reads `[NAME=]PORT[/PROTOCOL]` (`http=8080/TCP`, `dns=53/UDP`,
    /// `9090`), the spelling of `--port`. The protocol is case-insensitive
    /// and defaults to TCP. The result is not validated further (see
    /// [`validate_pod_meta`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = "expected [NAME=]PORT[/PROTOCOL], e.g. http=8080/TCP";
        let (name, rest) = match text.split_once('=') {
            Some((name, rest)) => (name, rest),
            None => ("", text),
        };
        let (number, protocol) = match rest.split_once('/') {
            Some((n, p)) => (n, p.to_ascii_uppercase()),
            None => (rest, tcp()),
        };
        let port = number
            .parse::<u32>()
            .map_err(|_| format!("port {text:?}: {number:?} is not a port number; {usage}"))?;
        Ok(NamedPort {
            name: name.to_string(),
            port,
            protocol,
        })
    }
}

impl fmt::Display for NamedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.name.is_empty() {
            write!(f, "{}=", self.name)?;
        }
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// Reads `KEY=VALUE`, the spelling of `--label` (the value may be empty;
/// it is not validated here, see [`validate_pod_meta`]).
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) => Ok((key.to_string(), value.to_string())),
        None => Err(format!(
            "label {text:?} has no '=': expected KEY=VALUE, e.g. app=web"
        )),
    }
}

/// Every problem with a pod's cluster identity: `pod_namespace` (a
/// DNS-1123 label), `pod_name` (a DNS-1123 subdomain), `labels` (keys and
/// values as Kubernetes takes them), `ports` (names, numbers, protocols;
/// names unique). Empty when all is well.
pub fn validate_pod_meta(
    namespace: Option<&str>,
    name: Option<&str>,
    labels: &BTreeMap<String, String>,
    ports: &[NamedPort],
) -> Vec<String> {
    let mut errs: Vec<FieldError> = Vec::new();
    let mut plain: Vec<String> = Vec::new();
    if let Some(ns) = namespace {
        let path = FieldPath::new("pod_namespace");
        errs.extend(
            is_dns1123_label(ns)
                .into_iter()
                .map(|m| FieldError::invalid(&path, ns, m)),
        );
    }
    if let Some(n) = name {
        let path = FieldPath::new("pod_name");
        errs.extend(
            is_dns1123_subdomain(n)
                .into_iter()
                .map(|m| FieldError::invalid(&path, n, m)),
        );
    }
    if name.is_none() && (!labels.is_empty() || !ports.is_empty()) {
        plain.push(
            "labels and ports belong to a pod of the cluster: give pod_name (and pod_namespace) too"
                .to_string(),
        );
    }
    if labels.len() > MAX_LABELS {
        errs.push(FieldError::too_many(
            &FieldPath::new("labels"),
            labels.len(),
            MAX_LABELS,
        ));
    } else {
        errs.extend(validate_labels(labels, &FieldPath::new("labels")));
    }
    if ports.len() > MAX_PORTS {
        errs.push(FieldError::too_many(
            &FieldPath::new("ports"),
            ports.len(),
            MAX_PORTS,
        ));
    } else {
        errs.extend(port_errors(ports));
    }
    errs.into_iter()
        .map(|e| e.to_string())
        .chain(plain)
        .collect()
}

fn port_errors(ports: &[NamedPort]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let path = FieldPath::new("ports").index(i);
        if !p.name.is_empty() {
            let name_path = path.child("name");
            let msgs = is_port_name(&p.name);
            if !msgs.is_empty() {
                errs.extend(
                    msgs.into_iter()
                        .map(|m| FieldError::invalid(&name_path, p.name.as_str(), m)),
                );
            } else if !names.insert(p.name.as_str()) {
                errs.push(FieldError::duplicate(&name_path, p.name.as_str()));
            }
        }
        errs.extend(
            is_port_num(i64::from(p.port))
                .into_iter()
                .map(|m| FieldError::invalid(&path.child("port"), i64::from(p.port), m)),
        );
        if !PORT_PROTOCOLS.contains(&p.protocol.as_str()) {
            errs.push(FieldError::not_supported(
                &path.child("protocol"),
                p.protocol.as_str(),
                PORT_PROTOCOLS,
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn ports_parse_in_every_spelling() {
        let p = |s: &str| NamedPort::parse(s).unwrap();
        assert_eq!(
            p("http=8080/TCP"),
            NamedPort {
                name: "http".into(),
                port: 8080,
                protocol: "TCP".into()
            }
        );
        assert_eq!(p("dns=53/udp").protocol, "UDP");
        assert_eq!(
            p("9090"),
            NamedPort {
                name: String::new(),
                port: 9090,
                protocol: "TCP".into()
            }
        );
        assert_eq!(p("http=8080/TCP").to_string(), "http=8080/TCP");
        assert_eq!(p("9090").to_string(), "9090/TCP");
        let e = NamedPort::parse("http=web/TCP").unwrap_err();
        assert_eq!(
            e,
            "port \"http=web/TCP\": \"web\" is not a port number; expected [NAME=]PORT[/PROTOCOL], e.g. http=8080/TCP"
        );
        assert!(NamedPort::parse("http=").is_err());
        assert!(NamedPort::parse("").is_err());
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_label("app=web").unwrap(),
            ("app".into(), "web".into())
        );
        assert_eq!(parse_label("a=").unwrap(), ("a".into(), String::new()));
        assert_eq!(parse_label("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_label("app").unwrap_err().contains("no '='"));
    }

    #[test]
    fn good_identities_pass() {
        let ports = [
            NamedPort::parse("http=8080/TCP").unwrap(),
            NamedPort::parse("dns=53/UDP").unwrap(),
            NamedPort::parse("9090").unwrap(),
        ];
        let errs = validate_pod_meta(
            Some("shop"),
            Some("web-1.a"),
            &labels(&[("app", "web"), ("example.com/tier", ""), ("v", "1.2_3")]),
            &ports,
        );
        assert!(errs.is_empty(), "{errs:?}");
        assert!(validate_pod_meta(None, None, &BTreeMap::new(), &[]).is_empty());
    }

    #[test]
    fn each_problem_is_named_with_its_field_and_value() {
        type Case<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            BTreeMap<String, String>,
            Vec<NamedPort>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (Some("Shop"), Some("web"), labels(&[]), vec![], "pod_namespace: Invalid value: \"Shop\": a lowercase RFC 1123 label"),
            (Some("a.b"), Some("web"), labels(&[]), vec![], "pod_namespace: Invalid value: \"a.b\": must not contain dots"),
            (None, Some("Web_1"), labels(&[]), vec![], "pod_name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain"),
            (None, Some("web"), labels(&[("-x", "1")]), vec![], "labels: Invalid value: \"-x\": name part must consist of"),
            (None, Some("web"), labels(&[("app", "a b")]), vec![], "labels: Invalid value: \"a b\": a valid label must be"),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("http=0").unwrap()], "ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("http=70000").unwrap()], "ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("http=80/SCTP").unwrap()], "ports[0].protocol: Unsupported value: \"SCTP\": supported values: \"TCP\", \"UDP\""),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("HTTP=80").unwrap()], "ports[0].name: Invalid value: \"HTTP\": must contain only alpha-numeric characters"),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("a-very-long-port-name=80").unwrap()], "ports[0].name: Invalid value: \"a-very-long-port-name\": must be no more than 15 characters"),
            (None, Some("web"), labels(&[]), vec![NamedPort::parse("http=80").unwrap(), NamedPort::parse("http=81").unwrap()], "ports[1].name: Duplicate value: \"http\""),
            (None, None, labels(&[("app", "web")]), vec![], "labels and ports belong to a pod of the cluster"),
        ];
        for (ns, name, labels, ports, want) in cases {
            let errs = validate_pod_meta(ns, name, &labels, &ports);
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "{want:?} not in {errs:?}"
            );
        }
        let many: BTreeMap<String, String> =
            (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        let errs = validate_pod_meta(None, Some("web"), &many, &[]);
        assert_eq!(errs, ["labels: Too many: 65: must have at most 64 items"]);
    }
}
