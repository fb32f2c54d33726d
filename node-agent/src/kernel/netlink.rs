//! Interface configuration over rtnetlink (the `rtnetlink` crate), never by
//! running `ip`.
//!
//! Contract:
//! - A netlink socket belongs to the network namespace it was created in.
//!   [`Netlink::connect_in`] creates it on a thread inside the namespace;
//!   [`Netlink::connect`] in the calling thread's namespace.
//! - Each [`Netlink`] drives its socket on its own OS thread (a
//!   current-thread tokio runtime), so its methods work from any executor,
//!   or from sync code via `futures::executor::block_on`. The thread ends
//!   when the last clone is dropped.
//! - Interfaces are named by their name; every error names the interface,
//!   the operation and the namespace.
//! - Adding an address or a route is idempotent: an address already present
//!   is Ok; a route replaces the main-table route to the same destination.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::thread;

use futures::TryStreamExt;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkFlag, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlag, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use rtnetlink::IpVersion;
use thiserror::Error;
use tracing::debug;

use crate::kernel::netns::{self, NetNs, NetNsError};
use crate::kernel::tun::{validate_ifname, InvalidIfName};

/// Why a netlink operation failed.
#[derive(Debug, Error)]
pub enum NetlinkError {
    /// The namespace could not be entered.
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    /// The interface name is not a valid Linux interface name.
    #[error(transparent)]
    InvalidName(#[from] InvalidIfName),
    /// The netlink socket or its driver thread could not be set up.
    #[error("opening a netlink socket in {scope}: {cause}")]
    Connect {
        /// The namespace, as shown to people.
        scope: Arc<str>,
        /// The OS error.
        cause: io::Error,
    },
    /// No interface has that name.
    #[error("no network interface named {name} in {scope}")]
    LinkNotFound {
        /// The interface name.
        name: String,
        /// The namespace, as shown to people.
        scope: Arc<str>,
    },
    /// A route's gateway is of another address family than its destination.
    #[error("invalid route {route}: {reason}")]
    InvalidRoute {
        /// The route as asked for.
        route: Route,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The kernel refused the request.
    #[error("{op} in {scope}: {cause}")]
    Kernel {
        /// The operation, e.g. "setting MTU 1420 on tun0".
        op: String,
        /// The namespace, as shown to people.
        scope: Arc<str>,
        /// The errno the kernel answered.
        cause: io::Error,
    },
    /// The netlink exchange itself failed (closed connection, bad reply).
    #[error("{op} in {scope}: {cause}")]
    Protocol {
        /// The operation.
        op: String,
        /// The namespace, as shown to people.
        scope: Arc<str>,
        /// The rtnetlink error (boxed: it can carry a whole message).
        cause: Box<rtnetlink::Error>,
    },
}

/// A route in the main table out of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    /// The destination prefix; `0.0.0.0/0` or `::/0` is the default route.
    pub dst: IpNet,
    /// The next hop; `None` for a route straight out of the device (all a
    /// TUN needs, having no link layer).
    pub gateway: Option<IpAddr>,
}

impl Route {
    /// A route to `dst` out of the device, without a gateway.
    pub fn dev(dst: IpNet) -> Self {
        Self { dst, gateway: None }
    }

    /// A route to `dst` via `gateway`, installed on-link.
    pub fn via(dst: IpNet, gateway: IpAddr) -> Self {
        Self {
            dst,
            gateway: Some(gateway),
        }
    }

    /// The default route of `addr`'s family out of the device.
    pub fn default_for(addr: IpAddr) -> Self {
        let dst = match addr {
            IpAddr::V4(_) => IpNet::V4(Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(Ipv6Net::default()),
        };
        Self::dev(dst)
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        match self.gateway {
            Some(gw) => write!(f, " via {gw}"),
            None => write!(f, " dev"),
        }
    }
}

/// What the kernel says about a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    /// The interface index.
    pub index: u32,
    /// The interface name.
    pub name: String,
    /// The MTU.
    pub mtu: u32,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
}

/// A route-netlink connection in one network namespace.
#[derive(Clone)]
pub struct Netlink {
    handle: rtnetlink::Handle,
    scope: Arc<str>,
}

impl fmt::Debug for Netlink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Netlink")
            .field("scope", &self.scope)
            .finish()
    }
}

impl Netlink {
    /// Connects in the calling thread's network namespace.
    pub fn connect() -> Result<Self, NetlinkError> {
        Self::spawn(None, "the current network namespace".into())
    }

    /// Connects in `ns`: the socket is created on a thread inside it.
    pub fn connect_in(ns: &NetNs) -> Result<Self, NetlinkError> {
        let scope = format!("network namespace {ns}");
        Self::spawn(Some(ns.clone()), scope.into())
    }

    /// Spawns the driver thread; blocks only until the socket exists.
    fn spawn(ns: Option<NetNs>, scope: Arc<str>) -> Result<Self, NetlinkError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let thread_scope = scope.clone();
        let connect_error = |source| NetlinkError::Connect {
            scope: scope.clone(),
            cause: source,
        };
        thread::Builder::new()
            .name("weft-netlink".into())
            .spawn(move || {
                if let Some(ns) = &ns {
                    if let Err(e) = netns::enter(ns) {
                        let _ = tx.send(Err(NetlinkError::from(e)));
                        return;
                    }
                }
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(source) => {
                        let scope = thread_scope;
                        let _ = tx.send(Err(NetlinkError::Connect {
                            scope,
                            cause: source,
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match rtnetlink::new_connection() {
                        Ok((connection, handle, unsolicited)) => {
                            // Nobody listens to multicast groups here; closing
                            // this lets the connection end with its handles.
                            drop(unsolicited);
                            let _ = tx.send(Ok(handle));
                            connection.await;
                        }
                        Err(source) => {
                            let scope = thread_scope;
                            let _ = tx.send(Err(NetlinkError::Connect {
                                scope,
                                cause: source,
                            }));
                        }
                    }
                });
            })
            .map_err(connect_error)?;
        let handle = rx
            .recv()
            .map_err(|_| connect_error(io::Error::other("netlink thread exited")))??;
        Ok(Self { handle, scope })
    }

    /// The interface index of `name`.
    pub async fn link_index(&self, name: &str) -> Result<u32, NetlinkError> {
        Ok(self.link(name).await?.index)
    }

    /// Index, MTU and state of `name`.
    pub async fn link(&self, name: &str) -> Result<LinkInfo, NetlinkError> {
        validate_ifname(name)?;
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        let found = links.try_next().await;
        let message = match found {
            Ok(Some(message)) => message,
            Ok(None) => return Err(self.not_found(name)),
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => return Err(self.not_found(name)),
            Err(e) => return Err(self.error(format!("looking up {name}"), e)),
        };
        Ok(link_info(message, name))
    }

    /// Sets the MTU of `name`.
    pub async fn set_mtu(&self, name: &str, mtu: u32) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let request = self.handle.link().set(index).mtu(mtu).execute();
        request
            .await
            .map_err(|e| self.error(format!("setting MTU {mtu} on {name}"), e))?;
        debug!(ifname = name, mtu, scope = %self.scope, "set MTU");
        Ok(())
    }

    /// Brings `name` up.
    pub async fn set_up(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let request = self.handle.link().set(index).up().execute();
        request
            .await
            .map_err(|e| self.error(format!("bringing {name} up"), e))?;
        debug!(ifname = name, scope = %self.scope, "link up");
        Ok(())
    }

    /// Brings `name` down.
    pub async fn set_down(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let request = self.handle.link().set(index).down().execute();
        request
            .await
            .map_err(|e| self.error(format!("bringing {name} down"), e))
    }

    /// Adds `addr` (address and prefix) to `name`; Ok if it is already there.
    /// No broadcast address: a TUN is point-to-point.
    pub async fn add_address(&self, name: &str, addr: IpNet) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let mut request = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        request
            .message_mut()
            .attributes
            .retain(|a| !matches!(a, AddressAttribute::Broadcast(_)));
        match request.execute().await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(self.error(format!("adding address {addr} to {name}"), e)),
        }
        debug!(ifname = name, %addr, scope = %self.scope, "address added");
        Ok(())
    }

    /// The addresses on `name`, IPv4 and IPv6 (link-local included).
    pub async fn addresses(&self, name: &str) -> Result<Vec<IpNet>, NetlinkError> {
        let index = self.link_index(name).await?;
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut out = Vec::new();
        loop {
            let next = stream.try_next().await;
            match next {
                Ok(Some(message)) => out.extend(address_of(&message)),
                Ok(None) => break,
                Err(e) => return Err(self.error(format!("listing addresses of {name}"), e)),
            }
        }
        Ok(out)
    }

    /// Installs `route` out of `name` in the main table, replacing any route
    /// to the same destination. Host bits of the destination are cleared.
    pub async fn add_route(&self, name: &str, route: &Route) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let op = || format!("adding route {route} {name}");
        let add = self.handle.route().add().output_interface(index);
        let request = match (route.dst.trunc(), route.gateway) {
            (IpNet::V4(dst), gateway) => {
                let mut request = add
                    .v4()
                    .replace()
                    .destination_prefix(dst.addr(), dst.prefix_len());
                match gateway {
                    None => request = request.scope(RouteScope::Link),
                    Some(IpAddr::V4(gw)) => request = request.gateway(gw),
                    Some(IpAddr::V6(_)) => return Err(self.family_mismatch(route)),
                }
                on_link(request.message_mut(), gateway.is_some());
                request.execute().await
            }
            (IpNet::V6(dst), gateway) => {
                let mut request = add
                    .v6()
                    .replace()
                    .destination_prefix(dst.addr(), dst.prefix_len());
                match gateway {
                    None => {}
                    Some(IpAddr::V6(gw)) => request = request.gateway(gw),
                    Some(IpAddr::V4(_)) => return Err(self.family_mismatch(route)),
                }
                on_link(request.message_mut(), gateway.is_some());
                request.execute().await
            }
        };
        request.map_err(|e| self.error(op(), e))?;
        debug!(ifname = name, %route, scope = %self.scope, "route installed");
        Ok(())
    }

    /// The main-table unicast routes out of `name`, IPv4 and IPv6.
    pub async fn routes(&self, name: &str) -> Result<Vec<Route>, NetlinkError> {
        let index = self.link_index(name).await?;
        let mut out = Vec::new();
        for version in [IpVersion::V4, IpVersion::V6] {
            let mut stream = self.handle.route().get(version).execute();
            loop {
                let next = stream.try_next().await;
                match next {
                    Ok(Some(message)) => out.extend(route_of(&message, index)),
                    Ok(None) => break,
                    Err(e) => return Err(self.error(format!("listing routes of {name}"), e)),
                }
            }
        }
        Ok(out)
    }

    /// Deletes the link `name`, whatever its kind (a TUN even while an fd
    /// holds it).
    pub async fn delete_link(&self, name: &str) -> Result<(), NetlinkError> {
        let index = self.link_index(name).await?;
        let request = self.handle.link().del(index).execute();
        match request.await {
            Ok(()) => {}
            Err(e) if errno_of(&e) == Some(libc::ENODEV) => return Err(self.not_found(name)),
            Err(e) => return Err(self.error(format!("deleting {name}"), e)),
        }
        debug!(ifname = name, scope = %self.scope, "link deleted");
        Ok(())
    }

    fn not_found(&self, name: &str) -> NetlinkError {
        NetlinkError::LinkNotFound {
            name: name.into(),
            scope: self.scope.clone(),
        }
    }

    fn family_mismatch(&self, route: &Route) -> NetlinkError {
        NetlinkError::InvalidRoute {
            route: *route,
            reason: "gateway and destination are of different address families",
        }
    }

    fn error(&self, op: String, e: rtnetlink::Error) -> NetlinkError {
        let scope = self.scope.clone();
        match e {
            rtnetlink::Error::NetlinkError(message) => NetlinkError::Kernel {
                op,
                scope,
                cause: message.to_io(),
            },
            source => NetlinkError::Protocol {
                op,
                scope,
                cause: Box::new(source),
            },
        }
    }
}

/// The errno of a kernel refusal.
fn errno_of(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(message) => message.to_io().raw_os_error(),
        _ => None,
    }
}

/// A TUN has no neighbours to resolve a gateway with, so gateways are
/// installed on-link.
fn on_link(message: &mut RouteMessage, has_gateway: bool) {
    if has_gateway {
        message.header.flags.push(RouteFlag::Onlink);
    }
}

fn link_info(message: LinkMessage, asked: &str) -> LinkInfo {
    let mut info = LinkInfo {
        index: message.header.index,
        name: asked.to_owned(),
        mtu: 0,
        up: message.header.flags.contains(&LinkFlag::Up),
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::Mtu(mtu) => info.mtu = mtu,
            _ => {}
        }
    }
    info
}

/// The address of an `RTM_NEWADDR`: `IFA_LOCAL` for IPv4 (`IFA_ADDRESS` is
/// the peer on point-to-point links), `IFA_ADDRESS` for IPv6.
fn address_of(message: &AddressMessage) -> Option<IpNet> {
    let mut local = None;
    let mut address = None;
    for attribute in &message.attributes {
        match attribute {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    let ip = local.or(address)?;
    IpNet::new(ip, message.header.prefix_len).ok()
}

/// A main-table unicast route out of `index`, if `message` is one.
fn route_of(message: &RouteMessage, index: u32) -> Option<Route> {
    if message.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(message.header.table);
    let mut oif = None;
    let mut dst = None;
    let mut gateway = None;
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Destination(a) => dst = ip_of(a),
            RouteAttribute::Gateway(a) => gateway = ip_of(a),
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) || oif != Some(index) {
        return None;
    }
    let dst = match dst {
        Some(ip) => ip,
        None if message.header.address_family == netlink_packet_route::AddressFamily::Inet6 => {
            Ipv6Addr::UNSPECIFIED.into()
        }
        None => Ipv4Addr::UNSPECIFIED.into(),
    };
    let dst = IpNet::new(dst, message.header.destination_prefix_length).ok()?;
    Some(Route { dst, gateway })
}

fn ip_of(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some((*ip).into()),
        RouteAddress::Inet6(ip) => Some((*ip).into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_display_like_ip_route() {
        let default = Route::default_for(Ipv4Addr::new(10, 99, 0, 2).into());
        assert_eq!(default.to_string(), "default dev");
        assert_eq!(default.dst, "0.0.0.0/0".parse::<IpNet>().unwrap());
        let v6 = Route::default_for("fd00::2".parse().unwrap());
        assert_eq!(v6.dst, "::/0".parse::<IpNet>().unwrap());
        let via = Route::via(
            "10.96.0.0/12".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
        );
        assert_eq!(via.to_string(), "10.96.0.0/12 via 10.244.1.1");
    }

    #[test]
    fn route_messages_parse_back() {
        let mut message = RouteMessage::default();
        message.header.kind = RouteType::Unicast;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.address_family = netlink_packet_route::AddressFamily::Inet;
        message.header.destination_prefix_length = 0;
        message.attributes.push(RouteAttribute::Oif(7));
        assert_eq!(
            route_of(&message, 7),
            Some(Route::dev("0.0.0.0/0".parse().unwrap()))
        );
        assert_eq!(route_of(&message, 8), None);
        message.header.table = 255;
        assert_eq!(route_of(&message, 7), None);
    }
}
