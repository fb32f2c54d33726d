//! `weftctl apply / get / delete / label` against a real control plane over
//! TLS: kubectl's output lines, tables, `-o json|yaml|name|wide`, `-l`,
//! `-A`, standard input and directories, and refusals naming the file.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use clap::Parser;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn weftctl(config: &Path, args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weftctl runs");
    {
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const SHOP: &str = "\
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
";

const POLICY: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
 "metadata": {"name": "deny-all"},
 "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}"#;

fn cells(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_label_delete() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cp");
    let settings = weft_control_plane::config::Config::try_parse_from([
        "weft-control-plane",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ])
    .unwrap()
    .validate()
    .unwrap();
    let cp = weft_control_plane::server::spawn(settings).await.unwrap();
    let conf = cp.admin_conf();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("shop.yaml"), SHOP).unwrap();
    std::fs::write(
        manifests.join("bad.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: shop}\nspec:\n  ports: [{port: 70000, targetPort: 80}]\n",
    )
    .unwrap();
    let m = manifests.clone();

    tokio::task::spawn_blocking(move || {
        let shop = m.join("shop.yaml");
        let shop = shop.to_str().unwrap();
        let run = |args: &[&str]| weftctl(&conf, args, None);

        // apply: kubectl's lines; again: unchanged; from stdin, into -n.
        let o = run(&["apply", "-f", shop]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(o.stdout, "namespace/shop created\nservice/web created\n");
        let o = run(&["apply", "-f", shop]);
        assert_eq!(o.stdout, "namespace/shop unchanged\nservice/web unchanged\n");
        let o = weftctl(&conf, &["apply", "-n", "shop", "-f", "-"], Some(POLICY));
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(o.stdout, "networkpolicy/deny-all created\n");

        // A refusal names the file and keeps Kubernetes' wording; nothing
        // of it is stored.
        let bad = m.join("bad.yaml");
        let o = run(&["apply", "-f", shop, "-f", bad.to_str().unwrap()]);
        assert_eq!(o.code, 1);
        assert!(
            o.stderr.contains(&format!(
                r#"{}: Service "bad" is invalid: spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"#,
                bad.display()
            ))
                && o.stderr.contains("InvalidArgument"),
            "{}",
            o.stderr
        );
        assert_eq!(run(&["get", "svc", "bad", "-n", "shop"]).code, 1);
        let o = weftctl(&conf, &["apply", "-f", "-"], Some("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {portz: []}\n"));
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains(r#"-: document 0: strict decoding error: unknown field "spec.portz""#), "{}", o.stderr);

        // get: tables, one object as JSON and YAML, names, selectors.
        let o = run(&["get", "svc", "-n", "shop"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(cells(lines[0]), ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
        let row = cells(lines[1]);
        assert_eq!(&row[..2], ["web", "NodePort"]);
        assert!(row[3] == "<none>" && row[4].starts_with("80:3") && row[4].ends_with("/TCP"), "{row:?}");
        let o = run(&["get", "service", "web", "-n", "shop", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        let ip = v["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.9") || ip.starts_with("10.10") || ip.starts_with("10.11"), "{ip}");
        assert_eq!(v["kind"], "Service");
        assert_eq!(row[2], ip);
        let o = run(&["get", "svc", "web", "-n", "shop", "-o", "yaml"]);
        assert!(o.stdout.contains(&format!("clusterIP: {ip}")), "{}", o.stdout);
        assert!(o.stdout.starts_with("apiVersion: v1\n"), "{}", o.stdout);
        let o = run(&["get", "ns", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
        assert_eq!(v["kind"], "List");
        let names: Vec<&str> = v["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["default", "kube-system", "shop"]);
        let o = run(&["get", "all-the-things"]);
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains("doesn't have a resource type \"all-the-things\""), "{}", o.stderr);
        let o = run(&["get", "netpol", "-A"]);
        let lines: Vec<&str> = o.stdout.lines().collect();
        assert_eq!(cells(lines[0]), ["NAMESPACE", "NAME", "POD-SELECTOR", "AGE"]);
        assert_eq!(&cells(lines[1])[..3], ["shop", "deny-all", "<none>"]);
        let o = run(&["get", "svc", "-A", "-l", "app=web", "-o", "wide"]);
        assert!(o.stdout.lines().nth(1).unwrap().ends_with("app=web"), "{}", o.stdout);
        let o = run(&["get", "endpointslices", "-n", "shop", "-o", "name"]);
        assert!(o.stdout.starts_with("endpointslice/web-"), "{}", o.stdout);

        // label: set, refuse overwrite, overwrite, remove.
        let o = run(&["label", "svc", "web", "-n", "shop", "tier=fe"]);
        assert_eq!((o.code, o.stdout.as_str()), (0, "service/web labeled\n"), "{}", o.stderr);
        let o = run(&["label", "svc/web", "-n", "shop", "tier=be"]);
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains("'tier' already has a value (fe), and --overwrite is false"), "{}", o.stderr);
        let o = run(&["label", "svc", "web", "-n", "shop", "tier=be", "app-", "--overwrite"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        let o = run(&["get", "svc", "-A", "-l", "tier=be", "-o", "name"]);
        assert_eq!(o.stdout, "service/web\n");
        assert_eq!(run(&["get", "svc", "-A", "-l", "app=web", "-o", "name"]).stdout, "");

        // apply again merges (kubectl's last-applied-configuration): the
        // manifest's app=web returns, the label set by `label` stays.
        let o = run(&["apply", "-f", shop]);
        assert_eq!(o.stdout, "namespace/shop unchanged\nservice/web configured\n", "{}", o.stderr);
        let o = run(&["get", "svc", "-A", "-l", "tier=be,app=web", "-o", "name"]);
        assert_eq!(o.stdout, "service/web\n", "{}", o.stderr);
        let o = run(&["apply", "-f", shop]);
        assert_eq!(o.stdout, "namespace/shop unchanged\nservice/web unchanged\n");

        // delete: by kind and name, by file; then nothing is found.
        let o = run(&["delete", "netpol", "deny-all", "-n", "shop"]);
        assert_eq!(o.stdout, "networkpolicy \"deny-all\" deleted\n", "{}", o.stderr);
        let o = run(&["delete", "netpol", "deny-all", "-n", "shop"]);
        assert_eq!(o.code, 1);
        assert!(o.stderr.contains(r#"networkpolicies "deny-all" not found"#), "{}", o.stderr);
        assert_eq!(run(&["delete", "netpol", "deny-all", "-n", "shop", "--ignore-not-found"]).code, 0);
        let o = run(&["delete", "-f", shop]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(o.stdout, "namespace \"shop\" deleted\nservice \"web\" deleted\n");
        let o = run(&["get", "svc", "-n", "shop"]);
        assert_eq!((o.code, o.stdout.as_str()), (0, ""));
        assert_eq!(o.stderr.trim(), "No resources found in shop namespace.");
        let o = run(&["get", "nodes"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(o.stderr.trim(), "No resources found");
    })
    .await
    .unwrap();
    cp.stop().await.unwrap();
}
