//! What every lab test shares: the root check, running `weftctl` (with the
//! caller's lab and config variables removed, so only the arguments
//! decide), and [`Lab`]: a lab cluster named after the test and this
//! process (a guard tears it down even when the test fails), its pods by
//! `namespace/name`, manifests applied through `weftctl apply -f`.
//! `net.rs`: servers and clients on threads inside lab namespaces.
//!
//! Each lab test binary includes this module (`mod lab_support;`) and uses
//! part of it.
#![allow(dead_code)]

pub(crate) mod net;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use weft_lab::{build_binaries_once, ClusterGuard, ClusterSpec};

pub(crate) const WEFTCTL: &str = env!("CARGO_BIN_EXE_weftctl");

/// Fails (never skips) when the test cannot run: the lab needs root.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, TUN devices); run them as root"
    );
}

/// Runs weftctl; `CARGO` removed so `lab` commands build nothing.
pub(crate) fn weftctl(args: &[&str]) -> Output {
    Command::new(WEFTCTL)
        .args(args)
        .env_remove("CARGO")
        .env_remove("WEFT_LAB")
        .env_remove("WEFT_LAB_STATE_ROOT")
        .env_remove("WEFT_CONFIG")
        .env_remove("WEFT_AGENT_SOCKET")
        .output()
        .expect("weftctl runs")
}

/// Runs weftctl, which must succeed; its stdout.
pub(crate) fn ok(args: &[&str]) -> String {
    let out = weftctl(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "weftctl {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs weftctl, which must fail; its stderr.
pub(crate) fn fails(args: &[&str]) -> String {
    let out = weftctl(args);
    assert!(!out.status.success(), "weftctl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The lab cluster and the pods the test put in it.
pub(crate) struct Lab {
    pub(crate) cluster: ClusterGuard,
    /// `--lab=NAME`, for admin commands.
    pub(crate) lab: String,
    pods: BTreeMap<String, (PathBuf, IpAddr)>,
}

impl Lab {
    /// A lab of `nodes` nodes named `tag` + this process's pid (each test
    /// its own tag).
    pub(crate) fn up(tag: &str, nodes: usize) -> Self {
        let dir = Path::new(WEFTCTL).parent().expect("a directory");
        let binaries = build_binaries_once(dir)
            .unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"));
        let mut spec = ClusterSpec::new(&format!("{tag}{}", std::process::id()), nodes, 0).unwrap();
        spec.binaries = Some(binaries);
        let cluster = ClusterGuard::up(spec).unwrap();
        let lab = format!("--lab={}", cluster.name());
        Self {
            cluster,
            lab,
            pods: BTreeMap::new(),
        }
    }

    /// `lab pod add NS/NAME --node NODE` with labels (`k=v`) and named
    /// ports (`name=port/PROTO`).
    pub(crate) fn pod(&mut self, name: &str, node: &str, labels: &[&str], ports: &[&str]) {
        let cluster_name = self.cluster.name().to_string();
        let mut args = vec![
            "lab",
            "pod",
            "add",
            "--name",
            &cluster_name,
            name,
            "--node",
            node,
        ];
        for l in labels {
            args.extend(["--label", l]);
        }
        for p in ports {
            args.extend(["--port", p]);
        }
        ok(&args);
        let fresh =
            weft_lab::Cluster::open(self.cluster.name(), Path::new(weft_lab::DEFAULT_STATE_ROOT))
                .unwrap();
        let p = fresh.pod(name).unwrap();
        self.pods.insert(name.to_string(), (p.netns.clone(), p.ip));
    }

    /// A pod's network namespace.
    pub(crate) fn netns(&self, pod: &str) -> &Path {
        &self.pods[pod].0
    }

    /// A pod's address.
    pub(crate) fn ip(&self, pod: &str) -> IpAddr {
        self.pods[pod].1
    }

    /// A node's network namespace.
    pub(crate) fn node_netns(&self, node: &str) -> PathBuf {
        Path::new("/run/netns").join(&self.cluster.node(node).unwrap().ns)
    }

    /// `weftctl apply -f` of `manifest`.
    pub(crate) fn apply(&self, manifest: &str) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), manifest).unwrap();
        ok(&[&self.lab, "apply", "-f", file.path().to_str().unwrap()]);
    }

    /// An admin command against the lab, which must succeed.
    pub(crate) fn admin(&self, args: &[&str]) -> String {
        let mut all = vec![self.lab.as_str()];
        all.extend_from_slice(args);
        ok(&all)
    }

    /// The cluster IP of Service `NAME` in `namespace`.
    pub(crate) fn cluster_ip_in(&self, namespace: &str, name: &str) -> IpAddr {
        let svc: Value = serde_json::from_str(
            &self.admin(&["get", "service", name, "-n", namespace, "-o", "json"]),
        )
        .unwrap();
        svc["spec"]["clusterIP"]
            .as_str()
            .unwrap_or_else(|| panic!("no cluster IP: {svc}"))
            .parse()
            .unwrap()
    }

    /// The agent's status on `node`.
    pub(crate) fn status(&self, node: &str) -> weft_agent_api::StatusResult {
        self.cluster.agent_status(node).unwrap()
    }
}
