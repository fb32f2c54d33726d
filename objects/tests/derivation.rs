//! EndpointSlice derivation: named ports, relabelled pods, not-ready pods,
//! several slices, headless hostnames, node checks and stable names.

use weft_objects::defaults;
use weft_objects::endpoints::{derive_endpoint_slices, derive_endpoint_slices_with};
use weft_objects::types::endpoint_slice::{
    EndpointSlice, LABEL_HEADLESS, LABEL_MANAGED_BY, LABEL_SERVICE_NAME,
};
use weft_objects::types::pod::{Container, ContainerPort, Pod, PodIp};
use weft_objects::validation::validate;
use weft_objects::values::{AddressType, IntOrString, IpFamily, PodPhase, Protocol};
use weft_objects::{parse_manifests, Object, Service};

fn service(yaml_spec: &str) -> Service {
    let doc = format!("apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop, labels: {{tier: front}}}}\nspec:\n{yaml_spec}");
    let mut objs = parse_manifests(&doc).unwrap();
    defaults::apply(&mut objs[0]);
    let Object::Service(s) = objs.remove(0) else {
        panic!()
    };
    s
}

fn pod(name: &str, ip: &str, ready: bool, ports: &[(&str, i32)]) -> Pod {
    let mut p = Pod::new("shop", name);
    p.metadata.labels.insert("app".into(), "web".into());
    p.metadata.uid = format!("uid-{name}");
    p.spec.node_name = "n1".into();
    p.spec.containers.push(Container {
        name: "main".into(),
        ports: ports
            .iter()
            .map(|(n, port)| ContainerPort {
                name: n.to_string(),
                container_port: *port,
                protocol: None,
            })
            .collect(),
    });
    p.status.phase = Some(PodPhase::Running);
    p.status.pod_ip = ip.into();
    p.status.pod_ips = vec![PodIp { ip: ip.into() }];
    p.set_ready(ready, None);
    let mut obj = Object::Pod(p);
    defaults::apply(&mut obj);
    let Object::Pod(p) = obj else { unreachable!() };
    p
}

/// A slice's (port name, port) list and its addresses.
type PortsAndAddresses = (Vec<(String, i32)>, Vec<String>);

fn any_node(_: &str) -> bool {
    true
}

fn addresses(s: &EndpointSlice) -> Vec<String> {
    s.endpoints
        .iter()
        .flat_map(|e| e.addresses.clone())
        .collect()
}

fn ports(s: &EndpointSlice) -> Vec<(String, i32)> {
    s.ports
        .iter()
        .map(|p| (p.name.clone().unwrap_or_default(), p.port.unwrap_or(0)))
        .collect()
}

#[test]
fn named_target_ports_resolve_per_pod_and_group_slices() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports:\n  - {name: http, port: 80, targetPort: http}\n  - {name: admin, port: 9000, targetPort: 9000}\n");
    let pods = vec![
        pod("a", "10.244.1.2", true, &[("http", 8080)]),
        pod("b", "10.244.1.3", true, &[("http", 8081)]),
        pod("c", "10.244.1.4", true, &[("other", 8080)]),
    ];
    let slices = derive_endpoint_slices(&svc, &pods, any_node);
    // a and b resolve http to different numbers -> different port lists;
    // c lacks the named port -> only the numeric one.
    assert_eq!(slices.len(), 3, "{slices:#?}");
    let by_ports: Vec<PortsAndAddresses> =
        slices.iter().map(|s| (ports(s), addresses(s))).collect();
    assert!(by_ports.contains(&(
        vec![("http".into(), 8080), ("admin".into(), 9000)],
        vec!["10.244.1.2".into()]
    )));
    assert!(by_ports.contains(&(
        vec![("http".into(), 8081), ("admin".into(), 9000)],
        vec!["10.244.1.3".into()]
    )));
    assert!(by_ports.contains(&(vec![("admin".into(), 9000)], vec!["10.244.1.4".into()])));
    for s in &slices {
        assert_eq!(s.address_type, Some(AddressType::IPv4));
        assert_eq!(s.metadata.namespace, "shop");
        assert_eq!(s.metadata.labels[LABEL_SERVICE_NAME], "web");
        assert_eq!(
            s.metadata.labels[LABEL_MANAGED_BY],
            "endpointslice-controller.weft"
        );
        assert_eq!(
            s.metadata.labels["tier"], "front",
            "the Service's labels are copied"
        );
        assert!(!s.metadata.labels.contains_key(LABEL_HEADLESS));
        assert!(
            s.metadata.name.starts_with("web-") && s.metadata.name.len() == 9,
            "{}",
            s.metadata.name
        );
        assert!(s.ports.iter().all(|p| p.protocol == Some(Protocol::Tcp)));
        let mut obj = Object::EndpointSlice(s.clone());
        defaults::apply(&mut obj);
        validate(&obj, &Default::default()).unwrap_or_else(|e| panic!("{e}"));
    }
    let e = &slices
        .iter()
        .find(|s| addresses(s) == ["10.244.1.2"])
        .unwrap()
        .endpoints[0];
    assert_eq!(e.node_name.as_deref(), Some("n1"));
    let target = e.target_ref.as_ref().unwrap();
    assert_eq!(
        (
            target.kind.as_str(),
            target.name.as_str(),
            target.uid.as_str()
        ),
        ("Pod", "a", "uid-a")
    );
}

#[test]
fn named_port_protocol_must_match() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports:\n  - {name: dns, port: 53, protocol: UDP, targetPort: dns}\n");
    let mut p = pod("a", "10.244.1.2", true, &[("dns", 5353)]);
    let slices = derive_endpoint_slices(&svc, [&p], any_node);
    assert_eq!(
        ports(&slices[0]),
        vec![],
        "the pod's dns port is TCP: no UDP port resolves"
    );
    p.spec.containers[0].ports[0].protocol = Some(Protocol::Udp);
    let slices = derive_endpoint_slices(&svc, [&p], any_node);
    assert_eq!(ports(&slices[0]), vec![("dns".into(), 5353)]);
    assert_eq!(slices[0].ports[0].protocol, Some(Protocol::Udp));
}

#[test]
fn not_ready_pods_are_listed_not_ready_unless_published() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n");
    let pods = vec![
        pod("a", "10.244.1.2", true, &[]),
        pod("b", "10.244.1.3", false, &[]),
    ];
    let slices = derive_endpoint_slices(&svc, &pods, any_node);
    assert_eq!(slices.len(), 1);
    let conds: Vec<(Option<bool>, Option<bool>, Option<bool>)> = slices[0]
        .endpoints
        .iter()
        .map(|e| {
            (
                e.conditions.ready,
                e.conditions.serving,
                e.conditions.terminating,
            )
        })
        .collect();
    assert_eq!(
        conds,
        vec![
            (Some(true), Some(true), Some(false)),
            (Some(false), Some(false), Some(false))
        ]
    );

    let mut published = svc.clone();
    published.spec.publish_not_ready_addresses = true;
    let slices = derive_endpoint_slices(&published, &pods, any_node);
    let ready: Vec<Option<bool>> = slices[0]
        .endpoints
        .iter()
        .map(|e| e.conditions.ready)
        .collect();
    assert_eq!(ready, vec![Some(true), Some(true)]);
    assert_eq!(
        slices[0].endpoints[1].conditions.serving,
        Some(false),
        "serving still says the pod is not ready"
    );
}

#[test]
fn relabelled_and_finished_pods_leave() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n");
    let mut pods = vec![
        pod("a", "10.244.1.2", true, &[]),
        pod("b", "10.244.1.3", true, &[]),
    ];
    let before = derive_endpoint_slices(&svc, &pods, any_node);
    assert_eq!(addresses(&before[0]), vec!["10.244.1.2", "10.244.1.3"]);
    pods[1].metadata.labels.insert("app".into(), "db".into());
    let after = derive_endpoint_slices(&svc, &pods, any_node);
    assert_eq!(addresses(&after[0]), vec!["10.244.1.2"]);
    assert_eq!(
        after[0].metadata.name, before[0].metadata.name,
        "the same group keeps its slice name"
    );
    pods[0].status.phase = Some(PodPhase::Succeeded);
    let empty = derive_endpoint_slices(&svc, &pods, any_node);
    assert_eq!(empty.len(), 1, "a placeholder slice");
    assert!(empty[0].endpoints.is_empty() && empty[0].ports.is_empty());
    let mut other_ns = pod("c", "10.244.1.9", true, &[]);
    other_ns.metadata.namespace = "elsewhere".into();
    assert!(derive_endpoint_slices(&svc, [&other_ns], any_node)[0]
        .endpoints
        .is_empty());
}

#[test]
fn pods_on_unknown_nodes_are_skipped_unless_published() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n");
    let pods = vec![pod("a", "10.244.1.2", true, &[])];
    let no_node = |n: &str| n != "n1";
    assert!(derive_endpoint_slices(&svc, &pods, no_node)[0]
        .endpoints
        .is_empty());
    let mut published = svc.clone();
    published.spec.publish_not_ready_addresses = true;
    assert_eq!(
        derive_endpoint_slices(&published, &pods, no_node)[0]
            .endpoints
            .len(),
        1
    );
}

#[test]
fn many_endpoints_split_into_slices_of_at_most_the_maximum() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n");
    let pods: Vec<Pod> = (0..250)
        .map(|i| {
            pod(
                &format!("p{i:03}"),
                &format!("10.244.{}.{}", i / 200, i % 200 + 2),
                true,
                &[],
            )
        })
        .collect();
    let slices = derive_endpoint_slices(&svc, &pods, any_node);
    let sizes: Vec<usize> = slices.iter().map(|s| s.endpoints.len()).collect();
    assert_eq!(sizes, vec![100, 100, 50]);
    let mut names: Vec<&str> = slices.iter().map(|s| s.metadata.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "unique names");
    let all: Vec<String> = slices.iter().flat_map(addresses).collect();
    assert_eq!(all.len(), 250);
    assert_eq!(all[0], "10.244.0.2", "ordered by pod name");
    let again = derive_endpoint_slices(&svc, pods.iter().rev(), any_node);
    assert_eq!(again, slices, "deterministic whatever the pods' order");
    let small = derive_endpoint_slices_with(&svc, &pods, any_node, 7);
    assert_eq!(small.len(), 36);
}

#[test]
fn headless_services_hostnames_and_families() {
    let svc = service("  selector: {app: web}\n  clusterIP: None\n");
    let mut a = pod("a", "10.244.1.2", true, &[]);
    a.spec.hostname = "a-0".into();
    a.spec.subdomain = "web".into();
    let mut b = pod("b", "fd00::2", true, &[]);
    b.spec.hostname = "b-0".into();
    b.spec.subdomain = "other".into();
    let slices = derive_endpoint_slices(&svc, [&a, &b], any_node);
    assert_eq!(slices.len(), 2, "no ipFamilies: both families");
    assert_eq!(slices[0].address_type, Some(AddressType::IPv4));
    assert_eq!(slices[0].endpoints[0].hostname.as_deref(), Some("a-0"));
    assert_eq!(slices[1].address_type, Some(AddressType::IPv6));
    assert_eq!(
        slices[1].endpoints[0].hostname, None,
        "subdomain is another Service"
    );
    assert_eq!(slices[0].metadata.labels[LABEL_HEADLESS], "");
    assert!(
        slices[0].ports.is_empty(),
        "a headless Service without ports"
    );

    let mut single = svc.clone();
    defaults::set_headless_families(&mut single, IpFamily::IPv4);
    let slices = derive_endpoint_slices(&single, [&a, &b], any_node);
    assert_eq!(slices.len(), 1);
    assert_eq!(addresses(&slices[0]), vec!["10.244.1.2"]);
}

#[test]
fn services_without_selector_or_external_names_get_nothing() {
    let p = pod("a", "10.244.1.2", true, &[]);
    let manual = service("  clusterIP: 10.96.0.20\n  ports: [{port: 80}]\n");
    assert!(derive_endpoint_slices(&manual, [&p], any_node).is_empty());
    let ext =
        service("  type: ExternalName\n  externalName: example.com\n  selector: {app: web}\n");
    assert!(derive_endpoint_slices(&ext, [&p], any_node).is_empty());
}

#[test]
fn target_port_defaults_and_numbers() {
    let svc = service("  selector: {app: web}\n  clusterIP: 10.96.0.20\n  ports: [{name: a, port: 80}, {name: b, port: 81, targetPort: 8081, appProtocol: http}]\n");
    let slices = derive_endpoint_slices(&svc, [&pod("a", "10.244.1.2", true, &[])], any_node);
    assert_eq!(
        ports(&slices[0]),
        vec![("a".into(), 80), ("b".into(), 8081)]
    );
    assert_eq!(slices[0].ports[1].app_protocol.as_deref(), Some("http"));
    assert_eq!(svc.spec.ports[0].target_port, Some(IntOrString::Int(80)));
}
