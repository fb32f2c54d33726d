//! Where pod ports go once configured: the data plane, through the small
//! [`PortSink`] trait, so pod management can be tested (and run) without it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;

use crate::engine::{Dataplane, DataplaneError, PodPort};
use crate::kernel::tun::Tun;

/// Takes pod ports: attach a configured TUN under the pod's id, detach it.
pub trait PortSink: Send + Sync + 'static {
    /// Attach a pod port; the sink owns its TUN from now on.
    fn attach(&self, port: PodPort) -> BoxFuture<'_, Result<(), DataplaneError>>;
    /// Detach a pod port by id, handing its TUN back; `Ok(None)` if unknown.
    fn detach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Tun>, DataplaneError>>;
}

impl PortSink for Dataplane {
    fn attach(&self, port: PodPort) -> BoxFuture<'_, Result<(), DataplaneError>> {
        Box::pin(self.attach_pod(port))
    }

    fn detach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Tun>, DataplaneError>> {
        Box::pin(self.detach_pod(id))
    }
}

/// What a [`MemoryPortSink`] was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkEvent {
    /// A port was attached (or refused, if `refused`).
    Attach {
        /// The pod id.
        id: String,
        /// The TUN's name.
        ifname: String,
        /// The pod's addresses.
        addresses: Vec<IpAddr>,
        /// Whether the sink refused it.
        refused: bool,
    },
    /// A port was detached; `found` if it was attached.
    Detach {
        /// The pod id.
        id: String,
        /// Whether it was attached.
        found: bool,
    },
}

/// A [`PortSink`] that holds ports in memory and records every call: for
/// tests, and for running pods without a packet switch. It refuses a second
/// port under an attached id, like the data plane.
#[derive(Debug, Default)]
pub struct MemoryPortSink {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    ports: BTreeMap<String, PodPort>,
    events: Vec<SinkEvent>,
    refuse: Option<String>,
}

impl MemoryPortSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuse every attach from now on with `reason` (`None`: accept again).
    pub fn refuse_attach(&self, reason: Option<&str>) {
        self.lock().refuse = reason.map(str::to_owned);
    }

    /// The attached ports: id and addresses, by id.
    pub fn attached(&self) -> Vec<(String, Vec<IpAddr>)> {
        self.lock()
            .ports
            .values()
            .map(|p| (p.id.clone(), p.addresses.clone()))
            .collect()
    }

    /// Every call so far, in order.
    pub fn events(&self) -> Vec<SinkEvent> {
        self.lock().events.clone()
    }
}

impl PortSink for MemoryPortSink {
    fn attach(&self, port: PodPort) -> BoxFuture<'_, Result<(), DataplaneError>> {
        let mut inner = self.lock();
        let refusal = match (&inner.refuse, inner.ports.contains_key(&port.id)) {
            (Some(reason), _) => Some(reason.clone()),
            (None, true) => Some(format!("a port with id {} is attached already", port.id)),
            (None, false) => None,
        };
        inner.events.push(SinkEvent::Attach {
            id: port.id.clone(),
            ifname: port.tun.name().to_owned(),
            addresses: port.addresses.clone(),
            refused: refusal.is_some(),
        });
        let result = match refusal {
            Some(reason) => Err(DataplaneError::Rejected(reason)),
            None => {
                inner.ports.insert(port.id.clone(), port);
                Ok(())
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn detach<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Tun>, DataplaneError>> {
        let mut inner = self.lock();
        let port = inner.ports.remove(id);
        inner.events.push(SinkEvent::Detach {
            id: id.to_owned(),
            found: port.is_some(),
        });
        Box::pin(std::future::ready(Ok(port.map(|p| p.tun))))
    }
}
