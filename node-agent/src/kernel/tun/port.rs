//! Switch ports on TUN devices: the steps the agent takes to create, adopt,
//! inspect and remove a pod's TUN in the pod's namespace, and the host port
//! `weft0` in the host namespace.
//!
//! Ports are persistent TUNs: the pod keeps its interface, addresses and
//! routes across agent restarts, and the restarted agent re-attaches by
//! name. These functions run their blocking parts on their own threads, so
//! they may be awaited from any executor.

use ipnet::IpNet;
use thiserror::Error;
use tracing::{info, warn};

use super::{validate_ifname, Tun, TunError, TunOptions};
use crate::kernel::netlink::{Netlink, NetlinkError, Route};
use crate::kernel::netns::{self, NetNs, NetNsError};

/// Why a port operation failed.
#[derive(Debug, Error)]
pub enum KernelError {
    /// Creating, attaching or deleting the TUN device failed.
    #[error(transparent)]
    Tun(#[from] TunError),
    /// The namespace could not be opened or entered.
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    /// Configuring or inspecting the interface over netlink failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// What a port's interface should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// The interface name, e.g. `eth0` in a pod or `weft0` on the host.
    pub ifname: String,
    /// Addresses with their prefixes (one per family for dual-stack).
    pub addresses: Vec<IpNet>,
    /// The interface MTU (the overlay MTU).
    pub mtu: u32,
    /// Routes out of the interface.
    pub routes: Vec<Route>,
    /// TUN options; ports are always made persistent.
    pub options: TunOptions,
}

impl PortSpec {
    /// A pod's port: its addresses, and one default route per address family
    /// straight out of the device (a TUN needs no gateway).
    pub fn pod(ifname: impl Into<String>, addresses: Vec<IpNet>, mtu: u32) -> Self {
        let mut routes: Vec<Route> = Vec::new();
        for addr in &addresses {
            let route = Route::default_for(addr.addr());
            if !routes.contains(&route) {
                routes.push(route);
            }
        }
        Self {
            ifname: ifname.into(),
            addresses,
            mtu,
            routes,
            options: TunOptions::persistent(),
        }
    }

    /// The host port: the node's overlay address (`/32`, or the node CIDR
    /// with the node's first address, e.g. `10.244.3.1/24`) and routes to
    /// the cluster and service CIDRs out of the device.
    pub fn host(ifname: impl Into<String>, address: IpNet, mtu: u32, cidrs: &[IpNet]) -> Self {
        Self {
            ifname: ifname.into(),
            addresses: vec![address],
            mtu,
            routes: cidrs.iter().copied().map(Route::dev).collect(),
            options: TunOptions::persistent(),
        }
    }
}

/// What a port's interface looks like now (for CNI CHECK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortState {
    /// The interface index.
    pub index: u32,
    /// The MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
    /// All addresses, link-local included.
    pub addresses: Vec<IpNet>,
    /// Main-table routes out of the interface.
    pub routes: Vec<Route>,
}

impl PortState {
    /// Whether everything `spec` asks for is present (extra link-local
    /// addresses and routes are fine).
    pub fn satisfies(&self, spec: &PortSpec) -> bool {
        self.mtu == spec.mtu
            && self.up
            && spec.addresses.iter().all(|a| self.addresses.contains(a))
            && spec.routes.iter().all(|r| {
                self.routes.contains(&Route {
                    dst: r.dst.trunc(),
                    ..*r
                })
            })
    }
}

/// Creates a pod's port: a persistent TUN `spec.ifname` inside `ns`, with
/// MTU, addresses, link up and routes. The returned [`Tun`] holds the fd.
/// Fails with [`TunError::AlreadyExists`] if the name is taken; on any later
/// failure the half-made device is deleted again.
pub async fn create_pod_tun(ns: &NetNs, spec: &PortSpec) -> Result<Tun, KernelError> {
    validate_ifname(&spec.ifname).map_err(TunError::from)?;
    let options = TunOptions {
        persist: true,
        ..spec.options.clone()
    };
    let name = spec.ifname.clone();
    let tun = netns::run_in_async(ns, move || Tun::create(&name, &options)).await??;
    let netlink = Netlink::connect_in(ns)?;
    if let Err(e) = configure(&netlink, spec).await {
        drop(tun);
        if let Err(cleanup) = netlink.delete_link(&spec.ifname).await {
            warn!(ifname = %spec.ifname, netns = %ns, error = %cleanup, "could not remove half-configured port");
        }
        return Err(e.into());
    }
    info!(ifname = %spec.ifname, netns = %ns, addresses = ?spec.addresses, mtu = spec.mtu, "pod port created");
    Ok(tun)
}

/// Re-attaches to a pod's existing port after an agent restart. `options`
/// must have the multi-queue setting the port was created with.
pub async fn attach_existing_pod_tun(
    ns: &NetNs,
    ifname: &str,
    options: &TunOptions,
) -> Result<Tun, KernelError> {
    validate_ifname(ifname).map_err(TunError::from)?;
    let name = ifname.to_owned();
    let options = options.clone();
    let tun = netns::run_in_async(ns, move || Tun::attach(&name, &options)).await??;
    info!(ifname, netns = %ns, "pod port re-attached");
    Ok(tun)
}

/// Deletes a pod's port, whether or not an fd holds it. Returns whether it
/// existed: deleting a missing port is Ok (CNI DEL is idempotent).
pub async fn delete_pod_tun(ns: &NetNs, ifname: &str) -> Result<bool, KernelError> {
    validate_ifname(ifname).map_err(TunError::from)?;
    let netlink = Netlink::connect_in(ns)?;
    match netlink.delete_link(ifname).await {
        Ok(()) => {
            info!(ifname, netns = %ns, "pod port deleted");
            Ok(true)
        }
        Err(NetlinkError::LinkNotFound { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Creates the host port in `ns` (the host namespace, in the agent), or
/// re-attaches to it if it exists, and brings its configuration to `spec`.
/// Safe to call on every agent start. Addresses and routes not in `spec`
/// are left alone.
pub async fn ensure_host_tun(ns: &NetNs, spec: &PortSpec) -> Result<Tun, KernelError> {
    let (tun, _) = open_host_tun(ns, &spec.ifname, &spec.options).await?;
    configure_host_tun(ns, spec).await?;
    Ok(tun)
}

/// The first half of [`ensure_host_tun`]: creates the persistent TUN
/// `ifname` in `ns`, or attaches to it if it exists, without configuring
/// it. Returns the device and whether this call created it. Fails with
/// [`TunError::Busy`] if another process holds the device, and with
/// [`TunError::DeviceUnavailable`] without `/dev/net/tun`: what an agent
/// checks before it joins the cluster.
pub async fn open_host_tun(
    ns: &NetNs,
    ifname: &str,
    options: &TunOptions,
) -> Result<(Tun, bool), KernelError> {
    validate_ifname(ifname).map_err(TunError::from)?;
    let options = TunOptions {
        persist: true,
        ..options.clone()
    };
    let name = ifname.to_owned();
    let opened = netns::run_in_async(ns, move || match Tun::create(&name, &options) {
        Err(TunError::AlreadyExists { .. }) => Tun::attach(&name, &options).map(|t| (t, false)),
        other => other.map(|t| (t, true)),
    })
    .await??;
    Ok(opened)
}

/// The second half of [`ensure_host_tun`]: brings the device's MTU,
/// addresses, state and routes to `spec`.
pub async fn configure_host_tun(ns: &NetNs, spec: &PortSpec) -> Result<(), KernelError> {
    let netlink = Netlink::connect_in(ns)?;
    configure(&netlink, spec).await?;
    info!(ifname = %spec.ifname, netns = %ns, addresses = ?spec.addresses, "host port ready");
    Ok(())
}

/// MTU, state, addresses and routes of `ifname` in `ns`.
pub async fn port_state(ns: &NetNs, ifname: &str) -> Result<PortState, KernelError> {
    let netlink = Netlink::connect_in(ns)?;
    let link = netlink.link(ifname).await?;
    Ok(PortState {
        index: link.index,
        mtu: link.mtu,
        up: link.up,
        addresses: netlink.addresses(ifname).await?,
        routes: netlink.routes(ifname).await?,
    })
}

/// MTU first, addresses, up, then routes (the kernel refuses routes out of
/// a link that is down).
async fn configure(netlink: &Netlink, spec: &PortSpec) -> Result<(), NetlinkError> {
    netlink.set_mtu(&spec.ifname, spec.mtu).await?;
    for addr in &spec.addresses {
        netlink.add_address(&spec.ifname, *addr).await?;
    }
    netlink.set_up(&spec.ifname).await?;
    for route in &spec.routes {
        netlink.add_route(&spec.ifname, route).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_spec_has_one_default_route_per_family() {
        let spec = PortSpec::pod(
            "eth0",
            vec![
                "10.244.1.5/32".parse().unwrap(),
                "fd00:244::5/128".parse().unwrap(),
            ],
            1420,
        );
        assert_eq!(
            spec.routes,
            vec![
                Route::dev("0.0.0.0/0".parse().unwrap()),
                Route::dev("::/0".parse().unwrap())
            ]
        );
        assert!(spec.options.persist);
    }

    #[test]
    fn host_spec_routes_cidrs_out_of_the_device() {
        let cidrs = [
            "10.244.0.0/16".parse().unwrap(),
            "10.96.0.0/12".parse().unwrap(),
        ];
        let spec = PortSpec::host("weft0", "10.244.3.1/32".parse().unwrap(), 1420, &cidrs);
        assert_eq!(spec.routes, cidrs.map(Route::dev).to_vec());
    }

    #[test]
    fn state_satisfies_spec_with_extras() {
        let spec = PortSpec::pod("eth0", vec!["10.244.1.5/32".parse().unwrap()], 1420);
        let mut state = PortState {
            index: 2,
            mtu: 1420,
            up: true,
            addresses: vec![
                "10.244.1.5/32".parse().unwrap(),
                "fe80::1/64".parse().unwrap(),
            ],
            routes: vec![
                Route::dev("0.0.0.0/0".parse().unwrap()),
                Route::dev("fe80::/64".parse().unwrap()),
            ],
        };
        assert!(state.satisfies(&spec));
        state.mtu = 1500;
        assert!(!state.satisfies(&spec));
    }
}
