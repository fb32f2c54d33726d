//! The Kubernetes Pod a local pod is registered as, built from its record.
//!
//! Contract: one document per cluster name (`namespace/name`), the same
//! bytes for the same pod (no timestamps), so registering it again is
//! `unchanged` on the control plane. A pod attached to the data plane is
//! `Running` and `Ready`; a detached one `Running` and not `Ready` (it is
//! not an endpoint while its network is down). Named ports go on one
//! container, `main`. When several local attachments share one cluster name
//! (a CNI pod with several weft interfaces), the oldest one (then the
//! smallest id) stands for the pod.

use std::collections::BTreeMap;

use weft_objects::types::pod::{Container, ContainerPort, PodIp};
use weft_objects::validation::validate_pod;
use weft_objects::values::{PodPhase, Protocol};
use weft_objects::Pod;

use crate::pods::PodRecord;
use crate::view::ObjectKey;

/// The name of the one container that carries a pod's named ports.
pub const CONTAINER_NAME: &str = "main";

/// The Pod object for `record` on node `node`, or `None` for a pod that is
/// not part of the cluster (no `pod_name`).
pub fn pod_object(record: &PodRecord, node: &str) -> Option<(ObjectKey, Pod)> {
    let (namespace, name) = record.cluster_name()?;
    let mut pod = Pod::new(&namespace, &name);
    pod.api_version = Pod::API_VERSION.to_string();
    pod.kind = Pod::KIND.to_string();
    pod.metadata.labels = record.labels.clone();
    pod.spec.node_name = node.to_string();
    if !record.ports.is_empty() {
        pod.spec.containers = vec![Container {
            name: CONTAINER_NAME.to_string(),
            ports: record
                .ports
                .iter()
                .map(|p| ContainerPort {
                    name: p.name.clone(),
                    container_port: i32::try_from(p.port).unwrap_or(0),
                    protocol: Some(Protocol::parse(&p.protocol)),
                })
                .collect(),
        }];
    }
    pod.status.phase = Some(PodPhase::Running);
    pod.status.pod_ip = record.address.to_string();
    pod.status.pod_ips = vec![PodIp {
        ip: record.address.to_string(),
    }];
    pod.set_ready(record.attached, None);
    Some((ObjectKey::new(&namespace, &name), pod))
}

/// Pod documents (JSON) by cluster name.
pub type Documents = BTreeMap<ObjectKey, Vec<u8>>;

/// The documents to register for `records` on node `node`: one per
/// cluster name, each checked as the control plane will check it. A pod
/// the checks refuse is left out and returned with the reason (the agent
/// validates its requests, so this means a bug or an old `pods.json`).
pub fn documents(records: &[PodRecord], node: &str) -> (Documents, Vec<(ObjectKey, String)>) {
    let mut ordered: Vec<&PodRecord> = records.iter().collect();
    ordered.sort_by(|a, b| (a.created_unix, &a.id).cmp(&(b.created_unix, &b.id)));
    let mut docs = BTreeMap::new();
    let mut refused = Vec::new();
    for record in ordered {
        let Some((key, pod)) = pod_object(record, node) else {
            continue;
        };
        if docs.contains_key(&key) {
            tracing::debug!(pod = %key, id = %record.id, "another attachment of this pod stands for it");
            continue;
        }
        let errors = validate_pod(&pod);
        if !errors.is_empty() {
            let why = weft_objects::field::aggregate(&errors);
            refused.push((key, why));
            continue;
        }
        match serde_json::to_vec(&pod) {
            Ok(doc) => {
                docs.insert(key, doc);
            }
            Err(e) => refused.push((key, format!("encoding the pod: {e}"))),
        }
    }
    (docs, refused)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use weft_agent_api::NamedPort;

    use super::*;

    fn record(id: &str, ns: Option<&str>, name: Option<&str>, ip: &str, created: u64) -> PodRecord {
        PodRecord {
            id: id.into(),
            netns: PathBuf::from("/run/netns/x"),
            ifname: "eth0".into(),
            address: ip.parse().unwrap(),
            created_netns: false,
            pod_namespace: ns.map(Into::into),
            pod_name: name.map(Into::into),
            labels: [("app".to_string(), "web".to_string())].into(),
            ports: vec![NamedPort::parse("http=8080/TCP").unwrap()],
            created_unix: created,
            attached: true,
        }
    }

    #[test]
    fn a_pod_is_its_kubernetes_shape() {
        let (key, pod) = pod_object(
            &record("web", Some("shop"), Some("web-1"), "10.244.1.2", 1),
            "n1",
        )
        .unwrap();
        assert_eq!(key, ObjectKey::new("shop", "web-1"));
        let json = serde_json::to_value(&pod).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "main", "ports": [
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"}]}]},
                "status": {"phase": "Running", "podIP": "10.244.1.2", "podIPs": [{"ip": "10.244.1.2"}],
                    "conditions": [{"type": "Ready", "status": "True"}]}
            })
        );
        assert!(validate_pod(&pod).is_empty());
        // Without a namespace: default. Detached: not ready.
        let mut r = record("db", None, Some("db"), "10.244.1.3", 1);
        r.attached = false;
        let (key, pod) = pod_object(&r, "n1").unwrap();
        assert_eq!(key, ObjectKey::new("default", "db"));
        assert!(!pod.is_ready());
        // Without a name: not a pod of the cluster.
        assert!(pod_object(&record("c1/eth0", Some("x"), None, "10.244.1.4", 1), "n1").is_none());
    }

    #[test]
    fn one_document_per_pod_the_same_bytes_each_time() {
        let records = [
            record("c2/eth1", Some("shop"), Some("web-1"), "10.244.1.9", 5),
            record("c2/eth0", Some("shop"), Some("web-1"), "10.244.1.2", 5),
            record("lone", None, None, "10.244.1.3", 1),
            record("bad", Some("shop"), Some("db"), "10.244.1.4", 1),
        ];
        let mut records = records.to_vec();
        records[3].labels.insert("-x".into(), "y".into());
        let (docs, refused) = documents(&records, "n1");
        assert_eq!(
            docs.keys().collect::<Vec<_>>(),
            [&ObjectKey::new("shop", "web-1")]
        );
        let pod: Pod = serde_json::from_slice(&docs[&ObjectKey::new("shop", "web-1")]).unwrap();
        // The same creation time: the smaller id stands for the pod.
        assert_eq!(pod.status.pod_ip, "10.244.1.2");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].0, ObjectKey::new("shop", "db"));
        assert!(
            refused[0]
                .1
                .starts_with("metadata.labels: Invalid value: \"-x\""),
            "{}",
            refused[0].1
        );
        let (again, _) = documents(&records, "n1");
        assert_eq!(again, docs);
    }
}
