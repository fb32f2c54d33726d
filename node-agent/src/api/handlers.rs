//! What each op does, and the one place that maps domain errors to API
//! error codes.

use base64::Engine;
use weft_agent_api::{
    DataplaneInfo, DropCount, ErrorBody, ErrorCode, OffloadInfo, PeerInfo, PodDelResult, PodList,
    PodResult, PongResult, PortInfo, Request, Response, StatusResult,
};

use super::Services;
use crate::dataplane::{DataplaneError, DataplaneStatus};
use crate::netns::NetNsError;
use crate::pods::PodError;
use crate::tun::{KernelError, TunError};

/// Carries out one request.
pub(super) async fn handle(services: &Services, request: Request) -> Response {
    match request {
        Request::Ping => Response::success(&PongResult {
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        Request::Status => Response::success(&status(services).await),
        Request::PodAdd(req) => match services.pods.add(req.into()).await {
            Ok(pod) => Response::success(&PodResult { pod: pod.to_api() }),
            Err(e) => Response::failure(error_body(&e)),
        },
        Request::PodGet { id } => match services.pods.get(&id).await {
            Some(pod) => Response::success(&PodResult { pod: pod.to_api() }),
            None => Response::failure(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no pod with id {id:?} on this node"),
            )),
        },
        Request::PodDel { id } => match services.pods.del(&id).await {
            Ok(pod) => Response::success(&PodDelResult {
                pod: pod.map(|p| p.to_api()),
            }),
            Err(e) => Response::failure(error_body(&e)),
        },
        Request::PodList => Response::success(&PodList {
            pods: services
                .pods
                .list()
                .await
                .iter()
                .map(|p| p.to_api())
                .collect(),
        }),
    }
}

/// The `status` answer: the node's info, its pod count, and the data
/// plane's status (or why it did not answer). Also what the Prometheus
/// endpoint renders ([`crate::metrics`]).
pub async fn status(services: &Services) -> StatusResult {
    let node = services.node.node_info();
    let pods = services.pods.list().await.len();
    let (dataplane, dataplane_error) = match services.dataplane.dataplane_status().await {
        Ok(s) => (Some(dataplane_info(s)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    StatusResult {
        node,
        pods,
        dataplane,
        dataplane_error,
    }
}

fn dataplane_info(s: DataplaneStatus) -> DataplaneInfo {
    let b64 = base64::engine::general_purpose::STANDARD;
    DataplaneInfo {
        peers: s
            .peers
            .into_iter()
            .map(|p| PeerInfo {
                name: p.name,
                public_key: b64.encode(p.public_key),
                endpoint: p.endpoint.map(|e| e.to_string()),
                allowed: p.allowed.iter().map(ToString::to_string).collect(),
                last_handshake_ms: p
                    .last_handshake
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                rx_bytes: p.rx_bytes,
                tx_bytes: p.tx_bytes,
                rx_packets: p.rx_packets,
                tx_packets: p.tx_packets,
            })
            .collect(),
        ports: s
            .ports
            .into_iter()
            .map(|(id, addresses)| PortInfo { id, addresses })
            .collect(),
        drops: s
            .drops
            .into_iter()
            .map(|(reason, count)| DropCount {
                reason: reason.into(),
                count,
            })
            .collect(),
        forwarded_to_ports: s.forwarded_to_ports,
        forwarded_to_host: s.forwarded_to_host,
        forwarded_to_peers: s.forwarded_to_peers,
        offload: offload_info(s.offload),
    }
}

/// The data plane's offload status, as the API sends it.
fn offload_info(o: crate::dataplane::OffloadStatus) -> OffloadInfo {
    OffloadInfo {
        tun: o.tun,
        udp_gso: o.udp_gso,
        udp_gro: o.udp_gro,
        tun_super_packets_read: o.tun_super_packets_read,
        tun_super_packets_written: o.tun_super_packets_written,
        segments_coalesced: o.segments_coalesced,
        udp_gso_messages: o.udp_gso_messages,
        udp_gro_messages: o.udp_gro_messages,
    }
}

/// The API error of a pod operation: the code says what the caller can do.
pub(super) fn error_body(e: &PodError) -> ErrorBody {
    ErrorBody::new(error_code(e), e.to_string())
}

fn error_code(e: &PodError) -> ErrorCode {
    match e {
        PodError::Invalid(_) => ErrorCode::Invalid,
        PodError::AlreadyExists(_) => ErrorCode::AlreadyExists,
        PodError::Exhausted { .. } => ErrorCode::Exhausted,
        PodError::NetNs(e) | PodError::Kernel(KernelError::NetNs(e)) => netns_code(e),
        PodError::Kernel(KernelError::Tun(e)) => match e {
            TunError::InvalidName(_) => ErrorCode::Invalid,
            TunError::AlreadyExists { .. } | TunError::Busy { .. } => ErrorCode::AlreadyExists,
            TunError::DeviceUnavailable { .. } => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        },
        PodError::Kernel(KernelError::Netlink(_)) => ErrorCode::Internal,
        PodError::Dataplane { source, .. } => match source {
            DataplaneError::NotRunning => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        },
        PodError::State { .. } | PodError::Config(_) => ErrorCode::Internal,
    }
}

fn netns_code(e: &NetNsError) -> ErrorCode {
    match e {
        NetNsError::NotFound { .. }
        | NetNsError::NotANetNs { .. }
        | NetNsError::InvalidName { .. } => ErrorCode::Invalid,
        NetNsError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
        NetNsError::PermissionDenied { .. } | NetNsError::Os { .. } => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn codes() {
        let cases = [
            (PodError::Invalid("x".into()), ErrorCode::Invalid),
            (
                PodError::AlreadyExists("x".into()),
                ErrorCode::AlreadyExists,
            ),
            (
                PodError::Exhausted {
                    cidr: "10.0.0.0/30".parse().unwrap(),
                    capacity: 1,
                },
                ErrorCode::Exhausted,
            ),
            (
                PodError::NetNs(NetNsError::NotFound {
                    path: PathBuf::from("/run/netns/x"),
                }),
                ErrorCode::Invalid,
            ),
            (
                PodError::Kernel(KernelError::Tun(TunError::AlreadyExists {
                    name: "eth0".into(),
                })),
                ErrorCode::AlreadyExists,
            ),
            (
                PodError::Dataplane {
                    id: "a".into(),
                    source: DataplaneError::NotRunning,
                },
                ErrorCode::Unavailable,
            ),
            (
                PodError::State {
                    path: "/x".into(),
                    reason: "y".into(),
                },
                ErrorCode::Internal,
            ),
        ];
        for (e, code) in cases {
            assert_eq!(error_body(&e).code, code, "{e}");
        }
    }

    #[test]
    fn status_converts_peers() {
        let s = DataplaneStatus {
            peers: vec![crate::dataplane::PeerStatus {
                name: "n2".into(),
                public_key: [0; 32],
                endpoint: Some("192.0.2.2:51820".parse().unwrap()),
                allowed: vec!["10.244.2.0/24".parse().unwrap()],
                last_handshake: Some(std::time::Duration::from_millis(1500)),
                rx_bytes: 1,
                tx_bytes: 2,
                rx_packets: 3,
                tx_packets: 4,
            }],
            drops: vec![("spoofed_source", 7)],
            ..DataplaneStatus::default()
        };
        let info = dataplane_info(s);
        let p = &info.peers[0];
        assert_eq!(p.public_key, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(p.endpoint.as_deref(), Some("192.0.2.2:51820"));
        assert_eq!(p.allowed, vec!["10.244.2.0/24"]);
        assert_eq!(p.last_handshake_ms, Some(1500));
        assert_eq!(info.drops[0].reason, "spoofed_source");
    }
}
