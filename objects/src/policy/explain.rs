//! One connection explained: the egress verdict on the source's node and
//! the ingress verdict on the destination's node, each with the policy and
//! rule that decided, computed through the same `PolicyTable` the packet
//! path compiles (for `weftctl explain`).

use std::fmt;
use std::net::IpAddr;

use weft_switch::policy::{Direction, PolicyTable, Protocol, Verdict};

use super::{qualified_name, PolicyView};
use crate::values::PolicyType;
use crate::Pod;

/// The destination of an explained connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A pod, by namespace and name.
    Pod { namespace: String, name: String },
    /// An address (a pod's, or one outside the cluster's pods).
    Address(IpAddr),
}

/// Why a connection cannot be explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// The namespace does not exist.
    #[error("namespaces \"{0}\" not found")]
    UnknownNamespace(String),
    /// No such pod in that namespace.
    #[error("pods \"{name}\" not found in namespace \"{namespace}\"")]
    UnknownPod { namespace: String, name: String },
    /// The pod exists but has no address or has terminated.
    #[error(
        "pod {0} has no address (not running yet, or terminated): it has no network to explain"
    )]
    NoAddress(String),
    /// The source has no address of the destination's family.
    #[error("pod {pod} has no {family} address to reach {to}")]
    Family {
        pod: String,
        family: &'static str,
        to: IpAddr,
    },
}

/// The verdict of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy selects the pod for this direction: allowed by default.
    NotIsolated,
    /// Allowed by rule `rule` of `policy` (`namespace/name`): the field
    /// `spec.ingress[rule]` or `spec.egress[rule]`.
    Allowed { policy: String, rule: usize },
    /// The pod is isolated by these policies and none of their rules
    /// allows the connection.
    Denied { policies: Vec<String> },
    /// Ingress only: the destination is not a pod, no policy applies.
    NotAPod,
}

impl Decision {
    /// Whether this direction lets the connection through.
    pub fn allows(&self) -> bool {
        !matches!(self, Decision::Denied { .. })
    }
}

/// One direction's verdict and where it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionExplanation {
    /// The pod the direction is judged for (`namespace/name`), if a pod.
    pub pod: Option<String>,
    /// Its node (`spec.nodeName`), where the packet path decides.
    pub node: Option<String>,
    /// The verdict.
    pub decision: Decision,
}

/// A connection explained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The source pod, `namespace/name`, and the address used.
    pub from: String,
    pub from_ip: IpAddr,
    /// The destination as asked (`namespace/name` or the address), and
    /// its address.
    pub to: String,
    pub to_ip: IpAddr,
    pub protocol: Protocol,
    pub port: u16,
    /// Judged on the source's node.
    pub egress: DirectionExplanation,
    /// Judged on the destination's node.
    pub ingress: DirectionExplanation,
}

impl Explanation {
    /// Whether a new connection is allowed (both directions allow it).
    pub fn allowed(&self) -> bool {
        self.egress.decision.allows() && self.ingress.decision.allows()
    }
}

impl<'a> PolicyView<'a> {
    /// Explains a new connection from the pod `namespace/name` to `to` on
    /// `port` of `protocol` (the destination after service translation).
    pub fn explain(
        &self,
        from: (&str, &str),
        to: &Target,
        port: u16,
        protocol: Protocol,
    ) -> Result<Explanation, ExplainError> {
        let src = self.find_pod(from.0, from.1)?;
        let (dst, to_ip, to_name) = match to {
            Target::Pod { namespace, name } => {
                let pod = self.find_pod(namespace, name)?;
                let ip = pod
                    .ips()
                    .first()
                    .copied()
                    .ok_or_else(|| ExplainError::NoAddress(qualified_name(&pod.metadata)))?;
                (Some(pod), ip, qualified_name(&pod.metadata))
            }
            Target::Address(ip) => (self.pod_by_ip(*ip), *ip, ip.to_string()),
        };
        let from_ip = src
            .ips()
            .into_iter()
            .find(|ip| ip.is_ipv4() == to_ip.is_ipv4())
            .ok_or_else(|| ExplainError::Family {
                pod: qualified_name(&src.metadata),
                family: if to_ip.is_ipv4() { "IPv4" } else { "IPv6" },
                to: to_ip,
            })?;
        let to_ip = match (to, dst) {
            // A pod asked by name: its address of the source's family.
            (Target::Pod { .. }, Some(pod)) => pod
                .ips()
                .into_iter()
                .find(|ip| ip.is_ipv4() == from_ip.is_ipv4())
                .unwrap_or(to_ip),
            _ => to_ip,
        };
        let proto = protocol.number();
        let egress = self.judge(src, Direction::Egress, from_ip, to_ip, proto, port);
        let ingress = match dst {
            Some(pod) => self.judge(pod, Direction::Ingress, to_ip, from_ip, proto, port),
            None => DirectionExplanation {
                pod: None,
                node: None,
                decision: Decision::NotAPod,
            },
        };
        Ok(Explanation {
            from: qualified_name(&src.metadata),
            from_ip,
            to: to_name,
            to_ip,
            protocol,
            port,
            egress,
            ingress,
        })
    }

    /// The pod `namespace/name`, or why not.
    fn find_pod(&self, namespace: &str, name: &str) -> Result<&'a Pod, ExplainError> {
        if let Some(pod) = self.pod(namespace, name) {
            return Ok(pod);
        }
        if self
            .absent
            .iter()
            .any(|(n, p)| *n == namespace && *p == name)
        {
            return Err(ExplainError::NoAddress(format!("{namespace}/{name}")));
        }
        if !self.has_namespace(namespace)
            && !self.pods.iter().any(|p| p.metadata.namespace == namespace)
        {
            return Err(ExplainError::UnknownNamespace(namespace.to_string()));
        }
        Err(ExplainError::UnknownPod {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }

    /// `pod`'s verdict in `direction`, through a table compiled for it
    /// alone, as its node compiles it.
    fn judge(
        &self,
        pod: &Pod,
        direction: Direction,
        local: IpAddr,
        peer: IpAddr,
        proto: u8,
        port: u16,
    ) -> DirectionExplanation {
        let same = |p: &Pod| {
            p.metadata.namespace == pod.metadata.namespace && p.metadata.name == pod.metadata.name
        };
        let table = PolicyTable::compile(&self.specs(same));
        let decision = match table.evaluate(direction, local, peer, proto, port) {
            Verdict::NotIsolated => Decision::NotIsolated,
            Verdict::Allowed(at) => Decision::Allowed {
                policy: table.policy_name(at.policy).unwrap_or_default().to_string(),
                rule: at.rule as usize,
            },
            Verdict::Denied { .. } => {
                let wanted = match direction {
                    Direction::Ingress => PolicyType::Ingress,
                    Direction::Egress => PolicyType::Egress,
                };
                let policies = self
                    .policies
                    .iter()
                    .filter(|np| {
                        self.selects(np, pod) && np.effective_policy_types().contains(&wanted)
                    })
                    .map(|np| qualified_name(&np.metadata))
                    .collect();
                Decision::Denied { policies }
            }
        };
        DirectionExplanation {
            pod: Some(qualified_name(&pod.metadata)),
            node: Some(pod.spec.node_name.clone()).filter(|n| !n.is_empty()),
            decision,
        }
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allowed() { "allowed" } else { "denied" };
        writeln!(
            f,
            "{} ({}) -> {} ({}) port {}/{}: {verdict}",
            self.from,
            self.from_ip,
            self.to,
            self.to_ip,
            self.port,
            protocol_name(self.protocol)
        )?;
        write_direction(f, "egress ", "source", &self.egress, "egress")?;
        write_direction(f, "ingress", "destination", &self.ingress, "ingress")
    }
}

fn write_direction(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    role: &str,
    d: &DirectionExplanation,
    field: &str,
) -> fmt::Result {
    let place = match (&d.pod, &d.node) {
        (Some(pod), Some(node)) => format!(" ({pod} on node {node})"),
        (Some(pod), None) => format!(" ({pod})"),
        _ => String::new(),
    };
    let text = match &d.decision {
        Decision::NotIsolated => {
            format!("allowed: no policy selects the {role} for {field}: allowed by default")
        }
        Decision::Allowed { policy, rule } => {
            format!("allowed by networkpolicy {policy}, rule spec.{field}[{rule}]")
        }
        Decision::Denied { policies } => format!(
            "denied: isolated for {field} by networkpolicy {} and no rule allows this",
            policies.join(", ")
        ),
        Decision::NotAPod => {
            "allowed: the destination is not a pod, no ingress policy applies".to_string()
        }
    };
    writeln!(f, "  {label}{place}: {text}")
}
