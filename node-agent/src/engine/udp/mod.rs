//! The UDP socket that carries WireGuard: socket tuning, and batched
//! receive (`recvmmsg`) and send (`sendmmsg`) into preallocated buffers,
//! with UDP GRO and GSO when the kernel has them.
//!
//! Contract:
//! - [`tune`] makes the socket non-blocking, asks for large kernel buffers
//!   (the `*FORCE` options when privileged, else the capped ones) and, with
//!   offloads, turns on UDP GRO and probes UDP GSO (`UDP_SEGMENT`); what
//!   the kernel refuses stays off.
//! - [`RxBatch::recv`] reads up to [`BATCH`] messages per syscall, each
//!   into a [`MAX_DATAGRAM`] slot: one datagram, or with GRO a run of
//!   datagrams from one source, all [`Message::segment`] bytes long but
//!   the last.
//! - [`TxBatch`] collects outgoing datagrams in one arena, in order, and
//!   sends them with one `sendmmsg` per [`TxBatch::flush`] (or when full).
//!   With GSO, consecutive datagrams to one destination of one size (the
//!   last of a run may be shorter) go as one message with a `UDP_SEGMENT`
//!   size: one trip through the stack for up to 64 of them. A full socket
//!   buffer drops the rest of the batch (counted); nothing blocks.
//! - A GSO message the kernel refuses is handled by cause, never by turning
//!   GSO off for good: `EINVAL`/`EMSGSIZE` say this message is malformed
//!   (e.g. datagrams over the path MTU, from a pod's crafted super-packet):
//!   its datagrams are dropped and counted ([`TxStats::gso_invalid`]), GSO
//!   stays on. Any other refusal (`EIO`: the route cannot checksum for us)
//!   means the kernel will not segment on this socket: that run is sent
//!   datagram by datagram and GSO is off for a while, tried again after
//!   [`GSO_RETRY_INITIAL`], doubling up to [`GSO_RETRY_MAX`] while it keeps
//!   failing; so is a streak of [`GSO_INVALID_STREAK`] malformed messages
//!   with no accepted one between them.
//! - Addresses: an IPv4-mapped IPv6 source is reported as IPv4, and an IPv4
//!   destination is mapped when the socket is IPv6 (dual-stack).
//! - No allocation after construction. The raw `mmsghdr`s (module `sys`,
//!   the only `unsafe` code here) hold pointers, so both batches are built
//!   on the engine thread.

mod sys;

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, setsockopt, sockopt, SockaddrStorage};
use sys::{OutMsg, RecvHeaders, SendHeaders};

/// Messages per `recvmmsg` / `sendmmsg`.
pub(super) const BATCH: usize = 32;

/// The largest datagram (and IP packet) the engine handles, and the size of
/// a receive slot (a GRO run is at most this long too).
pub(super) const MAX_DATAGRAM: usize = 65_536;

/// An outgoing slot: the largest IP packet plus WireGuard's overhead.
pub(super) const TX_SLOT: usize = MAX_DATAGRAM + 64;

/// The send arena: room for this many maximum-size slots.
const TX_ARENA_SLOTS: usize = 16;

/// Datagrams per GSO message (the kernel's `UDP_MAX_SEGMENTS` is 64 on
/// older kernels, 128 since 6.2).
const GSO_MAX_SEGMENTS: usize = 64;

/// Bytes per GSO message: its UDP payload must fit one IP packet.
const GSO_MAX_BYTES: usize = 65_000;

/// How long UDP GSO stays off after the kernel first refuses it.
pub(super) const GSO_RETRY_INITIAL: Duration = Duration::from_secs(1);

/// The longest it stays off (the delay doubles while refusals go on).
pub(super) const GSO_RETRY_MAX: Duration = Duration::from_secs(300);

/// Malformed GSO messages in a row (none accepted between them) that mean
/// the socket refuses GSO rather than those messages.
pub(super) const GSO_INVALID_STREAK: u32 = 16;

/// The kernel socket buffers asked for, each way.
pub(super) const SOCKET_BUFFER_BYTES: usize = 8 << 20;

/// The buffer sizes the kernel granted (it reports twice what was set).
#[derive(Debug, Clone, Copy)]
pub(super) struct SocketBuffers {
    pub(super) receive: usize,
    pub(super) send: usize,
}

/// Which UDP offloads are on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct UdpOffloads {
    /// `UDP_GRO`: the kernel hands over runs of datagrams.
    pub(super) gro: bool,
    /// `UDP_SEGMENT` works: runs of datagrams go as one message.
    pub(super) gso: bool,
}

/// Non-blocking, with `bytes` of kernel buffer each way if allowed, and
/// with GRO and GSO if `offload` and the kernel agree.
pub(super) fn tune(
    socket: &UdpSocket,
    bytes: usize,
    offload: bool,
) -> io::Result<(SocketBuffers, UdpOffloads)> {
    socket.set_nonblocking(true)?;
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        setsockopt(socket, sockopt::RcvBuf, &bytes)?;
    }
    if setsockopt(socket, sockopt::SndBufForce, &bytes).is_err() {
        setsockopt(socket, sockopt::SndBuf, &bytes)?;
    }
    let offloads = if offload {
        UdpOffloads {
            gro: setsockopt(socket, sockopt::UdpGroSegment, &true).is_ok(),
            // A socket-wide size of 0 segments nothing by itself; the
            // option's existence says the kernel does UDP GSO.
            gso: setsockopt(socket, sockopt::UdpGsoSegment, &0).is_ok(),
        }
    } else {
        // A reused socket may have had GRO on.
        let _ = setsockopt(socket, sockopt::UdpGroSegment, &false);
        UdpOffloads::default()
    };
    let buffers = SocketBuffers {
        receive: getsockopt(socket, sockopt::RcvBuf)?,
        send: getsockopt(socket, sockopt::SndBuf)?,
    };
    Ok((buffers, offloads))
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

/// One received message: a datagram, or a GRO run of them.
pub(super) struct Message<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) src: Option<SocketAddr>,
    pub(super) truncated: bool,
    /// The length of each datagram in `bytes` (the last may be shorter);
    /// `bytes.len()` for a single datagram, and never 0.
    pub(super) segment: usize,
}

impl<'a> Message<'a> {
    /// The datagrams in it.
    pub(super) fn datagrams(&self) -> std::slice::Chunks<'a, u8> {
        self.bytes.chunks(self.segment.max(1))
    }
}

/// Batched receive buffers.
pub(super) struct RxBatch {
    fd: RawFd,
    bufs: Box<[u8]>,
    headers: RecvHeaders,
}

impl RxBatch {
    /// Buffers for reading from `socket`, which must outlive the batch.
    pub(super) fn new(socket: &UdpSocket) -> Self {
        Self {
            fd: socket.as_raw_fd(),
            bufs: vec![0; BATCH * MAX_DATAGRAM].into_boxed_slice(),
            headers: RecvHeaders::new(BATCH),
        }
    }

    /// Receives up to [`BATCH`] messages; `WouldBlock` when none is queued.
    pub(super) fn recv(&mut self) -> io::Result<usize> {
        self.headers.recv(self.fd, &mut self.bufs, MAX_DATAGRAM)
    }

    /// Message `i` of the last [`Self::recv`].
    pub(super) fn get(&self, i: usize) -> Message<'_> {
        let start = (i * MAX_DATAGRAM).min(self.bufs.len());
        let len = self.headers.len(i).min(MAX_DATAGRAM);
        let bytes = self.bufs.get(start..start + len).unwrap_or_default();
        Message {
            bytes,
            src: self.headers.source(i).as_ref().and_then(socket_addr),
            truncated: self.headers.truncated(i),
            segment: self.headers.gro_segment(i).unwrap_or(bytes.len()).max(1),
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
    /// GSO messages sent (each carrying several datagrams).
    pub(super) gso_messages: u64,
    /// Dropped: in a GSO message the kernel refused as malformed.
    pub(super) gso_invalid: u64,
}

/// Whether UDP GSO is on, and when to try it again if not.
#[derive(Debug, Clone, Copy)]
struct Gso {
    /// The kernel has UDP GSO at all (probed at start).
    supported: bool,
    /// Runs are joined into GSO messages now.
    on: bool,
    /// While off: when to turn it on again.
    retry_at: Option<Instant>,
    /// The next off period.
    backoff: Duration,
    /// Malformed GSO messages since the last accepted one.
    invalid_streak: u32,
}

impl Gso {
    fn new(supported: bool) -> Self {
        Self {
            supported,
            on: supported,
            retry_at: None,
            backoff: GSO_RETRY_INITIAL,
            invalid_streak: 0,
        }
    }

    /// Turns it off for the current backoff (doubling the next one).
    fn refused(&mut self, error: &io::Error, now: Instant) {
        if !self.on {
            return;
        }
        self.on = false;
        self.invalid_streak = 0;
        self.retry_at = Some(now + self.backoff);
        tracing::warn!(error = %error, retry_in = ?self.backoff,
            "UDP GSO refused by the kernel; sending datagrams one by one for now");
        self.backoff = (self.backoff * 2).min(GSO_RETRY_MAX);
    }

    /// Turns it on again if its off period is over.
    fn resume(&mut self, now: Instant) {
        if self.on || !self.supported || self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.on = true;
        self.retry_at = None;
        tracing::info!("trying UDP GSO again");
    }

    /// A GSO message was accepted.
    fn accepted(&mut self) {
        self.invalid_streak = 0;
        if self.backoff > GSO_RETRY_INITIAL {
            self.backoff = GSO_RETRY_INITIAL;
            tracing::info!("UDP GSO works again");
        }
    }
}

/// A queued message's bookkeeping next to its [`OutMsg`].
#[derive(Debug, Clone, Copy)]
struct Run {
    dst: SocketAddr,
    /// Datagrams in it.
    count: usize,
    /// Whether another datagram may join (same size, or a shorter last).
    open: bool,
}

/// Batched send buffers, owning the socket.
pub(super) struct TxBatch {
    socket: UdpSocket,
    v6: bool,
    gso: Gso,
    arena: Box<[u8]>,
    /// Bytes of the arena in use.
    tail: usize,
    msgs: Vec<OutMsg>,
    runs: Vec<Run>,
    headers: SendHeaders,
    pub(super) stats: TxStats,
}

impl TxBatch {
    /// Buffers for sending on `socket`; `gso` if the kernel does UDP GSO.
    pub(super) fn new(socket: UdpSocket, gso: bool) -> Self {
        let v6 = socket.local_addr().is_ok_and(|a| a.is_ipv6());
        Self {
            socket,
            v6,
            gso: Gso::new(gso),
            arena: vec![0; TX_ARENA_SLOTS * TX_SLOT].into_boxed_slice(),
            tail: 0,
            msgs: Vec::with_capacity(BATCH),
            runs: Vec::with_capacity(BATCH),
            headers: SendHeaders::new(BATCH),
            stats: TxStats::default(),
        }
    }

    /// Whether GSO is on now.
    pub(super) fn gso(&self) -> bool {
        self.gso.on
    }

    /// The next free slot ([`TX_SLOT`] bytes); sends the batch first if it
    /// is full. Fill it, then [`Self::commit`] it.
    pub(super) fn slot(&mut self) -> &mut [u8] {
        if self.msgs.len() == BATCH || self.tail + TX_SLOT > self.arena.len() {
            self.flush();
        }
        &mut self.arena[self.tail..self.tail + TX_SLOT]
    }

    /// Queues the first `len` bytes of the slot from [`Self::slot`] for `dst`.
    pub(super) fn commit(&mut self, len: usize, dst: SocketAddr) {
        if self.msgs.len() == BATCH || self.tail + TX_SLOT > self.arena.len() {
            // `slot` flushed; a commit without a slot has nothing to send.
            return;
        }
        let len = len.min(TX_SLOT);
        if self.gso.on && self.join_run(len, dst) {
            self.tail += len;
            return;
        }
        self.msgs.push(OutMsg {
            start: self.tail,
            len,
            dst: self.sockaddr(dst),
            segment: 0,
        });
        self.runs.push(Run {
            dst,
            count: 1,
            open: true,
        });
        self.tail += len;
    }

    /// Appends a `len`-byte datagram for `dst` (just written at the tail) to
    /// the last message, if it continues its GSO run.
    fn join_run(&mut self, len: usize, dst: SocketAddr) -> bool {
        let (Some(msg), Some(run)) = (self.msgs.last_mut(), self.runs.last_mut()) else {
            return false;
        };
        let segment = if msg.segment == 0 {
            msg.len
        } else {
            usize::from(msg.segment)
        };
        let fits = run.open
            && run.dst == dst
            && msg.start + msg.len == self.tail
            && len > 0
            && len <= segment
            && segment <= usize::from(u16::MAX)
            && run.count < GSO_MAX_SEGMENTS
            && msg.len + len <= GSO_MAX_BYTES;
        if !fits {
            return false;
        }
        msg.segment = segment as u16;
        msg.len += len;
        run.count += 1;
        run.open = len == segment;
        true
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
        if !self.gso.on && self.gso.supported {
            self.gso.resume(Instant::now());
        }
        let fd = self.socket.as_raw_fd();
        let mut start = 0;
        while start < self.msgs.len() {
            if self.msgs[start].segment > 0 && !self.gso.on {
                // Queued as a run before GSO went off.
                self.send_singly(start);
                start += 1;
                continue;
            }
            match self.headers.send(fd, &self.arena, &self.msgs[start..]) {
                Ok(0) => {
                    self.stats.errors += self.datagrams(start..self.msgs.len());
                    break;
                }
                Ok(sent) => {
                    self.stats.sent += self.datagrams(start..start + sent);
                    let gso = self.msgs[start..start + sent]
                        .iter()
                        .filter(|m| m.segment > 0)
                        .count() as u64;
                    if gso > 0 {
                        self.gso.accepted();
                    }
                    self.stats.gso_messages += gso;
                    start += sent;
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EAGAIN | libc::ENOBUFS) => {
                        self.stats.full += self.datagrams(start..self.msgs.len());
                        break;
                    }
                    Some(libc::EINVAL | libc::EMSGSIZE) if self.msgs[start].segment > 0 => {
                        // This message is malformed (datagrams over the
                        // path MTU, too many of them): drop it, keep GSO.
                        self.stats.gso_invalid += self.datagrams(start..start + 1);
                        self.gso.invalid_streak += 1;
                        if self.gso.invalid_streak >= GSO_INVALID_STREAK {
                            self.gso.refused(&e, Instant::now());
                        }
                        start += 1;
                    }
                    Some(errno) if self.msgs[start].segment > 0 && !per_destination(errno) => {
                        // The kernel will not segment for us (no checksum
                        // offload on the route...): this run datagram by
                        // datagram, and no runs for a while.
                        self.gso.refused(&e, Instant::now());
                        self.send_singly(start);
                        start += 1;
                    }
                    // The first message was refused; skip it, send the rest.
                    _ => {
                        self.stats.errors += self.datagrams(start..start + 1);
                        start += 1;
                    }
                },
            }
        }
        self.msgs.clear();
        self.runs.clear();
        self.tail = 0;
    }

    /// Sends message `i`'s datagrams one per message (GSO fallback).
    fn send_singly(&mut self, i: usize) {
        let fd = self.socket.as_raw_fd();
        let msg = self.msgs[i];
        let segment = usize::from(msg.segment).max(1);
        let mut at = msg.start;
        let end = msg.start + msg.len;
        while at < end {
            let len = segment.min(end - at);
            let one = OutMsg {
                start: at,
                len,
                dst: msg.dst,
                segment: 0,
            };
            match self.headers.send(fd, &self.arena, &[one]) {
                Ok(1) => self.stats.sent += 1,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => self.stats.full += 1,
                _ => self.stats.errors += 1,
            }
            at += len;
        }
    }

    /// Datagrams in messages `range`.
    fn datagrams(&self, range: std::ops::Range<usize>) -> u64 {
        self.runs[range].iter().map(|r| r.count as u64).sum()
    }
}

/// Errors about one destination, not about GSO.
fn per_destination(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EACCES | libc::EPERM
    )
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

    /// Receives until `want` datagrams arrived (5 s at most): (source,
    /// GRO segment size, bytes) of each.
    fn receive(rx: &mut RxBatch, want: usize) -> Vec<(SocketAddr, usize, Vec<u8>)> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < want && std::time::Instant::now() < deadline {
            match rx.recv() {
                Ok(n) => {
                    for i in 0..n {
                        let m = rx.get(i);
                        assert!(!m.truncated);
                        for d in m.datagrams() {
                            got.push((m.src.unwrap(), m.segment, d.to_vec()));
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
        got
    }

    fn pair(offload: bool) -> (TxBatch, RxBatch, UdpSocket, SocketAddr, SocketAddr) {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (_, oa) = tune(&a, 1 << 20, offload).unwrap();
        let (_, ob) = tune(&b, 1 << 20, offload).unwrap();
        assert_eq!(oa.gso && ob.gro, offload, "loopback does UDP GSO and GRO");
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let rx = RxBatch::new(&b);
        (TxBatch::new(a, oa.gso), rx, b, a_addr, b_addr)
    }

    #[test]
    fn batches_round_trip_over_loopback() {
        for offload in [false, true] {
            let (mut tx, mut rx, _b, a_addr, b_addr) = pair(offload);
            // More than one batch: `slot` flushes on its own when full.
            for i in 0..(3 * BATCH + 5) {
                tx.push(&[i as u8; 100], b_addr);
            }
            tx.flush();
            assert_eq!(tx.stats.sent, (3 * BATCH + 5) as u64);
            assert_eq!(tx.stats.gso_messages > 0, offload);

            let got = receive(&mut rx, 3 * BATCH + 5);
            assert_eq!(got.len(), 3 * BATCH + 5, "offload {offload}");
            for (i, (src, _, d)) in got.iter().enumerate() {
                assert_eq!(*src, a_addr);
                assert_eq!(d, &vec![i as u8; 100]);
            }
            if offload {
                assert!(got.iter().any(|(_, seg, _)| *seg == 100), "GRO runs");
            }
            let err = rx.recv().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        }
    }

    #[test]
    fn runs_end_at_a_shorter_datagram_or_another_destination() {
        let (mut tx, mut rx, b, _, b_addr) = pair(true);
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        let c_addr = c.local_addr().unwrap();
        let sizes = [500, 500, 500, 200, 500, 500, 501, 500];
        for (i, n) in sizes.iter().enumerate() {
            tx.push(&vec![i as u8; *n], b_addr);
        }
        tx.push(&[9; 500], c_addr);
        tx.push(&[10; 500], b_addr);
        // Runs: [500 500 500 200] [500 500] [501 500] [c] [500].
        assert_eq!(tx.msgs.len(), 5);
        assert_eq!(
            tx.msgs
                .iter()
                .map(|m| (m.len, m.segment))
                .collect::<Vec<_>>(),
            [(1700, 500), (1000, 500), (1001, 501), (500, 0), (500, 0)]
        );
        tx.flush();
        assert_eq!(tx.stats.sent, 10);
        let got = receive(&mut rx, 9);
        let lens: Vec<usize> = got.iter().map(|(_, _, d)| d.len()).collect();
        assert_eq!(lens, [500, 500, 500, 200, 500, 500, 501, 500, 500]);
        let mut buf = [0u8; 1000];
        assert_eq!(c.recv(&mut buf).unwrap(), 500);
        drop(b);
    }
}
