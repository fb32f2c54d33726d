//! `weft.v1.Admin`: what operators and automation call. Every call needs
//! the admin credential.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use weft_proto::v1::admin_server::Admin;
use weft_proto::v1::{
    ApplyRequest, ApplyResponse, ClusterInfo, CreateTokenRequest, CreateTokenResponse,
    DeleteObjectsRequest, DeleteObjectsResponse, GetClusterInfoRequest, GetNodeRequest,
    GetNodeResponse, GetObjectsRequest, GetObjectsResponse, LabelObjectRequest,
    LabelObjectResponse, ListNodesRequest, ListNodesResponse, ListTokensRequest,
    ListTokensResponse, RemoveNodeRequest, RemoveNodeResponse, RevokeTokenRequest,
    RevokeTokenResponse,
};

use super::objects;
use crate::auth;
use crate::members;
use crate::registry::{is_ready, Registry, RegistryError};
use crate::untrusted::untrusted;

/// The `Admin` service.
#[derive(Clone)]
pub struct AdminService {
    registry: Arc<Registry>,
}

impl AdminService {
    /// A service on `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        AdminService { registry }
    }
}

fn no_such_node(name: &str) -> Status {
    RegistryError::NotFound(format!(
        "no node named {}; see `weftctl nodes`",
        untrusted(name)
    ))
    .into()
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        auth::require_admin(&req)?;
        let r = req.into_inner();
        let (token, token_string) = self
            .registry
            .create_token(r.ttl_seconds, r.usages, &r.description)
            .await?;
        let control_planes = members::live(
            self.registry.store().as_ref(),
            &self.registry.settings().advertise,
        )
        .await
        .map_err(RegistryError::from)?;
        Ok(Response::new(CreateTokenResponse {
            token: Some(token),
            token_string,
            ca_cert_hash: self.registry.pki().ca_hash().to_string(),
            control_planes,
        }))
    }

    async fn list_tokens(
        &self,
        req: Request<ListTokensRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        auth::require_admin(&req)?;
        Ok(Response::new(ListTokensResponse {
            tokens: self.registry.list_tokens().await?,
        }))
    }

    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        auth::require_admin(&req)?;
        let token = self.registry.revoke_token(&req.get_ref().id).await?;
        Ok(Response::new(RevokeTokenResponse { token: Some(token) }))
    }

    async fn list_nodes(
        &self,
        req: Request<ListNodesRequest>,
    ) -> Result<Response<ListNodesResponse>, Status> {
        auth::require_admin(&req)?;
        let (nodes, revision) = self.registry.list_nodes().await?;
        Ok(Response::new(ListNodesResponse { nodes, revision }))
    }

    async fn get_node(
        &self,
        req: Request<GetNodeRequest>,
    ) -> Result<Response<GetNodeResponse>, Status> {
        auth::require_admin(&req)?;
        let name = &req.get_ref().name;
        match self.registry.get_node(name).await? {
            Some((node, _)) => Ok(Response::new(GetNodeResponse { node: Some(node) })),
            None => Err(no_such_node(name)),
        }
    }

    async fn remove_node(
        &self,
        req: Request<RemoveNodeRequest>,
    ) -> Result<Response<RemoveNodeResponse>, Status> {
        auth::require_admin(&req)?;
        let name = &req.get_ref().name;
        match self
            .registry
            .remove_node(name, "removed by an admin")
            .await?
        {
            Some(node) => Ok(Response::new(RemoveNodeResponse { node: Some(node) })),
            None => Err(no_such_node(name)),
        }
    }

    async fn get_cluster_info(
        &self,
        req: Request<GetClusterInfoRequest>,
    ) -> Result<Response<ClusterInfo>, Status> {
        auth::require_admin(&req)?;
        let (nodes, revision) = self.registry.list_nodes().await?;
        let (total, free) = self.registry.cidr_counts();
        Ok(Response::new(ClusterInfo {
            settings: Some(self.registry.cluster_settings()),
            version: env!("CARGO_PKG_VERSION").to_string(),
            revision,
            nodes_total: nodes.len() as u32,
            nodes_ready: nodes.iter().filter(|n| is_ready(n)).count() as u32,
            node_cidrs_total: total,
            node_cidrs_free: free,
            tokens_active: self.registry.active_tokens().await?,
            ca_cert_hash: self.registry.pki().ca_hash().to_string(),
            store: self.registry.store().describe(),
        }))
    }

    async fn apply(&self, req: Request<ApplyRequest>) -> Result<Response<ApplyResponse>, Status> {
        auth::require_admin(&req)?;
        let r = objects::apply(self.registry.objects(), req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn get_objects(
        &self,
        req: Request<GetObjectsRequest>,
    ) -> Result<Response<GetObjectsResponse>, Status> {
        auth::require_admin(&req)?;
        let r = objects::get(self.registry.objects(), req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn delete_objects(
        &self,
        req: Request<DeleteObjectsRequest>,
    ) -> Result<Response<DeleteObjectsResponse>, Status> {
        auth::require_admin(&req)?;
        let r = objects::delete(self.registry.objects(), req.into_inner()).await?;
        Ok(Response::new(r))
    }

    async fn label_object(
        &self,
        req: Request<LabelObjectRequest>,
    ) -> Result<Response<LabelObjectResponse>, Status> {
        auth::require_admin(&req)?;
        let r = objects::label(self.registry.objects(), req.into_inner()).await?;
        Ok(Response::new(r))
    }
}
