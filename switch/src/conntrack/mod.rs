//! Connection tracking: step 3 of the packet path (DESIGN "The packet
//! path"). Every connection the switch forwards has one [`Entry`] found
//! by either of two [`FlowKey`]s: the original direction's (as the first
//! packet carried it) and the reply direction's (as replies carry it,
//! after any translation). The entry holds the translation (implied by
//! the two keys: [`Entry::rewrite_for`]), the protocol state, counters,
//! the owner (source) for per-source limits, and the slots the policy and
//! service steps fill in.
//!
//! # Contract
//!
//! - **Bounded and preallocated.** [`Conntrack::new`] reserves every
//!   entry, the index and the free list; nothing on the per-packet calls
//!   ([`Conntrack::lookup`], [`Conntrack::create`], [`Conntrack::track`],
//!   [`Conntrack::expire`]) allocates. Entry memory is touched only as
//!   entries are first used.
//! - **Time is an argument** (`now: Instant`), kept internally as
//!   milliseconds since the table's creation. No clock is read.
//! - **Timeouts** are Linux nf_conntrack's defaults ([`Timeouts`]),
//!   re-armed on every tracked packet. An entry past its timeout is gone
//!   for every call at once (a lookup removes it on sight); its memory is
//!   reclaimed by that, by the amortised sweep that each create runs over
//!   a few entries ([`ConntrackConfig::expire_per_insert`]), or by
//!   [`Conntrack::expire`] which the IO shell may call when idle.
//! - **Full table.** Entries are evictable (connections not yet
//!   established, closing TCP, UDP before it is a stream, ICMP) or
//!   protected (established TCP, UDP streams), each kind on its own list,
//!   least recently active first (to a second). A create in a full table
//!   takes the oldest evictable entry; if there is none, an expired
//!   protected one; else it fails ([`CreateError::TableFull`]). Protected
//!   entries are never evicted. Each case is counted ([`ConntrackStats`]).
//! - **Per-source fairness.** Each [`Owner`] (the source pod, or the peer
//!   or host a flow came from) may hold at most
//!   [`ConntrackConfig::per_source`] entries; at the limit, and in a full
//!   table above its fair share, its create takes its *own* oldest
//!   evictable entry (or fails with [`CreateError::SourceLimit`]), so a
//!   pod flooding new connections recycles its own half-open entries
//!   instead of other pods' ones.
//! - Creation is atomic within the one thread that owns the switch: the
//!   first packet of a flow creates the entry, every later one finds it,
//!   so two packets of a new flow always get the same translation (the
//!   race behind Kubernetes' 5-second DNS stalls cannot happen here).
//! - Nothing here panics on any input.
//!
//! # The hash
//!
//! Keys come from pods, so the hash is keyed: SipHash-1-3 with a 128-bit
//! secret [`HashSeed`] the caller draws from the OS at start-up. It is a
//! PRF: without the key, a pod cannot craft tuples that collide, however
//! long it studies the switch's timing. This is the standard library's
//! `HashMap` default, and Linux's nf_conntrack hashes its tuples with
//! keyed SipHash for the same reason. Faster multiply-fold hashes
//! (foldhash, FxHash, aHash's fallback) either have seed-independent
//! collisions or say in their own documentation that they are not meant
//! against an adversary who studies the program. The cost, measured by
//! `cargo bench -p weft-switch --bench conntrack`, is a few tens of
//! nanoseconds per 38-byte key; a packet needs one hash for its lookup
//! (two more when it creates an entry). The index (`index.rs`) is open
//! addressing at a load factor of at most 1/2, so even an unlucky cluster
//! costs a few probes, and it never grows.
//!
//! Files: `key.rs` (the 5-tuple and its hash), `index.rs` (the open
//! addressing index), `tcp.rs` (TCP states), `state.rs` (per-protocol
//! state and timeouts), `entry.rs`, `lists.rs` (eviction order),
//! `table.rs` ([`Conntrack`]).

mod entry;
mod index;
mod key;
mod lists;
mod state;
mod table;
mod tcp;

#[cfg(test)]
mod tests;

pub use entry::{Entry, Owner, PolicySlot, ServiceRef};
pub use key::{FlowKey, HashSeed};
pub use state::{FlowState, Timeouts, UDP_STREAM_AFTER};
pub use table::{Conntrack, ConntrackConfig, ConntrackStats, CreateError, EntryId};
pub use tcp::{Dir, TcpFlags, TcpState};
