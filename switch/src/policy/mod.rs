//! NetworkPolicy, compiled: the per-connection verdict of step 6 of the
//! packet path (DESIGN "The packet path"), with Kubernetes' semantics.
//!
//! The agent resolves every selector against the objects it holds (which
//! pods a policy selects, which pods and namespaces its peers select, named
//! ports per pod) and hands this module plain [`PolicySpec`]s: only
//! addresses, prefixes and port ranges. [`PolicyTable::compile`] turns them
//! into, per LOCAL pod address and direction, the ordered list of rules
//! that apply to it, merged into one longest-prefix-match table over the
//! union of the rules' peer prefixes (pod `/32`s and `/128`s, ipBlocks,
//! their `except`s), each prefix carrying the first rule allowing each
//! (protocol, port) there (`merged`, `ports`); pods with the same rule list
//! share one. Deciding a connection costs one prefix lookup and two binary
//! searches, whatever the number of pods, policies and rules; the rule
//! reported is the first allowing one in policy order, then rule order.
//!
//! Semantics (networking.k8s.io/v1):
//! - A pod is isolated for ingress (egress) when at least one policy that
//!   selects it has ingress (egress) among its effective policy types; a
//!   pod that no policy isolates in a direction allows everything there.
//! - An isolated pod allows what the union of the rules of every policy
//!   that selects it allows; no rules (`ingress: []`) allow nothing.
//! - A rule matches when its peers match (no peer list: any peer) and its
//!   ports match (no port list: any port and protocol).
//! - ipBlock: the CIDR minus its `except`s; a pod peer listed in the same
//!   rule is matched on its own address (a more specific prefix).
//! - Named ports are resolved by the agent: for ingress on the local pod,
//!   for egress on each destination pod, so a rule's port set may differ by
//!   peer ([`PeerSpec::ports`]).
//!
//! Contract: [`PolicyTable::evaluate`] never allocates, reads no clock and
//! never panics; it returns the verdict and the policy and rule that
//! decided (for `weftctl explain`, counters and logs). Compilation runs on
//! the control path.

mod merged;
mod ports;
mod table;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use ipnet::IpNet;

pub use table::{PolicyTable, RuleRef, Verdict};

/// The direction a rule list applies to, seen from the local pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Traffic to the local pod (`from` peers).
    Ingress,
    /// Traffic from the local pod (`to` peers).
    Egress,
}

/// A transport protocol a port rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
            Self::Sctp => 132,
        }
    }
}

/// A port range of one protocol (`port..=end`, `end == port` for one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub protocol: Protocol,
    pub port: u16,
    pub end: u16,
}

/// Which ports a rule allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortsSpec {
    /// No `ports` list: every port of every protocol (ICMP included).
    Any,
    /// These ranges (an empty list matches nothing: a named port no peer
    /// has).
    Ranges(Vec<PortRange>),
}

/// One peer of a rule, resolved to addresses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    /// The peer's prefix: a pod's address as a /32 or /128, or an
    /// ipBlock's CIDR.
    pub prefix: IpNet,
    /// Prefixes carved out of `prefix` (ipBlock `except`).
    pub except: Vec<IpNet>,
    /// The ports this peer may be reached on (or reach the local pod on):
    /// the rule's ports with named ports resolved for this peer. `None`:
    /// the rule's own [`RuleSpec::ports`]. Within one rule, a prefix more
    /// specific than another (a pod inside an ipBlock) must carry a
    /// superset of the other's ports: the longest match decides.
    pub ports: Option<PortsSpec>,
}

/// One ingress or egress rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    /// `None`: no `from`/`to` list, every peer.
    pub peers: Option<Vec<PeerSpec>>,
    pub ports: PortsSpec,
}

/// One NetworkPolicy as it applies to this node's pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySpec {
    /// `namespace/name`, for explanations and counters.
    pub name: String,
    /// The local pods it selects, by address, with the ingress rules as
    /// resolved for each (named ports differ by pod). `None` when the
    /// policy does not have Ingress among its effective policy types.
    pub ingress: Option<Vec<(IpAddr, Vec<RuleSpec>)>>,
    /// The same for egress (resolved per destination, not per local pod:
    /// the same rules for every selected pod).
    pub egress: Option<(Vec<IpAddr>, Vec<RuleSpec>)>,
}
