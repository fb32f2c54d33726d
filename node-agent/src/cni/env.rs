//! The `CNI_*` environment of an invocation: the variables, the attachment
//! they name, and the Kubernetes metadata in `CNI_ARGS`. Pure: no IO.

use std::ffi::OsString;

use super::error::{code, CniError};
use crate::pods::MAX_ID_LEN;

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

/// Kubernetes metadata from `CNI_ARGS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodMeta {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub name: Option<String>,
}

pub(super) fn utf8<'a>(name: &str, value: &'a OsString) -> Result<&'a str, CniError> {
    value.to_str().ok_or_else(|| {
        CniError::new(
            code::INVALID_ENV,
            format!("{name} is not valid UTF-8: {value:?}"),
        )
    })
}

pub(super) fn attachment(container_id: &str, ifname: &str) -> Result<Attachment, CniError> {
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
pub(super) fn check_container_id(id: &str) -> Result<(), String> {
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

pub(super) fn netns_path(path: &str) -> Result<String, CniError> {
    if path.starts_with('/') && !path.contains('\0') {
        Ok(path.into())
    } else {
        Err(CniError::new(
            code::INVALID_ENV,
            format!("CNI_NETNS {path:?} is not an absolute path to a network namespace"),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn att() -> Attachment {
        Attachment {
            container_id: "c0ffee".into(),
            ifname: "eth0".into(),
        }
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
}
