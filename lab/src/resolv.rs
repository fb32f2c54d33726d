//! The lab pods' `resolv.conf`: `/etc/netns/<pod namespace>/resolv.conf`,
//! which `ip netns exec` (and so `weftctl lab exec`) mounts over
//! `/etc/resolv.conf`, naming the cluster DNS address and the Kubernetes
//! search list, as a pod's runtime would.
//!
//! Contract: written when a pod joins the cluster (from its agent's
//! `cluster_dns` and `cluster_domain`), removed with the pod's namespace
//! (`remove_pod`, teardown); removing what is not there is fine. Files
//! only under `/etc/netns/weft-<lab>-*`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::LabError;

/// Where `ip netns exec` looks for a namespace's own `/etc` files.
const NETNS_ETC: &str = "/etc/netns";

fn dir_of(ns: &str) -> PathBuf {
    Path::new(NETNS_ETC).join(ns)
}

/// The file's text for a pod in Kubernetes namespace `namespace`.
pub(crate) fn text(nameserver: &str, domain: &str, namespace: &str) -> String {
    let d = domain.trim_end_matches('.');
    format!(
        "# written by the weft lab for this pod\n\
         nameserver {nameserver}\nsearch {namespace}.svc.{d} svc.{d} {d}\noptions ndots:5\n"
    )
}

/// Writes the namespace `ns`'s resolv.conf.
pub(crate) fn write(
    ns: &str,
    nameserver: &str,
    domain: &str,
    namespace: &str,
) -> Result<(), LabError> {
    let dir = dir_of(ns);
    let io = |cause| LabError::Io {
        context: format!("writing {}/resolv.conf", dir.display()),
        cause,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    weft_files::write_atomic(
        &dir.join("resolv.conf"),
        text(nameserver, domain, namespace).as_bytes(),
        0o644,
    )
    .map_err(io)
}

/// Removes the namespace `ns`'s resolv.conf and its directory (if then empty).
pub(crate) fn remove(ns: &str) {
    let dir = dir_of(ns);
    match std::fs::remove_file(dir.join("resolv.conf")) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return,
        Err(_) => {}
    }
    let _ = std::fs::remove_dir(&dir);
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_search_list_follows_the_namespace_and_domain() {
        assert_eq!(
            super::text("10.96.0.10", "cluster.local.", "shop"),
            "# written by the weft lab for this pod\nnameserver 10.96.0.10\n\
             search shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
        );
    }
}
