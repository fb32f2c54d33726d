//! A pod's record (what `pods.json` keeps) and the add request, with the
//! validation of everything a caller can send.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use weft_agent_api::{NamedPort, Pod, PodAddRequest, DEFAULT_IFNAME, DEFAULT_POD_NAMESPACE};

/// The longest pod id, in bytes (a Kubernetes name is at most 253).
pub const MAX_ID_LEN: usize = 253;

/// One pod of this node, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodRecord {
    /// The unique key: a pod name, or `<container-id>/<ifname>` for CNI.
    pub id: String,
    /// The path of the pod's network namespace.
    pub netns: PathBuf,
    /// The pod's interface name inside the namespace.
    pub ifname: String,
    /// The pod's address (a /32 or /128 on its interface).
    pub address: IpAddr,
    /// Whether the agent created the namespace (and deletes it with the pod).
    pub created_netns: bool,
    /// The Kubernetes namespace, for DNS and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_namespace: Option<String>,
    /// The Kubernetes pod name, for DNS and policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// The pod's labels, as registered with the control plane.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The pod's named ports, as registered with the control plane.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<NamedPort>,
    /// When it was added, in seconds since the Unix epoch.
    pub created_unix: u64,
    /// Whether its port is attached to the data plane now (not persisted).
    #[serde(skip)]
    pub attached: bool,
}

impl PodRecord {
    /// The record as the local API shows it.
    pub fn to_api(&self) -> Pod {
        Pod {
            id: self.id.clone(),
            address: self.address,
            netns: self.netns.display().to_string(),
            ifname: self.ifname.clone(),
            created_netns: self.created_netns,
            pod_namespace: self.pod_namespace.clone(),
            pod_name: self.pod_name.clone(),
            labels: self.labels.clone(),
            ports: self.ports.clone(),
            created_unix: self.created_unix,
            attached: self.attached,
            registration: None,
        }
    }

    /// The pod's place in the cluster, `(namespace, name)`, if it has a
    /// Kubernetes name (the namespace defaults to `default`).
    pub fn cluster_name(&self) -> Option<(String, String)> {
        let name = self.pod_name.clone()?;
        let ns = self
            .pod_namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_POD_NAMESPACE.to_string());
        Some((ns, name))
    }
}

/// A request to add a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddPod {
    /// The pod's unique id; see [`validate_id`].
    pub id: String,
    /// An existing network namespace. Exactly one of `netns` and
    /// `create_netns`.
    pub netns: Option<PathBuf>,
    /// Create the named namespace `/run/netns/<id>` (the id must then be a
    /// valid namespace name: no `/`); deleted again with the pod.
    pub create_netns: bool,
    /// The interface name in the pod; `eth0` if `None`.
    pub ifname: Option<String>,
    /// The Kubernetes namespace, if any.
    pub pod_namespace: Option<String>,
    /// The Kubernetes pod name, if any.
    pub pod_name: Option<String>,
    /// Its labels (needs `pod_name`).
    pub labels: BTreeMap<String, String>,
    /// Its named ports (needs `pod_name`).
    pub ports: Vec<NamedPort>,
}

impl AddPod {
    /// The interface name asked for, or the default.
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or(DEFAULT_IFNAME)
    }
}

impl From<PodAddRequest> for AddPod {
    fn from(r: PodAddRequest) -> Self {
        Self {
            id: r.id,
            netns: r.netns.map(PathBuf::from),
            create_netns: r.create_netns,
            ifname: r.ifname,
            pod_namespace: r.pod_namespace,
            pod_name: r.pod_name,
            labels: r.labels,
            ports: r.ports,
        }
    }
}

/// Checks a pod id: 1 to 253 bytes of ASCII letters, digits, `.`, `_`, `-`
/// and `/`, starting with a letter or digit, with no empty, `.` or `..`
/// segment between slashes.
pub fn validate_id(id: &str) -> Result<(), String> {
    let reason = if id.is_empty() {
        "must not be empty"
    } else if id.len() > MAX_ID_LEN {
        "longer than 253 bytes"
    } else if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
    {
        "may only hold ASCII letters, digits, '.', '_', '-' and '/'"
    } else if !id.as_bytes()[0].is_ascii_alphanumeric() {
        "must start with a letter or digit"
    } else if id.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        "must not have an empty, \".\" or \"..\" segment between '/'"
    } else {
        return Ok(());
    };
    Err(format!("invalid pod id {id:?}: {reason}"))
}

/// Checks the pod's cluster identity (namespace, name, labels, ports) with
/// Kubernetes' rules: every problem, in one message.
fn validate_identity(req: &AddPod) -> Result<(), String> {
    let errs = weft_agent_api::validate_pod_meta(
        req.pod_namespace.as_deref(),
        req.pod_name.as_deref(),
        &req.labels,
        &req.ports,
    );
    match errs.as_slice() {
        [] => Ok(()),
        [one] => Err(format!("invalid pod {:?}: {one}", req.id)),
        many => Err(format!("invalid pod {:?}: [{}]", req.id, many.join(", "))),
    }
}

/// Checks a namespace path: absolute, no NUL, at most 4095 bytes.
fn validate_netns_path(path: &Path) -> Result<(), String> {
    let text = path.as_os_str().as_encoded_bytes();
    let reason = if !path.is_absolute() {
        "must be an absolute path"
    } else if text.contains(&0) {
        "must not contain NUL"
    } else if text.len() >= 4096 {
        "longer than 4095 bytes"
    } else {
        return Ok(());
    };
    Err(format!("invalid netns path {:?}: {reason}", path.display()))
}

/// Checks everything in an add request that needs no IO.
pub(super) fn validate_add(req: &AddPod) -> Result<(), String> {
    validate_id(&req.id)?;
    crate::kernel::tun::validate_ifname(req.ifname()).map_err(|e| e.to_string())?;
    validate_identity(req)?;
    match (&req.netns, req.create_netns) {
        (Some(_), true) => Err("give either a netns path or create_netns, not both".into()),
        (None, false) => {
            Err("give a netns path, or create_netns to let the agent create one".into())
        }
        (Some(path), false) => validate_netns_path(path),
        (None, true) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["web", "a", "web-1.x_y", "0123abcd/eth0", &"a".repeat(253)] {
            assert_eq!(validate_id(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "empty"),
            (&"a".repeat(254), "253"),
            ("a b", "letters"),
            ("é", "letters"),
            ("-a", "start"),
            ("a//b", "segment"),
            ("a/", "segment"),
            ("a/../b", "segment"),
            ("a/./b", "segment"),
        ];
        for (id, why) in cases {
            let e = validate_id(id).unwrap_err();
            assert!(e.contains(why), "{id:?}: {e}");
        }
    }

    #[test]
    fn add_requests() {
        let base = AddPod {
            id: "web".into(),
            create_netns: true,
            ..AddPod::default()
        };
        assert_eq!(validate_add(&base), Ok(()));
        assert_eq!(base.ifname(), "eth0");
        let both = AddPod {
            netns: Some("/run/netns/x".into()),
            ..base.clone()
        };
        assert!(validate_add(&both).unwrap_err().contains("not both"));
        let neither = AddPod {
            create_netns: false,
            ..base.clone()
        };
        assert!(validate_add(&neither)
            .unwrap_err()
            .contains("give a netns path"));
        let relative = AddPod {
            netns: Some("run/netns/x".into()),
            create_netns: false,
            ..base.clone()
        };
        assert!(validate_add(&relative).unwrap_err().contains("absolute"));
        let bad_if = AddPod {
            ifname: Some("tun%d".into()),
            ..base.clone()
        };
        assert!(validate_add(&bad_if)
            .unwrap_err()
            .starts_with("invalid interface name"));
        let bad_meta = AddPod {
            pod_name: Some("a\nb".into()),
            ..base.clone()
        };
        let e = validate_add(&bad_meta).unwrap_err();
        assert!(
            e.starts_with("invalid pod \"web\": pod_name: Invalid value: \"a\\nb\": a lowercase RFC 1123 subdomain"),
            "{e}"
        );
        let bad_labels = AddPod {
            pod_name: Some("web".into()),
            labels: [("-a".to_string(), "b c".to_string())].into(),
            ..base.clone()
        };
        let e = validate_add(&bad_labels).unwrap_err();
        assert!(
            e.starts_with("invalid pod \"web\": [labels: Invalid value: \"-a\""),
            "{e}"
        );
        assert!(e.contains("labels: Invalid value: \"b c\""), "{e}");
        let good = AddPod {
            pod_namespace: Some("shop".into()),
            pod_name: Some("web".into()),
            labels: [("app".to_string(), "web".to_string())].into(),
            ports: vec![NamedPort::parse("http=8080/TCP").unwrap()],
            ..base
        };
        assert_eq!(validate_add(&good), Ok(()));
    }
}
