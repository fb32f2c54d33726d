//! A pod's `resolv.conf` for `ip netns exec`: `/etc/netns/<name>/resolv.conf`
//! names the cluster DNS address and the Kubernetes search list, so a
//! process run in the pod's named namespace resolves as a pod does.
//!
//! Contract: only for namespaces the agent created and named after the
//! pod (`ip netns` bind-mounts `/etc/netns/<name>/` files over `/etc/` for
//! the namespace `<name>`); a CNI pod's runtime writes its own from the
//! CNI result. Written atomically (weft-files) when the pod is added,
//! removed with it (the directory too, if nothing else is in it).
//! Failures are logged, never fatal: the pod works, only its name lookups
//! through `ip netns exec` would not.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Where `ip netns exec` looks for a namespace's own `/etc` files.
const NETNS_ETC: &str = "/etc/netns";

/// What pods are told about cluster DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDns {
    /// The cluster DNS address.
    pub nameserver: IpAddr,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
}

impl PodDns {
    /// The file's text for a pod in Kubernetes namespace `namespace`.
    pub fn resolv_conf(&self, namespace: &str) -> String {
        let d = self.domain.trim_end_matches('.');
        format!(
            "# written by weft-agent for this pod; removed with it\n\
             nameserver {}\nsearch {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n",
            self.nameserver
        )
    }
}

/// The directory of the named namespace `name`.
fn dir_of(root: &Path, name: &str) -> PathBuf {
    root.join(name)
}

/// Writes the pod's file under `root` (`/etc/netns` in the agent).
pub(super) fn write_in(
    root: &Path,
    dns: &PodDns,
    name: &str,
    namespace: &str,
) -> std::io::Result<()> {
    let dir = dir_of(root, name);
    std::fs::create_dir_all(&dir)?;
    weft_files::write_atomic(
        &dir.join("resolv.conf"),
        dns.resolv_conf(namespace).as_bytes(),
        0o644,
    )
}

/// Removes the pod's file and its directory if that is then empty.
pub(super) fn remove_in(root: &Path, name: &str) {
    let dir = dir_of(root, name);
    match std::fs::remove_file(dir.join("resolv.conf")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove the pod's resolv.conf")
        }
    }
    // Not empty (someone else's files): left alone.
    let _ = std::fs::remove_dir(&dir);
}

/// [`write_in`] under `/etc/netns`, logged on failure.
pub(super) fn write(dns: &PodDns, name: &str, namespace: &str) {
    if let Err(e) = write_in(Path::new(NETNS_ETC), dns, name, namespace) {
        tracing::warn!(pod = name, error = %e, "cannot write the pod's /etc/netns resolv.conf");
    }
}

/// [`remove_in`] under `/etc/netns`.
pub(super) fn remove(name: &str) {
    remove_in(Path::new(NETNS_ETC), name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_the_vip_and_the_search_list_and_goes_with_the_pod() {
        let dns = PodDns {
            nameserver: "10.96.0.10".parse().unwrap(),
            domain: "cluster.local.".into(),
        };
        let root = tempfile::tempdir().unwrap();
        write_in(root.path(), &dns, "n1-p2", "shop").unwrap();
        let text = std::fs::read_to_string(root.path().join("n1-p2/resolv.conf")).unwrap();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "nameserver 10.96.0.10",
                "search shop.svc.cluster.local svc.cluster.local cluster.local",
                "options ndots:5"
            ]
        );
        remove_in(root.path(), "n1-p2");
        assert!(!root.path().join("n1-p2").exists());
        // Removing what is not there is quiet; a directory with other files stays.
        remove_in(root.path(), "n1-p2");
        write_in(root.path(), &dns, "p3", "default").unwrap();
        std::fs::write(root.path().join("p3/hosts"), "").unwrap();
        remove_in(root.path(), "p3");
        assert!(root.path().join("p3/hosts").exists());
        assert!(!root.path().join("p3/resolv.conf").exists());
    }
}
