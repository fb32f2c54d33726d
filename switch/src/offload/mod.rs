//! Offloads, the sans-IO half: what the data plane does so that a TUN can
//! hand it 64 KiB TCP/UDP super-packets (TSO/USO) and take coalesced ones
//! back (GRO), the way wireguard-go and Tailscale do.
//!
//! - [`vnet`]: the virtio-net header a TUN with `IFF_VNET_HDR` puts before
//!   each packet.
//! - [`segment`]: a super-packet -> MTU-sized packets, in place, with every
//!   header field and checksum fixed (and single packets' partial
//!   checksums completed).
//! - [`coalesce`]: decrypted in-order TCP segments of one flow -> one
//!   super-packet with a GSO header.
//! - [`csum`]: the Internet checksum, eight bytes at a time.
//!
//! Nothing here does IO, allocates per packet, or panics on any bytes.

pub mod coalesce;
pub mod csum;
pub mod layout;
pub mod segment;
pub mod vnet;

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod testutil;

pub use coalesce::{CoalesceStats, Coalescer};
pub use segment::{segment, SegmentError};
pub use vnet::{VnetHdr, VNET_HDR_LEN};
