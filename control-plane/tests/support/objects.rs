//! Helpers for the objects tests: applying manifests, reading objects back
//! typed, pods as agents register them, and bounded waits.

use std::future::Future;
use std::time::Duration;

use tonic::transport::Channel;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::{ApplyRequest, ApplyResponse, GetObjectsRequest, Object};

/// How long a test waits for something the controllers do.
pub(crate) const SETTLE: Duration = Duration::from_secs(10);

/// Apply `yaml` (one request document).
pub(crate) async fn apply(
    admin: &mut AdminClient<Channel>,
    yaml: &str,
) -> Result<ApplyResponse, tonic::Status> {
    admin
        .apply(ApplyRequest {
            documents: vec![yaml.as_bytes().to_vec().into()],
            dry_run: false,
            namespace: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Objects of `kind` in `namespace` (`None`: every namespace), filtered by
/// a label selector (`""`: none).
pub(crate) async fn list(
    admin: &mut AdminClient<Channel>,
    kind: &str,
    namespace: Option<&str>,
    selector: &str,
) -> Vec<Object> {
    admin
        .get_objects(GetObjectsRequest {
            kind: kind.into(),
            namespace: namespace.unwrap_or_default().into(),
            all_namespaces: namespace.is_none(),
            name: String::new(),
            label_selector: selector.into(),
        })
        .await
        .expect("get objects")
        .into_inner()
        .objects
}

/// One object, or the refusal.
pub(crate) async fn get_one(
    admin: &mut AdminClient<Channel>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Object, tonic::Status> {
    let mut r = admin
        .get_objects(GetObjectsRequest {
            kind: kind.into(),
            namespace: namespace.into(),
            all_namespaces: false,
            name: name.into(),
            label_selector: String::new(),
        })
        .await?
        .into_inner();
    assert_eq!(r.objects.len(), 1, "one object by name");
    Ok(r.objects.remove(0))
}

/// An object's JSON.
pub(crate) fn json(o: &Object) -> serde_json::Value {
    serde_json::from_slice(&o.json).expect("object JSON")
}

/// A pod as an agent registers it.
pub(crate) struct PodSpec<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub node: &'a str,
    pub labels: &'a [(&'a str, &'a str)],
    pub ip: &'a str,
    /// (name, containerPort) TCP ports.
    pub ports: &'a [(&'a str, i32)],
    pub ready: bool,
}

impl PodSpec<'_> {
    /// The pod's JSON.
    pub(crate) fn json(&self) -> Vec<u8> {
        let labels: serde_json::Map<String, serde_json::Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
            .collect();
        let ports: Vec<serde_json::Value> = self
            .ports
            .iter()
            .map(|(n, p)| serde_json::json!({"name": n, "containerPort": p, "protocol": "TCP"}))
            .collect();
        let status = if self.ready { "True" } else { "False" };
        serde_json::to_vec(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
            "spec": {"nodeName": self.node, "containers": [{"name": "main", "ports": ports}]},
            "status": {"phase": "Running", "podIP": self.ip, "podIPs": [{"ip": self.ip}],
                       "conditions": [{"type": "Ready", "status": status}]},
        }))
        .unwrap()
    }
}

/// Poll `check` until it returns `Some`, for at most `within`.
pub(crate) async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The addresses in the EndpointSlices of Service `ns/name`, sorted, with
/// the port numbers of each slice.
pub(crate) async fn endpoints(
    admin: &mut AdminClient<Channel>,
    ns: &str,
    service: &str,
) -> Vec<(String, Vec<i64>, bool)> {
    let mut out = Vec::new();
    for s in list(
        admin,
        "endpointslices",
        Some(ns),
        &format!("kubernetes.io/service-name={service}"),
    )
    .await
    {
        let v = json(&s);
        let ports: Vec<i64> = v["ports"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p["port"].as_i64()).collect())
            .unwrap_or_default();
        for e in v["endpoints"].as_array().cloned().unwrap_or_default() {
            let ready = e["conditions"]["ready"].as_bool().unwrap_or(false);
            for a in e["addresses"].as_array().cloned().unwrap_or_default() {
                out.push((
                    a.as_str().unwrap_or_default().to_string(),
                    ports.clone(),
                    ready,
                ));
            }
        }
    }
    out.sort();
    out
}
