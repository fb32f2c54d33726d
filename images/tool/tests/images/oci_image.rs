//! The agent's OCI image: built (twice: the same bytes), imported into a
//! containerd of the test's own, and run.

use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};
use weft_e2e::{E2eError, Result};

use crate::support::containerd::Containerd;
use crate::support::{bin_dir, repo, require_root, run, run_ok, Stopwatch};

const BUILD: Duration = Duration::from_secs(600);
const CTR: Duration = Duration::from_secs(120);

fn sha256_file(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| E2eError::io(path.display().to_string(), e))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

#[test]
fn agent_image_is_reproducible_imports_and_runs() -> Result<()> {
    require_root()?;
    let mut clock = Stopwatch::start("oci_image");
    let bins = bin_dir()?;
    let tmp = tempfile::tempdir().map_err(|e| E2eError::io("tempdir", e))?;
    let build = |out: &std::path::Path| {
        run_ok(
            Command::new(repo().join("images/agent/build"))
                .arg("--bin-dir")
                .arg(&bins)
                .arg("--out")
                .arg(out),
            BUILD,
        )
    };
    let a = tmp.path().join("a.tar");
    let b = tmp.path().join("b.tar");
    let said = build(&a)?;
    build(&b)?;
    assert!(said.contains("docker.io/weft/weft-agent:"), "{said}");
    assert_eq!(sha256_file(&a)?, sha256_file(&b)?, "two builds differ");
    clock.lap("built twice, same sha256");

    let ctd = Containerd::start(None, "docker.io/weft/pause:1", None)?;
    let version = run_ok(Command::new(bins.join("weft-agent")).arg("--version"), CTR)?;
    let tag = version
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| E2eError::failed(format!("weft-agent --version said {version:?}")))?;
    let image = format!("docker.io/weft/weft-agent:{tag}");
    // The DaemonSet runs this image (Docker Hub's short form), never
    // pulling it, and the commands it names are the image's.
    let manifest = std::fs::read_to_string(repo().join("deploy/kubernetes/weft-agent.yaml"))
        .map_err(|e| E2eError::io("deploy/kubernetes/weft-agent.yaml", e))?;
    let short = format!("image: weft/weft-agent:{tag}");
    assert_eq!(
        manifest.matches(&short).count(),
        2,
        "the DaemonSet's images are not {short}"
    );
    assert_eq!(manifest.matches("imagePullPolicy: IfNotPresent").count(), 2);
    assert!(manifest.contains(r#"command: ["/usr/local/bin/weft-install-cni"]"#));
    assert!(manifest.contains(r#"command: ["/usr/local/bin/weft-agent"]"#));
    let imported = ctd.ctr(
        &["-n", "k8s.io", "images", "import", &a.display().to_string()],
        CTR,
    )?;
    assert!(imported.contains(&image), "ctr import said: {imported}");
    let listed = ctd.ctr(&["-n", "k8s.io", "images", "ls", "-q"], CTR)?;
    assert!(listed.lines().any(|l| l == image), "{listed}");
    clock.lap("imported");

    // Its agent runs inside a container.
    let id = format!("weft-version-{}", std::process::id());
    let out = ctd.ctr(
        &[
            "-n",
            "k8s.io",
            "run",
            "--rm",
            &image,
            &id,
            "/usr/local/bin/weft-agent",
            "--version",
        ],
        CTR,
    )?;
    assert_eq!(out.trim(), version.trim());

    // The installer the DaemonSet's init container runs puts weft-cni and
    // the network list into the host directories mounted at /host.
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&host).map_err(|e| E2eError::io("host dir", e))?;
    let mount = format!(
        "type=bind,src={},dst=/host,options=rbind:rw",
        host.display()
    );
    let id = format!("weft-install-{}", std::process::id());
    let out = ctd.ctr(
        &[
            "-n",
            "k8s.io",
            "run",
            "--rm",
            "--mount",
            &mount,
            &image,
            &id,
            "/usr/local/bin/weft-install-cni",
        ],
        CTR,
    )?;
    assert!(
        out.contains("installed /host/opt/cni/bin/weft-cni"),
        "{out}"
    );
    let installed = std::fs::read(host.join("opt/cni/bin/weft-cni"))
        .map_err(|e| E2eError::io("installed weft-cni", e))?;
    let built = std::fs::read(bins.join("weft-cni")).map_err(|e| E2eError::io("weft-cni", e))?;
    // The image holds the stripped binary: smaller, and it runs.
    assert!(!installed.is_empty() && installed.len() <= built.len());
    let list = std::fs::read_to_string(host.join("etc/cni/net.d/10-weft.conflist"))
        .map_err(|e| E2eError::io("installed conflist", e))?;
    let template = std::fs::read_to_string(repo().join("cni/10-weft.conflist"))
        .map_err(|e| E2eError::io("cni/10-weft.conflist", e))?;
    assert_eq!(list, template);
    // weft-cni without CNI_COMMAND names itself and its versions (stderr).
    let cni = run(
        Command::new(host.join("opt/cni/bin/weft-cni")).env_remove("CNI_COMMAND"),
        CTR,
    )?;
    let said = String::from_utf8_lossy(&cni.stderr);
    assert!(cni.status.success() && said.contains("1.1.0"), "{said}");
    clock.lap("ran weft-agent --version and weft-install-cni in containers");
    drop(ctd);
    clock.lap("containerd removed");
    Ok(())
}
