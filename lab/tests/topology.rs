//! The lab topology on real network namespaces.
//!
//! These tests need root (they create namespaces, veths and bridges) and fail,
//! rather than skip, without it. Every lab name carries this test process's
//! pid, so the tests run in parallel with each other and with other runs; every
//! test removes its lab, through a [`LabGuard`] even when it panics.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_lab::{
    exec_in, list_namespaces, namespace_pids, ping, ping_stats, teardown, Lab, LabError, LabGuard,
    LabName, LabSpec, DEFAULT_STATE_ROOT,
};

const PING_TIMEOUT: Duration = Duration::from_secs(3);

fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the lab tests need root (network namespaces, veth, bridges); run them as root"
    );
}

/// A lab name unique to this test process: `<tag><pid>`.
fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id())
}

fn spec(tag: &str, nodes: usize) -> LabSpec {
    LabSpec::new(&unique(tag), nodes).unwrap()
}

fn lab_namespaces(name: &LabName) -> Vec<String> {
    let mut found: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| name.owns(ns))
        .collect();
    found.sort();
    found
}

/// Whether `pid` has exited (gone, or a zombie nobody reaped yet).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Nothing of lab `name` is left: no namespace with its prefix, no state dir.
fn assert_nothing_left(name: &LabName, state_root: &Path) {
    let prefix = name.prefix();
    let left: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&prefix))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let dir = state_root.join(name.as_str());
    assert!(!dir.exists(), "state dir left behind: {}", dir.display());
}

#[test]
fn three_nodes_reach_each_other_over_the_underlay() {
    require_root();
    let spec = spec("mesh", 3);
    let lab = LabGuard::up(&spec).unwrap();
    let name = lab.name().clone();

    let expected: Vec<String> = ["cp", "n1", "n2", "n3", "ul"]
        .iter()
        .map(|s| format!("weft-{name}-{s}"))
        .collect();
    assert_eq!(lab_namespaces(&name), expected);
    assert_eq!(lab.control_plane().address.to_string(), "192.0.2.1/24");
    let addresses: Vec<String> = lab.nodes().iter().map(|n| n.address.to_string()).collect();
    assert_eq!(addresses, ["192.0.2.2/24", "192.0.2.3/24", "192.0.2.4/24"]);

    // Real ICMP from inside every host to every host, itself included.
    let hosts: Vec<_> = lab.state().hosts().cloned().collect();
    for from in &hosts {
        for to in &hosts {
            let rtt = ping(&from.ns, IpAddr::V4(to.address.addr()), 2, PING_TIMEOUT).unwrap();
            assert!(
                rtt.is_some(),
                "{} cannot ping {} ({})",
                from.ns,
                to.ns,
                to.address
            );
        }
    }
    let stats = ping_stats(
        &lab.node(1).unwrap().ns,
        IpAddr::V4(lab.node(3).unwrap().address.addr()),
        3,
        PING_TIMEOUT,
    )
    .unwrap();
    assert_eq!((stats.sent, stats.received, stats.rtts.len()), (3, 3, 3));
    assert!(stats.min().unwrap() <= stats.average().unwrap());

    // ICMPv6 too, over the host's own loopback.
    assert!(ping(
        &lab.control_plane().ns,
        "::1".parse().unwrap(),
        1,
        PING_TIMEOUT
    )
    .unwrap()
    .is_some());

    // An address nobody holds: no reply, within the timeout, and no error.
    let start = Instant::now();
    let none = ping(
        &lab.node(2).unwrap().ns,
        "192.0.2.200".parse().unwrap(),
        2,
        Duration::from_millis(500),
    )
    .unwrap();
    assert_eq!(none, None);
    assert!(start.elapsed() < Duration::from_secs(2));

    // The hosts' links are what the layout says, and the underlay holds the bridge.
    let n1 = &lab.node(1).unwrap().ns;
    let out = exec_in(
        n1,
        "ip",
        &["-4", "-o", "addr", "show", "dev", "eth0"],
        PING_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.0.2.2/24"));
    let out = exec_in(
        &lab.state().underlay_ns,
        "ip",
        &["-o", "link", "show", "master", "br0"],
        PING_TIMEOUT,
    )
    .unwrap();
    let ports = String::from_utf8_lossy(&out.stdout);
    for port in ["v-cp", "v-n1", "v-n2", "v-n3"] {
        assert!(
            ports.contains(&format!(" {port}@")),
            "{port} not on br0: {ports}"
        );
    }

    let report = lab.down().unwrap();
    assert_eq!(report.namespaces_deleted.len(), 5, "{report:?}");
    assert!(report.state_dir_removed.is_some());
    assert_nothing_left(&name, &spec.state_root);
}

#[test]
fn processes_are_supervised_recorded_and_torn_down() {
    require_root();
    let spec = spec("proc", 2);
    let mut lab = LabGuard::up(&spec).unwrap();
    let name = lab.name().clone();
    let n1 = lab.node(1).unwrap().ns.clone();

    let mut sleeper = lab.spawn_in(&n1, "sleeper", "sleep", &["60"], &[]).unwrap();
    assert!(namespace_pids(&n1).unwrap().contains(&sleeper.pid()));
    assert!(sleeper.is_running());
    assert!(sleeper
        .log_path()
        .starts_with(spec.state_root.join(name.as_str()).join("logs")));

    // Another invocation sees it in lab.json.
    let other = Lab::open(&name, &spec.state_root).unwrap();
    let record = &other.state().processes[0];
    assert_eq!(
        (record.label.as_str(), record.ns.as_str(), record.pid),
        ("sleeper", n1.as_str(), sleeper.pid())
    );
    assert_eq!(record.args, ["60"]);

    // Readiness from the log; the environment is passed through.
    let cp = lab.control_plane().ns.clone();
    let mut talker = lab
        .spawn_in(
            &cp,
            "talker",
            "sh",
            &["-c", "echo \"ready $WEFT_TEST_VAR\"; exec sleep 60"],
            &[("WEFT_TEST_VAR", "xyz")],
        )
        .unwrap();
    talker
        .wait_for_log("ready xyz", Duration::from_secs(5))
        .unwrap();

    // A process that dies is reported with its log, not waited on forever.
    let mut crasher = lab
        .spawn_in(&n1, "crasher", "sh", &["-c", "echo boom >&2; exit 3"], &[])
        .unwrap();
    let err = crasher
        .wait_ready(Duration::from_secs(5), || false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("'crasher'") && err.contains("exit status: 3"),
        "{err}"
    );
    assert!(err.contains("boom"), "{err}");
    // A running label cannot be reused; an exited one can.
    let err = lab
        .spawn_in(&n1, "sleeper", "sleep", &["1"], &[])
        .unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    lab.spawn_in(&n1, "crasher", "true", &[], &[]).unwrap();

    // Only the lab's own namespaces, and sane labels.
    let err = lab
        .spawn_in("weft-elsewhere-n1", "x", "sleep", &["1"], &[])
        .unwrap_err();
    assert!(matches!(err, LabError::UnknownNamespace { .. }), "{err}");
    let err = lab.spawn_in(&n1, "../x", "sleep", &["1"], &[]).unwrap_err();
    assert!(err.to_string().contains("invalid process label"), "{err}");

    // Pods: namespaces with nothing but lo, numbered per node.
    let p1 = lab.add_pod(1).unwrap();
    let p2 = lab.add_pod(1).unwrap();
    let q1 = lab.add_pod(2).unwrap();
    assert_eq!(p1.ns, format!("weft-{name}-n1-p1"));
    assert_eq!(p2.ns, format!("weft-{name}-n1-p2"));
    assert_eq!(q1.ns, format!("weft-{name}-n2-p1"));
    let err = lab.add_pod(3).unwrap_err();
    assert!(err.to_string().contains("has no node 3"), "{err}");
    let links = exec_in(&p1.ns, "ip", &["-o", "link", "show"], PING_TIMEOUT).unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
    let in_pod = lab
        .spawn_in(&p1.ns, "pod-sleeper", "sleep", &["60"], &[])
        .unwrap();

    // A process nobody recorded, started straight into a lab namespace.
    let mut stray = Command::new("ip")
        .args(["netns", "exec", &q1.ns, "sleep", "60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let stray_pid = stray.id();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !namespace_pids(&q1.ns).unwrap().contains(&stray_pid) {
        assert!(
            Instant::now() < deadline,
            "stray process never entered {}",
            q1.ns
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let report = lab.down().unwrap();
    let killed: Vec<u32> = report.processes_killed.iter().map(|k| k.pid).collect();
    for pid in [sleeper.pid(), talker.pid(), in_pod.pid(), stray_pid] {
        assert!(killed.contains(&pid), "pid {pid} not in {report:?}");
        assert!(is_gone(pid), "pid {pid} still running");
    }
    assert!(!sleeper.is_running());
    let _ = stray.wait();
    assert_eq!(report.namespaces_deleted.len(), 7, "{report:?}");
    assert_nothing_left(&name, &spec.state_root);
}

#[test]
fn teardown_after_a_crash_still_removes_everything() {
    require_root();
    let spec = spec("crash", 2);
    let mut lab = LabGuard::up(&spec).unwrap();
    let name = lab.name().clone();
    let cp = lab.control_plane().ns.clone();
    let process = lab.spawn_in(&cp, "cp", "sleep", &["60"], &[]).unwrap();
    let pod = lab.add_pod(2).unwrap();
    let state_file = lab.state_dir().join("lab.json");

    // The crash: the record of what was made is lost.
    std::fs::remove_file(&state_file).unwrap();
    let err = Lab::open(&name, &spec.state_root).unwrap_err();
    assert!(matches!(err, LabError::NotUp { .. }), "{err}");

    let report = teardown(&name, &spec.state_root).unwrap();
    assert_eq!(report.processes_killed.len(), 1, "{report:?}");
    assert_eq!(report.processes_killed[0].pid, process.pid());
    assert_eq!(report.processes_killed[0].ns, cp);
    assert!(is_gone(process.pid()));
    assert!(report.namespaces_deleted.contains(&pod.ns));
    assert_eq!(report.namespaces_deleted.len(), 5, "{report:?}");
    assert!(report.state_dir_removed.is_some());
    assert_nothing_left(&name, &spec.state_root);

    // Idempotent: the second time there is nothing to do.
    assert!(teardown(&name, &spec.state_root).unwrap().is_empty());
    lab.down().unwrap();
}

#[test]
fn the_guard_tears_the_lab_down_when_a_test_panics() {
    require_root();
    let spec = spec("panic", 1);
    let mut pid = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut lab = LabGuard::up(&spec).unwrap();
        let n1 = lab.node(1).unwrap().ns.clone();
        pid = Some(
            lab.spawn_in(&n1, "doomed", "sleep", &["60"], &[])
                .unwrap()
                .pid(),
        );
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    assert!(is_gone(pid.unwrap()));
    assert_nothing_left(&spec.name, &spec.state_root);
}

#[test]
fn teardown_of_a_lab_that_does_not_exist_succeeds() {
    require_root();
    let name = LabName::new(&unique("none")).unwrap();
    let root = Path::new(DEFAULT_STATE_ROOT);
    for _ in 0..2 {
        let report = teardown(&name, root).unwrap();
        assert!(report.is_empty(), "{report:?}");
    }
    let missing_root = tempfile::tempdir().unwrap().path().join("absent");
    assert!(teardown(&name, &missing_root).unwrap().is_empty());
}

#[test]
fn up_twice_is_refused_with_a_clear_message() {
    require_root();
    let spec = spec("twice", 1);
    let lab = LabGuard::up(&spec).unwrap();
    let name = lab.name().clone();
    let dir = spec.state_root.join(name.as_str());

    let err = Lab::up(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "lab '{name}' is already up (found state directory {}); run `weftctl lab down --name {name}` first",
            dir.display()
        )
    );

    // Without its state dir (a crash), the namespaces still give it away.
    std::fs::remove_dir_all(&dir).unwrap();
    let err = Lab::up(&spec).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "lab '{name}' is already up (found namespace weft-{name}-"
        )),
        "{err}"
    );
    assert!(
        err.ends_with(&format!("run `weftctl lab down --name {name}` first")),
        "{err}"
    );
    // The refused `up`s changed nothing.
    assert_eq!(lab_namespaces(&name).len(), 3);
    assert!(!dir.exists());

    lab.down().unwrap();
    assert_nothing_left(&name, &spec.state_root);
}

#[test]
fn bad_names_and_specs_are_refused_precisely() {
    for (bad, why) in [
        ("", "invalid lab name \"\": it is empty"),
        (
            "Lab",
            "it contains 'L'; only lowercase letters a-z, digits 0-9 and '-' are allowed",
        ),
        ("a_b", "it contains '_'"),
        ("a/b", "it contains '/'"),
        ("-a", "it must start and end with a letter or a digit"),
        ("a-", "it must start and end with a letter or a digit"),
        ("a--b", "it must not contain \"--\""),
        (
            "abcdefghijklmnopqrstu",
            "it is 21 bytes long; at most 20 are allowed",
        ),
    ] {
        let err = LabSpec::new(bad, 1).unwrap_err();
        assert!(
            matches!(err, LabError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains(why), "{bad:?}: {err}");
    }
    assert!(LabName::new("x-1").is_ok());
    assert!(LabName::new("abcdefghijklmnopqrst").is_ok());

    let mut spec = LabSpec::new("spec", 2).unwrap();
    spec.underlay = "10.9.0.0/30".parse().unwrap();
    let err = spec.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "underlay 10.9.0.0/30 has 2 host addresses, but 2 nodes and a control plane need 3"
    );
    spec.underlay = "10.9.0.1/24".parse().unwrap();
    let err = Lab::up(&spec).unwrap_err().to_string();
    assert_eq!(
        err,
        "underlay 10.9.0.1/24 is not a network address; did you mean 10.9.0.0/24?"
    );
    spec.underlay = "10.9.0.0/31".parse().unwrap();
    assert!(spec
        .validate()
        .unwrap_err()
        .to_string()
        .contains("too small"));
}

#[test]
fn namespace_ownership_is_exact() {
    let a = LabName::new("a").unwrap();
    for own in [
        "weft-a-ul",
        "weft-a-cp",
        "weft-a-n1",
        "weft-a-n12",
        "weft-a-n3-p40",
    ] {
        assert!(a.owns(own), "{own}");
    }
    for foreign in [
        "weft-ab-n1",
        "weft-ab-ul",
        "weft-a-n1-ul",
        "weft-a-n1-cp",
        "weft-a-n1-n2",
        "weft-a-n1-n2-p1",
        "weft-a-n01",
        "weft-a-n0",
        "weft-a-n",
        "weft-a-n1-p",
        "weft-a-n1-p0",
        "weft-a-n1-p1-x",
        "weft-a-",
        "weft-a",
        "weft-a-ulx",
        "weft-a-n+1",
        "xweft-a-ul",
        "other",
    ] {
        assert!(!a.owns(foreign), "{foreign}");
    }
    assert!(LabName::new("a-n1").unwrap().owns("weft-a-n1-ul"));
}

#[test]
fn teardown_of_one_lab_leaves_labs_with_longer_names_alone() {
    require_root();
    // "x<pid>" is a prefix of "x<pid>b", and "weft-x<pid>-" of lab "x<pid>-n1".
    let a = LabGuard::up(&spec("x", 1)).unwrap();
    let ab = LabGuard::up(&LabSpec::new(&format!("{}b", a.name()), 1).unwrap()).unwrap();
    let mut a_n1 = LabGuard::up(&LabSpec::new(&format!("{}-n1", a.name()), 0).unwrap()).unwrap();
    let a_name = a.name().clone();
    // Lab "x<pid>-n1"'s pods would look like pods of "x<pid>" minus the exact match.
    let cp = a_n1.control_plane().ns.clone();
    let survivor = a_n1.spawn_in(&cp, "keep", "sleep", &["60"], &[]).unwrap();
    let before_ab = lab_namespaces(ab.name());
    let before_a_n1 = lab_namespaces(a_n1.name());
    assert_eq!(before_a_n1.len(), 2, "{before_a_n1:?}");

    let report = a.down().unwrap();
    assert_eq!(report.namespaces_deleted.len(), 3, "{report:?}");
    assert!(report.processes_killed.is_empty(), "{report:?}");
    assert_nothing_left_of_exact(&a_name);

    assert_eq!(lab_namespaces(ab.name()), before_ab);
    assert_eq!(lab_namespaces(a_n1.name()), before_a_n1);
    assert!(
        !is_gone(survivor.pid()),
        "a process of another lab was killed"
    );
    assert!(ab.state_dir().exists() && a_n1.state_dir().exists());
    let n1 = &ab.node(1).unwrap().ns;
    assert!(ping(
        n1,
        IpAddr::V4(ab.control_plane().address.addr()),
        1,
        PING_TIMEOUT
    )
    .unwrap()
    .is_some());

    ab.down().unwrap();
    a_n1.down().unwrap();
    assert!(is_gone(survivor.pid()));
}

/// Like [`assert_nothing_left`] for a lab whose prefix other labs share:
/// only its exact namespaces must be gone.
fn assert_nothing_left_of_exact(name: &LabName) {
    assert!(lab_namespaces(name).is_empty());
    assert!(!Path::new(DEFAULT_STATE_ROOT).join(name.as_str()).exists());
}

#[test]
fn commands_in_namespaces_are_bounded_and_checked() {
    require_root();
    let lab = LabGuard::up(&spec("exec", 0)).unwrap();
    let cp = lab.control_plane().ns.clone();

    let out = exec_in(
        &cp,
        "sh",
        &["-c", "echo out; echo err >&2; exit 3"],
        PING_TIMEOUT,
    )
    .unwrap();
    assert_eq!(
        (
            out.stdout.as_slice(),
            out.stderr.as_slice(),
            out.status.code()
        ),
        (&b"out\n"[..], &b"err\n"[..], Some(3))
    );

    let start = Instant::now();
    let err = exec_in(&cp, "sleep", &["5"], Duration::from_millis(300)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        err.to_string(),
        format!("`ip netns exec {cp} sleep 5` did not finish within 300ms; killed it")
    );
    // A background child holding the output open is bounded as well.
    let start = Instant::now();
    assert!(exec_in(
        &cp,
        "sh",
        &["-c", "sleep 5 & echo hi"],
        Duration::from_millis(300)
    )
    .is_err());
    assert!(start.elapsed() < Duration::from_secs(3));
    // Both are gone: the whole process group was killed.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !namespace_pids(&cp).unwrap().is_empty() {
        assert!(Instant::now() < deadline, "left: {:?}", namespace_pids(&cp));
        std::thread::sleep(Duration::from_millis(20));
    }

    let err = namespace_pids("weft-no-such-ns-ever")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("`ip netns pids weft-no-such-ns-ever` failed (exit status: "),
        "{err}"
    );
    let err = exec_in("../etc", "true", &[], PING_TIMEOUT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid namespace name"), "{err}");
    let err = ping(&cp, "127.0.0.1".parse().unwrap(), 0, PING_TIMEOUT).unwrap_err();
    assert!(
        err.to_string().contains("ping count 0 is out of range"),
        "{err}"
    );
    let err = ping(
        "weft-no-such-ns-ever",
        "127.0.0.1".parse().unwrap(),
        1,
        PING_TIMEOUT,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("opening network namespace /run/netns/weft-no-such-ns-ever"),
        "{err}"
    );

    lab.down().unwrap();
}
