//! The state service translation keeps between packets (besides the
//! conntrack table): its configuration, the affinity records, the PRNG
//! that picks endpoints, and the counters; and the endpoint choice for a
//! new connection, which the agent's NodePort relays use too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Instant;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::affinity::AffinityTable;
use super::table::{Candidates, Frontend, Origin, ServiceTable};
use crate::conntrack::HashSeed;

/// How the translator behaves on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslatorConfig {
    /// The node's own overlay IPv4 address (`10.244.N.1`, on `weft0`): the
    /// source a hairpin connection is rewritten to. `None`: IPv4 hairpin
    /// connections are dropped.
    pub hairpin_v4: Option<Ipv4Addr>,
    /// The same for IPv6.
    pub hairpin_v6: Option<Ipv6Addr>,
    /// Source ports for hairpin connections: outside Linux's default
    /// ephemeral range (32768-60999), so the node's own connections from
    /// its overlay address never collide with them.
    pub hairpin_ports: RangeInclusive<u16>,
    /// Track TCP connections first seen mid-stream (after an agent
    /// restart), as Linux's `nf_conntrack_tcp_loose` does. Never for
    /// segments aimed at a Service: those need a SYN.
    pub tcp_loose: bool,
    /// ClientIP affinity records kept at most.
    pub affinity_capacity: usize,
}

impl Default for TranslatorConfig {
    fn default() -> Self {
        Self {
            hairpin_v4: None,
            hairpin_v6: None,
            hairpin_ports: 61_000..=65_535,
            tcp_loose: true,
            affinity_capacity: 65_536,
        }
    }
}

/// Service translation counters (monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStats {
    /// New connections translated to an endpoint.
    pub translations: u64,
    /// Of those, hairpin connections (source rewritten too).
    pub hairpins: u64,
    /// New connections that kept their ClientIP affinity.
    pub affinity_hits: u64,
    /// Connections to a Service without endpoints, rejected.
    pub no_endpoint_rejects: u64,
    /// Connections to a Service port that does not exist, rejected.
    pub unknown_port_rejects: u64,
    /// Connections dropped: traffic policy Local, no endpoint on this
    /// node.
    pub no_local_endpoint_drops: u64,
    /// Packets aimed at a Service that cannot start a connection (TCP
    /// without SYN, ICMP errors, fragments, from a peer) or are
    /// malformed: dropped, never forwarded untranslated.
    pub invalid_to_service: u64,
    /// UDP flows (and reused TCP tuples) whose endpoint went away,
    /// removed so their next packet picks a live endpoint.
    pub stale_flows: u64,
    /// ICMP errors rewritten for the translated flow they quote.
    pub icmp_errors_translated: u64,
    /// New connections dropped because the conntrack table refused them.
    pub conntrack_refused: u64,
    /// Hairpin connections dropped: no hairpin address or port.
    pub hairpin_failures: u64,
    /// New connections whose source port was moved because their reply
    /// tuple was taken (one pod's connections to a Service and straight to
    /// its endpoint from the same port).
    pub source_ports_remapped: u64,
}

/// What [`Translator::choose`] decided for a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Choice {
    /// Connect to this endpoint.
    Endpoint(SocketAddr),
    /// Drop: the policy is Local and this node has no endpoint.
    NoLocalEndpoints,
    /// Reject: no endpoint anywhere.
    NoEndpoints,
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Translator {
    pub(super) cfg: TranslatorConfig,
    pub(super) affinity: AffinityTable,
    rng: ChaCha8Rng,
    pub(super) stats: ServiceStats,
}

impl Translator {
    /// A translator for `cfg`. `random_seed` seeds the endpoint choice
    /// and `hash_seed` keys the affinity table; the caller draws both
    /// from the OS at start-up (tests pass fixed ones). Reserves the
    /// affinity table here.
    pub fn new(
        cfg: TranslatorConfig,
        random_seed: [u8; 32],
        hash_seed: HashSeed,
        now: Instant,
    ) -> Self {
        Self {
            affinity: AffinityTable::new(cfg.affinity_capacity, hash_seed, now),
            cfg,
            rng: ChaCha8Rng::from_seed(random_seed),
            stats: ServiceStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &ServiceStats {
        &self.stats
    }

    /// Affinity records given up to make room.
    pub fn affinity_evictions(&self) -> u64 {
        self.affinity.evicted()
    }

    /// The configuration.
    pub fn config(&self) -> &TranslatorConfig {
        &self.cfg
    }

    /// Picks the endpoint for a new connection from `client` to `f`:
    /// the client's affinity record if the Service has ClientIP affinity
    /// and the endpoint is still a candidate, else one of the candidates
    /// at random (uniformly). Records the choice for affinity. Never
    /// allocates.
    pub fn choose(
        &mut self,
        table: &ServiceTable,
        f: Frontend,
        origin: Origin,
        client: IpAddr,
        now: Instant,
    ) -> Choice {
        let set = match table.candidates(f, origin) {
            Candidates::Endpoints(set) => set,
            Candidates::NoLocalEndpoints => return Choice::NoLocalEndpoints,
            Candidates::NoEndpoints => return Choice::NoEndpoints,
        };
        let affinity = table.affinity(f);
        if let Some((id, timeout)) = affinity {
            if let Some(ep) = self.affinity.get(id, client, now) {
                if set.binary_search(&ep).is_ok() {
                    self.affinity.set(id, client, ep, timeout, now);
                    self.stats.affinity_hits += 1;
                    return Choice::Endpoint(ep);
                }
            }
        }
        let n = set.len() as u64;
        // Lemire's multiply-shift: uniform enough (bias < n / 2^32).
        let i = (u64::from(self.rng.next_u32()) * n) >> 32;
        let Some(&ep) = set.get(usize::try_from(i).unwrap_or(0)) else {
            return Choice::NoEndpoints;
        };
        if let Some((id, timeout)) = affinity {
            self.affinity.set(id, client, ep, timeout, now);
        }
        Choice::Endpoint(ep)
    }

    /// The hairpin source address of `ip`'s family, if configured.
    pub(super) fn hairpin_addr(&self, v6: bool) -> Option<IpAddr> {
        if v6 {
            self.cfg.hairpin_v6.map(IpAddr::V6)
        } else {
            self.cfg.hairpin_v4.map(IpAddr::V4)
        }
    }
}
