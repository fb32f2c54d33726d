//! Labs of several control-plane replicas on one etcd
//! ([`ClusterSpec::replicas`] > 1).
//!
//! Contract:
//! - [`plan`] records a one-member etcd on the control plane namespace's
//!   loopback (`127.0.0.1:2379`, data under `<lab>/etcd/`, label `etcd`)
//!   and the replicas `cp2`, `cp3`, ... on the control plane's underlay
//!   address, ports 7444, 7445, ..., state under `<lab>/cpK/`.
//! - [`Cluster::start_etcd`] starts etcd (recorded in `lab.json`, so
//!   teardown kills it) and waits until it serves; `cp` then runs with
//!   `--store etcd://...` and creates the cluster secret;
//!   [`Cluster::start_replicas`] copies that secret into each other
//!   replica's state dir and starts them one by one, each waited for
//!   until it answers an Admin call.
//! - Every replica is an ordinary lab process: [`Cluster::running_pid`]
//!   finds it by label; teardown stops it with the rest.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use super::record::{ControlPlaneRecord, EtcdRecord, ReplicaRecord};
use super::spec::{ClusterSpec, CONTROL_PLANE_PORT};
use super::Cluster;
use crate::LabError;

/// The process label of an HA lab's etcd.
pub const ETCD_LABEL: &str = "etcd";
/// etcd's client port on the control plane namespace's loopback.
const ETCD_CLIENT_PORT: u16 = 2379;
/// What etcd logs once it serves clients.
const ETCD_READY: &str = "ready to serve client requests";

/// The etcd and the replicas besides `cp` that `spec` asks for.
pub(super) fn plan(
    lab_dir: &Path,
    address: IpAddr,
    spec: &ClusterSpec,
) -> (Option<EtcdRecord>, Vec<ReplicaRecord>) {
    if spec.replicas <= 1 {
        return (None, Vec::new());
    }
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let etcd = EtcdRecord {
        program: std::env::var("WEFT_ETCD_BIN").unwrap_or_else(|_| "etcd".to_string()),
        client: SocketAddr::new(loopback, ETCD_CLIENT_PORT),
        peer: SocketAddr::new(loopback, ETCD_CLIENT_PORT + 1),
        data_dir: lab_dir.join("etcd"),
    };
    let replicas = (2..=spec.replicas)
        .map(|k| {
            let label = format!("cp{k}");
            let state_dir = lab_dir.join(&label);
            ReplicaRecord {
                address: SocketAddr::new(address, CONTROL_PLANE_PORT + k as u16 - 1),
                admin_conf: state_dir.join("admin.conf"),
                state_dir,
                label,
            }
        })
        .collect();
    (Some(etcd), replicas)
}

/// The flags that put a replica on the lab's etcd (none without one).
pub(super) fn store_args(cp: &ControlPlaneRecord) -> Vec<String> {
    match &cp.etcd {
        Some(e) => vec!["--store".to_string(), format!("etcd://{}", e.client)],
        None => Vec::new(),
    }
}

impl Cluster {
    /// Starts the lab's etcd, if it has one, and waits until it serves.
    pub(super) fn start_etcd(&mut self) -> Result<(), LabError> {
        let cp = self.record.control_plane.clone();
        let Some(etcd) = cp.etcd else { return Ok(()) };
        let client = format!("http://{}", etcd.client);
        let peer = format!("http://{}", etcd.peer);
        let cluster = format!("{ETCD_LABEL}={peer}");
        let data_dir = etcd.data_dir.display().to_string();
        let args = [
            "--name",
            ETCD_LABEL,
            "--data-dir",
            &data_dir,
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &cluster,
            "--initial-cluster-state",
            "new",
        ];
        let mut process = self
            .lab
            .spawn_in(&cp.ns, ETCD_LABEL, &etcd.program, &args, &[])?;
        let ready = process.wait_for_log(ETCD_READY, self.wait);
        self.children.insert(ETCD_LABEL.to_string(), process);
        ready.map_err(|e| e.in_step("starting etcd"))
    }

    /// Starts every replica besides `cp` (which has made the cluster
    /// secret), one by one, each waited for.
    pub(super) fn start_replicas(&mut self) -> Result<(), LabError> {
        let cp = self.record.control_plane.clone();
        let secret = cp.state_dir.join("cluster-secret");
        for r in &cp.replicas {
            let step = |what: &str| format!("{what} control-plane replica {}", r.label);
            std::fs::create_dir_all(&r.state_dir)
                .and_then(|_| std::fs::copy(&secret, r.state_dir.join("cluster-secret")))
                .map_err(|e| LabError::io(step("preparing the state dir of"), e))?;
            self.spawn_replica(&r.label, r.address, &r.state_dir, &r.admin_conf)
                .map_err(|e| e.in_step(step("starting")))?;
        }
        Ok(())
    }

    /// Every control-plane replica's process label, `cp` first.
    pub fn control_plane_labels(&self) -> Vec<String> {
        let cp = &self.record.control_plane;
        std::iter::once(super::CONTROL_PLANE_LABEL.to_string())
            .chain(cp.replicas.iter().map(|r| r.label.clone()))
            .collect()
    }

    /// The admin credential replica `label` wrote (its own address first,
    /// so calls with it go to that replica while it runs).
    pub fn replica_admin_conf(&self, label: &str) -> Option<&Path> {
        let cp = &self.record.control_plane;
        if label == super::CONTROL_PLANE_LABEL {
            return Some(&cp.admin_conf);
        }
        cp.replicas
            .iter()
            .find(|r| r.label == label)
            .map(|r| r.admin_conf.as_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_get_the_next_ports_and_one_etcd() {
        let mut spec = ClusterSpec::new("ha", 2, 0).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(plan(Path::new("/l"), ip, &spec), (None, vec![]));
        spec.replicas = 3;
        let (etcd, replicas) = plan(Path::new("/l"), ip, &spec);
        assert_eq!(etcd.unwrap().client.to_string(), "127.0.0.1:2379");
        let got: Vec<(String, String)> = replicas
            .iter()
            .map(|r| (r.label.clone(), r.address.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("cp2".to_string(), "192.0.2.1:7444".to_string()),
                ("cp3".to_string(), "192.0.2.1:7445".to_string())
            ]
        );
        assert_eq!(replicas[1].admin_conf, Path::new("/l/cp3/admin.conf"));
    }
}
