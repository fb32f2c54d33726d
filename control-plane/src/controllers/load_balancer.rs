//! LoadBalancer Services' `status.loadBalancer.ingress`: the addresses of
//! the nodes, as k3s's ServiceLB reports them (every node's agent answers
//! on the Service's node ports and ports; weft has no external load
//! balancer). Each Ready node's most preferred endpoint address, sorted;
//! written only when it changes, comparing the Service's revision.

use weft_objects::types::service::LoadBalancerIngress;
use weft_objects::values::{LoadBalancerIpMode, ServiceType};
use weft_objects::{Kind, Object};

use super::view::View;
use crate::objects::{codec, keys, Writes};
use crate::registry::RegistryError;

/// The writes that bring every LoadBalancer Service's ingress list (and
/// every other Service's, to empty) to what it should be, one unit per
/// Service.
pub fn plan(view: &View) -> Result<Vec<Writes>, RegistryError> {
    let mut out = Vec::new();
    let ingress: Vec<LoadBalancerIngress> = view
        .ingress_addresses()
        .into_iter()
        .map(|ip| LoadBalancerIngress {
            ip: ip.to_string(),
            hostname: String::new(),
            ip_mode: Some(LoadBalancerIpMode::Vip),
        })
        .collect();
    for ((ns, name), svc) in &view.services {
        let want = if svc.object.service_type() == ServiceType::LoadBalancer {
            ingress.clone()
        } else {
            Vec::new()
        };
        if svc.object.status.load_balancer.ingress == want {
            continue;
        }
        let mut s = svc.object.clone();
        s.status.load_balancer.ingress = want;
        let key = keys::object_key(Kind::Service, ns, name);
        let mut w = Writes::default();
        w.unchanged_since(&key, svc.revision);
        w.put(&key, codec::encode(&Object::Service(s))?);
        out.push(w);
    }
    Ok(out)
}
