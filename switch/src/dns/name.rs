//! Name helpers for the cluster zone: label syntax, reverse (PTR) names,
//! and the dashed addresses of pod records (`10-244-1-5.<ns>.pod.<zone>`).
//!
//! Everything works on lower-case ASCII names without the trailing dot and
//! never panics.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `s` is a DNS label Kubernetes would accept as a name part
/// (RFC 1123: 1-63 of `a-z0-9-`, starting and ending alphanumeric; upper
/// case is accepted and compared case-insensitively).
pub(crate) fn valid_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// The PTR owner name of `ip`: `d.c.b.a.in-addr.arpa` or the 32 nibbles of
/// an IPv6 address under `ip6.arpa`.
pub(crate) fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                s.push(nibble(byte & 0x0f));
                s.push('.');
                s.push(nibble(byte >> 4));
                s.push('.');
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

fn nibble(n: u8) -> char {
    char::from_digit(u32::from(n), 16).unwrap_or('0')
}

/// Whether `name` is a reverse-lookup name (under `in-addr.arpa` or
/// `ip6.arpa`).
pub(crate) fn is_reverse(name: &str) -> bool {
    name == "in-addr.arpa"
        || name == "ip6.arpa"
        || name.ends_with(".in-addr.arpa")
        || name.ends_with(".ip6.arpa")
}

/// The address of a pod record's first label: `10-244-1-5` (IPv4) or the
/// IPv6 address with `-` for `:` (`fd00--5`). `None` if it is not one.
pub(crate) fn undash(label: &str) -> Option<IpAddr> {
    let parts: Vec<&str> = label.split('-').collect();
    if parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.len() <= 3) {
        let mut octets = [0u8; 4];
        for (o, p) in octets.iter_mut().zip(&parts) {
            // Leading zeros ("010") are not how Kubernetes writes them.
            if p.len() > 1 && p.starts_with('0') {
                return None;
            }
            *o = p.parse().ok()?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if label.contains("--") || parts.len() == 8 {
        return label
            .replace('-', ":")
            .parse::<Ipv6Addr>()
            .ok()
            .filter(|a| !a.is_unspecified())
            .map(IpAddr::V6);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["a", "web", "web-1", "0abc", &"a".repeat(63)] {
            assert!(valid_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a.b", "a_b", &"a".repeat(64), "ü"] {
            assert!(!valid_label(bad), "{bad}");
        }
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.96.0.10".parse().unwrap()),
            "10.0.96.10.in-addr.arpa"
        );
        let v6 = reverse_name("fd00::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with(".0.0.d.f.ip6.arpa"), "{v6}");
        assert_eq!(v6.split('.').count(), 34);
        assert!(is_reverse(&v6) && is_reverse("in-addr.arpa"));
        assert!(!is_reverse("arpa") && !is_reverse("web.default.svc.cluster.local"));
    }

    #[test]
    fn pod_labels() {
        assert_eq!(undash("10-244-1-5"), Some("10.244.1.5".parse().unwrap()));
        assert_eq!(undash("fd00--5"), Some("fd00::5".parse().unwrap()));
        for bad in [
            "10-244-1",
            "10-244-1-256",
            "10-244-01-5",
            "a-b-c-d",
            "web",
            "--",
            "1-2-3-4-5",
        ] {
            assert_eq!(undash(bad), None, "{bad}");
        }
    }
}
