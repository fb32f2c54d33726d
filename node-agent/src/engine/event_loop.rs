//! The engine's thread: one `epoll` loop (via mio, edge-triggered) over the
//! UDP socket, the host TUN, every pod TUN and an eventfd waker for
//! commands, plus a 250 ms timer tick for WireGuard.
//!
//! Contract:
//! - One dedicated OS thread (`weft-dataplane`), never a tokio worker; it
//!   owns every fd, table and buffer, so nothing on it locks.
//! - Each round: wait for readiness (or the next tick), apply queued
//!   commands, then serve every ready fd up to a budget (per TUN,
//!   `TUN_BUDGET` reads and `TUN_SEGMENT_BUDGET` packets, a super-packet
//!   counting as its segments; for the socket, [`UDP_DATA_BUDGET`]
//!   transport data datagrams within at most [`UDP_MAX_BATCHES`] `recvmmsg`
//!   batches, each followed by writing out what was coalesced), then up to
//!   `HANDSHAKE_BUDGET` queued handshake messages. An fd (or queue) that
//!   used its budget stays marked ready and is served again next round
//!   without waiting, so one busy pod cannot starve the rest, and no edge
//!   is lost. The round ends by flushing the send batch.
//! - Data first, handshakes after, on separate budgets: reading a
//!   handshake message costs a rate check and at most two BLAKE2s (its
//!   Diffie-Hellman waits in the queue), so a flood of them is read out of
//!   the socket about as fast as it arrives and data never waits behind it
//!   in the kernel's receive buffer; the queue and the per-source rate
//!   bound the Diffie-Hellman work.
//! - Pod TUNs handed in are registered under the token `PORT_BASE + id`,
//!   deregistered and handed back on detach; they stay persistent.

use std::io;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use tracing::{debug, error, info, info_span, warn};

use super::control::Command;
use super::core::{Core, Offloads};
use super::link::Link;
use super::links::{LinkId, Port};
use super::udp::{self, RxBatch, BATCH};
use super::{DataplaneConfig, DataplaneError, PodPort};
use crate::kernel::tun::Tun;
use weft_switch::conntrack::{ConntrackConfig, HashSeed};
use weft_switch::service::TranslatorConfig;
use weft_switch::{PortId, ServicesConfig, Switch};

/// How often WireGuard's timers run (boringtun's own device uses 250 ms).
pub(super) const TICK: Duration = Duration::from_millis(250);

/// Transport data datagrams read per round, at most (as 4 full batches).
pub(super) const UDP_DATA_BUDGET: u64 = 4 * BATCH as u64;

/// `recvmmsg` batches per round, at most: handshake messages cost little to
/// read (their crypto waits in the queue), so a round drains up to this
/// many to keep a flood of them from filling the socket's buffer.
pub(super) const UDP_MAX_BATCHES: usize = 64;

/// Conntrack entries the timer reclaims per tick at most (16 384 a
/// second: more than the table's insert sweep leaves behind).
const CONNTRACK_EXPIRY_BATCH: usize = 4096;

const WAKER: Token = Token(0);
const UDP: Token = Token(1);
const HOST: Token = Token(2);
/// The DNS upstream sockets (IPv4, IPv6).
const DNS_V4: Token = Token(3);
const DNS_V6: Token = Token(4);
const PORT_BASE: usize = 5;

fn port_token(id: PortId) -> Token {
    Token(PORT_BASE + id.0 as usize)
}

fn io_error(op: &'static str) -> impl FnOnce(io::Error) -> DataplaneError {
    move |cause| DataplaneError::Io { op, cause }
}

/// Conntrack and translation with seeds from the OS's randomness (pods
/// must not learn them: they key the tables' hashes).
fn services_config(conntrack: ConntrackConfig) -> ServicesConfig {
    ServicesConfig {
        conntrack,
        translator: TranslatorConfig::default(),
        conntrack_seed: HashSeed::from_bytes(rand::random()),
        affinity_seed: HashSeed::from_bytes(rand::random()),
        random_seed: rand::random(),
    }
}

/// What [`start`] hands back to the handle.
pub(super) struct Started {
    pub(super) waker: Arc<Waker>,
    pub(super) thread: JoinHandle<bool>,
    pub(super) public_key: [u8; 32],
    pub(super) local_addr: Option<std::net::SocketAddr>,
}

/// Validates the configuration, sets up the socket and poller, and spawns
/// the engine thread.
pub(super) fn start(
    cfg: DataplaneConfig,
    host: Tun,
    socket: std::net::UdpSocket,
    commands: Receiver<Command>,
) -> Result<Started, DataplaneError> {
    let mut switch = Switch::new();
    switch
        .set_node_cidrs(&cfg.node_cidrs)
        .map_err(|e| DataplaneError::Rejected(format!("node CIDRs: {e}")))?;
    switch
        .set_host_addresses(&cfg.host_addresses)
        .map_err(|e| DataplaneError::Rejected(format!("host addresses: {e}")))?;
    switch
        .set_mtu(cfg.mtu)
        .map_err(|e| DataplaneError::Rejected(format!("MTU: {e}")))?;
    if let Some(conntrack) = cfg.services {
        // After the host addresses: they are the hairpin sources.
        switch.enable_services(services_config(conntrack), Instant::now());
    }
    let (buffers, udp_offloads) = udp::tune(&socket, udp::SOCKET_BUFFER_BYTES, cfg.offload)
        .map_err(io_error("tuning the UDP socket"))?;
    let host = Link::new(host, cfg.offload);
    let local_addr = socket.local_addr().ok();
    let poll = Poll::new().map_err(io_error("creating the poller"))?;
    let waker =
        Arc::new(Waker::new(poll.registry(), WAKER).map_err(io_error("creating the waker"))?);
    poll.registry()
        .register(&mut SourceFd(&socket.as_raw_fd()), UDP, Interest::READABLE)
        .map_err(io_error("registering the UDP socket"))?;
    poll.registry()
        .register(
            &mut SourceFd(&host.tun().as_raw_fd()),
            HOST,
            Interest::READABLE,
        )
        .map_err(io_error("registering the host TUN"))?;
    let key = cfg.key;
    let public_key = key.public_bytes();
    info!(
        listen = ?local_addr,
        host = host.tun().name(),
        node_cidrs = ?cfg.node_cidrs,
        rcvbuf = buffers.receive,
        sndbuf = buffers.send,
        offload = cfg.offload,
        tun_offload = host.offload(),
        udp_gso = udp_offloads.gso,
        udp_gro = udp_offloads.gro,
        "data plane starting"
    );
    let keepalive = cfg.persistent_keepalive;
    let offloads = Offloads {
        requested: cfg.offload,
        udp_gro: udp_offloads.gro,
    };
    let thread = thread::Builder::new()
        .name("weft-dataplane".into())
        .spawn(move || {
            let span = info_span!("dataplane", listen = ?local_addr);
            let _entered = span.enter();
            // The batches hold raw pointers (not `Send`): built here.
            let engine = Engine {
                poll,
                events: Events::with_capacity(256),
                commands,
                rx: RxBatch::new(&socket),
                core: Core::new(
                    switch,
                    key,
                    keepalive,
                    host,
                    socket,
                    offloads,
                    udp_offloads.gso,
                ),
                ready: Readiness::default(),
            };
            match panic::catch_unwind(AssertUnwindSafe(|| engine.run())) {
                Ok(clean) => clean,
                Err(_) => {
                    error!("the data plane engine panicked; it has stopped");
                    false
                }
            }
        })
        .map_err(io_error("spawning the data plane thread"))?;
    Ok(Started {
        waker,
        thread,
        public_key,
        local_addr,
    })
}

/// Which fds have (or may have) input waiting.
#[derive(Debug, Default)]
struct Readiness {
    commands: bool,
    udp: bool,
    host: bool,
    /// An upstream DNS socket has answers.
    dns: bool,
    /// Handshake messages are queued.
    handshakes: bool,
    /// Indexed by `PortId`: whether it is in `ports`.
    port: Vec<bool>,
    ports: Vec<PortId>,
    /// The list being served this round (swapped with `ports`).
    serving: Vec<PortId>,
}

impl Readiness {
    fn mark_port(&mut self, id: PortId) {
        let i = id.0 as usize;
        if self.port.len() <= i {
            self.port.resize(i + 1, false);
        }
        if !self.port[i] {
            self.port[i] = true;
            self.ports.push(id);
        }
    }

    fn any(&self) -> bool {
        self.commands
            || self.udp
            || self.host
            || self.dns
            || self.handshakes
            || !self.ports.is_empty()
    }
}

/// Whether the loop goes on.
enum Flow {
    Continue,
    Stop,
}

struct Engine {
    poll: Poll,
    events: Events,
    commands: Receiver<Command>,
    rx: RxBatch,
    core: Core,
    ready: Readiness,
}

impl Engine {
    /// The event loop. Returns whether it stopped cleanly (on request).
    fn run(mut self) -> bool {
        let mut next_tick = Instant::now() + TICK;
        loop {
            let timeout = if self.ready.any() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                error!(error = %e, "polling failed; the data plane stops");
                return false;
            }
            for event in self.events.iter() {
                match event.token() {
                    WAKER => self.ready.commands = true,
                    UDP => self.ready.udp = true,
                    HOST => self.ready.host = true,
                    DNS_V4 | DNS_V6 => self.ready.dns = true,
                    Token(t) => self.ready.mark_port(PortId((t - PORT_BASE) as u32)),
                }
            }
            if self.ready.commands {
                self.ready.commands = false;
                if let Flow::Stop = self.handle_commands() {
                    self.core.flush();
                    info!("data plane stopped");
                    return true;
                }
            }
            let now = Instant::now();
            self.serve(now);
            if now >= next_tick {
                self.core.tick(now);
                self.core.expire_dns(now);
                // Expired conntrack entries are gone on sight; this
                // reclaims their slots while the node is idle, a bounded
                // batch per tick.
                self.core
                    .switch
                    .expire_conntrack(now, CONNTRACK_EXPIRY_BATCH);
                next_tick = now + TICK;
            }
            self.core.flush();
        }
    }

    /// Serves every ready fd once, within its budget.
    fn serve(&mut self, now: Instant) {
        if self.ready.udp {
            self.ready.udp = self.drain_udp(now);
        }
        if self.ready.host {
            self.ready.host = self.core.drain_link(LinkId::Host, now);
        }
        if self.ready.dns {
            self.ready.dns = self.core.drain_dns(now);
        }
        if !self.ready.ports.is_empty() {
            std::mem::swap(&mut self.ready.ports, &mut self.ready.serving);
            let mut serving = std::mem::take(&mut self.ready.serving);
            for id in serving.drain(..) {
                if let Some(flag) = self.ready.port.get_mut(id.0 as usize) {
                    *flag = false;
                }
                if self.core.drain_link(LinkId::Port(id), now) {
                    self.ready.mark_port(id);
                }
            }
            // Keep the (empty) list's capacity for the next round.
            self.ready.serving = serving;
        }
        // Handshakes after the data, on their own budget.
        self.ready.handshakes = self.core.serve_handshakes(now);
    }

    /// Reads batches until the socket is empty, [`UDP_DATA_BUDGET`] data
    /// datagrams were handled, or [`UDP_MAX_BATCHES`] batches were read.
    /// Returns whether there may be more.
    fn drain_udp(&mut self, now: Instant) -> bool {
        let data_before = self.core.wg.data_datagrams;
        for _ in 0..UDP_MAX_BATCHES {
            match self.rx.recv() {
                Ok(n) => {
                    for i in 0..n {
                        self.core.on_message(&self.rx.get(i), now);
                    }
                    // Coalesced segments go out with each batch.
                    self.core.egress.flush_gro();
                    // A short batch emptied the queue; a new datagram is a
                    // new edge.
                    if n < BATCH {
                        return false;
                    }
                    if self.core.wg.data_datagrams.wrapping_sub(data_before) >= UDP_DATA_BUDGET {
                        return true;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) => {
                    // Asynchronous errors (an ICMP unreachable for an earlier
                    // send) are consumed by the call that reports them: try
                    // again next round.
                    debug!(error = %e, "receiving from the UDP socket failed");
                    return matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::HostUnreachable
                            | io::ErrorKind::NetworkUnreachable
                    );
                }
            }
        }
        true
    }

    fn handle_commands(&mut self) -> Flow {
        loop {
            let command = match self.commands.try_recv() {
                Ok(command) => command,
                Err(TryRecvError::Empty) => return Flow::Continue,
                Err(TryRecvError::Disconnected) => return Flow::Stop,
            };
            match command {
                Command::Shutdown => return Flow::Stop,
                Command::SetPeer(spec, reply) => {
                    let _ = reply.send(self.core.set_peer(spec));
                }
                Command::SetPeers(specs, reply) => {
                    let _ = reply.send(self.core.set_peers(specs));
                }
                Command::RemovePeer(name, reply) => {
                    let _ = reply.send(Ok(self.core.remove_peer(&name)));
                }
                Command::AttachPod(port, reply) => {
                    let _ = reply.send(self.attach(port));
                }
                Command::DetachPod(id, reply) => {
                    let _ = reply.send(Ok(self.detach(&id)));
                }
                Command::Status(reply) => {
                    let _ = reply.send(Ok(self.core.status()));
                }
                Command::SetDns(settings, reply) => {
                    let registry = self.poll.registry();
                    let _ = reply.send(self.core.set_dns(settings, registry, (DNS_V4, DNS_V6)));
                }
                Command::SetServices(table, reply) => {
                    let _ = reply.send(self.core.set_services(table));
                }
                Command::SetPolicy(table, reply) => {
                    let _ = reply.send(self.core.set_policy(table));
                }
                Command::TakeDenials(reply) => {
                    let _ = reply.send(Ok(self.core.take_denials()));
                }
                Command::Trace(port, packet, reply) => {
                    let _ = reply.send(self.core.trace(&port, &packet));
                }
            }
        }
    }

    fn registry(&self) -> &Registry {
        self.poll.registry()
    }

    fn attach(&mut self, pod: PodPort) -> Result<(), DataplaneError> {
        if self.core.egress.links.ports.id_of(&pod.id).is_some() {
            return Err(DataplaneError::Rejected(format!(
                "pod port {} is already attached",
                pod.id
            )));
        }
        let id = self
            .core
            .egress
            .links
            .ports
            .free_id()
            .ok_or_else(|| DataplaneError::Rejected("too many pod ports".into()))?;
        self.core
            .switch
            .set_pod_port(id, &pod.addresses)
            .map_err(|e| DataplaneError::Rejected(format!("pod port {}: {e}", pod.id)))?;
        let link = Link::new(pod.tun, self.core.offloads.requested);
        if let Err(e) = self.registry().register(
            &mut SourceFd(&link.tun().as_raw_fd()),
            port_token(id),
            Interest::READABLE,
        ) {
            self.core.switch.remove_pod_port(id);
            return Err(DataplaneError::Io {
                op: "registering a pod TUN",
                cause: e,
            });
        }
        info!(port = %pod.id, ifname = link.tun().name(), addresses = ?pod.addresses, offload = link.offload(), "pod port attached");
        self.core.egress.links.ports.insert(
            id,
            Port {
                id: pod.id,
                link,
                addresses: pod.addresses,
            },
        );
        // Serve anything the pod queued before it was attached.
        self.ready.mark_port(id);
        Ok(())
    }

    fn detach(&mut self, attachment: &str) -> Option<Tun> {
        let id = self.core.egress.links.ports.id_of(attachment)?;
        let port = self.core.egress.links.ports.remove(id)?;
        self.core.switch.remove_pod_port(id);
        if let Err(e) = self
            .registry()
            .deregister(&mut SourceFd(&port.link.tun().as_raw_fd()))
        {
            warn!(port = %port.id, error = %e, "deregistering a pod TUN failed");
        }
        info!(port = %port.id, "pod port detached");
        Some(port.link.into_tun())
    }
}
