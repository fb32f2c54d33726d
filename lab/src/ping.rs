//! ICMP echo from inside a network namespace, for connectivity checks: a
//! lab namespace by name ([`ping_stats`]), or any namespace file, or the
//! namespace the caller runs in ([`ping_stats_in`], for real hosts).
//!
//! This speaks ICMP itself over a raw socket opened inside the namespace
//! (a short-lived thread enters it with `setns`, opens the socket and exits;
//! the socket stays in that namespace), so it needs no `ping` binary on the
//! machine, and reports exact round-trip times. Raw sockets need root
//! (CAP_NET_RAW), like the rest of the lab.

use std::fs::File;
use std::net::{IpAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    recvfrom, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn, SockaddrIn6, SockaddrLike, SockaddrStorage,
};
use nix::sys::time::{TimeVal, TimeValLike};

use super::cmd::check_ns_name;
use super::LabError;

/// The most echo requests one call sends.
const MAX_COUNT: u32 = 10_000;
/// The longest gap between two echo requests.
const MAX_INTERVAL: Duration = Duration::from_millis(100);
/// Marks our echo payloads, so stray echoes with the same identifier are ignored.
const PAYLOAD: &[u8; 16] = b"weft-lab-ping-v1";

/// What a series of echo requests got back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PingStats {
    /// Echo requests sent (or attempted, when the network was unreachable).
    pub sent: u32,
    /// Distinct echo replies received.
    pub received: u32,
    /// The round-trip time of each reply, in arrival order.
    pub rtts: Vec<Duration>,
}

impl PingStats {
    /// The mean round-trip time, if any reply came back.
    pub fn average(&self) -> Option<Duration> {
        let n = u32::try_from(self.rtts.len()).ok().filter(|n| *n > 0)?;
        Some(self.rtts.iter().sum::<Duration>() / n)
    }

    /// The fastest round trip, if any reply came back.
    pub fn min(&self) -> Option<Duration> {
        self.rtts.iter().min().copied()
    }
}

/// Sends `count` echo requests to `addr` from inside namespace `from_ns`
/// within `timeout`; returns the mean round-trip time, or `None` when no
/// reply came back (unreachable is not an error).
pub fn ping(
    from_ns: &str,
    addr: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<Option<Duration>, LabError> {
    Ok(ping_stats(from_ns, addr, count, timeout)?.average())
}

/// Like [`ping`], with every round-trip time. Requests go out at most
/// 100 ms apart, all within `timeout`; it returns as soon as every request
/// has its reply.
pub fn ping_stats(
    from_ns: &str,
    addr: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<PingStats, LabError> {
    check_ns_name(from_ns)?;
    ping_stats_in(
        Some(&Path::new("/run/netns").join(from_ns)),
        addr,
        count,
        timeout,
    )
}

/// Like [`ping_stats`], from the network namespace at `netns` (a file such
/// as `/run/netns/NAME` or `/proc/PID/ns/net`), or, with `None`, from the
/// namespace this process runs in.
pub fn ping_stats_in(
    netns: Option<&Path>,
    addr: IpAddr,
    count: u32,
    timeout: Duration,
) -> Result<PingStats, LabError> {
    let from_ns = match netns {
        Some(path) => path.display().to_string(),
        None => "the current namespace".to_string(),
    };
    let from_ns = from_ns.as_str();
    if count == 0 || count > MAX_COUNT {
        return Err(LabError::InvalidArgument(format!(
            "ping count {count} is out of range 1..={MAX_COUNT}"
        )));
    }
    if timeout < Duration::from_millis(1) {
        return Err(LabError::InvalidArgument(format!(
            "ping timeout {timeout:?} is shorter than 1ms"
        )));
    }
    let socket = raw_socket_in(netns, addr)?;
    let ident = next_ident();
    let interval = MAX_INTERVAL.min(timeout / (count + 1));
    let start = Instant::now();
    let deadline = start + timeout;
    let mut sent_at: Vec<Option<Instant>> = vec![None; count as usize];
    let mut stats = PingStats::default();
    let mut next_send = start;
    let mut buf = [0u8; 2048];

    loop {
        let now = Instant::now();
        if stats.sent < count && now >= next_send {
            let seq = stats.sent as u16;
            // Stamped before sending: a thread descheduled right after the
            // send must not see its reply as arriving in no time.
            let stamp = Instant::now();
            send_echo(&socket, addr, ident, seq, from_ns)?;
            sent_at[usize::from(seq)] = Some(stamp);
            stats.sent += 1;
            next_send += interval;
        }
        if stats.received == count || now >= deadline {
            return Ok(stats);
        }
        let until = if stats.sent < count {
            next_send.min(deadline)
        } else {
            deadline
        };
        let wait = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let micros = i64::try_from(wait.as_micros()).unwrap_or(i64::MAX);
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::microseconds(micros),
        )
        .map_err(|e| ping_io(from_ns, addr, "setting the receive timeout", e))?;
        let (n, from) = match recvfrom::<SockaddrStorage>(socket.as_raw_fd(), &mut buf) {
            Ok(got) => got,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            // An ICMP error reported on the socket: no reply for that request.
            Err(Errno::EHOSTUNREACH | Errno::ENETUNREACH | Errno::ECONNREFUSED) => continue,
            Err(e) => return Err(ping_io(from_ns, addr, "receiving", e)),
        };
        if from.as_ref().and_then(source_ip) != Some(addr) {
            continue;
        }
        let Some(seq) = parse_reply(&buf[..n.min(buf.len())], addr, ident) else {
            continue;
        };
        if let Some(sent) = sent_at.get_mut(usize::from(seq)).and_then(Option::take) {
            stats.received += 1;
            stats.rtts.push(sent.elapsed());
        }
    }
}

fn next_ident() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    (std::process::id() as u16)
        .wrapping_mul(0x9e37)
        .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

fn ping_io(ns: &str, addr: IpAddr, what: &str, e: Errno) -> LabError {
    LabError::io(format!("ping {addr} from namespace {ns}: {what}"), e.into())
}

/// Opens a raw ICMP (or ICMPv6) socket inside the namespace at `netns`, or
/// in this process's own with `None`.
fn raw_socket_in(netns: Option<&Path>, addr: IpAddr) -> Result<OwnedFd, LabError> {
    let (family, protocol) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6),
    };
    let Some(path) = netns else {
        return socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol).map_err(|e| {
            ping_io(
                "the current namespace",
                addr,
                "opening a raw ICMP socket",
                e,
            )
        });
    };
    let handle = File::open(path)
        .map_err(|e| LabError::io(format!("opening network namespace {}", path.display()), e))?;
    let ns = path.display().to_string();
    let ns_owned = ns.clone();
    // The thread's network namespace changes and dies with it; the socket
    // keeps the namespace it was opened in.
    thread::spawn(move || {
        setns(&handle, CloneFlags::CLONE_NEWNET)
            .map_err(|e| ping_io(&ns_owned, addr, "entering the namespace", e))?;
        socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
            .map_err(|e| ping_io(&ns_owned, addr, "opening a raw ICMP socket", e))
    })
    .join()
    .map_err(|_| LabError::InvalidArgument(format!("ping from {ns}: socket thread panicked")))?
}

fn send_echo(
    socket: &OwnedFd,
    addr: IpAddr,
    ident: u16,
    seq: u16,
    ns: &str,
) -> Result<(), LabError> {
    let mut packet = [0u8; 8 + PAYLOAD.len()];
    packet[0] = if addr.is_ipv4() { 8 } else { 128 }; // echo request
    packet[4..6].copy_from_slice(&ident.to_be_bytes());
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(PAYLOAD);
    let result = match addr {
        IpAddr::V4(ip) => {
            // ICMPv6 checksums are the kernel's job; ICMPv4 ones are ours.
            let sum = checksum(&packet);
            packet[2..4].copy_from_slice(&sum.to_be_bytes());
            let to = SockaddrIn::from(SocketAddrV4::new(ip, 0));
            sendto(socket.as_raw_fd(), &packet, &to, MsgFlags::empty())
        }
        IpAddr::V6(ip) => {
            let to = SockaddrIn6::from(SocketAddrV6::new(ip, 0, 0, 0));
            sendto(socket.as_raw_fd(), &packet, &to, MsgFlags::empty())
        }
    };
    match result {
        Ok(_) => Ok(()),
        // No route: the request is lost, which is what a ping reports.
        Err(Errno::ENETUNREACH | Errno::EHOSTUNREACH | Errno::EADDRNOTAVAIL) => Ok(()),
        Err(e) => Err(ping_io(ns, addr, "sending", e)),
    }
}

fn source_ip(from: &SockaddrStorage) -> Option<IpAddr> {
    match from.family()? {
        AddressFamily::Inet => Some(IpAddr::V4(from.as_sockaddr_in()?.ip())),
        AddressFamily::Inet6 => Some(IpAddr::V6(from.as_sockaddr_in6()?.ip())),
        _ => None,
    }
}

/// The sequence number of our echo reply in `datagram`, if it is one. IPv4
/// raw sockets deliver the IP header too; IPv6 ones only the ICMPv6 message.
fn parse_reply(datagram: &[u8], addr: IpAddr, ident: u16) -> Option<u16> {
    let (icmp, reply_type) = match addr {
        IpAddr::V4(_) => {
            let header_len = usize::from(datagram.first()? & 0x0f) * 4;
            (datagram.get(header_len..)?, 0)
        }
        IpAddr::V6(_) => (datagram, 129),
    };
    let header = icmp.get(..8)?;
    if header[0] != reply_type
        || header[1] != 0
        || header[4..6] != ident.to_be_bytes()
        || icmp.get(8..)? != PAYLOAD
    {
        return None;
    }
    Some(u16::from_be_bytes([header[6], header[7]]))
}

/// The Internet checksum (RFC 1071) of `data`.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}
