//! EndpointSlice derivation: the slices Kubernetes' EndpointSlice
//! controller would hold for a Service, computed from the Service and its
//! namespace's pods, with no IO.
//!
//! Contract (upstream `k8s.io/endpointslice` reconciler semantics):
//! - A Service without selector (or `type: ExternalName`) gets no derived
//!   slices: its endpoints are managed by hand.
//! - Candidates: pods of the Service's namespace whose labels match the
//!   selector, not in a terminal phase (Succeeded/Failed), with an address.
//!   A pod whose node is not known is skipped, unless the Service publishes
//!   not-ready addresses.
//! - Each endpoint: the pod's addresses of the slice's family; conditions
//!   `serving` = the pod is Ready, `ready` = serving (weft pods are never
//!   terminating) or `publishNotReadyAddresses`, `terminating` = false —
//!   not-ready pods appear with `ready: false`, as upstream; `nodeName`;
//!   `hostname` when the pod's `hostname` is set and its `subdomain` is the
//!   Service's name; `targetRef` to the pod.
//! - Ports: each Service port whose `targetPort` resolves on the pod (a
//!   number as is; a name looked up in the pod's container ports with the
//!   Service port's protocol), carrying the Service port's name (`""` when
//!   unnamed), protocol and appProtocol. Pods are grouped by their resolved
//!   port list, one group of slices per list: a pod lacking a named port
//!   lands in the group without that port.
//! - Address types: the Service's `ipFamilies`; else its ClusterIP's
//!   family; else (headless, no families) both IPv4 and IPv6.
//! - At most [`MAX_ENDPOINTS_PER_SLICE`] endpoints per slice, endpoints
//!   ordered by pod name. An address type with no endpoint gets one empty
//!   placeholder slice (no endpoints, no ports), as upstream.
//! - Names are deterministic: `<service>-<5 chars>`, the chars from a hash
//!   of the namespace, Service, address type, port list and chunk number,
//!   in Kubernetes' name alphabet; the same inputs give the same names.
//! - Labels: the Service's labels (minus the reserved ones), plus
//!   `kubernetes.io/service-name`, `endpointslice.kubernetes.io/managed-by:
//!   endpointslice-controller.weft`, and `service.kubernetes.io/headless`
//!   when the Service has no ClusterIP. No ownerReferences (weft has no
//!   garbage collector: the control plane deletes a Service's slices).
//!
//! Files: `mod.rs` (grouping and slicing), `ports.rs` (per-pod ports and
//! endpoints), `naming.rs` (names and labels).

mod naming;
mod ports;

use std::collections::BTreeMap;

use crate::meta::ObjectMeta;
use crate::selector::map_matches;
use crate::types::endpoint_slice::{Endpoint, EndpointPort, EndpointSlice};
use crate::types::pod::Pod;
use crate::types::service::Service;
use crate::values::{AddressType, IpFamily, ServiceType};

/// The most endpoints the controller puts in one slice (Kubernetes'
/// `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// Pods sharing one resolved port list: the ports, and (pod name, endpoint).
type PortGroup = (Vec<EndpointPort>, Vec<(String, Endpoint)>);

/// The address types (families) of the Service's slices.
pub fn address_types(svc: &Service) -> Vec<AddressType> {
    let mut types = Vec::new();
    for fam in &svc.spec.ip_families {
        let t = match fam {
            IpFamily::IPv4 => AddressType::IPv4,
            IpFamily::IPv6 => AddressType::IPv6,
            IpFamily::Other(_) => continue,
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if !types.is_empty() {
        return types;
    }
    if svc.has_cluster_ip() {
        let v6 = svc
            .spec
            .cluster_ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_ipv6());
        return vec![if v6 {
            AddressType::IPv6
        } else {
            AddressType::IPv4
        }];
    }
    vec![AddressType::IPv4, AddressType::IPv6]
}

/// The slices of `svc` given the pods (any namespace; others are ignored)
/// and which nodes exist, with at most [`MAX_ENDPOINTS_PER_SLICE`]
/// endpoints each.
pub fn derive_endpoint_slices<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    node_exists: impl Fn(&str) -> bool,
) -> Vec<EndpointSlice> {
    derive_endpoint_slices_with(svc, pods, node_exists, MAX_ENDPOINTS_PER_SLICE)
}

/// [`derive_endpoint_slices`] with another per-slice maximum (at least 1).
pub fn derive_endpoint_slices_with<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    node_exists: impl Fn(&str) -> bool,
    max_per_slice: usize,
) -> Vec<EndpointSlice> {
    if !svc.has_selector() || svc.service_type() == ServiceType::ExternalName {
        return Vec::new();
    }
    let max_per_slice = max_per_slice.max(1);
    let candidates: Vec<&Pod> = pods
        .into_iter()
        .filter(|p| p.metadata.namespace == svc.metadata.namespace)
        .filter(|p| map_matches(&svc.spec.selector, &p.metadata.labels))
        .filter(|p| !p.is_terminal() && !p.ips().is_empty())
        .filter(|p| svc.spec.publish_not_ready_addresses || node_exists(&p.spec.node_name))
        .collect();
    let mut names = naming::Names::default();
    let mut slices = Vec::new();
    for address_type in address_types(svc) {
        // Port list -> endpoints, ordered by port list for stable output.
        let mut groups: BTreeMap<String, PortGroup> = BTreeMap::new();
        for pod in &candidates {
            let ports = ports::endpoint_ports(svc, pod);
            let key = naming::ports_key(&ports);
            let group = groups.entry(key).or_insert_with(|| (ports, Vec::new()));
            let endpoint = ports::pod_endpoint(svc, pod, &address_type);
            if !endpoint.addresses.is_empty() {
                group.1.push((pod.metadata.name.clone(), endpoint));
            }
        }
        let before = slices.len();
        for (key, (ports, mut endpoints)) in groups {
            endpoints.sort_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| a.1.addresses.cmp(&b.1.addresses))
            });
            let endpoints: Vec<Endpoint> = endpoints.into_iter().map(|(_, e)| e).collect();
            for (chunk_no, chunk) in endpoints.chunks(max_per_slice).enumerate() {
                let name = names.allocate(svc, &address_type, &key, chunk_no);
                slices.push(slice(
                    svc,
                    name,
                    &address_type,
                    ports.clone(),
                    chunk.to_vec(),
                ));
            }
        }
        if slices.len() == before {
            let name = names.allocate(svc, &address_type, "placeholder", 0);
            slices.push(slice(svc, name, &address_type, Vec::new(), Vec::new()));
        }
    }
    slices
}

fn slice(
    svc: &Service,
    name: String,
    address_type: &AddressType,
    ports: Vec<EndpointPort>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            name,
            namespace: svc.metadata.namespace.clone(),
            labels: naming::slice_labels(svc),
            ..Default::default()
        },
        address_type: Some(address_type.clone()),
        endpoints,
        ports,
        ..Default::default()
    }
}
