//! The IO around the commands: the blocking agent client, the namespaces
//! and interfaces of this host, and the process's env, stdin and stdout.
//! No async runtime: the agent client is blocking, and CHECK drives the
//! netlink query (which has its own driver thread) with a simple executor.

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use weft_agent_api::{AgentApiError, AgentClient, Pod, PodAddRequest, StatusResult};

use super::commands::{Agent, NetnsProblem, System};
use super::config::MAX_CONFIG_BYTES;
use super::env::CniEnv;
use super::error::{code, CniError};
use super::request;
use super::{run, Outcome};
use crate::kernel::netlink::NetlinkError;
use crate::kernel::netns::{NetNs, NetNsError};
use crate::kernel::tun::{self, KernelError, PortState};

/// The agent's socket, connected on first use.
struct SocketAgent {
    path: PathBuf,
    timeout: Duration,
    client: Option<AgentClient>,
}

impl SocketAgent {
    fn client(&mut self) -> Result<&mut AgentClient, AgentApiError> {
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let mut client = AgentClient::connect(&self.path)?;
                client.set_timeout(self.timeout)?;
                client
            }
        };
        Ok(self.client.insert(client))
    }
}

impl Agent for SocketAgent {
    fn status(&mut self) -> Result<StatusResult, AgentApiError> {
        self.client()?.status()
    }

    fn pod_get(&mut self, id: &str) -> Result<Pod, AgentApiError> {
        self.client()?.pod_get(id)
    }

    fn pod_add(&mut self, request: PodAddRequest) -> Result<Pod, AgentApiError> {
        self.client()?.pod_add(request)
    }

    fn pod_del(&mut self, id: &str) -> Result<Option<Pod>, AgentApiError> {
        self.client()?.pod_del(id)
    }

    fn pod_list(&mut self) -> Result<Vec<Pod>, AgentApiError> {
        self.client()?.pod_list()
    }
}

/// This host, for real.
#[derive(Debug, Default)]
pub struct HostSystem;

impl System for HostSystem {
    fn agent(&mut self, socket: &Path, timeout: Duration) -> Box<dyn Agent + '_> {
        Box::new(SocketAgent {
            path: socket.to_owned(),
            timeout,
            client: None,
        })
    }

    fn check_netns(&mut self, path: &str) -> Result<(), NetnsProblem> {
        let ns = NetNs::open(path).map_err(|e| match e {
            NetNsError::NotFound { .. } => NetnsProblem::Missing,
            NetNsError::NotANetNs { found, .. } => NetnsProblem::NotANetns(found),
            other => NetnsProblem::Unreadable(other.to_string()),
        })?;
        let ours = NetNs::current().map_err(|e| NetnsProblem::Unreadable(e.to_string()))?;
        if ns == ours {
            Err(NetnsProblem::IsOurs)
        } else {
            Ok(())
        }
    }

    fn port_state(&mut self, netns: &str, ifname: &str) -> Result<Option<PortState>, String> {
        let ns = NetNs::open(netns).map_err(|e| e.to_string())?;
        match futures::executor::block_on(tun::port_state(&ns, ifname)) {
            Ok(state) => Ok(Some(state)),
            Err(KernelError::Netlink(NetlinkError::LinkNotFound { .. })) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Reads the configuration: at most [`MAX_CONFIG_BYTES`].
fn read_config(stdin: impl Read) -> Result<Vec<u8>, CniError> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(MAX_CONFIG_BYTES).unwrap_or(u64::MAX);
    stdin.take(limit + 1).read_to_end(&mut bytes).map_err(|e| {
        CniError::new(
            code::IO_FAILURE,
            format!("reading the network configuration from stdin: {e}"),
        )
    })?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(CniError::new(
            code::IO_FAILURE,
            format!("the network configuration on stdin is longer than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    Ok(bytes)
}

/// The whole plugin: the process's env and stdin in, stdout and stderr out;
/// the exit status to end with.
pub fn main() -> i32 {
    let env = CniEnv::from_lookup(|name| std::env::var_os(name));
    // Run by hand (no command, or a terminal on stdin): nothing to read.
    let stdin = io::stdin();
    let config = if env.command.is_none() || stdin.is_terminal() {
        Ok(Vec::new())
    } else {
        read_config(stdin.lock())
    };
    let outcome = match config {
        Ok(stdin) => run(&env, &stdin, &mut HostSystem),
        Err(e) => Outcome {
            stdout: e.to_json(request::reply_version(b"").as_str()),
            stderr: Vec::new(),
            exit_code: 1,
        },
    };
    let mut stderr = io::stderr().lock();
    for line in &outcome.stderr {
        let _ = writeln!(stderr, "{line}");
    }
    let mut stdout = io::stdout().lock();
    if let Err(e) = stdout
        .write_all(&outcome.stdout)
        .and_then(|()| stdout.flush())
    {
        let _ = writeln!(stderr, "weft-cni: writing the result to stdout: {e}");
        return 1;
    }
    outcome.exit_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_read_up_to_the_limit() {
        assert_eq!(read_config(&b"{}"[..]).unwrap(), b"{}");
        let big = vec![b' '; MAX_CONFIG_BYTES + 1];
        let e = read_config(&big[..]).unwrap_err();
        assert_eq!(e.code, code::IO_FAILURE);
        assert!(e.msg.ends_with("is longer than 4194304 bytes"));
    }

    #[test]
    fn a_missing_agent_is_the_first_calls_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut host = HostSystem;
        let mut agent = host.agent(&dir.path().join("agent.sock"), Duration::from_secs(1));
        let e = agent.pod_list().unwrap_err();
        assert!(matches!(e, AgentApiError::NoSocket { .. }), "{e}");
    }

    #[test]
    fn netns_checks() {
        let mut host = HostSystem;
        assert_eq!(
            host.check_netns("/nonexistent/weft-netns"),
            Err(NetnsProblem::Missing)
        );
        assert!(matches!(
            host.check_netns("/etc/hostname")
                .or_else(|_| host.check_netns("/proc/self/stat")),
            Err(NetnsProblem::NotANetns(_))
        ));
        assert_eq!(
            host.check_netns("/proc/self/ns/net"),
            Err(NetnsProblem::IsOurs)
        );
    }
}
