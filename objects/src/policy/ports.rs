//! A rule's `ports`, resolved: numbers and ranges as they are, named ports
//! on a given pod.

use weft_switch::policy::{PortRange, PortsSpec, Protocol};

use crate::types::network_policy::NetworkPolicyPort;
use crate::values::{IntOrString, Protocol as ObjectProtocol};
use crate::Pod;

/// The `ports` list of one rule, split into what needs no pod and what is
/// named.
#[derive(Debug)]
pub(super) struct RulePorts {
    /// No `ports` list: every port and protocol.
    any: bool,
    /// Numbers, ranges, and protocol-only entries (every port of it).
    numeric: Vec<PortRange>,
    /// Named ports with their protocol.
    named: Vec<(String, Protocol)>,
}

impl RulePorts {
    /// Reads a rule's ports. Entries validation refuses (unknown protocol,
    /// out-of-range numbers, `endPort` below `port`) match nothing.
    pub(super) fn new(ports: &[NetworkPolicyPort]) -> Self {
        let mut out = RulePorts {
            any: ports.is_empty(),
            numeric: Vec::new(),
            named: Vec::new(),
        };
        for p in ports {
            let Some(protocol) = protocol(p.protocol.as_ref()) else {
                continue;
            };
            match &p.port {
                None => out.numeric.push(PortRange {
                    protocol,
                    port: 0,
                    end: u16::MAX,
                }),
                Some(IntOrString::Int(n)) => {
                    let first = u16::try_from(*n).ok().filter(|n| *n > 0);
                    let last = match p.end_port {
                        None => first,
                        Some(e) => u16::try_from(e).ok(),
                    };
                    if let (Some(port), Some(end)) = (first, last) {
                        if port <= end {
                            out.numeric.push(PortRange {
                                protocol,
                                port,
                                end,
                            });
                        }
                    }
                }
                Some(IntOrString::Str(name)) => out.named.push((name.clone(), protocol)),
            }
        }
        out
    }

    /// Whether some entry is a named port.
    pub(super) fn has_named(&self) -> bool {
        !self.named.is_empty()
    }

    /// The ports without named ones (what a non-pod address may use).
    pub(super) fn numeric(&self) -> PortsSpec {
        if self.any {
            return PortsSpec::Any;
        }
        PortsSpec::Ranges(self.numeric.clone())
    }

    /// The ports with named ones resolved on `pod`.
    pub(super) fn on_pod(&self, pod: &Pod) -> PortsSpec {
        if self.any {
            return PortsSpec::Any;
        }
        let mut ranges = self.numeric.clone();
        ranges.extend(self.named.iter().filter_map(|(name, protocol)| {
            let port = named_port(pod, name, *protocol)?;
            Some(PortRange {
                protocol: *protocol,
                port,
                end: port,
            })
        }));
        PortsSpec::Ranges(ranges)
    }
}

/// The number of `pod`'s container port `name` of `protocol`.
fn named_port(pod: &Pod, name: &str, protocol: Protocol) -> Option<u16> {
    let protocol = match protocol {
        Protocol::Tcp => ObjectProtocol::Tcp,
        Protocol::Udp => ObjectProtocol::Udp,
        Protocol::Sctp => ObjectProtocol::Sctp,
    };
    let n = pod.find_named_port(name, &protocol)?;
    u16::try_from(n).ok().filter(|n| *n > 0)
}

/// A policy port's protocol (TCP when absent); `None` for one weft does
/// not know.
fn protocol(p: Option<&ObjectProtocol>) -> Option<Protocol> {
    match p {
        None | Some(ObjectProtocol::Tcp) => Some(Protocol::Tcp),
        Some(ObjectProtocol::Udp) => Some(Protocol::Udp),
        Some(ObjectProtocol::Sctp) => Some(Protocol::Sctp),
        Some(ObjectProtocol::Other(_)) => None,
    }
}
