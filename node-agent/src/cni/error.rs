//! CNI errors: the well-known codes, weft's own codes (100 and up), the
//! error JSON, and the one place that maps the agent's errors to codes.
//!
//! `docs/cni.md` has the same table for operators, with what to do.

use std::time::Duration;

use serde_json::json;
use weft_agent_api::{AgentApiError, ErrorCode};

/// The error codes weft-cni returns.
pub mod code {
    /// The configuration's `cniVersion` is not one weft-cni speaks, or is
    /// too old for the command (CHECK < 0.4.0, STATUS/GC < 1.1.0).
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// A required `CNI_*` variable is missing or invalid (the message names
    /// it), including a `CNI_NETNS` that is not a usable network namespace.
    pub const INVALID_ENV: u32 = 4;
    /// Reading the configuration from stdin failed.
    pub const IO_FAILURE: u32 = 5;
    /// The configuration is not JSON, or a field has the wrong type.
    pub const DECODE_FAILURE: u32 = 6;
    /// The configuration is JSON but invalid (name, agentSocket, a missing
    /// prevResult on CHECK or valid-attachments on GC).
    pub const INVALID_CONFIG: u32 = 7;
    /// A transient condition: weft-agent is not running or not answering,
    /// or its data plane is down. The runtime retries.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: weft-cni cannot serve ADD (no agent, not joined, no free
    /// address).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: the agent runs but its data plane does not: existing pods
    /// have no connectivity either.
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// weft: no free address is left in the node's pod CIDR.
    pub const POOL_EXHAUSTED: u32 = 100;
    /// weft: an ADD for a container ID + interface that is attached
    /// already (a second ADD without DEL).
    pub const ATTACHMENT_EXISTS: u32 = 101;
    /// weft: the interface name is in use in the namespace (an existing
    /// interface, or another pod's).
    pub const INTERFACE_EXISTS: u32 = 102;
    /// weft: weft-agent refused the request as invalid.
    pub const AGENT_REFUSED: u32 = 103;
    /// weft: weft-agent failed (an internal error, a permission problem,
    /// an answer weft-cni does not understand).
    pub const AGENT_FAILED: u32 = 104;
    /// weft: CHECK found the attachment missing, broken, or not what
    /// prevResult says.
    pub const CHECK_FAILED: u32 = 105;
    /// weft: GC could not delete every stale attachment.
    pub const GC_INCOMPLETE: u32 = 106;
}

/// A CNI error result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The code: well-known (below 100) or weft's own ([`code`]).
    pub code: u32,
    /// A short message a person can act on.
    pub msg: String,
    /// More detail: what to do, or what was found.
    pub details: Option<String>,
}

impl CniError {
    /// An error of `code` saying `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: None,
        }
    }

    /// The same error with `details`.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The error JSON for stdout, under `cni_version`.
    pub fn to_json(&self, cni_version: &str) -> Vec<u8> {
        let mut v = json!({"cniVersion": cni_version, "code": self.code, "msg": self.msg});
        if let Some(details) = &self.details {
            v["details"] = json!(details);
        }
        let mut out = serde_json::to_vec(&v).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if let Some(d) = &self.details {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

/// What weft-cni asked the agent, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentCall {
    /// ADD's calls.
    Add,
    /// CHECK's calls.
    Check,
    /// GC's calls.
    Gc,
    /// STATUS's call.
    Status,
}

/// The CNI error of a failed call to the agent.
pub fn agent_error(call: AgentCall, e: &AgentApiError) -> CniError {
    if call == AgentCall::Status {
        return status_error(e);
    }
    let start = "start weft-agent on this node (see docs/cni.md); the runtime retries";
    match e {
        AgentApiError::NoSocket { path } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!("weft-agent is not running (no socket at {})", path.display()),
        )
        .with_details(start),
        AgentApiError::NotListening { path } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "weft-agent is not running (nothing listens on {})",
                path.display()
            ),
        )
        .with_details(start),
        AgentApiError::Timeout { path, op, timeout } => CniError::new(
            code::TRY_AGAIN_LATER,
            format!(
                "weft-agent at {} did not answer {op} within {}",
                path.display(),
                secs(*timeout)
            ),
        )
        .with_details(
            "it serves its socket only once the node has joined the cluster; check `weftctl status` and the agent's log",
        ),
        AgentApiError::Closed { .. } | AgentApiError::Io { .. } => {
            CniError::new(code::TRY_AGAIN_LATER, e.to_string())
                .with_details("weft-agent may be restarting; the runtime retries")
        }
        AgentApiError::PermissionDenied { .. } | AgentApiError::Connect { .. } => {
            CniError::new(code::AGENT_FAILED, e.to_string())
        }
        AgentApiError::BadResponse { .. } => CniError::new(code::AGENT_FAILED, e.to_string())
            .with_details("are weft-cni and weft-agent the same version?"),
        AgentApiError::Api { code: api, message } => {
            let code = match api {
                ErrorCode::Exhausted => code::POOL_EXHAUSTED,
                ErrorCode::AlreadyExists => code::INTERFACE_EXISTS,
                ErrorCode::Unavailable => code::TRY_AGAIN_LATER,
                ErrorCode::Invalid => code::AGENT_REFUSED,
                ErrorCode::NotFound | ErrorCode::Internal => code::AGENT_FAILED,
            };
            let err = CniError::new(code, format!("weft-agent: {message}"));
            match api {
                ErrorCode::Exhausted => err.with_details(
                    "every address of this node's pod CIDR is in use: delete pods, or give the cluster a larger node CIDR mask",
                ),
                ErrorCode::Internal => err.with_details("see weft-agent's log on this node"),
                _ => err,
            }
        }
    }
}

/// STATUS: whatever keeps the agent from answering makes weft-cni
/// unavailable (50).
fn status_error(e: &AgentApiError) -> CniError {
    let msg = match e {
        AgentApiError::NoSocket { path } => {
            format!(
                "weft-agent is not running (no socket at {})",
                path.display()
            )
        }
        AgentApiError::NotListening { path } => format!(
            "weft-agent is not running (nothing listens on {})",
            path.display()
        ),
        AgentApiError::Timeout { path, timeout, .. } => format!(
            "weft-agent at {} has not joined yet: no answer within {}",
            path.display(),
            secs(*timeout)
        ),
        other => format!("weft-agent is not available: {other}"),
    };
    CniError::new(code::NOT_AVAILABLE, msg)
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:?}", d)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn api(code: ErrorCode) -> AgentApiError {
        AgentApiError::Api {
            code,
            message: "m".into(),
        }
    }

    #[test]
    fn error_json_has_the_spec_shape() {
        let e = CniError::new(7, "bad").with_details("more");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json("1.0.0")).unwrap();
        assert_eq!(
            v,
            json!({"cniVersion":"1.0.0","code":7,"msg":"bad","details":"more"})
        );
        let v: serde_json::Value =
            serde_json::from_slice(&CniError::new(4, "x").to_json("1.1.0")).unwrap();
        assert_eq!(v, json!({"cniVersion":"1.1.0","code":4,"msg":"x"}));
        assert!(CniError::new(4, "x").to_json("1.1.0").ends_with(b"}\n"));
    }

    #[test]
    fn agent_errors_map_to_codes() {
        let path = PathBuf::from("/run/weft/agent.sock");
        let cases = [
            (
                AgentApiError::NoSocket { path: path.clone() },
                code::TRY_AGAIN_LATER,
            ),
            (
                AgentApiError::NotListening { path: path.clone() },
                code::TRY_AGAIN_LATER,
            ),
            (
                AgentApiError::Timeout {
                    path: path.clone(),
                    op: "pod_add",
                    timeout: Duration::from_secs(20),
                },
                code::TRY_AGAIN_LATER,
            ),
            (
                AgentApiError::PermissionDenied { path: path.clone() },
                code::AGENT_FAILED,
            ),
            (
                AgentApiError::BadResponse {
                    op: "status",
                    reason: "x".into(),
                },
                code::AGENT_FAILED,
            ),
            (api(ErrorCode::Exhausted), code::POOL_EXHAUSTED),
            (api(ErrorCode::AlreadyExists), code::INTERFACE_EXISTS),
            (api(ErrorCode::Unavailable), code::TRY_AGAIN_LATER),
            (api(ErrorCode::Invalid), code::AGENT_REFUSED),
            (api(ErrorCode::Internal), code::AGENT_FAILED),
        ];
        for (e, want) in cases {
            assert_eq!(agent_error(AgentCall::Add, &e).code, want, "{e}");
            assert_eq!(
                agent_error(AgentCall::Status, &e).code,
                code::NOT_AVAILABLE,
                "{e}"
            );
        }
        let e = agent_error(AgentCall::Add, &AgentApiError::NoSocket { path });
        assert_eq!(
            e.msg,
            "weft-agent is not running (no socket at /run/weft/agent.sock)"
        );
        let e = agent_error(
            AgentCall::Status,
            &AgentApiError::Timeout {
                path: "/s".into(),
                op: "status",
                timeout: Duration::from_secs(5),
            },
        );
        assert_eq!(
            e.msg,
            "weft-agent at /s has not joined yet: no answer within 5s"
        );
    }
}
