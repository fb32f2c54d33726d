//! weft's node agent: keys, the join/watch client, and the userspace packet
//! switch between pod TUN devices, the host TUN `weft0`, and WireGuard
//! (boringtun) peers over one UDP socket.

pub mod agent;
pub mod api;
pub mod cni;
pub mod dataplane;
pub mod host_mounts;
pub mod logging;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod pods;
pub mod registration;
pub mod tun;
pub mod view;
pub mod wg;
