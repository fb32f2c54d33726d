//! `recvmmsg` / `sendmmsg` with per-message control data: one of the
//! two modules of the crate with `unsafe` code (the other is
//! `kernel/tun/sys.rs`).
//!
//! Why not nix's wrappers: its `sendmmsg` applies one set of control
//! messages to every message (a UDP GSO batch needs a segment size per
//! message), and its `recvmmsg` never resets each header's address and
//! control lengths, which the kernel shrinks to what the last datagram
//! used, so a later UDP GRO segment size would be cut off (`MSG_CTRUNC`).
//! Here every call rebuilds each header from scratch.
//!
//! SAFETY contract, for every `unsafe` block below: each header handed to the
//! kernel points only at memory that this struct owns or that the call
//! borrows (the datagram bytes, the destination addresses), with its true
//! length, and no pointer is used after the call returns; the next call
//! overwrites them all. The structs hold raw pointers, so they are neither
//! `Send` nor `Sync`: they live and die on the engine thread.

#![allow(unsafe_code)]

use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::RawFd;
use std::ptr;

use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// Room for the control messages of one datagram (a UDP_GRO or UDP_SEGMENT
/// value needs `CMSG_SPACE(4)`, 24 bytes on 64-bit), aligned for
/// `cmsghdr`.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct Cmsg([u8; 64]);

/// An all-zero `mmsghdr`.
fn empty_header() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is a plain C struct of integers and raw pointers;
    // all zeros (null pointers, zero lengths) is a valid value.
    unsafe { zeroed() }
}

/// Headers, addresses and control buffers for receiving a batch.
pub(super) struct RecvHeaders {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    cmsgs: Box<[Cmsg]>,
}

impl RecvHeaders {
    /// Room for `n` datagrams per call.
    pub(super) fn new(n: usize) -> Self {
        // SAFETY: `sockaddr_storage` is a plain C struct; all zeros is valid.
        let addr: libc::sockaddr_storage = unsafe { zeroed() };
        Self {
            hdrs: vec![empty_header(); n].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0
                };
                n
            ]
            .into_boxed_slice(),
            addrs: vec![addr; n].into_boxed_slice(),
            cmsgs: vec![Cmsg([0; 64]); n].into_boxed_slice(),
        }
    }

    /// Receives up to `n` datagrams (or GRO batches) without blocking, the
    /// `i`-th into `bufs[i * slot..][..slot]`. Returns how many arrived.
    pub(super) fn recv(&mut self, fd: RawFd, bufs: &mut [u8], slot: usize) -> io::Result<usize> {
        let n = self.hdrs.len().min(bufs.len() / slot.max(1));
        for (i, chunk) in bufs.chunks_exact_mut(slot.max(1)).take(n).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = ptr::addr_of_mut!(self.addrs[i]).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = self.cmsgs[i].0.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = size_of::<Cmsg>() as _;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: headers 0..n point at their own iovec (a `slot` chunk of
        // `bufs`, mutably borrowed for this call), sockaddr_storage and
        // control buffer, each with its real size; the kernel writes within
        // those. See the module invariants.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Bytes of message `i` of the last call.
    pub(super) fn len(&self, i: usize) -> usize {
        self.hdrs.get(i).map_or(0, |h| h.msg_len as usize)
    }

    /// Whether message `i` was cut to fit its buffer.
    pub(super) fn truncated(&self, i: usize) -> bool {
        self.hdrs
            .get(i)
            .is_some_and(|h| h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0)
    }

    /// The source address of message `i`.
    pub(super) fn source(&self, i: usize) -> Option<SockaddrStorage> {
        let h = self.hdrs.get(i)?;
        let addr = self.addrs.get(i)?;
        let len = h.msg_hdr.msg_namelen;
        if len == 0 || len as usize > size_of::<libc::sockaddr_storage>() {
            return None;
        }
        // SAFETY: `addr` is a live, initialised sockaddr_storage into which
        // the kernel wrote an address of `len` bytes (checked to fit);
        // `from_raw` reads at most `len` bytes and checks the family.
        unsafe { SockaddrStorage::from_raw(ptr::addr_of!(*addr).cast(), Some(len)) }
    }

    /// The UDP GRO segment size of message `i` (each datagram of the batch
    /// is that long but the last), if the kernel coalesced it.
    // `msg_controllen` and `cmsg_len` are `usize` with glibc, `u32` with
    // musl.
    #[allow(clippy::unnecessary_cast)]
    pub(super) fn gro_segment(&self, i: usize) -> Option<usize> {
        let h = self.hdrs.get(i)?;
        let cmsgs = self.cmsgs.get(i)?;
        let controllen = (h.msg_hdr.msg_controllen as usize).min(size_of::<Cmsg>());
        // Walk the control messages on a copy of the header whose control
        // pointer is our own buffer (whatever the last call left in it).
        let mut msg: libc::msghdr = h.msg_hdr;
        msg.msg_control = cmsgs.0.as_ptr().cast_mut().cast();
        msg.msg_controllen = controllen as _;
        // SAFETY: `msg` describes `controllen` bytes of `cmsgs`, which the
        // kernel filled with well-formed control messages; CMSG_FIRSTHDR
        // and CMSG_NXTHDR stay within `msg_controllen`, and each header is
        // read only after they returned it (non-null, inside the buffer).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                let cmsg = ptr::read_unaligned(c);
                if cmsg.cmsg_level == libc::SOL_UDP
                    && cmsg.cmsg_type == libc::UDP_GRO
                    && cmsg.cmsg_len as usize
                        >= libc::CMSG_LEN(size_of::<libc::c_int>() as _) as usize
                {
                    let size: libc::c_int = ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    return usize::try_from(size).ok().filter(|s| *s > 0);
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        None
    }
}

/// One message to send: `len` bytes at `start` of the arena, to `dst`; with
/// `segment > 0` a UDP GSO batch of `segment`-byte datagrams (the last may
/// be shorter).
#[derive(Debug, Clone, Copy)]
pub(super) struct OutMsg {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) dst: SockaddrStorage,
    pub(super) segment: u16,
}

/// Headers and control buffers for sending a batch.
pub(super) struct SendHeaders {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    cmsgs: Box<[Cmsg]>,
}

impl SendHeaders {
    /// Room for `n` messages per call.
    pub(super) fn new(n: usize) -> Self {
        Self {
            hdrs: vec![empty_header(); n].into_boxed_slice(),
            iovs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0
                };
                n
            ]
            .into_boxed_slice(),
            cmsgs: vec![Cmsg([0; 64]); n].into_boxed_slice(),
        }
    }

    /// Sends up to `n` of `msgs` (their bytes in `arena`) without blocking.
    /// Returns how many the kernel took (the first failing one is the
    /// error if none was).
    pub(super) fn send(&mut self, fd: RawFd, arena: &[u8], msgs: &[OutMsg]) -> io::Result<usize> {
        let n = self.hdrs.len().min(msgs.len());
        for (i, m) in msgs.iter().take(n).enumerate() {
            let bytes = arena.get(m.start..m.start + m.len).unwrap_or_default();
            self.iovs[i] = libc::iovec {
                iov_base: bytes.as_ptr().cast_mut().cast(),
                iov_len: bytes.len(),
            };
            let h = &mut self.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = m.dst.as_ptr().cast_mut().cast();
            h.msg_hdr.msg_namelen = m.dst.len();
            h.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_flags = 0;
            if m.segment > 0 && usize::from(m.segment) < m.len {
                let c = &mut self.cmsgs[i];
                h.msg_hdr.msg_control = c.0.as_mut_ptr().cast();
                // SAFETY: CMSG_SPACE is arithmetic on its argument.
                h.msg_hdr.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as _) } as _;
                // SAFETY: the header now describes `c` (64 bytes, aligned for
                // cmsghdr) with `CMSG_SPACE(2)` (24) bytes, so CMSG_FIRSTHDR
                // returns the start of `c` and CMSG_DATA a pointer 2 bytes of
                // which fit inside it.
                unsafe {
                    let first = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                    let mut cmsg: libc::cmsghdr = zeroed();
                    cmsg.cmsg_len = libc::CMSG_LEN(size_of::<u16>() as _) as _;
                    cmsg.cmsg_level = libc::SOL_UDP;
                    cmsg.cmsg_type = libc::UDP_SEGMENT;
                    ptr::write_unaligned(first, cmsg);
                    ptr::write_unaligned(libc::CMSG_DATA(first).cast::<u16>(), m.segment);
                }
            } else {
                h.msg_hdr.msg_control = ptr::null_mut();
                h.msg_hdr.msg_controllen = 0;
            }
        }
        // SAFETY: headers 0..n point at their iovec (bytes of `arena`,
        // borrowed for this call), the destination address inside `msgs`
        // (borrowed) with its length, and their control buffer; the kernel
        // only reads them. See the module invariants.
        let rc = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    use super::super::{tune, RxBatch, TxBatch, GSO_INVALID_STREAK, GSO_RETRY_INITIAL};

    /// `a` with UDP checksums off: the kernel then refuses every GSO
    /// message with EINVAL, as it does a message of over-MTU datagrams.
    fn no_checksums(a: &UdpSocket) {
        let one: libc::c_int = 1;
        // SAFETY: `a` is a live socket; SO_NO_CHECK reads one int from the
        // pointer, which points at a local that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }

    /// Receives datagrams for up to `wait`: how many arrived.
    fn drain(rx: &mut RxBatch, wait: std::time::Duration) -> usize {
        let mut got = 0;
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            match rx.recv() {
                Ok(n) => (0..n).for_each(|i| got += rx.get(i).datagrams().count()),
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        got
    }

    #[test]
    fn a_malformed_gso_message_is_dropped_and_counted_and_gso_stays_on() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        tune(&a, 1 << 20, true).unwrap();
        tune(&b, 1 << 20, false).unwrap();
        no_checksums(&a);
        let b_addr = b.local_addr().unwrap();
        let mut rx = RxBatch::new(&b);
        let mut tx = TxBatch::new(a, true);
        for i in 0..10u8 {
            tx.push(&[i; 300], b_addr);
        }
        tx.flush();
        assert!(tx.gso(), "one refused message does not turn GSO off");
        assert_eq!(
            (tx.stats.sent, tx.stats.gso_invalid, tx.stats.errors),
            (0, 10, 0)
        );
        // Single datagrams still go.
        tx.push(&[7; 300], b_addr);
        tx.flush();
        assert_eq!(tx.stats.sent, 1);
        assert_eq!(drain(&mut rx, std::time::Duration::from_millis(300)), 1);
    }

    #[test]
    fn a_streak_of_refusals_turns_gso_off_for_a_while_then_it_is_tried_again() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        tune(&a, 1 << 20, true).unwrap();
        tune(&b, 1 << 20, false).unwrap();
        no_checksums(&a);
        let b_addr = b.local_addr().unwrap();
        let mut rx = RxBatch::new(&b);
        let mut tx = TxBatch::new(a, true);
        for _ in 0..GSO_INVALID_STREAK {
            for i in 0..4u8 {
                tx.push(&[i; 300], b_addr);
            }
            tx.flush();
        }
        assert!(!tx.gso(), "a socket that refuses every GSO message");
        // Off: runs go datagram by datagram, and arrive.
        for i in 0..4u8 {
            tx.push(&[i; 300], b_addr);
        }
        tx.flush();
        assert_eq!(tx.stats.sent, 4);
        assert_eq!(drain(&mut rx, std::time::Duration::from_millis(300)), 4);
        // After the off period GSO is tried again (a flush turns it on).
        std::thread::sleep(GSO_RETRY_INITIAL + std::time::Duration::from_millis(100));
        tx.flush();
        assert!(tx.gso(), "GSO is tried again after {GSO_RETRY_INITIAL:?}");
    }
}
