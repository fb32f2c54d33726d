//! `weft.v1.Cluster`: what node agents call.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weft_proto::v1::cluster_server::Cluster;
use weft_proto::v1::{
    JoinRequest, JoinResponse, LeaveRequest, LeaveResponse, ObjectRef, RegisterPodRequest,
    RegisterPodResponse, RenewLeaseRequest, RenewLeaseResponse, SyncPodsRequest, SyncPodsResponse,
    UnregisterPodRequest, UnregisterPodResponse, UpdateNodeRequest, UpdateNodeResponse,
    WatchRequest,
};

use super::objects::applied;
use super::watch::{watch, WatchResponseStream};
use crate::auth;
use crate::feed::Feed;
use crate::registry::{JoinInput, NodeUpdate, Registry, RegistryError};
use crate::untrusted::untrusted;

/// The `Cluster` service.
#[derive(Clone)]
pub struct ClusterService {
    registry: Arc<Registry>,
    feed: Arc<Feed>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl ClusterService {
    /// A service on `registry`, watches served from `feed`; watch streams
    /// end when `shutdown` turns true.
    pub fn new(
        registry: Arc<Registry>,
        feed: Arc<Feed>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        ClusterService {
            registry,
            feed,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    // The name is the caller's, unchecked yet: logged escaped and cut short.
    #[tracing::instrument(skip_all, fields(node = %untrusted(&req.get_ref().node_name)))]
    async fn join(&self, req: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let r = req.into_inner();
        let joined = self
            .registry
            .join(JoinInput {
                token: r.token,
                node_name: r.node_name,
                public_key: r.public_key,
                endpoints: r.endpoints,
                labels: r.labels,
                csr_pem: r.csr_pem,
            })
            .await
            .inspect_err(|e| tracing::info!(error = %e, "join refused"))?;
        Ok(Response::new(JoinResponse {
            node: Some(joined.node),
            settings: Some(self.registry.cluster_settings()),
            certificate_pem: joined.certificate_pem,
            ca_pem: self.registry.pki().ca_pem().to_string(),
        }))
    }

    type WatchStream = WatchResponseStream;

    async fn watch(
        &self,
        req: Request<WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        auth::require_reader(&req)?;
        let resume = req.get_ref().resume_revision;
        let stream = watch(
            &self.feed,
            self.registry.cluster_settings(),
            self.registry.settings().watch_keepalive,
            resume,
            self.shutdown.clone(),
        )
        .await?;
        Ok(Response::new(stream))
    }

    async fn renew_lease(
        &self,
        req: Request<RenewLeaseRequest>,
    ) -> Result<Response<RenewLeaseResponse>, Status> {
        let name = auth::require_node(&req)?;
        let state = self.registry.renew_lease(&name).await?;
        Ok(Response::new(RenewLeaseResponse {
            lease_ttl_seconds: self.registry.settings().lease_ttl.as_secs() as u32,
            state: state as i32,
        }))
    }

    async fn update_node(
        &self,
        req: Request<UpdateNodeRequest>,
    ) -> Result<Response<UpdateNodeResponse>, Status> {
        let name = auth::require_self(&req, &req.get_ref().node_name)?;
        let r = req.into_inner();
        let update = NodeUpdate {
            endpoints: (r.clear_endpoints || !r.endpoints.is_empty()).then_some(r.endpoints),
            public_key: (!r.public_key.is_empty()).then_some(r.public_key),
            labels: r.replace_labels.then_some(r.labels),
        };
        let node = self.registry.update_node(&name, update).await?;
        Ok(Response::new(UpdateNodeResponse { node: Some(node) }))
    }

    async fn leave(&self, req: Request<LeaveRequest>) -> Result<Response<LeaveResponse>, Status> {
        let name = auth::require_self(&req, &req.get_ref().node_name)?;
        match self.registry.remove_node(&name, "node left").await? {
            Some(_) => Ok(Response::new(LeaveResponse {})),
            None => {
                Err(RegistryError::NotFound(format!("node {name} is not in the cluster")).into())
            }
        }
    }

    async fn register_pod(
        &self,
        req: Request<RegisterPodRequest>,
    ) -> Result<Response<RegisterPodResponse>, Status> {
        let node = auth::require_node(&req)?;
        let r = req.into_inner();
        let (a, _) = self.registry.objects().register_pod(&node, &r.pod).await?;
        Ok(Response::new(RegisterPodResponse {
            pod: Some(applied(&a)?),
        }))
    }

    async fn unregister_pod(
        &self,
        req: Request<UnregisterPodRequest>,
    ) -> Result<Response<UnregisterPodResponse>, Status> {
        let node = auth::require_node(&req)?;
        let r = req.into_inner();
        let (found, revision) = self
            .registry
            .objects()
            .unregister_pod(&node, &r.namespace, &r.name)
            .await?;
        Ok(Response::new(UnregisterPodResponse { found, revision }))
    }

    async fn sync_pods(
        &self,
        req: Request<SyncPodsRequest>,
    ) -> Result<Response<SyncPodsResponse>, Status> {
        let node = auth::require_node(&req)?;
        let r = req.into_inner();
        let (results, removed, revision) =
            self.registry.objects().sync_pods(&node, &r.pods).await?;
        Ok(Response::new(SyncPodsResponse {
            pods: results.iter().map(applied).collect::<Result<_, _>>()?,
            removed: removed
                .into_iter()
                .map(|(namespace, name)| ObjectRef {
                    kind: "Pod".into(),
                    namespace,
                    name,
                })
                .collect(),
            revision,
        }))
    }
}
