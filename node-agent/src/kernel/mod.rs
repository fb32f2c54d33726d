//! The syscall edge: everything that talks to the Linux kernel about
//! devices, namespaces and routes, and nothing else. The engine and the
//! cluster client never configure the kernel themselves; they call here.
//!
//! Files:
//! - [`tun`]: TUN devices (the host TUN `weft0`, persistent pod TUNs), their
//!   ioctls (in the one documented `tun/sys.rs`) and offload negotiation;
//! - [`netlink`]: addresses, routes and links over rtnetlink, never `ip`;
//! - [`netns`]: network namespaces by path, and running code inside one;
//! - [`host_mounts`]: the host's mount namespace, for `/run/netns` mounts
//!   that must outlive the agent;
//! - [`underlay`]: the route and MTU toward the control plane.

pub mod host_mounts;
pub mod netlink;
pub mod netns;
pub mod tun;
pub mod underlay;
