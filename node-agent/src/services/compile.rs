//! [`service_specs`]: the cluster's Services and EndpointSlices, as this
//! node holds them, turned into the switch's plain [`ServiceSpec`]s.
//!
//! Contract: a pure function of the snapshot and the node's name, no IO,
//! no panic on any object (fields that do not read, such as an address
//! that is not an IP or a port out of range, are left out). What it keeps
//! and drops, as kube-proxy does:
//! - Services without a cluster IP (headless `None`, `ExternalName`) and
//!   Services labelled `service.kubernetes.io/service-proxy-name` or
//!   `service.kubernetes.io/headless` are skipped;
//! - cluster IPs (`spec.clusterIPs`, else `spec.clusterIP`), external IPs,
//!   `status.loadBalancer.ingress[].ip`, ports with their node ports,
//!   `sessionAffinity: ClientIP` with its timeout, both traffic policies
//!   and the health-check node port;
//! - endpoints from every EndpointSlice labelled with the Service's name,
//!   each address with its slice's ports (the slice carries the target
//!   port resolved per pod, so named `targetPort`s that differ between
//!   pods land in different slices), its conditions (`ready` and
//!   `serving` unset mean true, `terminating` unset means false, as the
//!   EndpointSlice API says) and whether its `nodeName` is this node.
//!   Which endpoints serve (ready, or serving-and-terminating when none
//!   is ready; only local ones for the Local policies) is the switch's
//!   [`ServiceTable`](weft_switch::service::ServiceTable)'s to decide.

use std::net::IpAddr;
use std::time::Duration;

use weft_objects::types::endpoint_slice::{Endpoint, EndpointSlice};
use weft_objects::values::{Protocol as ObjProtocol, ServiceType, TrafficPolicy as ObjPolicy};
use weft_objects::Service;
use weft_switch::service::{
    EndpointPort, EndpointSpec, Protocol, ServicePort, ServiceSpec, SessionAffinity, TrafficPolicy,
    LABEL_HEADLESS, LABEL_SERVICE_PROXY_NAME,
};

use crate::view::ViewSnapshot;

/// The Services of `view` this node proxies, as seen from node `node`.
pub fn service_specs(view: &ViewSnapshot, node: &str) -> Vec<ServiceSpec> {
    view.services
        .values()
        .filter(|svc| proxied(svc))
        .map(|svc| {
            let ns = svc.metadata.namespace.as_str();
            let name = svc.metadata.name.as_str();
            let mut spec = service_spec(svc);
            spec.endpoints = view
                .slices_of(ns, name)
                .flat_map(|slice| slice_endpoints(slice, node))
                .collect();
            spec
        })
        .collect()
}

/// Whether weft translates this Service at all.
fn proxied(svc: &Service) -> bool {
    let labels = &svc.metadata.labels;
    svc.service_type() != ServiceType::ExternalName
        && svc.has_cluster_ip()
        && !labels.contains_key(LABEL_SERVICE_PROXY_NAME)
        && !labels.contains_key(LABEL_HEADLESS)
}

fn protocol(p: &ObjProtocol) -> Option<Protocol> {
    match p {
        ObjProtocol::Tcp => Some(Protocol::Tcp),
        ObjProtocol::Udp => Some(Protocol::Udp),
        ObjProtocol::Sctp => Some(Protocol::Sctp),
        ObjProtocol::Other(_) => None,
    }
}

fn policy(p: Option<&ObjPolicy>) -> TrafficPolicy {
    match p {
        Some(ObjPolicy::Local) => TrafficPolicy::Local,
        _ => TrafficPolicy::Cluster,
    }
}

fn ips<'a>(list: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    list.into_iter().filter_map(|s| s.parse().ok()).collect()
}

fn port_number(n: i32) -> Option<u16> {
    u16::try_from(n).ok().filter(|p| *p != 0)
}

/// The Service's own fields (endpoints apart).
fn service_spec(svc: &Service) -> ServiceSpec {
    let s = &svc.spec;
    let cluster_ips = if s.cluster_ips.is_empty() {
        ips([&s.cluster_ip])
    } else {
        ips(&s.cluster_ips)
    };
    let ports = s
        .ports
        .iter()
        .filter_map(|p| {
            Some(ServicePort {
                name: p.name.clone(),
                protocol: protocol(&p.protocol())?,
                port: port_number(p.port)?,
                node_port: port_number(p.node_port),
            })
        })
        .collect();
    let session_affinity = match svc.client_ip_affinity_seconds() {
        Some(secs) => SessionAffinity::ClientIp {
            timeout: Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1)),
        },
        None => SessionAffinity::None,
    };
    ServiceSpec {
        namespace: svc.metadata.namespace.clone(),
        name: svc.metadata.name.clone(),
        labels: svc.metadata.labels.clone(),
        cluster_ips,
        external_ips: ips(&s.external_ips),
        load_balancer_ips: ips(svc.status.load_balancer.ingress.iter().map(|i| &i.ip)),
        ports,
        session_affinity,
        external_traffic_policy: policy(s.external_traffic_policy.as_ref()),
        internal_traffic_policy: policy(s.internal_traffic_policy.as_ref()),
        health_check_node_port: port_number(s.health_check_node_port),
        endpoints: Vec::new(),
    }
}

/// Every address of `slice` as an endpoint with the slice's ports.
fn slice_endpoints<'a>(
    slice: &'a EndpointSlice,
    node: &'a str,
) -> impl Iterator<Item = EndpointSpec> + 'a {
    let ports: Vec<EndpointPort> = slice
        .ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPort {
                name: p.name.clone().unwrap_or_default(),
                protocol: protocol(p.protocol.as_ref().unwrap_or(&ObjProtocol::Tcp))?,
                port: port_number(p.port?)?,
            })
        })
        .collect();
    slice
        .endpoints
        .iter()
        .flat_map(move |ep| endpoint_specs(ep, node, ports.clone()))
}

fn endpoint_specs(
    ep: &Endpoint,
    node: &str,
    ports: Vec<EndpointPort>,
) -> impl Iterator<Item = EndpointSpec> {
    let c = &ep.conditions;
    let ready = c.ready.unwrap_or(true);
    let serving = c.serving.unwrap_or(ready);
    let terminating = c.terminating.unwrap_or(false);
    let local = ep.node_name.as_deref() == Some(node);
    ips(&ep.addresses)
        .into_iter()
        .map(move |address| EndpointSpec {
            address,
            ready,
            serving,
            terminating,
            local,
            ports: ports.clone(),
        })
}
