//! The `weftctl` binary against a served local agent API (a real
//! `PodManager` creating real namespaces and TUNs, a fake data plane):
//! `pod add/list/del`, `-o json`, `status`, and the errors. Root only: it
//! fails, not skips, without root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// `futures::future::BoxFuture`, without the dependency.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

use serde_json::Value;
use weft_agent_api::NodeInfo;
use weft_node_agent::api::{self, DataplaneStatusSource, NodeInfoSource, Services};
use weft_node_agent::engine::{DataplaneError, DataplaneStatus, PeerStatus};
use weft_node_agent::kernel::netns::NetNs;
use weft_node_agent::pods::{MemoryPortSink, PodManager};

struct Node;

impl NodeInfoSource for Node {
    fn node_info(&self) -> NodeInfo {
        NodeInfo {
            name: "node-a".into(),
            node_id: 3,
            pod_cidr: "10.80.0.0/24".into(),
            node_address: "10.80.0.1".into(),
            control_plane: "192.0.2.1:7443".into(),
            control_plane_connected: true,
            watch_revision: 42,
            mtu: 1420,
            ..NodeInfo::default()
        }
    }
}

/// The sink's ports, plus one peer and a drop counter.
struct Dataplane(Arc<MemoryPortSink>);

impl DataplaneStatusSource for Dataplane {
    fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
        let status = DataplaneStatus {
            ports: self.0.attached(),
            peers: vec![PeerStatus {
                name: "node-b".into(),
                public_key: [7; 32],
                endpoint: Some("192.0.2.2:51820".parse().unwrap()),
                allowed: vec!["10.80.1.0/24".parse().unwrap()],
                last_handshake: Some(std::time::Duration::from_secs(12)),
                rx_bytes: 2048,
                tx_bytes: 300,
                rx_packets: 2,
                tx_packets: 3,
                ready: true,
                queued_packets: 0,
            }],
            drops: vec![("no_route", 5), ("ttl_exceeded", 0)],
            ..DataplaneStatus::default()
        };
        Box::pin(async move { Ok(status) })
    }
}

fn weftctl(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .arg("--agent-socket")
        .arg(socket)
        .env_remove("WEFT_AGENT_SOCKET")
        .output()
        .expect("weftctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs weftctl off the test's runtime (the API is served on it).
async fn run(socket: &Path, args: &[&str]) -> (i32, String, String) {
    let socket = socket.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        weftctl(&socket, &args)
    })
    .await
    .unwrap()
}

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.0 {
            if Path::new("/run/netns").join(name).exists() {
                let _ = NetNs::delete_named(name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_add_list_del_and_status() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the pod CLI test needs root (it creates namespaces and TUNs)"
    );
    let pid = std::process::id();
    let (web, given) = (format!("wcli{pid}-web"), format!("wcli{pid}-given"));
    let _cleanup = Cleanup(vec![web.clone(), given.clone()]);
    let _given_ns = NetNs::create_named(&given).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let socket: PathBuf = dir.path().join("agent.sock");
    let sink = Arc::new(MemoryPortSink::new());
    let pods = PodManager::open_with(
        &dir.path().join("state"),
        "10.80.0.0/24".parse().unwrap(),
        "10.80.0.1".parse().unwrap(),
        1420,
        sink.clone(),
    )
    .await
    .unwrap();
    let services = Services {
        pods: Arc::new(pods),
        dataplane: Arc::new(Dataplane(sink.clone())),
        node: Arc::new(Node),
        cluster: None,
    };
    let listener = api::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(api::serve_on(listener, services, async {
        let _ = stopped.await;
    }));

    // add: a created namespace (the default), then an existing one.
    let (code, out, err) = run(&socket, &["pod", "add", &web]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("pod {web} added: 10.80.0.2 on eth0 in /run/netns/{web}\n")
    );
    let netns = format!("/run/netns/{given}");
    let (code, out, err) = run(
        &socket,
        &[
            "pod",
            "add",
            "db",
            "--netns",
            &netns,
            "--ifname",
            "eth1",
            "-o",
            "json",
            "-n",
            "shop",
            "--label",
            "app=db",
            "--port",
            "sql=5432/tcp",
            "--port",
            "9100",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let db: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(db["id"], "db");
    assert_eq!(db["address"], "10.80.0.3");
    assert_eq!(db["ifname"], "eth1");
    assert_eq!(db["netns"], netns.as_str());
    assert_eq!(db["created_netns"], false);
    assert_eq!(db["pod_namespace"], "shop");
    assert_eq!(db["pod_name"], "db");
    assert_eq!(db["labels"], serde_json::json!({"app": "db"}));
    assert_eq!(
        db["ports"],
        serde_json::json!([{"name": "sql", "port": 5432, "protocol": "TCP"}, {"port": 9100, "protocol": "TCP"}])
    );

    // list, as a table and as JSON.
    let (code, out, err) = run(&socket, &["pod", "list"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        vec![
            "NAME",
            "IP",
            "NETNS",
            "IFNAME",
            "AGE",
            "CLUSTER",
            "REGISTRATION"
        ]
    );
    // Without a control plane (this API serves no registrations) the
    // registration is unknown.
    assert_eq!(lines[1][5..], ["shop/db", "-"]);
    assert_eq!(lines[2][5..], [format!("default/{web}").as_str(), "-"]);
    assert_eq!(lines[1][..4], ["db", "10.80.0.3", netns.as_str(), "eth1"]);
    assert_eq!(
        lines[2][..4],
        [
            web.as_str(),
            "10.80.0.2",
            &format!("/run/netns/{web}"),
            "eth0"
        ]
    );
    assert!(lines[1][4].ends_with('s'), "an age: {out}");
    assert_eq!(lines.len(), 3);
    let (code, out, _) = run(&socket, &["pod", "list", "-o", "json"]).await;
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[1]["id"], web.as_str());
    assert_eq!(list[1]["attached"], true);

    // status: summary, peers like `wg show`, non-zero drops only.
    let (code, out, err) = run(&socket, &["status"]).await;
    assert_eq!(code, 0, "{err}");
    for expected in [
        "node:          node-a (id 3)\n",
        "pod CIDR:      10.80.0.0/24\n",
        "node address:  10.80.0.1\n",
        "control plane: 192.0.2.1:7443 (connected, revision 42)\n",
        "pods:          2\n",
        "NAME    STATE  ENDPOINT         ALLOWED       LATEST HANDSHAKE  RX        TX     NO SESSION\n",
        "node-b  Ready  192.0.2.2:51820  10.80.1.0/24  12s ago           2.00 KiB  300 B  0\n",
        "DROP REASON  PACKETS\nno_route     5\n",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(!out.contains("ttl_exceeded"), "zero counters are left out");
    let (code, out, _) = run(&socket, &["status", "-o", "json"]).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["node"]["name"], "node-a");
    assert_eq!(status["pods"], 2);
    assert_eq!(
        status["dataplane"]["peers"][0]["endpoint"],
        "192.0.2.2:51820"
    );
    assert_eq!(status["dataplane"]["ports"].as_array().unwrap().len(), 2);

    // Errors from the agent: one line on stderr, exit 1.
    // Names: one rule, the one the help states.
    let (code, _, err) = run(&socket, &["pod", "add", "bad name"]).await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("weftctl: invalid pod name \"bad name\": a lowercase RFC 1123 subdomain must consist of"),
        "{err}"
    );
    assert!(
        err.contains("A Kubernetes pod name: 1 to 253 lowercase letters"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    let (code, _, err) = run(&socket, &["pod", "add", "web/1"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("invalid pod name \"web/1\""), "{err}");
    let (_, help, _) = run(&socket, &["pod", "add", "--help"]).await;
    assert!(help.contains("A Kubernetes pod name"), "{help}");
    assert!(help.contains("--label <KEY=VALUE>"), "{help}");
    assert!(help.contains("--port <NAME=PORT/PROTO>"), "{help}");
    // Labels, ports and the namespace are checked before the agent is asked,
    // each named by its flag.
    let (code, _, err) = run(
        &socket,
        &[
            "pod",
            "add",
            "x1",
            "--label=-bad=1",
            "--port",
            "http=80/SCTP",
            "-n",
            "Shop",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(
        err.starts_with("weftctl: invalid pod \"x1\": --namespace: Invalid value: \"Shop\""),
        "{err}"
    );
    assert!(err.contains("--label: Invalid value: \"-bad\""), "{err}");
    assert!(
        err.contains("--port [0].protocol: Unsupported value: \"SCTP\""),
        "{err}"
    );
    let (code, _, err) = run(&socket, &["pod", "add", "x1", "--port", "http"]).await;
    assert_eq!(code, 2, "clap refuses a port it cannot read: {err}");
    assert!(err.contains("\"http\" is not a port number"), "{err}");
    assert!(!Path::new("/run/netns/x1").exists());
    // Adding it again changes nothing, and says so.
    let (code, out, err) = run(&socket, &["pod", "add", &web]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!("pod {web} already existed: 10.80.0.2 on eth0 in /run/netns/{web}\n")
    );
    let (code, _, err) = run(&socket, &["pod", "add", &web, "--ifname", "eth9"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("already exists"), "{err}");
    let (code, _, err) = run(
        &socket,
        &["pod", "add", "x", "--netns", "/run/netns/x", "--create"],
    )
    .await;
    assert_eq!(code, 2, "clap refuses --netns with --create: {err}");

    // del, and del again.
    let (code, out, err) = run(&socket, &["pod", "del", &web]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("pod {web} deleted (10.80.0.2 freed)\n"));
    assert!(!Path::new("/run/netns").join(&web).exists());
    let (code, out, _) = run(&socket, &["pod", "del", &web]).await;
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("pod {web} does not exist; nothing to delete\n")
    );
    let (code, _, err) = run(&socket, &["pod", "del", "db"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(sink.attached().is_empty());

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn a_missing_socket_asks_whether_the_agent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    for args in [&["status"][..], &["pod", "list"], &["pod", "add", "web"]] {
        let (code, out, err) = weftctl(&socket, args);
        assert_eq!(code, 1, "{args:?}");
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!(
                "weftctl: is weft-agent running? (no socket at {})\n",
                socket.display()
            )
        );
    }
    // The environment variable is honoured too.
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(["pod", "list"])
        .env("WEFT_AGENT_SOCKET", &socket)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "weftctl: is weft-agent running? (no socket at {})\n",
            socket.display()
        )
    );
}
