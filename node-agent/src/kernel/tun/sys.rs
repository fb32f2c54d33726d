//! The raw TUN ioctls: one of the two modules of the crate with `unsafe`
//! code (the other is `engine/udp/sys.rs`).
//!
//! SAFETY contract, for every `unsafe` block below: each function takes a
//! borrowed fd of an open `/dev/net/tun` file and one plain value, so no
//! pointer handed to the kernel outlives the call, and the kernel never
//! keeps one. Names reaching [`set_iff`] have passed
//! [`super::validate_ifname`] (at most 15 bytes, no NUL), so they fit in
//! `ifr_name` with its terminating NUL.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use libc::{c_int, c_short, c_ulong};
use tokio::io::unix::AsyncFd;

use super::Tun;

/// `TUNSETIFF`: creates the device `name` with `flags`, or attaches `fd` to
/// the existing device of that name, in the fd's network namespace (the one
/// `/dev/net/tun` was opened in).
pub(super) fn set_iff(fd: BorrowedFd<'_>, name: &str, flags: c_short) -> io::Result<()> {
    let mut req = ifreq(name, flags);
    // SAFETY: `fd` is a live fd (the borrow guarantees it); `req` is a fully
    // initialised `ifreq` on our stack that outlives the call, and TUNSETIFF
    // reads and writes exactly one `struct ifreq` through the pointer.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    check(rc)
}

/// `TUNGETIFF`: the device's `IFF_*` flags as this fd sees them
/// (`IFF_VNET_HDR`, `IFF_MULTI_QUEUE`, ...).
pub(super) fn get_flags(fd: BorrowedFd<'_>) -> io::Result<c_short> {
    let mut req = ifreq("", 0);
    // SAFETY: `fd` is live; `req` is a fully initialised `ifreq` on our
    // stack that outlives the call, and TUNGETIFF writes exactly one
    // `struct ifreq` through the pointer.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNGETIFF,
            &mut req as *mut libc::ifreq,
        )
    };
    check(rc)?;
    // SAFETY: TUNGETIFF filled `ifru_flags`, and every bit pattern is a
    // valid `c_short`.
    Ok(unsafe { req.ifr_ifru.ifru_flags })
}

/// `TUNSETPERSIST`: whether the device outlives its last fd.
pub(super) fn set_persist(fd: BorrowedFd<'_>, persist: bool) -> io::Result<()> {
    set_value(fd, libc::TUNSETPERSIST, c_ulong::from(persist))
}

/// `TUNSETOWNER`: the uid allowed to attach without `CAP_NET_ADMIN`.
pub(super) fn set_owner(fd: BorrowedFd<'_>, uid: u32) -> io::Result<()> {
    set_value(fd, libc::TUNSETOWNER, c_ulong::from(uid))
}

/// `TUNSETGROUP`: the gid allowed to attach without `CAP_NET_ADMIN`.
pub(super) fn set_group(fd: BorrowedFd<'_>, gid: u32) -> io::Result<()> {
    set_value(fd, libc::TUNSETGROUP, c_ulong::from(gid))
}

/// `TUNSETOFFLOAD`: the `TUN_F_*` offloads the reader accepts (needs
/// `IFF_VNET_HDR`).
pub(super) fn set_offload(fd: BorrowedFd<'_>, flags: u32) -> io::Result<()> {
    set_value(fd, libc::TUNSETOFFLOAD, c_ulong::from(flags))
}

/// `TUNSETVNETHDRSZ`: the size of the virtio-net header before each packet.
pub(super) fn set_vnet_hdr_size(fd: BorrowedFd<'_>, size: c_int) -> io::Result<()> {
    // SAFETY: `fd` is live; TUNSETVNETHDRSZ reads one `int` through the
    // pointer, which points at a local that outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size as *const c_int) };
    check(rc)
}

/// The ioctls whose argument is a value, not a pointer.
fn set_value(fd: BorrowedFd<'_>, request: libc::Ioctl, value: c_ulong) -> io::Result<()> {
    // SAFETY: `fd` is live; for the TUN requests passed here (PERSIST, OWNER,
    // GROUP, OFFLOAD) the kernel uses the argument as an integer and never
    // dereferences it.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, value) };
    check(rc)
}

/// Registers `tun` with the current tokio runtime's reactor.
///
/// Fails, rather than panicking, outside a runtime; panics (in tokio) if the
/// runtime was built without IO.
pub(super) fn register(tun: Tun) -> io::Result<AsyncFd<Tun>> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "registering a TUN fd needs a tokio runtime; call this within one",
        ));
    }
    // SAFETY: `Tun` owns its fd (a `File`), and `as_raw_fd` returns that same
    // fd for the Tun's whole life; the `AsyncFd` owns the `Tun`, so the fd
    // stays open and unchanged until the `AsyncFd` is dropped or
    // `into_inner` hands the `Tun` back.
    unsafe { AsyncFd::register(tun) }.map_err(io::Error::from)
}

/// An `ifreq` holding `name` (NUL-terminated) and `flags`.
fn ifreq(name: &str, flags: c_short) -> libc::ifreq {
    // SAFETY: `ifreq` is a plain C struct (a byte array and a union of
    // integers, arrays and raw pointers) for which all-zero bytes are a valid
    // value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // Leave the last byte 0: the kernel reads a NUL-terminated string.
    for (dst, src) in req.ifr_name[..libc::IFNAMSIZ - 1]
        .iter_mut()
        .zip(name.bytes())
    {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = flags;
    req
}

fn check(rc: c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_holds_name_nul_terminated_and_flags() {
        let req = ifreq("weft0", 0x1001);
        let name: Vec<u8> = req.ifr_name.iter().map(|&c| c as u8).collect();
        assert_eq!(&name[..6], b"weft0\0");
        assert!(name[6..].iter().all(|&b| b == 0));
        // SAFETY: the union was written through `ifru_flags` just above.
        assert_eq!(unsafe { req.ifr_ifru.ifru_flags }, 0x1001);
    }

    #[test]
    fn ifreq_truncates_rather_than_overflows() {
        // validate_ifname rejects such names first; the copy must still be
        // bounded if it ever is handed one.
        let req = ifreq("a-name-well-over-sixteen-bytes", 1);
        assert_eq!(req.ifr_name[libc::IFNAMSIZ - 1], 0);
    }
}
