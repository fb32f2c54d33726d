//! Three `weft-control-plane` processes on a three-member etcd, both started
//! by the test on loopback: 200 joins spread over the replicas at once get
//! 200 distinct CIDRs; 200 more, with one replica SIGKILLed and one etcd
//! member killed in the middle, each either succeed with a unique CIDR or
//! fail with a retryable code (and succeed when retried, as an agent does),
//! with nothing duplicated and nothing lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use weft_client::Credentials;
use weft_control_plane::store::etcd::local::LocalEtcd;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, JoinRequest, ListNodesRequest};

/// Replica processes, killed by PID on drop.
struct Replicas {
    children: Vec<Option<Child>>,
    addrs: Vec<String>,
    dirs: Vec<tempfile::TempDir>,
}

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_replica(dir: &Path, addr: &str, store: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weft-control-plane"))
        .args([
            "--listen",
            addr,
            "--advertise-address",
            addr,
            "--store",
            store,
        ])
        .arg("--state-dir")
        .arg(dir)
        .args(["--cluster-cidr", "10.128.0.0/9"])
        .env("WEFT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Wait until the replica in `dir` serves its admin API.
async fn wait_ready(dir: &Path) -> Credentials {
    let conf: PathBuf = dir.join("admin.conf");
    // Generous: a replica's first start makes keys and opens etcd, and CI
    // runs other tests beside this one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(creds) = Credentials::load(&conf) {
            if let Ok(ch) = weft_client::connect(&creds).await {
                if AdminClient::new(ch)
                    .list_nodes(ListNodesRequest {})
                    .await
                    .is_ok()
                {
                    return creds;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica in {dir:?} not ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn start_replicas(store: &str, n: usize) -> Replicas {
    let mut r = Replicas {
        children: Vec::new(),
        addrs: Vec::new(),
        dirs: Vec::new(),
    };
    for i in 0..n {
        let dir = tempfile::tempdir().unwrap();
        if i > 0 {
            std::fs::copy(
                r.dirs[0].path().join("cluster-secret"),
                dir.path().join("cluster-secret"),
            )
            .unwrap();
        }
        let addr = format!("127.0.0.1:{}", free_port());
        r.children
            .push(Some(spawn_replica(dir.path(), &addr, store)));
        wait_ready(dir.path()).await;
        r.addrs.push(addr);
        r.dirs.push(dir);
    }
    r
}

/// The codes an agent retries a join on (node-agent's `join.rs`). A call in
/// flight on a replica that is killed ends `Cancelled` ("connection
/// closed") or `Unknown` ("transport error", connection reset) on the
/// client's side.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
    )
}

/// Join `name` through replica `first`, moving to the next replica on a
/// retryable failure (as an agent with a replica list does). Returns the
/// CIDR and how many retryable failures it met.
async fn join(
    addrs: Arc<Vec<String>>,
    first: usize,
    token: String,
    hash: String,
    name: String,
    seed: u32,
) -> (String, usize) {
    let (_, csr) = weft_client::generate_csr(&name).unwrap();
    let key = {
        use base64::Engine;
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&seed.to_be_bytes());
        k[31] = 1;
        base64::engine::general_purpose::STANDARD.encode(k)
    };
    let mut failures = 0;
    for attempt in 0..40 {
        let addr = &addrs[(first + attempt) % addrs.len()];
        let call = async {
            let (ch, _) = weft_client::connect_pinned(addr, &hash)
                .await
                .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            ClusterClient::new(ch)
                .join(JoinRequest {
                    token: token.clone(),
                    node_name: name.clone(),
                    public_key: key.clone(),
                    // One endpoint per node (the control plane refuses a
                    // second claimant), derived from the seed.
                    endpoints: vec![format!(
                        "198.18.{}.{}:51820",
                        seed / 250 % 250,
                        seed % 250 + 1
                    )],
                    labels: Default::default(),
                    csr_pem: csr.clone(),
                })
                .await
        };
        match tokio::time::timeout(Duration::from_secs(20), call).await {
            Ok(Ok(r)) => return (r.into_inner().node.unwrap().pod_cidr, failures),
            Ok(Err(e)) if retryable(e.code()) => failures += 1,
            Ok(Err(e)) => panic!("join of {name} failed for good: {e}"),
            Err(_) => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("join of {name} never succeeded");
}

async fn joins(
    addrs: &Arc<Vec<String>>,
    token: &str,
    hash: &str,
    prefix: &str,
    n: u32,
) -> Vec<tokio::task::JoinHandle<(String, String, usize)>> {
    (0..n)
        .map(|i| {
            let (addrs, token, hash) = (addrs.clone(), token.to_string(), hash.to_string());
            let name = format!("{prefix}{i}");
            let seed = if prefix == "a" { i } else { 10_000 + i };
            tokio::spawn(async move {
                let (cidr, failures) =
                    join(addrs, i as usize, token, hash, name.clone(), seed).await;
                (name, cidr, failures)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_on_three_replicas_survive_a_killed_replica_and_etcd_member() {
    let mut etcd = LocalEtcd::start(3).await.unwrap();
    let url = etcd.store_url();
    let mut replicas = start_replicas(&url, 3).await;
    let creds = wait_ready(replicas.dirs[0].path()).await;
    let mut admin = AdminClient::new(weft_client::connect(&creds).await.unwrap());
    let t = admin
        .create_token(CreateTokenRequest {
            ttl_seconds: 3600,
            usages: 0,
            description: "chaos".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let addrs = Arc::new(replicas.addrs.clone());

    // 200 joins spread over the three replicas at once.
    let mut cidrs = BTreeMap::new();
    for task in joins(&addrs, &t.token_string, &t.ca_cert_hash, "a", 200).await {
        let (name, cidr, _) = task.await.unwrap();
        assert!(cidrs.insert(cidr, name).is_none(), "duplicate CIDR");
    }
    assert_eq!(cidrs.len(), 200);

    // 200 more; one replica is SIGKILLed and one etcd member killed while
    // they run.
    let tasks = joins(&addrs, &t.token_string, &t.ca_cert_hash, "b", 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    if let Some(mut c) = replicas.children[2].take() {
        c.kill().unwrap(); // SIGKILL
        let _ = c.wait();
    }
    etcd.kill(2);
    let mut retried = 0;
    for task in tasks {
        let (name, cidr, failures) = task.await.unwrap();
        retried += failures;
        assert!(cidrs.insert(cidr, name).is_none(), "duplicate CIDR");
    }
    assert_eq!(cidrs.len(), 400);

    // Nothing lost, nothing duplicated: the cluster holds exactly those.
    let creds = wait_ready(replicas.dirs[0].path()).await;
    let nodes = AdminClient::new(weft_client::connect(&creds).await.unwrap())
        .list_nodes(ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let listed: BTreeMap<String, String> = nodes
        .iter()
        .map(|n| (n.pod_cidr.clone(), n.name.clone()))
        .collect();
    assert_eq!(
        listed, cidrs,
        "the store holds exactly the joins that succeeded"
    );
    let ids: BTreeSet<u64> = nodes.iter().map(|n| n.id).collect();
    assert_eq!(ids.len(), 400, "node ids are unique");
    eprintln!("retryable failures met (and retried) during the chaos: {retried}");
}
