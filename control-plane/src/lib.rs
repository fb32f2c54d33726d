//! weft's control plane: the gRPC `Cluster` and `Admin` services over TLS,
//! node joins with kubeadm-style tokens, transactional pod-CIDR IPAM, node
//! leases, the cluster's Kubernetes objects (namespaces, pods, Services,
//! NetworkPolicies, EndpointSlices) with ClusterIP/NodePort allocation and
//! controllers, and watch streams, on a revisioned store (embedded redb by
//! default).
//!
//! The binary (`main.rs`) only parses flags and calls [`server::run`].

#![forbid(unsafe_code)]

pub mod auth;
pub mod config;
pub mod controllers;
pub mod feed;
pub mod ipam;
pub mod leader;
pub mod members;
pub mod model;
pub mod objects;
pub mod pki;
pub mod registry;
pub mod server;
pub mod service;
pub mod shared_pki;
pub mod status;
pub mod store;
pub mod transport;
pub mod untrusted;
