//! The sans-IO contract is enforced, not just stated: `switch/clippy.toml`
//! bans clock reads and IO, and `src/lib.rs` denies the lints that apply
//! the ban, so a build of weft-switch with one of them fails (CI runs
//! `cargo clippy --workspace --all-targets -- -D warnings`). This test
//! shows the ban bites: it lints a scratch crate that uses the same
//! `clippy.toml` and the same lint levels, once with banned calls (clippy
//! must fail, naming each) and once without (clippy must pass).

// This test is the IO the crate itself may not do: it writes a scratch
// crate and runs cargo.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::Path;
use std::process::Command;

/// The banned calls, one per line, and the name clippy reports for each.
const BANNED: &[(&str, &str)] = &[
    (
        "pub fn a() -> std::time::Instant { std::time::Instant::now() }",
        "std::time::Instant::now",
    ),
    (
        "pub fn b(t: std::time::Instant) -> std::time::Duration { t.elapsed() }",
        "std::time::Instant::elapsed",
    ),
    (
        "pub fn c() { let _ = std::time::SystemTime::now(); }",
        "std::time::SystemTime::now",
    ),
    (
        "pub fn c2() -> bool { std::time::UNIX_EPOCH.elapsed().is_ok() }",
        "std::time::SystemTime::elapsed",
    ),
    (
        "pub fn d() { std::thread::sleep(std::time::Duration::from_millis(1)) }",
        "std::thread::sleep",
    ),
    (
        "pub fn e() -> std::io::Result<Vec<u8>> { std::fs::read(\"/etc/hostname\") }",
        "std::fs::read",
    ),
    (
        "pub fn f(s: &std::net::UdpSocket) -> std::io::Result<usize> { s.send(&[]) }",
        "std::net::UdpSocket",
    ),
    (
        "pub fn g(f: &std::fs::File) -> bool { f.metadata().is_ok() }",
        "std::fs::File",
    ),
    (
        "pub fn h() -> Option<std::process::Command> { None }",
        "std::process::Command",
    ),
];

/// The lint levels `src/lib.rs` sets for the ban.
const HEADER: &str = "#![deny(clippy::disallowed_methods, clippy::disallowed_types)]\n";

/// Lints a scratch crate made of `body` under weft-switch's clippy.toml;
/// returns whether clippy passed, and what it said.
fn clippy(dir: &Path, body: &str) -> (bool, String) {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"probe\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    std::fs::copy(manifest_dir.join("clippy.toml"), dir.join("clippy.toml")).unwrap();
    std::fs::write(dir.join("src/lib.rs"), format!("{HEADER}{body}\n")).unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["clippy", "--quiet", "--offline", "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CLIPPY_CONF_DIR")
        .output()
        .expect("running cargo clippy (is clippy installed?)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_crate_denies_the_ban_lints() {
    let lib = include_str!("../src/lib.rs");
    let deny = lib
        .split("#![deny(")
        .skip(1)
        .map(|d| d.split(")]").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",");
    assert!(deny.contains("clippy::disallowed_methods"), "{deny}");
    assert!(deny.contains("clippy::disallowed_types"), "{deny}");
    assert!(lib.contains("#![forbid(unsafe_code)]"));
}

#[test]
fn a_clock_read_or_io_fails_the_lint_and_clean_code_passes() {
    let scratch = tempfile::tempdir().unwrap();
    let body: Vec<&str> = BANNED.iter().map(|(code, _)| *code).collect();
    let (passed, said) = clippy(&scratch.path().join("banned"), &body.join("\n"));
    assert!(
        !passed,
        "clippy passed code that reads the clock and does IO:\n{said}"
    );
    for (_, name) in BANNED {
        assert!(
            said.contains(&format!("`{name}`")),
            "no complaint about {name}:\n{said}"
        );
    }
    let clean = "pub fn add(a: u64, b: u64) -> u64 { a.wrapping_add(b) }\npub fn later(t: std::time::Instant) -> std::time::Instant { t + std::time::Duration::from_secs(1) }";
    let (passed, said) = clippy(&scratch.path().join("clean"), clean);
    assert!(passed, "clippy refused code that does no IO:\n{said}");
}
