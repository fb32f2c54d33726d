//! The engine's TUNs ([`Links`]): the host TUN `weft0` and the pod ports,
//! each a [`Link`], named by [`LinkId`]. Pod ports have one slot per
//! [`PortId`], found by attachment id on the control path and by index on
//! the packet path.
//!
//! Contract: port ids are dense and recycled (the lowest free slot), at
//! most [`MAX_ID`](weft_switch::MAX_ID); each doubles as the port's poll
//! token (offset by the engine's fixed tokens).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;

use super::counters::{EngineCounters, EngineDrop};
use super::link::Link;
use super::slots::Slots;
use weft_switch::{Ingress, PortId, Route};

/// A TUN of the engine: the host's, or a pod port's. (A packet's way in is
/// a [`weft_switch::Ingress`]; a link is an ingress that is not a peer.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkId {
    Host,
    Port(PortId),
}

impl LinkId {
    /// The TUN a packet came in on, if it came from one.
    pub(super) fn of(ingress: Ingress) -> Option<Self> {
        match ingress {
            Ingress::Host => Some(Self::Host),
            Ingress::Port(p) => Some(Self::Port(p)),
            Ingress::Peer(_) => None,
        }
    }

    /// The way into the switch of a packet read from this TUN.
    pub(super) fn ingress(self) -> Ingress {
        match self {
            Self::Host => Ingress::Host,
            Self::Port(p) => Ingress::Port(p),
        }
    }

    /// The switch's route to this TUN (for its MTU).
    pub(super) fn route(self) -> Route {
        match self {
            Self::Host => Route::Host,
            Self::Port(p) => Route::Port(p),
        }
    }
}

/// Every TUN: the host's and the pod ports.
#[derive(Debug)]
pub(super) struct Links {
    pub(super) host: Link,
    pub(super) ports: PortTable,
}

impl Links {
    pub(super) fn new(host: Link) -> Self {
        Self {
            host,
            ports: PortTable::default(),
        }
    }

    /// The TUN of `id`, if it is attached.
    pub(super) fn get(&self, id: LinkId) -> Option<&Link> {
        match id {
            LinkId::Host => Some(&self.host),
            LinkId::Port(p) => self.ports.get(p).map(|port| &port.link),
        }
    }

    /// The TUN of `id`, mutably.
    pub(super) fn get_mut(&mut self, id: LinkId) -> Option<&mut Link> {
        match id {
            LinkId::Host => Some(&mut self.host),
            LinkId::Port(p) => self.ports.get_mut(p).map(|port| &mut port.link),
        }
    }

    /// Writes a coalesced (or single) item of `n` segments to `dst`.
    pub(super) fn write_item(
        &self,
        dst: LinkId,
        bytes: &[u8],
        n: usize,
        counters: &mut EngineCounters,
    ) {
        if let Some(link) = self.get(dst) {
            if n > 1 {
                counters.super_written = counters.super_written.wrapping_add(1);
            }
            count_write(link.write_gso(bytes), dst, n as u64, counters);
        }
    }
}

/// Counts the outcome of writing `n` packets to the TUN of `dst`.
pub(super) fn count_write(
    result: io::Result<()>,
    dst: LinkId,
    n: u64,
    counters: &mut EngineCounters,
) {
    match result {
        Ok(()) => match dst {
            LinkId::Host => counters.to_host = counters.to_host.wrapping_add(n),
            LinkId::Port(_) => counters.to_ports = counters.to_ports.wrapping_add(n),
        },
        Err(e) if queue_full(&e) => counters.drop_n(EngineDrop::TunQueueFull, n),
        Err(_) => counters.drop_n(EngineDrop::TunWriteError, n),
    }
}

/// Whether a TUN write failed because the device's queue is full: EAGAIN
/// (a non-blocking fd) or ENOBUFS (no room for the packet).
fn queue_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// One attached pod port.
#[derive(Debug)]
pub(super) struct Port {
    /// The attachment id (pod name, or `<container-id>/<ifname>`).
    pub(super) id: String,
    pub(super) link: Link,
    pub(super) addresses: Vec<IpAddr>,
}

/// All pod ports.
#[derive(Debug, Default)]
pub(super) struct PortTable {
    slots: Slots<Port>,
    by_id: HashMap<String, PortId>,
}

impl PortTable {
    /// The lowest free id, or `None` if all are taken.
    pub(super) fn free_id(&self) -> Option<PortId> {
        self.slots.free().map(PortId)
    }

    pub(super) fn insert(&mut self, id: PortId, port: Port) {
        self.by_id.insert(port.id.clone(), id);
        self.slots.insert(id.0, port);
    }

    pub(super) fn remove(&mut self, id: PortId) -> Option<Port> {
        let port = self.slots.remove(id.0)?;
        self.by_id.remove(&port.id);
        Some(port)
    }

    pub(super) fn id_of(&self, attachment: &str) -> Option<PortId> {
        self.by_id.get(attachment).copied()
    }

    pub(super) fn get(&self, id: PortId) -> Option<&Port> {
        self.slots.get(id.0)
    }

    pub(super) fn get_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.slots.get_mut(id.0)
    }

    /// Every port with its id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PortId, &Port)> {
        self.slots.iter().map(|(i, p)| (PortId(i), p))
    }
}
