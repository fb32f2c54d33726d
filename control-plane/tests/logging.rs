//! What a caller can do to the control plane's log (issue 10, item 5),
//! against the real binary, reading its stderr: Joins with a ~4 MB name
//! grow the log by a few hundred bytes each, not megabytes, and a newline
//! in a name cannot start a forged log line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weft_client::Credentials;
use weft_proto::v1::admin_client::AdminClient;
use weft_proto::v1::cluster_client::ClusterClient;
use weft_proto::v1::{CreateTokenRequest, JoinRequest};

/// The control-plane binary, killed (by its PID) when dropped.
struct Server {
    child: Child,
    log: PathBuf,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(state: &Path) -> Server {
    let log = state.with_extension("log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_weft-control-plane"))
        .args(["--listen", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .env("WEFT_LOG", "info")
        .env_remove("WEFT_LOG_JSON")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        log,
        addr: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.addr.is_empty() {
        assert!(Instant::now() < deadline, "the control plane did not start");
        std::thread::sleep(Duration::from_millis(50));
        let text = std::fs::read_to_string(&server.log).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains("control plane serving")) {
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .unwrap();
            server.addr = addr.to_string();
        }
    }
    server
}

fn log_len(s: &Server) -> u64 {
    std::fs::metadata(&s.log).unwrap().len()
}

fn log_lines(s: &Server) -> Vec<String> {
    let f = std::fs::File::open(&s.log).unwrap();
    BufReader::new(f).lines().map(Result::unwrap).collect()
}

/// A token and the CA hash, through the admin credential.
async fn token(s: &Server, state: &Path) -> (String, String) {
    let mut creds = Credentials::load(state.join("admin.conf")).unwrap();
    // admin.conf names the advertise address, here 127.0.0.1:0.
    creds.server = s.addr.clone();
    let mut admin = AdminClient::new(weft_client::connect(&creds).await.unwrap());
    let r = admin
        .create_token(CreateTokenRequest {
            ttl_seconds: 600,
            usages: 0,
            description: "log test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    (r.token_string, r.ca_cert_hash)
}

async fn join(s: &Server, hash: &str, token: &str, name: &str) -> tonic::Status {
    let (ch, _) = weft_client::connect_pinned(&s.addr, hash).await.unwrap();
    let (_, csr) = weft_client::generate_csr("x").unwrap();
    ClusterClient::new(ch)
        .join(JoinRequest {
            token: token.into(),
            node_name: name.into(),
            public_key: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [1u8; 32],
            ),
            endpoints: vec!["192.0.2.1:51820".into()],
            labels: Default::default(),
            csr_pem: csr,
        })
        .await
        .unwrap_err()
}

/// Let the server's log writes land.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn huge_names_with_bad_tokens_do_not_grow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cp");
    let s = start(&state);
    let (_, hash) = token(&s, &state).await;
    settle().await;
    let before = log_len(&s);
    let name = "n".repeat(4_000_000);
    for bad_token in ["abcdef.0123456789abcdef", "not-a-token"] {
        for _ in 0..5 {
            let e = join(&s, &hash, bad_token, &name).await;
            assert!(
                matches!(
                    e.code(),
                    tonic::Code::InvalidArgument | tonic::Code::Unauthenticated
                ),
                "{e:?}"
            );
            assert!(e.message().len() < 400, "{} bytes", e.message().len());
        }
    }
    settle().await;
    let grown = log_len(&s) - before;
    // Ten refusals: a line each, the name shown as 64 characters.
    assert!(grown < 8 * 1024, "the log grew by {grown} bytes");
    assert!(
        log_lines(&s)
            .iter()
            .any(|l| l.contains("join refused") && l.contains("(4000000 bytes)")),
        "the refusals are logged, with the name cut short"
    );
}

#[tokio::test]
async fn a_newline_in_a_name_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("cp");
    let s = start(&state);
    let (tok, hash) = token(&s, &state).await;
    let forged =
        "2099-01-01T00:00:00.000000Z  INFO weft_control_plane::server: admin credential rotated";
    for t in [tok.as_str(), "abcdef.0123456789abcdef", "bad"] {
        let e = join(&s, &hash, t, &format!("x\n{forged}\r\n{forged}")).await;
        assert_ne!(e.code(), tonic::Code::Ok);
    }
    settle().await;
    let lines = log_lines(&s);
    assert!(
        !lines.iter().any(|l| l.starts_with("2099-01-01")),
        "a forged line: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("\\n2099-01-01")),
        "the name is logged escaped: {lines:#?}"
    );
}
