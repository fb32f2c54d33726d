//! The packet that carries a DNS response from the DNS VIP back to the
//! client that asked: [`reply_packet`].
//!
//! Contract: given the [`DnsClient`] the decision described (who asked,
//! which VIP, how large a message it takes) and a response's bytes (the
//! switch's own answer, or one the engine's [`Forwarder`](super::Forwarder)
//! returned), writes one IPv4 or IPv6 + UDP packet into the caller's
//! buffer: from the VIP's port 53 to the client's address and port, TTL /
//! hop limit 64, IPv4 with DF and identification 0 (it fits the client's
//! MTU, RFC 6864 atomic datagram), no options or extension headers, both
//! checksums computed by the [`wire`](crate::wire) layer. A response larger
//! than `client.max_message` is re-encoded truncated (TC set, question and
//! OPT only) so the client retries over TCP; that parse and encode is the
//! only allocation. Never panics; refuses with a [`ReplyError`].

use std::net::IpAddr;

use hickory_proto::op::{Message, MessageType};

use super::vip::DnsClient;
use crate::wire::{
    proto, Ipv4Packet, Ipv6Packet, UdpPacket, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN,
};

/// TTL / hop limit of the replies.
const REPLY_HOP_LIMIT: u8 = 64;

/// The IPv4 header of a reply: no options, ID 0, DF; lengths, addresses
/// and checksum filled in.
#[rustfmt::skip]
const V4_HEADER: [u8; IPV4_HEADER_LEN] = [
    0x45, 0, 0, 0,
    0, 0, 0x40, 0,
    REPLY_HOP_LIMIT, proto::UDP, 0, 0,
    0, 0, 0, 0,
    0, 0, 0, 0,
];

/// What [`reply_packet`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The packet's length: it is `out[..len]`.
    pub len: usize,
    /// Whether the response had to be truncated (TC) to fit.
    pub truncated: bool,
}

/// Why no reply packet was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The client's and the VIP's addresses are of different families.
    #[error("the client and the DNS VIP are of different IP families")]
    FamilyMismatch,
    /// Too large for the client, and not a DNS message that can be
    /// re-encoded truncated.
    #[error("the response is too large and cannot be truncated")]
    Unparsable,
    /// The output buffer (or the client's size limit) cannot hold even
    /// the truncated response.
    #[error("the reply does not fit")]
    NoRoom,
}

/// Writes the packet carrying `message` to `client` into `out`. See the
/// module docs.
pub fn reply_packet(
    client: &DnsClient,
    message: &[u8],
    out: &mut [u8],
) -> Result<Written, ReplyError> {
    let max = usize::from(client.max_message);
    if message.len() <= max {
        let len = write(client, message, out)?;
        return Ok(Written {
            len,
            truncated: false,
        });
    }
    let short = truncated(message)?;
    if short.len() > max {
        return Err(ReplyError::NoRoom);
    }
    let len = write(client, &short, out)?;
    Ok(Written {
        len,
        truncated: true,
    })
}

/// `message` re-encoded with its header, question and OPT record only,
/// TC set.
fn truncated(message: &[u8]) -> Result<Vec<u8>, ReplyError> {
    let m = Message::from_vec(message).map_err(|_| ReplyError::Unparsable)?;
    let mut short = m.truncate();
    short.metadata.message_type = MessageType::Response;
    short.to_vec().map_err(|_| ReplyError::Unparsable)
}

/// Writes the IP and UDP headers and `message` into `out`; returns the
/// packet's length.
fn write(client: &DnsClient, message: &[u8], out: &mut [u8]) -> Result<usize, ReplyError> {
    let udp_len = UDP_HEADER_LEN + message.len();
    let udp_len16 = u16::try_from(udp_len).map_err(|_| ReplyError::NoRoom)?;
    let (src, dst) = (client.server, client.client);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(from), IpAddr::V4(to)) => {
            let total = IPV4_HEADER_LEN + udp_len;
            let out = out.get_mut(..total).ok_or(ReplyError::NoRoom)?;
            out.get_mut(..IPV4_HEADER_LEN)
                .ok_or(ReplyError::NoRoom)?
                .copy_from_slice(&V4_HEADER);
            // `new_fitted` refuses a total length over 65 535.
            let mut ip = Ipv4Packet::new_fitted(out).map_err(|_| ReplyError::NoRoom)?;
            ip.set_src_addr(from);
            ip.set_dst_addr(to);
            ip.fill_checksum();
            let pseudo = ip.pseudo_header(proto::UDP, udp_len);
            fill_udp(
                ip.payload_mut(),
                (src.port(), dst.port()),
                udp_len16,
                message,
                pseudo,
            )?;
            Ok(total)
        }
        (IpAddr::V6(from), IpAddr::V6(to)) => {
            let total = IPV6_HEADER_LEN + udp_len;
            let out = out.get_mut(..total).ok_or(ReplyError::NoRoom)?;
            let header = out.get_mut(..IPV6_HEADER_LEN).ok_or(ReplyError::NoRoom)?;
            header.fill(0);
            if let Some(first) = header.first_mut() {
                *first = 0x60;
            }
            let mut ip = Ipv6Packet::new_fitted(out).map_err(|_| ReplyError::NoRoom)?;
            ip.set_next_header(proto::UDP);
            ip.set_hop_limit(REPLY_HOP_LIMIT);
            ip.set_src_addr(from);
            ip.set_dst_addr(to);
            let pseudo = ip.pseudo_header(proto::UDP, udp_len);
            fill_udp(
                ip.payload_mut(),
                (src.port(), dst.port()),
                udp_len16,
                message,
                pseudo,
            )?;
            Ok(total)
        }
        _ => Err(ReplyError::FamilyMismatch),
    }
}

/// The UDP header and `message` in `l4` (exactly their length), with the
/// checksum over both and `pseudo`.
fn fill_udp(
    l4: &mut [u8],
    (src_port, dst_port): (u16, u16),
    len: u16,
    message: &[u8],
    pseudo: u64,
) -> Result<(), ReplyError> {
    let mut udp = UdpPacket::new_checked(l4).map_err(|_| ReplyError::NoRoom)?;
    udp.set_src_port(src_port);
    udp.set_dst_port(dst_port);
    udp.set_len_field(len);
    let data = udp.payload_mut();
    if data.len() != message.len() {
        return Err(ReplyError::NoRoom);
    }
    data.copy_from_slice(message);
    udp.fill_checksum(pseudo);
    Ok(())
}
