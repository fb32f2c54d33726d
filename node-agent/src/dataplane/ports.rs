//! The engine's pod ports: one slot per [`PortId`], found by attachment id
//! on the control path and by index on the packet path.
//!
//! Contract: ids are dense and recycled (the lowest free slot), at most
//! [`MAX_ID`](weft_switch::MAX_ID); each doubles as the port's poll token
//! (offset by the engine's fixed tokens).

use std::collections::HashMap;
use std::net::IpAddr;

use super::link::Link;
use weft_switch::{PortId, MAX_ID};

/// One attached pod port.
#[derive(Debug)]
pub(super) struct Port {
    /// The attachment id (pod name, or `<container-id>/<ifname>`).
    pub(super) id: String,
    pub(super) link: Link,
    pub(super) addresses: Vec<IpAddr>,
    /// Whether a read error was already logged (once per port).
    pub(super) read_error_logged: bool,
}

/// All pod ports.
#[derive(Debug, Default)]
pub(super) struct PortTable {
    slots: Vec<Option<Port>>,
    by_id: HashMap<String, PortId>,
}

impl PortTable {
    /// The lowest free id, or `None` if all are taken.
    pub(super) fn free_id(&self) -> Option<PortId> {
        let i = self
            .slots
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.slots.len());
        u32::try_from(i).ok().filter(|i| *i <= MAX_ID).map(PortId)
    }

    pub(super) fn insert(&mut self, id: PortId, port: Port) {
        let i = id.0 as usize;
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.by_id.insert(port.id.clone(), id);
        self.slots[i] = Some(port);
    }

    pub(super) fn remove(&mut self, id: PortId) -> Option<Port> {
        let port = self.slots.get_mut(id.0 as usize)?.take()?;
        self.by_id.remove(&port.id);
        while self.slots.last().is_some_and(Option::is_none) {
            self.slots.pop();
        }
        Some(port)
    }

    pub(super) fn id_of(&self, attachment: &str) -> Option<PortId> {
        self.by_id.get(attachment).copied()
    }

    pub(super) fn get(&self, id: PortId) -> Option<&Port> {
        self.slots.get(id.0 as usize)?.as_ref()
    }

    pub(super) fn get_mut(&mut self, id: PortId) -> Option<&mut Port> {
        self.slots.get_mut(id.0 as usize)?.as_mut()
    }

    /// Every port with its id.
    pub(super) fn iter(&self) -> impl Iterator<Item = (PortId, &Port)> {
        (0u32..)
            .zip(&self.slots)
            .filter_map(|(i, p)| Some((PortId(i), p.as_ref()?)))
    }
}
