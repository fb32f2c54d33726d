//! The lab and the cluster's objects, through the `weftctl` binary: `lab
//! pod add` with labels and named ports on two nodes, `weftctl --lab apply`
//! of a Service selecting them, `weftctl --lab get endpointslices` showing
//! both pods within a second, `lab exec` into a pod by its name, the
//! outside host `ext` reaching a node, `lab pod del` unregistering a pod,
//! and `--lab` refusing what it cannot do.
//!
//! Needs root, and fails without it. The lab's name carries this test
//! process's pid; the lab is torn down (processes, namespaces, state) by a
//! guard even when the test fails.

use std::path::Path;
use std::time::{Duration, Instant};

mod lab_support;

use lab_support::{fails, ok, require_root, WEFTCTL};
use serde_json::Value;
use weft_lab::{
    build_binaries_once, list_namespaces, ClusterGuard, ClusterSpec, DEFAULT_STATE_ROOT,
};

/// How long the EndpointSlices may take to show a Service's pods.
const ENDPOINTS_WITHIN: Duration = Duration::from_secs(1);

/// Every (address, port) of the EndpointSlices of `-o json` output.
fn endpoints(list: &Value) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for slice in list["items"].as_array().into_iter().flatten() {
        let port = slice["ports"][0]["port"].as_i64().unwrap_or(0);
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            for a in e["addresses"].as_array().into_iter().flatten() {
                out.push((a.as_str().unwrap_or_default().to_string(), port));
            }
        }
    }
    out.sort();
    out
}

const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: http
";

#[test]
fn labelled_pods_a_service_its_endpoints_and_the_outside_host() {
    require_root();
    let dir = Path::new(WEFTCTL).parent().expect("a directory");
    let binaries =
        build_binaries_once(dir).unwrap_or_else(|e| panic!("cannot build the lab's binaries: {e}"));
    let mut spec = ClusterSpec::new(&format!("ob{}", std::process::id()), 2, 1).unwrap();
    spec.binaries = Some(binaries);
    let cluster = ClusterGuard::up(spec).unwrap();
    let name = cluster.name().to_string();
    let lab = format!("--lab={name}");
    let ext = cluster.external().expect("lab up adds ext").clone();
    assert_eq!(ext.ns, format!("weft-{name}-ext"));
    assert_eq!(ext.address.addr().to_string(), "192.0.2.254");

    // Labelled pods with a named port on two nodes; each is registered when
    // the command returns.
    for (pod, node) in [("shop/web-1", "n1"), ("shop/web-2", "n2")] {
        let out = ok(&[
            "lab",
            "pod",
            "add",
            "--name",
            &name,
            pod,
            "--node",
            node,
            "--label",
            "app=web",
            "--label",
            "tier=fe",
            "--port",
            "http=8080/TCP",
        ]);
        assert!(
            out.starts_with(&format!("pod {pod} added to {node} as {node}-p2: "))
                && out
                    .trim_end()
                    .ends_with("registered with the control plane"),
            "{out}"
        );
    }
    // A second pod of that name, a bad label, a node the lab lacks: refused.
    let err = fails(&[
        "lab",
        "pod",
        "add",
        "--name",
        &name,
        "shop/web-1",
        "--node",
        "n2",
    ]);
    assert!(err.contains("has a pod shop/web-1 already"), "{err}");
    let err = fails(&[
        "lab",
        "pod",
        "add",
        "--name",
        &name,
        "shop/x",
        "--node",
        "n1",
        "--label=-x=1",
    ]);
    assert!(err.contains("labels: Invalid value: \"-x\""), "{err}");
    let err = fails(&[
        "lab", "pod", "add", "--name", &name, "shop/x", "--node", "n9",
    ]);
    assert!(err.contains("has no node \"n9\""), "{err}");

    // The control plane has them as registered: labels, node, named port.
    let pods: Value =
        serde_json::from_str(&ok(&[&lab, "get", "pods", "-n", "shop", "-o", "json"])).unwrap();
    let items = pods["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{pods}");
    // The CLI added them: a fresh handle reads them from lab.json.
    let fresh = weft_lab::Cluster::open(cluster.name(), Path::new(DEFAULT_STATE_ROOT)).unwrap();
    let ip = |pod: &str| fresh.pod(pod).unwrap().ip.to_string();
    assert_eq!(fresh.pod("shop/web-2").unwrap().name, "n2-p2");
    assert_eq!(fresh.pod("n2-p2").unwrap().labels["app"], "web");
    for (item, (pod, node)) in items
        .iter()
        .zip([("shop/web-1", "n1"), ("shop/web-2", "n2")])
    {
        assert_eq!(item["metadata"]["labels"]["app"], "web");
        assert_eq!(item["spec"]["nodeName"], node);
        assert_eq!(item["spec"]["containers"][0]["ports"][0]["name"], "http");
        assert_eq!(item["status"]["podIP"], ip(pod).as_str());
    }
    // `--lab` before the command with a space, too; the lab's own pods are
    // registered in `default`.
    let all = ok(&["--lab", &name, "get", "pods", "-A"]);
    assert!(all.contains("n1-p1") && all.contains("web-2"), "{all}");

    // A Service selecting them: its EndpointSlice shows both pods, with the
    // named port resolved, within a second.
    let manifest = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(manifest.path(), SERVICE).unwrap();
    let file = manifest.path().to_str().unwrap();
    let out = ok(&[&lab, "apply", "-f", file]);
    assert_eq!(out, "service/web created\n");
    let applied = Instant::now();
    let want = {
        let mut w = vec![(ip("shop/web-1"), 8080), (ip("shop/web-2"), 8080)];
        w.sort();
        w
    };
    loop {
        let list: Value = serde_json::from_str(&ok(&[
            &lab,
            "get",
            "endpointslices",
            "-n",
            "shop",
            "-o",
            "json",
        ]))
        .unwrap();
        let seen = endpoints(&list);
        if seen == want {
            break;
        }
        assert!(
            applied.elapsed() < ENDPOINTS_WITHIN,
            "the EndpointSlices did not show both pods within {ENDPOINTS_WITHIN:?}: {seen:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let table = ok(&[&lab, "get", "endpointslices", "-n", "shop"]);
    assert!(
        table.contains(&ip("shop/web-1")) && table.contains("8080"),
        "{table}"
    );

    // exec into a pod by its name in the cluster.
    let out = ok(&[
        "lab",
        "exec",
        "--name",
        &name,
        "shop/web-1",
        "--",
        "ip",
        "-o",
        "addr",
        "show",
        "dev",
        "eth0",
    ]);
    assert!(out.contains(&format!("{}/32", ip("shop/web-1"))), "{out}");

    // The outside host is on the underlay, and reaches a node's address.
    let n1 = cluster.node("n1").unwrap().underlay.to_string();
    ok(&[
        "lab", "exec", "--name", &name, "ext", "--", "ping", "-c", "1", "-W", "5", &n1,
    ]);
    let status = ok(&["lab", "status", "--name", &name]);
    assert!(
        status.contains("OUTSIDE HOST") && status.contains("192.0.2.254"),
        "{status}"
    );
    assert!(
        status.contains("shop/web-1") && status.contains("app=web,tier=fe"),
        "{status}"
    );

    // pod del: the pod goes from the node, the lab and the control plane,
    // and so from the Service's endpoints.
    let out = ok(&["lab", "pod", "del", "--name", &name, "shop/web-2"]);
    assert!(out.contains("the control plane no longer has it"), "{out}");
    assert!(!Path::new("/run/netns")
        .join(format!("weft-{name}-n2-p2"))
        .exists());
    let pods: Value =
        serde_json::from_str(&ok(&[&lab, "get", "pods", "-n", "shop", "-o", "json"])).unwrap();
    let names: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web-1"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Value = serde_json::from_str(&ok(&[
            &lab,
            "get",
            "endpointslices",
            "-n",
            "shop",
            "-o",
            "json",
        ]))
        .unwrap();
        if endpoints(&list) == [(ip("shop/web-1"), 8080)] {
            break;
        }
        assert!(Instant::now() < deadline, "web-2 still an endpoint: {list}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = fails(&["lab", "pod", "del", "--name", &name, "shop/web-2"]);
    assert!(err.contains("has no pod \"shop/web-2\""), "{err}");

    // --lab is for admin commands, and for labs that are up.
    let err = fails(&[&lab, "pod", "list"]);
    assert!(err.contains("--lab is for admin commands"), "{err}");
    let err = fails(&["--lab=nolab", "get", "pods"]);
    assert!(err.contains("lab 'nolab' is not up"), "{err}");

    cluster.down().unwrap();
    let left: Vec<String> = list_namespaces()
        .unwrap()
        .into_iter()
        .filter(|ns| ns.starts_with(&format!("weft-{name}-")))
        .collect();
    assert!(left.is_empty(), "namespaces left: {left:?}");
    assert!(!Path::new(DEFAULT_STATE_ROOT).join(&name).exists());
}
