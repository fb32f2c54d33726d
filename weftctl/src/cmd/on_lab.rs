//! `--lab [NAME]`: an admin command against a local lab's control plane
//! (`weftctl --lab apply -f svc.yaml`, `weftctl --lab get pods -A`), with
//! the lab's admin credentials.
//!
//! Contract:
//! - `--lab` alone names the lab `WEFT_LAB` names, else `lab`;
//!   `--lab=NAME` anywhere, or `--lab NAME` before the command
//!   ([`normalize_args`] turns that into `--lab=NAME`, since clap cannot
//!   tell `--lab apply` from a lab named `apply`).
//! - The lab's control plane listens on the lab's underlay only, so the
//!   command runs on a thread inside the control plane's namespace
//!   ([`weft_lab::in_netns`]), with the lab's `admin.conf` in place of
//!   `--config`. That needs root; without it the error says so.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Result};
use weft_lab::{Cluster, LabName, DEFAULT_STATE_ROOT};

/// The lab an admin command goes to: the control plane's namespace and
/// the lab's admin credentials.
#[derive(Debug, Clone)]
pub(crate) struct LabTarget {
    /// The control plane's network namespace.
    pub ns: String,
    /// The lab's `admin.conf`.
    pub admin_conf: PathBuf,
}

/// `--lab NAME` right before the command becomes `--lab=NAME`, unless NAME
/// is one of `commands` (then it is the command, and `--lab` names the
/// default lab) or a flag.
pub(crate) fn normalize_args(args: Vec<OsString>, commands: &[&str]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter().peekable();
    // The program name, then everything up to the command.
    if let Some(program) = iter.next() {
        out.push(program);
    }
    while let Some(arg) = iter.next() {
        let text = arg.to_str().unwrap_or_default().to_string();
        if text == "--lab" {
            let next = iter.peek().and_then(|n| n.to_str()).map(str::to_string);
            match next {
                Some(name) if !name.starts_with('-') && !commands.contains(&name.as_str()) => {
                    iter.next();
                    out.push(OsString::from(format!("--lab={name}")));
                }
                _ => out.push(arg),
            }
            continue;
        }
        let is_command = commands.contains(&text.as_str());
        out.push(arg);
        if is_command {
            break;
        }
    }
    out.extend(iter);
    out
}

/// The lab `name` (empty: `WEFT_LAB`, else `lab`) under its state root
/// (`WEFT_LAB_STATE_ROOT`, else the default).
pub(crate) fn resolve(name: &str) -> Result<LabTarget> {
    let cluster = open(name)?;
    // On an HA lab, the credential of the first replica that runs (each
    // names its own address first).
    let admin_conf = cluster
        .control_plane_labels()
        .iter()
        .find(|label| cluster.running_pid(label).is_some())
        .and_then(|label| cluster.replica_admin_conf(label))
        .unwrap_or(cluster.admin_conf())
        .to_path_buf();
    Ok(LabTarget {
        ns: cluster.control_plane().ns.clone(),
        admin_conf,
    })
}

/// The lab `name` (empty: `WEFT_LAB`, else `lab`), opened (root only).
pub(crate) fn open(name: &str) -> Result<Cluster> {
    let name = if name.is_empty() {
        std::env::var("WEFT_LAB")
            .ok()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "lab".to_string())
    } else {
        name.to_string()
    };
    let root = std::env::var_os("WEFT_LAB_STATE_ROOT")
        .filter(|r| !r.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_ROOT));
    let lab = LabName::new(&name)?;
    if !nix::unistd::geteuid().is_root() {
        bail!("`--lab` needs root (it enters lab '{name}''s network namespace); run it with sudo");
    }
    Ok(Cluster::open(&lab, &root)?)
}

/// Runs `f` inside the lab's control-plane namespace.
pub(crate) fn run_in<T: Send + 'static>(
    target: &LabTarget,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    Ok(weft_lab::in_netns(&target.ns, f)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMANDS: &[&str] = &["apply", "get", "nodes", "lab"];

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from).collect();
        normalize_args(args, COMMANDS)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn a_lab_name_before_the_command_is_bound_to_the_flag() {
        assert_eq!(
            norm(&["w", "--lab", "apply", "-f", "x"]),
            ["w", "--lab", "apply", "-f", "x"]
        );
        assert_eq!(
            norm(&["w", "--lab", "lab2", "get", "pods"]),
            ["w", "--lab=lab2", "get", "pods"]
        );
        assert_eq!(
            norm(&["w", "--lab=lab2", "get", "pods"]),
            ["w", "--lab=lab2", "get", "pods"]
        );
        // After the command nothing is touched: `get --lab pods` is the
        // default lab and the kind pods.
        assert_eq!(
            norm(&["w", "get", "--lab", "pods"]),
            ["w", "get", "--lab", "pods"]
        );
        assert_eq!(norm(&["w", "--lab", "--help"]), ["w", "--lab", "--help"]);
        assert_eq!(norm(&["w", "--lab"]), ["w", "--lab"]);
        assert_eq!(norm(&["w"]), ["w"]);
    }
}
