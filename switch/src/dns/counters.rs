//! The DNS VIP's counters: queries answered (by response code and by
//! question type), truncated, forwarded upstream, handed over for TCP,
//! packets to other ports, and queries dropped by reason.
//!
//! Contract: counting never allocates or panics (plain `u64`s that wrap);
//! every `as_str` name below is stable: they are metric label values, as
//! [`DropReason::as_str`](crate::DropReason::as_str) is.

use std::fmt;

/// Why a packet to the DNS VIP's UDP port 53 got no answer. The switch
/// counts each as [`DropReason::DnsQuery`](crate::DropReason::DnsQuery)
/// too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DnsDropReason {
    /// Shorter than a DNS header.
    TooShort,
    /// A response (QR set) sent to the VIP.
    NotAQuery,
    /// The UDP length field is below 8 or beyond the packet.
    BadLength,
    /// The UDP checksum is wrong (a host checks it; a router does not).
    BadChecksum,
    /// An IP fragment: queries are never reassembled.
    Fragment,
    /// A GSO super-packet: never a DNS query.
    SuperPacket,
    /// Not even a truncated response fits the caller's buffer.
    NoRoom,
}

impl DnsDropReason {
    /// Every reason, in counter order.
    pub const ALL: [Self; 7] = [
        Self::TooShort,
        Self::NotAQuery,
        Self::BadLength,
        Self::BadChecksum,
        Self::Fragment,
        Self::SuperPacket,
        Self::NoRoom,
    ];

    /// The stable metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::NotAQuery => "not_a_query",
            Self::BadLength => "bad_length",
            Self::BadChecksum => "bad_checksum",
            Self::Fragment => "fragment",
            Self::SuperPacket => "super_packet",
            Self::NoRoom => "no_room",
        }
    }
}

impl fmt::Display for DnsDropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The response codes the answers are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DnsRcode {
    NoError,
    FormErr,
    ServFail,
    NxDomain,
    NotImp,
    Refused,
    BadVers,
    /// Any other code.
    Other,
}

impl DnsRcode {
    /// Every code, in counter order.
    pub const ALL: [Self; 8] = [
        Self::NoError,
        Self::FormErr,
        Self::ServFail,
        Self::NxDomain,
        Self::NotImp,
        Self::Refused,
        Self::BadVers,
        Self::Other,
    ];

    /// The counted code of a response code number (extended codes
    /// included).
    pub const fn of(rcode: u16) -> Self {
        match rcode {
            0 => Self::NoError,
            1 => Self::FormErr,
            2 => Self::ServFail,
            3 => Self::NxDomain,
            4 => Self::NotImp,
            5 => Self::Refused,
            16 => Self::BadVers,
            _ => Self::Other,
        }
    }

    /// The stable metric label (RFC 1035 / 6891 mnemonics, lower case).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "noerror",
            Self::FormErr => "formerr",
            Self::ServFail => "servfail",
            Self::NxDomain => "nxdomain",
            Self::NotImp => "notimp",
            Self::Refused => "refused",
            Self::BadVers => "badvers",
            Self::Other => "other",
        }
    }
}

/// The question types the queries are counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DnsQtype {
    A,
    Aaaa,
    Srv,
    Ptr,
    Txt,
    Cname,
    Soa,
    Ns,
    Any,
    /// Any other type (or no readable question).
    Other,
}

impl DnsQtype {
    /// Every type, in counter order.
    pub const ALL: [Self; 10] = [
        Self::A,
        Self::Aaaa,
        Self::Srv,
        Self::Ptr,
        Self::Txt,
        Self::Cname,
        Self::Soa,
        Self::Ns,
        Self::Any,
        Self::Other,
    ];

    /// The counted type of a question type number.
    pub const fn of(qtype: u16) -> Self {
        match qtype {
            1 => Self::A,
            28 => Self::Aaaa,
            33 => Self::Srv,
            12 => Self::Ptr,
            16 => Self::Txt,
            5 => Self::Cname,
            6 => Self::Soa,
            2 => Self::Ns,
            255 => Self::Any,
            _ => Self::Other,
        }
    }

    /// The stable metric label (the type's mnemonic, lower case).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::A => "a",
            Self::Aaaa => "aaaa",
            Self::Srv => "srv",
            Self::Ptr => "ptr",
            Self::Txt => "txt",
            Self::Cname => "cname",
            Self::Soa => "soa",
            Self::Ns => "ns",
            Self::Any => "any",
            Self::Other => "other",
        }
    }
}

/// The DNS VIP's counters. Read them with
/// [`Switch::dns_counters`](crate::Switch::dns_counters).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsCounters {
    answered: [u64; DnsRcode::ALL.len()],
    queries: [u64; DnsQtype::ALL.len()],
    truncated: u64,
    forwarded: u64,
    tcp: u64,
    other_port: u64,
    drops: [u64; DnsDropReason::ALL.len()],
}

fn bump(c: Option<&mut u64>) {
    if let Some(c) = c {
        *c = c.wrapping_add(1);
    }
}

impl DnsCounters {
    /// Queries the switch answered itself with response code `rcode`.
    pub fn answered(&self, rcode: DnsRcode) -> u64 {
        self.answered.get(rcode as usize).copied().unwrap_or(0)
    }

    /// Queries the switch answered itself, whatever the code.
    pub fn answered_total(&self) -> u64 {
        self.answered.iter().fold(0u64, |a, b| a.wrapping_add(*b))
    }

    /// `(code, count)` for every response code, zeros included.
    pub fn answers(&self) -> impl Iterator<Item = (DnsRcode, u64)> + '_ {
        DnsRcode::ALL.iter().map(|r| (*r, self.answered(*r)))
    }

    /// Queries answered or forwarded whose question was of type `qtype`.
    pub fn queries(&self, qtype: DnsQtype) -> u64 {
        self.queries.get(qtype as usize).copied().unwrap_or(0)
    }

    /// `(type, count)` for every question type, zeros included.
    pub fn queries_by_type(&self) -> impl Iterator<Item = (DnsQtype, u64)> + '_ {
        DnsQtype::ALL.iter().map(|t| (*t, self.queries(*t)))
    }

    /// Answers sent truncated (TC set) to fit the client's UDP size or MTU.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    /// Queries handed to the engine for the upstream resolvers
    /// ([`Action::DnsForward`](crate::Action::DnsForward)).
    pub fn forwarded(&self) -> u64 {
        self.forwarded
    }

    /// TCP segments to port 53 handed to the engine
    /// ([`Action::DnsTcp`](crate::Action::DnsTcp)).
    pub fn tcp(&self) -> u64 {
        self.tcp
    }

    /// Packets to the VIP on another port or protocol (answered "port
    /// unreachable" where allowed).
    pub fn other_port(&self) -> u64 {
        self.other_port
    }

    /// Queries dropped for `reason`.
    pub fn dropped(&self, reason: DnsDropReason) -> u64 {
        self.drops.get(reason as usize).copied().unwrap_or(0)
    }

    /// `(reason, count)` for every reason, zeros included.
    pub fn drops(&self) -> impl Iterator<Item = (DnsDropReason, u64)> + '_ {
        DnsDropReason::ALL.iter().map(|r| (*r, self.dropped(*r)))
    }

    pub(crate) fn count_answer(&mut self, qtype: u16, rcode: u16, truncated: bool) {
        bump(self.answered.get_mut(DnsRcode::of(rcode) as usize));
        bump(self.queries.get_mut(DnsQtype::of(qtype) as usize));
        if truncated {
            self.truncated = self.truncated.wrapping_add(1);
        }
    }

    pub(crate) fn count_forward(&mut self, qtype: u16) {
        self.forwarded = self.forwarded.wrapping_add(1);
        bump(self.queries.get_mut(DnsQtype::of(qtype) as usize));
    }

    pub(crate) fn count_tcp(&mut self) {
        self.tcp = self.tcp.wrapping_add(1);
    }

    pub(crate) fn count_other_port(&mut self) {
        self.other_port = self.other_port.wrapping_add(1);
    }

    pub(crate) fn count_drop(&mut self, reason: DnsDropReason) {
        bump(self.drops.get_mut(reason as usize));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_snake_case(names: &[&str]) {
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
        let mut sorted = names.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
    }

    #[test]
    fn labels_are_in_index_order_unique_and_stable() {
        for (i, r) in DnsDropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, r) in DnsRcode::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, t) in DnsQtype::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i);
        }
        unique_snake_case(&DnsDropReason::ALL.map(DnsDropReason::as_str));
        unique_snake_case(&DnsRcode::ALL.map(DnsRcode::as_str));
        unique_snake_case(&DnsQtype::ALL.map(DnsQtype::as_str));
        // Metric labels: changing one breaks dashboards.
        assert_eq!(DnsDropReason::NotAQuery.as_str(), "not_a_query");
        assert_eq!(DnsDropReason::BadChecksum.as_str(), "bad_checksum");
        assert_eq!(DnsRcode::NxDomain.as_str(), "nxdomain");
        assert_eq!(DnsQtype::Aaaa.as_str(), "aaaa");
    }

    #[test]
    fn codes_and_types_map_by_number() {
        assert_eq!(DnsRcode::of(3), DnsRcode::NxDomain);
        assert_eq!(DnsRcode::of(16), DnsRcode::BadVers);
        assert_eq!(DnsRcode::of(9), DnsRcode::Other);
        assert_eq!(DnsQtype::of(33), DnsQtype::Srv);
        assert_eq!(DnsQtype::of(15), DnsQtype::Other);
    }

    #[test]
    fn counts() {
        let mut c = DnsCounters::default();
        c.count_answer(1, 0, false);
        c.count_answer(28, 3, true);
        c.count_forward(1);
        c.count_drop(DnsDropReason::Fragment);
        assert_eq!(c.answered_total(), 2);
        assert_eq!(c.answered(DnsRcode::NxDomain), 1);
        assert_eq!(c.queries(DnsQtype::A), 2);
        assert_eq!(c.queries(DnsQtype::Aaaa), 1);
        assert_eq!((c.truncated(), c.forwarded()), (1, 1));
        assert_eq!(c.dropped(DnsDropReason::Fragment), 1);
        assert_eq!(c.drops().map(|(_, n)| n).sum::<u64>(), 1);
    }
}
