//! A small client of the CRI v1 `RuntimeService` (package `runtime.v1`),
//! the API kubelet drives containerd with: the messages of the sandbox
//! calls this test needs, written with prost's derive (field numbers as in
//! k8s.io/cri-api's `pkg/apis/runtime/v1/api.proto`; fields left out are
//! skipped by prost on decode), over gRPC on containerd's unix socket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic_prost::ProstCodec;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct DnsConfig {
    #[prost(string, repeated, tag = "1")]
    pub servers: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub searches: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub options: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LinuxPodSandboxConfig {
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxConfig {
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(string, tag = "2")]
    pub hostname: String,
    #[prost(string, tag = "3")]
    pub log_directory: String,
    #[prost(message, optional, tag = "4")]
    pub dns_config: Option<DnsConfig>,
    #[prost(map = "string, string", tag = "6")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "7")]
    pub annotations: HashMap<String, String>,
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RunPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RunPodSandboxResponse {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// The request of StopPodSandbox, RemovePodSandbox (same shape).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxIdRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Empty {}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
}

/// `PodSandboxState`: SANDBOX_READY = 0, SANDBOX_NOTREADY = 1.
pub(crate) const SANDBOX_READY: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

const SERVICE: &str = "/runtime.v1.RuntimeService/";

/// A connection to a CRI runtime's unix socket.
#[derive(Debug, Clone)]
pub(crate) struct CriClient {
    grpc: tonic::client::Grpc<Channel>,
    socket: PathBuf,
}

impl CriClient {
    /// Connects to `socket` (e.g. containerd's `containerd.sock`).
    pub(crate) async fn connect(socket: &Path) -> Result<Self, String> {
        let path = socket.to_path_buf();
        // The URI is a placeholder: the connector dials the socket.
        let channel = Endpoint::from_static("http://cri.invalid")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    tokio::net::UnixStream::connect(path)
                        .await
                        .map(TokioIo::new)
                }
            }))
            .await
            .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
        Ok(CriClient {
            grpc: tonic::client::Grpc::new(channel),
            socket: socket.to_path_buf(),
        })
    }

    async fn call<Req, Resp>(&mut self, method: &'static str, request: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|e| format!("{}: not ready: {e}", self.socket.display()))?;
        let path = PathAndQuery::from_maybe_shared(format!("{SERVICE}{method}"))
            .map_err(|e| e.to_string())?;
        self.grpc
            .unary(tonic::Request::new(request), path, ProstCodec::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| format!("{method}: {:?}: {}", s.code(), s.message()))
    }

    pub(crate) async fn version(&mut self) -> Result<VersionResponse, String> {
        self.call(
            "Version",
            VersionRequest {
                version: "v1".into(),
            },
        )
        .await
    }

    pub(crate) async fn run_pod_sandbox(
        &mut self,
        config: PodSandboxConfig,
    ) -> Result<String, String> {
        let r: RunPodSandboxResponse = self
            .call(
                "RunPodSandbox",
                RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                },
            )
            .await?;
        Ok(r.pod_sandbox_id)
    }

    pub(crate) async fn pod_sandbox_status(
        &mut self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse, String> {
        self.call(
            "PodSandboxStatus",
            PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose,
            },
        )
        .await
    }

    pub(crate) async fn stop_pod_sandbox(&mut self, id: &str) -> Result<(), String> {
        let _: Empty = self
            .call(
                "StopPodSandbox",
                PodSandboxIdRequest {
                    pod_sandbox_id: id.into(),
                },
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn remove_pod_sandbox(&mut self, id: &str) -> Result<(), String> {
        let _: Empty = self
            .call(
                "RemovePodSandbox",
                PodSandboxIdRequest {
                    pod_sandbox_id: id.into(),
                },
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes of a RunPodSandboxRequest as the published field numbers lay
    /// them out: config (1) { metadata (1) { name (1) "a", namespace (3)
    /// "ns", attempt (4) 2 } }, runtime_handler (2) "h".
    #[test]
    fn field_numbers_match_the_published_api() {
        let req = RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "a".into(),
                    uid: String::new(),
                    namespace: "ns".into(),
                    attempt: 2,
                }),
                ..PodSandboxConfig::default()
            }),
            runtime_handler: "h".into(),
        };
        let metadata = [0x0a, 1, b'a', 0x1a, 2, b'n', b's', 0x20, 2];
        let mut config = vec![0x0a, metadata.len() as u8];
        config.extend_from_slice(&metadata);
        let mut want = vec![0x0a, config.len() as u8];
        want.extend_from_slice(&config);
        want.extend_from_slice(&[0x12, 1, b'h']);
        assert_eq!(req.encode_to_vec(), want);

        // PodSandboxStatusResponse: status (1) { state (3) 1, network (5)
        // { ip (1) "10.0.0.1" } }, info (2) {"k": "v"}.
        let mut network = vec![0x0a, 8];
        network.extend_from_slice(b"10.0.0.1");
        let mut status = vec![0x18, 1, 0x2a, network.len() as u8];
        status.extend_from_slice(&network);
        let mut bytes = vec![0x0a, status.len() as u8];
        bytes.extend_from_slice(&status);
        bytes.extend_from_slice(&[0x12, 6, 0x0a, 1, b'k', 0x12, 1, b'v']);
        let decoded = PodSandboxStatusResponse::decode(bytes.as_slice()).unwrap();
        let s = decoded.status.unwrap();
        assert_eq!(s.state, 1);
        assert_eq!(s.network.unwrap().ip, "10.0.0.1");
        assert_eq!(decoded.info["k"], "v");
    }
}
