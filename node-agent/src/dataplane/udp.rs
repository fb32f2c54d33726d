//! The UDP socket that carries WireGuard: socket tuning, and batched
//! receive (`recvmmsg`) and send (`sendmmsg`) into preallocated buffers.
//!
//! Contract:
//! - [`tune`] makes the socket non-blocking and asks for large kernel
//!   buffers (the `*FORCE` options when privileged, else the capped ones).
//! - [`RxBatch::recv`] reads up to [`BATCH`] datagrams per syscall; each
//!   gets a [`MAX_DATAGRAM`] slot, so none is truncated in practice.
//! - [`TxBatch`] collects up to [`BATCH`] outgoing datagrams in its own
//!   slots (each big enough for an encrypted maximum-size IP packet) and
//!   sends them with one `sendmmsg` on [`TxBatch::flush`], or when full. A
//!   full socket buffer drops the rest of the batch (counted); nothing
//!   blocks.
//! - Addresses: an IPv4-mapped IPv6 source is reported as IPv4, and an IPv4
//!   destination is mapped when the socket is IPv6 (dual-stack).
//! - No allocation after construction. The `MultiHeaders` hold raw
//!   pointers, so both batches are built on the engine thread.
//! - One socket, one address family: nix's `recvmmsg` does not reset each
//!   header's address length between calls, which is harmless only because
//!   every source a socket reports has the same size (`sockaddr_in`, or
//!   `sockaddr_in6` for an IPv6 socket, mapped IPv4 included).

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{
    getsockopt, recvmmsg, sendmmsg, setsockopt, sockopt, ControlMessage, MsgFlags, MultiHeaders,
    SockaddrStorage,
};

/// Datagrams per `recvmmsg` / `sendmmsg`.
pub(super) const BATCH: usize = 32;

/// The largest datagram (and IP packet) the engine handles.
pub(super) const MAX_DATAGRAM: usize = 65_536;

/// An outgoing slot: the largest IP packet plus WireGuard's overhead.
pub(super) const TX_SLOT: usize = MAX_DATAGRAM + 64;

/// The kernel socket buffers asked for, each way.
pub(super) const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// The buffer sizes the kernel granted (it reports twice what was set).
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketBuffers {
    pub(super) receive: usize,
    pub(super) send: usize,
}

/// Non-blocking, with `bytes` of kernel buffer each way if allowed.
pub(super) fn tune(socket: &UdpSocket, bytes: usize) -> io::Result<SocketBuffers> {
    socket.set_nonblocking(true)?;
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(socket, sockopt::RcvBuf, &bytes)?;
    }
    if setsockopt(socket, sockopt::SndBufForce, &bytes).is_err() {
        setsockopt(socket, sockopt::SndBuf, &bytes)?;
    }
    Ok(SocketBuffers {
        receive: getsockopt(socket, sockopt::RcvBuf)?,
        send: getsockopt(socket, sockopt::SndBuf)?,
    })
}

/// `ss` as a `SocketAddr`, IPv4-mapped addresses unmapped.
fn socket_addr(ss: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4(SocketAddrV4::from(*v4)));
    }
    let v6 = SocketAddrV6::from(*ss.as_sockaddr_in6()?);
    Some(match v6.ip().to_ipv4_mapped() {
        Some(ip) => SocketAddr::V4(SocketAddrV4::new(ip, v6.port())),
        None => SocketAddr::V6(v6),
    })
}

/// One received datagram.
pub(super) struct Datagram<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) src: Option<SocketAddr>,
    pub(super) truncated: bool,
}

/// Batched receive buffers.
pub(super) struct RxBatch {
    fd: RawFd,
    bufs: Box<[u8]>,
    headers: MultiHeaders<SockaddrStorage>,
    lens: [usize; BATCH],
    srcs: [Option<SocketAddr>; BATCH],
    truncated: [bool; BATCH],
}

impl RxBatch {
    /// Buffers for reading from `socket`, which must outlive the batch.
    pub(super) fn new(socket: &UdpSocket) -> Self {
        Self {
            fd: socket.as_raw_fd(),
            bufs: vec![0; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            headers: MultiHeaders::preallocate(BATCH, None),
            lens: [0; BATCH],
            srcs: [None; BATCH],
            truncated: [false; BATCH],
        }
    }

    /// Receives up to [`BATCH`] datagrams; `WouldBlock` when none is queued.
    pub(super) fn recv(&mut self) -> io::Result<usize> {
        let mut chunks = self.bufs.chunks_exact_mut(MAX_DATAGRAM);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] =
            std::array::from_fn(|_| [IoSliceMut::new(chunks.next().unwrap_or_default())]);
        // EINTR (unlikely without blocking) surfaces as `Interrupted`.
        let results = recvmmsg(
            self.fd,
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        let mut n = 0;
        for (i, msg) in results.enumerate().take(BATCH) {
            self.lens[i] = msg.bytes;
            self.srcs[i] = msg.address.as_ref().and_then(socket_addr);
            self.truncated[i] = msg.flags.contains(MsgFlags::MSG_TRUNC);
            n = i + 1;
        }
        Ok(n)
    }

    /// Datagram `i` of the last [`Self::recv`].
    pub(super) fn get(&self, i: usize) -> Datagram<'_> {
        let start = i * MAX_DATAGRAM;
        let len = self.lens[i].min(MAX_DATAGRAM);
        Datagram {
            bytes: &self.bufs[start..start + len],
            src: self.srcs[i],
            truncated: self.truncated[i],
        }
    }
}

/// What happened to the datagrams handed to a [`TxBatch`].
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct TxStats {
    /// Accepted by the kernel.
    pub(super) sent: u64,
    /// Dropped: the socket's send buffer was full.
    pub(super) full: u64,
    /// Dropped: refused (unreachable, too big, ...).
    pub(super) errors: u64,
}

/// Batched send buffers, owning the socket.
pub(super) struct TxBatch {
    socket: UdpSocket,
    v6: bool,
    bufs: Box<[u8]>,
    lens: [usize; BATCH],
    dsts: [Option<SockaddrStorage>; BATCH],
    n: usize,
    headers: MultiHeaders<SockaddrStorage>,
    pub(super) stats: TxStats,
}

impl TxBatch {
    /// Buffers for sending on `socket`.
    pub(super) fn new(socket: UdpSocket) -> Self {
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Self {
            socket,
            v6,
            bufs: vec![0; BATCH * TX_SLOT].into_boxed_slice(),
            lens: [0; BATCH],
            dsts: [None; BATCH],
            n: 0,
            headers: MultiHeaders::preallocate(BATCH, None),
            stats: TxStats::default(),
        }
    }

    /// The next free slot ([`TX_SLOT`] bytes); sends the batch first if it
    /// is full. Fill it, then [`Self::commit`] it.
    pub(super) fn slot(&mut self) -> &mut [u8] {
        if self.n == BATCH {
            self.flush();
        }
        let start = self.n * TX_SLOT;
        &mut self.bufs[start..start + TX_SLOT]
    }

    /// Queues the first `len` bytes of the slot from [`Self::slot`] for `dst`.
    pub(super) fn commit(&mut self, len: usize, dst: SocketAddr) {
        if self.n == BATCH {
            // `slot` flushed; a commit without a slot has nothing to send.
            return;
        }
        self.lens[self.n] = len.min(TX_SLOT);
        self.dsts[self.n] = Some(self.sockaddr(dst));
        self.n += 1;
    }

    /// Copies `bytes` into a slot and queues it for `dst`.
    pub(super) fn push(&mut self, bytes: &[u8], dst: SocketAddr) {
        let len = bytes.len().min(TX_SLOT);
        self.slot()[..len].copy_from_slice(&bytes[..len]);
        self.commit(len, dst);
    }

    fn sockaddr(&self, dst: SocketAddr) -> SockaddrStorage {
        match dst {
            SocketAddr::V4(v4) if self.v6 => {
                SockaddrStorage::from(SocketAddrV6::new(v4.ip().to_ipv6_mapped(), v4.port(), 0, 0))
            }
            other => SockaddrStorage::from(other),
        }
    }

    /// Sends everything queued.
    pub(super) fn flush(&mut self) {
        let n = self.n;
        self.n = 0;
        if n == 0 {
            return;
        }
        let fd = self.socket.as_raw_fd();
        let mut start = 0;
        while start < n {
            let mut chunks = self.bufs.chunks_exact(TX_SLOT);
            let lens = &self.lens;
            let mut i = 0;
            let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                let chunk = chunks.next().unwrap_or_default();
                let len = lens[i].min(chunk.len());
                i += 1;
                [IoSlice::new(&chunk[..len])]
            });
            let cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                &mut self.headers,
                &iovs[start..n],
                &self.dsts[start..n],
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => {
                    let sent = results.count();
                    if sent == 0 {
                        self.stats.errors += (n - start) as u64;
                        break;
                    }
                    self.stats.sent += sent as u64;
                    start += sent;
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => {
                    self.stats.full += (n - start) as u64;
                    break;
                }
                // The first datagram was refused; skip it, send the rest.
                Err(_) => {
                    self.stats.errors += 1;
                    start += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn mapped_sources_are_reported_as_ipv4() {
        let mapped = SocketAddrV6::new(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped(), 51820, 0, 0);
        assert_eq!(
            socket_addr(&SockaddrStorage::from(mapped)),
            Some("192.0.2.1:51820".parse().unwrap())
        );
        let v6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 7, 0, 0);
        assert_eq!(
            socket_addr(&SockaddrStorage::from(v6)),
            Some(SocketAddr::V6(v6))
        );
    }

    #[test]
    fn batches_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        tune(&a, 1 << 20).unwrap();
        tune(&b, 1 << 20).unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let mut tx = TxBatch::new(a);
        let mut rx = RxBatch::new(&b);
        // More than one batch: `slot` flushes on its own when full.
        for i in 0..(BATCH + 5) {
            tx.push(&[i as u8; 100], b_addr);
        }
        tx.flush();
        assert_eq!(tx.stats.sent, (BATCH + 5) as u64);

        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < BATCH + 5 && std::time::Instant::now() < deadline {
            match rx.recv() {
                Ok(n) => {
                    for i in 0..n {
                        let d = rx.get(i);
                        assert_eq!(d.src, Some(a_addr));
                        assert!(!d.truncated);
                        got.push(d.bytes.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        assert_eq!(got.len(), BATCH + 5);
        for (i, d) in got.iter().enumerate() {
            assert_eq!(d, &vec![i as u8; 100]);
        }
        let err = rx.recv().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
