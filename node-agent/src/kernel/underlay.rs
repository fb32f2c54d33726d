//! The underlay toward the control plane: which local address the kernel
//! would send from (the default `--endpoint`) and the MTU of that interface
//! (the default overlay MTU is that minus [`OVERHEAD`]).
//!
//! Contract: [`probe`] resolves the control plane (bounded), asks the
//! kernel for the route by connecting a UDP socket (no packet is sent),
//! finds the interface holding the source address and reads its MTU over
//! netlink. It fails with a [`UnderlayError`] saying which step failed; the
//! caller falls back (no endpoint guess, MTU [`FALLBACK_MTU`]).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::kernel::netlink::Netlink;

/// WireGuard's overhead over IPv6 (40 IP + 8 UDP + 32 WireGuard): overlay
/// MTU = underlay MTU - 80.
pub const OVERHEAD: u32 = 80;
/// The overlay MTU when the underlay's is unknown (1500 - 80).
pub const FALLBACK_MTU: u32 = 1420;

/// What the route toward the control plane looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    /// The control plane's address as resolved.
    pub control_plane: SocketAddr,
    /// The local source address of the route toward it.
    pub local_ip: IpAddr,
    /// The interface holding `local_ip`, if found.
    pub interface: Option<String>,
    /// That interface's MTU, if read.
    pub mtu: Option<u32>,
}

impl Underlay {
    /// The overlay MTU this underlay allows, or [`FALLBACK_MTU`].
    pub fn overlay_mtu(&self) -> u32 {
        match self.mtu {
            Some(m) if m > OVERHEAD + 576 => m - OVERHEAD,
            _ => FALLBACK_MTU,
        }
    }
}

/// Why the underlay could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    /// The control plane's host did not resolve.
    #[error("resolving {host}: {reason}")]
    Resolve {
        /// The `host:port` given.
        host: String,
        /// Why.
        reason: String,
    },
    /// The kernel has no route toward it.
    #[error("finding the route toward {addr}: {cause}")]
    Route {
        /// The resolved address.
        addr: SocketAddr,
        /// The socket error.
        cause: std::io::Error,
    },
}

/// Probes the underlay toward `control_plane` (`host:port`).
pub async fn probe(control_plane: &str, timeout: Duration) -> Result<Underlay, UnderlayError> {
    let resolve_err = |reason: String| UnderlayError::Resolve {
        host: control_plane.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout(timeout, tokio::net::lookup_host(control_plane))
            .await
            .map_err(|_| resolve_err(format!("timed out after {timeout:?}")))?
            .map_err(|e| resolve_err(e.to_string()))?
            .collect();
    let addr = *addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .ok_or_else(|| resolve_err("no addresses".to_string()))?;
    let local_ip = route_source(addr).map_err(|cause| UnderlayError::Route { addr, cause })?;
    let interface = interface_of(local_ip);
    let mtu = match &interface {
        Some(name) => match link_mtu(name).await {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::debug!(interface = %name, error = %e, "cannot read the underlay MTU");
                None
            }
        },
        None => None,
    };
    Ok(Underlay {
        control_plane: addr,
        local_ip,
        interface,
        mtu,
    })
}

/// The source address the kernel picks toward `addr`.
fn route_source(addr: SocketAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(addr)?;
    Ok(sock.local_addr()?.ip())
}

/// The interface that holds `ip`.
fn interface_of(ip: IpAddr) -> Option<String> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for ifa in addrs {
        let Some(a) = ifa.address else { continue };
        let found = match ip {
            IpAddr::V4(v4) => a.as_sockaddr_in().map(|s| s.ip() == v4),
            IpAddr::V6(v6) => a.as_sockaddr_in6().map(|s| s.ip() == v6),
        };
        if found == Some(true) {
            return Some(ifa.interface_name);
        }
    }
    None
}

async fn link_mtu(name: &str) -> Result<u32, crate::kernel::netlink::NetlinkError> {
    let nl = Netlink::connect()?;
    Ok(nl.link(name).await?.mtu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback() {
        let u = probe("127.0.0.1:7443", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(u.local_ip, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(u.interface.as_deref(), Some("lo"));
        assert!(u.mtu.is_some());
        assert!(u.overlay_mtu() > 1000);
    }

    #[test]
    fn fallback_mtu() {
        let mut u = Underlay {
            control_plane: "127.0.0.1:1".parse().unwrap(),
            local_ip: IpAddr::from([127, 0, 0, 1]),
            interface: None,
            mtu: None,
        };
        assert_eq!(u.overlay_mtu(), FALLBACK_MTU);
        u.mtu = Some(1500);
        assert_eq!(u.overlay_mtu(), 1420);
        u.mtu = Some(9001);
        assert_eq!(u.overlay_mtu(), 8921);
    }
}
