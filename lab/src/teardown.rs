//! Removing everything a lab made, with or without its state file.

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::cmd::{ip, list_namespaces, namespace_pids};
use super::process::{cmdline, proc_stat, terminate, TERM_GRACE};
use super::{state, LabError, LabName, NamespaceRole};

/// How many times the namespaces are swept for processes (a dying process
/// may have forked a new one).
const SWEEPS: usize = 3;

/// What a teardown removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// The processes stopped, recorded ones first.
    pub processes_killed: Vec<KilledProcess>,
    /// The namespaces deleted.
    pub namespaces_deleted: Vec<String>,
    /// The state directory, if there was one.
    pub state_dir_removed: Option<PathBuf>,
    /// Things noticed on the way that did not stop the teardown (e.g. an
    /// unreadable state file).
    pub warnings: Vec<String>,
}

/// A process a teardown stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KilledProcess {
    /// Its pid.
    pub pid: u32,
    /// The namespace it ran in (as recorded, or where it was found).
    pub ns: String,
    /// Its command line when it was found.
    pub cmdline: String,
}

impl TeardownReport {
    /// Whether there was nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.processes_killed.is_empty()
            && self.namespaces_deleted.is_empty()
            && self.state_dir_removed.is_none()
    }
}

/// Removes every process, namespace and the state directory of lab `name`
/// whose state lives under `state_root`.
///
/// In order: stops the recorded processes (if the state file is readable)
/// and every process found inside one of the lab's namespaces (SIGTERM, then
/// SIGKILL); deletes the lab's namespaces (pods first); removes the state
/// directory. Only namespaces for which [`LabName::owns`] holds are touched.
/// Idempotent: succeeds, with an empty report, when nothing is there. When
/// something cannot be removed it goes on with the rest and then returns
/// [`LabError::TeardownIncomplete`].
pub fn teardown(name: &LabName, state_root: &Path) -> Result<TeardownReport, LabError> {
    let dir = state_root.join(name.as_str());
    let mut report = TeardownReport::default();
    let mut problems = Vec::new();

    // Recorded processes, identified by pid and start time.
    let mut targets: Vec<(u32, u64, String)> = Vec::new();
    match state::load(&dir) {
        Ok(Some(state)) => targets.extend(
            state
                .processes
                .iter()
                .map(|p| (p.pid, p.start_ticks, p.ns.clone())),
        ),
        Ok(None) => {}
        Err(e) => report
            .warnings
            .push(format!("ignoring the state file: {e}")),
    }
    stop(&mut targets, &mut report, &mut problems);

    // Whatever still runs inside the lab's namespaces.
    let mut namespaces: Vec<String> = match list_namespaces() {
        Ok(all) => all.into_iter().filter(|ns| name.owns(ns)).collect(),
        Err(e) => {
            problems.push(format!("cannot list namespaces: {e}"));
            Vec::new()
        }
    };
    for _ in 0..SWEEPS {
        let mut found = Vec::new();
        for ns in &namespaces {
            match namespace_pids(ns) {
                Ok(pids) => found.extend(pids.into_iter().filter_map(|pid| {
                    let ticks = proc_stat(pid)?.start_ticks;
                    Some((pid, ticks, ns.clone()))
                })),
                Err(e) => report
                    .warnings
                    .push(format!("cannot list processes in {ns}: {e}")),
            }
        }
        if found.is_empty() {
            break;
        }
        stop(&mut found, &mut report, &mut problems);
    }

    // Pods first, the underlay last: the order a reader of the log expects.
    namespaces.sort_by_key(|ns| {
        std::cmp::Reverse(match name.role_of(ns) {
            Some(NamespaceRole::Pod { .. }) => 3,
            Some(NamespaceRole::Node(_) | NamespaceRole::External) => 2,
            Some(NamespaceRole::ControlPlane) => 1,
            _ => 0,
        })
    });
    for ns in namespaces {
        crate::resolv::remove(&ns);
        match ip(&["netns", "delete", &ns]) {
            Ok(_) => report.namespaces_deleted.push(ns),
            // Someone else deleted it meanwhile: fine.
            Err(_) if !Path::new("/run/netns").join(&ns).exists() => {}
            Err(e) => problems.push(e.to_string()),
        }
    }

    match fs::remove_dir_all(&dir) {
        Ok(()) => report.state_dir_removed = Some(dir),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("removing {}: {e}", dir.display())),
    }

    if problems.is_empty() {
        Ok(report)
    } else {
        Err(LabError::TeardownIncomplete {
            name: name.to_string(),
            problems,
            report: Box::new(report),
        })
    }
}

/// Stops `targets` (pid, start ticks, namespace), adding those that were
/// alive to the report and those that survived to `problems`.
fn stop(
    targets: &mut Vec<(u32, u64, String)>,
    report: &mut TeardownReport,
    problems: &mut Vec<String>,
) {
    let already: BTreeSet<u32> = report.processes_killed.iter().map(|k| k.pid).collect();
    targets
        .retain(|(pid, ticks, _)| !already.contains(pid) && super::process::is_alive(*pid, *ticks));
    targets.sort();
    targets.dedup_by_key(|t| t.0);
    let found: Vec<KilledProcess> = targets
        .iter()
        .map(|(pid, _, ns)| KilledProcess {
            pid: *pid,
            ns: ns.clone(),
            cmdline: cmdline(*pid),
        })
        .collect();
    let pairs: Vec<(u32, u64)> = targets.iter().map(|(p, t, _)| (*p, *t)).collect();
    let survivors = terminate(&pairs, TERM_GRACE);
    for pid in &survivors {
        problems.push(format!(
            "pid {pid} is still alive after SIGTERM and SIGKILL"
        ));
    }
    report
        .processes_killed
        .extend(found.into_iter().filter(|k| !survivors.contains(&k.pid)));
}
