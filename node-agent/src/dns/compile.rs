//! [`zone_spec`]: the cluster's objects ([`ViewSnapshot`]) -> the plain
//! description of the cluster zone ([`ZoneSpec`]) that
//! [`DnsZone::build`](weft_switch::dns::DnsZone::build) indexes.
//!
//! Contract: a pure function, no IO, never fails. What goes in, per the
//! Kubernetes DNS specification (schema 1.1.0):
//! - a Service of `type: ExternalName` -> its `externalName` (CNAME);
//! - a headless Service (`clusterIP: None`) -> the READY endpoints of its
//!   EndpointSlices (`conditions.ready` true or unset, as Kubernetes reads
//!   it; `publishNotReadyAddresses` is already folded into `ready` by the
//!   slice controller), each with its hostname and its slice's ports;
//! - any other Service with a ClusterIP -> its `clusterIPs` (or
//!   `clusterIP`) and its ports; one without an allocated address yet is
//!   left out (it has no name until it has an address);
//! - pod records (`a-b-c-d.<ns>.pod.<zone>`) need no objects: the zone
//!   answers them for any address, as the specification allows.
//!
//! Addresses that do not parse are skipped (the objects were validated by
//! the control plane; a bad one must not take the zone down).

use std::net::IpAddr;

use weft_objects::types::endpoint_slice::EndpointPort;
use weft_objects::values::{Protocol, ServiceType};
use weft_objects::{EndpointSlice, Service};
use weft_switch::dns::{EndpointSpec, PortSpec, ServiceKind, ServiceSpec, ZoneSpec};

use crate::view::ViewSnapshot;

/// The zone description for `domain` from `view`, every record with `ttl`.
pub fn zone_spec(view: &ViewSnapshot, domain: &str, ttl: u32) -> ZoneSpec {
    let services = view
        .services
        .values()
        .filter_map(|svc| service_spec(view, svc))
        .collect();
    ZoneSpec {
        domain: domain.to_string(),
        ttl,
        services,
    }
}

fn service_spec(view: &ViewSnapshot, svc: &Service) -> Option<ServiceSpec> {
    let meta = &svc.metadata;
    let kind = if svc.service_type() == ServiceType::ExternalName {
        if svc.spec.external_name.is_empty() {
            return None;
        }
        ServiceKind::ExternalName(svc.spec.external_name.clone())
    } else if svc.is_headless() {
        let endpoints = view
            .slices_of(&meta.namespace, &meta.name)
            .flat_map(|slice| ready_endpoints(slice))
            .collect();
        ServiceKind::Headless(endpoints)
    } else {
        let mut ips: Vec<IpAddr> = svc
            .spec
            .cluster_ips
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(svc.spec.cluster_ip.parse::<IpAddr>().ok());
        }
        if ips.is_empty() {
            return None;
        }
        ServiceKind::ClusterIp(ips)
    };
    let ports = svc
        .spec
        .ports
        .iter()
        .filter_map(|p| {
            Some(PortSpec {
                name: Some(p.name.clone()).filter(|n| !n.is_empty()),
                protocol: protocol(&p.protocol()),
                port: u16::try_from(p.port).ok()?,
            })
        })
        .collect();
    Some(ServiceSpec {
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        kind,
        ports,
    })
}

/// The ready endpoints of one slice, with the slice's ports.
fn ready_endpoints(slice: &EndpointSlice) -> Vec<EndpointSpec> {
    let ports: Vec<PortSpec> = slice.ports.iter().filter_map(endpoint_port).collect();
    slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.ready != Some(false))
        .map(|e| EndpointSpec {
            addresses: e.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            hostname: e.hostname.clone().filter(|h| !h.is_empty()),
            ports: ports.clone(),
        })
        .filter(|e| !e.addresses.is_empty())
        .collect()
}

fn endpoint_port(p: &EndpointPort) -> Option<PortSpec> {
    Some(PortSpec {
        name: p.name.clone().filter(|n| !n.is_empty()),
        protocol: protocol(p.protocol.as_ref().unwrap_or(&Protocol::Tcp)),
        port: u16::try_from(p.port?).ok()?,
    })
}

/// `TCP` -> `tcp`, as in an SRV owner name.
fn protocol(p: &Protocol) -> String {
    p.as_str().to_ascii_lowercase()
}

#[cfg(test)]
#[path = "compile_tests.rs"]
mod tests;
