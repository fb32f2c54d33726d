//! Step 6 of the decision: NetworkPolicy, enforced per connection on the
//! addresses after service translation, the verdict kept in the
//! connection's conntrack entry ([`crate::conntrack::PolicySlot`]).
//!
//! Contract:
//! - Off until [`Switch::set_policy_table`] puts a [`PolicyTable`] in
//!   force, which needs connection tracking ([`Switch::enable_services`]):
//!   without it the call answers false and nothing is enforced.
//! - A connection is judged once: on its first packet, or on its first
//!   packet after a table change (every table has a new generation, and
//!   an entry decided under an older one is judged again). So a policy
//!   change applies within one packet to new AND established connections:
//!   a connection the new policies deny is cut (its packets dropped, both
//!   ways), one they allow passes. Replies of an allowed connection pass
//!   both ways (the verdict is the connection's, not the packet's).
//! - Who is judged, on the connection's original direction as translated
//!   (client -> chosen endpoint): egress for the client when it is a pod
//!   of this node, ingress for the endpoint when it is a pod of this node
//!   (the table holds only local pods: a remote address is not isolated
//!   here; its own node judges it). The source the endpoint sees is the
//!   one judged for ingress (the client pod's own address; for hairpin,
//!   the node's).
//! - Allowed without a look at the policies, as Kubernetes
//!   implementations do: traffic from this node's own host addresses to
//!   its pods (kubelet probes; ingress only), and a pod reaching itself
//!   through its own Service (loopback in the model: its own address
//!   never leaves the pod).
//! - Packets conntrack does not track are judged one by one, statelessly:
//!   ICMP other than echo and errors (port 0: only rules without ports
//!   allow them) and stray TCP segments (by their destination port).
//!   Non-first fragments pass: without their first fragment, which is
//!   judged, they cannot be reassembled.
//! - Denied packets are dropped silently ([`DropReason::PolicyDenied`]),
//!   as Kubernetes implementations do. Each judged connection counts once
//!   for the policy that decided ([`PolicyStatus::policies`]: allowed by
//!   one of its rules, or denied by the isolation it sets); counters follow
//!   a policy by name across table changes. Denied new connections are
//!   recorded for the agent's log line ([`Switch::take_denials`]),
//!   rate-limited here ([`DENIAL_LOG_PER_SECOND`]) and counted when
//!   suppressed.
//! - No allocation and no clock read per packet: the counters and the
//!   denial ring are sized when a table is set.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::conntrack::{Entry, PolicySlot};
use crate::counters::DropReason;
use crate::decide::Switch;
use crate::policy::{Direction, PolicyTable, Verdict};
use crate::ratelimit::TokenBucket;
use crate::services::Tracked;
use crate::wire::IpPacket;

/// Denied new connections recorded for the log, per second on average.
pub const DENIAL_LOG_PER_SECOND: u32 = 10;
/// Denials recorded in one burst (and the ring's size).
pub const DENIAL_LOG_BURST: u32 = 50;

/// Connections judged by one policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyCounters {
    /// Allowed by one of its rules.
    pub allowed: u64,
    /// Denied: it isolates the pod and no rule of any policy allowed.
    pub denied: u64,
}

/// The policy step's state and counters, for status and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyStatus {
    /// The table's generation (one per [`Switch::set_policy_table`]).
    pub generation: u64,
    /// Policies and rules in the table (see [`PolicyTable::sizes`]).
    pub policies: usize,
    pub rules: usize,
    /// Connections judged (new, or again after a table change).
    pub judged: u64,
    /// Of those, allowed because no policy isolates the pods.
    pub not_isolated: u64,
    /// Of those, denied (in one direction or both).
    pub denied: u64,
    /// Untracked packets judged one by one, and those denied.
    pub untracked_judged: u64,
    pub untracked_denied: u64,
    /// Denials not recorded for the log (the rate limit).
    pub denials_unlogged: u64,
    /// Per policy (`namespace/name`), in table order.
    pub by_policy: Vec<(String, PolicyCounters)>,
}

/// A denied new connection, for the agent's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The client and the endpoint it was translated to.
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IP protocol number and destination port (0 without ports).
    pub proto: u8,
    pub port: u16,
    /// Which side denied (egress of `src`, ingress of `dst`), and the
    /// policy named as isolating it (`namespace/name`).
    pub direction: Direction,
    pub policy: String,
}

/// A denial in the ring: the policy by index into the table in force
/// when it was recorded (resolved to a name when taken).
#[derive(Debug, Clone, Copy)]
struct Recorded {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    port: u16,
    direction: Direction,
    policy: u32,
    generation: u64,
}

/// The state of the step.
#[derive(Debug, Clone)]
pub(crate) struct PolicyStep {
    table: Arc<PolicyTable>,
    generation: u64,
    /// Per policy index of `table`.
    counters: Vec<PolicyCounters>,
    /// Counters of policies no longer in the table, by name, so a policy
    /// that comes back (a relabelling, an edit) keeps counting on.
    retired: HashMap<String, PolicyCounters>,
    status: PolicyStatus,
    ring: VecDeque<Recorded>,
    log_limit: TokenBucket,
}

/// One connection as the policies see it.
#[derive(Debug, Clone, Copy)]
struct Conn {
    /// The client (egress side).
    client: IpAddr,
    /// The source the endpoint sees (ingress side).
    seen_src: IpAddr,
    /// The endpoint.
    dst: IpAddr,
    proto: u8,
    port: u16,
}

impl Conn {
    /// The original direction of `entry`, as translated: the reply key
    /// reversed is what the endpoint saw.
    fn of_entry(entry: &Entry) -> Self {
        let reply = entry.reply();
        Self {
            client: entry.orig().src(),
            seen_src: reply.dst(),
            dst: reply.src(),
            proto: reply.proto(),
            port: reply.src_port(),
        }
    }
}

impl PolicyStep {
    fn new(table: Arc<PolicyTable>, generation: u64) -> Self {
        let mut step = Self {
            table: Arc::new(PolicyTable::default()),
            generation,
            counters: Vec::new(),
            retired: HashMap::new(),
            status: PolicyStatus::default(),
            ring: VecDeque::with_capacity(DENIAL_LOG_BURST as usize),
            log_limit: TokenBucket::new(DENIAL_LOG_PER_SECOND, DENIAL_LOG_BURST),
        };
        step.replace(table, generation);
        step
    }

    /// Puts `table` in force (control path: allocates), carrying the
    /// counters over by policy name.
    fn replace(&mut self, table: Arc<PolicyTable>, generation: u64) {
        for (i, c) in self.counters.drain(..).enumerate() {
            if let Some(name) = self.table.policy_name(index(i)) {
                self.retired.insert(name.to_string(), c);
            }
        }
        let (policies, _) = table.sizes();
        self.counters = (0..policies)
            .map(|i| {
                table
                    .policy_name(index(i))
                    .and_then(|n| self.retired.remove(n))
                    .unwrap_or_default()
            })
            .collect();
        self.table = table;
        self.generation = generation;
    }

    /// A policy's `namespace/name` in the table in force.
    pub(crate) fn policy_name(&self, index: u32) -> Option<&str> {
        self.table.policy_name(index)
    }

    /// The verdicts for `conn`.
    fn judge(&self, conn: Conn, hosts: [Option<IpAddr>; 2]) -> PolicySlot {
        let mut slot = PolicySlot {
            generation: self.generation,
            ..PolicySlot::default()
        };
        if conn.client == conn.dst {
            return slot;
        }
        if self.table.isolated(Direction::Egress, conn.client) {
            slot.egress = Some(self.table.evaluate(
                Direction::Egress,
                conn.client,
                conn.dst,
                conn.proto,
                conn.port,
            ));
        }
        let from_host = hosts.contains(&Some(conn.seen_src));
        if !from_host && self.table.isolated(Direction::Ingress, conn.dst) {
            slot.ingress = Some(self.table.evaluate(
                Direction::Ingress,
                conn.dst,
                conn.seen_src,
                conn.proto,
                conn.port,
            ));
        }
        slot
    }

    /// Counts a judged connection; records it for the log if denied and
    /// `log`.
    fn count(&mut self, conn: Conn, slot: &PolicySlot, log: bool, now: Instant) {
        self.status.judged += 1;
        if slot.egress.is_none() && slot.ingress.is_none() {
            self.status.not_isolated += 1;
        }
        let mut first_denial = None;
        for (dir, v) in [
            (Direction::Egress, slot.egress),
            (Direction::Ingress, slot.ingress),
        ] {
            let Some(v) = v else { continue };
            let (policy, denied) = match v {
                Verdict::NotIsolated => continue,
                Verdict::Allowed(rule) => (rule.policy, false),
                Verdict::Denied { policy } => (policy, true),
            };
            if let Some(c) = self.counters.get_mut(policy as usize) {
                if denied {
                    c.denied += 1;
                } else {
                    c.allowed += 1;
                }
            }
            if denied && first_denial.is_none() {
                first_denial = Some((dir, policy));
            }
        }
        let Some((direction, policy)) = first_denial else {
            return;
        };
        self.status.denied += 1;
        if !log {
            return;
        }
        if self.ring.len() >= DENIAL_LOG_BURST as usize || !self.log_limit.try_take(now) {
            self.status.denials_unlogged += 1;
            return;
        }
        self.ring.push_back(Recorded {
            src: conn.client,
            dst: conn.dst,
            proto: conn.proto,
            port: conn.port,
            direction,
            policy,
            generation: self.generation,
        });
    }
}

/// This node's own addresses (`weft0`), whose traffic to its pods is
/// allowed.
fn host_addresses(config: &Config) -> [Option<IpAddr>; 2] {
    [
        config.host_v4().map(IpAddr::V4),
        config.host_v6().map(IpAddr::V6),
    ]
}

fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// Whether the verdicts let the connection through.
fn allows(slot: &PolicySlot) -> bool {
    slot.egress.is_none_or(Verdict::allows) && slot.ingress.is_none_or(Verdict::allows)
}

impl Switch {
    /// Puts `table` in force (see the module docs): new connections are
    /// judged by it, and established ones on their next packet. False, and
    /// nothing is enforced, if connection tracking is off.
    pub fn set_policy_table(&mut self, table: Arc<PolicyTable>) -> bool {
        if self.services.is_none() {
            return false;
        }
        match self.policy.as_deref_mut() {
            Some(step) => {
                let generation = step.generation + 1;
                step.replace(table, generation);
            }
            // Entries start at generation 0: every one is judged.
            None => self.policy = Some(Box::new(PolicyStep::new(table, 1))),
        }
        true
    }

    /// The step's counters, if a policy table was set.
    pub fn policy_status(&self) -> Option<PolicyStatus> {
        let step = self.policy.as_deref()?;
        let (policies, rules) = step.table.sizes();
        let by_policy = step
            .counters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| Some((step.table.policy_name(index(i))?.to_string(), *c)))
            .collect();
        Some(PolicyStatus {
            generation: step.generation,
            policies,
            rules,
            by_policy,
            ..step.status.clone()
        })
    }

    /// Moves the denied new connections recorded since the last call into
    /// `out` (oldest first), with their policies' names.
    pub fn take_denials(&mut self, out: &mut Vec<Denial>) {
        let Some(step) = self.policy.as_deref_mut() else {
            return;
        };
        while let Some(r) = step.ring.pop_front() {
            let policy = if r.generation == step.generation {
                step.table.policy_name(r.policy).unwrap_or("?").to_string()
            } else {
                "(a policy since changed)".to_string()
            };
            out.push(Denial {
                src: r.src,
                dst: r.dst,
                proto: r.proto,
                port: r.port,
                direction: r.direction,
                policy,
            });
        }
    }

    /// Step 6 on a packet that step 5 let through, `ip` as translated:
    /// `Some(PolicyDenied)` to drop it.
    pub(crate) fn policy_step(
        &mut self,
        tracked: Option<Tracked>,
        ip: &IpPacket<&mut [u8]>,
        now: Instant,
    ) -> Option<DropReason> {
        let step = self.policy.as_deref_mut()?;
        let denied = Some(DropReason::PolicyDenied);
        if let Some((id, new)) = tracked.and_then(|t| Some((t.entry?, t.new))) {
            let entry = self.services.as_deref_mut()?.conntrack.get_mut(id)?;
            // The common case: a connection judged under this table.
            if entry.policy.generation == step.generation {
                return (!allows(&entry.policy)).then_some(DropReason::PolicyDenied);
            }
            let conn = Conn::of_entry(entry);
            let slot = step.judge(conn, host_addresses(&self.config));
            entry.policy = slot;
            step.count(conn, &slot, new, now);
            return (!allows(&slot)).then_some(DropReason::PolicyDenied);
        }
        let Ok(transport) = ip.transport() else {
            return denied;
        };
        // A non-first fragment passes: its first fragment was judged.
        let proto = transport.protocol()?;
        let (_, port) = transport.ports();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let conn = Conn {
            client: src,
            seen_src: src,
            dst,
            proto,
            port,
        };
        let slot = step.judge(conn, host_addresses(&self.config));
        step.status.untracked_judged += 1;
        if allows(&slot) {
            return None;
        }
        step.status.untracked_denied += 1;
        denied
    }
}
