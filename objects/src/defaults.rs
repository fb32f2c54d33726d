//! Defaulting, as the Kubernetes API server does it before validation.
//!
//! Contract: [`apply`] fills exactly what Kubernetes' `SetDefaults_*`
//! functions and registry strategies fill, and nothing else:
//! - Namespace: label `kubernetes.io/metadata.name: <name>`, `status.phase:
//!   Active`.
//! - Pod: container port protocol TCP; `status.phase: Pending` when unset;
//!   `podIP` and `podIPs` completed from each other (the v1 conversion).
//! - Service: `type: ClusterIP`; `sessionAffinity: None` (which drops
//!   `sessionAffinityConfig`), `clientIP.timeoutSeconds: 10800` with
//!   ClientIP; port protocol TCP; `targetPort` = `port` when unset, 0 or
//!   ""; `externalTrafficPolicy: Cluster` for externally accessible
//!   Services (NodePort, LoadBalancer, ClusterIP with externalIPs);
//!   `internalTrafficPolicy: Cluster` for ClusterIP/NodePort/LoadBalancer;
//!   `allocateLoadBalancerNodePorts: true` and ingress `ipMode: VIP` for
//!   LoadBalancer; `clusterIPs: [clusterIP]` when only `clusterIP` is given.
//! - NetworkPolicy: port protocol TCP; `policyTypes: [Ingress]`, plus
//!   `Egress` when there are egress rules, when `policyTypes` is empty.
//! - EndpointSlice: port `name: ""` and protocol TCP when unset.
//!
//! `apiVersion` and `kind` are set to the kind's own. Applying twice
//! changes nothing more. The allocated values (ClusterIPs, NodePorts,
//! health-check port) are not defaults: the control plane allocates them;
//! [`carry_allocated`] keeps them across an update that omits them, and
//! [`set_cluster_ips`] / [`set_headless_families`] record an allocation.

use std::net::IpAddr;

use crate::object::Object;
use crate::types::endpoint_slice::EndpointSlice;
use crate::types::namespace::{Namespace, LABEL_METADATA_NAME};
use crate::types::network_policy::NetworkPolicy;
use crate::types::pod::Pod;
use crate::types::service::{
    ClientIpConfig, Service, SessionAffinityConfig, DEFAULT_CLIENT_IP_AFFINITY_SECONDS,
};
use crate::values::{
    IntOrString, IpFamily, IpFamilyPolicy, LoadBalancerIpMode, NamespacePhase, PodPhase,
    PolicyType, Protocol, ServiceType, SessionAffinity, TrafficPolicy,
};

/// Fills the defaults of any object (see the module contract).
pub fn apply(obj: &mut Object) {
    match obj {
        Object::Namespace(o) => namespace(o),
        Object::Pod(o) => pod(o),
        Object::Service(o) => service(o),
        Object::NetworkPolicy(o) => network_policy(o),
        Object::EndpointSlice(o) => endpoint_slice(o),
    }
}

fn unset<T>(v: &Option<T>, is_empty: impl Fn(&T) -> bool) -> bool {
    v.as_ref().is_none_or(is_empty)
}

fn default_protocol(p: &mut Option<Protocol>) {
    if unset(p, Protocol::is_empty) {
        *p = Some(Protocol::Tcp);
    }
}

/// Namespace defaults (a namespace given to a Namespace is dropped, as the
/// API server drops it for cluster-scoped objects).
pub fn namespace(ns: &mut Namespace) {
    ns.api_version = Namespace::API_VERSION.into();
    ns.kind = Namespace::KIND.into();
    ns.metadata.namespace.clear();
    if !ns.metadata.name.is_empty() {
        ns.metadata
            .labels
            .insert(LABEL_METADATA_NAME.into(), ns.metadata.name.clone());
    }
    if unset(&ns.status.phase, NamespacePhase::is_empty) {
        ns.status.phase = Some(NamespacePhase::Active);
    }
}

/// Pod defaults.
pub fn pod(p: &mut Pod) {
    p.api_version = Pod::API_VERSION.into();
    p.kind = Pod::KIND.into();
    for port in p
        .spec
        .containers
        .iter_mut()
        .flat_map(|c| c.ports.iter_mut())
    {
        default_protocol(&mut port.protocol);
    }
    let st = &mut p.status;
    if st.pod_ips.is_empty() && !st.pod_ip.is_empty() {
        st.pod_ips.push(crate::types::pod::PodIp {
            ip: st.pod_ip.clone(),
        });
    }
    if st.pod_ip.is_empty() {
        if let Some(first) = st.pod_ips.first() {
            st.pod_ip = first.ip.clone();
        }
    }
    if unset(&p.status.phase, PodPhase::is_empty) {
        p.status.phase = Some(PodPhase::Pending);
    }
}

/// Service defaults.
pub fn service(svc: &mut Service) {
    svc.api_version = Service::API_VERSION.into();
    svc.kind = Service::KIND.into();
    let spec = &mut svc.spec;
    if unset(&spec.session_affinity, SessionAffinity::is_empty) {
        spec.session_affinity = Some(SessionAffinity::None);
    }
    match spec.session_affinity {
        Some(SessionAffinity::None) => spec.session_affinity_config = None,
        Some(SessionAffinity::ClientIp) => {
            let has_timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .is_some_and(|c| c.timeout_seconds.is_some());
            if !has_timeout {
                spec.session_affinity_config = Some(SessionAffinityConfig {
                    client_ip: Some(ClientIpConfig {
                        timeout_seconds: Some(DEFAULT_CLIENT_IP_AFFINITY_SECONDS),
                    }),
                });
            }
        }
        _ => {}
    }
    if unset(&spec.service_type, ServiceType::is_empty) {
        spec.service_type = Some(ServiceType::ClusterIp);
    }
    for port in &mut spec.ports {
        default_protocol(&mut port.protocol);
        let target_unset = match &port.target_port {
            None => true,
            Some(IntOrString::Int(0)) => true,
            Some(IntOrString::Str(s)) => s.is_empty(),
            Some(IntOrString::Int(_)) => false,
        };
        if target_unset {
            port.target_port = Some(IntOrString::Int(port.port));
        }
    }
    if !spec.cluster_ip.is_empty() && spec.cluster_ips.is_empty() {
        spec.cluster_ips = vec![spec.cluster_ip.clone()];
    }
    let service_type = svc.service_type();
    if svc.externally_accessible()
        && unset(&svc.spec.external_traffic_policy, TrafficPolicy::is_empty)
    {
        svc.spec.external_traffic_policy = Some(TrafficPolicy::Cluster);
    }
    let internal_applies = matches!(
        service_type,
        ServiceType::ClusterIp | ServiceType::NodePort | ServiceType::LoadBalancer
    );
    if internal_applies && svc.spec.internal_traffic_policy.is_none() {
        svc.spec.internal_traffic_policy = Some(TrafficPolicy::Cluster);
    }
    if service_type == ServiceType::LoadBalancer {
        if svc.spec.allocate_load_balancer_node_ports.is_none() {
            svc.spec.allocate_load_balancer_node_ports = Some(true);
        }
        for ing in &mut svc.status.load_balancer.ingress {
            if !ing.ip.is_empty() && ing.ip_mode.is_none() {
                ing.ip_mode = Some(LoadBalancerIpMode::Vip);
            }
        }
    }
}

/// NetworkPolicy defaults.
pub fn network_policy(np: &mut NetworkPolicy) {
    np.api_version = NetworkPolicy::API_VERSION.into();
    np.kind = NetworkPolicy::KIND.into();
    let ingress_ports = np.spec.ingress.iter_mut().flat_map(|r| r.ports.iter_mut());
    let egress_ports = np.spec.egress.iter_mut().flat_map(|r| r.ports.iter_mut());
    for port in ingress_ports.chain(egress_ports) {
        default_protocol(&mut port.protocol);
    }
    if np.spec.policy_types.is_empty() {
        np.spec.policy_types.push(PolicyType::Ingress);
        if !np.spec.egress.is_empty() {
            np.spec.policy_types.push(PolicyType::Egress);
        }
    }
}

/// EndpointSlice defaults.
pub fn endpoint_slice(es: &mut EndpointSlice) {
    es.api_version = EndpointSlice::API_VERSION.into();
    es.kind = EndpointSlice::KIND.into();
    for port in &mut es.ports {
        if port.name.is_none() {
            port.name = Some(String::new());
        }
        default_protocol(&mut port.protocol);
    }
}

/// On an update, keeps what the old Service had allocated when the new one
/// leaves it out (Kubernetes' `patchAllocatedValues`): `clusterIP(s)` while
/// both need one, node ports by port name while both need node ports (a
/// value the new object already uses elsewhere is not copied), the
/// health-check port while both need one; and the IP families with them.
pub fn carry_allocated(new: &mut Service, old: &Service) {
    let needs_cluster_ip = |s: &Service| s.service_type() != ServiceType::ExternalName;
    if needs_cluster_ip(old) && needs_cluster_ip(new) {
        if new.spec.cluster_ip.is_empty() {
            new.spec.cluster_ip = old.spec.cluster_ip.clone();
        }
        if new.spec.cluster_ips.is_empty() && !old.spec.cluster_ips.is_empty() {
            new.spec.cluster_ips = old.spec.cluster_ips.clone();
        }
        if new.spec.ip_families.is_empty() && new.spec.cluster_ips == old.spec.cluster_ips {
            new.spec.ip_families = old.spec.ip_families.clone();
        }
        if new.spec.ip_family_policy.is_none() {
            new.spec.ip_family_policy = old.spec.ip_family_policy.clone();
        }
    }
    if old.needs_node_ports() && new.needs_node_ports() {
        let used_new: Vec<i32> = new
            .spec
            .ports
            .iter()
            .map(|p| p.node_port)
            .filter(|&n| n != 0)
            .collect();
        for port in new.spec.ports.iter_mut().filter(|p| p.node_port == 0) {
            let old_value = old
                .spec
                .ports
                .iter()
                .rev()
                .find(|p| p.name == port.name)
                .map(|p| p.node_port);
            if let Some(v) = old_value.filter(|v| !used_new.contains(v)) {
                port.node_port = v;
            }
        }
    }
    if old.needs_health_check() && new.needs_health_check() && new.spec.health_check_node_port == 0
    {
        new.spec.health_check_node_port = old.spec.health_check_node_port;
    }
}

/// Prepares `new` to replace the stored `old`, as the API server does
/// before validating an update: the system metadata comes from `old` (uid
/// when `new` has none, creationTimestamp, generation, resourceVersion when
/// `new` has none), and a Service keeps its allocated values
/// ([`carry_allocated`]). Call after [`apply`].
pub fn prepare_update(new: &mut Object, old: &Object) {
    let (n, o) = (new.meta_mut(), old.meta());
    if n.uid.is_empty() {
        n.uid = o.uid.clone();
    }
    n.creation_timestamp = o.creation_timestamp.clone();
    n.generation = o.generation;
    if n.resource_version.is_empty() {
        n.resource_version = o.resource_version.clone();
    }
    if let (Object::Service(n), Object::Service(o)) = (new, old) {
        carry_allocated(n, o);
    }
}

/// Puts a namespaced object without a namespace into `namespace` (what
/// `kubectl apply -n NS`, or `default`, does); Namespaces are unchanged.
pub fn fill_namespace(obj: &mut Object, namespace: &str) {
    if obj.kind().namespaced() && obj.meta().namespace.is_empty() {
        obj.meta_mut().namespace = namespace.to_string();
    }
}

fn family(ip: &IpAddr) -> IpFamily {
    if ip.is_ipv4() {
        IpFamily::IPv4
    } else {
        IpFamily::IPv6
    }
}

/// Records allocated ClusterIPs (primary first): `clusterIP`, `clusterIPs`,
/// `ipFamilies` in the same order, and `ipFamilyPolicy` (SingleStack for one
/// address, PreferDualStack for two) when unset.
pub fn set_cluster_ips(svc: &mut Service, ips: &[IpAddr]) {
    let Some(first) = ips.first() else {
        return;
    };
    svc.spec.cluster_ip = first.to_string();
    svc.spec.cluster_ips = ips.iter().map(IpAddr::to_string).collect();
    svc.spec.ip_families = ips.iter().map(family).collect();
    if svc.spec.ip_family_policy.is_none() {
        svc.spec.ip_family_policy = Some(if ips.len() > 1 {
            IpFamilyPolicy::PreferDualStack
        } else {
            IpFamilyPolicy::SingleStack
        });
    }
}

/// For a headless Service (`clusterIP: None`): `clusterIPs: [None]`,
/// `ipFamilies: [primary]` and `ipFamilyPolicy: SingleStack` when unset, as
/// Kubernetes records for a single-stack cluster.
pub fn set_headless_families(svc: &mut Service, primary: IpFamily) {
    if !svc.is_headless() {
        return;
    }
    svc.spec.cluster_ips = vec![svc.spec.cluster_ip.clone()];
    if svc.spec.ip_families.is_empty() {
        svc.spec.ip_families = vec![primary];
    }
    if svc.spec.ip_family_policy.is_none() {
        svc.spec.ip_family_policy = Some(IpFamilyPolicy::SingleStack);
    }
}
