//! Manifest parsing with real-world manifests, its refusals, and output
//! (JSON/YAML) round trips.

use weft_objects::defaults;
use weft_objects::manifest::{list_value, to_json, to_json_value, to_yaml, ManifestProblem};
use weft_objects::validation::{validate, ValidationContext};
use weft_objects::values::{
    IntOrString, PolicyType, Protocol, ServiceType, SessionAffinity, TrafficPolicy,
};
use weft_objects::{parse_manifests, Object};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn defaulted(text: &str) -> Vec<Object> {
    let mut objs = parse_manifests(text).unwrap();
    for o in &mut objs {
        defaults::apply(o);
    }
    objs
}

#[test]
fn typical_service_manifest() {
    let objs = defaulted(&fixture("web-service.yaml"));
    assert_eq!(objs.len(), 3, "the empty document is skipped");
    let Object::Namespace(ns) = &objs[0] else {
        panic!("{:?}", objs[0])
    };
    assert_eq!(ns.metadata.labels["kubernetes.io/metadata.name"], "shop");
    assert_eq!(ns.metadata.labels["team"], "payments");
    let Object::Service(web) = &objs[1] else {
        panic!("{:?}", objs[1])
    };
    assert_eq!(web.metadata.namespace, "shop");
    assert_eq!(web.service_type(), ServiceType::NodePort);
    assert_eq!(
        web.spec.ports[0].target_port,
        Some(IntOrString::Str("http".into()))
    );
    assert_eq!(web.spec.ports[0].protocol, Some(Protocol::Tcp), "defaulted");
    assert_eq!(web.spec.ports[0].node_port, 30080);
    assert_eq!(web.spec.ports[1].target_port, Some(IntOrString::Int(9090)));
    assert_eq!(web.spec.session_affinity, Some(SessionAffinity::ClientIp));
    assert_eq!(
        web.client_ip_affinity_seconds(),
        Some(10800),
        "defaulted timeout"
    );
    assert_eq!(
        web.spec.external_traffic_policy,
        Some(TrafficPolicy::Cluster)
    );
    assert_eq!(
        web.spec.internal_traffic_policy,
        Some(TrafficPolicy::Cluster)
    );
    let Object::Service(db) = &objs[2] else {
        panic!("{:?}", objs[2])
    };
    assert!(db.is_headless());
    assert_eq!(db.spec.cluster_ips, vec!["None"]);
    assert_eq!(
        db.spec.ports[0].target_port,
        Some(IntOrString::Int(5432)),
        "targetPort defaults to port"
    );
    assert_eq!(db.spec.ports[0].app_protocol.as_deref(), Some("postgresql"));
    assert_eq!(
        db.spec.external_traffic_policy, None,
        "not externally accessible"
    );
    let ctx = ValidationContext::default();
    for o in &objs {
        validate(o, &ctx).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn network_policies_from_the_kubernetes_docs() {
    let objs = defaulted(&fixture("netpol-docs.yaml"));
    assert_eq!(objs.len(), 3);
    let Object::NetworkPolicy(np) = &objs[0] else {
        panic!()
    };
    assert_eq!(np.spec.pod_selector.match_labels["role"], "db");
    let from = &np.spec.ingress[0].from;
    assert_eq!(from.len(), 3);
    let block = from[0].ip_block.as_ref().unwrap();
    assert_eq!(
        (block.cidr.as_str(), block.except.as_slice()),
        ("172.17.0.0/16", &["172.17.1.0/24".to_string()][..])
    );
    assert_eq!(
        from[1].namespace_selector.as_ref().unwrap().match_labels["project"],
        "myproject"
    );
    assert!(from[1].pod_selector.is_none());
    assert_eq!(
        np.spec.ingress[0].ports[0].port,
        Some(IntOrString::Int(6379))
    );
    assert_eq!(
        np.spec.egress[0].to[0].ip_block.as_ref().unwrap().cidr,
        "10.0.0.0/24"
    );
    let Object::NetworkPolicy(range) = &objs[1] else {
        panic!()
    };
    assert_eq!(range.spec.egress[0].ports[0].end_port, Some(32768));
    assert_eq!(
        range.spec.policy_types,
        vec![PolicyType::Ingress, PolicyType::Egress],
        "defaulted with egress rules"
    );
    let Object::NetworkPolicy(deny) = &objs[2] else {
        panic!()
    };
    assert!(deny.spec.pod_selector.is_empty());
    assert_eq!(deny.metadata.namespace, "", "no namespace in the manifest");
    let mut deny = objs[2].clone();
    defaults::fill_namespace(&mut deny, "default");
    let ctx = ValidationContext::default();
    for o in objs.iter().take(2).chain([&deny]) {
        validate(o, &ctx).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn lists_yaml_and_typed_json() {
    let objs = defaulted(&fixture("list.yaml"));
    assert_eq!(objs.len(), 2);
    assert!(matches!(&objs[0], Object::Namespace(n) if n.metadata.name == "x"));
    let Object::Service(a) = &objs[1] else {
        panic!()
    };
    assert_eq!(a.spec.ports[1].protocol, Some(Protocol::Udp));

    let objs = defaulted(&fixture("services.json"));
    assert_eq!(objs.len(), 3, "two list items and a second JSON document");
    let Object::Service(two) = &objs[1] else {
        panic!()
    };
    assert_eq!(two.service_type(), ServiceType::ExternalName);
    assert_eq!(
        two.spec.internal_traffic_policy, None,
        "not defaulted for ExternalName"
    );
    assert!(matches!(&objs[2], Object::Namespace(n) if n.metadata.name == "json-ns"));
    let ctx = ValidationContext::default();
    for o in &objs {
        validate(o, &ctx).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn problem(text: &str) -> (String, ManifestProblem) {
    let e = parse_manifests(text).unwrap_err();
    (e.to_string(), e.problem)
}

#[test]
fn refusals_name_the_document_and_the_field() {
    let (msg, p) = problem("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec:\n  portz: []\n  ports: [{port: 80, tagetPort: 8080}]\n");
    assert_eq!(
        msg,
        r#"document 1: strict decoding error: unknown field "spec.ports[0].tagetPort", unknown field "spec.portz""#
    );
    assert!(matches!(p, ManifestProblem::UnknownFields(f) if f.len() == 2));

    let (msg, _) = problem("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n");
    assert_eq!(
        msg,
        r#"document 0: no matches for kind "Deployment" in version "apps/v1": weft serves Namespace (v1), Pod (v1), Service (v1), NetworkPolicy (networking.k8s.io/v1), EndpointSlice (discovery.k8s.io/v1) and List"#
    );
    let (msg, _) = problem("apiVersion: extensions/v1beta1\nkind: NetworkPolicy\n");
    assert!(
        msg.starts_with(
            r#"document 0: no matches for kind "NetworkPolicy" in version "extensions/v1beta1""#
        ),
        "{msg}"
    );

    let (msg, _) = problem("---\n---\nkind: Service\n");
    assert_eq!(
        msg, "document 1: apiVersion not set",
        "the first --- opens document 0, empty"
    );
    let (msg, _) = problem("apiVersion: v1\nmetadata: {}\n");
    assert_eq!(msg, "document 0: kind not set");
    let (msg, _) = problem("- a\n- b\n");
    assert_eq!(msg, "document 0: expected an object, found a list");
    let (msg, _) = problem(
        "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  - port: \"80\"\n",
    );
    assert!(
        msg.starts_with("document 0: spec.ports[0].port: invalid type: string \"80\""),
        "{msg}"
    );
    let (msg, _) = problem("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n- apiVersion: v1\n  kind: Pod\n  spec: {image: x}\n");
    assert_eq!(
        msg,
        r#"document 0, item 1: strict decoding error: unknown field "spec.image""#
    );
    let (msg, _) = problem("apiVersion: v1\nkind: Service\nmetadata: {name: [\n");
    assert!(msg.starts_with("document 0: invalid YAML: "), "{msg}");
    let (msg, _) = problem("apiVersion: 1\nkind: Service\n");
    assert_eq!(
        msg,
        "document 0: apiVersion: invalid type: a number, expected a string"
    );
    let (msg, _) = problem("apiVersion: v1\nkind: Service\nmetadata:\n  labels: {version: 1}\n");
    assert!(
        msg.starts_with("document 0: metadata.labels.version: invalid type: integer `1`"),
        "{msg}"
    );
    let (msg, _) = problem(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a}\nspec:\n  podSelector:\n    matchExpressions: [{operator: In}]\n",
    );
    assert!(
        msg.contains("spec.podSelector.matchExpressions[0]: missing field `key`"),
        "{msg}"
    );
}

#[test]
fn empty_input_is_no_object() {
    assert!(parse_manifests("").unwrap().is_empty());
    assert!(parse_manifests("# only a comment\n---\n")
        .unwrap()
        .is_empty());
}

#[test]
fn json_round_trip_is_stable() {
    for f in [
        "web-service.yaml",
        "netpol-docs.yaml",
        "list.yaml",
        "services.json",
    ] {
        for obj in defaulted(&fixture(f)) {
            let json = to_json(&to_json_value(&obj).unwrap()).unwrap();
            let again = parse_manifests(&json).unwrap();
            assert_eq!(again, vec![obj.clone()], "{f}: JSON round trip");
            assert_eq!(
                to_json(&to_json_value(&again[0]).unwrap()).unwrap(),
                json,
                "{f}: same text twice"
            );
            let yaml = to_yaml(&to_json_value(&obj).unwrap()).unwrap();
            assert_eq!(
                parse_manifests(&yaml).unwrap(),
                vec![obj],
                "{f}: YAML round trip"
            );
        }
    }
}

#[test]
fn output_is_kubectl_shaped() {
    let objs = defaulted(&fixture("web-service.yaml"));
    let v = to_json_value(&objs[2]).unwrap();
    let json = to_json(&v).unwrap();
    assert!(
        json.starts_with(
            "{\n    \"apiVersion\": \"v1\",\n    \"kind\": \"Service\",\n    \"metadata\": {"
        ),
        "{json}"
    );
    assert_eq!(
        v["status"],
        serde_json::json!({"loadBalancer": {}}),
        "printed as Kubernetes prints it"
    );
    assert_eq!(v["spec"]["clusterIPs"], serde_json::json!(["None"]));
    assert!(
        v["spec"].get("loadBalancerIP").is_none(),
        "empty fields omitted"
    );
    let yaml = to_yaml(&v).unwrap();
    assert!(
        yaml.starts_with(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: db\n  namespace: shop\nspec:\n"
        ),
        "{yaml}"
    );
    assert!(
        yaml.contains("\n  ports:\n  - appProtocol: postgresql\n    port: 5432\n"),
        "kubectl's list style:\n{yaml}"
    );
    let list = list_value(&objs).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
}
