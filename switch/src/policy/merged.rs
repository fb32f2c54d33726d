//! One ordered rule list (every rule that applies to a local pod in one
//! direction, policy by policy, rule by rule) merged into one
//! longest-prefix-match table over the union of the rules' peer prefixes.
//!
//! Why it is exact: CIDR prefixes are laminar (two are nested or
//! disjoint), so the set of a rule's prefixes that contain an address is
//! determined by the longest prefix of the UNION that contains it. For
//! every prefix of the union, compilation therefore resolves what each
//! rule's own tables would answer there (its pod/ipBlock peers by longest
//! match, the longest match winning; each ipBlock with `except`s on its
//! own, an except carving only its block) and merges the ports every
//! matching peer allows into one [`PortMap`] of "first rule per port".
//! Rules without peers (`from`/`to` absent) go to one map valid for every
//! address. The first rule is the one the linear walk would have reported.
//!
//! Contract: [`RuleSet::first`] never allocates and never panics; it costs
//! one prefix lookup (one binary search per distinct prefix length) and two
//! port-map binary searches, whatever the number of policies and rules.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::ports::{min, PortMap};
use super::table::RuleRef;
use super::{PortsSpec, RuleSpec};
use crate::prefix::PrefixTable;

/// What one of a rule's peer tables says at a prefix: allowed on these
/// ports, or carved out (an ipBlock `except`).
type Says<'a> = Option<&'a PortsSpec>;

/// The compiled form of one ordered rule list. Identical lists compile to
/// one shared `RuleSet` (see [`super::PolicyTable::compile`]).
#[derive(Debug)]
pub(super) struct RuleSet {
    /// Rule position (in the list) to the rule it is.
    refs: Vec<RuleRef>,
    /// Rules without a peer list.
    any_peer: PortMap,
    /// Every peer prefix of every rule to an index into `maps`.
    peers: PrefixTable<u32>,
    /// Distinct merged port maps.
    maps: Vec<PortMap>,
}

impl RuleSet {
    /// Merges `rules` (in evaluation order).
    pub(super) fn compile(rules: &[(RuleRef, &RuleSpec)]) -> Self {
        let mut any_peer = Vec::new();
        // A "table" is one rule's plain peers, or one ipBlock with excepts:
        // within a table the longest prefix decides; tables are OR'ed.
        let mut table_rule: Vec<u32> = Vec::new();
        let mut at_prefix: HashMap<IpNet, Vec<(u32, Says<'_>)>> = HashMap::new();
        for (pos, (_, spec)) in rules.iter().enumerate() {
            let pos = u32::try_from(pos).unwrap_or(u32::MAX);
            let Some(list) = &spec.peers else {
                any_peer.push((pos, &spec.ports));
                continue;
            };
            let mut plain: Vec<(IpNet, Says<'_>)> = Vec::new();
            let mut carved: Vec<Vec<(IpNet, Says<'_>)>> = Vec::new();
            for peer in list {
                let ports = peer.ports.as_ref().unwrap_or(&spec.ports);
                if peer.except.is_empty() {
                    plain.push((peer.prefix.trunc(), Some(ports)));
                } else {
                    let mut t = vec![(peer.prefix.trunc(), Some(ports))];
                    t.extend(peer.except.iter().map(|ex| (ex.trunc(), None)));
                    carved.push(t);
                }
            }
            for t in std::iter::once(plain).chain(carved) {
                let id = u32::try_from(table_rule.len()).unwrap_or(u32::MAX);
                table_rule.push(pos);
                // The last insert of a prefix wins, as in a PrefixTable.
                let mut last: HashMap<IpNet, Says<'_>> = HashMap::new();
                for (net, says) in t {
                    last.insert(net, says);
                }
                for (net, says) in last {
                    at_prefix.entry(net).or_default().push((id, says));
                }
            }
        }

        // Shorter prefixes first: every prefix's parent (the longest
        // shorter prefix of the union containing it) is resolved before it.
        let mut nodes: Vec<(IpNet, Vec<(u32, Says<'_>)>)> = at_prefix.into_iter().collect();
        nodes.sort_unstable_by_key(|(net, _)| (net.prefix_len(), *net));
        let mut tree: PrefixTable<u32> = PrefixTable::new();
        let mut active: Vec<Vec<(u32, Says<'_>)>> = Vec::with_capacity(nodes.len());
        let mut interned: HashMap<PortMap, u32> = HashMap::new();
        let mut maps: Vec<PortMap> = Vec::new();
        let mut peers = PrefixTable::new();
        for (i, (net, own)) in nodes.into_iter().enumerate() {
            let parent = tree
                .lookup(net.network())
                .and_then(|p| active.get(p as usize))
                .map_or(&[][..], Vec::as_slice);
            // Both sorted by table id: this prefix's own entries override
            // the inherited ones of the same table (longest match).
            let here = override_sorted(parent, &own);
            let map = PortMap::build(here.iter().filter_map(|(table, says)| {
                let rule = table_rule.get(*table as usize).copied()?;
                says.map(|ports| (rule, ports))
            }));
            let next = u32::try_from(maps.len()).unwrap_or(u32::MAX);
            let index = *interned.entry(map).or_insert_with_key(|map| {
                maps.push(map.clone());
                next
            });
            peers.insert(net, index);
            tree.insert(net, u32::try_from(i).unwrap_or(u32::MAX));
            active.push(here);
        }
        Self {
            refs: rules.iter().map(|(at, _)| *at).collect(),
            any_peer: PortMap::build(any_peer),
            peers,
            maps,
        }
    }

    /// The first rule allowing `peer` on `port` of IP protocol `proto`.
    pub(super) fn first(&self, peer: IpAddr, proto: u8, port: u16) -> Option<RuleRef> {
        let by_peer = self
            .peers
            .lookup(peer)
            .and_then(|m| self.maps.get(m as usize))
            .and_then(|m| m.first(proto, port));
        let pos = min(self.any_peer.first(proto, port), by_peer)?;
        self.refs.get(pos as usize).copied()
    }
}

/// `inherited` with `own`'s entries replacing those of the same table;
/// both sorted by table id, and so is the result.
fn override_sorted<'a>(
    inherited: &[(u32, Says<'a>)],
    own: &[(u32, Says<'a>)],
) -> Vec<(u32, Says<'a>)> {
    let mut out = Vec::with_capacity(inherited.len() + own.len());
    let (mut a, mut b) = (inherited.iter().peekable(), own.iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 < y.0 => a.next(),
            (Some(x), Some(y)) if x.0 == y.0 => {
                a.next();
                b.next()
            }
            (Some(_), Some(_)) | (None, Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, None) => break,
        };
        if let Some(entry) = next {
            out.push(*entry);
        }
    }
    out
}
