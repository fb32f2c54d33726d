//! Validation of everything a caller sends in: node names, WireGuard public
//! keys, underlay endpoints and labels.
//!
//! Contract: each function checks lengths before it looks at content, and
//! its [`InvalidInput`] message quotes the input only through
//! [`untrusted`] (escaped, at most 64 characters), so a refusal is never
//! larger than a few hundred bytes whatever was sent. What passes is
//! returned in one canonical form (a key's standard base64, an endpoint's
//! `SocketAddr` text with IPv4-mapped IPv6 turned into IPv4), so two
//! spellings of one key or address compare equal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine;

use super::low_order::is_low_order;
use super::InvalidInput;
use crate::untrusted::untrusted;

/// Longest node name (a DNS-1123 label).
pub const MAX_NODE_NAME: usize = 63;
/// Most endpoints per node.
pub const MAX_ENDPOINTS: usize = 16;

/// Check a node name against the DNS-1123 label rules Kubernetes uses.
pub fn validate_node_name(name: &str) -> Result<(), InvalidInput> {
    let bad = |why: &str| {
        Err(InvalidInput(format!(
            "invalid node name {}: {why} (a DNS-1123 label: 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)",
            untrusted(name)
        )))
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NODE_NAME {
        return bad(&format!("it is {} bytes long", name.len()));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return bad(&format!("it contains {c:?}"));
    }
    if name.starts_with('-') || name.ends_with('-') {
        return bad("it starts or ends with '-'");
    }
    Ok(())
}

/// Decode a WireGuard public key: standard base64 of exactly 32 bytes, not
/// a small-order point. Returns the key's bytes.
pub fn parse_public_key(key: &str) -> Result<[u8; 32], InvalidInput> {
    let trimmed = key.trim();
    // 32 bytes are 44 base64 characters; anything much longer is not a key.
    if trimmed.len() > 64 {
        return Err(InvalidInput(format!(
            "invalid public key {}: {} bytes long; a WireGuard key is 44 base64 characters (the output of `wg pubkey`)",
            untrusted(key),
            key.len()
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(trimmed).map_err(|e| {
        InvalidInput(format!("invalid public key {}: not standard base64 ({e}); expected the output of `wg pubkey`, 44 characters", untrusted(key)))
    })?;
    let bytes = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        InvalidInput(format!(
            "invalid public key {}: decodes to {} bytes, a WireGuard key is 32",
            untrusted(key),
            bytes.len()
        ))
    })?;
    if is_low_order(&bytes) {
        return Err(InvalidInput(format!(
            "invalid public key {}: a small-order Curve25519 point (such as all zeros), which no private key has as its public key and which would make every handshake with it predictable",
            untrusted(key)
        )));
    }
    Ok(bytes)
}

/// The canonical text of a public key: standard base64 of its bytes.
pub fn encode_public_key(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// What an endpoint may not be, besides the fixed rules.
#[derive(Debug, Clone, Default)]
pub struct EndpointRules {
    /// Accept loopback addresses (a cluster whose nodes all run on one host).
    pub allow_loopback: bool,
    /// The control plane's own addresses: no node may claim them.
    pub control_plane: Vec<SocketAddr>,
}

/// Check underlay endpoints: each "ip:port" (IPv6 as "[addr]:port"), port
/// not 0, an address another node can send WireGuard to (see
/// [`refuse_address`]), not the control plane's own address, no more than
/// [`MAX_ENDPOINTS`]. Returns them canonical, duplicates dropped.
pub fn validate_endpoints(
    endpoints: &[String],
    rules: &EndpointRules,
) -> Result<Vec<String>, InvalidInput> {
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(InvalidInput(format!(
            "too many endpoints: {} (at most {MAX_ENDPOINTS})",
            endpoints.len()
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(endpoints.len());
    for e in endpoints {
        let addr = parse_endpoint(e)?;
        let bad = |why: String| InvalidInput(format!("invalid endpoint {}: {why}", untrusted(e)));
        if addr.port() == 0 {
            return Err(bad("port 0".into()));
        }
        if let Some(why) = refuse_address(addr.ip(), rules.allow_loopback) {
            return Err(bad(format!("{} is {why}", addr.ip())));
        }
        if rules.control_plane.contains(&addr) {
            return Err(bad(
                "that is the control plane's own address; give the node's WireGuard address (port 51820 by default)".into(),
            ));
        }
        let s = addr.to_string();
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Parse one endpoint, with IPv4-mapped IPv6 addresses turned into IPv4.
pub fn parse_endpoint(e: &str) -> Result<SocketAddr, InvalidInput> {
    // The longest IPv6 endpoint ("[v6 with v4 tail]:65535") is 53 bytes.
    let parsed = if e.len() > 64 {
        None
    } else {
        e.trim().parse::<SocketAddr>().ok()
    };
    let addr = parsed.ok_or_else(|| {
        InvalidInput(format!(
            "invalid endpoint {}: expected ip:port, e.g. 192.0.2.10:51820 or [2001:db8::1]:51820",
            untrusted(e)
        ))
    })?;
    Ok(SocketAddr::new(addr.ip().to_canonical(), addr.port()))
}

/// Why `ip` cannot be a node's underlay address, if it cannot. Refused, as
/// Kubernetes refuses them for endpoints: unspecified and "this network"
/// (0.0.0.0/8, ::), loopback (unless allowed), link-local (169.254.0.0/16,
/// fe80::/10: meaningful on one link only), multicast, and the IPv4
/// limited broadcast address.
pub fn refuse_address(ip: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let ip = ip.to_canonical();
    if ip.is_unspecified() {
        return Some("the unspecified address, not an address a peer can send to");
    }
    if ip.is_loopback() && !allow_loopback {
        return Some("a loopback address: every other node would send to itself (loopback endpoints are accepted only with --allow-loopback-endpoints, for clusters on one host)");
    }
    if ip.is_multicast() {
        return Some("a multicast address; a node's endpoint must be one node's unicast address");
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4 == Ipv4Addr::BROADCAST {
                return Some(
                    "the broadcast address; a node's endpoint must be one node's unicast address",
                );
            }
            if v4.octets()[0] == 0 {
                return Some("in 0.0.0.0/8 (\"this network\"), which cannot be sent to");
            }
            if v4.is_link_local() {
                return Some("link-local (169.254.0.0/16): reachable on one link only");
            }
        }
        IpAddr::V6(v6) => {
            if v6.segments()[0] & 0xffc0 == 0xfe80 {
                return Some("link-local (fe80::/10): reachable on one link only");
            }
        }
    }
    None
}

/// Check labels: keys 1-253 characters of [A-Za-z0-9._/-], values at most
/// 63 characters of [A-Za-z0-9._-], at most 64 labels.
pub fn validate_labels<'a>(
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<(), InvalidInput> {
    let ok_key = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-');
    let ok_val = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut n = 0;
    for (k, v) in labels {
        n += 1;
        if n > 64 {
            return Err(InvalidInput("too many labels (at most 64)".into()));
        }
        if k.is_empty() || k.len() > 253 || !k.chars().all(ok_key) {
            return Err(InvalidInput(format!(
                "invalid label key {}: 1-253 characters of letters, digits, '.', '_', '/', '-'",
                untrusted(k)
            )));
        }
        if v.len() > 63 || !v.chars().all(ok_val) {
            return Err(InvalidInput(format!(
                "invalid value {} for label {}: at most 63 letters, digits, '.', '_', '-'",
                untrusted(v),
                untrusted(k)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["a", "node-1", "n0", &"a".repeat(63)] {
            validate_node_name(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("Node1", "'N'"),
            ("-a", "starts or ends"),
            ("a-", "starts or ends"),
            ("a_b", "'_'"),
            ("a.b", "'.'"),
            (&"a".repeat(64), "64 bytes"),
        ] {
            let e = validate_node_name(bad).unwrap_err();
            assert!(e.0.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn huge_or_hostile_input_gives_a_short_message() {
        let huge = "a\n".repeat(500_000);
        for e in [
            validate_node_name(&huge).unwrap_err(),
            parse_public_key(&huge).unwrap_err(),
            validate_endpoints(std::slice::from_ref(&huge), &EndpointRules::default()).unwrap_err(),
            validate_labels([(&huge, &huge)]).unwrap_err(),
        ] {
            assert!(e.0.len() < 400, "{} bytes: {}", e.0.len(), e.0);
            assert!(!e.0.contains('\n'), "{e}");
            assert!(e.0.contains("(1000000 bytes)"), "{e}");
        }
    }

    #[test]
    fn public_keys() {
        let good = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        assert_eq!(parse_public_key(&good).unwrap(), [7u8; 32]);
        assert_eq!(encode_public_key(&[7u8; 32]), good);
        let e = parse_public_key("not base64!").unwrap_err();
        assert!(e.0.contains("not standard base64"), "{e}");
        let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
        let e = parse_public_key(&short).unwrap_err();
        assert!(e.0.contains("31 bytes"), "{e}");
        let e = parse_public_key("").unwrap_err();
        assert!(e.0.contains("0 bytes"), "{e}");
    }

    #[test]
    fn every_low_order_key_is_refused() {
        for point in super::super::low_order::LOW_ORDER_POINTS {
            for high in [0u8, 0x80] {
                let mut p = point;
                p[31] |= high;
                let text = encode_public_key(&p);
                let e = parse_public_key(&text).unwrap_err();
                assert!(e.0.contains("small-order"), "{text}: {e}");
            }
        }
    }

    fn check(ep: &str, rules: &EndpointRules) -> Result<Vec<String>, InvalidInput> {
        validate_endpoints(&[ep.to_string()], rules)
    }

    #[test]
    fn endpoints_are_canonical_and_deduplicated() {
        let v = validate_endpoints(
            &[
                "192.0.2.1:51820".into(),
                "[2001:db8::1]:51820".into(),
                "192.0.2.1:51820".into(),
                "[::ffff:192.0.2.1]:51820".into(),
            ],
            &EndpointRules::default(),
        )
        .unwrap();
        assert_eq!(v, vec!["192.0.2.1:51820", "[2001:db8::1]:51820"]);
    }

    #[test]
    fn unusable_endpoints_are_refused_with_the_reason() {
        let rules = EndpointRules {
            allow_loopback: false,
            control_plane: vec!["192.0.2.1:7443".parse().unwrap()],
        };
        for (bad, why) in [
            ("192.0.2.1", "expected ip:port"),
            ("host:51820", "expected ip:port"),
            ("192.0.2.1:0", "port 0"),
            ("0.0.0.0:51820", "unspecified"),
            ("[::]:51820", "unspecified"),
            ("0.1.2.3:51820", "this network"),
            ("127.0.0.1:51820", "loopback"),
            ("127.9.9.9:51820", "loopback"),
            ("[::1]:51820", "loopback"),
            ("[::ffff:127.0.0.1]:51820", "loopback"),
            ("255.255.255.255:51820", "broadcast"),
            ("224.0.0.1:51820", "multicast"),
            ("239.1.1.1:51820", "multicast"),
            ("[ff02::1]:51820", "multicast"),
            ("169.254.1.1:51820", "link-local"),
            ("[fe80::1]:51820", "link-local"),
            ("[febf::1]:51820", "link-local"),
            ("192.0.2.1:7443", "control plane's own address"),
            ("[::ffff:192.0.2.1]:7443", "control plane's own address"),
        ] {
            let e = check(bad, &rules).unwrap_err();
            assert!(e.0.contains(why), "{bad}: {e}");
        }
        // The control plane's host with the WireGuard port is a node's
        // endpoint (a control-plane node that also runs an agent).
        check("192.0.2.1:51820", &rules).unwrap();
        check("[fec0::1]:51820", &rules).unwrap();
        let too_many: Vec<String> = (1..=17).map(|i| format!("192.0.2.{i}:1")).collect();
        let e = validate_endpoints(&too_many, &rules).unwrap_err();
        assert!(e.0.contains("too many"), "{e}");
    }

    #[test]
    fn loopback_only_when_allowed() {
        let rules = EndpointRules {
            allow_loopback: true,
            control_plane: vec![],
        };
        assert_eq!(
            check("127.0.3.1:51820", &rules).unwrap(),
            vec!["127.0.3.1:51820"]
        );
        check("[::1]:51820", &rules).unwrap();
        // Everything else is still refused.
        assert!(check("0.0.0.0:51820", &rules).is_err());
        assert!(check("169.254.0.1:51820", &rules).is_err());
    }

    #[test]
    fn labels() {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "topology.kubernetes.io/zone".to_string(),
            "eu-1".to_string(),
        );
        validate_labels(&m).unwrap();
        m.insert("bad key".to_string(), "x".to_string());
        assert!(validate_labels(&m).is_err());
        let many: std::collections::BTreeMap<String, String> = (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let e = validate_labels(&many).unwrap_err();
        assert!(e.0.contains("too many labels"), "{e}");
    }
}
