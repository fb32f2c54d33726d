//! Per-protocol flow state and the timeouts that follow from it: Linux's
//! nf_conntrack defaults, configurable.
//!
//! Contract: [`FlowState::advance`] is a total function of the state, the
//! packet's direction and TCP flags, and the entry's age; it returns the
//! timeout to arm. Defaults (the `net.netfilter.nf_conntrack_*` sysctls):
//! TCP `tcp_timeout_syn_sent` 120 s, `syn_recv` 60 s, `established`
//! 432 000 s (5 days), `fin_wait` 120 s, `close_wait` 60 s, `last_ack`
//! 30 s, `time_wait` 120 s, `close` 10 s; UDP `udp_timeout` 30 s until the
//! flow is a stream, `udp_timeout_stream` 120 s once it is (a reply seen
//! and a packet more than 2 s after the first, as Linux decides since
//! 5.0); `icmp_timeout` 30 s; `generic_timeout` 600 s.

use std::time::Duration;

use super::tcp::{Dir, TcpFlags, TcpState};
use crate::wire::proto;

/// How long an idle entry lives in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: Duration,
    pub tcp_syn_recv: Duration,
    pub tcp_established: Duration,
    pub tcp_fin_wait: Duration,
    pub tcp_close_wait: Duration,
    pub tcp_last_ack: Duration,
    pub tcp_time_wait: Duration,
    pub tcp_close: Duration,
    /// UDP before it is a stream.
    pub udp: Duration,
    /// UDP once it is a stream.
    pub udp_stream: Duration,
    /// ICMP echo.
    pub icmp: Duration,
    /// Any other protocol.
    pub generic: Duration,
}

/// How long after its first packet a replied UDP flow becomes a stream.
pub const UDP_STREAM_AFTER: Duration = Duration::from_secs(2);

impl Default for Timeouts {
    fn default() -> Self {
        let s = Duration::from_secs;
        Self {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            generic: s(600),
        }
    }
}

impl Timeouts {
    fn tcp(&self, s: TcpState) -> Duration {
        match s {
            TcpState::SynSent => self.tcp_syn_sent,
            TcpState::SynRecv => self.tcp_syn_recv,
            TcpState::Established => self.tcp_established,
            TcpState::FinWait => self.tcp_fin_wait,
            TcpState::CloseWait => self.tcp_close_wait,
            TcpState::LastAck => self.tcp_last_ack,
            TcpState::TimeWait => self.tcp_time_wait,
            TcpState::Close => self.tcp_close,
        }
    }
}

/// What an entry knows of its flow's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// TCP, with the direction of the first FIN once there is one.
    Tcp {
        state: TcpState,
        first_fin: Option<Dir>,
    },
    /// UDP.
    Udp { replied: bool, stream: bool },
    /// ICMP or ICMPv6 echo.
    Icmp { replied: bool },
    /// Another protocol.
    Other { replied: bool },
}

impl FlowState {
    /// The state of a new entry for a first packet of protocol `proto`
    /// (with `flags` if TCP); `None` for a TCP segment that cannot open a
    /// connection (see [`TcpState::open`]).
    pub fn open(proto: u8, flags: TcpFlags, pick_up: bool) -> Option<Self> {
        Some(match proto {
            proto::TCP => Self::Tcp {
                state: TcpState::open(flags, pick_up)?,
                first_fin: None,
            },
            proto::UDP => Self::Udp {
                replied: false,
                stream: false,
            },
            proto::ICMP | proto::ICMPV6 => Self::Icmp { replied: false },
            _ => Self::Other { replied: false },
        })
    }

    /// The state after a packet travelling `dir` (with `flags` if TCP),
    /// `age` after the entry's first packet.
    pub fn advance(self, dir: Dir, flags: TcpFlags, age: Duration) -> Self {
        let reply = dir == Dir::Reply;
        match self {
            Self::Tcp { state, first_fin } => {
                let (state, first_fin) = state.next(dir, flags, first_fin);
                Self::Tcp { state, first_fin }
            }
            Self::Udp { replied, stream } => {
                let replied = replied || reply;
                Self::Udp {
                    replied,
                    stream: stream || (replied && age > UDP_STREAM_AFTER),
                }
            }
            Self::Icmp { replied } => Self::Icmp {
                replied: replied || reply,
            },
            Self::Other { replied } => Self::Other {
                replied: replied || reply,
            },
        }
    }

    /// The idle timeout of this state.
    pub fn timeout(&self, t: &Timeouts) -> Duration {
        match self {
            Self::Tcp { state, .. } => t.tcp(*state),
            Self::Udp { stream: true, .. } => t.udp_stream,
            Self::Udp { .. } => t.udp,
            Self::Icmp { .. } => t.icmp,
            Self::Other { .. } => t.generic,
        }
    }

    /// Whether a full table must keep this entry rather than make room
    /// with it: an established TCP connection or a UDP stream (Linux's
    /// "assured" entries that early drop skips).
    pub fn protected(&self) -> bool {
        match self {
            Self::Tcp { state, .. } => state.protected(),
            Self::Udp { stream, .. } => *stream,
            Self::Icmp { .. } | Self::Other { .. } => false,
        }
    }

    /// Whether a reply has been seen.
    pub fn replied(&self) -> bool {
        match self {
            Self::Tcp { state, .. } => !matches!(state, TcpState::SynSent),
            Self::Udp { replied, .. } | Self::Icmp { replied } | Self::Other { replied } => {
                *replied
            }
        }
    }

    /// A short name for status and traces: the TCP state, or
    /// `UNREPLIED` / `REPLIED` / `STREAM`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Tcp { state, .. } => state.as_str(),
            Self::Udp { stream: true, .. } => "STREAM",
            s if s.replied() => "REPLIED",
            _ => "UNREPLIED",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn linux_defaults() {
        let t = Timeouts::default();
        assert_eq!(t.tcp_established, S(5 * 24 * 3600));
        assert_eq!((t.udp, t.udp_stream, t.icmp), (S(30), S(120), S(30)));
        let syn = FlowState::open(6, TcpFlags(TcpFlags::SYN), false).unwrap();
        assert_eq!(syn.timeout(&t), S(120));
    }

    #[test]
    fn udp_becomes_a_stream_after_a_reply_and_two_seconds() {
        let t = Timeouts::default();
        let f = FlowState::open(17, TcpFlags(0), false).unwrap();
        assert_eq!((f.timeout(&t), f.as_str()), (S(30), "UNREPLIED"));
        // More packets one way, even late, keep it unreplied.
        let f = f.advance(Dir::Original, TcpFlags(0), S(10));
        assert!(!f.replied() && !f.protected());
        // A reply within 2 s: replied, still 30 s (a DNS exchange).
        let f = f.advance(Dir::Reply, TcpFlags(0), Duration::from_millis(1500));
        assert_eq!((f.timeout(&t), f.as_str()), (S(30), "REPLIED"));
        assert!(!f.protected());
        // Traffic after 2 s: a stream.
        let f = f.advance(Dir::Original, TcpFlags(0), Duration::from_millis(2001));
        assert_eq!((f.timeout(&t), f.as_str()), (S(120), "STREAM"));
        assert!(f.protected());
    }

    #[test]
    fn icmp_and_other_protocols() {
        let t = Timeouts::default();
        let f = FlowState::open(1, TcpFlags(0), false).unwrap();
        assert_eq!(f.timeout(&t), S(30));
        let f = f.advance(Dir::Reply, TcpFlags(0), S(1));
        assert!(f.replied() && !f.protected());
        assert_eq!(
            FlowState::open(58, TcpFlags(0), false),
            Some(FlowState::Icmp { replied: false })
        );
        let g = FlowState::open(47, TcpFlags(0), false).unwrap();
        assert_eq!(g.timeout(&t), S(600));
        assert_eq!(FlowState::open(6, TcpFlags(TcpFlags::RST), true), None);
    }
}
