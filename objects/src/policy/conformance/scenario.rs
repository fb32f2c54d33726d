//! The scenario format and its application to the model.
//!
//! ```yaml
//! name: deny all ingress in x
//! upstream: should support a 'default-deny-ingress' policy
//! steps:
//! - do:
//!   - apply: |            # manifests (NetworkPolicy, Namespace), as `weftctl apply -f`
//!       ...
//!   - delete-policy: {namespace: x, name: deny}
//!   - label: {pod: x/a, set: {pod: b}, remove: [tier]}     # or namespace: y
//!   expect:
//!   - probes: [80/TCP, 81/TCP, 80/UDP, 81/UDP]
//!     table: |
//!       -   x/a x/b ...
//!       x/a .   X   ...
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use weft_switch::policy::Protocol;

use super::{Model, Reachability, PORTS};
use crate::policy::{parse_port, PolicyView};
use crate::validation::{validate, ValidationContext};
use crate::{defaults, parse_manifests, Namespace, NetworkPolicy, Object, Pod};

/// Why a scenario cannot be read or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScenarioError {
    /// The file is not a scenario.
    #[error("{0}")]
    Format(String),
    /// A step's expectations are malformed or incomplete.
    #[error("step {step}: {message}")]
    Expectation { step: usize, message: String },
    /// An action cannot be applied.
    #[error("{0}")]
    Action(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    upstream: Option<String>,
    steps: Vec<RawStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    #[serde(rename = "do", default)]
    actions: Vec<RawAction>,
    expect: Vec<RawExpectation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpectation {
    probes: Vec<String>,
    table: String,
}

/// One action as written: a map with exactly one of these keys (the YAML
/// crate reads enums from tags only, `!apply`, which is less plain).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawAction {
    #[serde(default)]
    apply: Option<String>,
    #[serde(default)]
    delete_policy: Option<PolicyName>,
    #[serde(default)]
    label: Option<LabelChange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyName {
    namespace: String,
    name: String,
}

impl RawAction {
    fn action(self) -> Result<Action, String> {
        match (self.apply, self.delete_policy, self.label) {
            (Some(text), None, None) => Ok(Action::Apply(text)),
            (None, Some(p), None) => Ok(Action::DeletePolicy {
                namespace: p.namespace,
                name: p.name,
            }),
            (None, None, Some(l)) => Ok(Action::Label(l)),
            _ => Err("an action is exactly one of apply, delete-policy, label".into()),
        }
    }
}

/// One change to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Manifests to apply (create or replace): NetworkPolicies and
    /// Namespaces, with `${ip:NS/POD}` and `${cidr:NS/POD/LEN}` filled in.
    Apply(String),
    /// Delete a NetworkPolicy.
    DeletePolicy { namespace: String, name: String },
    /// Change a pod's (`pod: NS/POD`) or a namespace's labels.
    Label(LabelChange),
}

/// `label`: which object, labels set and removed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelChange {
    /// `NS/POD`.
    #[serde(default)]
    pub pod: Option<String>,
    /// A namespace's name.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Labels set.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Labels removed.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A port and protocol every pod is probed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub port: u16,
    pub protocol: Protocol,
}

impl FromStr for Probe {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (port, protocol) = parse_port(s)?;
        Ok(Probe { port, protocol })
    }
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = match self.protocol {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        };
        write!(f, "{}/{p}", self.port)
    }
}

/// The expected table for some probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub probes: Vec<Probe>,
    pub table: Reachability,
}

/// One step: changes, then what must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub actions: Vec<Action>,
    /// Covers each of [`Scenario::probes`] exactly once.
    pub expect: Vec<Expectation>,
}

/// A scenario: a name, the upstream test it follows, its steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub name: String,
    pub upstream: Option<String>,
    pub steps: Vec<Step>,
}

impl Scenario {
    /// The probes every step covers: 80 and 81, TCP and UDP.
    pub fn probes() -> Vec<Probe> {
        [Protocol::Tcp, Protocol::Udp]
            .into_iter()
            .flat_map(|protocol| PORTS.map(|port| Probe { port, protocol }))
            .collect()
    }

    /// Reads a scenario file; every table must parse and every step must
    /// cover each probe exactly once.
    pub fn parse(text: &str) -> Result<Self, ScenarioError> {
        let raw: RawScenario =
            yaml_serde::from_str(text).map_err(|e| ScenarioError::Format(e.to_string()))?;
        let names = Model::pod_names();
        let mut steps = Vec::new();
        for (i, s) in raw.steps.into_iter().enumerate() {
            let bad = |message: String| ScenarioError::Expectation { step: i, message };
            let mut expect = Vec::new();
            let mut seen = Vec::new();
            for e in s.expect {
                let probes = e
                    .probes
                    .iter()
                    .map(|p| p.parse::<Probe>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                for p in &probes {
                    if seen.contains(p) {
                        return Err(bad(format!("probe {p} has two tables")));
                    }
                    seen.push(*p);
                }
                let table = Reachability::parse(&e.table, &names)
                    .map_err(|m| bad(format!("table for {}: {m}", e.probes.join(", "))))?;
                expect.push(Expectation { probes, table });
            }
            for p in Self::probes() {
                if !seen.contains(&p) {
                    return Err(bad(format!("no table for probe {p}")));
                }
            }
            let actions = s
                .actions
                .into_iter()
                .map(RawAction::action)
                .collect::<Result<Vec<_>, _>>()
                .map_err(bad)?;
            steps.push(Step { actions, expect });
        }
        if steps.is_empty() {
            return Err(ScenarioError::Format("a scenario needs steps".into()));
        }
        Ok(Scenario {
            name: raw.name,
            upstream: raw.upstream,
            steps,
        })
    }

    /// `text` with `${ip:NS/POD}` and `${cidr:NS/POD/LEN}` replaced, using
    /// `ip_of(namespace, pod)` for the pods' addresses.
    pub fn render(
        text: &str,
        ip_of: impl Fn(&str, &str) -> Option<IpAddr>,
    ) -> Result<String, ScenarioError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| {
                ScenarioError::Action(format!("unclosed placeholder in {rest:?}"))
            })?;
            out.push_str(&placeholder(&after[..end], &ip_of)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// One placeholder's value.
fn placeholder(
    body: &str,
    ip_of: &impl Fn(&str, &str) -> Option<IpAddr>,
) -> Result<String, ScenarioError> {
    let bad = || {
        ScenarioError::Action(format!(
            "bad placeholder ${{{body}}}: use ${{ip:NS/POD}} or ${{cidr:NS/POD/LEN}}"
        ))
    };
    let (what, arg) = body.split_once(':').ok_or_else(bad)?;
    let mut parts = arg.split('/');
    let (ns, pod) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let ip = ip_of(ns, pod).ok_or_else(|| {
        ScenarioError::Action(format!("${{{body}}}: no pod {ns}/{pod} with an address"))
    })?;
    match (what, parts.next(), parts.next()) {
        ("ip", None, None) => Ok(ip.to_string()),
        ("cidr", Some(len), None) => {
            let len: u8 = len.parse().map_err(|_| bad())?;
            let net = IpNet::new(ip, len).map_err(|_| bad())?;
            Ok(net.trunc().to_string())
        }
        _ => Err(bad()),
    }
}

/// The model's objects as a scenario changes them.
#[derive(Debug, Clone)]
pub struct ModelState {
    pub namespaces: Vec<Namespace>,
    pub pods: Vec<Pod>,
    pub policies: Vec<NetworkPolicy>,
}

impl ModelState {
    /// The model with no policies.
    pub fn new() -> Self {
        let m = Model::new();
        ModelState {
            namespaces: m.namespaces,
            pods: m.pods,
            policies: Vec::new(),
        }
    }

    /// The objects indexed for policy resolution.
    pub fn view(&self) -> PolicyView<'_> {
        PolicyView::new(&self.namespaces, &self.pods, &self.policies)
    }

    /// Applies one action as the control plane would (manifests defaulted
    /// and validated).
    pub fn apply(&mut self, action: &Action) -> Result<(), ScenarioError> {
        match action {
            Action::Apply(text) => {
                let text = Scenario::render(text, |ns, name| {
                    let pod = self
                        .pods
                        .iter()
                        .find(|p| p.metadata.namespace == ns && p.metadata.name == name)?;
                    pod.ips().first().copied()
                })?;
                let objects =
                    parse_manifests(&text).map_err(|e| ScenarioError::Action(e.to_string()))?;
                for mut obj in objects {
                    defaults::apply(&mut obj);
                    validate(&obj, &ValidationContext::default())
                        .map_err(|e| ScenarioError::Action(e.to_string()))?;
                    self.store(obj)?;
                }
                Ok(())
            }
            Action::DeletePolicy { namespace, name } => {
                let before = self.policies.len();
                self.policies
                    .retain(|p| !(p.metadata.namespace == *namespace && p.metadata.name == *name));
                if self.policies.len() == before {
                    return Err(ScenarioError::Action(format!(
                        "no networkpolicy {namespace}/{name} to delete"
                    )));
                }
                Ok(())
            }
            Action::Label(change) => {
                let labels = match (&change.pod, &change.namespace) {
                    (Some(pod), None) => {
                        let (ns, name) = pod.split_once('/').unwrap_or(("", pod));
                        self.pods
                            .iter_mut()
                            .find(|p| p.metadata.namespace == ns && p.metadata.name == name)
                            .map(|p| &mut p.metadata.labels)
                    }
                    (None, Some(ns)) => self
                        .namespaces
                        .iter_mut()
                        .find(|n| n.metadata.name == *ns)
                        .map(|n| &mut n.metadata.labels),
                    _ => {
                        return Err(ScenarioError::Action(
                            "label: name exactly one of pod or namespace".into(),
                        ))
                    }
                };
                let labels = labels.ok_or_else(|| {
                    ScenarioError::Action(format!("label: no such object: {change:?}"))
                })?;
                for k in &change.remove {
                    labels.remove(k);
                }
                labels.extend(change.set.clone());
                Ok(())
            }
        }
    }

    /// Creates or replaces an applied object.
    fn store(&mut self, obj: Object) -> Result<(), ScenarioError> {
        match obj {
            Object::NetworkPolicy(np) => {
                let same = |p: &NetworkPolicy| {
                    p.metadata.namespace == np.metadata.namespace
                        && p.metadata.name == np.metadata.name
                };
                match self.policies.iter_mut().find(|p| same(p)) {
                    Some(old) => *old = np,
                    None => self.policies.push(np),
                }
            }
            Object::Namespace(ns) => match self
                .namespaces
                .iter_mut()
                .find(|n| n.metadata.name == ns.metadata.name)
            {
                Some(old) => *old = ns,
                None => self.namespaces.push(ns),
            },
            other => {
                return Err(ScenarioError::Action(format!(
                    "scenarios apply NetworkPolicies and Namespaces, not {}",
                    other.kind().kind_name()
                )))
            }
        }
        Ok(())
    }
}

impl Default for ModelState {
    fn default() -> Self {
        Self::new()
    }
}
