//! The node's upstream resolvers: `--dns-upstream IP[:PORT],...`, or the
//! `nameserver` lines of the node's `/etc/resolv.conf`.
//!
//! Contract: pure parsing, no IO but [`from_system`]'s one file read.
//! From resolv.conf, the cluster DNS address itself is skipped (forwarding
//! to it would loop back into the agent); loopback addresses are kept: the
//! agent forwards from its own socket in the node's network namespace,
//! where a local stub (systemd-resolved's `127.0.0.53`, dnsmasq) answers.
//! Scoped IPv6 addresses (`fe80::1%eth0`) are skipped (the scope cannot
//! be carried by a plain address here). The port is 53 unless given.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The DNS port upstreams listen on by default.
const DNS_PORT: u16 = 53;

/// `--dns-upstream`'s value: `IP[:PORT]` items, comma-separated (IPv6 with
/// a port as `[::1]:5353`). Refuses an empty list and any bad item.
pub fn parse_upstreams(list: &str) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim) {
        if item.is_empty() {
            continue;
        }
        let addr = if let Ok(ip) = item.parse::<IpAddr>() {
            SocketAddr::new(ip, DNS_PORT)
        } else {
            item.parse::<SocketAddr>()
                .map_err(|_| format!("{item:?} is not IP or IP:PORT"))?
        };
        if addr.port() == 0 {
            return Err(format!("{item:?}: port 0"));
        }
        if addr.ip().is_unspecified() || addr.ip().is_multicast() {
            return Err(format!("{item:?}: not a resolver's address"));
        }
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    if out.is_empty() {
        return Err("no resolver given".into());
    }
    Ok(out)
}

/// The `nameserver` addresses of a resolv.conf text, on port 53, without
/// `skip` (the cluster DNS address).
pub fn from_resolv_conf(text: &str, skip: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(Ok(ip)) = words.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if skip.contains(&ip) || ip.is_unspecified() {
            continue;
        }
        let addr = SocketAddr::new(ip, DNS_PORT);
        if !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The upstreams of `path` (the node's `/etc/resolv.conf`): none if it
/// cannot be read (logged; names outside the cluster then get SERVFAIL).
pub fn from_system(path: &Path, skip: &[IpAddr]) -> Vec<SocketAddr> {
    match std::fs::read_to_string(path) {
        Ok(text) => from_resolv_conf(&text, skip),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e,
                "cannot read the node's resolvers: names outside the cluster will not resolve (pass --dns-upstream)");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_flag_takes_addresses_with_or_without_ports() {
        assert_eq!(
            parse_upstreams("192.0.2.254, 198.51.100.1:5353,[2001:db8::1]:53,2001:db8::2").unwrap(),
            [
                sa("192.0.2.254:53"),
                sa("198.51.100.1:5353"),
                sa("[2001:db8::1]:53"),
                sa("[2001:db8::2]:53")
            ]
        );
        assert_eq!(parse_upstreams("1.1.1.1,1.1.1.1").unwrap().len(), 1);
        for bad in ["", " , ", "dns.google", "1.1.1.1:0", "0.0.0.0", "1.1.1.1:x"] {
            assert!(parse_upstreams(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolv_conf_nameservers_without_the_cluster_dns() {
        let text =
            "# generated\nsearch example.com\nnameserver 10.96.0.10\nnameserver 127.0.0.53\n\
                    nameserver   192.0.2.1 # comment\nnameserver fe80::1%eth0\nnameserver\n\
                    options ndots:5\nnameserver 2001:db8::53\nnameserver 192.0.2.1\n";
        let skip = ["10.96.0.10".parse().unwrap()];
        assert_eq!(
            from_resolv_conf(text, &skip),
            [
                sa("127.0.0.53:53"),
                sa("192.0.2.1:53"),
                sa("[2001:db8::53]:53")
            ]
        );
        assert!(from_resolv_conf("", &skip).is_empty());
        assert!(from_system(Path::new("/nonexistent/resolv.conf"), &skip).is_empty());
    }
}
