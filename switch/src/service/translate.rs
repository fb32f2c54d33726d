//! The per-packet step: connection tracking plus service translation
//! (DESIGN "The packet path", steps 3 and 4), one call per packet or per
//! TSO/GRO super-packet.
//!
//! Steps of [`Translator::translate`]:
//! 1. Read the headers (bounds-checked views) into a [`FlowKey`]: ports
//!    for TCP/UDP, the identifier for ICMP echo, the quoted flow for an
//!    ICMP error.
//! 2. One conntrack lookup. A hit gives the entry and the direction; if
//!    the entry was translated and the service table changed since it
//!    last looked, its endpoint is checked: a UDP flow (or a TCP SYN
//!    reusing the tuple) whose endpoint is no longer usable is removed
//!    and handled as new; established TCP is left to finish. The entry
//!    is tracked (state, timeout, counters) and the packet rewritten to
//!    what the other side expects.
//! 3. A miss to a Service frontend from this node (a pod or the host)
//!    picks an endpoint ([`Translator::choose`]), SNATs to the node's
//!    hairpin address if the endpoint is the client itself, and creates
//!    the entry with both keys before rewriting: a second packet of the
//!    flow, however soon, finds it and gets the same endpoint.
//! 4. A miss to a Service address that cannot start a translated flow is
//!    rejected (no endpoint, unknown port: TCP RST or ICMP port
//!    unreachable written into `reply`) or dropped, never forwarded
//!    untranslated. Any other new flow gets an untranslated entry.
//!
//! ICMP errors are matched to the flow they quote and rewritten (outer
//! addresses, the quoted header, the ICMP checksum); they neither create
//! nor refresh entries.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::packet::{self, Headers, L4};
use super::table::{Origin, ServiceTable};
use super::translator::{Choice, Translator};
use crate::conntrack::{
    Conntrack, CreateError, Dir, EntryId, FlowKey, FlowState, Owner, ServiceRef, TcpFlags, TcpState,
};
use crate::wire::{proto, L4Checksum};

/// What the IO shell knows about a packet besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    /// Who sent it, for per-source conntrack limits.
    pub owner: Owner,
    /// From a local pod or the node's host port (Services are translated
    /// on the client's node); false for packets decrypted from a peer.
    pub local: bool,
    /// What the transport checksum field holds: full, or the partial
    /// pseudo-header sum of a TSO/USO/GRO super-packet.
    pub checksum: L4Checksum,
    /// Packets on the wire this one stands for (a super-packet's
    /// segments; 1 otherwise).
    pub segments: u32,
}

/// Why a packet was answered instead of forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// The Service has no usable endpoint.
    NoEndpoints,
    /// The Service address has no such port.
    UnknownPort,
}

/// Why [`Translator::translate`] dropped a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatDrop {
    /// Headers unreadable.
    Malformed,
    /// Aimed at a Service but cannot start a translated connection (TCP
    /// without SYN, a fragment, an ICMP error, from a peer).
    InvalidToService,
    /// Traffic policy Local and no endpoint on this node.
    NoLocalEndpoints,
    /// A reply from an endpoint that no longer serves the flow.
    StaleEndpoint,
    /// The conntrack table refused a new entry.
    Conntrack(CreateError),
    /// A hairpin connection without a hairpin address or a free port.
    Hairpin,
    /// A reject was due but `reply` could not hold it.
    NoReplyRoom,
    /// A packet of a translated flow that cannot be rewritten (IPv6
    /// extension headers before its transport header).
    Unrewritable,
}

/// What to do with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forward it (rewritten in place if its flow is translated).
    /// `entry` is `None` for packets conntrack does not track (stray TCP
    /// segments outside any connection, fragments, other ICMP); `new`
    /// says the entry was created by this packet (the policy step
    /// decides then).
    Forward {
        entry: Option<EntryId>,
        dir: Dir,
        new: bool,
    },
    /// Send `reply[..len]` back to the source instead.
    Reply { len: usize, reason: Reject },
    /// Drop it.
    Drop(NatDrop),
}

const UNTRACKED: Outcome = Outcome::Forward {
    entry: None,
    dir: Dir::Original,
    new: false,
};

/// Probes for a free hairpin port before giving up.
const HAIRPIN_PROBES: u32 = 64;

/// Source ports a clashing connection is moved to: Linux's default
/// ephemeral range below the hairpin range.
const REMAP_PORTS: std::ops::RangeInclusive<u16> = 32_768..=60_999;

fn key_of(h: &Headers) -> Option<FlowKey> {
    match h.l4 {
        L4::Tcp {
            src_port, dst_port, ..
        }
        | L4::Udp { src_port, dst_port } => FlowKey::new(h.proto, h.src, src_port, h.dst, dst_port),
        L4::Echo { id, request } => FlowKey::icmp_echo(h.src, h.dst, id, request),
        L4::Other => FlowKey::new(h.proto, h.src, 0, h.dst, 0),
        L4::IcmpError { .. } | L4::Icmp | L4::Fragment => None,
    }
}

fn flags_of(h: &Headers) -> TcpFlags {
    match h.l4 {
        L4::Tcp { flags, .. } => TcpFlags(flags),
        _ => TcpFlags(0),
    }
}

fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// One packet being handled.
struct Packet<'a> {
    bytes: &'a mut [u8],
    h: Headers,
    meta: PacketMeta,
    now: Instant,
}

impl Translator {
    /// Tracks and, for Service flows, translates the IP packet `pkt` in
    /// place. `reply` is scratch space for a reject (at least the
    /// packet's headers plus 48 bytes; 1280 always suffices). See the
    /// module docs for the steps. Never allocates, reads a clock or
    /// panics.
    pub fn translate(
        &mut self,
        ct: &mut Conntrack,
        table: &ServiceTable,
        pkt: &mut [u8],
        meta: PacketMeta,
        reply: &mut [u8],
        now: Instant,
    ) -> Outcome {
        let h = match packet::parse(pkt) {
            Ok(h) => h,
            Err(_) => {
                if packet::peek_dst(pkt).is_some_and(|d| table.is_vip(d)) {
                    self.stats.invalid_to_service += 1;
                }
                return Outcome::Drop(NatDrop::Malformed);
            }
        };
        let mut p = Packet {
            bytes: pkt,
            h,
            meta,
            now,
        };
        if let L4::IcmpError { quoted } = p.h.l4 {
            return self.icmp_error(ct, table, &mut p, quoted);
        }
        let Some(key) = key_of(&p.h) else {
            // Fragments and other ICMP carry no flow of their own.
            if table.is_vip(p.h.dst) {
                self.stats.invalid_to_service += 1;
                return Outcome::Drop(NatDrop::InvalidToService);
            }
            return UNTRACKED;
        };
        if let Some((id, dir)) = ct.lookup(&key, now) {
            match self.revalidate(ct, table, id, dir, &p.h) {
                Some(true) => return forward(ct, &mut p, id, dir, false),
                Some(false) => return Outcome::Drop(NatDrop::StaleEndpoint),
                // Removed: handled as the first packet of a new flow.
                None => {}
            }
        }
        self.first_packet(ct, table, &mut p, key, reply)
    }

    /// After a table change, checks that a translated entry's endpoint
    /// still serves: `Some(true)` to go on, `Some(false)` to drop this
    /// packet (a reply from a stale endpoint), `None` when the entry was
    /// removed and the packet starts a new flow.
    fn revalidate(
        &mut self,
        ct: &mut Conntrack,
        table: &ServiceTable,
        id: EntryId,
        dir: Dir,
        h: &Headers,
    ) -> Option<bool> {
        let generation = table.generation();
        let e = ct.get_mut(id)?;
        let Some(svc) = e.service else {
            return Some(true);
        };
        // A SYN reusing the tuple is checked whatever the generation: the
        // connection it opens must not go to a gone endpoint.
        let syn = TcpState::open(flags_of(h), false).is_some() && dir == Dir::Original;
        if svc.generation == generation && !syn {
            return Some(true);
        }
        let (orig, reply) = (*e.orig(), *e.reply());
        let serves = table
            .frontend(orig.proto(), sock(orig.dst(), orig.dst_port()))
            .is_some_and(|f| table.still_listed(f, sock(reply.src(), reply.src_port())));
        if serves || (orig.proto() == proto::TCP && !syn) {
            // Established TCP connections are left to finish (as
            // kube-proxy leaves their conntrack entries).
            e.service = Some(ServiceRef { generation, ..svc });
            return Some(true);
        }
        ct.remove(id);
        self.stats.stale_flows += 1;
        match dir {
            Dir::Original => None,
            Dir::Reply => Some(false),
        }
    }

    /// The first packet of a flow conntrack does not know.
    fn first_packet(
        &mut self,
        ct: &mut Conntrack,
        table: &ServiceTable,
        p: &mut Packet<'_>,
        key: FlowKey,
        reply: &mut [u8],
    ) -> Outcome {
        let (h, meta, now) = (&p.h, p.meta, p.now);
        let flags = flags_of(h);
        let frontend = table.frontend(h.proto, sock(h.dst, key.dst_port()));
        if frontend.is_some() || table.is_vip(h.dst) {
            let opens = match h.l4 {
                L4::Tcp { .. } => TcpState::open(flags, false).is_some(),
                _ => true,
            };
            if !meta.local || !opens || !h.plain {
                self.stats.invalid_to_service += 1;
                return Outcome::Drop(NatDrop::InvalidToService);
            }
            if frontend.is_none() {
                self.stats.unknown_port_rejects += 1;
                return self.reject(p, reply, Reject::UnknownPort);
            }
        }
        let Some(state) = FlowState::open(h.proto, flags, self.cfg.tcp_loose) else {
            return UNTRACKED;
        };
        let Some(f) = frontend else {
            let reply_key = self.unique_reply_key(ct, &key, sock(key.dst(), key.dst_port()), now);
            return match ct.create(key, reply_key, meta.owner, state, now) {
                Ok(id) => forward(ct, p, id, Dir::Original, true),
                Err(e) => {
                    self.stats.conntrack_refused += 1;
                    Outcome::Drop(NatDrop::Conntrack(e))
                }
            };
        };
        let endpoint = match self.choose(table, f, Origin::Internal, h.src, now) {
            Choice::Endpoint(ep) => ep,
            Choice::NoLocalEndpoints => {
                self.stats.no_local_endpoint_drops += 1;
                return Outcome::Drop(NatDrop::NoLocalEndpoints);
            }
            Choice::NoEndpoints => {
                self.stats.no_endpoint_rejects += 1;
                return self.reject(p, reply, Reject::NoEndpoints);
            }
        };
        let hairpin = endpoint.ip() == h.src;
        let reply_key = if hairpin {
            match self.hairpin_reply_key(ct, &key, endpoint, now) {
                Some(k) => k,
                None => {
                    self.stats.hairpin_failures += 1;
                    return Outcome::Drop(NatDrop::Hairpin);
                }
            }
        } else {
            self.unique_reply_key(ct, &key, endpoint, now)
        };
        let id = match ct.create(key, reply_key, meta.owner, state, now) {
            Ok(id) => id,
            Err(e) => {
                self.stats.conntrack_refused += 1;
                return Outcome::Drop(NatDrop::Conntrack(e));
            }
        };
        if let Some(e) = ct.get_mut(id) {
            e.service = Some(ServiceRef {
                generation: table.generation(),
                hairpin,
            });
        }
        self.stats.translations += 1;
        self.stats.hairpins += u64::from(hairpin);
        forward(ct, p, id, Dir::Original, true)
    }

    /// The reply key of a flow from `key`'s source to `to`: the plain one
    /// when no live entry holds it; else, for TCP and UDP, the same with
    /// the client's source port moved to a free one of [`REMAP_PORTS`]
    /// (as Linux's NAT does on a tuple clash), so that a pod's connection
    /// to a Service and one straight to the chosen endpoint from the same
    /// source port both work. Left plain (the create then fails, counted)
    /// when nothing is free.
    fn unique_reply_key(
        &mut self,
        ct: &Conntrack,
        key: &FlowKey,
        to: SocketAddr,
        now: Instant,
    ) -> FlowKey {
        let plain = key.with_dst(to.ip(), to.port()).reverse();
        if ct.is_free(&plain, now) || !matches!(key.proto(), proto::TCP | proto::UDP) {
            return plain;
        }
        let (lo, hi) = (*REMAP_PORTS.start(), *REMAP_PORTS.end());
        let span = u32::from(hi - lo) + 1;
        let start = u32::from(key.src_port()).wrapping_mul(40_503) ^ u32::from(to.port());
        let moved = (0..HAIRPIN_PROBES).find_map(|i| {
            let port = lo.checked_add(u16::try_from(start.wrapping_add(i) % span).ok()?)?;
            let reply = FlowKey::new(key.proto(), to.ip(), to.port(), key.src(), port)?;
            ct.is_free(&reply, now).then_some(reply)
        });
        match moved {
            Some(reply) => {
                self.stats.source_ports_remapped += 1;
                reply
            }
            None => plain,
        }
    }

    /// The reply key of a hairpin connection: the endpoint answering the
    /// node's hairpin address on a free port of the hairpin range,
    /// probed from a point the flow's key decides.
    fn hairpin_reply_key(
        &self,
        ct: &Conntrack,
        key: &FlowKey,
        endpoint: SocketAddr,
        now: Instant,
    ) -> Option<FlowKey> {
        let addr = self.hairpin_addr(key.is_v6())?;
        let (lo, hi) = (
            *self.cfg.hairpin_ports.start(),
            *self.cfg.hairpin_ports.end(),
        );
        let span = u32::from(hi.checked_sub(lo)?) + 1;
        let start = u32::from(key.src_port()) ^ (u32::from(key.dst_port()) << 3);
        (0..HAIRPIN_PROBES.min(span)).find_map(|i| {
            let port = lo.checked_add(u16::try_from((start + i) % span).ok()?)?;
            let reply = FlowKey::new(key.proto(), endpoint.ip(), endpoint.port(), addr, port)?;
            ct.is_free(&reply, now).then_some(reply)
        })
    }

    /// Writes the reject for `p` into `reply`: a TCP RST from the
    /// Service address, or an ICMP port unreachable.
    fn reject(&mut self, p: &Packet<'_>, reply: &mut [u8], reason: Reject) -> Outcome {
        let len = match p.h.l4 {
            L4::Tcp { .. } => packet::write_reset(reply, &p.h),
            _ => packet::write_port_unreachable(reply, p.bytes),
        };
        match len {
            Some(len) => Outcome::Reply { len, reason },
            None => Outcome::Drop(NatDrop::NoReplyRoom),
        }
    }

    /// An ICMP error: rewritten for the translated flow it quotes.
    fn icmp_error(
        &mut self,
        ct: &mut Conntrack,
        table: &ServiceTable,
        p: &mut Packet<'_>,
        quoted: FlowKey,
    ) -> Outcome {
        // The quoted packet went the other way: its reverse is the key
        // of the direction the error travels.
        let found = ct.lookup(&quoted.reverse(), p.now);
        let Some((id, dir, e)) = found.and_then(|(id, dir)| Some((id, dir, ct.get(id)?))) else {
            if table.is_vip(p.h.dst) {
                self.stats.invalid_to_service += 1;
                return Outcome::Drop(NatDrop::InvalidToService);
            }
            return UNTRACKED;
        };
        if e.is_translated() {
            let own = match dir {
                Dir::Original => *e.orig(),
                Dir::Reply => *e.reply(),
            };
            let to = e.rewrite_for(dir);
            // The outer addresses move like the flow's own packets when
            // they are the flow's (a router's address stays).
            let h = &p.h;
            let src = (h.src == own.src() && h.src != to.src()).then(|| to.src());
            let dst = (h.dst == own.dst() && h.dst != to.dst()).then(|| to.dst());
            if !packet::rewrite_icmp_error(p.bytes, src, dst, &to.reverse()) {
                return Outcome::Drop(NatDrop::Malformed);
            }
            self.stats.icmp_errors_translated += 1;
        }
        Outcome::Forward {
            entry: Some(id),
            dir,
            new: false,
        }
    }
}

/// Tracks a packet of entry `id` and rewrites it if the entry is
/// translated.
fn forward(ct: &mut Conntrack, p: &mut Packet<'_>, id: EntryId, dir: Dir, new: bool) -> Outcome {
    let h = &p.h;
    ct.track(id, dir, flags_of(h), h.len, p.meta.segments, p.now);
    if let Some(e) = ct.get(id) {
        if e.is_translated() {
            let to = e.rewrite_for(dir);
            let src = (h.src != to.src() || h.src_port() != to.src_port())
                .then(|| sock(to.src(), to.src_port()));
            let dst = (h.dst != to.dst() || h.dst_port() != to.dst_port())
                .then(|| sock(to.dst(), to.dst_port()));
            // A packet of a translated flow that cannot be rewritten (IPv6
            // extension headers) must not leave as it is.
            if !packet::rewrite(p.bytes, p.meta.checksum, src, dst) {
                return Outcome::Drop(NatDrop::Unrewritable);
            }
        }
    }
    Outcome::Forward {
        entry: Some(id),
        dir,
        new,
    }
}
