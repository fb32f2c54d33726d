//! Parsing an invocation (the `CNI_*` environment and the configuration on
//! stdin) into a typed [`Request`]. Pure: no IO.
//!
//! The order of the checks follows libcni's plugin skeleton, so a runtime
//! sees the codes it expects: the command (4), the required variables (4),
//! the configuration's JSON (6), its version (1), its name (7), then what
//! each command needs.

use std::collections::HashSet;
use std::ffi::OsString;

use serde_json::Value;

use super::config::{agent_socket, config_object, network_name, valid_attachments, NetConf};
use super::env::{attachment, netns_path, pod_meta, utf8, Attachment, CniEnv, PodMeta};
use super::error::{code, CniError};
use super::version::{self, CniVersion};

/// A parsed invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// No `CNI_COMMAND` at all (a person ran the binary by hand): say what
    /// this is, and succeed.
    About,
    /// `VERSION`: answer under `cni_version` (the configuration's, if it
    /// names one weft-cni speaks, else the latest).
    Version {
        /// The version to answer under.
        cni_version: CniVersion,
    },
    /// `ADD`.
    Add {
        /// The configuration.
        conf: NetConf,
        /// Which attachment.
        attachment: Attachment,
        /// `CNI_NETNS`.
        netns: String,
        /// From `CNI_ARGS`.
        meta: PodMeta,
        /// The previous plugin's result, when weft-cni is not first.
        prev_result: Option<Value>,
    },
    /// `DEL`.
    Del {
        /// The configuration.
        conf: NetConf,
        /// Which attachment.
        attachment: Attachment,
    },
    /// `CHECK`.
    Check {
        /// The configuration.
        conf: NetConf,
        /// Which attachment.
        attachment: Attachment,
        /// `CNI_NETNS`.
        netns: String,
        /// The result of the ADD (required).
        prev_result: Value,
    },
    /// `STATUS`.
    Status {
        /// The configuration.
        conf: NetConf,
    },
    /// `GC`.
    Gc {
        /// The configuration.
        conf: NetConf,
        /// `cni.dev/valid-attachments`: the attachments to keep.
        valid: HashSet<Attachment>,
    },
}

/// The version to put in an error for this stdin: the configuration's, if
/// weft-cni speaks it, else the latest.
pub fn reply_version(stdin: &[u8]) -> CniVersion {
    serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v.get("cniVersion")?.as_str().and_then(CniVersion::parse))
        .unwrap_or(version::LATEST)
}

/// Parses one invocation.
pub fn parse(env: &CniEnv, stdin: &[u8]) -> Result<Request, CniError> {
    let Some(command) = env.command.as_ref() else {
        return Ok(Request::About);
    };
    let command = utf8("CNI_COMMAND", command)?;
    let needs: &[&str] = match command {
        "VERSION" => {
            return Ok(Request::Version {
                cni_version: reply_version(stdin),
            })
        }
        "ADD" | "CHECK" => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
        "DEL" => &["CNI_CONTAINERID", "CNI_IFNAME"],
        "STATUS" | "GC" => &[],
        "" => {
            return Err(CniError::new(
                code::INVALID_ENV,
                "required environment variables missing: CNI_COMMAND",
            ))
        }
        other => {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                "unknown CNI_COMMAND {other:?} (expected ADD, DEL, CHECK, STATUS, GC or VERSION)"
            ),
            ))
        }
    };
    let var = |name: &str| -> Option<&OsString> {
        match name {
            "CNI_CONTAINERID" => env.container_id.as_ref(),
            "CNI_NETNS" => env.netns.as_ref(),
            "CNI_IFNAME" => env.ifname.as_ref(),
            _ => None,
        }
        .filter(|v| !v.is_empty())
    };
    let missing: Vec<&str> = needs.iter().copied().filter(|n| var(n).is_none()).collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "required environment variables missing: {}",
                missing.join(", ")
            ),
        ));
    }
    let attachment = match (var("CNI_CONTAINERID"), var("CNI_IFNAME")) {
        (Some(c), Some(i)) if !needs.is_empty() => Some(attachment(
            utf8("CNI_CONTAINERID", c)?,
            utf8("CNI_IFNAME", i)?,
        )?),
        _ => None,
    };
    let netns = match var("CNI_NETNS") {
        Some(n) if needs.contains(&"CNI_NETNS") => Some(netns_path(utf8("CNI_NETNS", n)?)?),
        _ => None,
    };

    let mut fields = config_object(stdin)?;
    let version = match fields.get("cniVersion") {
        None | Some(Value::Null) => version::negotiate(None)?,
        Some(Value::String(v)) => version::negotiate(Some(v.as_str()))?,
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!("cniVersion must be a string, not {other}"),
            ))
        }
    };
    let conf = NetConf {
        version,
        name: network_name(fields.get("name"))?,
        agent_socket: agent_socket(fields.get("agentSocket"))?,
    };
    let prev_result = match fields.remove("prevResult") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!("prevResult must be an object, not {other}"),
            ))
        }
    };
    // Set above for exactly the commands that need them.
    let netns = netns.unwrap_or_default();
    let request = match (command, attachment) {
        ("ADD", Some(attachment)) => Request::Add {
            conf,
            attachment,
            netns,
            meta: pod_meta(env.args.as_ref())?,
            prev_result,
        },
        ("DEL", Some(attachment)) => Request::Del { conf, attachment },
        ("CHECK", Some(attachment)) => {
            version::require("CHECK", version, CniVersion::V0_4_0)?;
            let prev_result = prev_result.ok_or_else(|| {
                CniError::new(
                    code::INVALID_CONFIG,
                    "CHECK needs prevResult (the result of the ADD) in the configuration",
                )
            })?;
            Request::Check {
                conf,
                attachment,
                netns,
                prev_result,
            }
        }
        ("STATUS", _) => {
            version::require("STATUS", version, CniVersion::V1_1_0)?;
            Request::Status { conf }
        }
        ("GC", _) => {
            version::require("GC", version, CniVersion::V1_1_0)?;
            let valid = valid_attachments(fields.get("cni.dev/valid-attachments"))?;
            Request::Gc { conf, valid }
        }
        _ => {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("{command}: CNI_CONTAINERID and CNI_IFNAME are required"),
            ))
        }
    };
    Ok(request)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use weft_agent_api::DEFAULT_SOCKET;

    use super::*;

    fn env(command: &str) -> CniEnv {
        CniEnv {
            command: Some(command.into()),
            container_id: Some("c0ffee".into()),
            netns: Some("/run/netns/p1".into()),
            ifname: Some("eth0".into()),
            args: Some(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=u1"
                    .into(),
            ),
        }
    }

    const CONF: &[u8] = br#"{"cniVersion":"1.1.0","name":"weft","type":"weft-cni"}"#;

    fn request(env: &CniEnv, stdin: &[u8]) -> Request {
        parse(env, stdin).unwrap()
    }

    fn err(env: &CniEnv, stdin: &[u8]) -> CniError {
        parse(env, stdin).unwrap_err()
    }

    fn conf() -> NetConf {
        NetConf {
            version: CniVersion::V1_1_0,
            name: "weft".into(),
            agent_socket: DEFAULT_SOCKET.into(),
        }
    }

    fn att() -> Attachment {
        Attachment {
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
        }
    }

    #[test]
    fn add_as_kubelets_runtimes_call_it() {
        let r = request(&env("ADD"), CONF);
        assert_eq!(
            r,
            Request::Add {
                conf: conf(),
                attachment: att(),
                netns: "/run/netns/p1".into(),
                meta: PodMeta {
                    namespace: Some("default".into()),
                    name: Some("web-1".into()),
                },
                prev_result: None,
            }
        );
        assert_eq!(att().pod_id(), "c0ffee/eth0");
    }

    #[test]
    fn every_command_parses() {
        let r = request(&env("DEL"), CONF);
        assert_eq!(
            r,
            Request::Del {
                conf: conf(),
                attachment: att()
            }
        );
        let check = br#"{"cniVersion":"0.4.0","name":"weft","prevResult":{"ips":[]},"agentSocket":"/tmp/a.sock"}"#;
        match request(&env("CHECK"), check) {
            Request::Check {
                conf, prev_result, ..
            } => {
                assert_eq!(conf.version, CniVersion::V0_4_0);
                assert_eq!(conf.agent_socket, PathBuf::from("/tmp/a.sock"));
                assert_eq!(prev_result, serde_json::json!({"ips":[]}));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            request(
                &CniEnv::from_lookup(|k| (k == "CNI_COMMAND").then(|| "STATUS".into())),
                CONF
            ),
            Request::Status { conf: conf() }
        );
        let gc = br#"{"cniVersion":"1.1.0","name":"weft","cni.dev/valid-attachments":[{"containerID":"c0ffee","ifname":"eth0"}]}"#;
        assert_eq!(
            request(&env("GC"), gc),
            Request::Gc {
                conf: conf(),
                valid: [att()].into_iter().collect()
            }
        );
        assert_eq!(
            parse(&CniEnv::default(), b"").unwrap(),
            Request::About,
            "no CNI_COMMAND: a person ran it"
        );
    }

    #[test]
    fn version_answers_under_the_configs_version_or_the_latest() {
        let v = |stdin: &[u8]| match request(&env("VERSION"), stdin) {
            Request::Version { cni_version } => cni_version,
            other => panic!("{other:?}"),
        };
        assert_eq!(v(br#"{"cniVersion":"0.4.0"}"#), CniVersion::V0_4_0);
        assert_eq!(v(b""), CniVersion::V1_1_0);
        assert_eq!(v(b"garbage"), CniVersion::V1_1_0);
        assert_eq!(v(br#"{"cniVersion":"0.2.0"}"#), CniVersion::V1_1_0);
    }

    #[test]
    fn env_errors_name_the_variable() {
        let mut e = env("ADD");
        e.netns = None;
        e.ifname = Some("".into());
        let x = err(&e, CONF);
        assert_eq!(x.code, 4);
        assert_eq!(
            x.msg,
            "required environment variables missing: CNI_NETNS, CNI_IFNAME"
        );
        let mut e = env("DEL");
        e.netns = None;
        assert!(parse(&e, CONF).is_ok(), "DEL does not need CNI_NETNS");
        e.container_id = None;
        assert_eq!(
            err(&e, CONF).msg,
            "required environment variables missing: CNI_CONTAINERID"
        );

        let x = err(&env("FROB"), CONF);
        assert_eq!(x.code, 4);
        assert!(x.msg.starts_with("unknown CNI_COMMAND \"FROB\""));

        let mut e = env("ADD");
        e.container_id = Some("-x".into());
        let x = err(&e, CONF);
        assert_eq!(x.code, 4);
        assert!(
            x.msg.starts_with("CNI_CONTAINERID \"-x\" is invalid"),
            "{}",
            x.msg
        );
        e.container_id = Some("a".repeat(249).into());
        assert!(err(&e, CONF).msg.contains("too long for weft"));

        let mut e = env("ADD");
        for bad in ["eth0@1", "a/b", "0123456789abcdef", "..", "a b"] {
            e.ifname = Some(bad.into());
            let x = err(&e, CONF);
            assert_eq!(x.code, 4, "{bad}");
            assert!(x.msg.starts_with("CNI_IFNAME"), "{}", x.msg);
        }

        let mut e = env("ADD");
        e.netns = Some("netns/p1".into());
        assert_eq!(
            err(&e, CONF).msg,
            "CNI_NETNS \"netns/p1\" is not an absolute path to a network namespace"
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStringExt;
            e.netns = Some(OsString::from_vec(vec![b'/', 0xff]));
            assert!(err(&e, CONF)
                .msg
                .starts_with("CNI_NETNS is not valid UTF-8"));
        }
    }

    #[test]
    fn config_errors_have_their_codes() {
        let e = env("ADD");
        let cases: &[(&[u8], u32, &str)] = &[
            (b"", 6, "no network configuration on stdin"),
            (
                b"{\"cniVersion\":",
                6,
                "the network configuration on stdin is not valid JSON: EOF while parsing",
            ),
            (
                b"[1]",
                6,
                "the network configuration must be a JSON object, not an array",
            ),
            (
                br#"{"cniVersion":1,"name":"w"}"#,
                6,
                "cniVersion must be a string, not 1",
            ),
            (
                br#"{"cniVersion":"0.2.0","name":"w"}"#,
                1,
                "cniVersion \"0.2.0\" is not supported",
            ),
            (
                br#"{"name":"w"}"#,
                1,
                "the network configuration has no cniVersion",
            ),
            (
                br#"{"cniVersion":"1.0.0"}"#,
                7,
                "the network configuration has no name",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a b"}"#,
                7,
                "network name \"a b\" is invalid",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":["w"]}"#,
                6,
                "name must be a string",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"w","agentSocket":"x.sock"}"#,
                7,
                "agentSocket \"x.sock\" is not an absolute path",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"w","agentSocket":5}"#,
                6,
                "agentSocket must be a string",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"w","prevResult":[]}"#,
                6,
                "prevResult must be an object",
            ),
        ];
        for (stdin, code, start) in cases {
            let x = err(&e, stdin);
            assert_eq!(x.code, *code, "{}", String::from_utf8_lossy(stdin));
            assert!(x.msg.starts_with(start), "{} vs {start}", x.msg);
        }
    }

    #[test]
    fn command_specific_requirements() {
        let x = err(&env("CHECK"), CONF);
        assert_eq!(
            (x.code, x.msg.as_str()),
            (
                7,
                "CHECK needs prevResult (the result of the ADD) in the configuration"
            )
        );
        let x = err(
            &env("CHECK"),
            br#"{"cniVersion":"0.3.1","name":"w","prevResult":{}}"#,
        );
        assert_eq!(x.code, 1);
        for cmd in ["STATUS", "GC"] {
            let x = err(&env(cmd), br#"{"cniVersion":"1.0.0","name":"w"}"#);
            assert_eq!(x.code, 1, "{cmd}");
            assert_eq!(
                x.msg,
                format!("{cmd} needs cniVersion 1.1.0 or later; the configuration has 1.0.0")
            );
        }
        let x = err(&env("GC"), CONF);
        assert_eq!(x.code, 7);
        assert!(x.msg.starts_with("GC needs cni.dev/valid-attachments"));
        let x = err(
            &env("GC"),
            br#"{"cniVersion":"1.1.0","name":"w","cni.dev/valid-attachments":[{"containerID":"a"}]}"#,
        );
        assert_eq!(x.code, 6);
        assert!(x
            .msg
            .starts_with("cni.dev/valid-attachments[0] must be an object"));
        let x = err(
            &env("GC"),
            br#"{"cniVersion":"1.1.0","name":"w","cni.dev/valid-attachments":{}}"#,
        );
        assert_eq!(x.code, 6);
    }

    #[test]
    fn unknown_fields_are_tolerated() {
        let stdin = br#"{"cniVersion":"1.0.0","name":"weft","type":"weft-cni","ipMasq":true,
            "runtimeConfig":{"portMappings":[]},"args":{"cni":{"labels":[]}},"capabilities":{"x":true}}"#;
        assert!(matches!(request(&env("ADD"), stdin), Request::Add { .. }));
    }

    #[test]
    fn reply_version_is_the_configs_if_spoken() {
        assert_eq!(
            reply_version(br#"{"cniVersion":"0.3.1"}"#),
            CniVersion::V0_3_1
        );
        assert_eq!(
            reply_version(br#"{"cniVersion":"9.9.9"}"#),
            CniVersion::V1_1_0
        );
        assert_eq!(reply_version(b"\xff"), CniVersion::V1_1_0);
    }
}
