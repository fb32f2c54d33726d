//! zone_spec: each Service kind, ready filtering, ports, and the zone it
//! builds answering the records the specification asks for.

use std::collections::BTreeMap;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use serde_json::json;
use weft_switch::dns::{answer, Answer, DnsZone, Proto};

use super::*;
use crate::view::ObjectKey;

fn service(ns: &str, name: &str, spec: serde_json::Value) -> (ObjectKey, Arc<Service>) {
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns}, "spec": spec
    }))
    .unwrap();
    (ObjectKey::new(ns, name), Arc::new(svc))
}

fn slice(
    ns: &str,
    name: &str,
    svc: &str,
    body: serde_json::Value,
) -> (ObjectKey, Arc<EndpointSlice>) {
    let mut v = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4"
    });
    if let (Some(o), Some(b)) = (v.as_object_mut(), body.as_object()) {
        o.extend(b.clone());
    }
    (
        ObjectKey::new(ns, name),
        Arc::new(serde_json::from_value(v).unwrap()),
    )
}

fn view() -> ViewSnapshot {
    let services: BTreeMap<_, _> = [
        service(
            "shop",
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}),
        ),
        service(
            "shop",
            "db",
            json!({"clusterIP": "None", "clusterIPs": ["None"],
            "ports": [{"name": "pg", "port": 5432}]}),
        ),
        service(
            "shop",
            "ext",
            json!({"type": "ExternalName", "externalName": "db.example.com."}),
        ),
        service("shop", "pending", json!({"ports": [{"port": 80}]})),
    ]
    .into_iter()
    .collect();
    let slices: BTreeMap<_, _> = [slice(
        "shop",
        "db-1",
        "db",
        json!({
            "endpoints": [
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.2.6"], "conditions": {}},
                {"addresses": ["10.244.2.7"], "hostname": "db-2", "conditions": {"ready": false}},
                {"addresses": ["not-an-ip"], "conditions": {"ready": true}}
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]
        }),
    )]
    .into_iter()
    .collect();
    ViewSnapshot {
        version: 1,
        services: Arc::new(services),
        endpoint_slices: Arc::new(slices),
        ..ViewSnapshot::default()
    }
}

fn ask(zone: &DnsZone, name: &str, rtype: RecordType) -> Message {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    match answer(zone, &q.to_vec().unwrap(), Proto::Udp) {
        Answer::Reply { bytes, .. } => Message::from_vec(&bytes).unwrap(),
        _ => panic!("{name} was not answered from the zone"),
    }
}

fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

#[test]
fn each_kind_of_service_becomes_its_records() {
    let spec = zone_spec(&view(), "cluster.local", 5);
    assert_eq!(spec.domain, "cluster.local");
    let names: Vec<&str> = spec.services.iter().map(|s| s.name.as_str()).collect();
    // `pending` has no ClusterIP yet: no name.
    assert_eq!(names, ["db", "ext", "web"]);
    let web = &spec.services[2];
    assert_eq!(
        web.kind,
        ServiceKind::ClusterIp(vec!["10.96.0.20".parse().unwrap()])
    );
    assert_eq!(web.ports[0].name.as_deref(), Some("http"));
    assert_eq!(web.ports[0].protocol, "tcp");
    assert_eq!(web.ports[1].name, None);
    let ServiceKind::Headless(eps) = &spec.services[0].kind else {
        panic!("db is headless");
    };
    // Ready and unset-ready endpoints with an address; not ready ones left out.
    let addrs: Vec<String> = eps.iter().map(|e| e.addresses[0].to_string()).collect();
    assert_eq!(addrs, ["10.244.1.5", "10.244.2.6"]);
    assert_eq!(eps[0].hostname.as_deref(), Some("db-0"));
    assert_eq!(eps[1].hostname, None);
    assert_eq!(eps[0].ports[0].port, 5432);
    assert_eq!(
        spec.services[1].kind,
        ServiceKind::ExternalName("db.example.com.".into())
    );
}

#[test]
fn the_built_zone_answers_the_specification_records() {
    let zone = DnsZone::build(&zone_spec(&view(), "cluster.local", 5));
    let m = ask(&zone, "web.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&m), ["10.96.0.20"]);
    let m = ask(
        &zone,
        "_http._tcp.web.shop.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(data(&m), ["0 100 80 web.shop.svc.cluster.local."]);
    let m = ask(&zone, "db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&m), ["10.244.1.5", "10.244.2.6"]);
    let m = ask(&zone, "db-0.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&m), ["10.244.1.5"]);
    let m = ask(&zone, "ext.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(m.answers[0].data.to_string(), "db.example.com.");
    let m = ask(&zone, "db-2.db.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(&zone, "pending.shop.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(&zone, "10-244-9-9.shop.pod.cluster.local.", RecordType::A);
    assert_eq!(data(&m), ["10.244.9.9"]);
}

#[test]
fn another_cluster_domain_is_honoured() {
    let zone = DnsZone::build(&zone_spec(&view(), "corp.internal", 30));
    let m = ask(&zone, "WEB.shop.svc.corp.internal.", RecordType::A);
    assert_eq!(data(&m), ["10.96.0.20"]);
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "WEB.shop.svc.corp.internal."
    );
}
