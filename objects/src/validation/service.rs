//! Service validation: Kubernetes' `ValidateService` and
//! `ValidateServiceUpdate`, plus the allocator's range checks against the
//! cluster's settings.

use std::collections::HashSet;
use std::net::IpAddr;

use super::meta::{
    name_errors, object_meta, object_meta_update, port_num_or_name, port_number, protocol,
};
use super::{meta::validate_labels, ValidationContext};
use crate::field::{BadValue, FieldError, FieldPath};
use crate::ip::{validate_ip, validate_non_special_ip};
use crate::names::{is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_label_key};
use crate::types::service::{
    Service, ServicePort, CLUSTER_IP_NONE, MAX_CLIENT_IP_AFFINITY_SECONDS,
};
use crate::values::{
    IntOrString, IpFamily, IpFamilyPolicy, ServiceType, SessionAffinity, TrafficPolicy,
};

/// Kubernetes' `isHeadlessService`: `clusterIPs` is exactly `["None"]`.
fn headless(svc: &Service) -> bool {
    svc.spec.cluster_ips.len() == 1 && svc.spec.cluster_ips[0] == CLUSTER_IP_NONE
}

/// Every error of a Service about to be created.
pub fn validate_service(svc: &Service, ctx: &ValidationContext) -> Vec<FieldError> {
    let mut errs = object_meta(&svc.metadata, true, is_dns1035_label);
    let spec = FieldPath::new("spec");
    let s = &svc.spec;
    let stype = s.service_type.clone().filter(|t| !t.is_empty());

    if s.ports.is_empty() && !headless(svc) && stype != Some(ServiceType::ExternalName) {
        errs.push(FieldError::required(&spec.child("ports"), ""));
    }
    match stype {
        Some(ServiceType::LoadBalancer) | Some(ServiceType::NodePort) if headless(svc) => {
            let t = if stype == Some(ServiceType::LoadBalancer) {
                "LoadBalancer"
            } else {
                "NodePort"
            };
            errs.push(FieldError::invalid(
                &spec.child("clusterIPs").index(0),
                CLUSTER_IP_NONE,
                format!("may not be set to 'None' for {t} services"),
            ));
        }
        Some(ServiceType::ExternalName) => errs.extend(external_name(svc, &spec)),
        _ => {}
    }

    let mut names = HashSet::new();
    for (i, port) in s.ports.iter().enumerate() {
        errs.extend(service_port(
            port,
            s.ports.len() > 1,
            &mut names,
            &spec.child("ports").index(i),
        ));
    }
    errs.extend(validate_labels(&s.selector, &spec.child("selector")));
    errs.extend(affinity(svc, &spec));
    errs.extend(cluster_ips(svc, &spec));
    for (i, ip) in s.external_ips.iter().enumerate() {
        let p = spec.child("externalIPs").index(i);
        let ip_errs = validate_ip(&p, ip);
        if ip_errs.is_empty() {
            errs.extend(validate_non_special_ip(&p, ip));
        } else {
            errs.extend(ip_errs);
        }
    }
    match &stype {
        None => errs.push(FieldError::required(&spec.child("type"), "")),
        Some(ServiceType::Other(t)) => errs.push(FieldError::not_supported(
            &spec.child("type"),
            t.as_str(),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        )),
        _ => {}
    }
    errs.extend(port_uniqueness(svc, &spec));
    if s.load_balancer_source_ranges.is_some() {
        errs.push(FieldError::forbidden(
            &spec.child("loadBalancerSourceRanges"),
            "not supported by weft: weft does not filter LoadBalancer clients by source",
        ));
    }
    if s.load_balancer_class.is_some() {
        errs.push(FieldError::forbidden(
            &spec.child("loadBalancerClass"),
            "not supported by weft: weft's agents are the only load-balancer implementation",
        ));
    }
    if s.traffic_distribution.is_some() {
        errs.push(FieldError::forbidden(
            &spec.child("trafficDistribution"),
            "not supported by weft: every ready endpoint is used",
        ));
    }
    let is_lb = stype == Some(ServiceType::LoadBalancer);
    if s.allocate_load_balancer_node_ports.is_some() && !is_lb {
        errs.push(FieldError::forbidden(
            &spec.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if is_lb && s.allocate_load_balancer_node_ports.is_none() {
        errs.push(FieldError::required(
            &spec.child("allocateLoadBalancerNodePorts"),
            "",
        ));
    }
    errs.extend(traffic_policies(svc, &spec));
    errs.extend(cluster_settings(svc, &spec, ctx));
    errs
}

fn external_name(svc: &Service, spec: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = &svc.spec;
    if !s.cluster_ips.is_empty() {
        errs.push(FieldError::forbidden(
            &spec.child("clusterIPs"),
            "may not be set for ExternalName services",
        ));
    }
    if !s.ip_families.is_empty() {
        errs.push(FieldError::forbidden(
            &spec.child("ipFamilies"),
            "may not be set for ExternalName services",
        ));
    }
    if s.ip_family_policy.is_some() {
        errs.push(FieldError::forbidden(
            &spec.child("ipFamilyPolicy"),
            "may not be set for ExternalName services",
        ));
    }
    let cname = s
        .external_name
        .strip_suffix('.')
        .unwrap_or(&s.external_name);
    if cname.is_empty() {
        errs.push(FieldError::required(&spec.child("externalName"), ""));
    } else {
        errs.extend(name_errors(
            cname,
            &spec.child("externalName"),
            is_dns1123_subdomain,
        ));
    }
    errs
}

fn service_port(
    port: &ServicePort,
    require_name: bool,
    names: &mut HashSet<String>,
    path: &FieldPath,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if require_name && port.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else if !port.name.is_empty() {
        errs.extend(name_errors(
            &port.name,
            &path.child("name"),
            is_dns1123_label,
        ));
        if !names.insert(port.name.clone()) {
            errs.push(FieldError::duplicate(&path.child("name"), &port.name));
        }
    }
    errs.extend(port_number(i64::from(port.port), &path.child("port")));
    errs.extend(protocol(&port.protocol, &path.child("protocol")));
    let target = port.target_port.clone().unwrap_or(IntOrString::Int(0));
    errs.extend(port_num_or_name(&target, &path.child("targetPort")));
    if let Some(app) = &port.app_protocol {
        errs.extend(name_errors(app, &path.child("appProtocol"), is_label_key));
    }
    errs
}

fn affinity(svc: &Service, spec: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let path = spec.child("sessionAffinity");
    match &svc.spec.session_affinity {
        None => errs.push(FieldError::required(&path, "")),
        Some(a) if a.is_empty() => errs.push(FieldError::required(&path, "")),
        Some(SessionAffinity::Other(a)) => errs.push(FieldError::not_supported(
            &path,
            a.as_str(),
            &["ClientIP", "None"],
        )),
        Some(SessionAffinity::None) => {
            if svc.spec.session_affinity_config.is_some() {
                errs.push(FieldError::forbidden(
                    &spec.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        Some(SessionAffinity::ClientIp) => {
            let cfg_path = spec.child("sessionAffinityConfig");
            let when = "when session affinity type is ClientIP";
            let Some(cfg) = &svc.spec.session_affinity_config else {
                return vec![FieldError::required(&cfg_path, when)];
            };
            let Some(client) = &cfg.client_ip else {
                return vec![FieldError::required(&cfg_path.child("clientIP"), when)];
            };
            let t_path = cfg_path.child("clientIP").child("timeoutSeconds");
            match client.timeout_seconds {
                None => errs.push(FieldError::required(&t_path, when)),
                Some(t) if t <= 0 || t > MAX_CLIENT_IP_AFFINITY_SECONDS => {
                    errs.push(FieldError::invalid(
                        &t_path,
                        t,
                        format!(
                            "must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
    }
    errs
}

/// Kubernetes' `ValidateServiceClusterIPsRelatedFields`.
fn cluster_ips(svc: &Service, spec: &FieldPath) -> Vec<FieldError> {
    let s = &svc.spec;
    if svc.service_type() == ServiceType::ExternalName {
        return Vec::new();
    }
    let mut errs = Vec::new();
    let ips_path = spec.child("clusterIPs");
    let ips_value = BadValue::from(s.cluster_ips.as_slice());
    if !s.cluster_ip.is_empty() {
        if s.cluster_ips.is_empty() {
            errs.push(FieldError::required(&ips_path, ""));
        } else if s.cluster_ips[0] != s.cluster_ip {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value.clone(),
                "first value must match `clusterIP`",
            ));
        }
    } else if !s.cluster_ips.is_empty() {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value.clone(),
            "must be empty when `clusterIP` is not specified",
        ));
    }
    let mut seen = Vec::new();
    for (i, fam) in s.ip_families.iter().enumerate() {
        let p = spec.child("ipFamilies").index(i);
        if let IpFamily::Other(f) = fam {
            errs.push(FieldError::not_supported(&p, f.as_str(), &["IPv4", "IPv6"]));
        }
        if seen.contains(fam) {
            errs.push(FieldError::duplicate(&p, fam.as_str()));
        }
        seen.push(fam.clone());
    }
    if let Some(IpFamilyPolicy::Other(p)) = &s.ip_family_policy {
        errs.push(FieldError::not_supported(
            &spec.child("ipFamilyPolicy"),
            p.as_str(),
            &["PreferDualStack", "RequireDualStack", "SingleStack"],
        ));
    }
    let mut bad_ips = false;
    for (i, ip) in s.cluster_ips.iter().enumerate() {
        if i == 0 && ip == CLUSTER_IP_NONE {
            if s.cluster_ips.len() > 1 {
                bad_ips = true;
                errs.push(FieldError::invalid(
                    &ips_path,
                    ips_value.clone(),
                    "'None' must be the first and only value",
                ));
            }
            continue;
        }
        let ip_errs = validate_ip(&ips_path.index(i), ip);
        bad_ips |= !ip_errs.is_empty();
        errs.extend(ip_errs);
    }
    if s.cluster_ips.len() > 2 {
        errs.push(FieldError::invalid(
            &ips_path,
            ips_value.clone(),
            "may only hold up to 2 values",
        ));
    }
    if bad_ips {
        return errs;
    }
    if s.cluster_ips.len() > 1 {
        let v4 = s
            .cluster_ips
            .iter()
            .filter(|ip| ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4()))
            .count();
        if v4 != 1 || s.cluster_ips.len() != 2 {
            errs.push(FieldError::invalid(
                &ips_path,
                ips_value,
                "may specify no more than one IP for each IP family",
            ));
        }
    }
    if !headless(svc) {
        for (i, (ip, fam)) in s.cluster_ips.iter().zip(&s.ip_families).enumerate() {
            let is_v6 = ip.parse::<IpAddr>().is_ok_and(|a| a.is_ipv6());
            let want = match fam {
                IpFamily::IPv4 if is_v6 => "IPv4",
                IpFamily::IPv6 if !is_v6 => "IPv6",
                _ => continue,
            };
            errs.push(FieldError::invalid(
                &ips_path.index(i),
                ip,
                format!("expected an {want} value as indicated by `ipFamilies[{i}]`"),
            ));
        }
    }
    errs
}

/// `Duplicate value`s of node ports and of (protocol, port) pairs, and node
/// ports on ClusterIP Services.
fn port_uniqueness(svc: &Service, spec: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let ports = &svc.spec.ports;
    if svc.spec.service_type == Some(ServiceType::ClusterIp) {
        for (i, _) in ports.iter().enumerate().filter(|(_, p)| p.node_port != 0) {
            errs.push(FieldError::forbidden(
                &spec.child("ports").index(i).child("nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    let mut node_ports = HashSet::new();
    for (i, p) in ports.iter().enumerate().filter(|(_, p)| p.node_port != 0) {
        if !node_ports.insert((p.protocol(), p.node_port)) {
            errs.push(FieldError::duplicate(
                &spec.child("ports").index(i).child("nodePort"),
                p.node_port,
            ));
        }
    }
    let mut pairs = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let proto = p
            .protocol
            .as_ref()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        if !pairs.insert((proto.clone(), p.port)) {
            // Kubernetes prints the internal ServicePort struct as JSON.
            let raw = format!(
                r#"{{"Name":"","Protocol":"{proto}","AppProtocol":null,"Port":{},"TargetPort":0,"NodePort":0}}"#,
                p.port
            );
            errs.push(FieldError::duplicate(
                &spec.child("ports").index(i),
                BadValue::Raw(raw),
            ));
        }
    }
    errs
}

fn traffic_policies(svc: &Service, spec: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = &svc.spec;
    let etp = spec.child("externalTrafficPolicy");
    match (&s.external_traffic_policy, svc.externally_accessible()) {
        (Some(p), false) if !p.is_empty() => errs.push(FieldError::invalid(
            &etp,
            p.as_str(),
            "may only be set for externally-accessible services",
        )),
        (None, true) => errs.push(FieldError::required(&etp, "")),
        (Some(p), true) if p.is_empty() => errs.push(FieldError::required(&etp, "")),
        (Some(TrafficPolicy::Other(p)), true) => errs.push(FieldError::not_supported(
            &etp,
            p.as_str(),
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    let hc = spec.child("healthCheckNodePort");
    if !svc.needs_health_check() {
        if s.health_check_node_port != 0 {
            errs.push(FieldError::invalid(
                &hc,
                s.health_check_node_port,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if s.health_check_node_port != 0 {
        errs.extend(port_number(i64::from(s.health_check_node_port), &hc));
    }
    let itp = spec.child("internalTrafficPolicy");
    match &s.internal_traffic_policy {
        None if matches!(
            s.service_type,
            Some(ServiceType::ClusterIp | ServiceType::NodePort | ServiceType::LoadBalancer)
        ) =>
        {
            errs.push(FieldError::required(&itp, ""))
        }
        Some(TrafficPolicy::Other(p)) => errs.push(FieldError::not_supported(
            &itp,
            p.as_str(),
            &["Cluster", "Local"],
        )),
        _ => {}
    }
    errs
}

/// The allocator's checks of given values against the cluster's settings.
fn cluster_settings(svc: &Service, spec: &FieldPath, ctx: &ValidationContext) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let s = &svc.spec;
    if svc.service_type() != ServiceType::ExternalName {
        let ips_value = BadValue::from(s.cluster_ips.as_slice());
        for ip in s.cluster_ips.iter().filter(|ip| *ip != CLUSTER_IP_NONE) {
            let Ok(addr) = ip.parse::<IpAddr>() else {
                continue;
            };
            let problem = match ctx.service_cidr_for(&addr) {
                None => Some(format!("{} is not configured on this cluster", if addr.is_ipv4() { "IPv4" } else { "IPv6" })),
                Some(net) if !ctx.cluster_ip_allocatable(&addr) => Some(format!(
                    "the provided IP ({addr}) is not in the valid range. The range of valid IPs is {net}"
                )),
                Some(_) => None,
            };
            if let Some(p) = problem {
                errs.push(FieldError::invalid(
                    &spec.child("clusterIPs"),
                    ips_value.clone(),
                    format!("failed to allocate IP {addr}: {p}"),
                ));
            }
        }
        for (i, fam) in s.ip_families.iter().enumerate() {
            let configured = match fam {
                IpFamily::IPv4 => ctx.service_cidrs.iter().any(|n| n.addr().is_ipv4()),
                IpFamily::IPv6 => ctx.service_cidrs.iter().any(|n| n.addr().is_ipv6()),
                IpFamily::Other(_) => true,
            };
            if !configured {
                errs.push(FieldError::invalid(
                    &spec.child("ipFamilies").index(i),
                    fam.as_str(),
                    "not configured on this cluster",
                ));
            }
        }
        if s.ip_family_policy == Some(IpFamilyPolicy::RequireDualStack) && !ctx.dual_stack() {
            errs.push(FieldError::invalid(
                &spec.child("ipFamilyPolicy"),
                "RequireDualStack",
                "this cluster is not configured for dual-stack services",
            ));
        }
    }
    let not_in_range = format!(
        "provided port is not in the valid range. The range of valid ports is {}",
        ctx.node_ports
    );
    if svc.service_type() != ServiceType::ClusterIp {
        for (i, p) in s.ports.iter().enumerate() {
            if p.node_port != 0 && !ctx.node_ports.contains(i64::from(p.node_port)) {
                errs.push(FieldError::invalid(
                    &spec.child("ports").index(i).child("nodePort"),
                    p.node_port,
                    not_in_range.clone(),
                ));
            }
        }
    }
    let hc = s.health_check_node_port;
    if svc.needs_health_check() && hc != 0 && !ctx.node_ports.contains(i64::from(hc)) {
        errs.push(FieldError::invalid(
            &spec.child("healthCheckNodePort"),
            hc,
            format!("failed to allocate requested HealthCheck NodePort {hc}: {not_in_range}"),
        ));
    }
    errs
}

/// Every error of an update of the Service `old` to `new`: metadata
/// immutability, ClusterIPs and IP families that may not change (only a
/// secondary may be added or released), a health-check port that may not
/// change, then `new`'s own errors.
pub fn validate_service_update(
    new: &Service,
    old: &Service,
    ctx: &ValidationContext,
) -> Vec<FieldError> {
    let mut errs = object_meta_update(&new.metadata, &old.metadata);
    errs.extend(upgrade_downgrade(new, old));
    if old.needs_health_check()
        && new.needs_health_check()
        && new.spec.health_check_node_port != old.spec.health_check_node_port
    {
        errs.push(FieldError::forbidden(
            &FieldPath::new("spec").child("healthCheckNodePort"),
            "field is immutable",
        ));
    }
    errs.extend(validate_service(new, ctx));
    errs
}

fn upgrade_downgrade(new: &Service, old: &Service) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if new.service_type() == ServiceType::ExternalName
        || old.service_type() == ServiceType::ExternalName
    {
        return errs;
    }
    let ips = FieldPath::new("spec").child("clusterIPs");
    let (n, o) = (&new.spec.cluster_ips, &old.spec.cluster_ips);
    let value = || BadValue::from(n.as_slice());
    if !(headless(new) && headless(old)) {
        if n.len() == o.len() {
            for (i, ip) in o.iter().enumerate() {
                if n.get(i) != Some(ip) {
                    errs.push(FieldError::invalid(
                        &ips.index(i),
                        value(),
                        "may not change once set",
                    ));
                }
            }
        } else if o.len() > n.len() {
            if n.is_empty() {
                errs.push(FieldError::invalid(
                    &ips.index(0),
                    value(),
                    "primary clusterIP can not be unset",
                ));
            }
            if !o.is_empty() && !n.is_empty() && n[0] != o[0] {
                errs.push(FieldError::invalid(
                    &ips.index(0),
                    value(),
                    "may not change once set",
                ));
            }
            if n.len() == 1 && new.spec.ip_family_policy != Some(IpFamilyPolicy::SingleStack) {
                errs.push(FieldError::invalid(
                    &FieldPath::new("spec").child("ipFamilyPolicy"),
                    new.spec
                        .ip_family_policy
                        .as_ref()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    "must be set to 'SingleStack' when releasing the secondary clusterIP",
                ));
            }
        } else if !o.is_empty() && n[0] != o[0] {
            errs.push(FieldError::invalid(
                &ips.index(0),
                value(),
                "may not change once set",
            ));
        }
    }
    if headless(new) == headless(old) && !headless(new) {
        let (nf, of) = (&new.spec.ip_families, &old.spec.ip_families);
        let fams = FieldPath::new("spec").child("ipFamilies");
        let fam_value = || BadValue::Json(nf.iter().map(|f| f.as_str()).collect::<Vec<_>>().into());
        let changed_same_len = nf.len() == of.len() && nf != of;
        let primary_changed = !nf.is_empty() && !of.is_empty() && nf[0] != of[0];
        if changed_same_len || primary_changed {
            errs.push(FieldError::invalid(
                &fams.index(0),
                fam_value(),
                "may not change once set",
            ));
        }
    }
    errs
}
