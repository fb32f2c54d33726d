//! Sockets inside lab namespaces.
//!
//! A socket belongs to the namespace it was created in, whichever thread
//! uses it later. So each helper opens its socket on a short-lived thread
//! that entered the namespace ([`in_ns`], on
//! [`weft_node_agent::kernel::netns::run_in`]), and hands it back to the caller; the
//! test's own threads never change namespace.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::socket::{
    sendto, socket, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType, SockaddrIn,
};
use weft_lab::{exec_in, ping, DEFAULT_COMMAND_TIMEOUT};
use weft_node_agent::kernel::netns::{run_in, NetNs};

use crate::{E2eError, Result};

/// Runs `f` on a thread inside the network namespace at `netns`
/// (`/run/netns/NAME`) and returns its result.
pub fn in_ns<T: Send>(netns: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    let ns = NetNs::open(netns)?;
    Ok(run_in(&ns, f)?)
}

/// A TCP listener on `addr` inside `netns`.
pub fn tcp_listen(netns: &Path, addr: SocketAddr) -> Result<TcpListener> {
    in_ns(netns, || TcpListener::bind(addr))?
        .map_err(|e| E2eError::io(format!("listening on {addr} in {}", netns.display()), e))
}

/// A TCP connection from inside `netns` to `addr`, within `timeout`. A
/// refused or unreachable connection is retried until the bound (the path
/// may still be coming up).
pub fn tcp_connect(netns: &Path, addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = in_ns(netns, || {
            TcpStream::connect_timeout(&addr, left.max(Duration::from_millis(10)))
        })?;
        match attempt {
            Ok(stream) => return Ok(stream),
            Err(e) if Instant::now() >= deadline => {
                return Err(E2eError::io(
                    format!(
                        "connecting to {addr} from {} within {timeout:?}",
                        netns.display()
                    ),
                    e,
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A UDP socket bound to `addr` inside `netns`.
pub fn udp_bind(netns: &Path, addr: SocketAddr) -> Result<UdpSocket> {
    in_ns(netns, || UdpSocket::bind(addr))?
        .map_err(|e| E2eError::io(format!("binding UDP {addr} in {}", netns.display()), e))
}

/// A raw IPv4 socket (`IPPROTO_RAW`, so `IP_HDRINCL`: the caller writes the
/// whole IP header, source address included) inside `netns`.
pub fn raw_ipv4_socket(netns: &Path) -> Result<OwnedFd> {
    in_ns(netns, || {
        socket(
            AddressFamily::Inet,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Raw,
        )
    })?
    .map_err(|e| {
        E2eError::io(
            format!("opening a raw IPv4 socket in {}", netns.display()),
            e.into(),
        )
    })
}

/// Sends the whole IPv4 packet `packet` (header included) on a raw socket
/// from [`raw_ipv4_socket`], routed to `dst`.
pub fn send_raw(socket: &OwnedFd, packet: &[u8], dst: Ipv4Addr) -> Result<()> {
    let to = SockaddrIn::from(SocketAddrV4::new(dst, 0));
    let sent = sendto(
        std::os::fd::AsRawFd::as_raw_fd(socket),
        packet,
        &to,
        MsgFlags::empty(),
    )
    .map_err(|e| E2eError::io(format!("sending a raw packet to {dst}"), e.into()))?;
    if sent != packet.len() {
        return Err(E2eError::failed(format!(
            "sent {sent} of {} bytes of a raw packet to {dst}",
            packet.len()
        )));
    }
    Ok(())
}

/// A UDP socket that collects what arrives, for "did it arrive?" checks.
#[derive(Debug)]
pub struct UdpInbox {
    socket: UdpSocket,
    /// Every datagram received so far: source and payload.
    pub received: Vec<(SocketAddr, Vec<u8>)>,
}

impl UdpInbox {
    /// Binds `addr` inside `netns`.
    pub fn bind(netns: &Path, addr: SocketAddr) -> Result<Self> {
        Ok(Self {
            socket: udp_bind(netns, addr)?,
            received: Vec::new(),
        })
    }

    /// Receives until a datagram with exactly `payload` has arrived (true)
    /// or `timeout` has passed (false), keeping everything received.
    pub fn wait_for(&mut self, payload: &[u8], timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        while !self.received.iter().any(|(_, p)| p == payload) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.receive_for(left.min(Duration::from_millis(200)))?;
        }
        Ok(true)
    }

    /// Receives whatever arrives within `timeout`.
    pub fn receive_for(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            self.socket
                .set_read_timeout(Some(left))
                .map_err(|e| E2eError::io("setting a UDP read timeout", e))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.received.push((from, buf[..n].to_vec())),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(E2eError::io("receiving UDP", e)),
            }
        }
    }

    /// Whether a datagram with exactly `payload` has arrived.
    pub fn has(&self, payload: &[u8]) -> bool {
        self.received.iter().any(|(_, p)| p == payload)
    }
}

/// An address of an interface, as `ip -j addr` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InterfaceAddress {
    /// The interface's index (a re-created interface gets a new one).
    pub ifindex: u64,
    /// The interface's name.
    pub ifname: String,
    /// The address.
    pub address: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
}

/// The addresses of every interface in the named namespace `ns`, from
/// `ip -j addr`, sorted.
pub fn interface_addresses(ns: &str) -> Result<Vec<InterfaceAddress>> {
    let out = exec_in(ns, "ip", &["-j", "addr"], DEFAULT_COMMAND_TIMEOUT)?;
    if !out.status.success() {
        return Err(E2eError::failed(format!(
            "`ip -j addr` in {ns} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| E2eError::failed(format!("`ip -j addr` in {ns}: bad JSON: {e}")))?;
    let mut found = Vec::new();
    for link in doc.as_array().into_iter().flatten() {
        let ifname = link["ifname"].as_str().unwrap_or_default().to_string();
        let ifindex = link["ifindex"].as_u64().unwrap_or_default();
        for a in link["addr_info"].as_array().into_iter().flatten() {
            let address = a["local"].as_str().and_then(|s| s.parse::<IpAddr>().ok());
            let prefix = a["prefixlen"].as_u64().and_then(|p| u8::try_from(p).ok());
            if let (Some(address), Some(prefix)) = (address, prefix) {
                found.push(InterfaceAddress {
                    ifindex,
                    ifname: ifname.clone(),
                    address,
                    prefix,
                });
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Pings `ip` from the named namespace `ns` (one echo request at a time,
/// each waiting up to 500 ms) until a reply comes back or `deadline`
/// passes. Returns when the reply arrived, or `None`.
pub fn ping_until(ns: &str, ip: IpAddr, deadline: Instant) -> Result<Option<Instant>> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        let wait = left.min(Duration::from_millis(500));
        if ping(ns, ip, 1, wait.max(Duration::from_millis(1)))?.is_some() {
            return Ok(Some(Instant::now()));
        }
    }
}

/// The TCP segments the named namespace `ns` has retransmitted so far
/// (`RetransSegs` of `/proc/net/snmp`, which is per network namespace).
pub fn tcp_retransmits(ns: &str) -> Result<u64> {
    let out = exec_in(ns, "cat", &["/proc/net/snmp"], DEFAULT_COMMAND_TIMEOUT)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next(), tcp.next());
    let found = names.zip(values).and_then(|(names, values)| {
        let at = names.split_whitespace().position(|n| n == "RetransSegs")?;
        values.split_whitespace().nth(at)?.parse().ok()
    });
    found.ok_or_else(|| {
        E2eError::failed(format!(
            "no Tcp RetransSegs in /proc/net/snmp of {ns}: {}",
            text.trim()
        ))
    })
}

/// Both ends of one TCP connection from `from` (a namespace path) to `addr`
/// inside `to`: listens there, connects, accepts; all within `timeout`.
/// Returns `(client, server)`.
pub fn tcp_pair(
    from: &Path,
    to: &Path,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<(TcpStream, TcpStream)> {
    let deadline = Instant::now() + timeout;
    let listener = tcp_listen(to, addr)?;
    let client = tcp_connect(from, addr, timeout)?;
    listener
        .set_nonblocking(true)
        .map_err(|e| E2eError::io("making a listener non-blocking", e))?;
    loop {
        match listener.accept() {
            Ok((server, _)) => {
                server
                    .set_nonblocking(false)
                    .map_err(|e| E2eError::io("making a socket blocking", e))?;
                return Ok((client, server));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(E2eError::io(format!("accepting on {addr}"), e)),
        }
    }
}
