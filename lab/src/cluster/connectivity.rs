//! The connectivity check of a lab cluster: the cluster's [`Inventory`]
//! (from `lab.json`: every source is a lab namespace on this machine), then
//! the shared check of [`crate::check`], all of it from here.

use super::record::ClusterRecord;
use crate::check::{self, Connectivity, Inventory, InventoryNode, InventoryPod, Probe};
use crate::{LabError, LabName};

/// The nodes (their namespaces and overlay addresses) and pods (their
/// namespaces and addresses) of the cluster `record`.
pub(super) fn inventory(record: &ClusterRecord) -> Result<Inventory, LabError> {
    let mut nodes = Vec::new();
    for n in &record.nodes {
        let address = n.overlay.ok_or_else(|| {
            LabError::InvalidArgument(format!(
                "node {} has no overlay address recorded (has it joined?)",
                n.name
            ))
        })?;
        nodes.push(InventoryNode {
            name: n.name.clone(),
            address,
            netns: Some(std::path::Path::new("/run/netns").join(&n.ns)),
        });
    }
    let pods = record
        .pods
        .iter()
        .map(|p| InventoryPod {
            name: p.name.clone(),
            node: p.node.clone(),
            address: p.ip,
            netns: p.netns.clone(),
        })
        .collect();
    Ok(Inventory { nodes, pods })
}

/// Runs every check of the cluster `record` of lab `name` (none without pods).
pub(super) fn check(record: &ClusterRecord, name: &LabName) -> Result<Connectivity, LabError> {
    let inventory = inventory(record)?;
    let plan = check::plan(&inventory)?;
    tracing::debug!(lab = %name, checks = plan.len(), "checking connectivity");
    check::run(&inventory, plan, Probe::default())
}
