//! One open TUN fd ([`Tun`]) and its tokio wrapper ([`AsyncTun`]).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::errno::Errno;
use tokio::io::unix::AsyncFd;
use tracing::debug;

use super::{sys, validate_ifname, TunError, TunOptions, VNET_HDR_LEN};

const TUN_DEVICE: &str = "/dev/net/tun";

/// How often, and how far apart, an attach that finds the device busy is
/// retried. A forked child keeps a copy of every fd until it execs (ours are
/// all close-on-exec), so a device stays attached for a moment after its
/// owner closed it whenever some thread of the process is spawning a
/// command; likewise while a previous agent is exiting.
const BUSY_RETRIES: u32 = 20;
const BUSY_BACKOFF: Duration = Duration::from_millis(5);

/// An open, non-blocking fd attached to a TUN device. Dropping it detaches;
/// a non-persistent device then disappears.
///
/// With `IFF_VNET_HDR` ([`Tun::has_vnet_hdr`]), [`Tun::try_recv`] and
/// [`Tun::try_send`] still move plain IP packets (they drop and add an
/// all-zero virtio-net header); [`Tun::try_recv_raw`] and
/// [`Tun::try_send_raw`] move the header too, which is how a reader that
/// enabled offloads ([`Tun::set_offload`]) sees and sends super-packets.
#[derive(Debug)]
pub struct Tun {
    file: File,
    name: String,
    vnet_hdr: bool,
}

impl Tun {
    /// Creates the device `name` in the calling thread's network namespace.
    /// Fails with [`TunError::AlreadyExists`] if any interface has that name.
    pub fn create(name: &str, options: &TunOptions) -> Result<Self, TunError> {
        validate_ifname(name)?;
        let tun = Self::open(name, options, true)?;
        debug!(ifname = name, ?options, "created TUN device");
        Ok(tun)
    }

    /// Attaches to the existing TUN device `name` in the calling thread's
    /// network namespace: a persistent device after an agent restart, or one
    /// more queue of a multi-queue device. A single-queue device that stays
    /// attached elsewhere for ~100 ms is [`TunError::Busy`] (this blocks
    /// while it retries).
    pub fn attach(name: &str, options: &TunOptions) -> Result<Self, TunError> {
        validate_ifname(name)?;
        if !interface_exists(name)? {
            return Err(TunError::NotFound { name: name.into() });
        }
        let tun = Self::open_existing(name, options)?;
        debug!(ifname = name, ?options, "attached to TUN device");
        Ok(tun)
    }

    /// Removes the persistent TUN device `name` from the calling thread's
    /// network namespace: attach, clear `TUNSETPERSIST`, close. A device that
    /// another fd holds is reported [`TunError::Busy`]; netlink's
    /// [`crate::kernel::netlink::Netlink::delete_link`] removes it regardless.
    pub fn delete(name: &str) -> Result<(), TunError> {
        validate_ifname(name)?;
        if !interface_exists(name)? {
            return Err(TunError::NotFound { name: name.into() });
        }
        // A multi-queue device only accepts IFF_MULTI_QUEUE attaches.
        let tun = match Self::open_existing(name, &TunOptions::default()) {
            Err(TunError::NotATun { .. }) => {
                let multi_queue = TunOptions {
                    multi_queue: true,
                    ..TunOptions::default()
                };
                Self::open_existing(name, &multi_queue)?
            }
            other => other?,
        };
        tun.set_persist(false)?;
        drop(tun);
        debug!(ifname = name, "deleted TUN device");
        Ok(())
    }

    /// [`Self::open`] without creating, retrying while busy.
    fn open_existing(name: &str, options: &TunOptions) -> Result<Self, TunError> {
        let mut retries = 0;
        loop {
            match Self::open(name, options, false) {
                Err(TunError::Busy { .. }) if retries < BUSY_RETRIES => {
                    retries += 1;
                    std::thread::sleep(BUSY_BACKOFF);
                }
                other => return other,
            }
        }
    }

    fn open(name: &str, options: &TunOptions, exclusive: bool) -> Result<Self, TunError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(|cause| TunError::DeviceUnavailable { cause })?;
        sys::set_iff(file.as_fd(), name, options.iff_flags(exclusive)).map_err(|err| {
            match Errno::from_raw(err.raw_os_error().unwrap_or(0)) {
                Errno::EBUSY if exclusive => TunError::AlreadyExists { name: name.into() },
                Errno::EBUSY => TunError::Busy { name: name.into() },
                Errno::EINVAL => TunError::NotATun { name: name.into() },
                Errno::EPERM | Errno::EACCES => TunError::PermissionDenied {
                    op: "TUNSETIFF",
                    name: name.into(),
                },
                _ => TunError::Ioctl {
                    op: "TUNSETIFF",
                    name: name.into(),
                    cause: err,
                },
            }
        })?;
        let mut tun = Self {
            file,
            name: name.to_owned(),
            vnet_hdr: options.vnet_hdr,
        };
        // What the device really does (a second queue of a multi-queue
        // device keeps the device's flags); the options as a fallback.
        if let Ok(flags) = sys::get_flags(tun.as_fd()) {
            tun.vnet_hdr = i32::from(flags) & libc::IFF_VNET_HDR != 0;
        }
        if let Some(uid) = options.owner {
            sys::set_owner(tun.as_fd(), uid).map_err(|e| tun.ioctl_error("TUNSETOWNER", e))?;
        }
        if let Some(gid) = options.group {
            sys::set_group(tun.as_fd(), gid).map_err(|e| tun.ioctl_error("TUNSETGROUP", e))?;
        }
        // Last: a failure above drops a device that is not yet persistent.
        if options.persist {
            tun.set_persist(true)?;
        }
        Ok(tun)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets or clears `TUNSETPERSIST`.
    pub fn set_persist(&self, persist: bool) -> Result<(), TunError> {
        sys::set_persist(self.as_fd(), persist).map_err(|e| self.ioctl_error("TUNSETPERSIST", e))
    }

    /// `TUNSETVNETHDRSZ`: the virtio-net header size (10 by default, 12 with
    /// mergeable buffers). Only meaningful with [`TunOptions::vnet_hdr`].
    pub fn set_vnet_hdr_size(&self, size: i32) -> Result<(), TunError> {
        sys::set_vnet_hdr_size(self.as_fd(), size)
            .map_err(|e| self.ioctl_error("TUNSETVNETHDRSZ", e))
    }

    /// `TUNSETOFFLOAD`: the `libc::TUN_F_*` offloads this reader accepts
    /// (checksum, TSO, USO). Only meaningful with [`TunOptions::vnet_hdr`].
    pub fn set_offload(&self, flags: u32) -> Result<(), TunError> {
        sys::set_offload(self.as_fd(), flags).map_err(|e| self.ioctl_error("TUNSETOFFLOAD", e))
    }

    /// Whether each read and write carries a virtio-net header
    /// ([`VNET_HDR_LEN`] bytes) before the packet (`IFF_VNET_HDR`).
    pub fn has_vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// Reads one packet without blocking; `WouldBlock` when none is queued.
    /// A packet longer than `buf` is truncated. With `IFF_VNET_HDR` the
    /// header is read and dropped (without offloads it carries nothing).
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.vnet_hdr {
            return (&self.file).read(buf);
        }
        let mut hdr = [0u8; VNET_HDR_LEN];
        let n =
            (&self.file).read_vectored(&mut [IoSliceMut::new(&mut hdr), IoSliceMut::new(buf)])?;
        Ok(n.saturating_sub(VNET_HDR_LEN))
    }

    /// Writes one packet without blocking; `WouldBlock` when the device's
    /// queue is full. The kernel refuses a packet that is not IPv4 or IPv6.
    /// With `IFF_VNET_HDR` an all-zero header goes first (no offload: the
    /// kernel checks the packet's checksums itself).
    pub fn try_send(&self, packet: &[u8]) -> io::Result<usize> {
        if !self.vnet_hdr {
            return (&self.file).write(packet);
        }
        let hdr = [0u8; VNET_HDR_LEN];
        let n = (&self.file).write_vectored(&[IoSlice::new(&hdr), IoSlice::new(packet)])?;
        Ok(n.saturating_sub(VNET_HDR_LEN))
    }

    /// Reads what the fd hands out, without blocking: with `IFF_VNET_HDR`
    /// the virtio-net header and then the packet, else just the packet.
    pub fn try_recv_raw(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes `bytes` as the fd takes them, without blocking: with
    /// `IFF_VNET_HDR` a virtio-net header and then the packet (a
    /// super-packet if the header says GSO), else just the packet.
    pub fn try_send_raw(&self, bytes: &[u8]) -> io::Result<usize> {
        (&self.file).write(bytes)
    }

    /// Registers the fd with the current tokio runtime. Must be called from
    /// within a runtime.
    pub fn into_async(self) -> io::Result<AsyncTun> {
        AsyncTun::new(self)
    }

    fn ioctl_error(&self, op: &'static str, source: io::Error) -> TunError {
        if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EACCES)) {
            TunError::PermissionDenied {
                op,
                name: self.name.clone(),
            }
        } else {
            TunError::Ioctl {
                op,
                name: self.name.clone(),
                cause: source,
            }
        }
    }
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl AsRawFd for Tun {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl From<Tun> for OwnedFd {
    fn from(tun: Tun) -> Self {
        tun.file.into()
    }
}

/// Whether an interface `name` exists in the calling thread's namespace.
fn interface_exists(name: &str) -> Result<bool, TunError> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(_) => Ok(true),
        Err(Errno::ENODEV) => Ok(false),
        Err(errno) => Err(TunError::Ioctl {
            op: "SIOCGIFINDEX",
            name: name.into(),
            cause: errno.into(),
        }),
    }
}

/// A [`Tun`] registered with tokio: `recv` and `send` wait for readiness.
/// `&self` methods, so one task may read while another writes.
#[derive(Debug)]
pub struct AsyncTun {
    fd: AsyncFd<Tun>,
}

impl AsyncTun {
    /// Registers `tun` with the current tokio runtime (an error outside
    /// one).
    pub fn new(tun: Tun) -> io::Result<Self> {
        Ok(Self {
            fd: sys::register(tun)?,
        })
    }

    /// Receives one packet into `buf`, returning its length.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| fd.get_ref().try_recv(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Sends one packet, returning the bytes written.
    pub async fn send(&self, packet: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().try_send(packet)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Polls for one packet; for hand-written futures and batching loops.
    pub fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            match guard.try_io(|fd| fd.get_ref().try_recv(buf)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// Polls to send one packet.
    pub fn poll_send(&self, cx: &mut Context<'_>, packet: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| fd.get_ref().try_send(packet)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    /// The device.
    pub fn get_ref(&self) -> &Tun {
        self.fd.get_ref()
    }

    /// Deregisters from tokio, returning the device.
    pub fn into_inner(self) -> Tun {
        self.fd.into_inner()
    }
}
