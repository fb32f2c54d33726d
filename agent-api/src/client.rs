//! Clients of the local API: [`AgentClient`] (blocking, std) and
//! [`AsyncAgentClient`] (tokio). Both send one request line and read one
//! response line at a time, with a timeout on each exchange.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

use super::wire::{
    ErrorCode, Pod, PodAddRequest, PodDelResult, PodList, PodResult, PongResult, Request, Response,
    StatusResult, TraceRequest, TraceResult,
};

/// The longest response line a client reads (a pod list of a large node fits).
const MAX_RESPONSE_BYTES: u64 = 16 * 1024 * 1024;

/// How long one exchange may take unless set otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a call to the agent failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentApiError {
    /// Nothing exists at the socket path.
    #[error("is weft-agent running? (no socket at {})", path.display())]
    NoSocket {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket exists but nobody listens on it (a stale socket).
    #[error("is weft-agent running? (nothing listens on {})", path.display())]
    NotListening {
        /// The socket path.
        path: PathBuf,
    },
    /// The socket is root-only.
    #[error("permission denied connecting to {}: the agent's socket is root-only (run as root)", path.display())]
    PermissionDenied {
        /// The socket path.
        path: PathBuf,
    },
    /// Any other failure to connect.
    #[error("connecting to weft-agent at {}: {cause}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// Sending or receiving failed.
    #[error("talking to weft-agent at {}: {cause}", path.display())]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        cause: io::Error,
    },
    /// The agent did not answer in time.
    #[error("weft-agent at {} did not answer {op} within {timeout:?}", path.display())]
    Timeout {
        /// The socket path.
        path: PathBuf,
        /// The op asked for.
        op: &'static str,
        /// The time allowed.
        timeout: Duration,
    },
    /// The agent closed the connection without answering.
    #[error("weft-agent at {} closed the connection without answering {op}", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
        /// The op asked for.
        op: &'static str,
    },
    /// The answer is not a response of the protocol.
    #[error("bad response from weft-agent to {op}: {reason}")]
    BadResponse {
        /// The op asked for.
        op: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent refused the request.
    #[error("{message}")]
    Api {
        /// The error code.
        code: ErrorCode,
        /// The agent's message.
        message: String,
    },
}

impl AgentApiError {
    /// The API error code, if the agent refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }

    fn connect(path: &Path, source: io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => Self::NoSocket { path },
            io::ErrorKind::ConnectionRefused => Self::NotListening { path },
            io::ErrorKind::PermissionDenied => Self::PermissionDenied { path },
            _ => Self::Connect {
                path,
                cause: source,
            },
        }
    }

    fn io(path: &Path, op: &'static str, timeout: Duration, source: io::Error) -> Self {
        let path = path.to_owned();
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Self::Timeout { path, op, timeout }
            }
            _ => Self::Io {
                path,
                cause: source,
            },
        }
    }
}

/// Turns one response line into the op's result.
fn decode<T: DeserializeOwned>(op: &'static str, line: &[u8]) -> Result<T, AgentApiError> {
    let bad = |reason: String| AgentApiError::BadResponse { op, reason };
    let response: Response =
        serde_json::from_slice(line).map_err(|e| bad(format!("not a response: {e}")))?;
    if !response.ok {
        let error = response
            .error
            .ok_or_else(|| bad("\"ok\":false without an error".into()))?;
        return Err(AgentApiError::Api {
            code: error.code,
            message: error.message,
        });
    }
    let result = response.result.unwrap_or(Value::Null);
    serde_json::from_value(result).map_err(|e| bad(format!("unexpected result: {e}")))
}

/// Checks a line read with a size limit: complete, and within it.
fn check_line(op: &'static str, path: &Path, line: &[u8]) -> Result<(), AgentApiError> {
    if line.last() == Some(&b'\n') {
        Ok(())
    } else if line.len() as u64 > MAX_RESPONSE_BYTES {
        Err(AgentApiError::BadResponse {
            op,
            reason: format!("longer than {MAX_RESPONSE_BYTES} bytes"),
        })
    } else {
        Err(AgentApiError::Closed {
            path: path.to_owned(),
            op,
        })
    }
}

/// A blocking client (for `weft-cni`, and anything without an executor).
#[derive(Debug)]
pub struct AgentClient {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    timeout: Duration,
}

impl AgentClient {
    /// Connects to the agent's socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, AgentApiError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|e| AgentApiError::connect(path, e))?;
        let mut client = Self {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            timeout: DEFAULT_TIMEOUT,
        };
        client.set_timeout(DEFAULT_TIMEOUT)?;
        Ok(client)
    }

    /// How long each exchange may take (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) -> Result<(), AgentApiError> {
        let stream = self.reader.get_ref();
        let set = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)));
        set.map_err(|cause| AgentApiError::Io {
            path: self.path.clone(),
            cause,
        })?;
        self.timeout = timeout;
        Ok(())
    }

    /// Sends `request` and decodes its result as `T`.
    pub fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, AgentApiError> {
        let op = request.op();
        let (path, timeout) = (self.path.clone(), self.timeout);
        let io_err = |e| AgentApiError::io(&path, op, timeout, e);
        self.reader
            .get_mut()
            .write_all(&request.to_line())
            .map_err(io_err)?;
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_RESPONSE_BYTES + 1)
            .read_until(b'\n', &mut line)
            .map_err(io_err)?;
        check_line(op, &self.path, &line)?;
        decode(op, &line)
    }

    /// Whether the agent answers; its version.
    pub fn ping(&mut self) -> Result<PongResult, AgentApiError> {
        self.call(&Request::Ping)
    }

    /// The node, its control-plane link and the data plane.
    pub fn status(&mut self) -> Result<StatusResult, AgentApiError> {
        self.call(&Request::Status)
    }

    /// Adds a pod.
    pub fn pod_add(&mut self, request: PodAddRequest) -> Result<Pod, AgentApiError> {
        self.call::<PodResult>(&Request::PodAdd(request))
            .map(|r| r.pod)
    }

    /// One pod; `not_found` if there is none.
    pub fn pod_get(&mut self, id: &str) -> Result<Pod, AgentApiError> {
        self.call::<PodResult>(&Request::PodGet { id: id.into() })
            .map(|r| r.pod)
    }

    /// Deletes a pod; `None` if there was none.
    pub fn pod_del(&mut self, id: &str) -> Result<Option<Pod>, AgentApiError> {
        self.call::<PodDelResult>(&Request::PodDel { id: id.into() })
            .map(|r| r.pod)
    }

    /// One probe packet from a pod of this node through the packet path.
    pub fn trace(&mut self, request: TraceRequest) -> Result<TraceResult, AgentApiError> {
        self.call(&Request::Trace(request))
    }

    /// Every pod on the node.
    pub fn pod_list(&mut self) -> Result<Vec<Pod>, AgentApiError> {
        self.call::<PodList>(&Request::PodList).map(|r| r.pods)
    }
}

/// An async client (tokio), for `weftctl` and the agent's own tests.
#[derive(Debug)]
pub struct AsyncAgentClient {
    path: PathBuf,
    reader: tokio::io::BufReader<tokio::net::UnixStream>,
    timeout: Duration,
}

impl AsyncAgentClient {
    /// Connects to the agent's socket at `path`.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, AgentApiError> {
        let path = path.as_ref();
        let stream = tokio::net::UnixStream::connect(path)
            .await
            .map_err(|e| AgentApiError::connect(path, e))?;
        Ok(Self {
            path: path.to_owned(),
            reader: tokio::io::BufReader::new(stream),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// How long each exchange may take (default [`DEFAULT_TIMEOUT`]).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `request` and decodes its result as `T`.
    pub async fn call<T: DeserializeOwned>(
        &mut self,
        request: &Request,
    ) -> Result<T, AgentApiError> {
        let op = request.op();
        let (path, timeout) = (self.path.clone(), self.timeout);
        let exchange = async {
            self.reader.get_mut().write_all(&request.to_line()).await?;
            let mut line = Vec::new();
            (&mut self.reader)
                .take(MAX_RESPONSE_BYTES + 1)
                .read_until(b'\n', &mut line)
                .await?;
            Ok::<_, io::Error>(line)
        };
        let line = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| AgentApiError::Timeout {
                path: path.clone(),
                op,
                timeout,
            })?
            .map_err(|e| AgentApiError::io(&path, op, timeout, e))?;
        check_line(op, &path, &line)?;
        decode(op, &line)
    }

    /// Whether the agent answers; its version.
    pub async fn ping(&mut self) -> Result<PongResult, AgentApiError> {
        self.call(&Request::Ping).await
    }

    /// The node, its control-plane link and the data plane.
    pub async fn status(&mut self) -> Result<StatusResult, AgentApiError> {
        self.call(&Request::Status).await
    }

    /// Adds a pod.
    pub async fn pod_add(&mut self, request: PodAddRequest) -> Result<Pod, AgentApiError> {
        let r: PodResult = self.call(&Request::PodAdd(request)).await?;
        Ok(r.pod)
    }

    /// One pod; `not_found` if there is none.
    pub async fn pod_get(&mut self, id: &str) -> Result<Pod, AgentApiError> {
        let r: PodResult = self.call(&Request::PodGet { id: id.into() }).await?;
        Ok(r.pod)
    }

    /// Deletes a pod; `None` if there was none.
    pub async fn pod_del(&mut self, id: &str) -> Result<Option<Pod>, AgentApiError> {
        let r: PodDelResult = self.call(&Request::PodDel { id: id.into() }).await?;
        Ok(r.pod)
    }

    /// One probe packet from a pod of this node through the packet path.
    pub async fn trace(&mut self, request: TraceRequest) -> Result<TraceResult, AgentApiError> {
        self.call(&Request::Trace(request)).await
    }

    /// Every pod on the node.
    pub async fn pod_list(&mut self) -> Result<Vec<Pod>, AgentApiError> {
        let r: PodList = self.call(&Request::PodList).await?;
        Ok(r.pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_socket_asks_whether_the_agent_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let err = AgentClient::connect(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("is weft-agent running? (no socket at {})", path.display())
        );
    }

    #[test]
    fn stale_socket_is_not_listening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let err = AgentClient::connect(&path).unwrap_err();
        assert!(matches!(err, AgentApiError::NotListening { .. }), "{err}");
    }

    #[test]
    fn decode_maps_errors_and_results() {
        let err = decode::<PongResult>(
            "ping",
            br#"{"ok":false,"error":{"code":"exhausted","message":"full"}}"#,
        )
        .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Exhausted));
        assert_eq!(err.to_string(), "full");
        let pong: PongResult = decode("ping", br#"{"ok":true,"result":{"version":"v"}}"#).unwrap();
        assert_eq!(pong.version, "v");
        let err = decode::<PongResult>("ping", b"nonsense").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("bad response from weft-agent to ping"));
    }

    #[test]
    fn blocking_client_round_trip_and_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "{\"op\":\"ping\"}\n");
            reader
                .get_mut()
                .write_all(b"{\"ok\":true,\"result\":{\"version\":\"x\"}}\n")
                .unwrap();
            // Read the second request and never answer it.
            line.clear();
            reader.read_line(&mut line).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let mut client = AgentClient::connect(&path).unwrap();
        assert_eq!(client.ping().unwrap().version, "x");
        client.set_timeout(Duration::from_millis(100)).unwrap();
        let err = client.pod_list().unwrap_err();
        assert!(
            matches!(err, AgentApiError::Timeout { op: "pod_list", .. }),
            "{err}"
        );
        server.join().unwrap();
    }
}
