//! The local API over a real unix socket: the clients' round trips, error
//! codes, bad input, the socket's mode, a live or stale socket, shutdown.
//! The pod round trip needs root (it creates namespaces and TUNs) and fails
//! without it; the rest runs anywhere.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_agent_api::{
    AgentApiError, AgentClient, AsyncAgentClient, ErrorCode, NodeInfo, PodAddRequest,
};
use weft_node_agent::api::{self, ApiError, DataplaneStatusSource, NodeInfoSource, Services};
use weft_node_agent::engine::{DataplaneError, DataplaneStatus};
use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::pods::{MemoryPortSink, PodManager};

struct FakeNode(Mutex<NodeInfo>);

impl NodeInfoSource for FakeNode {
    fn node_info(&self) -> NodeInfo {
        self.0.lock().unwrap().clone()
    }
}

fn node_info() -> NodeInfo {
    NodeInfo {
        name: "node-a".into(),
        node_id: 3,
        pod_cidr: "10.79.0.0/24".into(),
        node_address: "10.79.0.1".into(),
        control_plane: "192.0.2.1:7443".into(),
        control_plane_connected: true,
        watch_revision: 42,
        mtu: 1420,
        ..NodeInfo::default()
    }
}

/// A data plane that is down.
struct DownDataplane;

impl DataplaneStatusSource for DownDataplane {
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
        Box::pin(async { Err(DataplaneError::NotRunning) })
    }
}

/// A served API on a temp socket; stops (and is awaited) on drop of `stop`.
struct Served {
    socket: PathBuf,
    sink: Arc<MemoryPortSink>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ApiError>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    async fn start(dataplane_down: bool) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/weft/agent.sock");
        let sink = Arc::new(MemoryPortSink::new());
        let pods = PodManager::open_with(
            &dir.path().join("state"),
            "10.79.0.0/24".parse().unwrap(),
            "10.79.0.1".parse().unwrap(),
            1420,
            sink.clone(),
        )
        .await
        .unwrap();
        let dataplane: Arc<dyn DataplaneStatusSource> = if dataplane_down {
            Arc::new(DownDataplane)
        } else {
            sink.clone()
        };
        let services = Services {
            pods: Arc::new(pods),
            dataplane,
            node: Arc::new(FakeNode(Mutex::new(node_info()))),
            cluster: None,
        };
        let listener = api::bind(&socket).unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(api::serve_on(listener, services, async {
            let _ = rx.await;
        }));
        Served {
            socket,
            sink,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    async fn stop(mut self) -> Result<(), ApiError> {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap()
    }
}

/// Sends raw lines on one connection and reads one response per line.
fn raw_exchange(socket: &Path, lines: &[&[u8]]) -> Vec<Value> {
    let stream = UnixStream::connect(socket).unwrap();
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    for line in lines {
        reader.get_mut().write_all(line).unwrap();
        let mut response = String::new();
        reader.read_line(&mut response).unwrap();
        out.push(serde_json::from_str(&response).unwrap());
    }
    out
}

fn error_of(v: &Value) -> (String, String) {
    assert_eq!(v["ok"], false, "{v}");
    (
        v["error"]["code"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_and_status_with_a_fake_node_and_a_down_data_plane() {
    let served = Served::start(true).await;
    let mut client = AsyncAgentClient::connect(&served.socket).await.unwrap();
    assert_eq!(
        client.ping().await.unwrap().version,
        env!("CARGO_PKG_VERSION")
    );
    let status = client.status().await.unwrap();
    assert_eq!(status.node, node_info());
    assert_eq!(status.pods, 0);
    assert!(status.dataplane.is_none());
    assert_eq!(
        status.dataplane_error.as_deref(),
        Some("the data plane is not running")
    );
    // The blocking client speaks the same protocol.
    let socket = served.socket.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut c = AgentClient::connect(&socket).unwrap();
        c.status().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.node.name, "node-a");
    served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_round_trip_through_the_clients() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the pod API test needs root (it creates namespaces and TUNs)"
    );
    let served = Served::start(false).await;
    let id = format!("wpa{}-web", std::process::id());
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if Path::new("/run/netns").join(&self.0).exists() {
                let _ = NetNs::delete_named(&self.0);
            }
        }
    }
    let _cleanup = Cleanup(id.clone());

    let mut client = AsyncAgentClient::connect(&served.socket).await.unwrap();
    let req = PodAddRequest {
        id: id.clone(),
        create_netns: true,
        pod_namespace: Some("default".into()),
        pod_name: Some("web".into()),
        ..PodAddRequest::default()
    };
    let pod = client.pod_add(req.clone()).await.unwrap();
    assert_eq!(pod.address.to_string(), "10.79.0.2");
    assert_eq!(pod.netns, format!("/run/netns/{id}"));
    assert_eq!(pod.ifname, "eth0");
    assert!(pod.created_netns && pod.attached);
    assert_eq!(pod.pod_name.as_deref(), Some("web"));
    // Idempotent add.
    assert_eq!(client.pod_add(req.clone()).await.unwrap(), pod);
    // A different add of the same id.
    let err = client
        .pod_add(PodAddRequest {
            ifname: Some("eth1".into()),
            ..req.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists), "{err}");

    assert_eq!(client.pod_get(&id).await.unwrap(), pod);
    assert_eq!(client.pod_list().await.unwrap(), vec![pod.clone()]);
    let status = client.status().await.unwrap();
    assert_eq!(status.pods, 1);
    let dp = status.dataplane.expect("data plane status");
    assert_eq!(dp.ports.len(), 1);
    assert_eq!(dp.ports[0].id, id);
    assert_eq!(served.sink.attached().len(), 1);

    // Errors carry their codes.
    let err = client
        .pod_add(PodAddRequest {
            id: "bad id".into(),
            create_netns: true,
            ..PodAddRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Invalid));
    assert!(
        err.to_string().starts_with("invalid pod id \"bad id\""),
        "{err}"
    );
    let err = client
        .pod_add(PodAddRequest {
            id: "p2".into(),
            netns: Some("/run/netns/weft-no-such-ns".into()),
            ..PodAddRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Invalid));
    assert_eq!(
        err.to_string(),
        "network namespace /run/netns/weft-no-such-ns does not exist"
    );

    // Delete, twice (idempotent), then it is not found.
    let gone = client.pod_del(&id).await.unwrap().expect("deleted");
    assert_eq!(gone.address, pod.address);
    assert!(!gone.attached);
    assert_eq!(client.pod_del(&id).await.unwrap(), None);
    let err = client.pod_get(&id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotFound));
    assert!(!Path::new("/run/netns").join(&id).exists());
    served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_precise_errors_and_the_connection_survives() {
    let served = Served::start(false).await;
    let socket = served.socket.clone();
    let responses = tokio::task::spawn_blocking(move || {
        raw_exchange(
            &socket,
            &[
                b"not json\n",
                b"{\"op\":\"launch\"}\n",
                b"{\"id\":\"x\"}\n",
                b"{\"op\":\"pod_add\",\"id\":\"x\",\"create\":true}\n",
                b"\n",
                b"{\"op\":\"ping\"}\n",
            ],
        )
    })
    .await
    .unwrap();
    let (code, msg) = error_of(&responses[0]);
    assert_eq!(code, "invalid");
    assert_eq!(
        msg,
        "request is not valid JSON: expected ident at line 1 column 2"
    );
    let (code, msg) = error_of(&responses[1]);
    assert_eq!(code, "invalid");
    assert_eq!(
        msg,
        "unknown op \"launch\" (expected one of: ping, status, pod_add, pod_get, pod_del, pod_list, trace)"
    );
    assert!(error_of(&responses[2]).1.starts_with("missing \"op\""));
    assert!(error_of(&responses[3])
        .1
        .starts_with("bad pod_add request: unknown field `create`"));
    assert_eq!(error_of(&responses[4]).1, "empty request line");
    assert_eq!(responses[5]["ok"], true, "the connection still serves");
    assert!(responses[5]["result"]["version"].is_string());

    // An oversized line: a precise error, then the agent closes.
    let socket = served.socket.clone();
    let (response, rest) = tokio::task::spawn_blocking(move || {
        let stream = UnixStream::connect(&socket).unwrap();
        let mut reader = BufReader::new(stream);
        let mut big = b"{\"op\":\"ping\",\"pad\":\"".to_vec();
        big.resize(70 * 1024, b'x');
        // The agent may close before reading it all; ignore EPIPE.
        let _ = reader.get_mut().write_all(&big);
        let mut response = String::new();
        reader.read_line(&mut response).unwrap();
        let mut rest = String::new();
        let _ = reader.read_line(&mut rest);
        (response, rest)
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&response).unwrap();
    assert_eq!(
        error_of(&v),
        (
            "invalid".into(),
            "request line longer than 65536 bytes; closing the connection".into()
        )
    );
    assert_eq!(rest, "", "the connection is closed after it");
    served.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_is_root_only_and_exclusive() {
    let served = Served::start(false).await;
    assert!(
        served.socket.parent().unwrap().is_dir(),
        "the dir is created"
    );
    let mode = std::fs::metadata(&served.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second agent on the same live socket fails clearly, and does not
    // disturb the first.
    let err = api::bind(&served.socket).unwrap_err();
    assert!(matches!(err, ApiError::InUse { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "local API socket {}: another weft-agent is serving on it; stop it first, or give this agent another socket path",
            served.socket.display()
        )
    );
    let mut client = AsyncAgentClient::connect(&served.socket).await.unwrap();
    client.ping().await.unwrap();

    // Shutdown removes the socket; clients then hear that no agent runs.
    let socket = served.socket.clone();
    served.stop().await.unwrap();
    assert!(!socket.exists(), "the socket file is removed on shutdown");
    let err = AsyncAgentClient::connect(&socket).await.unwrap_err();
    assert!(matches!(err, AgentApiError::NoSocket { .. }), "{err}");
    assert!(err
        .to_string()
        .starts_with("is weft-agent running? (no socket at"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists(), "a stale socket file from a dead agent");
    let listener = api::bind(&path).expect("a stale socket is replaced");
    // It answers connections now (the kernel queues them until accepted).
    UnixStream::connect(&path).expect("the new socket listens");
    drop(listener);
    assert!(!path.exists(), "dropping the listener removes its socket");

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"precious").unwrap();
    let err = api::bind(&file).unwrap_err();
    assert!(matches!(err, ApiError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
}
