//! Offloads, the sans-IO half: what the data plane does so that a TUN can
//! hand it 64 KiB TCP/UDP super-packets (TSO/USO) and take coalesced ones
//! back (GRO), the way wireguard-go and Tailscale do. Both halves parse
//! and write packets through the [`wire`](crate::wire) views only.
//!
//! - [`segment`]: a super-packet -> MTU-sized packets, in place, with every
//!   header field and checksum fixed (and single packets' partial
//!   checksums completed); the virtio-net header is checked against the
//!   packet and the path first ([`SegmentError`] says why not).
//! - [`coalesce`]: decrypted in-order TCP segments (and, for a TUN that
//!   takes USO, UDP datagrams) of one flow -> one super-packet with a GSO
//!   header.
//!
//! Nothing here does IO, allocates per packet, or panics on any bytes.

pub mod coalesce;
mod merge;
pub mod segment;

#[cfg(test)]
mod tests;

pub use crate::wire::vnet::{self, VnetHdr, VNET_HDR_LEN};
pub use coalesce::{CoalesceStats, Coalescer};
pub use segment::{
    check, complete, segment, segment_count, SegmentError, MAX_TSO_SEGMENTS, MAX_USO_SEGMENTS,
    MIN_GSO_SIZE,
};
