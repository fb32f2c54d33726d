//! weftctl, the weft admin CLI, as a library: the binary is a thin `main.rs`
//! over it.
//!
//! - [`lab`]: the topology layer of the local lab (`weftctl lab up/down/status`)
//!   and of the multi-node end-to-end tests: network namespaces joined by an
//!   underlay bridge, and the processes running inside them.
//! - [`check`]: the connectivity check (inventory, plan, pings, matrix),
//!   one code path for the local lab and for real hosts (`weftctl check`,
//!   which the Vagrant lab runs).
//! - [`text`]: aligned text tables.

pub mod check;
pub mod lab;
pub mod text;
