//! TUN devices: the pod ports and the host port `weft0` of the switch.
//!
//! Contract:
//! - A [`Tun`] is an open, non-blocking fd attached to one L3 TUN device
//!   (`IFF_TUN | IFF_NO_PI`): each read returns one IP packet, each write
//!   injects one. No packet-information header. With
//!   [`TunOptions::vnet_hdr`] (the ports' default) a virtio-net header
//!   precedes each packet on the fd: [`Tun::try_recv`] / [`Tun::try_send`]
//!   hide it, [`Tun::try_recv_raw`] / [`Tun::try_send_raw`] expose it for
//!   the data plane's offloads (TSO/GRO super-packets, see
//!   [`Tun::set_offload`]).
//! - A device is created in the network namespace of the calling *thread*.
//!   To own a TUN inside a pod's namespace, create it inside
//!   [`crate::kernel::netns::run_in`]; the fd then works from any thread.
//! - A persistent device ([`TunOptions::persist`]) outlives its fd and the
//!   agent: a restarted agent re-attaches by name with [`Tun::attach`] (in the
//!   same namespace), and [`Tun::delete`] (or netlink) removes it.
//! - [`AsyncTun`] is the tokio reader/writer; [`Tun`] also exposes its raw fd
//!   for batched IO.
//! - [`create_pod_tun`] and friends combine the three kernel edges (TUN,
//!   namespace, netlink) into the steps the agent takes for a port.
//! - All `unsafe` code (the ioctls) lives in the private `sys` module.

mod device;
mod port;
mod sys;

use thiserror::Error;

pub use device::{AsyncTun, Tun};
pub use port::{
    attach_existing_pod_tun, configure_host_tun, create_pod_tun, delete_pod_tun, ensure_host_tun,
    open_host_tun, port_state, KernelError, PortSpec, PortState,
};

/// The size of the virtio-net header (`struct virtio_net_hdr`, the
/// kernel's default `TUNSETVNETHDRSZ`) before each packet on a TUN with
/// [`TunOptions::vnet_hdr`]; the header itself is `weft_switch`'s.
pub use weft_switch::offload::VNET_HDR_LEN;

/// The longest interface name Linux accepts, in bytes (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = libc::IFNAMSIZ - 1;

/// An interface name Linux would refuse, or that `TUNSETIFF` would treat as
/// a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("invalid interface name {name:?}: {reason}")]
pub struct InvalidIfName {
    /// The name as given.
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

/// Checks `name` against the kernel's rules for interface names
/// (`dev_valid_name`), plus no `%` (which `TUNSETIFF` would expand as a
/// pattern, creating a device under another name).
pub fn validate_ifname(name: &str) -> Result<(), InvalidIfName> {
    let reason = if name.is_empty() {
        Some("must not be empty")
    } else if name.len() > MAX_IFNAME_LEN {
        Some("longer than 15 bytes (IFNAMSIZ - 1)")
    } else if name == "." || name == ".." {
        Some("must not be \".\" or \"..\"")
    } else if name.contains('/') {
        Some("must not contain '/'")
    } else if name.contains(':') {
        Some("must not contain ':'")
    } else if name.contains('%') {
        Some("must not contain '%'")
    } else if name.contains('\0') {
        Some("must not contain NUL")
    } else if name.bytes().any(|b| b.is_ascii_whitespace() || b == 0x0b) {
        Some("must not contain whitespace")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(InvalidIfName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// How a TUN device is created or attached. The default is a plain,
/// single-queue, non-persistent L3 TUN owned by root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunOptions {
    /// Keep the device when its last fd closes (`TUNSETPERSIST`). On attach,
    /// `true` makes an existing device persistent and `false` leaves it as is.
    pub persist: bool,
    /// `IFF_MULTI_QUEUE`: every [`Tun::attach`] adds a queue (one fd each).
    /// Attaching must use the same setting the device was created with.
    pub multi_queue: bool,
    /// `IFF_VNET_HDR`: a virtio-net header precedes each packet; see
    /// [`Tun::set_vnet_hdr_size`] and [`Tun::set_offload`].
    pub vnet_hdr: bool,
    /// `TUNSETOWNER`: a uid that may attach without `CAP_NET_ADMIN`.
    pub owner: Option<u32>,
    /// `TUNSETGROUP`: a gid that may attach without `CAP_NET_ADMIN`.
    pub group: Option<u32>,
}

impl TunOptions {
    /// The pod and host ports: persistent, with a virtio-net header (so
    /// the data plane can turn offloads on; plain reads and writes hide the
    /// header).
    pub fn persistent() -> Self {
        Self {
            persist: true,
            vnet_hdr: true,
            ..Self::default()
        }
    }

    /// The `ifr_flags` for `TUNSETIFF`.
    fn iff_flags(&self, exclusive: bool) -> libc::c_short {
        let mut flags = libc::IFF_TUN | libc::IFF_NO_PI;
        if self.multi_queue {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        if self.vnet_hdr {
            flags |= libc::IFF_VNET_HDR;
        }
        if exclusive {
            flags |= libc::IFF_TUN_EXCL;
        }
        // ifr_flags is a C short; IFF_TUN_EXCL is its sign bit.
        flags as u16 as libc::c_short
    }
}

/// Why opening, attaching, configuring or deleting a TUN device failed.
#[derive(Debug, Error)]
pub enum TunError {
    /// The name is not a valid Linux interface name.
    #[error(transparent)]
    InvalidName(#[from] InvalidIfName),
    /// `/dev/net/tun` cannot be opened (no TUN support, or no access).
    #[error("cannot open /dev/net/tun: {cause}")]
    DeviceUnavailable {
        /// The error from `open`.
        cause: std::io::Error,
    },
    /// Exclusive creation found an interface of that name.
    #[error("network interface {name} already exists")]
    AlreadyExists {
        /// The interface name.
        name: String,
    },
    /// Attach or delete found no interface of that name in this namespace.
    #[error("no network interface named {name} in this network namespace")]
    NotFound {
        /// The interface name.
        name: String,
    },
    /// The interface exists but is not a TUN device (or is a TUN whose
    /// multi-queue setting differs from the one asked for).
    #[error("network interface {name} is not a TUN device, or its multi-queue setting differs")]
    NotATun {
        /// The interface name.
        name: String,
    },
    /// A single-queue TUN already has an fd attached (another agent?).
    #[error("TUN device {name} is already attached to another file descriptor")]
    Busy {
        /// The interface name.
        name: String,
    },
    /// The caller lacks `CAP_NET_ADMIN` and is not the device's owner.
    #[error(
        "permission denied: {op} on TUN device {name} needs CAP_NET_ADMIN or the device's owner"
    )]
    PermissionDenied {
        /// The operation, e.g. `TUNSETIFF`.
        op: &'static str,
        /// The interface name.
        name: String,
    },
    /// Any other ioctl failure.
    #[error("{op} on TUN device {name}: {cause}")]
    Ioctl {
        /// The operation, e.g. `TUNSETPERSIST`.
        op: &'static str,
        /// The interface name.
        name: String,
        /// The OS error.
        cause: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_pass() {
        for name in ["weft0", "eth0", "a", "pod-1234567890a", "tun.1", "w_0"] {
            assert_eq!(validate_ifname(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn invalid_names_say_why() {
        let cases = [
            ("", "empty"),
            ("sixteen-bytes-xx", "longer than 15 bytes"),
            (".", "\".\""),
            ("..", "\".\""),
            ("a/b", "'/'"),
            ("a:b", "':'"),
            ("tun%d", "'%'"),
            ("a b", "whitespace"),
            ("a\tb", "whitespace"),
            ("a\nb", "whitespace"),
            ("a\0b", "NUL"),
        ];
        for (name, why) in cases {
            let err = validate_ifname(name).unwrap_err();
            assert!(err.reason.contains(why), "{name:?}: {err}");
            assert!(err.to_string().starts_with("invalid interface name"));
        }
    }

    #[test]
    fn fifteen_bytes_is_the_limit() {
        assert!(validate_ifname("fifteen-bytes-x").is_ok());
        assert!(validate_ifname("sixteen-bytes-xx").is_err());
        // Bytes, not chars: 8 two-byte chars are 16 bytes.
        assert!(validate_ifname("éééééééé").is_err());
    }

    #[test]
    fn flags_follow_options() {
        let base = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        assert_eq!(TunOptions::default().iff_flags(false), base);
        let all = TunOptions {
            multi_queue: true,
            vnet_hdr: true,
            ..TunOptions::default()
        };
        let flags = all.iff_flags(true) as u16 as libc::c_int;
        assert_ne!(flags & libc::IFF_MULTI_QUEUE, 0);
        assert_ne!(flags & libc::IFF_VNET_HDR, 0);
        assert_ne!(flags & libc::IFF_TUN_EXCL, 0);
        assert_eq!(flags & libc::IFF_TAP, 0);
    }
}
