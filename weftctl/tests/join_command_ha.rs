//! `weftctl token create` on a cluster of several control-plane replicas
//! (one etcd started by the test on loopback): the join command it prints
//! lists every live replica, the one asked first; a replica that stops
//! leaves the list at once, and one that dies (its runtime dropped, as a
//! killed process: its lease is not revoked) leaves it within
//! `MEMBER_TTL`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use weft_control_plane::members::MEMBER_TTL;
use weft_control_plane::server::{self, Running};
use weft_control_plane::store::etcd::local::LocalEtcd;

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .unwrap()
}

fn replica(rt: &tokio::runtime::Runtime, dir: &Path, store: &str) -> Running {
    let state = dir.to_str().unwrap();
    let settings = weft_control_plane::config::Config::try_parse_from([
        "weft-control-plane",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state,
        "--store",
        store,
    ])
    .unwrap()
    .validate()
    .unwrap();
    rt.block_on(server::spawn(settings)).unwrap()
}

/// The `--control-plane` list of the join command `token create` prints.
fn join_list(config: &Path) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["token", "create", "--ttl", "10m", "--config"])
        .arg(config)
        .env_remove("WEFT_CONFIG")
        .output()
        .expect("weftctl runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "token create failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("weft-agent"))
        .expect("join command printed");
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "--control-plane")
        .expect("--control-plane in the join command");
    words[at + 1].split(',').map(str::to_string).collect()
}

/// Poll `join_list` until it equals `want`, within `limit`; the time taken.
fn until_listed(config: &Path, want: &[String], limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = join_list(config);
        if got == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "join command lists {got:?}, not {want:?}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_join_command_lists_every_live_replica() {
    let main = runtime(2);
    let etcd = main.block_on(LocalEtcd::start(1)).unwrap();
    let url = etcd.store_url();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = replica(&main, dirs[0].path(), &url);
    for d in &dirs[1..] {
        std::fs::copy(
            dirs[0].path().join("cluster-secret"),
            d.path().join("cluster-secret"),
        )
        .unwrap();
    }
    let b = replica(&main, dirs[1].path(), &url);
    // C runs on a runtime of its own, so that it can die without a word.
    let doomed = runtime(1);
    let c = replica(&doomed, dirs[2].path(), &url);
    let (a_addr, b_addr, c_addr) = (a.addr.to_string(), b.addr.to_string(), c.addr.to_string());

    // Every replica, the one asked first, from whichever is asked.
    let mut others = [b_addr.clone(), c_addr.clone()];
    others.sort();
    let mut want = vec![a_addr.clone()];
    want.extend(others);
    assert_eq!(join_list(&a.admin_conf()), want);
    let from_b = join_list(&b.admin_conf());
    assert_eq!(from_b[0], b_addr);
    let mut sorted = from_b.clone();
    sorted.sort();
    let mut all = want.clone();
    all.sort();
    assert_eq!(sorted, all);

    // A replica that stops revokes its record: gone at once.
    main.block_on(b.stop()).unwrap();
    let took = until_listed(
        &a.admin_conf(),
        &[a_addr.clone(), c_addr.clone()],
        Duration::from_secs(5),
    );
    eprintln!("stopped replica left the join command after {took:?}");

    // A replica that dies leaves it when its lease expires.
    doomed.shutdown_background();
    drop(c);
    let took = until_listed(
        &a.admin_conf(),
        std::slice::from_ref(&a_addr),
        MEMBER_TTL + Duration::from_secs(10),
    );
    eprintln!("dead replica left the join command after {took:?} (TTL {MEMBER_TTL:?})");
    main.block_on(a.stop()).unwrap();
}
