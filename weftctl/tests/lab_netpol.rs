//! weft's NetworkPolicy conformance suite on a real lab cluster (issue 16):
//! the scenarios of `weft_objects::policy::conformance` (the upstream
//! e2e model: namespaces x, y, z, pods a, b, c in each spread over three
//! nodes, each serving TCP and UDP on 80 and 81 with named ports, one
//! ClusterIP Service per pod), applied through `weftctl` to a lab of real
//! agents, and after every step every pod probes every other pod on each
//! port and protocol, through its pod IP AND its Service's ClusterIP, from
//! inside the pods' namespaces. The observed 9×9 tables must equal the
//! scenario's (a pod reaching itself through its Service is allowed, as
//! loopback is). Policy changes reach the agents asynchronously: a step
//! is probed until it matches or [`CONVERGE_WITHIN`] passes; the time it
//! took is printed. Then the agents' counters and their denial log line.
//!
//! Probes run in parallel (one thread per probe); a denied TCP probe costs
//! its connect timeout, a denied UDP probe its retries. Needs root, and
//! fails without it; the lab is torn down by its guard even on failure.

mod lab_support;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lab_support::net::{in_ns, Server};
use lab_support::{require_root, Lab};
use serde_json::Value;
use weft_objects::policy::conformance::{
    scenarios, Action, Expectation, Model, Reachability, Scenario, NAMESPACES, NODES, PODS, PORTS,
};
use weft_objects::policy::Protocol;

/// How long a step's changes may take to show in every probe.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// A TCP probe's connect (and read) timeout: the kernel resends a SYN
/// after 1 s, so one loss is survived.
const TCP_TIMEOUT: Duration = Duration::from_millis(2500);
/// A UDP probe: this many datagrams, each waiting this long for the echo.
const UDP_TRIES: u32 = 4;
const UDP_WAIT: Duration = Duration::from_millis(500);
/// The label the per-pod Services select (policies never name it).
const SVC_LABEL: &str = "svc";

/// How a probe reaches its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    PodIp,
    Service,
}

/// The nine pods: `(ns/name, node)` in table order.
fn model_pods() -> Vec<(String, &'static str)> {
    NAMESPACES
        .iter()
        .enumerate()
        .flat_map(|(j, ns)| {
            PODS.iter()
                .enumerate()
                .map(move |(i, p)| (format!("{ns}/{p}"), NODES[(i + j) % NODES.len()]))
        })
        .collect()
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// The namespaces, labelled as the model labels them.
fn namespaces_manifest() -> String {
    NAMESPACES
        .iter()
        .map(|ns| {
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}\n")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One ClusterIP Service per pod, on every served port.
fn services_manifest() -> String {
    let mut out = Vec::new();
    for ns in NAMESPACES {
        for pod in PODS {
            let mut s = format!(
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: s-{pod}\n  namespace: {ns}\n\
                 spec:\n  selector:\n    {SVC_LABEL}: {ns}-{pod}\n  ports:\n"
            );
            for probe in Scenario::probes() {
                let p = proto_name(probe.protocol);
                s += &format!(
                    "  - name: serve-{port}-{p}\n    port: {port}\n    targetPort: {port}\n    protocol: {P}\n",
                    port = probe.port,
                    P = p.to_uppercase()
                );
            }
            out.push(s);
        }
    }
    out.join("---\n")
}

/// The model cluster on a lab: pods, their servers and Services.
struct Model9 {
    lab: Lab,
    names: Vec<String>,
    /// Each pod's Service address, by `ns/name`.
    vips: BTreeMap<String, IpAddr>,
    _servers: Vec<Server>,
}

impl Model9 {
    fn up() -> Self {
        let mut lab = Lab::up("np", NODES.len());
        lab.apply(&namespaces_manifest());
        let mut servers = Vec::new();
        let pods = model_pods();
        for (name, node) in &pods {
            let (ns, pod) = name.split_once('/').unwrap();
            let ports: Vec<String> = Scenario::probes()
                .iter()
                .map(|p| {
                    let proto = proto_name(p.protocol);
                    format!(
                        "serve-{}-{proto}={}/{}",
                        p.port,
                        p.port,
                        proto.to_uppercase()
                    )
                })
                .collect();
            let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
            let labels = [format!("pod={pod}"), format!("{SVC_LABEL}={ns}-{pod}")];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            lab.pod(name, node, &labels, &ports);
            for port in PORTS {
                servers.push(Server::tcp(lab.netns(name), port, name));
                servers.push(Server::udp(lab.netns(name), port, name));
            }
        }
        lab.apply(&services_manifest());
        let vips = pods
            .iter()
            .map(|(name, _)| {
                let (ns, pod) = name.split_once('/').unwrap();
                (name.clone(), lab.cluster_ip_in(ns, &format!("s-{pod}")))
            })
            .collect();
        Self {
            lab,
            names: Model::pod_names(),
            vips,
            _servers: servers,
        }
    }

    fn ip_of(&self, ns: &str, pod: &str) -> Option<IpAddr> {
        Some(self.lab.ip(&format!("{ns}/{pod}")))
    }

    /// Applies one scenario action through weftctl.
    fn act(&self, action: &Action) {
        match action {
            Action::Apply(text) => {
                let rendered = Scenario::render(text, |ns, pod| self.ip_of(ns, pod))
                    .unwrap_or_else(|e| panic!("{e}"));
                self.lab.apply(&rendered);
            }
            Action::DeletePolicy { namespace, name } => {
                self.lab
                    .admin(&["delete", "networkpolicy", name, "-n", namespace]);
            }
            Action::Label(change) => {
                let (kind, name, ns) = match (&change.pod, &change.namespace) {
                    (Some(pod), None) => {
                        let (ns, name) = pod.split_once('/').expect("NS/POD");
                        ("pods", name.to_string(), ns.to_string())
                    }
                    (None, Some(ns)) => ("namespaces", ns.clone(), "default".to_string()),
                    _ => panic!("a label change names a pod or a namespace: {change:?}"),
                };
                let mut args: Vec<String> = vec![
                    "label".into(),
                    kind.into(),
                    name,
                    "-n".into(),
                    ns,
                    "--overwrite".into(),
                ];
                args.extend(change.set.iter().map(|(k, v)| format!("{k}={v}")));
                args.extend(change.remove.iter().map(|k| format!("{k}-")));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.lab.admin(&args);
            }
        }
    }

    /// Back to the model's start: no policies, the model's labels only.
    fn reset(&self) {
        for ns in NAMESPACES {
            for name in names(
                &self
                    .lab
                    .admin(&["get", "networkpolicies", "-n", ns, "-o", "json"]),
            ) {
                self.lab
                    .admin(&["delete", "networkpolicy", &name, "-n", ns]);
            }
            let want = BTreeMap::from([("ns", ns.to_string())]);
            self.relabel("namespaces", ns, "default", &want);
            for pod in PODS {
                let want =
                    BTreeMap::from([("pod", pod.to_string()), (SVC_LABEL, format!("{ns}-{pod}"))]);
                self.relabel("pods", pod, ns, &want);
            }
        }
    }

    /// Sets `want` on an object and removes every other label but
    /// `kubernetes.io/metadata.name`.
    fn relabel(&self, kind: &str, name: &str, ns: &str, want: &BTreeMap<&str, String>) {
        let obj: Value =
            serde_json::from_str(&self.lab.admin(&["get", kind, name, "-n", ns, "-o", "json"]))
                .unwrap();
        let mut args: Vec<String> = vec![
            "label".into(),
            kind.into(),
            name.into(),
            "-n".into(),
            ns.into(),
            "--overwrite".into(),
        ];
        args.extend(want.iter().map(|(k, v)| format!("{k}={v}")));
        if let Some(labels) = obj["metadata"]["labels"].as_object() {
            args.extend(
                labels
                    .keys()
                    .filter(|k| {
                        !want.contains_key(k.as_str()) && *k != "kubernetes.io/metadata.name"
                    })
                    .map(|k| format!("{k}-")),
            );
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.lab.admin(&args);
    }

    /// Every probe of `expect`, through pod IPs and Services, at once.
    fn observe(&self, expect: &[Expectation]) -> BTreeMap<(String, Via), Reachability> {
        let mut handles = Vec::new();
        for e in expect {
            for &probe in &e.probes {
                for (f, from) in self.names.iter().enumerate() {
                    for (t, to) in self.names.iter().enumerate() {
                        for via in [Via::PodIp, Via::Service] {
                            if f == t && via == Via::PodIp {
                                continue;
                            }
                            let addr = match via {
                                Via::PodIp => self.lab.ip(to),
                                Via::Service => self.vips[to],
                            };
                            let dst = SocketAddr::new(addr, probe.port);
                            let want = to.clone();
                            let netns: PathBuf = self.lab.netns(from).to_path_buf();
                            let h = in_ns(&netns, move || match probe.protocol {
                                Protocol::Udp => probe_udp(dst, &want),
                                _ => probe_tcp(dst, &want),
                            });
                            handles.push(((probe, via, f, t), h));
                        }
                    }
                }
            }
        }
        let mut out: BTreeMap<(String, Via), Reachability> = BTreeMap::new();
        for ((probe, via, f, t), h) in handles {
            let reached = h.join().expect("a probe thread");
            let table = out.entry((probe.to_string(), via)).or_insert_with(|| {
                let mut r = Reachability::new(self.names.clone(), false);
                for i in 0..self.names.len() {
                    r.set(i, i, true);
                }
                r
            });
            table.set(f, t, reached);
        }
        out
    }

    /// Probes until every table of the step matches or the deadline;
    /// the failures' report (empty on success) and the time taken.
    fn check(&self, expect: &[Expectation]) -> (String, Duration) {
        let started = Instant::now();
        loop {
            let observed = self.observe(expect);
            let mut report = String::new();
            for e in expect {
                for &probe in &e.probes {
                    for via in [Via::PodIp, Via::Service] {
                        let got = &observed[&(probe.to_string(), via)];
                        if *got != e.table {
                            report += &format!("{probe} via {via:?}:\n{}", e.table.comparison(got));
                        }
                    }
                }
            }
            if report.is_empty() || started.elapsed() > CONVERGE_WITHIN {
                return (report, started.elapsed());
            }
            let mut differ = Vec::new();
            for e in expect {
                for &probe in &e.probes {
                    for via in [Via::PodIp, Via::Service] {
                        let cells = e.table.mismatches(&observed[&(probe.to_string(), via)]);
                        differ.extend(cells.iter().map(|(f, t)| {
                            format!("{probe} {via:?} {}->{}", self.names[*f], self.names[*t])
                        }));
                    }
                }
            }
            eprintln!(
                "  not yet after {:?}: {} cells differ: {}",
                started.elapsed(),
                differ.len(),
                differ
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
}

/// The names in a `get -o json` list (an array, or `{"items": [...]}`).
fn names(json: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let items = v
        .as_array()
        .or_else(|| v["items"].as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
        .collect()
}

/// A TCP connection to `dst` answered by the server of `want`.
fn probe_tcp(dst: SocketAddr, want: &str) -> bool {
    let Ok(mut c) = TcpStream::connect_timeout(&dst, TCP_TIMEOUT) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(TCP_TIMEOUT));
    let mut line = String::new();
    let _ = c.read_to_string(&mut line);
    line.split(' ').next() == Some(want)
}

/// A datagram to `dst` echoed by the server of `want`.
fn probe_udp(dst: SocketAddr, want: &str) -> bool {
    let bind: SocketAddr = match dst {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
        SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
    };
    let Ok(u) = UdpSocket::bind(bind) else {
        return false;
    };
    if u.connect(dst).is_err() || u.set_read_timeout(Some(UDP_WAIT)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    for _ in 0..UDP_TRIES {
        if u.send(b"probe").is_err() {
            // An ICMP error of the last send (port unreachable): retry.
            continue;
        }
        match u.recv(&mut buf) {
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                return text.split(' ').next() == Some(want);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => {}
        }
    }
    false
}

/// Lets every probe thread have its sockets: 600-odd at once.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
}

#[test]
fn the_conformance_scenarios_hold_on_real_agents_through_pod_ips_and_services() {
    require_root();
    raise_fd_limit();
    let model = Model9::up();

    // Everything reaches everything before any policy (and the Services
    // have their endpoints on every node).
    let all = vec![Expectation {
        probes: Scenario::probes(),
        table: Reachability::new(model.names.clone(), true),
    }];
    let (report, took) = model.check(&all);
    assert!(report.is_empty(), "before any policy:\n{report}");
    eprintln!("no policy: every probe passes after {took:?}");

    let mut failures = Vec::new();
    let only = std::env::var("WEFT_NETPOL_ONLY").ok();
    for (file, text) in scenarios() {
        if only.as_deref().is_some_and(|o| !file.contains(o)) {
            continue;
        }
        let scenario = Scenario::parse(text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for (i, step) in scenario.steps.iter().enumerate() {
            for action in &step.actions {
                model.act(action);
            }
            let (report, took) = model.check(&step.expect);
            if report.is_empty() {
                eprintln!("{file} step {i}: as expected after {took:?}");
            } else {
                failures.push(format!("{file} step {i} ({}):\n{report}", scenario.name));
            }
        }
        model.reset();
    }
    assert!(
        failures.is_empty(),
        "{} steps differ:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The agents counted what they judged, and logged denials with both
    // pods' names.
    let mut judged = 0;
    let mut denied = 0;
    for node in NODES {
        let dp = model.lab.status(node).dataplane.expect("a data plane");
        let p = dp
            .policy
            .unwrap_or_else(|| panic!("{node} enforces NetworkPolicy"));
        judged += p.judged;
        denied += p.denied;
        // Probes through a Service and straight to its endpoint from one
        // source port must both get through (the source port is moved).
        let clashes: u64 = dp
            .drops
            .iter()
            .filter(|d| d.reason == "conntrack_key_taken")
            .map(|d| d.count)
            .sum();
        assert_eq!(
            clashes, 0,
            "{node} dropped new connections on a tuple clash"
        );
    }
    assert!(judged > 0 && denied > 0, "judged {judged}, denied {denied}");
    let logged = NODES.iter().any(|node| {
        let log = &model.lab.cluster.node(node).unwrap().log;
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("NetworkPolicy denied x/") || l.contains("NetworkPolicy denied y/"))
    });
    assert!(logged, "no agent logged a denied connection with pod names");

    // `weftctl --lab trace`: on the source pod's node, the Service's
    // endpoint, then the egress policy that denies it.
    let vip = model.vips["x/a"];
    let to = format!("{vip}:80/TCP");
    let trace = |from: &str| -> Value {
        serde_json::from_str(&model.lab.admin(&["trace", from, &to, "-o", "json"])).unwrap()
    };
    let t = trace("y/b");
    assert_eq!(t["forwarded"], true, "{t}");
    let text = t.to_string();
    assert!(text.contains("Service x/s-a"), "{t}");
    assert!(
        t["outcome"]
            .as_str()
            .unwrap()
            .contains(&format!("{}:80", model.lab.ip("x/a"))),
        "{t}"
    );
    model.lab.apply(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: quiet-b, namespace: y}\n\
         spec:\n  podSelector: {matchLabels: {pod: b}}\n  policyTypes: [Egress]\n",
    );
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let t = loop {
        let t = trace("y/b");
        if t["forwarded"] == false || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(t["outcome"], "dropped: policy_denied", "{t}");
    assert!(
        t.to_string()
            .contains("denied: y/quiet-b isolates the pod for egress"),
        "{t}"
    );
}
