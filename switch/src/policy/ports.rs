//! A merged port set: for every (protocol, port), the first rule (lowest
//! position in a pod's ordered rule list) that allows it.
//!
//! Contract: [`PortMap::first`] never allocates and never panics; it costs
//! one binary search over the map's breakpoints, whatever the number of
//! rules merged into it. Building ([`PortMap::build`]) runs on the control
//! path.

use super::{PortsSpec, Protocol};

/// The merged ports of some rules. `any`: the first rule with no port
/// list (every protocol, every port, ICMP included). `ranges[p]` (TCP,
/// UDP, SCTP): sorted breakpoints `(first port, first rule)` starting at
/// port 0, each valid up to the next breakpoint; empty when no rule names
/// that protocol.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct PortMap {
    any: Option<u32>,
    ranges: [Vec<(u16, Option<u32>)>; 3],
}

fn slot(protocol: Protocol) -> usize {
    match protocol {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

impl PortMap {
    /// Merges `(rule position, ports)` contributions (in any order).
    pub(super) fn build<'a>(contributions: impl IntoIterator<Item = (u32, &'a PortsSpec)>) -> Self {
        let mut map = Self::default();
        let mut per_proto: [Vec<(u32, u16, u16)>; 3] = Default::default();
        for (rule, ports) in contributions {
            match ports {
                PortsSpec::Any => map.any = Some(map.any.map_or(rule, |a| a.min(rule))),
                PortsSpec::Ranges(list) => {
                    for r in list.iter().filter(|r| r.port <= r.end) {
                        if let Some(v) = per_proto.get_mut(slot(r.protocol)) {
                            v.push((rule, r.port, r.end));
                        }
                    }
                }
            }
        }
        for (out, mut ranges) in map.ranges.iter_mut().zip(per_proto) {
            *out = merge(&mut ranges);
        }
        map
    }

    /// The first rule allowing `port` of IP protocol number `proto`.
    pub(super) fn first(&self, proto: u8, port: u16) -> Option<u32> {
        let idx = match proto {
            6 => 0,
            17 => 1,
            132 => 2,
            _ => return self.any,
        };
        let list = self.ranges.get(idx)?;
        let by_port = list
            .partition_point(|(start, _)| *start <= port)
            .checked_sub(1)
            .and_then(|k| list.get(k))
            .and_then(|(_, rule)| *rule);
        min(self.any, by_port)
    }
}

/// The smaller of two optional rule positions.
pub(super) fn min(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `(rule, port, end)` ranges of one protocol into breakpoints, each
/// elementary interval carrying the lowest rule covering it.
fn merge(ranges: &mut [(u32, u16, u16)]) -> Vec<(u16, Option<u32>)> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let mut bounds: Vec<u32> = vec![0];
    for (_, port, end) in ranges.iter() {
        bounds.push(u32::from(*port));
        bounds.push(u32::from(*end) + 1);
    }
    bounds.retain(|b| *b <= u32::from(u16::MAX));
    bounds.sort_unstable();
    bounds.dedup();
    // Lowest rule first: an interval takes the first rule that covers it.
    ranges.sort_unstable();
    let mut best: Vec<Option<u32>> = vec![None; bounds.len()];
    for (rule, port, end) in ranges.iter() {
        let from = bounds.partition_point(|b| *b < u32::from(*port));
        let to = bounds.partition_point(|b| *b <= u32::from(*end));
        for cell in best.get_mut(from..to).into_iter().flatten() {
            if cell.is_none() {
                *cell = Some(*rule);
            }
        }
    }
    let mut out: Vec<(u16, Option<u32>)> = Vec::new();
    for (b, rule) in bounds.into_iter().zip(best) {
        if out.last().map(|(_, r)| *r) == Some(rule) {
            continue;
        }
        out.push((u16::try_from(b).unwrap_or(u16::MAX), rule));
    }
    out
}
