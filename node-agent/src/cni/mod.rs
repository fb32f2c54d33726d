//! `weft-cni`: the CNI plugin (spec 1.1.0, and 0.3.0 to 1.0.0) that
//! container runtimes (containerd, CRI-O, via kubelet) call to give a pod
//! its network. It asks the node's `weft-agent` over the local API socket;
//! the agent does the work (an address from the node CIDR, a persistent TUN
//! in the pod's namespace, routes, MTU, the data plane).
//!
//! Contract (`docs/cni.md` for operators):
//! - An attachment `(CNI_CONTAINERID, CNI_IFNAME)` is the agent's pod
//!   `<container-id>/<ifname>`, in the namespace `CNI_NETNS`, with the
//!   Kubernetes namespace and name from `CNI_ARGS`.
//! - `ADD` refuses an attachment that exists already (code 101: the spec
//!   says the interface must not exist), a `CNI_NETNS` that is not a
//!   network namespace, or is weft-cni's own (code 4), and says "try again
//!   later" (11) when the agent is not running. Its result is described in
//!   `result.rs`.
//! - `DEL` always succeeds once the invocation parses: a missing agent, an
//!   unknown attachment, a namespace that is gone are all fine.
//! - `CHECK` compares the agent's record, `prevResult` and the interface
//!   in the namespace (up, address, weft's default route), and the data
//!   plane attachment.
//! - `STATUS` fails with 50 when the agent is not running, has not joined,
//!   or has no free address, and 51 when its data plane is down.
//! - `GC` deletes every weft-cni attachment not in
//!   `cni.dev/valid-attachments`, never a pod that `weftctl pod add` made.
//! - `VERSION` answers under the configuration's version (or 1.1.0).
//! - Errors are the spec's JSON on stdout with exit status 1; log lines go
//!   to stderr. Nothing panics on any input.
//!
//! The parts: [`request`] parses the invocation (its [`env`] and
//! [`config`]), [`version`] negotiates, [`result`] builds and reads
//! results, [`error`] holds the codes and maps the agent's errors; all
//! pure. [`commands`] carries out each command over
//! the [`commands::Agent`] and [`commands::System`] seams, which [`shell`]
//! implements with the blocking agent client and the kernel.

pub mod commands;
pub mod config;
pub mod env;
pub mod error;
pub mod request;
pub mod result;
pub mod shell;
pub mod version;

#[cfg(test)]
mod fake;

use serde_json::json;

pub use commands::{Agent, NetnsProblem, System};
pub use env::CniEnv;
pub use error::{code, CniError};
pub use request::Request;
pub use version::{CniVersion, SUPPORTED};

/// What one invocation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// What goes to stdout: a result, or an error object.
    pub stdout: Vec<u8>,
    /// Lines for stderr: logs (`weft-cni: ...`), or what this is.
    pub stderr: Vec<String>,
    /// The exit status: 0 on success, 1 on error.
    pub exit_code: i32,
}

impl Outcome {
    fn success(stdout: Vec<u8>, stderr: Vec<String>) -> Self {
        Self {
            stdout,
            stderr,
            exit_code: 0,
        }
    }

    fn failure(error: &CniError, version: CniVersion, stderr: Vec<String>) -> Self {
        Self {
            stdout: error.to_json(version.as_str()),
            stderr,
            exit_code: 1,
        }
    }
}

/// What `weft-cni` says about itself when run by hand (no `CNI_COMMAND`).
pub fn about() -> String {
    format!(
        "weft-cni {}: the weft CNI plugin; it asks weft-agent (by default on {}) for each pod's interface.\nCNI protocol versions supported: {}",
        env!("CARGO_PKG_VERSION"),
        weft_agent_api::DEFAULT_SOCKET,
        SUPPORTED.join(", ")
    )
}

/// Carries out one invocation: `env` and `stdin` as the runtime gave them.
pub fn run(env: &CniEnv, stdin: &[u8], sys: &mut dyn System) -> Outcome {
    let reply_version = request::reply_version(stdin);
    let request = match request::parse(env, stdin) {
        Ok(r) => r,
        Err(e) => return Outcome::failure(&e, reply_version, Vec::new()),
    };
    let json_line = |v: &serde_json::Value| {
        let mut out = serde_json::to_vec(v).unwrap_or_default();
        out.push(b'\n');
        out
    };
    let log = |lines: Vec<String>| -> Vec<String> {
        lines
            .into_iter()
            .map(|l| format!("weft-cni: {l}"))
            .collect()
    };
    let done = |r: Result<Vec<String>, CniError>| match r {
        Ok(lines) => Outcome::success(Vec::new(), log(lines)),
        Err(e) => Outcome::failure(&e, reply_version, Vec::new()),
    };
    match request {
        Request::About => Outcome::success(Vec::new(), vec![about()]),
        Request::Version { cni_version } => Outcome::success(
            json_line(&json!({
                "cniVersion": cni_version.as_str(),
                "supportedVersions": SUPPORTED,
            })),
            Vec::new(),
        ),
        Request::Add {
            conf,
            attachment,
            netns,
            meta,
            prev_result,
        } => match commands::add(sys, &conf, &attachment, &netns, &meta, prev_result.as_ref()) {
            Ok(result) => Outcome::success(json_line(&result), Vec::new()),
            Err(e) => Outcome::failure(&e, conf.version, Vec::new()),
        },
        Request::Del { conf, attachment } => {
            Outcome::success(Vec::new(), log(commands::del(sys, &conf, &attachment)))
        }
        Request::Check {
            conf,
            attachment,
            netns,
            prev_result,
        } => done(commands::check(sys, &conf, &attachment, &netns, &prev_result).map(|()| vec![])),
        Request::Status { conf } => done(commands::status(sys, &conf).map(|()| vec![])),
        Request::Gc { conf, valid } => done(commands::gc(sys, &conf, &valid)),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use serde_json::Value;

    use super::fake::FakeHost;
    use super::*;

    fn env(command: &str) -> CniEnv {
        CniEnv {
            command: Some(command.into()),
            container_id: Some("c1".into()),
            netns: Some("/run/netns/p1".into()),
            ifname: Some("eth0".into()),
            args: Some(OsString::from("K8S_POD_NAMESPACE=default")),
        }
    }

    fn out(o: &Outcome) -> Value {
        serde_json::from_slice(&o.stdout).unwrap()
    }

    #[test]
    fn version_and_about() {
        let mut host = FakeHost::new();
        let o = run(&env("VERSION"), br#"{"cniVersion":"0.4.0"}"#, &mut host);
        assert_eq!(o.exit_code, 0);
        assert_eq!(
            out(&o),
            json!({"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
        let o = run(&CniEnv::default(), b"", &mut host);
        assert_eq!(o.exit_code, 0);
        assert!(o.stdout.is_empty());
        assert!(o.stderr[0].starts_with("weft-cni "), "{:?}", o.stderr);
        assert!(host.calls.is_empty());
    }

    #[test]
    fn a_whole_lifecycle_through_the_dispatcher() {
        let mut host = FakeHost::new();
        let conf = br#"{"cniVersion":"1.0.0","name":"weft","type":"weft-cni"}"#;
        let o = run(&env("ADD"), conf, &mut host);
        assert_eq!(o.exit_code, 0, "{}", String::from_utf8_lossy(&o.stdout));
        let result = out(&o);
        assert_eq!(result["cniVersion"], "1.0.0");
        assert_eq!(result["ips"][0]["address"], "10.244.3.2/32");

        let mut check_conf: Value = serde_json::from_slice(conf).unwrap();
        check_conf["prevResult"] = result;
        let check_conf = serde_json::to_vec(&check_conf).unwrap();
        let o = run(&env("CHECK"), &check_conf, &mut host);
        assert_eq!((o.exit_code, o.stdout.as_slice()), (0, &b""[..]));

        let o = run(&env("DEL"), &check_conf, &mut host);
        assert_eq!((o.exit_code, o.stdout.as_slice()), (0, &b""[..]));
        assert!(host.pods.is_empty());

        let o = run(&env("CHECK"), &check_conf, &mut host);
        assert_eq!(o.exit_code, 1);
        assert_eq!(
            out(&o),
            json!({"cniVersion":"1.0.0","code":105,"msg":"weft-agent has no attachment c1/eth0"})
        );
    }

    #[test]
    fn errors_are_json_on_stdout_with_exit_1() {
        let mut host = FakeHost::new();
        let o = run(&env("ADD"), b"{oops", &mut host);
        assert_eq!(o.exit_code, 1);
        let v = out(&o);
        assert_eq!(v["code"], 6);
        assert_eq!(v["cniVersion"], "1.1.0");
        let o = run(
            &env("ADD"),
            br#"{"cniVersion":"0.2.0","name":"w"}"#,
            &mut host,
        );
        assert_eq!(out(&o)["code"], 1);
        let o = run(
            &env("STATUS"),
            br#"{"cniVersion":"0.4.0","name":"w"}"#,
            &mut host,
        );
        let v = out(&o);
        assert_eq!(
            (v["code"].as_u64(), v["cniVersion"].as_str()),
            (Some(1), Some("0.4.0"))
        );

        host.agent_down = true;
        let conf = br#"{"cniVersion":"1.1.0","name":"weft"}"#;
        let o = run(&env("ADD"), conf, &mut host);
        let v = out(&o);
        assert_eq!(v["code"], 11);
        assert!(v["details"]
            .as_str()
            .unwrap()
            .starts_with("start weft-agent"));
        let o = run(&env("STATUS"), conf, &mut host);
        assert_eq!(out(&o)["code"], 50);
        let o = run(&env("DEL"), conf, &mut host);
        assert_eq!(o.exit_code, 0, "DEL without an agent is a success");
        assert!(o.stdout.is_empty());
        assert_eq!(o.stderr.len(), 1);
    }

    #[test]
    fn no_input_makes_it_panic() {
        let mut host = FakeHost::new();
        let inputs: &[&[u8]] = &[
            b"",
            b"null",
            b"\xff\xfe",
            b"{}",
            br#"{"cniVersion":"1.1.0","name":"w","prevResult":{"interfaces":[{"name":5}]}}"#,
            br#"{"cniVersion":"1.1.0","name":"w","prevResult":{"ips":[{"address":"1.2.3.4/33"}]}}"#,
            br#"{"cniVersion":"1.1.0","name":"w","cni.dev/valid-attachments":[1,2]}"#,
            br#"{"cniVersion":"1.1.0","name":"w","prevResult":{"interfaces":[],"ips":[],"dns":7}}"#,
        ];
        for cmd in ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "", "add"] {
            for stdin in inputs {
                let o = run(&env(cmd), stdin, &mut host);
                assert!(o.exit_code == 0 || !o.stdout.is_empty(), "{cmd}");
            }
        }
    }
}
