//! Parsing an invocation (the `CNI_*` environment and the configuration on
//! stdin) into a typed [`Request`]. Pure: no IO.
//!
//! The order of the checks follows libcni's plugin skeleton, so a runtime
//! sees the codes it expects: the command (4), the required variables (4),
//! the configuration's JSON (6), its version (1), its name (7), then what
//! each command needs.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::PathBuf;

use serde_json::{Map, Value};
use weft_client::agent_api::DEFAULT_SOCKET;

use super::error::{code, CniError};
use super::version::{self, CniVersion};
use crate::pods::MAX_ID_LEN;

/// The longest configuration read from stdin.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// The `CNI_*` variables of one invocation, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniEnv {
    /// `CNI_COMMAND`.
    pub command: Option<OsString>,
    /// `CNI_CONTAINERID`.
    pub container_id: Option<OsString>,
    /// `CNI_NETNS`.
    pub netns: Option<OsString>,
    /// `CNI_IFNAME`.
    pub ifname: Option<OsString>,
    /// `CNI_ARGS`.
    pub args: Option<OsString>,
}

impl CniEnv {
    /// Reads the variables through `get` (e.g. `std::env::var_os`).
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Self {
        Self {
            command: get("CNI_COMMAND"),
            container_id: get("CNI_CONTAINERID"),
            netns: get("CNI_NETNS"),
            ifname: get("CNI_IFNAME"),
            args: get("CNI_ARGS"),
        }
    }
}

/// One attachment: a container's interface on this network, which the agent
/// knows as the pod `<container-id>/<ifname>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Attachment {
    /// The agent's pod id of this attachment.
    pub fn pod_id(&self) -> String {
        format!("{}/{}", self.container_id, self.ifname)
    }

    /// The attachment a pod id names, if it has the form weft-cni gives its
    /// pods: `<container-id>/<ifname>`, both valid as CNI would pass them.
    pub fn from_pod_id(id: &str) -> Option<Self> {
        let (container_id, ifname) = id.split_once('/')?;
        if check_container_id(container_id).is_err() || check_ifname(ifname).is_err() {
            return None;
        }
        Some(Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        })
    }
}

/// The fields of the network configuration weft-cni uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConf {
    /// The negotiated version (the configuration's `cniVersion`).
    pub version: CniVersion,
    /// The network's name.
    pub name: String,
    /// `agentSocket`, or [`DEFAULT_SOCKET`].
    pub agent_socket: PathBuf,
}

/// Kubernetes metadata from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub name: Option<String>,
}

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
        Some(Value::String(v)) => version::negotiate(Some(v))?,
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

fn utf8<'a>(name: &str, value: &'a OsString) -> Result<&'a str, CniError> {
    value.to_str().ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("{name} is not valid UTF-8: {value:?}"),
        )
    })
}

fn attachment(container_id: &str, ifname: &str) -> Result<Attachment, CniError> {
    check_container_id(container_id)
        .map_err(|why| CniError::new(code::INVALID_ENV, format!("CNI_CONTAINERID {why}")))?;
    check_ifname(ifname)
        .map_err(|why| CniError::new(code::INVALID_ENV, format!("CNI_IFNAME {why}")))?;
    let a = Attachment {
        container_id: container_id.into(),
        ifname: ifname.into(),
    };
    let id_len = a.pod_id().len();
    if id_len > MAX_ID_LEN {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_CONTAINERID is {} bytes: too long for weft, which names the attachment <container-id>/<ifname> in at most {MAX_ID_LEN} bytes",
                container_id.len()
            ),
        ));
    }
    Ok(a)
}

/// A container ID as CNI defines it: an ASCII letter or digit, then letters,
/// digits, `_`, `.` and `-`.
fn check_container_id(id: &str) -> Result<(), String> {
    let ok_first = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    let ok_rest = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok_first && ok_rest {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is invalid: it must start with a letter or digit, then only letters, digits, '_', '.' and '-'"
        ))
    }
}

/// An interface name Linux and CNI accept, and that fits a weft pod id: 1 to
/// 15 bytes of ASCII letters, digits, `.`, `_` and `-`, not `.` or `..`.
fn check_ifname(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "must not be empty"
    } else if name.len() > 15 {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "must not be \".\" or \"..\""
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        "may only hold ASCII letters, digits, '.', '_' and '-' with weft (it names the attachment <container-id>/<ifname>)"
    } else {
        return Ok(());
    };
    Err(format!("{name:?} {why}"))
}

fn netns_path(path: &str) -> Result<String, CniError> {
    if path.starts_with('/') && !path.contains('\0') {
        Ok(path.into())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {path:?} is not an absolute path to a network namespace"),
        ))
    }
}

fn config_object(stdin: &[u8]) -> Result<Map<String, Value>, CniError> {
    if stdin.iter().all(u8::is_ascii_whitespace) {
        return Err(CniError::new(
            code::DECODE_FAILURE,
            "no network configuration on stdin",
        ));
    }
    match serde_json::from_slice::<Value>(stdin) {
        Ok(Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!(
                "the network configuration must be a JSON object, not {}",
                kind(&other)
            ),
        )),
        Err(e) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!("the network configuration on stdin is not valid JSON: {e}"),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn network_name(v: Option<&Value>) -> Result<String, CniError> {
    let name = match v {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!("name must be a string, not {}", kind(other)),
            ))
        }
    };
    if name.is_empty() {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "the network configuration has no name",
        ));
    }
    check_container_id(name)
        .map_err(|why| CniError::new(code::INVALID_CONFIG, format!("network name {why}")))?;
    Ok(name.into())
}

fn agent_socket(v: Option<&Value>) -> Result<PathBuf, CniError> {
    match v {
        None | Some(Value::Null) => Ok(PathBuf::from(DEFAULT_SOCKET)),
        Some(Value::String(s)) if s.starts_with('/') && !s.contains('\0') => Ok(PathBuf::from(s)),
        Some(Value::String(s)) => Err(CniError::new(
            code::INVALID_CONFIG,
            format!("agentSocket {s:?} is not an absolute path (e.g. {DEFAULT_SOCKET})"),
        )),
        Some(other) => Err(CniError::new(
            code::DECODE_FAILURE,
            format!("agentSocket must be a string, not {}", kind(other)),
        )),
    }
}

/// `CNI_ARGS`: `K=V` pairs separated by `;`. weft-cni knows the keys
/// kubelet's runtimes pass; as in libcni, any other key is an error unless
/// `IgnoreUnknown` is `1` or `true`.
pub fn pod_meta(args: Option<&OsString>) -> Result<PodMeta, CniError> {
    let Some(args) = args else {
        return Ok(PodMeta::default());
    };
    let args = utf8("CNI_ARGS", args)?;
    let mut meta = PodMeta::default();
    let mut unknown = Vec::new();
    let mut ignore_unknown = false;
    if args.is_empty() {
        return Ok(meta);
    }
    for pair in args.split(';') {
        let mut parts = pair.split('=');
        let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("CNI_ARGS: {pair:?} is not a KEY=VALUE pair"),
            ));
        };
        let value = (!value.is_empty()).then(|| value.to_string());
        match key {
            "K8S_POD_NAMESPACE" => meta.namespace = value,
            "K8S_POD_NAME" => meta.name = value,
            "K8S_POD_INFRA_CONTAINER_ID" | "K8S_POD_UID" => {}
            "IgnoreUnknown" => {
                ignore_unknown = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("1" | "true") => true,
                    Some("0" | "false") | None => false,
                    Some(_) => {
                        return Err(CniError::new(
                            code::INVALID_ENV,
                            format!(
                                "CNI_ARGS: IgnoreUnknown must be 1, 0, true or false, not {pair:?}"
                            ),
                        ))
                    }
                }
            }
            _ => unknown.push(pair),
        }
    }
    if !unknown.is_empty() && !ignore_unknown {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!(
                "CNI_ARGS: unknown arguments {} (weft-cni knows K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID; add IgnoreUnknown=1 to ignore others)",
                unknown.join(";")
            ),
        ));
    }
    Ok(meta)
}

fn valid_attachments(v: Option<&Value>) -> Result<HashSet<Attachment>, CniError> {
    let entries = match v {
        None | Some(Value::Null) => {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                "GC needs cni.dev/valid-attachments (the attachments to keep); without it weft-cni deletes nothing",
            ))
        }
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            return Err(CniError::new(
                code::DECODE_FAILURE,
                format!(
                    "cni.dev/valid-attachments must be an array, not {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut valid = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        match (field("containerID"), field("ifname")) {
            (Some(container_id), Some(ifname)) => {
                valid.insert(Attachment {
                    container_id: container_id.into(),
                    ifname: ifname.into(),
                });
            }
            _ => {
                return Err(CniError::new(
                    code::DECODE_FAILURE,
                    format!(
                        "cni.dev/valid-attachments[{i}] must be an object with string fields containerID and ifname, not {entry}"
                    ),
                ))
            }
        }
    }
    Ok(valid)
}

#[cfg(test)]
mod tests {
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
    fn cni_args_follow_libcni() {
        let meta = |s: &str| pod_meta(Some(&OsString::from(s)));
        assert_eq!(meta("").unwrap(), PodMeta::default());
        assert_eq!(
            meta("K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=").unwrap(),
            PodMeta {
                namespace: Some("kube-system".into()),
                name: None
            }
        );
        let e = meta("FOO=bar;K8S_POD_NAME=x").unwrap_err();
        assert_eq!(e.code, 4);
        assert!(
            e.msg
                .starts_with("CNI_ARGS: unknown arguments FOO=bar (weft-cni knows"),
            "{}",
            e.msg
        );
        assert!(meta("FOO=bar;IgnoreUnknown=true").is_ok());
        assert!(meta("IgnoreUnknown=0;FOO=bar").is_err());
        assert_eq!(
            meta("K8S_POD_NAME").unwrap_err().msg,
            "CNI_ARGS: \"K8S_POD_NAME\" is not a KEY=VALUE pair"
        );
        assert!(meta("A=b=c").is_err());
        assert!(meta("IgnoreUnknown=maybe").is_err());
        assert_eq!(pod_meta(None).unwrap(), PodMeta::default());
    }

    #[test]
    fn pod_ids_of_attachments() {
        assert_eq!(Attachment::from_pod_id("c0ffee/eth0"), Some(att()));
        for not in [
            "web",
            "a/b/c",
            "/eth0",
            "c/",
            "c/et h0",
            "-c/eth0",
            "c/0123456789abcdef",
        ] {
            assert_eq!(Attachment::from_pod_id(not), None, "{not}");
        }
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
