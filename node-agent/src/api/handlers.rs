//! What each op does, and the one place that maps domain errors to API
//! error codes.

use std::time::Duration;

use base64::Engine;
use tracing::warn;
use weft_agent_api::{
    DataplaneInfo, DropCount, ErrorBody, ErrorCode, OffloadInfo, PeerInfo, Pod, PodDelResult,
    PodList, PodResult, PolicyCount, PolicyInfo, PongResult, PortInfo, Request, Response,
    ServicesInfo, StatusResult,
};

use super::{Services, STATUS_TIMEOUT};
use crate::engine::{DataplaneError, DataplaneStatus};
use crate::kernel::netns::NetNsError;
use crate::kernel::tun::{KernelError, TunError};
use crate::pods::{validate_id, PodError, PodRecord};

/// Carries out one request on a task of its own and waits for it at most
/// `deadline`: past it, the answer is `unavailable` and the task goes on
/// (a request that started is carried out, as when its client goes away).
pub(super) async fn handle_bounded(
    services: &Services,
    request: Request,
    deadline: Duration,
) -> Response {
    let op = request.op();
    let services = services.clone();
    let task = tokio::spawn(async move { handle(&services, request).await });
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(response)) => response,
        Ok(Err(join)) => {
            warn!(op, error = %join, "an API request failed");
            Response::failure(ErrorBody::new(
                ErrorCode::Internal,
                format!("{op} failed inside the agent: {join}; see its log"),
            ))
        }
        Err(_elapsed) => {
            warn!(
                op,
                ?deadline,
                "an API request did not finish in time; it goes on in the background"
            );
            Response::failure(ErrorBody::new(
                ErrorCode::Unavailable,
                format!(
                    "{op} did not finish within {deadline:?}; the agent goes on with it in the background (see its log); check with pod_get or pod_list before retrying"
                ),
            ))
        }
    }
}

/// Carries out one request.
async fn handle(services: &Services, request: Request) -> Response {
    match request {
        Request::Ping => Response::success(&PongResult {
            version: env!("CARGO_PKG_VERSION").into(),
        }),
        Request::Status => Response::success(&status(services).await),
        Request::PodAdd(req) => match services.pods.add(req.into()).await {
            Ok(pod) => Response::success(&PodResult {
                pod: api_pod(services, &pod),
            }),
            Err(e) => Response::failure(error_body(&e)),
        },
        Request::PodGet { id } => match validate_id(&id) {
            Err(why) => Response::failure(ErrorBody::new(ErrorCode::Invalid, why)),
            Ok(()) => match services.pods.get(&id).await {
                Some(pod) => Response::success(&PodResult {
                    pod: api_pod(services, &pod),
                }),
                None => Response::failure(ErrorBody::new(
                    ErrorCode::NotFound,
                    format!("no pod with id {id:?} on this node"),
                )),
            },
        },
        Request::PodDel { id } => match services.pods.del(&id).await {
            Ok(pod) => Response::success(&PodDelResult {
                pod: pod.map(|p| p.to_api()),
            }),
            Err(e) => Response::failure(error_body(&e)),
        },
        Request::Trace(req) => match super::trace::trace(services, req).await {
            Ok(result) => Response::success(&result),
            Err(e) => Response::failure(e),
        },
        Request::PodList => Response::success(&PodList {
            pods: services
                .pods
                .list()
                .await
                .iter()
                .map(|p| api_pod(services, p))
                .collect(),
        }),
    }
}

/// A pod as the API shows it, with its registration if it has one.
fn api_pod(services: &Services, record: &PodRecord) -> Pod {
    let mut pod = record.to_api();
    if let (Some(cluster), Some((ns, name))) = (&services.cluster, record.cluster_name()) {
        pod.registration = cluster.registrations.of(&ns, &name);
    }
    pod
}

/// The `status` answer: the node's info, its pod count, and the data
/// plane's status (or why it did not answer). Also what the Prometheus
/// endpoint renders ([`crate::metrics`]).
/// Never waits on the pod table (a pod operation may hold it) and at most
/// [`STATUS_TIMEOUT`] on the data plane.
pub async fn status(services: &Services) -> StatusResult {
    let node = services.node.node_info();
    let pods = services.pods.count();
    let answer = tokio::time::timeout(STATUS_TIMEOUT, services.dataplane.dataplane_status()).await;
    let (dataplane, dataplane_error) = match answer {
        Ok(Ok(s)) => (Some(dataplane_info(s)), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (
            None,
            Some(format!(
                "the data plane did not answer within {} s",
                STATUS_TIMEOUT.as_secs()
            )),
        ),
    };
    let (registration, cluster_view) = match &services.cluster {
        Some(c) => (
            Some(c.registrations.summary()),
            Some(c.view.current().info()),
        ),
        None => (None, None),
    };
    StatusResult {
        node,
        pods,
        dataplane,
        dataplane_error,
        registration,
        cluster_view,
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
                ready: Some(p.ready),
                queued_packets: p.queued_packets,
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
        services: s.services.map(services_info),
        policy: s.policy.map(policy_info),
        dns: super::dns::dns_info(&s.dns),
    }
}

/// The service step's sizes and counters, as the API sends them.
fn services_info(s: weft_switch::ServicesStatus) -> ServicesInfo {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    let (ct, tr) = (s.conntrack, s.translation);
    ServicesInfo {
        services: n(s.services),
        frontends: n(s.frontends),
        endpoints: n(s.endpoints),
        conntrack_entries: ct.entries,
        conntrack_max: n(s.conntrack_capacity),
        conntrack_inserts: ct.inserts,
        conntrack_expired: ct.expired,
        conntrack_evictions: ct.evicted.saturating_add(ct.source_evicted),
        conntrack_table_full: ct.table_full,
        conntrack_source_limited: ct.source_limited,
        translations: tr.translations,
        hairpins: tr.hairpins,
        affinity_hits: tr.affinity_hits,
        no_endpoint_rejects: tr.no_endpoint_rejects,
        unknown_port_rejects: tr.unknown_port_rejects,
        no_local_endpoint_drops: tr.no_local_endpoint_drops,
        invalid_to_service: tr.invalid_to_service,
        stale_flows: tr.stale_flows,
        source_ports_remapped: tr.source_ports_remapped,
    }
}

/// The policy step's counters, as the API sends them.
fn policy_info(s: weft_switch::PolicyStatus) -> PolicyInfo {
    let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
    PolicyInfo {
        generation: s.generation,
        policies: n(s.policies),
        rules: n(s.rules),
        judged: s.judged,
        not_isolated: s.not_isolated,
        denied: s.denied,
        untracked_judged: s.untracked_judged,
        untracked_denied: s.untracked_denied,
        denials_unlogged: s.denials_unlogged,
        by_policy: s
            .by_policy
            .into_iter()
            .map(|(name, c)| PolicyCount {
                name,
                allowed: c.allowed,
                denied: c.denied,
            })
            .collect(),
    }
}

/// The data plane's offload status, as the API sends it.
fn offload_info(o: crate::engine::OffloadStatus) -> OffloadInfo {
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
        PodError::Dataplane { cause, .. } => match cause {
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
        NetNsError::PermissionDenied { .. }
        | NetNsError::Os { .. }
        | NetNsError::HostMounts { .. } => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use futures::future::BoxFuture;
    use weft_agent_api::NodeInfo;

    use super::*;
    use crate::api::{DataplaneStatusSource, NodeInfoSource};
    use crate::pods::{MemoryPortSink, PodManager};

    /// A data plane that never answers (a wedged engine).
    struct Wedged;

    impl DataplaneStatusSource for Wedged {
        fn dataplane_status(&self) -> BoxFuture<'_, Result<DataplaneStatus, DataplaneError>> {
            Box::pin(std::future::pending())
        }
    }

    struct Node;

    impl NodeInfoSource for Node {
        fn node_info(&self) -> NodeInfo {
            NodeInfo {
                name: "n1".into(),
                ..NodeInfo::default()
            }
        }
    }

    async fn services(dir: &std::path::Path) -> Services {
        let pods = PodManager::open_with(
            dir,
            "10.244.1.0/24".parse().unwrap(),
            "10.244.1.1".parse().unwrap(),
            1420,
            Arc::new(MemoryPortSink::new()),
        )
        .await
        .unwrap();
        Services {
            pods: Arc::new(pods),
            dataplane: Arc::new(Wedged),
            node: Arc::new(Node),
            cluster: None,
        }
    }

    /// Issue 10, item 2: nothing the API serves can hang a connection.
    #[tokio::test(start_paused = true)]
    async fn a_request_that_does_not_finish_is_answered_unavailable_at_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(dir.path()).await;
        let deadline = Duration::from_millis(100);
        let started = tokio::time::Instant::now();
        let response = handle_bounded(&services, Request::Status, deadline).await;
        assert_eq!(started.elapsed(), deadline);
        let error = response.error.unwrap();
        assert_eq!(error.code, ErrorCode::Unavailable);
        assert!(
            error
                .message
                .starts_with("status did not finish within 100ms"),
            "{}",
            error.message
        );
        // Status itself gives up on the data plane after STATUS_TIMEOUT, and
        // still reports the node and its pods.
        let started = tokio::time::Instant::now();
        let response = handle_bounded(&services, Request::Status, Duration::from_secs(60)).await;
        assert_eq!(started.elapsed(), STATUS_TIMEOUT);
        let status: weft_agent_api::StatusResult =
            serde_json::from_value(response.result.unwrap()).unwrap();
        assert_eq!(status.node.name, "n1");
        assert_eq!(status.pods, 0);
        assert!(status.dataplane.is_none());
        assert_eq!(
            status.dataplane_error.as_deref(),
            Some("the data plane did not answer within 5 s")
        );
    }

    /// `pod_del` and `pod_get` refuse the ids `pod_add` refuses.
    #[tokio::test]
    async fn a_bad_trace_request_says_which_input_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(dir.path()).await;
        let trace = |pod: &str, address: &str, port: u16, protocol: &str| {
            Request::Trace(weft_agent_api::TraceRequest {
                pod: pod.into(),
                address: address.into(),
                port,
                protocol: protocol.into(),
            })
        };
        for (request, code, message) in [
            (
                trace("x/a", "10.96.0.20", 80, "SCTP"),
                ErrorCode::Invalid,
                "protocol \"SCTP\": give TCP, UDP or ICMP",
            ),
            (
                trace("x/a", "web.shop", 80, "TCP"),
                ErrorCode::Invalid,
                "\"web.shop\" is not an IP address",
            ),
            (
                trace("x/a", "10.96.0.20", 0, "UDP"),
                ErrorCode::Invalid,
                "UDP needs a destination port",
            ),
            (
                trace("x/a", "10.96.0.20", 80, "tcp"),
                ErrorCode::NotFound,
                "no pod \"x/a\" on this node (give its id or NAMESPACE/NAME; `weftctl pod list`)",
            ),
        ] {
            let error = handle(&services, request.clone())
                .await
                .error
                .unwrap_or_else(|| panic!("{request:?} accepted"));
            assert_eq!((error.code, error.message.as_str()), (code, message));
        }
    }

    #[tokio::test]
    async fn ids_pod_add_refuses_are_refused_by_pod_del_and_pod_get() {
        let dir = tempfile::tempdir().unwrap();
        let services = services(dir.path()).await;
        for id in ["../../etc/passwd", "", "a//b", "-x", "a b"] {
            for request in [
                Request::PodDel { id: id.into() },
                Request::PodGet { id: id.into() },
            ] {
                let response = handle(&services, request.clone()).await;
                let error = response
                    .error
                    .unwrap_or_else(|| panic!("{request:?} accepted"));
                assert_eq!(error.code, ErrorCode::Invalid, "{request:?}");
                assert!(
                    error.message.starts_with(&format!("invalid pod id {id:?}")),
                    "{}",
                    error.message
                );
            }
        }
        // A valid unknown id is still fine for pod_del (idempotent).
        let response = handle(
            &services,
            Request::PodDel {
                id: "c1/eth0".into(),
            },
        )
        .await;
        assert!(response.ok);
    }

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
                    cause: DataplaneError::NotRunning,
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
            peers: vec![crate::engine::PeerStatus {
                name: "n2".into(),
                public_key: [0; 32],
                endpoint: Some("192.0.2.2:51820".parse().unwrap()),
                allowed: vec!["10.244.2.0/24".parse().unwrap()],
                last_handshake: Some(std::time::Duration::from_millis(1500)),
                rx_bytes: 1,
                tx_bytes: 2,
                rx_packets: 3,
                tx_packets: 4,
                ready: false,
                queued_packets: 5,
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
        assert_eq!(p.ready, Some(false));
        assert_eq!(p.queued_packets, 5);
        assert_eq!(info.drops[0].reason, "spoofed_source");
    }
}
