//! Lab names and the names of the namespaces a lab owns.
//!
//! A lab named `x` owns exactly the namespaces `weft-x-ul`, `weft-x-cp`,
//! `weft-x-ext`, `weft-x-nK` and `weft-x-nK-pJ` (K, J >= 1, written without
//! leading zeros).
//! Ownership is decided by the prefix `weft-x-` (with its trailing dash) and
//! an exact match of the rest against those patterns, so lab `a` owns neither
//! `weft-ab-n1` (lab `ab`) nor `weft-a-n1-ul` (lab `a-n1`).

use std::fmt;

use super::LabError;

/// The longest lab name accepted.
///
/// Interface names never contain the lab name, so this bound only keeps
/// namespace names, paths and logs readable.
pub(crate) const MAX_NAME_LEN: usize = 20;

/// A validated lab name: 1 to `MAX_NAME_LEN` (20) bytes of `[a-z0-9-]`, starting
/// and ending with a letter or digit, without `--`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabName(String);

/// What a namespace of a lab is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NamespaceRole {
    /// The underlay switch (`weft-x-ul`).
    Underlay,
    /// The control-plane host (`weft-x-cp`).
    ControlPlane,
    /// The outside host on the underlay that is not a node (`weft-x-ext`).
    External,
    /// Node host K (`weft-x-nK`).
    Node(usize),
    /// Pod J of node K (`weft-x-nK-pJ`).
    Pod {
        /// The node index K.
        node: usize,
        /// The pod index J.
        pod: usize,
    },
}

impl LabName {
    /// Validates `name`, saying precisely which rule it breaks.
    pub fn new(name: &str) -> Result<Self, LabError> {
        let refuse = |reason: &str| LabError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(refuse("it is empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(refuse(&format!(
                "it is {} bytes long; at most {MAX_NAME_LEN} are allowed",
                name.len()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(refuse(&format!(
                "it contains {c:?}; only lowercase letters a-z, digits 0-9 and '-' are allowed"
            )));
        }
        if name.starts_with('-') || name.ends_with('-') {
            return Err(refuse("it must start and end with a letter or a digit"));
        }
        if name.contains("--") {
            return Err(refuse("it must not contain \"--\""));
        }
        Ok(LabName(name.to_string()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `weft-<name>-`: every namespace of the lab starts with this.
    pub fn prefix(&self) -> String {
        format!("weft-{}-", self.0)
    }

    /// The name of the namespace that has `role` in this lab.
    pub fn namespace(&self, role: NamespaceRole) -> String {
        let prefix = self.prefix();
        match role {
            NamespaceRole::Underlay => format!("{prefix}ul"),
            NamespaceRole::ControlPlane => format!("{prefix}cp"),
            NamespaceRole::External => format!("{prefix}ext"),
            NamespaceRole::Node(k) => format!("{prefix}n{k}"),
            NamespaceRole::Pod { node, pod } => format!("{prefix}n{node}-p{pod}"),
        }
    }

    /// The role of `ns` if it is one of this lab's namespace names, exactly.
    pub fn role_of(&self, ns: &str) -> Option<NamespaceRole> {
        let rest = ns.strip_prefix(&self.prefix())?;
        match rest {
            "ul" => return Some(NamespaceRole::Underlay),
            "cp" => return Some(NamespaceRole::ControlPlane),
            "ext" => return Some(NamespaceRole::External),
            _ => {}
        }
        let rest = rest.strip_prefix('n')?;
        match rest.split_once("-p") {
            None => Some(NamespaceRole::Node(parse_index(rest)?)),
            Some((node, pod)) => Some(NamespaceRole::Pod {
                node: parse_index(node)?,
                pod: parse_index(pod)?,
            }),
        }
    }

    /// Whether `ns` is one of this lab's namespace names.
    pub fn owns(&self, ns: &str) -> bool {
        self.role_of(ns).is_some()
    }
}

/// A canonical index: decimal digits, no sign, no leading zero, at least 1.
fn parse_index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for LabName {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LabName::new(s)
    }
}
