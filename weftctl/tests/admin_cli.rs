//! The `weftctl` binary against a real control plane over TLS: tokens,
//! nodes, cluster info, `-o json`, and its errors.

use std::process::Command;

use clap::Parser;

/// `weftctl ARGS... --config CONFIG`.
fn weftctl(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("weftctl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_nodes_and_cluster_info() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap().to_string();
    let settings = weft_control_plane::config::Config::try_parse_from([
        "weft-control-plane",
        "--listen",
        "127.0.0.1:0",
        "--state-dir",
        &state,
    ])
    .unwrap()
    .validate()
    .unwrap();
    let cp = weft_control_plane::server::spawn(settings).await.unwrap();
    let conf = cp.admin_conf();

    // token create prints a complete join command.
    let c = conf.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        weftctl(&c, &["token", "create", "--ttl", "1h", "--usages", "2"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains("weft-agent"))
        .expect("join command printed");
    let words: Vec<&str> = line.split_whitespace().collect();
    let arg = |flag: &str| words[words.iter().position(|w| *w == flag).unwrap() + 1].to_string();
    assert_eq!(arg("--control-plane"), cp.addr.to_string());
    let token = arg("--token");
    let hash = arg("--ca-hash");
    assert!(hash.starts_with("sha256:") && hash.len() == 71, "{hash}");

    // The printed token and hash really join a node.
    let (key_pem, csr) = weft_client::generate_csr("n1").unwrap();
    let _ = key_pem;
    let (ch, _) = weft_client::connect_pinned(&cp.addr.to_string(), &hash)
        .await
        .unwrap();
    weft_proto::v1::cluster_client::ClusterClient::new(ch)
        .join(weft_proto::v1::JoinRequest {
            token: token.clone(),
            node_name: "n1".into(),
            public_key: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [1u8; 32],
            ),
            endpoints: vec!["192.0.2.7:51820".into()],
            labels: Default::default(),
            csr_pem: csr,
        })
        .await
        .unwrap();

    let c = conf.clone();
    let (nodes, json, tokens, tokens_json, info, revoke, revoke_again, remove, missing) =
        tokio::task::spawn_blocking(move || {
            let id = token.split('.').next().unwrap().to_string();
            (
                weftctl(&c, &["nodes"]),
                weftctl(&c, &["nodes", "-o", "json"]),
                weftctl(&c, &["token", "list"]),
                weftctl(&c, &["token", "list", "-o", "json"]),
                weftctl(&c, &["cluster", "info", "-o", "json"]),
                weftctl(&c, &["token", "revoke", &id]),
                weftctl(&c, &["token", "revoke", "nosuch"]),
                weftctl(&c, &["node", "remove", "n1"]),
                weftctl(&c, &["node", "remove", "n1"]),
            )
        })
        .await
        .unwrap();
    assert_eq!(nodes.0, 0, "{}", nodes.2);
    let header = nodes.1.lines().next().unwrap();
    for col in ["NAME", "POD CIDR", "ENDPOINT", "KEY", "STATE", "LEASE AGE"] {
        assert!(header.contains(col), "{header}");
    }
    let row = nodes.1.lines().nth(1).unwrap();
    assert!(
        row.starts_with("n1")
            && row.contains("10.244.0.0/24")
            && row.contains("192.0.2.7:51820")
            && row.contains("Ready"),
        "{row}"
    );
    let v: serde_json::Value = serde_json::from_str(&json.1).unwrap();
    assert_eq!(v[0]["name"], "n1");
    assert_eq!(v[0]["pod_cidr"], "10.244.0.0/24");
    assert!(tokens.1.contains("active"), "{}", tokens.1);
    let t: serde_json::Value = serde_json::from_str(&tokens_json.1).unwrap();
    assert_eq!(t[0]["used"], 1);
    assert_eq!(t[0]["usages_left"], 1);
    let i: serde_json::Value = serde_json::from_str(&info.1).unwrap();
    assert_eq!(i["nodes_total"], 1);
    assert_eq!(i["cluster_cidr"], "10.244.0.0/16");
    assert_eq!(revoke.0, 0, "{}", revoke.2);
    assert_ne!(revoke_again.0, 0);
    assert!(
        revoke_again.2.contains("no join token"),
        "{}",
        revoke_again.2
    );
    assert_eq!(remove.0, 0, "{}", remove.2);
    assert!(remove.1.contains("10.244.0.0/24"), "{}", remove.1);
    assert_ne!(missing.0, 0);
    assert!(missing.2.contains("no node named"), "{}", missing.2);
    cp.stop().await.unwrap();
}

#[test]
fn a_missing_config_says_where_to_find_admin_conf() {
    let (code, _, err) = weftctl(std::path::Path::new("/nonexistent/admin.conf"), &["nodes"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/admin.conf") && err.contains("--state-dir"),
        "{err}"
    );
    // One line, and the cause once (not "...(os error 2): ...(os error 2)").
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.matches("/nonexistent/admin.conf").count(), 1, "{err}");
}

/// Out-of-range token flags are refused before anything is contacted, with
/// the allowed range.
#[test]
fn token_flags_state_their_range() {
    let conf = std::path::Path::new("/nonexistent/admin.conf");
    let (code, _, err) = weftctl(conf, &["token", "create", "--ttl", "0"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a token lives from 1s to 365d"), "{err}");
    let (code, _, err) = weftctl(conf, &["token", "create", "--usages", "-1"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("\"-1\" is not a number of nodes from 0 (unlimited) to 4294967295"),
        "{err}"
    );
}

/// `--config` is offered by the admin commands only.
#[test]
fn config_is_an_admin_flag_only() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
            .args(args)
            .arg("--help")
            .output()
            .expect("weftctl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for admin in [
        &["token", "create"][..],
        &["nodes"],
        &["node", "remove"],
        &["cluster", "info"],
        &["apply"],
        &["get"],
        &["delete"],
        &["label"],
        &["explain"],
    ] {
        assert!(help(admin).contains("--config"), "{admin:?}");
    }
    for other in [
        &["pod", "add"][..],
        &["status"],
        &["lab", "up"],
        &["lab", "status"],
    ] {
        assert!(!help(other).contains("--config"), "{other:?}");
    }
}

/// Without --config or WEFT_CONFIG, weftctl reads the default path; when
/// that is missing, the cause shows once.
#[test]
fn no_config_at_all_names_the_cause_once() {
    let out = Command::new(env!("CARGO_BIN_EXE_weftctl"))
        .env_remove("WEFT_CONFIG")
        .args(["token", "list"])
        .output()
        .expect("weftctl runs");
    let err = String::from_utf8_lossy(&out.stderr);
    if std::path::Path::new("/var/lib/weft/control-plane/admin.conf").exists() {
        // A machine with a real control plane: nothing to see here.
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "{err}");
    assert!(
        err.contains("/var/lib/weft/control-plane/admin.conf"),
        "{err}"
    );
}

/// A control plane that is not there: the server and the cause, once each.
#[test]
fn an_unreachable_control_plane_names_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = weft_control_plane::pki::Pki::load_or_create(dir.path(), &[]).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    drop(closed);
    let creds = pki.issue_admin_credentials(&addr).unwrap();
    let conf = dir.path().join("admin.conf");
    creds.save(&conf).unwrap();
    let (code, _, err) = weftctl(&conf, &["nodes"]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.matches(&addr).count(), 1, "{err}");
    assert_eq!(err.matches("(os error 111)").count(), 1, "{err}");
}
