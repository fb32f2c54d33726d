//! `weftctl explain` against a real control plane over TLS: two joined
//! nodes register pods, policies go in with `weftctl apply -f`, and explain
//! prints the verdict of each direction and the policy and rule that
//! decided; unknown pods and namespaces and bad syntax are refused with
//! weftctl's exit codes; invalid policies are refused at apply.

use std::path::Path;
use std::process::Command;

use clap::Parser;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, JoinRequest, RegisterPodRequest};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn weftctl(config: &Path, args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("weftctl runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Joins `name` and returns a Cluster client with its node credential and
/// its pod CIDR's first three octets (`10.244.N`).
async fn join(
    cp: &weft_control_plane::server::Running,
    token: &str,
    hash: &str,
    name: &str,
    seed: u8,
) -> (ClusterClient<tonic::transport::Channel>, String) {
    let (key_pem, csr) = weft_client::generate_csr(name).unwrap();
    let (ch, _) = weft_client::connect_pinned(&cp.addr.to_string(), hash)
        .await
        .unwrap();
    let r = ClusterClient::new(ch)
        .join(JoinRequest {
            token: token.into(),
            node_name: name.into(),
            public_key: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [seed; 32],
            ),
            endpoints: vec![format!("192.0.2.{seed}:51820")],
            labels: Default::default(),
            csr_pem: csr,
        })
        .await
        .unwrap()
        .into_inner();
    let cidr = r.node.unwrap().pod_cidr;
    let prefix = cidr.rsplit_once('.').unwrap().0.to_string();
    let creds = weft_client::Credentials {
        server: cp.addr.to_string(),
        ca_pem: r.ca_pem,
        cert_pem: r.certificate_pem,
        key_pem,
        name: name.into(),
    };
    let client = ClusterClient::new(weft_client::connect(&creds).await.unwrap());
    (client, prefix)
}

fn pod_json(ns: &str, name: &str, node: &str, app: &str, ip: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "main",
            "ports": [{"name": "pg", "containerPort": 5432, "protocol": "TCP"}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }))
    .unwrap()
}

const POLICIES: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {matchLabels: {app: web}}
    ports:
    - port: pg
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 192.0.2.0/24}
    ports:
    - {protocol: UDP, port: 53}
  - to:
    - podSelector: {matchLabels: {app: db}}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_against_a_control_plane() {
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

    let creds = weft_client::Credentials::load(&conf).unwrap();
    let t = AdminClient::new(weft_client::connect(&creds).await.unwrap())
        .create_token(CreateTokenRequest {
            ttl_seconds: 600,
            usages: 2,
            description: "explain test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let (n1, p1) = join(&cp, &t.token_string, &t.ca_cert_hash, "n1", 1).await;
    let (n2, p2) = join(&cp, &t.token_string, &t.ca_cert_hash, "n2", 2).await;
    let web_ip = format!("{p1}.10");
    let db_ip = format!("{p2}.11");
    let tool_ip = format!("{p2}.12");
    for (client, ns, name, node, app, ip) in [
        (&n1, "shop", "web", "n1", "web", &web_ip),
        (&n2, "shop", "db", "n2", "db", &db_ip),
        (&n2, "ops", "tool", "n2", "tool", &tool_ip),
    ] {
        client
            .clone()
            .register_pod(RegisterPodRequest {
                pod: pod_json(ns, name, node, app, ip).into(),
            })
            .await
            .unwrap();
    }
    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, POLICIES).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n    ports:\n    - {protocol: SCTP, port: 80, endPort: 70}\n",
    )
    .unwrap();

    let (web, db, tool) = (web_ip.clone(), db_ip.clone(), tool_ip.clone());
    tokio::task::spawn_blocking(move || {
        // Before any policy: allowed by default both ways.
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "shop/db", "--port", "5432/TCP"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(
            o.stdout,
            format!(
                "shop/web ({web}) -> shop/db ({db}) port 5432/TCP: allowed\n  \
                 egress  (shop/web on node n1): allowed: no policy selects the source for egress: allowed by default\n  \
                 ingress (shop/db on node n2): allowed: no policy selects the destination for ingress: allowed by default\n"
            )
        );

        let o = weftctl(&conf, &["apply", "-f", policies.to_str().unwrap()]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(
            o.stdout,
            "networkpolicy/db-from-web created\nnetworkpolicy/web-out created\n"
        );

        // The named port resolves on db; egress allowed by web-out's
        // second rule, ingress by db-from-web's only rule.
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "shop/db", "--port", "5432/TCP"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert_eq!(
            o.stdout,
            format!(
                "shop/web ({web}) -> shop/db ({db}) port 5432/TCP: allowed\n  \
                 egress  (shop/web on node n1): allowed by networkpolicy shop/web-out, rule spec.egress[1]\n  \
                 ingress (shop/db on node n2): allowed by networkpolicy shop/db-from-web, rule spec.ingress[0]\n"
            )
        );
        // Another port: db's ingress denies (exit 0: a verdict, not an error).
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "shop/db", "--port", "80"]);
        assert_eq!(o.code, 0, "{}", o.stderr);
        assert!(o.stdout.starts_with(&format!("shop/web ({web}) -> shop/db ({db}) port 80/TCP: denied\n")), "{}", o.stdout);
        assert!(o.stdout.contains("ingress (shop/db on node n2): denied: isolated for ingress by networkpolicy shop/db-from-web and no rule allows this"), "{}", o.stdout);
        // A pod of another namespace: podSelector alone is shop's pods only.
        let o = weftctl(&conf, &["explain", "--from", "ops/tool", "--to", "shop/db", "--port", "5432/TCP"]);
        assert!(o.stdout.starts_with(&format!("ops/tool ({tool}) -> shop/db ({db}) port 5432/TCP: denied\n")), "{}", o.stdout);
        // To an address outside the pods: egress by the ipBlock rule, no
        // ingress side.
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "192.0.2.53", "--port", "53/UDP"]);
        assert_eq!(
            o.stdout,
            format!(
                "shop/web ({web}) -> 192.0.2.53 (192.0.2.53) port 53/UDP: allowed\n  \
                 egress  (shop/web on node n1): allowed by networkpolicy shop/web-out, rule spec.egress[0]\n  \
                 ingress: allowed: the destination is not a pod, no ingress policy applies\n"
            )
        );
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "192.0.2.53", "--port", "53/TCP"]);
        assert!(o.stdout.contains("denied: isolated for egress by networkpolicy shop/web-out"), "{}", o.stdout);
        // db's address is judged as db.
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", &db, "--port", "5432/TCP"]);
        assert!(o.stdout.contains("ingress (shop/db on node n2): allowed by networkpolicy shop/db-from-web"), "{}", o.stdout);

        // Errors: unknown pod and namespace (exit 1), syntax (exit 2).
        let o = weftctl(&conf, &["explain", "--from", "shop/nope", "--to", "shop/db", "--port", "80/TCP"]);
        assert_eq!(o.code, 1);
        assert_eq!(o.stderr, "weftctl: pods \"nope\" not found in namespace \"shop\"\n");
        let o = weftctl(&conf, &["explain", "--from", "shop/web", "--to", "nons/db", "--port", "80/TCP"]);
        assert_eq!(o.code, 1);
        assert_eq!(o.stderr, "weftctl: namespaces \"nons\" not found\n");
        for (flag, value, message) in [
            ("--port", "http/TCP", "the port must be a number from 1 to 65535"),
            ("--port", "80/SCTP", "weft does not support SCTP"),
            ("--port", "80/ICMP", "the protocol must be TCP or UDP"),
            ("--from", "web", "name the pod as NAMESPACE/POD"),
            ("--to", "db", "give NAMESPACE/POD or an IP address"),
        ] {
            let mut args = vec!["explain", "--from", "shop/web", "--to", "shop/db", "--port", "80/TCP"];
            let at = args.iter().position(|a| *a == flag).unwrap();
            args[at + 1] = value;
            let o = weftctl(&conf, &args);
            assert_eq!(o.code, 2, "{flag} {value}: {}", o.stderr);
            assert!(o.stderr.contains(message), "{flag} {value}: {}", o.stderr);
        }

        // Invalid policies are refused at apply with every field error.
        let o = weftctl(&conf, &["apply", "-f", bad.to_str().unwrap()]);
        assert_eq!(o.code, 1);
        for part in [
            "NetworkPolicy.networking.k8s.io \"bad\" is invalid",
            "spec.ingress[0].ports[0].protocol: Unsupported value: \"SCTP\": weft does not support SCTP",
            "spec.ingress[0].ports[0].endPort: Invalid value: 70: must be greater than or equal to `port`",
            "spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: \"192.168.0.0/16\": must be a strict subset of `cidr`",
        ] {
            assert!(o.stderr.contains(part), "{part}: {}", o.stderr);
        }
        assert_eq!(weftctl(&conf, &["get", "netpol", "bad", "-n", "shop"]).code, 1);
    })
    .await
    .unwrap();
    cp.stop().await.unwrap();
}
