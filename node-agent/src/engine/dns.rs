//! Cluster DNS on the engine thread: the switch answers cluster names in
//! place; this part forwards the rest to the node's upstream resolvers
//! and writes their answers back to the pods.
//!
//! Contract:
//! - [`DnsSettings`] arrive whole by a command ([`Core::set_dns`]): the VIPs
//!   and the compiled zone go to the switch (a pointer swap), the upstreams
//!   to the one [`Forwarder`] (rebuilt, with fresh sockets, only when the
//!   list changes: the cache survives zone updates).
//! - The IO is non-blocking and in the engine's event loop, not on another
//!   thread: the upstream sockets (one per family, bound to an ephemeral
//!   port in the node's namespace) are registered with the loop's poller,
//!   a send that would block is dropped and counted (the client retries),
//!   and timeouts are run from the engine's 250 ms tick, so an attempt
//!   times out between 2 and 2.25 s. A dead upstream therefore costs a
//!   query only its own bounded entry in the forwarder; cluster names are
//!   answered by the switch before anything here runs, and a packet
//!   never waits on a socket. (Off the engine thread, every forwarded
//!   query and answer would cross two channels and a wake-up, for no
//!   gain: nothing here blocks.)
//! - An answer goes back as one packet built by [`reply_packet`] (from the
//!   VIP's port 53, truncated with TC if larger than the client takes),
//!   written to the port the query came in on. A port detached meanwhile
//!   loses it (counted as a TUN write error).
//! - Upstream datagrams are read up to [`UPSTREAM_BUDGET`] per round.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use weft_switch::dns::{
    reply_packet, DnsClient, DnsConfig, DnsCounters, DnsOrigin, DnsQuery, DnsRcode, DnsZone,
    ForwardConfig, ForwardStats, Forwarder, Step,
};

use super::core::{Core, Egress};
use super::links::{count_write, LinkId};
use super::DataplaneError;

/// Upstream datagrams read per round, at most.
pub(super) const UPSTREAM_BUDGET: usize = 256;

/// The largest upstream answer read (UDP's limit).
const MAX_ANSWER: usize = 65_535;

/// The reply packet's room: the largest message a client takes over UDP
/// (4096, EDNS clamped) plus IPv6 and UDP headers.
const REPLY_ROOM: usize = 4096 + 40 + 8;

/// What the engine's DNS is configured with (sent whole by
/// [`Dataplane::set_dns`](super::Dataplane::set_dns)).
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// The node-local cluster DNS addresses.
    pub vips: Vec<IpAddr>,
    /// The compiled cluster zone (or a not-ready one).
    pub zone: Arc<DnsZone>,
    /// Where names outside the cluster go.
    pub upstreams: Vec<SocketAddr>,
}

/// The engine's own DNS counters (the forwarder counts the rest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsEngineStats {
    /// Forwarded answers written back to pods.
    pub replies: u64,
    /// Of those, truncated to fit the client (TC set).
    pub truncated: u64,
    /// Answers that could not be made into a packet.
    pub reply_errors: u64,
    /// Sends to an upstream that failed (or would have blocked).
    pub send_errors: u64,
    /// Forwarded answers written back, by response code (the header's
    /// four bits), indexed by [`DnsRcode`] as [`DnsRcode::ALL`] orders them.
    pub rcodes: [u64; DnsRcode::ALL.len()],
}

impl DnsEngineStats {
    /// Forwarded answers written back with response code `rcode`.
    pub fn replies_with(&self, rcode: DnsRcode) -> u64 {
        self.rcodes.get(rcode as usize).copied().unwrap_or(0)
    }
}

/// Cluster DNS as the engine counts it, for the status: the switch's VIP
/// counters (zone answers, forwarded, drops), the forwarder's (cache,
/// upstreams, latency) and the engine's own (answers written back).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsStatus {
    /// The switch's DNS VIP counters.
    pub vip: DnsCounters,
    /// The forwarder's counters.
    pub forwarder: ForwardStats,
    /// The engine's forwarded answers.
    pub engine: DnsEngineStats,
}

/// The engine's forwarding part. See the module docs.
pub(super) struct DnsUpstream {
    upstreams: Vec<SocketAddr>,
    forwarder: Forwarder<DnsClient>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    steps: Vec<Step<DnsClient>>,
    reply: Box<[u8]>,
    recv: Box<[u8]>,
    pub(super) stats: DnsEngineStats,
}

impl Default for DnsUpstream {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            forwarder: Forwarder::new(ForwardConfig::default(), rand::random()),
            v4: None,
            v6: None,
            steps: Vec::new(),
            reply: vec![0; REPLY_ROOM].into_boxed_slice(),
            recv: vec![0; MAX_ANSWER].into_boxed_slice(),
            stats: DnsEngineStats::default(),
        }
    }
}

fn bind(any: &str, registry: &Registry, token: Token) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(any)?;
    socket.set_nonblocking(true)?;
    registry.register(
        &mut SourceFd(&socket.as_raw_fd()),
        token,
        Interest::READABLE,
    )?;
    Ok(socket)
}

impl DnsUpstream {
    /// Points the forwarder at `upstreams` (a no-op if they did not change).
    fn configure(
        &mut self,
        upstreams: Vec<SocketAddr>,
        registry: &Registry,
        tokens: (Token, Token),
    ) -> io::Result<()> {
        if upstreams == self.upstreams {
            return Ok(());
        }
        for socket in [self.v4.take(), self.v6.take()].into_iter().flatten() {
            let _ = registry.deregister(&mut SourceFd(&socket.as_raw_fd()));
        }
        if upstreams.iter().any(SocketAddr::is_ipv4) {
            self.v4 = Some(bind("0.0.0.0:0", registry, tokens.0)?);
        }
        if upstreams.iter().any(SocketAddr::is_ipv6) {
            self.v6 = Some(bind("[::]:0", registry, tokens.1)?);
        }
        let config = ForwardConfig {
            upstreams: upstreams.clone(),
            ..ForwardConfig::default()
        };
        self.forwarder = Forwarder::new(config, rand::random());
        self.upstreams = upstreams;
        Ok(())
    }

    /// A query the switch handed over for the upstreams (`packet` is the
    /// packet it decided on).
    pub(super) fn forward(
        &mut self,
        now: Instant,
        query: DnsQuery,
        packet: &[u8],
        egress: &mut Egress,
    ) {
        self.forwarder
            .query(now, query.client, query.message(packet), &mut self.steps);
        self.run_steps(egress);
    }

    /// Carries out the forwarder's steps.
    fn run_steps(&mut self, egress: &mut Egress) {
        for step in self.steps.drain(..) {
            match step {
                Step::Send { upstream, bytes } => {
                    let socket = if upstream.is_ipv4() {
                        &self.v4
                    } else {
                        &self.v6
                    };
                    let sent = socket.as_ref().map(|s| s.send_to(&bytes, upstream));
                    if !matches!(sent, Some(Ok(_))) {
                        self.stats.send_errors += 1;
                    }
                }
                Step::Reply { client, bytes } => {
                    let written = match reply_packet(&client, &bytes, &mut self.reply) {
                        Ok(w) => w,
                        Err(_) => {
                            self.stats.reply_errors += 1;
                            continue;
                        }
                    };
                    let Some(packet) = self.reply.get(..written.len) else {
                        continue;
                    };
                    let dst = match client.origin {
                        DnsOrigin::Pod(p) => LinkId::Port(p),
                        DnsOrigin::Host => LinkId::Host,
                    };
                    if let Some(link) = egress.links.get(dst) {
                        self.stats.replies += 1;
                        self.stats.truncated += u64::from(written.truncated);
                        // The response code: the low four bits of byte 3.
                        let rcode = bytes.get(3).map_or(0, |b| u16::from(b & 0x0f));
                        if let Some(n) = self.stats.rcodes.get_mut(DnsRcode::of(rcode) as usize) {
                            *n += 1;
                        }
                        count_write(link.write_copy(packet), dst, 1, &mut egress.counters);
                    }
                }
            }
        }
    }
}

impl Core {
    /// Cluster DNS's counters.
    pub(super) fn dns_status(&self) -> DnsStatus {
        DnsStatus {
            vip: self.switch.dns_counters().clone(),
            forwarder: self.dns.forwarder.stats(),
            engine: self.dns.stats,
        }
    }

    /// Applies [`DnsSettings`]: the switch's VIPs and zone, the upstreams.
    pub(super) fn set_dns(
        &mut self,
        settings: DnsSettings,
        registry: &Registry,
        tokens: (Token, Token),
    ) -> Result<(), DataplaneError> {
        self.dns
            .configure(settings.upstreams, registry, tokens)
            .map_err(|cause| DataplaneError::Io {
                op: "binding the DNS upstream socket",
                cause,
            })?;
        self.switch
            .set_dns(DnsConfig {
                vips: settings.vips,
                zone: settings.zone,
            })
            .map_err(|e| DataplaneError::Rejected(format!("DNS VIP: {e}")))
    }

    /// Reads what the upstreams answered. Returns whether there may be more.
    pub(super) fn drain_dns(&mut self, now: Instant) -> bool {
        let Core { dns, egress, .. } = self;
        let mut more = false;
        for v6 in [false, true] {
            let mut read = 0;
            loop {
                let socket = if v6 { &dns.v6 } else { &dns.v4 };
                let Some(socket) = socket else { break };
                if read >= UPSTREAM_BUDGET {
                    more = true;
                    break;
                }
                match socket.recv_from(&mut dns.recv) {
                    Ok((n, from)) => {
                        read += 1;
                        let bytes = dns.recv.get(..n).unwrap_or_default();
                        dns.forwarder.response(now, from, bytes, &mut dns.steps);
                        dns.run_steps(egress);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // An ICMP error for an earlier send: that attempt times
                    // out and fails over.
                    Err(_) => read += 1,
                }
            }
        }
        more
    }

    /// Retries or fails the forwarded queries whose attempt timed out.
    pub(super) fn expire_dns(&mut self, now: Instant) {
        let Core { dns, egress, .. } = self;
        if dns.forwarder.next_deadline().is_some_and(|d| d <= now) {
            dns.forwarder.expire(now, &mut dns.steps);
            dns.run_steps(egress);
        }
    }
}
