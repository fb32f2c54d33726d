//! IP address and CIDR checks with Kubernetes' messages
//! (`k8s.io/apimachinery/pkg/util/validation/ip.go`, strict mode, and
//! `ValidateNonSpecialIP`).
//!
//! Contract: every function returns all the field errors Kubernetes returns
//! for the value, at the given path; parsing is done with `std`/`ipnet`, so
//! IPv4 with leading zeros (which Go parses "sloppily") is recognised only to
//! give Kubernetes' precise "leading 0s" message.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::field::{FieldError, FieldPath};

/// `a.b.c.d` with decimal octets, some with leading zeros (Go's sloppy form).
fn sloppy_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|c| c.is_ascii_digit()))
        && parts
            .iter()
            .all(|p| p.parse::<u16>().map(|v| v <= 255).unwrap_or(false))
}

fn is_4in6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some())
}

/// Parses an IP as Kubernetes' strict legacy check does; `Err` holds the errors.
fn parse_ip(path: &FieldPath, value: &str) -> Result<IpAddr, Vec<FieldError>> {
    match IpAddr::from_str(value) {
        Ok(ip) if is_4in6(&ip) => Err(vec![FieldError::invalid(
            path,
            value,
            "must not be an IPv4-mapped IPv6 address",
        )]),
        Ok(ip) => Ok(ip),
        Err(_) if sloppy_v4(value) => Err(vec![FieldError::invalid(
            path,
            value,
            "must not have leading 0s",
        )]),
        Err(_) => Err(vec![FieldError::invalid(
            path,
            value,
            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
        )]),
    }
}

/// Kubernetes' `IsValidIPForLegacyField` (strict): `clusterIP`-style fields.
pub fn validate_ip_legacy(path: &FieldPath, value: &str) -> Vec<FieldError> {
    parse_ip(path, value).err().unwrap_or_default()
}

/// Kubernetes' `IsValidIP`: a valid IP in canonical form (`clusterIPs`,
/// `externalIPs`).
pub fn validate_ip(path: &FieldPath, value: &str) -> Vec<FieldError> {
    match parse_ip(path, value) {
        Err(errs) => errs,
        Ok(ip) if ip.to_string() != value => vec![FieldError::invalid(
            path,
            value,
            format!("must be in canonical form (\"{ip}\")"),
        )],
        Ok(_) => Vec::new(),
    }
}

/// Kubernetes' `IsValidCIDRForLegacyField` (strict): `ipBlock.cidr` and
/// `ipBlock.except`.
pub fn validate_cidr_legacy(path: &FieldPath, value: &str) -> Vec<FieldError> {
    parse_cidr(path, value).err().unwrap_or_default()
}

/// Parses a CIDR as the strict legacy check does; `Err` holds the errors.
pub fn parse_cidr(path: &FieldPath, value: &str) -> Result<IpNet, Vec<FieldError>> {
    let invalid = || {
        vec![FieldError::invalid(
            path,
            value,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        )]
    };
    let Some((addr, len)) = value.split_once('/') else {
        return Err(invalid());
    };
    let len_ok = !len.is_empty() && len.len() <= 3 && len.bytes().all(|c| c.is_ascii_digit());
    if !len_ok {
        return Err(invalid());
    }
    let leading_zero_len = len.len() > 1 && len.starts_with('0');
    let ip = match IpAddr::from_str(addr) {
        Ok(ip) => ip,
        Err(_) if sloppy_v4(addr) => {
            return Err(vec![FieldError::invalid(
                path,
                value,
                "must not have leading 0s in IP or prefix length",
            )])
        }
        Err(_) => return Err(invalid()),
    };
    let Ok(prefix) = len.parse::<u8>() else {
        return Err(invalid());
    };
    let Ok(net) = IpNet::new(ip, prefix) else {
        return Err(invalid());
    };
    if leading_zero_len {
        return Err(vec![FieldError::invalid(
            path,
            value,
            "must not have leading 0s in IP or prefix length",
        )]);
    }
    if is_4in6(&ip) {
        return Err(vec![FieldError::invalid(
            path,
            value,
            "must not have an IPv4-mapped IPv6 address",
        )]);
    }
    if net.trunc() != net {
        return Err(vec![FieldError::invalid(
            path,
            value,
            "must not have bits set beyond the prefix length",
        )]);
    }
    Ok(net)
}

/// Kubernetes' `ValidateNonSpecialIP`: refuses unspecified, loopback and
/// link-local addresses (for `externalIPs` and endpoint addresses).
pub fn validate_non_special_ip(path: &FieldPath, value: &str) -> Vec<FieldError> {
    let Ok(ip) = IpAddr::from_str(value) else {
        return vec![FieldError::invalid(
            path,
            value,
            "must be a valid IP address",
        )];
    };
    let mut errs = Vec::new();
    if ip.is_unspecified() {
        errs.push(FieldError::invalid(
            path,
            value,
            format!("may not be unspecified ({value})"),
        ));
    }
    if ip.is_loopback() {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the loopback range (127.0.0.0/8, ::1/128)",
        ));
    }
    let link_local_unicast = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    if link_local_unicast {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local range (169.254.0.0/16, fe80::/10)",
        ));
    }
    let link_local_multicast = match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.octets()[0] == 0xff && (v6.octets()[1] & 0x0f) == 0x02,
    };
    if link_local_multicast {
        errs.push(FieldError::invalid(
            path,
            value,
            "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)",
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(errs: Vec<FieldError>) -> Vec<String> {
        errs.into_iter().map(|e| e.to_string()).collect()
    }

    #[test]
    fn ips() {
        let p = FieldPath::new("ip");
        assert!(validate_ip(&p, "10.1.2.3").is_empty());
        assert!(validate_ip(&p, "fd00::1").is_empty());
        assert_eq!(
            msgs(validate_ip(&p, "010.1.2.3")),
            vec![r#"ip: Invalid value: "010.1.2.3": must not have leading 0s"#]
        );
        assert_eq!(
            msgs(validate_ip(&p, "FD00::1")),
            vec![r#"ip: Invalid value: "FD00::1": must be in canonical form ("fd00::1")"#]
        );
        assert_eq!(validate_ip(&p, "::ffff:1.2.3.4").len(), 1);
        assert_eq!(
            msgs(validate_ip(&p, "x")),
            vec![
                r#"ip: Invalid value: "x": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"#
            ]
        );
        assert!(validate_ip_legacy(&p, "FD00::1").is_empty());
    }

    #[test]
    fn cidrs() {
        let p = FieldPath::new("cidr");
        assert_eq!(
            parse_cidr(&p, "10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_cidr(&p, "fd00::/64").is_ok());
        assert_eq!(
            msgs(validate_cidr_legacy(&p, "10.0.0.1/8")),
            vec![
                r#"cidr: Invalid value: "10.0.0.1/8": must not have bits set beyond the prefix length"#
            ]
        );
        assert_eq!(validate_cidr_legacy(&p, "10.0.0.0/33").len(), 1);
        assert_eq!(validate_cidr_legacy(&p, "10.0.0.0").len(), 1);
        assert_eq!(validate_cidr_legacy(&p, "10.0.0.0/08").len(), 1);
        assert_eq!(validate_cidr_legacy(&p, "10.0.0.0/-1").len(), 1);
    }

    #[test]
    fn special_ips() {
        let p = FieldPath::new("ip");
        assert!(validate_non_special_ip(&p, "192.0.2.1").is_empty());
        assert_eq!(validate_non_special_ip(&p, "127.0.0.1").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "0.0.0.0").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "169.254.1.1").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "224.0.0.5").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "fe80::1").len(), 1);
        assert_eq!(validate_non_special_ip(&p, "ff02::1").len(), 1);
    }
}
