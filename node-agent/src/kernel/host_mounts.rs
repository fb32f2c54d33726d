//! The host's mount namespace, for the mounts that must outlive the agent.
//!
//! A named network namespace is a bind mount on `/run/netns/NAME`. An
//! agent started with `ip netns exec` (the way a node runs inside a network
//! namespace: a lab, a sandbox) runs in a mount namespace of its own, which
//! `ip` made a *slave* of the host's: mounts the host makes reach the
//! agent, but mounts the agent makes there never reach the host, and vanish
//! with the agent. So the agent makes and removes those mounts in a mount
//! namespace whose `/run/netns` is in the *master* peer group of its own
//! (the host's, or a peer of it): from there they propagate to the host and
//! to every slave, the agent included.
//!
//! Contract:
//! - [`run`] calls its closure on a fresh OS thread. If the agent's own
//!   `/run/netns` receives mounts from a master peer group, the thread
//!   first enters a mount namespace where that group is shared: it leaves
//!   the filesystem attributes it shares with the other threads
//!   (`unshare(CLONE_FS)`, which `setns` requires), then `setns`. The
//!   namespace is found by scanning `/proc/*/mountinfo` for a process whose
//!   `/run/netns` (or the mount holding it) is `shared:N` where the agent's
//!   is `master:N`. Otherwise (the agent shares the host's mounts, or its
//!   mount is itself shared) the closure runs on that thread in the agent's
//!   own mount namespace. The thread ends after the closure, so no other
//!   thread ever changes namespace.
//! - [`receives_only`] says whether the agent's view of `/run/netns` is a
//!   slave one.
//! - Failures name what was tried and what the operator can do instead.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::panic;
use std::path::Path;
use std::thread;

use nix::sched::{setns, unshare, CloneFlags};

/// Where named network namespaces are mounted.
const RUN_DIR: &str = "/run/netns";
/// The calling thread's mount namespace.
const OWN_MNT: &str = "/proc/thread-self/ns/mnt";

/// Why the host's mount namespace could not be entered.
#[derive(Debug, thiserror::Error)]
#[error(
    "this agent runs in a mount namespace of its own (e.g. started by `ip netns exec`), and \
     entering the host's, where a network namespace must be mounted to outlive the agent, \
     failed: {what}; create the namespace on the host (`ip netns add NAME`) and give its path \
     instead (`weftctl pod add NAME --netns /run/netns/NAME`)"
)]
pub struct HostMountsError {
    /// What failed, and why.
    what: String,
}

/// One line of a `mountinfo` file: the mount point and its peer groups.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    /// Where it is mounted.
    mount_point: String,
    /// `shared:N`: the peer group it shares mounts with.
    shared: Option<u64>,
    /// `master:N`: the peer group it receives mounts from.
    master: Option<u64>,
}

/// Parses a `mountinfo` line: `ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS
/// [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`.
fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?.replace("\\040", " ");
    fields.next()?; // mount options
    let (mut shared, mut master) = (None, None);
    for field in fields.take_while(|f| *f != "-") {
        if let Some(n) = field.strip_prefix("shared:") {
            shared = n.parse().ok();
        } else if let Some(n) = field.strip_prefix("master:") {
            master = n.parse().ok();
        }
    }
    Some(MountEntry {
        mount_point,
        shared,
        master,
    })
}

/// The mount that holds `path` in a `mountinfo` text: the last-listed one
/// with the longest mount point that is `path` or one of its parents.
fn holding(mountinfo: &str, path: &str) -> Option<MountEntry> {
    let covers = |mp: &str| {
        mp == "/" || path == mp || (path.starts_with(mp) && path[mp.len()..].starts_with('/'))
    };
    let mut best: Option<MountEntry> = None;
    for entry in mountinfo.lines().filter_map(parse_line) {
        if covers(&entry.mount_point)
            && best
                .as_ref()
                .is_none_or(|b| entry.mount_point.len() >= b.mount_point.len())
        {
            best = Some(entry);
        }
    }
    best
}

/// Whether the agent's `/run/netns` (or the mount holding it) only
/// receives mounts from another peer group: then mounts the agent makes
/// there stay its own.
pub fn receives_only() -> bool {
    own_entry().is_some_and(|e| e.master.is_some() && e.shared.is_none())
}

fn own_entry() -> Option<MountEntry> {
    let own = std::fs::read_to_string("/proc/thread-self/mountinfo").ok()?;
    holding(&own, RUN_DIR)
}

/// The mount namespace to make `/run/netns` mounts in, if not the agent's
/// own (see the module docs).
fn target() -> Result<Option<File>, HostMountsError> {
    let Some(own) = own_entry() else {
        return Ok(None);
    };
    let Some(group) = own.master.filter(|_| own.shared.is_none()) else {
        return Ok(None);
    };
    let own_ns = std::fs::metadata(OWN_MNT).map(|m| (m.dev(), m.ino())).ok();
    let me = std::process::id().to_string();
    let procs = std::fs::read_dir("/proc").map_err(|e| HostMountsError {
        what: format!("listing /proc: {e}"),
    })?;
    let mut refused: Option<String> = None;
    for entry in procs.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")) else {
            continue;
        };
        let peer = holding(&info, RUN_DIR)
            .is_some_and(|e| e.mount_point == own.mount_point && e.shared == Some(group));
        if !peer {
            continue;
        }
        let path = format!("/proc/{pid}/ns/mnt");
        match File::open(&path) {
            Ok(file) => {
                let ns = file.metadata().map(|m| (m.dev(), m.ino())).ok();
                if ns.is_some() && ns != own_ns {
                    return Ok(Some(file));
                }
            }
            Err(e) => {
                refused.get_or_insert_with(|| format!("{path}: {e}"));
            }
        }
    }
    Err(HostMountsError {
        what: format!(
            "no process this agent may enter shares the mounts of {} (peer group {group}){}",
            own.mount_point,
            refused
                .map(|r| format!("; the last refusal: {r}"))
                .unwrap_or_default()
        ),
    })
}

/// Runs `f` on a fresh thread in the mount namespace where `/run/netns`
/// mounts reach the host (see the module docs) and returns its value. A
/// panic in `f` resumes on the caller.
pub fn run<F, T>(f: F) -> Result<T, HostMountsError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let target = target()?;
    thread::scope(|scope| {
        let handle = thread::Builder::new()
            .name("weft-host-mnt".into())
            .spawn_scoped(scope, move || {
                if let Some(ns) = target {
                    enter(&ns)?;
                }
                Ok(f())
            })
            .map_err(|e| HostMountsError {
                what: format!("spawning a thread: {e}"),
            })?;
        match handle.join() {
            Ok(result) => result,
            Err(panic) => panic::resume_unwind(panic),
        }
    })
}

/// Moves the calling thread (one [`run`] spawned) into the mount namespace
/// `ns`.
fn enter(ns: &File) -> Result<(), HostMountsError> {
    // setns(CLONE_NEWNS) refuses a thread that shares its root and working
    // directory with others; this thread stops sharing them first.
    unshare(CloneFlags::CLONE_FS).map_err(|e| HostMountsError {
        what: format!("unsharing the thread's filesystem attributes: {e}"),
    })?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(|e| HostMountsError {
        what: format!("entering the mount namespace: {e}"),
    })?;
    // setns leaves the thread's working directory at the new root.
    let _ = std::env::set_current_dir(Path::new("/"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "\
22 1 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
45 27 254:0 /run/netns /run/netns rw,relatime shared:7 - ext4 /dev/vda rw
";
    const SLAVE: &str = "\
55 54 254:0 / / rw,relatime master:1 - ext4 /dev/vda rw
60 55 254:0 /run/netns /run/netns rw,relatime master:7 - ext4 /dev/vda rw
61 60 0:4 net:[4026532378] /run/netns/x rw master:7 - nsfs nsfs rw
";

    #[test]
    fn mountinfo_lines_give_their_peer_groups() {
        assert_eq!(
            parse_line("45 27 254:0 /run/netns /run/netns rw,relatime shared:7 master:2 - ext4 /dev/vda rw"),
            Some(MountEntry {
                mount_point: "/run/netns".into(),
                shared: Some(7),
                master: Some(2),
            })
        );
        assert_eq!(
            parse_line("9 1 0:5 / /my\\040dir rw - tmpfs t rw").map(|e| e.mount_point),
            Some("/my dir".into())
        );
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn the_mount_holding_run_netns_is_found() {
        let host = holding(HOST, RUN_DIR).unwrap();
        assert_eq!(
            (host.mount_point.as_str(), host.shared),
            ("/run/netns", Some(7))
        );
        // /run/netns/x is a namespace below it, not the one holding it.
        let slave = holding(SLAVE, RUN_DIR).unwrap();
        assert_eq!((slave.master, slave.shared), (Some(7), None));
        // Without a /run/netns mount, the root holds it.
        let bare = "27 1 254:0 / / rw shared:1 - ext4 /dev/vda rw\n";
        assert_eq!(holding(bare, RUN_DIR).unwrap().mount_point, "/");
        // "/run/netnsx" is no parent of "/run/netns".
        let other = "27 1 254:0 / / rw - ext4 a rw\n28 27 0:1 / /run/net rw - tmpfs t rw\n";
        assert_eq!(holding(other, RUN_DIR).unwrap().mount_point, "/");
    }

    /// Wherever the test runs, [`run`] ends up in a mount namespace and the
    /// caller's thread stays where it was.
    #[test]
    fn run_leaves_the_callers_thread_alone() {
        let before = std::fs::metadata(OWN_MNT).unwrap().ino();
        let inside = run(|| std::fs::metadata(OWN_MNT).unwrap().ino());
        if !receives_only() {
            // Nothing to enter: it runs in the test's own mount namespace.
            assert_eq!(inside.unwrap(), before);
        }
        assert_eq!(std::fs::metadata(OWN_MNT).unwrap().ino(), before);
    }
}
