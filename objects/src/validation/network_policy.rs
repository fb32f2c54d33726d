//! NetworkPolicy validation: Kubernetes' `ValidateNetworkPolicy` (strict
//! CIDR checks), with SCTP refused naming weft.

use ipnet::IpNet;

use super::meta::{
    object_meta, object_meta_update, port_number, protocol, validate_label_selector,
};
use crate::field::{BadValue, FieldError, FieldPath};
use crate::ip::validate_cidr_legacy;
use crate::names::{is_dns1123_subdomain, is_port_name};
use crate::types::network_policy::{IpBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use crate::values::{IntOrString, PolicyType};

/// Every error of a NetworkPolicy about to be created.
pub fn validate_network_policy(np: &NetworkPolicy) -> Vec<FieldError> {
    let mut errs = object_meta(&np.metadata, true, is_dns1123_subdomain);
    let spec = FieldPath::new("spec");
    errs.extend(validate_label_selector(
        &np.spec.pod_selector,
        &spec.child("podSelector"),
    ));
    for (i, rule) in np.spec.ingress.iter().enumerate() {
        let rp = spec.child("ingress").index(i);
        for (j, port) in rule.ports.iter().enumerate() {
            errs.extend(policy_port(port, &rp.child("ports").index(j)));
        }
        for (j, peer) in rule.from.iter().enumerate() {
            errs.extend(policy_peer(peer, &rp.child("from").index(j)));
        }
    }
    for (i, rule) in np.spec.egress.iter().enumerate() {
        let rp = spec.child("egress").index(i);
        for (j, port) in rule.ports.iter().enumerate() {
            errs.extend(policy_port(port, &rp.child("ports").index(j)));
        }
        for (j, peer) in rule.to.iter().enumerate() {
            errs.extend(policy_peer(peer, &rp.child("to").index(j)));
        }
    }
    let types_path = spec.child("policyTypes");
    if np.spec.policy_types.len() > 2 {
        let value: Vec<&str> = np
            .spec
            .policy_types
            .iter()
            .map(PolicyType::as_str)
            .collect();
        errs.push(FieldError::invalid(
            &types_path,
            BadValue::Json(value.into()),
            "may not specify more than two policyTypes",
        ));
        return errs;
    }
    for (i, t) in np.spec.policy_types.iter().enumerate() {
        if let PolicyType::Other(t) = t {
            errs.push(FieldError::not_supported(
                &types_path.index(i),
                t.as_str(),
                &["Ingress", "Egress"],
            ));
        }
    }
    errs
}

/// Every error of an update of the policy `old` to `new`.
pub fn validate_network_policy_update(new: &NetworkPolicy, old: &NetworkPolicy) -> Vec<FieldError> {
    let mut errs = object_meta_update(&new.metadata, &old.metadata);
    errs.extend(validate_network_policy(new));
    errs
}

fn policy_port(port: &NetworkPolicyPort, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if port.protocol.is_some() {
        errs.extend(protocol(&port.protocol, &path.child("protocol")));
    }
    let end = path.child("endPort");
    match (&port.port, port.end_port) {
        (Some(IntOrString::Int(p)), end_port) => {
            errs.extend(port_number(i64::from(*p), &path.child("port")));
            if let Some(e) = end_port {
                if e < *p {
                    errs.push(FieldError::invalid(
                        &end,
                        e,
                        "must be greater than or equal to `port`",
                    ));
                }
                errs.extend(port_number(i64::from(e), &end));
            }
        }
        (Some(IntOrString::Str(name)), end_port) => {
            if let Some(e) = end_port {
                errs.push(FieldError::invalid(
                    &end,
                    e,
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in is_port_name(name) {
                errs.push(FieldError::invalid(&path.child("port"), name, msg));
            }
        }
        (None, Some(e)) => errs.push(FieldError::invalid(
            &end,
            e,
            "may not be specified when `port` is not specified",
        )),
        (None, None) => {}
    }
    errs
}

fn policy_peer(peer: &NetworkPolicyPeer, path: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut count = 0;
    if let Some(sel) = &peer.pod_selector {
        count += 1;
        errs.extend(validate_label_selector(sel, &path.child("podSelector")));
    }
    if let Some(sel) = &peer.namespace_selector {
        count += 1;
        errs.extend(validate_label_selector(
            sel,
            &path.child("namespaceSelector"),
        ));
    }
    if let Some(block) = &peer.ip_block {
        count += 1;
        errs.extend(ip_block(block, &path.child("ipBlock")));
    }
    if count == 0 {
        errs.push(FieldError::required(path, "must specify a peer"));
    } else if count > 1 && peer.ip_block.is_some() {
        errs.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
    errs
}

/// The network of a CIDR as Go's sloppy parser reads it (host bits masked).
fn sloppy_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>().ok().map(|n| n.trunc())
}

fn ip_block(block: &IpBlock, path: &FieldPath) -> Vec<FieldError> {
    let cidr_path = path.child("cidr");
    if block.cidr.is_empty() {
        return vec![FieldError::required(&cidr_path, "")];
    }
    let mut errs = validate_cidr_legacy(&cidr_path, &block.cidr);
    let Some(cidr) = sloppy_net(&block.cidr) else {
        return errs;
    };
    for (i, except) in block.except.iter().enumerate() {
        let p = path.child("except").index(i);
        errs.extend(validate_cidr_legacy(&p, except));
        let Some(ex) = sloppy_net(except) else {
            continue;
        };
        if !cidr.contains(&ex.network()) || cidr.prefix_len() >= ex.prefix_len() {
            errs.push(FieldError::invalid(
                &p,
                except,
                "must be a strict subset of `cidr`",
            ));
        }
    }
    errs
}
