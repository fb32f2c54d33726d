//! Every image script, given bad input, ends with one clear line on stderr
//! and a non-zero exit, before it builds or boots anything.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use weft_e2e::{E2eError, Result};

use crate::support::{bin_dir, repo, require_root, run, unique};

/// Runs `script args...` with `env`, and checks it failed with exactly one
/// line on stderr that starts with the script's name and holds `says`.
fn fails_with(script: &str, args: &[&str], env: &[(&str, &Path)], says: &str) -> Result<()> {
    let mut cmd = Command::new(repo().join(script));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run(&mut cmd, Duration::from_secs(60))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let what = format!("{script} {}", args.join(" "));
    if out.status.success() {
        return Err(E2eError::failed(format!("`{what}` succeeded")));
    }
    if lines.len() != 1 || !lines[0].starts_with(script) || !lines[0].contains(says) {
        return Err(E2eError::failed(format!(
            "`{what}` should end with one line saying '{says}', said:\n{stderr}"
        )));
    }
    Ok(())
}

#[test]
fn scripts_refuse_bad_input_with_one_line() -> Result<()> {
    require_root()?;
    let bins = bin_dir()?;
    let empty = tempfile::tempdir().map_err(|e| E2eError::io("tempdir", e))?;
    let empty_dir = empty.path().display().to_string();
    let state = empty.path().join("vm-state");
    let vm_env: &[(&str, &Path)] = &[("WEFT_VM_STATE", &state)];
    let token = ["--token", "abcdef.0123456789abcdef"];
    let hash = format!("sha256:{}", "0".repeat(64));
    let name = unique("bad");

    // Missing binaries.
    fails_with(
        "images/node/build",
        &["--bin-dir", &empty_dir],
        &[],
        "weft-agent not found",
    )?;
    fails_with(
        "images/agent/build",
        &["--bin-dir", &empty_dir],
        &[],
        "weft-agent not found",
    )?;
    let no_tool = empty.path().join("weft-image");
    fails_with(
        "images/pause/build",
        &["--tool", &no_tool.display().to_string()],
        &[],
        "weft-image not found",
    )?;
    fails_with(
        "images/node/build",
        &["--frobnicate"],
        &[],
        "unknown argument",
    )?;

    // No QEMU.
    let no_qemu = empty.path().join("qemu-system-x86_64");
    fails_with(
        "images/node/run",
        &["up", "--name", &name, "--image", &empty_dir],
        &[("WEFT_QEMU", &no_qemu), ("WEFT_VM_STATE", &state)],
        "not found; install it",
    )?;
    // No token (or no control plane, or no CA hash) with the others.
    fails_with(
        "images/node/run",
        &[
            "up",
            "--name",
            &name,
            "--control-plane",
            "192.0.2.1:7443",
            "--ca-hash",
            &hash,
        ],
        vm_env,
        "--token is required",
    )?;
    fails_with(
        "images/node/run",
        &[
            "up",
            "--name",
            &name,
            token[0],
            token[1],
            "--ca-hash",
            &hash,
        ],
        vm_env,
        "--control-plane HOST:PORT is required",
    )?;
    fails_with(
        "images/node/run",
        &[
            "up",
            "--name",
            &name,
            "--control-plane",
            "192.0.2.1:7443",
            "--token",
            "nope",
            "--ca-hash",
            &hash,
        ],
        vm_env,
        "is not a join token",
    )?;
    // No image.
    let nothing = empty.path().join("no-image").display().to_string();
    fails_with(
        "images/node/run",
        &["up", "--name", &name, "--image", &nothing],
        vm_env,
        "no node image",
    )?;
    // Nonsense.
    fails_with(
        "images/node/run",
        &["up", "--name", "Bad Name"],
        vm_env,
        "--name",
    )?;
    fails_with(
        "images/node/run",
        &["up", "--nodes", "two"],
        vm_env,
        "--nodes must be a number",
    )?;
    fails_with("images/node/run", &["frob"], vm_env, "unknown command")?;
    fails_with("images/node/run", &[], vm_env, "no command")?;
    // Nothing up.
    fails_with(
        "images/node/run",
        &["exec", "--name", &name, "n1", "--", "true"],
        vm_env,
        "is up",
    )?;
    assert!(
        !state.join(&name).exists(),
        "a refused run left state behind"
    );
    // The helper itself: a socket nobody serves is one line and exit 125.
    let out = run(
        Command::new(bins.join("weft-image"))
            .args(["vm-exec", "--timeout", "2"])
            .arg(empty.path().join("n1.ctl"))
            .args(["--", "true"]),
        Duration::from_secs(30),
    )?;
    assert_eq!(out.status.code(), Some(125));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    Ok(())
}
