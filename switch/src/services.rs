//! Steps 3 and 5 of the decision: connection tracking and service
//! translation ([`Translator::translate`]) inside [`Switch`], on the
//! packets of every ingress, after anti-spoofing and the DNS VIP and
//! before the route.
//!
//! Contract:
//! - Off until [`Switch::enable_services`]: a switch without it decides
//!   exactly as before (no conntrack, no translation). The engine enables
//!   it at start with seeds it draws from the OS.
//! - On, every packet is looked up once (per packet or TSO/GRO
//!   super-packet) in the switch's one [`Conntrack`], every new flow gets
//!   an entry (the policy step stores its verdict there, DESIGN step 6),
//!   and flows to a Service frontend are translated on the client's node:
//!   packets from a local pod or the host port (`weft0`); replies coming
//!   back from a peer or a local pod are reverse-translated from the
//!   entry. Translated packets are routed on their new destination.
//! - The service table is swapped whole ([`Switch::set_service_table`]);
//!   entries made with an older table are checked against the new one on
//!   their next packet (see [`crate::service`]).
//! - Rejects (no endpoint, a port the Service does not have) are the TCP
//!   RST or ICMP port unreachable the translator writes into `scratch`,
//!   sent back at once, not rate-limited (they only go back to the local
//!   client that asked), and counted as drops
//!   ([`DropReason::ServiceNoEndpoints`], [`DropReason::ServiceUnknownPort`]).
//! - Expiry: entries past their deadline vanish on sight, and each create
//!   sweeps a few; [`Switch::expire_conntrack`] lets the engine's timer
//!   reclaim the rest while the node is idle.

use std::sync::Arc;
use std::time::Instant;

use crate::conntrack::{
    Conntrack, ConntrackConfig, ConntrackStats, CreateError, EntryId, HashSeed, Owner,
};
use crate::counters::DropReason;
use crate::decide::Switch;
use crate::offload::segment_count;
use crate::ports::Ingress;
use crate::service::{
    NatDrop, Outcome, PacketMeta, Reject, ServiceStats, ServiceTable, Translator, TranslatorConfig,
};
use crate::wire::{L4Checksum, VnetHdr};

/// What [`Switch::enable_services`] needs.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// The connection table's size, limits and timeouts.
    pub conntrack: ConntrackConfig,
    /// Hairpin addresses and ports, loose TCP pick-up, affinity size. A
    /// hairpin address left `None` is taken from the host addresses
    /// ([`Switch::set_host_addresses`]) when services are enabled.
    pub translator: TranslatorConfig,
    /// Keys the conntrack hash (draw from the OS).
    pub conntrack_seed: HashSeed,
    /// Keys the ClientIP affinity table's hash (draw from the OS).
    pub affinity_seed: HashSeed,
    /// Seeds the endpoint choice (draw from the OS).
    pub random_seed: [u8; 32],
}

/// The state of the step: the connection table, the service table in
/// force and the translator.
#[derive(Debug, Clone)]
pub(crate) struct ServiceStep {
    pub(crate) conntrack: Conntrack,
    pub(crate) table: Arc<ServiceTable>,
    pub(crate) translator: Translator,
}

/// The conntrack entry of a packet that goes on: what the policy step
/// (`policing.rs`) judges, storing its verdict in
/// [`crate::conntrack::Entry::policy`], and reads back from the entry on
/// later packets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tracked {
    /// `None` for packets conntrack does not track (fragments, ICMP other
    /// than echo and errors, stray TCP segments).
    pub(crate) entry: Option<EntryId>,
    pub(crate) new: bool,
}

/// What the step decided, for the decision.
pub(crate) enum StepOutcome {
    /// Go on to policy and routing; the packet may have been rewritten.
    Continue(Tracked),
    /// Send `scratch[..len]` back to the sender; count `reason`.
    Answer(DropReason, usize),
    /// Drop and count.
    Drop(DropReason),
}

/// Counters and sizes of the service step, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServicesStatus {
    /// Services in the table in force.
    pub services: usize,
    /// Their frontends (cluster, external, load-balancer IPs and node
    /// ports, each `ip:port/proto`).
    pub frontends: usize,
    /// Endpoint slots (an endpoint counts once per port and list).
    pub endpoints: usize,
    /// The table's generation.
    pub generation: u64,
    /// The connection table's counters (`entries` is its size now).
    pub conntrack: ConntrackStats,
    /// The connection table's capacity.
    pub conntrack_capacity: usize,
    /// Translation counters.
    pub translation: ServiceStats,
}

/// The conntrack owner of a packet's ingress: pods by port id, the host,
/// then peers sharing the remaining owner slots.
fn owner(ingress: Ingress) -> Owner {
    const HOST: u32 = crate::config::MAX_ID + 1;
    const PEER_SLOTS: u32 = 1023;
    match ingress {
        Ingress::Port(p) => Owner(p.0),
        Ingress::Host => Owner(HOST),
        Ingress::Peer(p) => Owner(HOST + 1 + p.0 % PEER_SLOTS),
    }
}

fn drop_reason(d: NatDrop) -> DropReason {
    match d {
        NatDrop::Malformed => DropReason::Malformed,
        // A reject without room for its answer cannot happen with the
        // engine's scratch buffer; counted with the invalid ones.
        NatDrop::InvalidToService | NatDrop::NoReplyRoom => DropReason::ServiceInvalid,
        NatDrop::NoLocalEndpoints => DropReason::ServiceNoLocalEndpoints,
        NatDrop::StaleEndpoint => DropReason::ServiceStaleEndpoint,
        NatDrop::Conntrack(CreateError::TableFull | CreateError::SourceLimit) => {
            DropReason::ConntrackFull
        }
        NatDrop::Conntrack(CreateError::KeyTaken) => DropReason::ConntrackKeyTaken,
        NatDrop::Hairpin => DropReason::ServiceHairpin,
        NatDrop::Unrewritable => DropReason::ServiceUnrewritable,
    }
}

impl Switch {
    /// Turns connection tracking and service translation on (see the
    /// module docs), with an empty service table. Reserves the connection
    /// and affinity tables here. Call it after the host addresses are set
    /// if the hairpin addresses should default to them.
    pub fn enable_services(&mut self, mut cfg: ServicesConfig, now: Instant) {
        if cfg.translator.hairpin_v4.is_none() {
            cfg.translator.hairpin_v4 = self.config.host_v4();
        }
        if cfg.translator.hairpin_v6.is_none() {
            cfg.translator.hairpin_v6 = self.config.host_v6();
        }
        self.services = Some(Box::new(ServiceStep {
            conntrack: Conntrack::new(cfg.conntrack, cfg.conntrack_seed, now),
            table: Arc::new(ServiceTable::default()),
            translator: Translator::new(cfg.translator, cfg.random_seed, cfg.affinity_seed, now),
        }));
    }

    /// Puts `table` in force for new connections (existing ones are
    /// checked against it on their next packet). False, and nothing
    /// changes, if services are not enabled.
    pub fn set_service_table(&mut self, table: Arc<ServiceTable>) -> bool {
        match self.services.as_mut() {
            Some(step) => {
                step.table = table;
                true
            }
            None => false,
        }
    }

    /// The service table in force, if services are enabled.
    pub fn service_table(&self) -> Option<&Arc<ServiceTable>> {
        self.services.as_ref().map(|s| &s.table)
    }

    /// The connection table, if services are enabled.
    pub fn conntrack(&self) -> Option<&Conntrack> {
        self.services.as_ref().map(|s| &s.conntrack)
    }

    /// Reclaims up to `budget` expired conntrack entries (the engine's
    /// timer calls it). Returns how many.
    pub fn expire_conntrack(&mut self, now: Instant, budget: usize) -> usize {
        self.services
            .as_mut()
            .map_or(0, |s| s.conntrack.expire(now, budget))
    }

    /// The service step's sizes and counters, if services are enabled.
    pub fn services_status(&self) -> Option<ServicesStatus> {
        let s = self.services.as_ref()?;
        let (services, frontends, endpoints) = s.table.sizes();
        Some(ServicesStatus {
            services,
            frontends,
            endpoints,
            generation: s.table.generation(),
            conntrack: *s.conntrack.stats(),
            conntrack_capacity: s.conntrack.config().capacity,
            translation: *s.translator.stats(),
        })
    }

    /// Steps 3 and 5 on `packet`, which came in by `ingress` (see the
    /// module docs). `None` when services are off.
    pub(crate) fn service_step(
        &mut self,
        ingress: Ingress,
        packet: &mut [u8],
        hdr: &VnetHdr,
        scratch: &mut [u8],
        now: Instant,
    ) -> Option<StepOutcome> {
        let step = self.services.as_deref_mut()?;
        let meta = PacketMeta {
            owner: owner(ingress),
            local: !matches!(ingress, Ingress::Peer(_)),
            checksum: if hdr.needs_csum() {
                L4Checksum::Partial
            } else {
                L4Checksum::Full
            },
            segments: u32::try_from(segment_count(packet, hdr)).unwrap_or(u32::MAX),
        };
        let ServiceStep {
            conntrack,
            table,
            translator,
        } = step;
        Some(
            match translator.translate(conntrack, table, packet, meta, scratch, now) {
                Outcome::Forward { entry, new, .. } => {
                    StepOutcome::Continue(Tracked { entry, new })
                }
                Outcome::Reply { len, reason } => StepOutcome::Answer(
                    match reason {
                        Reject::NoEndpoints => DropReason::ServiceNoEndpoints,
                        Reject::UnknownPort => DropReason::ServiceUnknownPort,
                    },
                    len,
                ),
                Outcome::Drop(d) => StepOutcome::Drop(drop_reason(d)),
            },
        )
    }
}
