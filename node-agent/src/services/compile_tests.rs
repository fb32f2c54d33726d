//! [`service_specs`] on Kubernetes-shaped objects: what is kept, what is
//! skipped, and the table the switch compiles from it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use weft_objects::{EndpointSlice, Service};
use weft_switch::service::{Candidates, Origin, Protocol, SessionAffinity, TrafficPolicy};

use super::{compile_table, service_specs};
use crate::view::{ObjectKey, ViewSnapshot};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn service(v: Value) -> Service {
    serde_json::from_value(v).unwrap()
}

fn slice(v: Value) -> EndpointSlice {
    serde_json::from_value(v).unwrap()
}

fn view(services: Vec<Service>, slices: Vec<EndpointSlice>) -> ViewSnapshot {
    let key = |m: &weft_objects::ObjectMeta| ObjectKey::new(&m.namespace, &m.name);
    let services: BTreeMap<_, _> = services
        .into_iter()
        .map(|s| (key(&s.metadata), Arc::new(s)))
        .collect();
    let slices: BTreeMap<_, _> = slices
        .into_iter()
        .map(|s| (key(&s.metadata), Arc::new(s)))
        .collect();
    ViewSnapshot {
        version: 1,
        services: Arc::new(services),
        endpoint_slices: Arc::new(slices),
        ..ViewSnapshot::default()
    }
}

/// `shop/web`: ClusterIP 10.96.0.20 and an external IP, port `http` 80
/// to the named target port `http`, ClientIP affinity for 60 s,
/// internalTrafficPolicy Local.
fn web() -> Service {
    service(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "selector": {"app": "web"},
            "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "externalIPs": ["192.0.2.10"],
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
            "internalTrafficPolicy": "Local"
        }
    }))
}

/// A slice of `service` with port `http` = `port` and these endpoints
/// `(address, node, ready)`.
fn web_slice(name: &str, port: u16, endpoints: &[(&str, &str, Option<bool>)]) -> EndpointSlice {
    let eps: Vec<Value> = endpoints
        .iter()
        .map(|(a, node, ready)| {
            let mut conditions = json!({});
            if let Some(r) = ready {
                conditions = json!({"ready": r, "serving": r, "terminating": false});
            }
            json!({"addresses": [a], "nodeName": node, "conditions": conditions})
        })
        .collect();
    slice(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [{"name": "http", "protocol": "TCP", "port": port}]
    }))
}

#[test]
fn a_cluster_ip_service_with_named_target_ports_per_slice() {
    let v = view(
        vec![web()],
        vec![
            web_slice("web-a", 8080, &[("10.244.1.5", "n1", Some(true))]),
            // Another pod names its port differently: its own slice.
            web_slice(
                "web-b",
                9090,
                &[
                    ("10.244.2.7", "n2", None),
                    ("10.244.2.8", "n2", Some(false)),
                ],
            ),
        ],
    );
    let specs = service_specs(&v, "n1");
    assert_eq!(specs.len(), 1);
    let s = &specs[0];
    assert_eq!((s.namespace.as_str(), s.name.as_str()), ("shop", "web"));
    assert_eq!(s.cluster_ips, [ip("10.96.0.20")]);
    assert_eq!(s.external_ips, [ip("192.0.2.10")]);
    assert_eq!(s.ports.len(), 1);
    assert_eq!(
        (
            s.ports[0].name.as_str(),
            s.ports[0].protocol,
            s.ports[0].port
        ),
        ("http", Protocol::Tcp, 80)
    );
    assert_eq!(
        s.session_affinity,
        SessionAffinity::ClientIp {
            timeout: Duration::from_secs(60)
        }
    );
    assert_eq!(s.internal_traffic_policy, TrafficPolicy::Local);
    assert_eq!(s.external_traffic_policy, TrafficPolicy::Cluster);
    let eps: Vec<(IpAddr, u16, bool, bool)> = s
        .endpoints
        .iter()
        .map(|e| (e.address, e.ports[0].port, e.local, e.ready))
        .collect();
    assert_eq!(
        eps,
        [
            (ip("10.244.1.5"), 8080, true, true),
            // Conditions unset mean ready (the EndpointSlice API).
            (ip("10.244.2.7"), 9090, false, true),
            (ip("10.244.2.8"), 9090, false, false),
        ]
    );
    // Seen from n2, the local endpoints are the others.
    let from_n2 = service_specs(&v, "n2");
    let local: Vec<bool> = from_n2[0].endpoints.iter().map(|e| e.local).collect();
    assert_eq!(local, [false, true, true]);
}

#[test]
fn the_compiled_table_serves_the_ready_endpoints() {
    let mut svc = web();
    svc.spec.internal_traffic_policy = None;
    let v = view(
        vec![svc],
        vec![
            web_slice("web-a", 8080, &[("10.244.1.5", "n1", Some(true))]),
            web_slice("web-b", 9090, &[("10.244.2.8", "n2", Some(false))]),
        ],
    );
    let table = compile_table(&v, "n1").unwrap();
    let f = table
        .frontend(6, "10.96.0.20:80".parse().unwrap())
        .expect("the cluster IP is a frontend");
    assert!(table
        .frontend(6, "192.0.2.10:80".parse().unwrap())
        .is_some());
    match table.candidates(f, Origin::Internal) {
        Candidates::Endpoints(set) => assert_eq!(set, ["10.244.1.5:8080".parse().unwrap()]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn headless_external_name_and_other_proxies_services_are_skipped() {
    let headless = service(json!({
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
    }));
    let external = service(json!({
        "metadata": {"name": "ext", "namespace": "shop"},
        "spec": {"type": "ExternalName", "externalName": "example.com"}
    }));
    let other_proxy = service(json!({
        "metadata": {"name": "mesh", "namespace": "shop",
                     "labels": {"service.kubernetes.io/service-proxy-name": "other"}},
        "spec": {"clusterIP": "10.96.0.40", "ports": [{"port": 80}]}
    }));
    let labelled_headless = service(json!({
        "metadata": {"name": "lh", "namespace": "shop",
                     "labels": {"service.kubernetes.io/headless": ""}},
        "spec": {"clusterIP": "10.96.0.41", "ports": [{"port": 80}]}
    }));
    let plain = service(json!({
        "metadata": {"name": "plain", "namespace": "shop"},
        // An out-of-range port and an unknown protocol are left out.
        "spec": {"clusterIP": "10.96.0.42", "ports": [
            {"name": "a", "port": 53, "protocol": "UDP"},
            {"name": "b", "port": 70000},
            {"name": "c", "port": 1, "protocol": "XTP"}
        ]}
    }));
    let v = view(
        vec![headless, external, other_proxy, labelled_headless, plain],
        vec![],
    );
    let specs = service_specs(&v, "n1");
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["plain"]);
    let ports: Vec<(u16, Protocol)> = specs[0]
        .ports
        .iter()
        .map(|p| (p.port, p.protocol))
        .collect();
    assert_eq!(ports, [(53, Protocol::Udp)]);
    assert!(specs[0].endpoints.is_empty());
    assert_eq!(specs[0].session_affinity, SessionAffinity::None);
}
