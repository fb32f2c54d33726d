//! What a lab cluster is made of, and where its programs are.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::record::Binaries;
use crate::{LabError, LabSpec};

/// The control plane's program name.
pub const CONTROL_PLANE_PROGRAM: &str = "weft-control-plane";
/// The node agent's program name.
pub const AGENT_PROGRAM: &str = "weft-agent";
/// The control plane's gRPC port in a lab.
pub const CONTROL_PLANE_PORT: u16 = 7443;
/// Every agent's WireGuard port (each node has its own namespace).
pub const WIREGUARD_PORT: u16 = 51820;
/// The bound of every wait unless a spec says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest a `cargo build` of the binaries may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The description of a lab cluster for [`Cluster::up`](super::Cluster::up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    /// The topology: lab name, node count, underlay, state root.
    pub lab: LabSpec,
    /// How many pods each node gets (`nK-p1..`).
    pub pods_per_node: usize,
    /// The programs to run; `None`: next to the running executable
    /// ([`Binaries::locate`]).
    pub binaries: Option<Binaries>,
    /// The bound of each wait (control plane ready, agents joined, peers
    /// seen). The connectivity check has its own, shorter bounds.
    pub wait: Duration,
    /// `WEFT_LOG` for the control plane and the agents (e.g. `info`,
    /// `debug`, `weft_node_agent=debug`).
    pub log_filter: String,
    /// Extra flags for `weft-control-plane`, after the lab's own (e.g.
    /// `["--lease-ttl", "3", "--removal-grace", "3"]` for a cluster whose
    /// dead nodes expire quickly). Recorded, so restarts keep them.
    pub control_plane_args: Vec<String>,
    /// Whether to add the outside host `ext` (on the underlay, not a node;
    /// [`Lab::add_external`](crate::Lab::add_external)).
    pub external: bool,
    /// How many control-plane replicas (1 to [`MAX_REPLICAS`]). More than
    /// one: they share an etcd (one member, `etcd` on the `PATH` or
    /// `$WEFT_ETCD_BIN`) started in the control plane's namespace, `cp` on
    /// port 7443 and `cp2`, `cp3`... on the next ports, and the agents list
    /// every one in `--control-plane`. One: the embedded store.
    pub replicas: usize,
}

/// The most control-plane replicas a lab runs.
pub const MAX_REPLICAS: usize = 5;

impl ClusterSpec {
    /// A lab `name` of `nodes` nodes with `pods_per_node` pods each, with the
    /// default underlay and state root, binaries next to this executable.
    pub fn new(name: &str, nodes: usize, pods_per_node: usize) -> Result<Self, LabError> {
        let spec = ClusterSpec {
            lab: LabSpec::new(name, nodes)?,
            pods_per_node,
            binaries: None,
            wait: DEFAULT_WAIT,
            log_filter: "info".to_string(),
            control_plane_args: Vec::new(),
            external: true,
            replicas: 1,
        };
        spec.validate()?;
        Ok(spec)
    }

    /// Checks the counts and the topology.
    pub fn validate(&self) -> Result<(), LabError> {
        self.lab.validate()?;
        if self.lab.nodes == 0 {
            return Err(LabError::InvalidArgument(
                "a cluster needs at least 1 node".to_string(),
            ));
        }
        // A /24 per node leaves 253 pod addresses; more pods than that per
        // node cannot be right in a lab.
        if self.pods_per_node > 250 {
            return Err(LabError::InvalidArgument(format!(
                "{} pods per node is too many for a lab; use at most 250",
                self.pods_per_node
            )));
        }
        if self.replicas == 0 || self.replicas > MAX_REPLICAS {
            return Err(LabError::InvalidArgument(format!(
                "{} control-plane replicas: use 1 to {MAX_REPLICAS}",
                self.replicas
            )));
        }
        if self.wait < Duration::from_millis(100) {
            return Err(LabError::InvalidArgument(format!(
                "wait bound {:?} is too short; use at least 100ms",
                self.wait
            )));
        }
        Ok(())
    }
}

impl Binaries {
    /// `dir/weft-control-plane` and `dir/weft-agent`.
    pub fn in_dir(dir: &Path) -> Binaries {
        Binaries {
            control_plane: dir.join(CONTROL_PLANE_PROGRAM),
            agent: dir.join(AGENT_PROGRAM),
        }
    }

    /// The binaries in the directory of the running executable (a cargo
    /// profile directory such as `target/release`), or in its parent when
    /// the executable is a test in `target/<profile>/deps`. Fails if either
    /// is missing, naming the cargo command that builds them.
    pub fn locate() -> Result<Binaries, LabError> {
        let dir = profile_dir()?;
        let binaries = Binaries::in_dir(&dir);
        binaries.check()?;
        Ok(binaries)
    }

    /// Checks that both are executable files; the error names the missing one
    /// and the cargo command that builds it.
    pub fn check(&self) -> Result<(), LabError> {
        for path in [&self.control_plane, &self.agent] {
            let executable = std::fs::metadata(path)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false);
            if !executable {
                let dir = path.parent().unwrap_or(Path::new("."));
                return Err(LabError::MissingBinary {
                    path: path.clone(),
                    build: build_hint(dir),
                });
            }
        }
        Ok(())
    }
}

/// The cargo profile directory holding the running executable: its own
/// directory, or the parent of `deps/`.
pub fn profile_dir() -> Result<PathBuf, LabError> {
    let exe =
        std::env::current_exe().map_err(|e| LabError::io("finding the running executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        if let Some(parent) = dir.parent() {
            return Ok(parent.to_path_buf());
        }
    }
    Ok(dir)
}

/// The cargo flag selecting the profile whose output directory is `dir`
/// (`target/debug`: none, `target/release`: `--release`, else `--profile`).
fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("release") => vec!["--release".to_string()],
        Some("debug") | None => Vec::new(),
        Some(other) => vec!["--profile".to_string(), other.to_string()],
    }
}

/// The command a person runs to build the binaries into `dir`.
fn build_hint(dir: &Path) -> String {
    let mut words = vec!["cargo", "build"];
    let profile = profile_args(dir);
    words.extend(profile.iter().map(String::as_str));
    words.extend(["-p", "weft-control-plane", "-p", "weft-node-agent"]);
    words.join(" ")
}

/// The manifest of the workspace this `weftctl` was built from (where
/// `cargo run` and the tests build the lab's binaries).
pub fn workspace_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml")
}

/// For tests: the lab's binaries in `profile_dir`, first built there with
/// [`cargo_build_binaries`] (the `cargo` of `$CARGO`, or `cargo`) from the
/// [`workspace_manifest`], then checked. Once per process: later calls get
/// the first call's result (a test process has one profile directory).
pub fn build_binaries_once(profile_dir: &Path) -> Result<Binaries, String> {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            cargo_build_binaries(Path::new(&cargo), &workspace_manifest(), profile_dir)
                .map_err(|e| format!("building the lab's binaries: {e}"))?;
            let binaries = Binaries::in_dir(profile_dir);
            binaries.check().map_err(|e| e.to_string())?;
            Ok(binaries)
        })
        .clone()
}

/// Runs `cargo build --bins -p weft-control-plane -p weft-node-agent -p
/// weftctl -p weft-images` (the set the image tests build too: cargo
/// unifies features over the packages of one build, so two builds of
/// different sets would keep relinking each other's programs) for
/// the workspace of `manifest` into the profile directory `profile_dir`
/// (`<target dir>/<profile>`), with cargo's output on this process's
/// stderr. A no-op for cargo when they are up to date.
pub fn cargo_build_binaries(
    cargo: &Path,
    manifest: &Path,
    profile_dir: &Path,
) -> Result<(), LabError> {
    let target_dir = profile_dir.parent().ok_or_else(|| {
        LabError::InvalidArgument(format!(
            "{} is not a cargo profile directory",
            profile_dir.display()
        ))
    })?;
    let mut args: Vec<String> = vec!["build".into(), "--bins".into()];
    args.extend(profile_args(profile_dir));
    for a in [
        "-p",
        "weft-control-plane",
        "-p",
        "weft-node-agent",
        "-p",
        "weftctl",
        "-p",
        "weft-images",
    ] {
        args.push(a.into());
    }
    args.push("--manifest-path".into());
    args.push(manifest.display().to_string());
    args.push("--target-dir".into());
    args.push(target_dir.display().to_string());
    let command = format!("{} {}", cargo.display(), args.join(" "));
    let mut cmd = Command::new(cargo);
    // `cargo run` and `cargo test` give the programs they run the variables
    // of the running crate (CARGO_PKG_NAME, CARGO_MANIFEST_DIR, ...); build
    // scripts track some of them (ring's does), so passing them on would make
    // this build, and the next normal one, rebuild those crates.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_crate_variable) {
            cmd.env_remove(&key);
        }
    }
    let mut child = cmd
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|cause| LabError::Spawn {
            command: command.clone(),
            cause,
        })?;
    let deadline = Instant::now() + BUILD_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => {
                return Err(LabError::Command {
                    command,
                    status: status.to_string(),
                    stderr: "see cargo's output above".to_string(),
                })
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LabError::CommandTimeout {
                    command,
                    timeout: BUILD_TIMEOUT,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(LabError::io(format!("waiting for `{command}`"), e)),
        }
    }
}

/// Whether `key` is one of the variables cargo sets for a crate it builds
/// or runs (not one of its configuration variables like `CARGO_HOME`).
fn is_crate_variable(key: &str) -> bool {
    const PREFIXES: [&str; 4] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CFG_",
        "CARGO_BIN_EXE_",
    ];
    const NAMES: [&str; 6] = [
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_profile() {
        assert_eq!(
            build_hint(Path::new("/w/target/release")),
            "cargo build --release -p weft-control-plane -p weft-node-agent"
        );
        assert_eq!(
            build_hint(Path::new("/w/target/debug")),
            "cargo build -p weft-control-plane -p weft-node-agent"
        );
        assert_eq!(
            profile_args(Path::new("/w/target/bench")),
            ["--profile", "bench"]
        );
    }

    #[test]
    fn crate_variables_are_not_passed_to_the_inner_build() {
        assert!(is_crate_variable("CARGO_PKG_NAME"));
        assert!(is_crate_variable("CARGO_MANIFEST_DIR"));
        assert!(is_crate_variable("CARGO_BIN_EXE_weftctl"));
        assert!(is_crate_variable("OUT_DIR"));
        assert!(!is_crate_variable("CARGO_HOME"));
        assert!(!is_crate_variable("CARGO_TARGET_DIR"));
        assert!(!is_crate_variable("CARGO"));
    }

    #[test]
    fn refuses_bad_specs() {
        assert!(ClusterSpec::new("ok", 0, 1).is_err());
        assert!(ClusterSpec::new("ok", 2, 251).is_err());
        assert!(ClusterSpec::new("Bad", 2, 1).is_err());
        let mut spec = ClusterSpec::new("ok", 3, 2).unwrap();
        assert_eq!(spec.pods_per_node, 2);
        spec.replicas = 0;
        assert!(spec.validate().is_err());
        spec.replicas = MAX_REPLICAS + 1;
        assert!(spec.validate().is_err());
        spec.replicas = 3;
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn missing_binaries_name_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = Binaries::in_dir(&dir.path().join("release"))
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains("weft-control-plane"), "{err}");
        assert!(err.contains("cargo build --release"), "{err}");
    }
}
