//! Namespace, Pod and EndpointSlice validation (Kubernetes'
//! `ValidateNamespace`, the parts of `ValidatePod` weft's Pod has, and
//! `ValidateEndpointSlice`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::meta::{name_errors, object_meta, object_meta_update, port_number, protocol};
use crate::field::{BadValue, FieldError, FieldPath};
use crate::ip::{validate_ip, validate_ip_legacy, validate_non_special_ip};
use crate::names::{is_dns1123_label, is_dns1123_subdomain, is_label_key, is_port_name};
use crate::types::endpoint_slice::EndpointSlice;
use crate::types::namespace::Namespace;
use crate::types::pod::Pod;
use crate::values::{AddressType, ConditionStatus, PodPhase};

/// Every error of a Namespace about to be created.
pub fn validate_namespace(ns: &Namespace) -> Vec<FieldError> {
    let mut errs = object_meta(&ns.metadata, false, is_dns1123_label);
    for (i, f) in ns.spec.finalizers.iter().enumerate() {
        errs.extend(name_errors(
            f,
            &FieldPath::new("spec").child("finalizers").index(i),
            is_label_key,
        ));
    }
    errs
}

/// Every error of an update of the Namespace `old` to `new`.
pub fn validate_namespace_update(new: &Namespace, old: &Namespace) -> Vec<FieldError> {
    let mut errs = object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_namespace(new));
    errs
}

/// Every error of a Pod about to be created (or registered).
pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = object_meta(&pod.metadata, true, is_dns1123_subdomain);
    let spec = FieldPath::new("spec");
    let s = &pod.spec;
    if !s.node_name.is_empty() {
        errs.extend(name_errors(
            &s.node_name,
            &spec.child("nodeName"),
            is_dns1123_subdomain,
        ));
    }
    if !s.hostname.is_empty() {
        errs.extend(name_errors(
            &s.hostname,
            &spec.child("hostname"),
            is_dns1123_label,
        ));
    }
    if !s.subdomain.is_empty() {
        errs.extend(name_errors(
            &s.subdomain,
            &spec.child("subdomain"),
            is_dns1123_label,
        ));
    }
    let mut container_names = HashSet::new();
    for (i, c) in s.containers.iter().enumerate() {
        let cp = spec.child("containers").index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(&cp.child("name"), ""));
        } else {
            errs.extend(name_errors(&c.name, &cp.child("name"), is_dns1123_label));
            if !container_names.insert(c.name.clone()) {
                errs.push(FieldError::duplicate(&cp.child("name"), &c.name));
            }
        }
        let mut port_names = HashSet::new();
        for (j, port) in c.ports.iter().enumerate() {
            let pp = cp.child("ports").index(j);
            if !port.name.is_empty() {
                let msgs = is_port_name(&port.name);
                if !msgs.is_empty() {
                    errs.extend(
                        msgs.into_iter()
                            .map(|m| FieldError::invalid(&pp.child("name"), &port.name, m)),
                    );
                } else if !port_names.insert(port.name.clone()) {
                    errs.push(FieldError::duplicate(&pp.child("name"), &port.name));
                }
            }
            if port.container_port == 0 {
                errs.push(FieldError::required(&pp.child("containerPort"), ""));
            } else {
                errs.extend(port_number(
                    i64::from(port.container_port),
                    &pp.child("containerPort"),
                ));
            }
            errs.extend(protocol(&port.protocol, &pp.child("protocol")));
        }
    }
    errs.extend(pod_status(pod));
    errs
}

fn pod_status(pod: &Pod) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status = FieldPath::new("status");
    let st = &pod.status;
    if let Some(PodPhase::Other(p)) = &st.phase {
        errs.push(FieldError::not_supported(
            &status.child("phase"),
            p.as_str(),
            &["Pending", "Running", "Succeeded", "Failed", "Unknown"],
        ));
    }
    if !st.pod_ip.is_empty() {
        errs.extend(validate_ip_legacy(&status.child("podIP"), &st.pod_ip));
    }
    let ips_path = status.child("podIPs");
    let mut bad = false;
    for (i, ip) in st.pod_ips.iter().enumerate() {
        let e = validate_ip(&ips_path.index(i), &ip.ip);
        bad |= !e.is_empty();
        errs.extend(e);
    }
    if !bad && st.pod_ips.len() > 1 {
        let v4 = st
            .pod_ips
            .iter()
            .filter(|p| p.ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()))
            .count();
        if v4 != 1 || st.pod_ips.len() != 2 {
            let raw: Vec<String> = st
                .pod_ips
                .iter()
                .map(|p| format!(r#"{{"IP":"{}"}}"#, p.ip))
                .collect();
            errs.push(FieldError::invalid(
                &ips_path,
                BadValue::Raw(format!("[{}]", raw.join(","))),
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if let Some(first) = st.pod_ips.first() {
        if !st.pod_ip.is_empty() && first.ip != st.pod_ip {
            errs.push(FieldError::invalid(
                &status.child("podIP"),
                &st.pod_ip,
                "must match `podIPs[0]`",
            ));
        }
    }
    for (i, c) in st.conditions.iter().enumerate() {
        let cp = status.child("conditions").index(i);
        if c.condition_type.is_empty() {
            errs.push(FieldError::required(&cp.child("type"), ""));
        }
        if let ConditionStatus::Other(s) = &c.status {
            errs.push(FieldError::not_supported(
                &cp.child("status"),
                s.as_str(),
                &["False", "True", "Unknown"],
            ));
        }
    }
    errs
}

/// Every error of an update of the Pod `old` to `new`: weft's pods change
/// only their labels, annotations and status.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs = object_meta_update(&new.metadata, &old.metadata);
    if new.spec != old.spec {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec"),
            "pod updates may not change fields other than metadata and status (re-register the pod to change its spec)",
        ));
    }
    errs.extend(validate_pod(new));
    errs
}

/// Every error of an EndpointSlice about to be created. Paths start at the
/// object (`endpoints[0].addresses[0]`), as Kubernetes prints them.
pub fn validate_endpoint_slice(es: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = object_meta(&es.metadata, true, is_dns1123_subdomain);
    let at = FieldPath::root().child("addressType");
    match &es.address_type {
        None => errs.push(FieldError::required(&at, "")),
        Some(t) if t.is_empty() => errs.push(FieldError::required(&at, "")),
        Some(AddressType::Other(t)) => errs.push(FieldError::not_supported(
            &at,
            t.as_str(),
            &["FQDN", "IPv4", "IPv6"],
        )),
        _ => {}
    }
    let eps = FieldPath::root().child("endpoints");
    if es.endpoints.len() > 1000 {
        errs.push(FieldError::too_many(&eps, es.endpoints.len(), 1000));
    } else {
        for (i, ep) in es.endpoints.iter().enumerate() {
            let p = eps.index(i);
            let ap = p.child("addresses");
            if ep.addresses.is_empty() {
                errs.push(FieldError::required(&ap, "must contain at least 1 address"));
            } else if ep.addresses.len() > 100 {
                errs.push(FieldError::too_many(&ap, ep.addresses.len(), 100));
            }
            for (j, addr) in ep.addresses.iter().enumerate() {
                errs.extend(endpoint_address(
                    es.address_type.as_ref(),
                    addr,
                    &ap.index(j),
                ));
            }
            if let Some(h) = &ep.hostname {
                errs.extend(name_errors(h, &p.child("hostname"), is_dns1123_label));
            }
            if let Some(n) = &ep.node_name {
                errs.extend(name_errors(n, &p.child("nodeName"), is_dns1123_subdomain));
            }
        }
    }
    let ports = FieldPath::root().child("ports");
    if es.ports.len() > 100 {
        errs.push(FieldError::too_many(&ports, es.ports.len(), 100));
        return errs;
    }
    let mut names = HashSet::new();
    for (i, port) in es.ports.iter().enumerate() {
        let p = ports.index(i);
        let name = port.name.clone().unwrap_or_default();
        if !name.is_empty() {
            errs.extend(name_errors(&name, &p.child("name"), is_dns1123_label));
        }
        if !names.insert(name.clone()) {
            errs.push(FieldError::duplicate(&p.child("name"), name));
        }
        errs.extend(protocol(&port.protocol, &p.child("protocol")));
        if let Some(n) = port.port {
            errs.extend(port_number(i64::from(n), &p.child("port")));
        }
        if let Some(app) = &port.app_protocol {
            errs.extend(name_errors(app, &p.child("appProtocol"), is_label_key));
        }
    }
    errs
}

fn endpoint_address(t: Option<&AddressType>, addr: &str, path: &FieldPath) -> Vec<FieldError> {
    let family_ok = |want_v4: bool| addr.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4() == want_v4);
    match t {
        Some(AddressType::IPv4) | Some(AddressType::IPv6) => {
            let v4 = t == Some(&AddressType::IPv4);
            let mut errs = Vec::new();
            if !family_ok(v4) {
                let fam = if v4 { "IPv4" } else { "IPv6" };
                errs.push(FieldError::invalid(
                    path,
                    addr,
                    format!("must be a valid {fam} address"),
                ));
                return errs;
            }
            errs.extend(validate_ip(path, addr));
            errs.extend(validate_non_special_ip(path, addr));
            errs
        }
        Some(AddressType::Fqdn) => {
            let name = addr.strip_suffix('.').unwrap_or(addr);
            let mut errs = name_errors(name, path, is_dns1123_subdomain);
            if errs.is_empty() && name.split('.').count() < 2 {
                errs.push(FieldError::invalid(
                    path,
                    name,
                    "should be a domain with at least two segments separated by dots",
                ));
            }
            errs
        }
        _ => Vec::new(),
    }
}

/// Every error of an update of the slice `old` to `new`; `addressType` is
/// immutable.
pub fn validate_endpoint_slice_update(new: &EndpointSlice, old: &EndpointSlice) -> Vec<FieldError> {
    let mut errs = object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_endpoint_slice(new));
    if new.address_type != old.address_type {
        let v = new
            .address_type
            .as_ref()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            &FieldPath::root().child("addressType"),
            v,
            "field is immutable",
        ));
    }
    errs
}
