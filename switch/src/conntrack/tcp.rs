//! TCP connection states, from the flags seen in each direction: enough to
//! pick the timeout Linux's nf_conntrack would, not a window tracker.
//!
//! Contract: [`TcpState::open`] says whether a first segment may create an
//! entry (a SYN, or, when the caller allows picking up connections that
//! were open before the agent started, a plain ACK); [`TcpState::next`] is
//! a total function of the state, the direction and the flags. Simplified
//! from Linux's table (no SYN_SENT2, no window or sequence checks):
//!
//! - SYN from the originator: `SynSent`; SYN+ACK from the replier:
//!   `SynRecv`; the originator's ACK: `Established`.
//! - The first FIN: `FinWait`; the other side's segment without a FIN:
//!   `CloseWait`; its FIN: `LastAck`; the ACK of that FIN: `TimeWait`.
//! - RST in any state: `Close`.
//! - A SYN from the originator in `TimeWait` or `Close` reopens the
//!   connection (port reuse): `SynSent` again, the entry (and its
//!   translation) kept.

/// TCP header flags, as the byte at offset 13 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;

    fn has(self, f: u8) -> bool {
        self.0 & f != 0
    }
}

/// Which way a packet travels relative to the connection's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// As the first packet (client -> server).
    Original,
    /// The other way.
    Reply,
}

impl Dir {
    /// An index 0 (original) or 1 (reply) for per-direction arrays.
    pub fn index(self) -> usize {
        match self {
            Self::Original => 0,
            Self::Reply => 1,
        }
    }
}

/// A tracked TCP connection's state (Linux's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    /// One side sent a FIN.
    FinWait,
    /// The other side acknowledged it and is still sending.
    CloseWait,
    /// Both sides sent a FIN.
    LastAck,
    TimeWait,
    /// Reset.
    Close,
}

impl TcpState {
    /// The state of a new entry made by a first segment with `flags`, or
    /// `None` if such a segment cannot open a connection (SYN+ACK, RST,
    /// FIN; a plain ACK unless `pick_up`).
    pub fn open(flags: TcpFlags, pick_up: bool) -> Option<Self> {
        let syn = flags.has(TcpFlags::SYN);
        let ack = flags.has(TcpFlags::ACK);
        if flags.has(TcpFlags::RST) || flags.has(TcpFlags::FIN) {
            return None;
        }
        match (syn, ack) {
            (true, false) => Some(Self::SynSent),
            (false, true) if pick_up => Some(Self::Established),
            _ => None,
        }
    }

    /// The state after a segment with `flags` travelling `dir`, given
    /// which direction sent the first FIN (if any). Returns the new state
    /// and the direction of the first FIN afterwards.
    pub fn next(self, dir: Dir, flags: TcpFlags, first_fin: Option<Dir>) -> (Self, Option<Dir>) {
        use TcpState::*;
        if flags.has(TcpFlags::RST) {
            return (Close, first_fin);
        }
        let syn = flags.has(TcpFlags::SYN);
        let ack = flags.has(TcpFlags::ACK);
        let fin = flags.has(TcpFlags::FIN);
        match (self, dir) {
            (TimeWait | Close, Dir::Original) if syn && !ack => (SynSent, None),
            (SynSent, Dir::Reply) if syn => (SynRecv, None),
            (SynSent, _) => (SynSent, None),
            (SynRecv, Dir::Original) if ack && !syn => {
                if fin {
                    (FinWait, Some(dir))
                } else {
                    (Established, None)
                }
            }
            (SynRecv, _) => (SynRecv, None),
            (Established, _) if fin => (FinWait, Some(dir)),
            (Established, _) => (Established, None),
            (FinWait | CloseWait, d) => match first_fin {
                Some(f) if f != d && fin => (LastAck, first_fin),
                Some(f) if f != d => (CloseWait, first_fin),
                _ => (self, first_fin),
            },
            (LastAck, d) => match first_fin {
                // The first FIN's sender acknowledges the second FIN.
                Some(f) if f == d && ack => (TimeWait, first_fin),
                _ => (LastAck, first_fin),
            },
            (TimeWait | Close, _) => (self, first_fin),
        }
    }

    /// Whether an entry in this state is an established connection that
    /// a full table must not evict for a new one. Closing states may be
    /// evicted (as Linux's early drop takes them).
    pub fn protected(self) -> bool {
        matches!(self, Self::Established)
    }

    /// The state's name, as Linux prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TcpState::*;
    use super::*;

    const SYN: TcpFlags = TcpFlags(TcpFlags::SYN);
    const SYNACK: TcpFlags = TcpFlags(TcpFlags::SYN | TcpFlags::ACK);
    const ACK: TcpFlags = TcpFlags(TcpFlags::ACK);
    const FINACK: TcpFlags = TcpFlags(TcpFlags::FIN | TcpFlags::ACK);
    const RST: TcpFlags = TcpFlags(TcpFlags::RST);
    use Dir::{Original as O, Reply as R};

    fn run(steps: &[(Dir, TcpFlags)]) -> Vec<TcpState> {
        let mut s = TcpState::open(steps[0].1, false).unwrap();
        let mut fin = None;
        let mut out = vec![s];
        for &(d, f) in &steps[1..] {
            (s, fin) = s.next(d, f, fin);
            out.push(s);
        }
        out
    }

    #[test]
    fn handshake_data_and_close_from_the_client() {
        let states = run(&[
            (O, SYN),
            (R, SYNACK),
            (O, ACK),
            (R, ACK),
            (O, FINACK),
            (R, ACK),
            (R, FINACK),
            (O, ACK),
        ]);
        assert_eq!(
            states,
            [
                SynSent,
                SynRecv,
                Established,
                Established,
                FinWait,
                CloseWait,
                LastAck,
                TimeWait
            ]
        );
    }

    #[test]
    fn close_from_the_server_and_reset() {
        let states = run(&[
            (O, SYN),
            (R, SYNACK),
            (O, ACK),
            (R, FINACK),
            (O, FINACK),
            (R, ACK),
        ]);
        assert_eq!(
            states,
            [SynSent, SynRecv, Established, FinWait, LastAck, TimeWait]
        );
        let states = run(&[(O, SYN), (R, RST)]);
        assert_eq!(states, [SynSent, Close]);
        // A retransmitted SYN and a stray ACK do not advance a SYN_SENT.
        let states = run(&[(O, SYN), (O, SYN), (R, ACK)]);
        assert_eq!(states, [SynSent, SynSent, SynSent]);
    }

    #[test]
    fn port_reuse_reopens() {
        let (s, fin) = TimeWait.next(O, SYN, Some(O));
        assert_eq!((s, fin), (SynSent, None));
        assert_eq!(Close.next(O, SYN, None).0, SynSent);
        // Not from the replier, and not a SYN+ACK.
        assert_eq!(TimeWait.next(R, SYN, Some(O)).0, TimeWait);
        assert_eq!(TimeWait.next(O, SYNACK, Some(O)).0, TimeWait);
    }

    #[test]
    fn what_may_open_a_connection() {
        assert_eq!(TcpState::open(SYN, false), Some(SynSent));
        for f in [
            SYNACK,
            RST,
            FINACK,
            TcpFlags(0),
            TcpFlags(TcpFlags::SYN | TcpFlags::RST),
        ] {
            assert_eq!(TcpState::open(f, true), None, "{f:?}");
        }
        assert_eq!(TcpState::open(ACK, false), None);
        assert_eq!(TcpState::open(ACK, true), Some(Established));
    }

    #[test]
    fn only_established_is_protected() {
        for s in [
            SynSent, SynRecv, FinWait, CloseWait, LastAck, TimeWait, Close,
        ] {
            assert!(!s.protected(), "{}", s.as_str());
        }
        assert!(Established.protected());
    }
}
