//! Cluster DNS in real agents: a pod on n2 resolves, through its
//! `/etc/netns` resolv.conf and the agent's in-path DNS, a Service whose
//! pod runs on n1 (`getent hosts web` through the search list, `dig`
//! for A, SRV, headless, ExternalName, pod records, NXDOMAIN vs NODATA),
//! a name outside the cluster answered by a tiny resolver this test runs
//! on the lab's outside host `ext` (192.0.2.254, the agents'
//! `--dns-upstream`), and a Service created afterwards within a second.
//!
//! Needs root (and `dig` from Debian's dnsutils: scripts/test-all installs
//! it), and fails without them. The lab's name carries this test process's
//! pid; the lab and the resolver thread are stopped by guards even when
//! the test fails.

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

mod lab_support;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use lab_support::{ok, require_root, weftctl, WEFTCTL};
use serde_json::Value;
use weft_lab::{build_binaries_once, ClusterGuard, ClusterSpec};

/// The Kubernetes DNS spec's bound for a new Service to resolve.
const NEW_SERVICE_WITHIN: Duration = Duration::from_secs(1);
/// The name the resolver on `ext` answers, and its address.
const OUTSIDE_NAME: &str = "outside.example.";
const OUTSIDE_ADDR: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

fn require_root_and_dig() {
    require_root();
    let dig = Command::new("dig").arg("-v").output();
    assert!(
        dig.is_ok(),
        "dig is missing: install Debian's dnsutils (scripts/test-all does)"
    );
}

/// The count of `name` in a list of `{"name":..,"count":..}`.
fn named(list: &Value, name: &str) -> u64 {
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .and_then(|c| c["count"].as_u64())
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// A resolver on the outside host: answers `outside.example. A` and
/// NXDOMAIN for anything else, until dropped.
struct OutsideResolver {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    queries: Arc<std::sync::atomic::AtomicU64>,
}

impl OutsideResolver {
    fn start(netns: &str, addr: Ipv4Addr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let path = Path::new("/run/netns").join(netns);
        let thread = {
            let stop = stop.clone();
            let queries = queries.clone();
            std::thread::spawn(move || {
                // Only this thread enters the namespace.
                let bound = File::open(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|f| {
                        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                            .map_err(|e| e.to_string())
                    })
                    .and_then(|()| UdpSocket::bind((addr, 53)).map_err(|e| e.to_string()));
                let socket = match bound {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = socket.set_read_timeout(Some(Duration::from_millis(50)));
                let _ = ready_tx.send(Ok(()));
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(answer) = outside_answer(&buf[..n]) {
                        let _ = socket.send_to(&answer, from);
                    }
                }
            })
        };
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => {}
            other => panic!("the resolver on {netns} did not start: {other:?}"),
        }
        Self {
            stop,
            thread: Some(thread),
            queries,
        }
    }
}

impl Drop for OutsideResolver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn outside_answer(query: &[u8]) -> Option<Vec<u8>> {
    let q = Message::from_vec(query).ok()?;
    let question = q.queries.first()?.clone();
    let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
    m.metadata.recursion_desired = q.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.add_query(question.clone());
    let known = question
        .name()
        .to_ascii()
        .eq_ignore_ascii_case(OUTSIDE_NAME);
    if !known {
        m.metadata.response_code = ResponseCode::NXDomain;
    } else if question.query_type() == RecordType::A {
        let name = Name::from_ascii(OUTSIDE_NAME).ok()?;
        m.add_answer(Record::from_rdata(name, 60, RData::A(A(OUTSIDE_ADDR))));
    }
    m.to_vec().ok()
}

const OBJECTS: &str = "\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: away, namespace: shop}
spec:
  type: ExternalName
  externalName: outside.example
";

const LATE: &str = "\
apiVersion: v1
kind: Service
metadata: {name: late, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {port: 81}
";

#[test]
fn pods_resolve_cluster_names_and_outside_names_through_their_agent() {
    require_root_and_dig();
    let dir = Path::new(WEFTCTL).parent().expect("a directory");
    let binaries =
        build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"));
    let mut spec = ClusterSpec::new(&format!("dn{}", std::process::id()), 2, 0).unwrap();
    spec.binaries = Some(binaries);
    let cluster = ClusterGuard::up(spec).unwrap();
    let name = cluster.name().to_string();
    let lab = format!("--lab={name}");
    let ext = cluster.external().expect("lab up adds ext").clone();
    let resolver = OutsideResolver::start(&ext.ns, ext.address.addr());

    let add = |pod: &str, node: &str, extra: &[&str]| {
        let mut args = vec!["lab", "pod", "add", "--name", &name, pod, "--node", node];
        args.extend_from_slice(extra);
        ok(&args);
    };
    add(
        "shop/web-1",
        "n1",
        &["--label", "app=web", "--port", "http=8080/TCP"],
    );
    add("shop/client", "n2", &[]);
    let fresh =
        weft_lab::Cluster::open(cluster.name(), Path::new(weft_lab::DEFAULT_STATE_ROOT)).unwrap();
    let web_ip = fresh.pod("shop/web-1").unwrap().ip.to_string();
    let client_ns = fresh.pod("shop/client").unwrap().ns.clone();
    let resolv =
        std::fs::read_to_string(Path::new("/etc/netns").join(&client_ns).join("resolv.conf"))
            .expect("the lab pod has a resolv.conf");
    assert!(
        resolv.contains("nameserver 10.96.0.10\n")
            && resolv.contains("search shop.svc.cluster.local svc.cluster.local cluster.local\n")
            && resolv.contains("options ndots:5\n"),
        "{resolv}"
    );

    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(manifest.path(), OBJECTS).unwrap();
    ok(&[&lab, "apply", "-f", manifest.path().to_str().unwrap()]);
    let svc: Value = serde_json::from_str(&ok(&[
        &lab, "get", "service", "web", "-n", "shop", "-o", "json",
    ]))
    .unwrap();
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    // Everything below runs in the client pod on n2.
    let exec = |cmd: &[&str]| -> String {
        let mut args = vec!["lab", "exec", "--name", &name, "shop/client", "--"];
        args.extend_from_slice(cmd);
        let out = weftctl(&args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dig = |q: &[&str]| -> String {
        let mut cmd = vec!["dig", "+time=2", "+tries=1"];
        cmd.extend_from_slice(q);
        exec(&cmd)
    };
    // The Service and its endpoint reach the agents (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let a = dig(&["+short", "web.shop.svc.cluster.local"]);
        let headless = dig(&["+short", "db.shop.svc.cluster.local"]);
        if a.trim() == cluster_ip && headless.trim() == web_ip {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not resolving yet: {a:?} {headless:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // The search list: a short name, through glibc.
    let hosts = exec(&["getent", "hosts", "web"]);
    assert!(hosts.starts_with(&format!("{cluster_ip} ")), "{hosts:?}");
    assert!(hosts.contains("web.shop.svc.cluster.local"), "{hosts:?}");
    // SRV for the named port; none for the unnamed.
    let srv = dig(&["+short", "SRV", "_http._tcp.web.shop.svc.cluster.local"]);
    assert_eq!(srv.trim(), "0 100 80 web.shop.svc.cluster.local.");
    let srv = dig(&["+short", "SRV", "_http._tcp.db.shop.svc.cluster.local"]);
    let dashed = web_ip.replace('.', "-");
    assert_eq!(
        srv.trim(),
        format!("0 100 8080 {dashed}.db.shop.svc.cluster.local.")
    );
    // A headless endpoint by its (dashed) hostname.
    let host = dig(&["+short", &format!("{dashed}.db.shop.svc.cluster.local")]);
    assert_eq!(host.trim(), web_ip);
    // ExternalName: the CNAME (its target is outside the zone).
    let cname = dig(&["+short", "CNAME", "away.shop.svc.cluster.local"]);
    assert_eq!(cname.trim(), "outside.example.");
    // Pod records.
    let pod = dig(&["+short", &format!("{dashed}.shop.pod.cluster.local")]);
    assert_eq!(pod.trim(), web_ip);
    // NXDOMAIN vs NODATA, with the SOA.
    let nx = dig(&["nope.shop.svc.cluster.local"]);
    assert!(
        nx.contains("status: NXDOMAIN") && nx.contains("SOA"),
        "{nx}"
    );
    let nodata = dig(&["TXT", "web.shop.svc.cluster.local"]);
    assert!(
        nodata.contains("status: NOERROR")
            && nodata.contains("ANSWER: 0")
            && nodata.contains("SOA"),
        "{nodata}"
    );
    // n2's agent counted those answers from the zone (status and metrics).
    let node_dns = |node: &str| -> Value {
        let out = ok(&[
            "lab", "exec", "--name", &name, node, "--", WEFTCTL, "status", "-o", "json",
        ]);
        let status: Value = serde_json::from_str(&out).unwrap();
        status["dataplane"]["dns"].clone()
    };
    let zone_before = node_dns("n2");
    assert!(named(&zone_before["queries"], "a") >= 6, "{zone_before}");
    assert!(named(&zone_before["queries"], "srv") >= 2, "{zone_before}");
    assert!(
        named(&zone_before["zone_answers"], "noerror") >= 8,
        "{zone_before}"
    );
    assert!(
        named(&zone_before["zone_answers"], "nxdomain") >= 1,
        "{zone_before}"
    );

    // A name outside the cluster: forwarded to the resolver on ext; the
    // second ask is served from the agent's cache.
    let before = resolver.queries.load(Ordering::Relaxed);
    let out = dig(&["+short", "outside.example"]);
    assert_eq!(out.trim(), OUTSIDE_ADDR.to_string());
    assert!(resolver.queries.load(Ordering::Relaxed) > before);
    let asked = resolver.queries.load(Ordering::Relaxed);
    let out = dig(&["+short", "outside.example"]);
    assert_eq!(out.trim(), OUTSIDE_ADDR.to_string());
    assert_eq!(
        resolver.queries.load(Ordering::Relaxed),
        asked,
        "not cached"
    );
    let nx = dig(&["unknown.example"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let hosts = exec(&["getent", "hosts", "outside.example"]);
    assert!(hosts.starts_with(&OUTSIDE_ADDR.to_string()), "{hosts:?}");

    // The forwarder's counters moved: forwarded, answered upstream (the
    // latency histogram with them), one from the cache.
    let after = node_dns("n2");
    let delta = |key: &str| after[key].as_u64().unwrap() - zone_before[key].as_u64().unwrap();
    assert!(delta("forwarded") >= 3, "{after}");
    assert!(delta("cache_hits") >= 1, "{after}");
    assert!(delta("upstream_queries") >= 2, "{after}");
    assert!(delta("upstream_answers") >= 2, "{after}");
    assert_eq!(after["upstream_timeouts"], 0, "{after}");
    assert_eq!(after["upstream_failures"], 0, "{after}");
    let buckets: u64 = after["upstream_latency"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["count"].as_u64().unwrap())
        .sum();
    assert_eq!(buckets, after["upstream_answers"].as_u64().unwrap());
    assert!(
        named(&after["forwarded_answers"], "noerror") >= 2,
        "{after}"
    );
    assert!(
        named(&after["forwarded_answers"], "nxdomain") >= 1,
        "{after}"
    );
    // The same figures reach Prometheus (bash's /dev/tcp: no curl).
    let scrape = "exec 3<>/dev/tcp/127.0.0.1/9590 && \
                  printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3";
    let metrics = ok(&[
        "lab", "exec", "--name", &name, "n2", "--", "bash", "-c", scrape,
    ]);
    let sample = |prefix: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{prefix} missing:\n{metrics}"))
    };
    assert!(sample("weft_dns_cache_hits_total ") >= 1);
    assert!(sample("weft_dns_responses_total{source=\"zone\",rcode=\"noerror\"} ") >= 8);
    assert!(sample("weft_dns_upstream_latency_seconds_count ") >= 2);
    assert!(sample("weft_dns_queries_total{type=\"a\"} ") >= 8);

    // A Service created now resolves within the specification's second.
    std::fs::write(manifest.path(), LATE).unwrap();
    ok(&[&lab, "apply", "-f", manifest.path().to_str().unwrap()]);
    let applied = Instant::now();
    loop {
        let a = dig(&["+short", "late.shop.svc.cluster.local"]);
        if a.trim().parse::<std::net::IpAddr>().is_ok() {
            break;
        }
        assert!(
            applied.elapsed() < NEW_SERVICE_WITHIN,
            "late.shop did not resolve within {NEW_SERVICE_WITHIN:?}: {a:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The pod's resolv.conf goes with it.
    ok(&["lab", "pod", "del", "--name", &name, "shop/client"]);
    assert!(!Path::new("/etc/netns").join(&client_ns).exists());

    drop(resolver);
    cluster.down().unwrap();
    let left: Vec<_> = std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("weft-{name}-"))
        })
        .collect();
    assert!(left.is_empty(), "left in /etc/netns: {left:?}");
}
