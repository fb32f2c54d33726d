//! A pod's endpoint and resolved ports for one Service (upstream's
//! `podToEndpoint`, `getEndpointPorts` and `FindPort`).

use crate::types::endpoint_slice::{Endpoint, EndpointConditions, EndpointPort, ObjectReference};
use crate::types::pod::Pod;
use crate::types::service::{Service, ServicePort};
use crate::values::{AddressType, IntOrString};

/// The pod's port for a Service port: a numeric `targetPort` as is, a named
/// one from the pod's container ports of the same protocol; `None` when the
/// pod has no such named port.
pub(crate) fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::Str(name)) => pod.find_named_port(name, &port.protocol()),
    }
}

/// The slice ports of a pod: every Service port that resolves on it, in the
/// Service's order.
pub(crate) fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    svc.spec
        .ports
        .iter()
        .filter_map(|sp| {
            find_port(pod, sp).map(|port| EndpointPort {
                name: Some(sp.name.clone()),
                protocol: Some(sp.protocol()),
                port: Some(port),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The pod as an endpoint with its addresses of `address_type`.
pub(crate) fn pod_endpoint(svc: &Service, pod: &Pod, address_type: &AddressType) -> Endpoint {
    let serving = pod.is_ready();
    let terminating = false;
    let ready = svc.spec.publish_not_ready_addresses || (serving && !terminating);
    let addresses = pod
        .ips()
        .into_iter()
        .filter(|ip| match address_type {
            AddressType::IPv4 => ip.is_ipv4(),
            AddressType::IPv6 => ip.is_ipv6(),
            _ => false,
        })
        .map(|ip| ip.to_string())
        .collect();
    let spec = &pod.spec;
    let hostname = (!spec.hostname.is_empty()
        && spec.subdomain == svc.metadata.name
        && pod.metadata.namespace == svc.metadata.namespace)
        .then(|| spec.hostname.clone());
    Endpoint {
        addresses,
        conditions: EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        },
        hostname,
        target_ref: Some(ObjectReference {
            kind: "Pod".into(),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
        node_name: (!spec.node_name.is_empty()).then(|| spec.node_name.clone()),
        zone: None,
    }
}
