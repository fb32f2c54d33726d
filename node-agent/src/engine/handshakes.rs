//! The queue of admitted handshake messages: what [`Gate::admit`] let
//! through waits here for its Diffie-Hellman work, which the engine does
//! after the round's data, [`HANDSHAKE_BUDGET`] messages a round.
//!
//! Contract: bounded ([`HANDSHAKE_QUEUE`] messages, preallocated, no
//! allocation per message); a message that does not fit is refused (the
//! caller counts it); first in, first out. A queue at an eighth of its
//! capacity is a backlog ([`HandshakeQueue::backlogged`]): the gate then
//! asks for cookies, as kernel WireGuard does.
//!
//! [`Gate::admit`]: crate::wg::Gate::admit

use std::collections::VecDeque;
use std::net::SocketAddr;

/// Handshake messages waiting at most.
pub(super) const HANDSHAKE_QUEUE: usize = 1024;

/// Handshake messages handled per engine round: each initiation costs
/// several X25519 (~50 µs each), so data never waits long behind them.
pub(super) const HANDSHAKE_BUDGET: usize = 16;

/// The longest handshake message (an initiation).
const MAX_MESSAGE: usize = 148;

/// One queued message.
#[derive(Clone, Copy)]
pub(super) struct Queued {
    pub(super) src: SocketAddr,
    len: usize,
    bytes: [u8; MAX_MESSAGE],
}

impl Queued {
    /// The message.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len.min(MAX_MESSAGE)]
    }
}

/// The queue.
pub(super) struct HandshakeQueue {
    queue: VecDeque<Queued>,
}

impl HandshakeQueue {
    pub(super) fn new() -> Self {
        Self {
            queue: VecDeque::with_capacity(HANDSHAKE_QUEUE),
        }
    }

    /// Queues `message` from `src`; false if the queue is full (or the
    /// message longer than any handshake message).
    pub(super) fn push(&mut self, src: SocketAddr, message: &[u8]) -> bool {
        if self.queue.len() >= HANDSHAKE_QUEUE || message.len() > MAX_MESSAGE {
            return false;
        }
        let mut bytes = [0; MAX_MESSAGE];
        bytes[..message.len()].copy_from_slice(message);
        self.queue.push_back(Queued {
            src,
            len: message.len(),
            bytes,
        });
        true
    }

    /// The oldest message.
    pub(super) fn pop(&mut self) -> Option<Queued> {
        self.queue.pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Whether enough is waiting to call it a backlog.
    pub(super) fn backlogged(&self) -> bool {
        self.queue.len() >= HANDSHAKE_QUEUE / 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo_of_whole_messages() {
        let src: SocketAddr = "192.0.2.1:51820".parse().unwrap();
        let mut q = HandshakeQueue::new();
        assert!(!q.push(src, &[1; MAX_MESSAGE + 1]));
        for i in 0..HANDSHAKE_QUEUE {
            assert!(q.push(src, &[(i % 251) as u8; 92]));
            assert_eq!(q.backlogged(), i + 1 >= HANDSHAKE_QUEUE / 8);
        }
        assert!(!q.push(src, &[0; 148]), "full");
        let first = q.pop().unwrap();
        assert_eq!((first.src, first.bytes()), (src, &[0u8; 92][..]));
        assert_eq!(q.pop().unwrap().bytes(), &[1u8; 92][..]);
        while q.pop().is_some() {}
        assert!(q.is_empty());
    }
}
