//! The ADD result for each CNI version, and reading a `prevResult` back for
//! CHECK. Pure: no IO.
//!
//! What weft puts in a result (`docs/cni.md` shows examples):
//! - `interfaces`: the pod's TUN, `{name: CNI_IFNAME, sandbox: CNI_NETNS}`
//!   (plus `mtu` from 1.1.0). A TUN has no MAC, so there is none.
//! - `ips`: the pod's address as the `/32` (`/128`) it has on the
//!   interface, with `gateway` the node's overlay address (`weft0`, e.g.
//!   `10.244.3.1`), and `interface` pointing at the TUN; before 1.0.0 also
//!   `version: "4"` or `"6"`. The gateway is informational: the pod's
//!   default route goes straight out of its TUN, which needs no next hop.
//! - `routes`: the default route of the address's family, without `gw`.
//! - `dns`: the cluster DNS address; the search list
//!   `<ns>.svc.<domain>`, `svc.<domain>`, `<domain>` (without the first
//!   when the pod's namespace is unknown); `ndots:5`.
//! - Given a `prevResult` (weft-cni not first in its chain), weft's
//!   interface, IPs and routes are appended to it, and its DNS is kept if it
//!   has any.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use weft_agent_api::NodeInfo;

use super::error::{code, CniError};
use super::version::CniVersion;

/// What an ADD made, to describe in its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached<'a> {
    /// The pod's address.
    pub address: IpAddr,
    /// `CNI_IFNAME`.
    pub ifname: &'a str,
    /// `CNI_NETNS`.
    pub netns: &'a str,
    /// The pod's Kubernetes namespace, for the DNS search list.
    pub pod_namespace: Option<&'a str>,
}

/// The pod's address as it is on its interface: a /32 or /128.
pub fn host_prefix(address: IpAddr) -> IpNet {
    IpNet::from(address)
}

/// The default route's destination for `address`'s family.
pub fn default_dst(address: IpAddr) -> IpNet {
    match address {
        IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
        IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
    }
}

/// The ADD result under `version`, appended to `prev` if there is one.
pub fn add_result(
    version: CniVersion,
    pod: &Attached<'_>,
    node: &NodeInfo,
    mtu: u32,
    prev: Option<&Value>,
) -> Value {
    let mut out = match prev {
        Some(Value::Object(prev)) => prev.clone(),
        _ => Map::new(),
    };
    out.insert("cniVersion".into(), json!(version.as_str()));

    let mut interface = json!({"name": pod.ifname, "sandbox": pod.netns});
    if version.interfaces_have_mtu() && mtu > 0 {
        interface["mtu"] = json!(mtu);
    }
    let index = push(&mut out, "interfaces", interface);

    let mut ip = Map::new();
    if version.ips_have_version() {
        let family = if pod.address.is_ipv4() { "4" } else { "6" };
        ip.insert("version".into(), json!(family));
    }
    ip.insert(
        "address".into(),
        json!(host_prefix(pod.address).to_string()),
    );
    if let Ok(gateway) = node.node_address.parse::<IpAddr>() {
        if gateway.is_ipv4() == pod.address.is_ipv4() {
            ip.insert("gateway".into(), json!(gateway.to_string()));
        }
    }
    ip.insert("interface".into(), json!(index));
    push(&mut out, "ips", Value::Object(ip));
    let route = json!({"dst": default_dst(pod.address).to_string()});
    push(&mut out, "routes", route);

    let prev_has_dns = out
        .get("dns")
        .and_then(Value::as_object)
        .is_some_and(|d| !d.is_empty());
    if !prev_has_dns {
        out.insert("dns".into(), dns(node, pod.pod_namespace));
    }
    Value::Object(out)
}

/// Appends `item` to the array at `key` (made anew if missing or not an
/// array); its index.
fn push(out: &mut Map<String, Value>, key: &str, item: Value) -> usize {
    match out.get_mut(key) {
        Some(Value::Array(items)) => {
            items.push(item);
            items.len() - 1
        }
        _ => {
            out.insert(key.into(), Value::Array(vec![item]));
            0
        }
    }
}

/// The DNS block: cluster DNS, the Kubernetes search list, ndots:5.
fn dns(node: &NodeInfo, pod_namespace: Option<&str>) -> Value {
    let mut dns = Map::new();
    if let Ok(server) = node.cluster_dns.parse::<IpAddr>() {
        dns.insert("nameservers".into(), json!([server.to_string()]));
    }
    let domain = node.cluster_domain.trim_matches('.');
    if !domain.is_empty() {
        let mut search = Vec::new();
        if let Some(ns) = pod_namespace {
            search.push(format!("{ns}.svc.{domain}"));
        }
        search.push(format!("svc.{domain}"));
        search.push(domain.to_string());
        dns.insert("search".into(), json!(search));
    }
    dns.insert("options".into(), json!(["ndots:5"]));
    Value::Object(dns)
}

/// A `prevResult`, as much of it as CHECK reads (any version's format).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrevResult {
    /// Its interfaces.
    #[serde(default)]
    pub interfaces: Vec<PrevInterface>,
    /// Its IPs.
    #[serde(default)]
    pub ips: Vec<PrevIp>,
    /// Its routes.
    #[serde(default)]
    pub routes: Vec<PrevRoute>,
}

/// An interface of a `prevResult`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct PrevInterface {
    /// Its name.
    pub name: String,
    /// Its namespace; empty or absent on the host.
    #[serde(default)]
    pub sandbox: Option<String>,
}

/// An IP of a `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PrevIp {
    /// The address with its prefix.
    pub address: IpNet,
    /// The index of its interface, if given.
    #[serde(default)]
    pub interface: Option<usize>,
}

/// A route of a `prevResult`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PrevRoute {
    /// The destination.
    pub dst: IpNet,
    /// The next hop, if any.
    #[serde(default)]
    pub gw: Option<IpAddr>,
}

impl PrevResult {
    /// Reads a `prevResult` object (code 6 if it is malformed).
    pub fn parse(v: &Value) -> Result<Self, CniError> {
        Self::deserialize(v).map_err(|e| {
            CniError::new(
                code::DECODE_FAILURE,
                format!("prevResult is not a CNI result: {e}"),
            )
        })
    }
}

/// What CHECK must find in the namespace, from `prevResult` and the
/// agent's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The pod's address on the interface.
    pub address: IpNet,
    /// The routes weft made that `prevResult` still lists (a later plugin
    /// may have dropped some; those are not checked).
    pub routes: Vec<IpNet>,
}

/// Compares `prev` with the agent's record of the attachment (its address),
/// for the interface `ifname` in `netns`. Code 105 on any mismatch.
pub fn expect_from_prev(
    prev: &PrevResult,
    ifname: &str,
    netns: &str,
    address: IpAddr,
) -> Result<Expected, CniError> {
    let fail = |msg: String| CniError::new(code::CHECK_FAILED, msg);
    let index = prev
        .interfaces
        .iter()
        .position(|i| {
            i.name == ifname
                && i.sandbox
                    .as_deref()
                    .is_none_or(|s| s.is_empty() || s == netns)
        })
        .ok_or_else(|| fail(format!("prevResult lists no interface {ifname} in {netns}")))?;
    let want = host_prefix(address);
    let mine: Vec<&PrevIp> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == index))
        .collect();
    if let Some(other) = mine.iter().find(|ip| ip.address != want) {
        return Err(fail(format!(
            "prevResult gives {ifname} the address {}, but weft-agent assigned it {want}",
            other.address
        )));
    }
    if mine.is_empty() {
        return Err(fail(format!(
            "prevResult lists no address of {ifname}; weft-agent assigned it {want}"
        )));
    }
    let default = default_dst(address);
    let routes = prev
        .routes
        .iter()
        .filter(|r| r.dst == default && r.gw.is_none())
        .map(|r| r.dst)
        .take(1)
        .collect();
    Ok(Expected {
        address: want,
        routes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeInfo {
        NodeInfo {
            pod_cidr: "10.244.3.0/24".into(),
            node_address: "10.244.3.1".into(),
            cluster_dns: "10.96.0.10".into(),
            cluster_domain: "cluster.local".into(),
            mtu: 1420,
            ..NodeInfo::default()
        }
    }

    fn pod(ns: Option<&str>) -> Attached<'_> {
        Attached {
            address: "10.244.3.5".parse().unwrap(),
            ifname: "eth0",
            netns: "/var/run/netns/cni-1",
            pod_namespace: ns,
        }
    }

    #[test]
    fn result_1_1_0() {
        let r = add_result(
            CniVersion::V1_1_0,
            &pod(Some("default")),
            &node(),
            1420,
            None,
        );
        assert_eq!(
            r,
            json!({
                "cniVersion": "1.1.0",
                "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/cni-1", "mtu": 1420}],
                "ips": [{"address": "10.244.3.5/32", "gateway": "10.244.3.1", "interface": 0}],
                "routes": [{"dst": "0.0.0.0/0"}],
                "dns": {
                    "nameservers": ["10.96.0.10"],
                    "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
                    "options": ["ndots:5"]
                }
            })
        );
    }

    #[test]
    fn result_1_0_0_has_no_mtu_and_no_ip_version() {
        let r = add_result(CniVersion::V1_0_0, &pod(None), &node(), 1420, None);
        assert_eq!(
            r["interfaces"],
            json!([{"name": "eth0", "sandbox": "/var/run/netns/cni-1"}])
        );
        assert_eq!(
            r["ips"],
            json!([{"address": "10.244.3.5/32", "gateway": "10.244.3.1", "interface": 0}])
        );
        assert_eq!(
            r["dns"]["search"],
            json!(["svc.cluster.local", "cluster.local"]),
            "no namespace: no namespace search domain"
        );
    }

    #[test]
    fn legacy_results_have_ip_versions() {
        for v in [CniVersion::V0_3_0, CniVersion::V0_3_1, CniVersion::V0_4_0] {
            let r = add_result(v, &pod(None), &node(), 1420, None);
            assert_eq!(r["cniVersion"], v.as_str());
            assert_eq!(
                r["ips"],
                json!([{"version": "4", "address": "10.244.3.5/32", "gateway": "10.244.3.1", "interface": 0}])
            );
            assert!(r["interfaces"][0].get("mtu").is_none());
        }
    }

    #[test]
    fn ipv6_pods() {
        let mut n = node();
        n.node_address = "fd00:244:3::1".into();
        n.cluster_dns = "fd00:96::a".into();
        let p = Attached {
            address: "fd00:244:3::5".parse().unwrap(),
            ..pod(None)
        };
        let r = add_result(CniVersion::V0_4_0, &p, &n, 1420, None);
        assert_eq!(
            r["ips"],
            json!([{"version": "6", "address": "fd00:244:3::5/128", "gateway": "fd00:244:3::1", "interface": 0}])
        );
        assert_eq!(r["routes"], json!([{"dst": "::/0"}]));
        assert_eq!(r["dns"]["nameservers"], json!(["fd00:96::a"]));
        // A node address of the other family is no gateway.
        n.node_address = "10.244.3.1".into();
        let r = add_result(CniVersion::V1_0_0, &p, &n, 1420, None);
        assert!(r["ips"][0].get("gateway").is_none());
    }

    #[test]
    fn unknown_node_fields_are_left_out() {
        let n = NodeInfo::default();
        let r = add_result(CniVersion::V1_1_0, &pod(None), &n, 0, None);
        assert_eq!(r["dns"], json!({"options": ["ndots:5"]}));
        assert!(r["ips"][0].get("gateway").is_none());
        assert!(r["interfaces"][0].get("mtu").is_none());
    }

    #[test]
    fn a_prev_result_is_extended() {
        let prev = json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "lo", "sandbox": "/var/run/netns/cni-1"}],
            "ips": [{"address": "127.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["1.1.1.1"]},
            "custom": 1
        });
        let r = add_result(CniVersion::V1_0_0, &pod(None), &node(), 1420, Some(&prev));
        assert_eq!(r["interfaces"][1]["name"], "eth0");
        assert_eq!(r["ips"][1]["interface"], 1);
        assert_eq!(r["ips"][0]["address"], "127.0.0.1/8");
        assert_eq!(r["routes"], json!([{"dst": "0.0.0.0/0"}]));
        assert_eq!(r["dns"], json!({"nameservers": ["1.1.1.1"]}));
        assert_eq!(r["custom"], 1);
        // A broken prevResult field is replaced, not trusted.
        let prev = json!({"interfaces": 5, "dns": {}});
        let r = add_result(CniVersion::V1_0_0, &pod(None), &node(), 1420, Some(&prev));
        assert_eq!(r["interfaces"][0]["name"], "eth0");
        assert_eq!(r["ips"][0]["interface"], 0);
        assert_eq!(r["dns"]["nameservers"], json!(["10.96.0.10"]));
    }

    fn prev_of(v: CniVersion) -> PrevResult {
        PrevResult::parse(&add_result(v, &pod(None), &node(), 1420, None)).unwrap()
    }

    #[test]
    fn check_reads_back_every_versions_result() {
        let addr: IpAddr = "10.244.3.5".parse().unwrap();
        for v in CniVersion::ALL {
            let want = expect_from_prev(&prev_of(v), "eth0", "/var/run/netns/cni-1", addr).unwrap();
            assert_eq!(
                want,
                Expected {
                    address: "10.244.3.5/32".parse().unwrap(),
                    routes: vec!["0.0.0.0/0".parse().unwrap()],
                },
                "{v}"
            );
        }
    }

    #[test]
    fn check_mismatches_are_precise() {
        let prev = prev_of(CniVersion::V1_1_0);
        let other: IpAddr = "10.244.3.9".parse().unwrap();
        let e = expect_from_prev(&prev, "eth0", "/var/run/netns/cni-1", other).unwrap_err();
        assert_eq!(e.code, 105);
        assert_eq!(
            e.msg,
            "prevResult gives eth0 the address 10.244.3.5/32, but weft-agent assigned it 10.244.3.9/32"
        );
        let addr: IpAddr = "10.244.3.5".parse().unwrap();
        let e = expect_from_prev(&prev, "eth1", "/var/run/netns/cni-1", addr).unwrap_err();
        assert_eq!(
            e.msg,
            "prevResult lists no interface eth1 in /var/run/netns/cni-1"
        );
        let e = expect_from_prev(&prev, "eth0", "/run/netns/x", addr).unwrap_err();
        assert_eq!(e.msg, "prevResult lists no interface eth0 in /run/netns/x");
        let mut no_ip = prev.clone();
        no_ip.ips.clear();
        let e = expect_from_prev(&no_ip, "eth0", "/var/run/netns/cni-1", addr).unwrap_err();
        assert_eq!(
            e.msg,
            "prevResult lists no address of eth0; weft-agent assigned it 10.244.3.5/32"
        );
        // A later plugin that dropped the route: the route is not checked.
        let mut no_route = prev;
        no_route.routes.clear();
        let want = expect_from_prev(&no_route, "eth0", "/var/run/netns/cni-1", addr).unwrap();
        assert!(want.routes.is_empty());
        let e = PrevResult::parse(&json!({"ips": [{"address": "nope"}]})).unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.starts_with("prevResult is not a CNI result"));
    }
}
