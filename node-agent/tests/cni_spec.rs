//! The real `weft-cni` binary against a local API served in-process (real
//! namespaces and TUNs; the in-memory port sink stands in for the data
//! plane), driven the way a container runtime drives it: every command,
//! every CNI version's result, and every error path. Root only: it fails,
//! not skips, without root.

mod cni_support;

use serde_json::{json, Value};
use weft_agent_api::{AgentClient, PodAddRequest};

use cni_support::{
    addresses_in, conf, ip, links_in, require_root, run_plain, unique, with_prev, Agent,
    Invocation, Namespaces,
};

const CIDR: &str = "10.83.0.0/24";
const NODE: &str = "10.83.0.1";

fn expected_result(version: &str, netns: &str, address: &str) -> Value {
    let mut interface = json!({"name": "eth0", "sandbox": netns});
    let mut ip = json!({"address": format!("{address}/32"), "gateway": NODE, "interface": 0});
    if version == "1.1.0" {
        interface["mtu"] = json!(1420);
    }
    if version.starts_with("0.") {
        ip["version"] = json!("4");
    }
    json!({
        "cniVersion": version,
        "interfaces": [interface],
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {
            "nameservers": ["10.96.0.10"],
            "search": ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
            "options": ["ndots:5"]
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_check_del_in_a_real_namespace_for_every_version() {
    require_root();
    let agent = Agent::start(CIDR, NODE).await;
    let mut namespaces = Namespaces::default();
    for version in ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"] {
        let name = unique("wcs");
        let netns = namespaces.create(&name);
        let cid = unique("c0ffee");
        let inv = Invocation::new(&cid, &netns);
        let conf = conf(version, &agent.socket);

        let add = inv.run("ADD", &conf).await;
        assert_eq!(add.code, 0, "{version}: {add:?}");
        let result = add.json();
        assert_eq!(
            result,
            expected_result(version, &netns, "10.83.0.2"),
            "{version}"
        );

        // The TUN is in the namespace with the address and the route.
        assert_eq!(links_in(&name), ["lo", "eth0"], "{version}");
        assert_eq!(addresses_in(&name, "eth0"), ["10.83.0.2/32"], "{version}");
        let routes = ip(&["-n", &name, "route", "show", "default"]);
        assert!(routes.contains("default dev eth0"), "{version}: {routes}");
        // The agent's record carries the Kubernetes metadata.
        let pod = agent
            .pods
            .get(&format!("{cid}/eth0"))
            .await
            .expect("recorded");
        assert_eq!(pod.pod_namespace.as_deref(), Some("default"));
        assert_eq!(pod.pod_name, Some(format!("web-{cid}")));
        assert!(!pod.created_netns);

        let check_conf = with_prev(conf.clone(), &result);
        if version != "0.3.0" && version != "0.3.1" {
            inv.run("CHECK", &check_conf).await.assert_quiet_success();
        } else {
            let e = inv.run("CHECK", &check_conf).await.assert_error(1);
            assert_eq!(
                e["msg"],
                format!("CHECK needs cniVersion 0.4.0 or later; the configuration has {version}")
            );
        }
        if version == "1.1.0" {
            // The interface vanishes behind weft's back: CHECK says so.
            ip(&["-n", &name, "link", "del", "eth0"]);
            let run = inv.run("CHECK", &check_conf).await;
            run.assert_error(105);
            assert_eq!(run.msg(), format!("interface eth0 is missing from {netns}"));
        }

        inv.run("DEL", &check_conf).await.assert_quiet_success();
        assert_eq!(links_in(&name), ["lo"], "{version}");
        assert!(agent.pods.list().await.is_empty(), "{version}");
        // DEL again, with and without prevResult.
        inv.run("DEL", &check_conf).await.assert_quiet_success();
        inv.run("DEL", &conf).await.assert_quiet_success();
        namespaces.delete(&name);
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_best_effort() {
    require_root();
    let agent = Agent::start("10.83.2.0/24", "10.83.2.1").await;
    let mut namespaces = Namespaces::default();
    let name = unique("wcs");
    let netns = namespaces.create(&name);
    let inv = Invocation::new(&unique("cafe"), &netns);
    let conf = conf("1.1.0", &agent.socket);

    // Unknown container: nothing to do.
    inv.run("DEL", &conf).await.assert_quiet_success();
    // The namespace is gone before DEL (the runtime removed it first).
    assert_eq!(inv.run("ADD", &conf).await.code, 0);
    namespaces.delete(&name);
    let mut no_netns = inv.clone();
    no_netns.netns = None;
    no_netns.run("DEL", &conf).await.assert_quiet_success();
    assert!(agent.pods.list().await.is_empty(), "the address is freed");
    // No agent at all.
    let missing = cni_support::conf("1.1.0", &agent.path("nowhere.sock"));
    let run = inv.run("DEL", &missing).await;
    run.assert_quiet_success();
    assert!(
        run.stderr.contains("is weft-agent running? (no socket at"),
        "{run:?}"
    );
    // Only a malformed configuration fails.
    inv.run_raw("DEL", b"{".to_vec()).await.assert_error(6);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_with_and_without_an_agent() {
    require_root();
    let agent = Agent::start("10.83.3.0/24", "10.83.3.1").await;
    run_plain("STATUS", &conf("1.1.0", &agent.socket))
        .await
        .assert_quiet_success();

    let missing = agent.path("nowhere.sock");
    let run = run_plain("STATUS", &conf("1.1.0", &missing)).await;
    run.assert_error(50);
    assert_eq!(
        run.msg(),
        format!(
            "weft-agent is not running (no socket at {})",
            missing.display()
        )
    );

    // An agent that has bound its socket but not joined yet (it serves
    // only once joined): no answer.
    let unserved = agent.path("unserved.sock");
    let listener = weft_node_agent::api::bind(&unserved).unwrap();
    let run = run_plain("STATUS", &conf("1.1.0", &unserved)).await;
    run.assert_error(50);
    assert_eq!(
        run.msg(),
        format!(
            "weft-agent at {} has not joined yet: no answer within 5s",
            unserved.display()
        )
    );
    drop(listener);

    // STATUS needs 1.1.0.
    run_plain("STATUS", &conf("1.0.0", &agent.socket))
        .await
        .assert_error(1);
    agent.stop().await;

    let down = Agent::start_with("10.83.4.0/24", "10.83.4.1", true).await;
    let run = run_plain("STATUS", &conf("1.1.0", &down.socket)).await;
    run.assert_error(51);
    assert_eq!(
        run.msg(),
        "weft-agent's data plane is not running: the data plane is not running"
    );
    down.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_only_leaked_attachments() {
    require_root();
    let agent = Agent::start("10.83.5.0/24", "10.83.5.1").await;
    let mut namespaces = Namespaces::default();
    let (keep_ns, leak_ns) = (unique("wcs"), unique("wcs"));
    let keep = Invocation::new(&unique("keep"), &namespaces.create(&keep_ns));
    let leak = Invocation::new(&unique("leak"), &namespaces.create(&leak_ns));
    let conf = conf("1.1.0", &agent.socket);
    assert_eq!(keep.run("ADD", &conf).await.code, 0);
    assert_eq!(leak.run("ADD", &conf).await.code, 0);
    // A pod of `weftctl pod add`, in a namespace the agent creates.
    let weftctl_pod = unique("wcsweb");
    namespaces.adopt(&weftctl_pod);
    let socket = agent.socket.clone();
    let id = weftctl_pod.clone();
    tokio::task::spawn_blocking(move || {
        AgentClient::connect(&socket)
            .unwrap()
            .pod_add(PodAddRequest {
                id,
                create_netns: true,
                ..PodAddRequest::default()
            })
            .unwrap()
    })
    .await
    .unwrap();

    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": keep.container_id, "ifname": "eth0"}]);
    let run = run_plain("GC", &gc).await;
    run.assert_quiet_success();
    assert!(
        run.stderr.contains(&format!(
            "GC: deleted stale attachment {}/eth0",
            leak.container_id
        )),
        "{run:?}"
    );
    let mut left: Vec<String> = agent.pods.list().await.into_iter().map(|p| p.id).collect();
    left.sort();
    let mut want = vec![format!("{}/eth0", keep.container_id), weftctl_pod.clone()];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(links_in(&leak_ns), ["lo"], "the leaked TUN is gone");
    assert_eq!(links_in(&keep_ns), ["lo", "eth0"]);

    // GC without the list deletes nothing; GC needs 1.1.0.
    run_plain("GC", &conf).await.assert_error(7);
    let mut old = gc.clone();
    old["cniVersion"] = json!("1.0.0");
    run_plain("GC", &old).await.assert_error(1);
    assert_eq!(agent.pods.list().await.len(), 2);
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_precise_codes() {
    require_root();
    let agent = Agent::start("10.83.6.0/24", "10.83.6.1").await;
    let mut namespaces = Namespaces::default();
    let name = unique("wcs");
    let netns = namespaces.create(&name);
    let inv = Invocation::new(&unique("beef"), &netns);
    let conf = conf("1.0.0", &agent.socket);

    let run = inv.run_raw("ADD", b"{\"cniVersion\":".to_vec()).await;
    run.assert_error(6);
    assert!(run
        .msg()
        .starts_with("the network configuration on stdin is not valid JSON"));

    let mut old = conf.clone();
    old["cniVersion"] = json!("0.2.0");
    let run = inv.run("ADD", &old).await;
    run.assert_error(1);
    assert_eq!(
        run.msg(),
        "cniVersion \"0.2.0\" is not supported; weft-cni speaks 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"
    );

    let mut no_netns = inv.clone();
    no_netns.netns = None;
    let run = no_netns.run("ADD", &conf).await;
    run.assert_error(4);
    assert_eq!(
        run.msg(),
        "required environment variables missing: CNI_NETNS"
    );

    let mut gone = inv.clone();
    gone.netns = Some(format!("/run/netns/{}", unique("wcsnone")));
    let run = gone.run("ADD", &conf).await;
    run.assert_error(4);
    assert_eq!(
        run.msg(),
        format!(
            "CNI_NETNS {} does not exist",
            gone.netns.as_deref().unwrap()
        )
    );

    let mut host = inv.clone();
    host.netns = Some("/proc/self/ns/net".into());
    let run = host.run("ADD", &conf).await;
    run.assert_error(4);
    assert!(run
        .msg()
        .contains("weft-cni's own (the host's) network namespace"));

    let missing = cni_support::conf("1.0.0", &agent.path("nowhere.sock"));
    let run = inv.run("ADD", &missing).await;
    let e = run.assert_error(11);
    assert_eq!(
        e["msg"],
        format!(
            "weft-agent is not running (no socket at {})",
            agent.path("nowhere.sock").display()
        )
    );
    assert!(e["details"]
        .as_str()
        .unwrap()
        .starts_with("start weft-agent"));

    let mut unknown_arg = inv.clone();
    unknown_arg.args = "K8S_POD_NAME=x;FOO=bar".into();
    let run = unknown_arg.run("ADD", &conf).await;
    run.assert_error(4);
    assert!(run.msg().starts_with("CNI_ARGS: unknown arguments FOO=bar"));

    // Nothing of the failures above reached the agent.
    assert!(agent.pods.list().await.is_empty());

    // A second ADD of the same attachment.
    assert_eq!(inv.run("ADD", &conf).await.code, 0);
    let run = inv.run("ADD", &conf).await;
    let e = run.assert_error(101);
    assert_eq!(
        e["msg"],
        format!(
            "container {} already has interface eth0 on this network (10.83.6.2 in {netns})",
            inv.container_id
        )
    );
    // Another container's ADD of an interface name taken in that namespace.
    let other = Invocation::new(&unique("beef"), &netns);
    let run = other.run("ADD", &conf).await;
    run.assert_error(102);
    assert!(
        run.msg().starts_with("weft-agent: interface eth0 in"),
        "{run:?}"
    );
    assert_eq!(
        agent.pods.list().await.len(),
        1,
        "the refused ADDs left nothing"
    );

    // A CHECK without prevResult; an unknown command.
    inv.run("CHECK", &conf).await.assert_error(7);
    inv.run("FROB", &conf).await.assert_error(4);

    // VERSION answers under the configuration's version.
    let v = run_plain("VERSION", &json!({"cniVersion": "0.4.0"})).await;
    assert_eq!(v.code, 0);
    assert_eq!(
        v.json(),
        json!({"cniVersion": "0.4.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]})
    );
    inv.run("DEL", &conf).await.assert_quiet_success();
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_has_its_own_code() {
    require_root();
    // A /29: .0 network, .1 the node, .7 broadcast: five pod addresses.
    let agent = Agent::start("10.83.1.0/29", "10.83.1.1").await;
    let mut namespaces = Namespaces::default();
    let name = unique("wcs");
    let netns = namespaces.create(&name);
    let conf = conf("1.1.0", &agent.socket);
    let cid = unique("f00d");
    let mut invs = Vec::new();
    for i in 0..6 {
        let mut inv = Invocation::new(&cid, &netns);
        inv.ifname = format!("eth{i}");
        invs.push(inv);
    }
    for inv in &invs[..5] {
        assert_eq!(inv.run("ADD", &conf).await.code, 0);
    }
    let e = invs[5].run("ADD", &conf).await.assert_error(100);
    assert_eq!(
        e["msg"],
        "weft-agent: no free address in node CIDR 10.83.1.0/29: all 5 pod addresses are in use"
    );
    let run = run_plain("STATUS", &conf).await;
    run.assert_error(50);
    assert_eq!(
        run.msg(),
        "no free pod address: all 5 addresses of node CIDR 10.83.1.0/29 are in use"
    );
    invs[0].run("DEL", &conf).await.assert_quiet_success();
    run_plain("STATUS", &conf).await.assert_quiet_success();
    let r = invs[5].run("ADD", &conf).await;
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.json()["ips"][0]["address"],
        "10.83.1.2/32",
        "the freed address"
    );
    for inv in &invs[1..] {
        inv.run("DEL", &conf).await.assert_quiet_success();
    }
    assert_eq!(links_in(&name), ["lo"]);
    agent.stop().await;
}

/// The DaemonSet's ConfigMap carries the same conflist as `cni/`.
#[test]
fn the_shipped_conflists_agree() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("cni/10-weft.conflist")).unwrap())
            .unwrap();
    let yaml = std::fs::read_to_string(root.join("deploy/kubernetes/weft-agent.yaml")).unwrap();
    let block: String = yaml
        .lines()
        .skip_while(|l| l.trim() != "10-weft.conflist: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.trim_start()))
        .collect();
    let embedded: Value = serde_json::from_str(&block).expect("the ConfigMap's conflist is JSON");
    assert_eq!(embedded, file);
    assert_eq!(
        file["plugins"][0]["type"], "weft-cni",
        "weft-cni comes first"
    );
}
