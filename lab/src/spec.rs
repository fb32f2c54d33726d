//! What a lab is made of, before it is made.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;

use super::{LabError, LabName};

/// Where lab state directories live unless told otherwise. Under `/run`, like
/// the named namespaces themselves, so both vanish together on reboot.
pub const DEFAULT_STATE_ROOT: &str = "/run/weft-lab";

/// The default underlay: TEST-NET-1 (RFC 5737), never routed anywhere.
pub const DEFAULT_UNDERLAY: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 0, 2, 0), 24);

/// The description of a lab to build with [`Lab::up`](super::Lab::up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabSpec {
    /// The lab name; prefixes every namespace and names the state directory.
    pub name: LabName,
    /// How many node hosts (`weft-<name>-n1..nN`); 0 builds only the control plane.
    pub nodes: usize,
    /// The underlay network: the control plane gets its first host address,
    /// node K the (K+1)-th.
    pub underlay: Ipv4Net,
    /// The directory holding `<name>/lab.json` and `<name>/logs/`.
    pub state_root: PathBuf,
}

impl LabSpec {
    /// A spec with the default underlay ([`DEFAULT_UNDERLAY`]) and state root
    /// ([`DEFAULT_STATE_ROOT`]).
    pub fn new(name: &str, nodes: usize) -> Result<Self, LabError> {
        let spec = LabSpec {
            name: LabName::new(name)?,
            nodes,
            underlay: DEFAULT_UNDERLAY,
            state_root: PathBuf::from(DEFAULT_STATE_ROOT),
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks that the underlay is a network address with room for every host.
    pub fn validate(&self) -> Result<(), LabError> {
        if self.underlay != self.underlay.trunc() {
            return Err(LabError::InvalidArgument(format!(
                "underlay {} is not a network address; did you mean {}?",
                self.underlay,
                self.underlay.trunc()
            )));
        }
        if self.underlay.prefix_len() > 30 {
            return Err(LabError::InvalidArgument(format!(
                "underlay {} is too small; use a /30 or larger",
                self.underlay
            )));
        }
        let room = self.underlay.hosts().count();
        if self.nodes + 1 > room {
            return Err(LabError::InvalidArgument(format!(
                "underlay {} has {room} host addresses, but {} nodes and a control plane need {}",
                self.underlay,
                self.nodes,
                self.nodes + 1
            )));
        }
        Ok(())
    }

    /// The underlay address (with prefix) of host `i`: 0 is the control plane,
    /// K is node K.
    pub(crate) fn host_address(&self, i: usize) -> Result<Ipv4Net, LabError> {
        let addr = self.underlay.hosts().nth(i).ok_or_else(|| {
            LabError::InvalidArgument(format!("underlay {} has no host #{i}", self.underlay))
        })?;
        Ipv4Net::new(addr, self.underlay.prefix_len())
            .map_err(|e| LabError::InvalidArgument(e.to_string()))
    }
}
