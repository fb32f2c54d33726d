//! The objects phase of `weft-bench control-plane` (after the node fan-out):
//! Services and NetworkPolicies applied through `Admin.Apply`, pods
//! registered by the simulated nodes through `Cluster.RegisterPod`, every
//! watcher following them until it holds all of them, then endpoint
//! changes (a new pod selected by one Service) timed until every watcher
//! has the EndpointSlice that lists it.
//!
//! Contract: objects are named by index (`s-00007`, `p-000042`,
//! `np-0003`, marker pods `m-0001`) in namespace `bench`, so a watcher
//! tracks what it has seen in bitsets (a few KiB per watcher, not a map of
//! names). Pod `i` selects Service `i % services` (label `app`), runs on
//! node `i % nodes` and has address `10.128.0.0 + i + 1`; marker pod `k`
//! has `10.200.0.0 + k + 1` and selects Service 0.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{ApplyRequest, GetObjectsRequest, Object, RegisterPodRequest};

use super::report::Dist;

/// The namespace every benchmark object lives in.
pub(super) const NAMESPACE: &str = "bench";
/// Documents per `Apply` request.
const APPLY_BATCH: usize = 100;
/// Pod registrations in flight at once.
const REGISTER_CONCURRENCY: usize = 64;

/// How many objects of each kind, and how many endpoint changes.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Plan {
    pub pods: usize,
    pub services: usize,
    pub policies: usize,
    pub endpoint_changes: usize,
}

impl Plan {
    /// Whether there is an objects phase at all.
    pub(super) fn any(&self) -> bool {
        self.pods + self.services + self.policies > 0
    }
}

fn index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.parse().ok()
}

fn pod_ip(i: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 128, 0, 0)) + i as u32 + 1)
}

fn marker_ip(k: usize) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 200, 0, 0)) + k as u32 + 1)
}

/// What the watchers report, shared with the driver. Times are
/// nanoseconds since the run's epoch plus one (0: not yet).
pub(super) struct Tracker {
    pub plan: Plan,
    nodes: usize,
    /// Per watcher: when it held every object.
    pub converged_at: Vec<AtomicU64>,
    pub converged: AtomicUsize,
    /// The endpoint change in flight (usize::MAX: none).
    pub current: AtomicUsize,
    /// Per (change, watcher), at `change * nodes + watcher`.
    pub marker_at: Vec<AtomicU64>,
    pub marker_seen: Vec<AtomicUsize>,
    /// Object changes and snapshot objects received, and their JSON bytes.
    pub object_events: AtomicU64,
    pub object_bytes: AtomicU64,
}

impl Tracker {
    pub(super) fn new(plan: Plan, nodes: usize) -> Tracker {
        let zeros = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect::<Vec<_>>();
        Tracker {
            plan,
            nodes,
            converged_at: zeros(nodes),
            converged: AtomicUsize::new(0),
            current: AtomicUsize::new(usize::MAX),
            marker_at: zeros(nodes * plan.endpoint_changes),
            marker_seen: (0..plan.endpoint_changes)
                .map(|_| AtomicUsize::new(0))
                .collect(),
            object_events: AtomicU64::new(0),
            object_bytes: AtomicU64::new(0),
        }
    }
}

/// One watcher's view: which objects it holds.
pub(super) struct Seen {
    pods: Vec<bool>,
    services: Vec<bool>,
    policies: Vec<bool>,
    /// Services with at least one EndpointSlice.
    slices: Vec<bool>,
    counts: [usize; 4],
    done: bool,
}

impl Seen {
    pub(super) fn new(plan: &Plan) -> Seen {
        Seen {
            pods: vec![false; plan.pods],
            services: vec![false; plan.services],
            policies: vec![false; plan.policies],
            slices: vec![false; plan.services],
            counts: [0; 4],
            done: !plan.any(),
        }
    }

    /// Note one object (from a snapshot or a change) seen by watcher `idx`
    /// at `now` (nanoseconds since the epoch, plus one).
    pub(super) fn object(&mut self, t: &Tracker, idx: usize, o: &Object, deleted: bool, now: u64) {
        t.object_events.fetch_add(1, Ordering::Relaxed);
        t.object_bytes
            .fetch_add(o.json.len() as u64, Ordering::Relaxed);
        if o.namespace != NAMESPACE {
            return;
        }
        let present = !deleted;
        let (set, slot, i) = match o.kind.as_str() {
            "Pod" => match index(&o.name, "p-") {
                Some(i) => (&mut self.pods, 0, i),
                None => return,
            },
            "Service" => match index(&o.name, "s-") {
                Some(i) => (&mut self.services, 1, i),
                None => return,
            },
            "NetworkPolicy" => match index(&o.name, "np-") {
                Some(i) => (&mut self.policies, 2, i),
                None => return,
            },
            "EndpointSlice" => {
                // `<service>-<5 characters>`.
                let svc = o.name.get(..o.name.len().saturating_sub(6)).unwrap_or("");
                if present {
                    self.marker(t, idx, svc, o, now);
                }
                match index(svc, "s-") {
                    Some(i) => (&mut self.slices, 3, i),
                    None => return,
                }
            }
            _ => return,
        };
        if let Some(b) = set.get_mut(i) {
            if *b != present {
                *b = present;
                if present {
                    self.counts[slot] += 1;
                } else {
                    self.counts[slot] -= 1;
                }
            }
        }
        let p = &t.plan;
        if !self.done && self.counts == [p.pods, p.services, p.policies, p.services] {
            self.done = true;
            t.converged_at[idx].store(now, Ordering::Relaxed);
            t.converged.fetch_add(1, Ordering::Release);
        }
    }

    fn marker(&self, t: &Tracker, idx: usize, svc: &str, o: &Object, now: u64) {
        let k = t.current.load(Ordering::Acquire);
        if k >= t.plan.endpoint_changes || index(svc, "s-") != Some(0) {
            return;
        }
        let needle = format!("\"{}\"", marker_ip(k));
        if o.json.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let slot = &t.marker_at[k * t.nodes + idx];
            if slot.load(Ordering::Relaxed) == 0 {
                slot.store(now, Ordering::Relaxed);
                t.marker_seen[k].fetch_add(1, Ordering::Release);
            }
        }
    }
}

/// What the phase measured.
#[derive(Debug, Default)]
pub(super) struct Report {
    pub plan: Plan,
    pub apply_wall: Option<Duration>,
    pub register_wall: Option<Duration>,
    pub register_rpc: Dist,
    /// From the start of the phase until the last watcher held everything.
    pub converge_wall: Option<Duration>,
    pub converged: usize,
    pub endpoint: Dist,
    pub endpoint_missing: usize,
    pub slices: usize,
    /// Objects received by all watchers (snapshot entries and changes),
    /// and their JSON bytes.
    pub object_events: u64,
    pub object_bytes: u64,
    pub errors: Vec<String>,
}

impl Report {
    pub(super) fn json(&self) -> serde_json::Value {
        let s = |d: Option<Duration>| d.map(|d| super::report::round3(d.as_secs_f64()));
        json!({
            "pods": self.plan.pods, "services": self.plan.services, "policies": self.plan.policies,
            "endpoint_changes": self.plan.endpoint_changes,
            "apply_s": s(self.apply_wall), "register_s": s(self.register_wall),
            "register_rpc": self.register_rpc.json(),
            "converge_s": s(self.converge_wall), "converged_watchers": self.converged,
            "endpoint_latency": self.endpoint.json(), "endpoint_missing": self.endpoint_missing,
            "endpoint_slices": self.slices,
            "object_events": self.object_events, "object_json_bytes": self.object_bytes,
        })
    }
}

fn service(i: usize) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("s-{i:05}"), "namespace": NAMESPACE},
        "spec": {"selector": {"app": format!("s-{i:05}")},
                 "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
}

fn policy(i: usize, services: usize) -> serde_json::Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": format!("np-{i:04}"), "namespace": NAMESPACE},
        "spec": {"podSelector": {"matchLabels": {"app": format!("s-{:05}", i % services.max(1))}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "frontend"}}}],
                              "ports": [{"port": "http"}]}]}})
}

fn pod(name: &str, node: &str, service: usize, ip: std::net::Ipv4Addr) -> Vec<u8> {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": format!("s-{service:05}")}},
        "spec": {"nodeName": node, "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip.to_string(), "podIPs": [{"ip": ip.to_string()}],
                   "conditions": [{"type": "Ready", "status": "True"}]}})
    .to_string()
    .into_bytes()
}

async fn apply_all(admin: &mut AdminClient<Channel>, docs: Vec<serde_json::Value>) -> Result<()> {
    for chunk in docs.chunks(APPLY_BATCH) {
        admin
            .apply(ApplyRequest {
                documents: chunk
                    .iter()
                    .map(|d| d.to_string().into_bytes().into())
                    .collect(),
                dry_run: false,
                namespace: String::new(),
            })
            .await
            .context("Admin.Apply")?;
    }
    Ok(())
}

/// Wait until `count()` reaches `want()` or `until`; false on time out.
async fn wait(
    until: tokio::time::Instant,
    count: impl Fn() -> usize,
    want: impl Fn() -> usize,
) -> bool {
    while count() < want() {
        if tokio::time::Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// Run the phase. `channels[i]` is node `i`'s mutual-TLS channel (None if
/// it did not join); `watching` counts open watch streams; `now_ns` reads
/// the run's clock.
pub(super) async fn run(
    admin: &mut AdminClient<Channel>,
    channels: &[Option<Channel>],
    tracker: &Tracker,
    watching: &AtomicUsize,
    now_ns: impl Fn() -> u64,
    deadline: tokio::time::Instant,
    change_timeout: Duration,
) -> Report {
    let plan = tracker.plan;
    let mut r = Report {
        plan,
        ..Default::default()
    };
    let start = Instant::now();
    let mut docs =
        vec![json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})];
    docs.extend((0..plan.services).map(service));
    docs.extend((0..plan.policies).map(|i| policy(i, plan.services)));
    if let Err(e) = apply_all(admin, docs).await {
        r.errors.push(format!("{e:#}"));
        return r;
    }
    r.apply_wall = Some(start.elapsed());
    eprintln!(
        "weft-bench: {} services and {} policies applied in {:.2} s",
        plan.services,
        plan.policies,
        start.elapsed().as_secs_f64()
    );

    // Pods, registered by their nodes.
    let nodes: Vec<(usize, Channel)> = channels
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.clone().map(|c| (i, c)))
        .collect();
    if nodes.is_empty() {
        r.errors.push("no node joined: no pods registered".into());
        return r;
    }
    let nodes = Arc::new(nodes);
    let next = Arc::new(AtomicUsize::new(0));
    let services = plan.services.max(1);
    let mut workers = JoinSet::new();
    for _ in 0..REGISTER_CONCURRENCY.min(plan.pods) {
        let (nodes, next) = (nodes.clone(), next.clone());
        workers.spawn(async move {
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.pods {
                    return Ok::<_, String>(times);
                }
                if tokio::time::Instant::now() >= deadline {
                    // Stop, so that the run still reports (and writes
                    // its JSON) instead of being abandoned.
                    return Err(format!(
                        "--timeout reached after registering about {i} pods"
                    ));
                }
                let (idx, channel) = &nodes[i % nodes.len()];
                let doc = pod(
                    &format!("p-{i:06}"),
                    &super::node::node_name(*idx),
                    i % services,
                    pod_ip(i),
                );
                let t = Instant::now();
                ClusterClient::new(channel.clone())
                    .register_pod(RegisterPodRequest { pod: doc.into() })
                    .await
                    .map_err(|s| format!("RegisterPod p-{i:06}: {s}"))?;
                times.push(t.elapsed());
            }
        });
    }
    let mut rpc = Vec::new();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(Ok(t)) => rpc.extend(t),
            Ok(Err(e)) => r.errors.push(e),
            Err(e) => r.errors.push(format!("a registering task failed: {e}")),
        }
    }
    r.register_rpc = Dist::of(&rpc);
    r.register_wall = Some(start.elapsed());
    eprintln!(
        "weft-bench: {} pods registered at {:.2} s",
        rpc.len(),
        start.elapsed().as_secs_f64()
    );
    if !r.errors.is_empty() {
        return r;
    }

    // Every watcher holds every object.
    let converged = wait(
        deadline,
        || tracker.converged.load(Ordering::Acquire),
        || watching.load(Ordering::Relaxed),
    )
    .await;
    r.converged = tracker.converged.load(Ordering::Acquire);
    if converged {
        r.converge_wall = Some(start.elapsed());
    } else {
        r.errors.push(format!(
            "only {} of {} watchers held every object within --timeout",
            r.converged,
            watching.load(Ordering::Relaxed)
        ));
    }
    eprintln!(
        "weft-bench: {} watchers hold every object, at {:.2} s",
        r.converged,
        start.elapsed().as_secs_f64()
    );

    // Endpoint changes: a new pod for Service 0, until every watcher has
    // the slice listing it.
    let mut latencies = Vec::new();
    if let Some((idx, channel)) = nodes.first().cloned() {
        let mut client = ClusterClient::new(channel);
        for k in 0..plan.endpoint_changes {
            tracker.current.store(k, Ordering::Release);
            let t0 = now_ns();
            let doc = pod(
                &format!("m-{k:04}"),
                &super::node::node_name(idx),
                0,
                marker_ip(k),
            );
            if let Err(s) = client
                .register_pod(RegisterPodRequest { pod: doc.into() })
                .await
            {
                r.errors
                    .push(format!("endpoint change {k}: RegisterPod: {s}"));
                break;
            }
            let until = deadline.min(tokio::time::Instant::now() + change_timeout);
            if !wait(
                until,
                || tracker.marker_seen[k].load(Ordering::Acquire),
                || watching.load(Ordering::Relaxed),
            )
            .await
            {
                r.errors.push(format!(
                    "endpoint change {k} did not reach every watcher in time"
                ));
            }
            for w in 0..tracker.nodes {
                match tracker.marker_at[k * tracker.nodes + w].load(Ordering::Relaxed) {
                    0 => {
                        r.endpoint_missing +=
                            usize::from(channels.get(w).is_some_and(Option::is_some))
                    }
                    at => latencies.push(Duration::from_nanos(at.saturating_sub(t0))),
                }
            }
        }
        tracker.current.store(usize::MAX, Ordering::Release);
    }
    r.endpoint = Dist::of(&latencies);
    r.slices = admin
        .get_objects(GetObjectsRequest {
            kind: "endpointslices".into(),
            namespace: NAMESPACE.into(),
            ..Default::default()
        })
        .await
        .map(|g| g.into_inner().objects.len())
        .unwrap_or(0);
    r.object_events = tracker.object_events.load(Ordering::Relaxed);
    r.object_bytes = tracker.object_bytes.load(Ordering::Relaxed);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(kind: &str, name: &str, json: &str) -> Object {
        Object {
            kind: kind.into(),
            namespace: NAMESPACE.into(),
            name: name.into(),
            revision: 1,
            json: json.as_bytes().to_vec().into(),
        }
    }

    #[test]
    fn a_watcher_converges_when_it_holds_everything() {
        let plan = Plan {
            pods: 2,
            services: 1,
            policies: 1,
            endpoint_changes: 1,
        };
        let t = Tracker::new(plan, 1);
        let mut s = Seen::new(&plan);
        for o in [
            obj("Pod", "p-000000", "{}"),
            obj("Pod", "p-000001", "{}"),
            obj("Service", "s-00000", "{}"),
            obj("NetworkPolicy", "np-0000", "{}"),
        ] {
            s.object(&t, 0, &o, false, 5);
        }
        assert_eq!(t.converged.load(Ordering::Relaxed), 0);
        s.object(
            &t,
            0,
            &obj("EndpointSlice", "s-00000-abcde", "{}"),
            false,
            7,
        );
        assert_eq!(t.converged.load(Ordering::Relaxed), 1);
        assert_eq!(t.converged_at[0].load(Ordering::Relaxed), 7);

        // The marker: only a slice of Service 0 listing the marker's IP.
        t.current.store(0, Ordering::Relaxed);
        s.object(
            &t,
            0,
            &obj("EndpointSlice", "s-00000-abcde", r#"{"a":"10.128.0.1"}"#),
            false,
            8,
        );
        assert_eq!(t.marker_seen[0].load(Ordering::Relaxed), 0);
        s.object(
            &t,
            0,
            &obj("EndpointSlice", "s-00000-abcde", r#"{"a":"10.200.0.1"}"#),
            false,
            9,
        );
        assert_eq!(t.marker_seen[0].load(Ordering::Relaxed), 1);
        assert_eq!(t.marker_at[0].load(Ordering::Relaxed), 9);
    }

    #[test]
    fn manifests_are_what_the_control_plane_accepts() {
        for doc in [service(3), policy(2, 5)] {
            let text = doc.to_string();
            let objects = weft_objects::parse_manifests(&text).unwrap();
            assert_eq!(objects.len(), 1);
        }
        let p = String::from_utf8(pod("p-000001", "bench-00000", 0, pod_ip(1))).unwrap();
        assert!(weft_objects::parse_manifests(&p).is_ok());
        assert_eq!(pod_ip(0).to_string(), "10.128.0.1");
        assert_eq!(marker_ip(1).to_string(), "10.200.0.2");
    }
}
