//! weft's node agent: the IO shell around the sans-IO packet core
//! [`weft_switch`]. The folders are its architecture:
//!
//! - [`engine`]: the data-plane engine: one thread, one epoll loop over the
//!   TUNs and the UDP socket, the switch's decision dispatched to ports and
//!   peers, and a control channel for peers, pods and status;
//! - [`wg`]: WireGuard (the only user of boringtun) and the node's key;
//! - [`kernel`]: the syscall edge: TUN devices, netlink, namespaces, mounts;
//! - [`cluster`]: the control-plane client: join, watch, lease, state;
//! - [`pods`], [`cni`], [`api`]: pod attachment, the CNI plugin, the local
//!   API; [`metrics`], [`logging`];
//! - [`view`], [`services`]: the cluster's objects, and the Services
//!   compiled from them for the engine;
//! - [`agent`]: the `weft-agent` binary's flags and wiring.

pub mod agent;
pub mod api;
pub mod cluster;
pub mod cni;
pub mod dns;
pub mod engine;
pub mod kernel;
pub mod logging;
pub mod metrics;
pub mod pods;
pub mod policy;
pub mod registration;
pub mod services;
pub mod view;
pub mod wg;
