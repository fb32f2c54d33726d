//! Packet builders and an independent (slow, textbook) checksum for the
//! offload tests.

use super::layout::{ACK, TCP, UDP};

/// RFC 1071, two bytes at a time.
pub fn slow_sum(data: &[u8]) -> u64 {
    data.chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum()
}

pub fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// A TCP or UDP packet with correct checksums.
#[derive(Debug, Clone)]
pub struct Pkt {
    pub v6: bool,
    pub proto: u8,
    pub id: u16,
    pub df: bool,
    pub ttl: u8,
    pub tos: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub opts: Vec<u8>,
    pub payload: Vec<u8>,
}

pub fn payload(n: usize, salt: usize) -> Vec<u8> {
    (0..n).map(|i| ((i + salt) * 31 + 7) as u8).collect()
}

impl Pkt {
    pub fn tcp(v6: bool, seq: u32, payload_len: usize, opts: usize) -> Self {
        Self {
            v6,
            proto: TCP,
            id: 0x1234,
            df: true,
            ttl: 64,
            tos: 0,
            src_port: 40000,
            dst_port: 5201,
            seq,
            ack: 0xa0b0_c0d0,
            flags: ACK,
            window: 502,
            opts: (0..opts)
                .map(|i| if i < 2 { 1 } else { 0x42 + i as u8 })
                .collect(),
            payload: payload(payload_len, seq as usize),
        }
    }

    pub fn udp(v6: bool, payload_len: usize) -> Self {
        Self {
            proto: UDP,
            payload: payload(payload_len, 3),
            ..Self::tcp(v6, 0, 0, 0)
        }
    }

    pub fn build(&self) -> Vec<u8> {
        let l4_len = match self.proto {
            TCP => 20 + self.opts.len(),
            _ => 8,
        } + self.payload.len();
        let mut p = Vec::new();
        if self.v6 {
            p.extend_from_slice(&[0x60 | (self.tos >> 4), self.tos << 4, 0x12, 0x34]);
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.extend_from_slice(&[self.proto, self.ttl]);
            p.extend_from_slice(&[0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            p.extend_from_slice(&[0xfd, 0, 2, 0x44, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            p.extend_from_slice(&[0x45, self.tos]);
            p.extend_from_slice(&((20 + l4_len) as u16).to_be_bytes());
            p.extend_from_slice(&self.id.to_be_bytes());
            p.extend_from_slice(&[
                if self.df { 0x40 } else { 0 },
                0,
                self.ttl,
                self.proto,
                0,
                0,
            ]);
            p.extend_from_slice(&[10, 244, 1, 2, 10, 244, 2, 2]);
            let c = !fold(slow_sum(&p));
            p[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = p.len();
        p.extend_from_slice(&self.src_port.to_be_bytes());
        p.extend_from_slice(&self.dst_port.to_be_bytes());
        if self.proto == TCP {
            p.extend_from_slice(&self.seq.to_be_bytes());
            p.extend_from_slice(&self.ack.to_be_bytes());
            p.push((((20 + self.opts.len()) / 4) << 4) as u8);
            p.push(self.flags);
            p.extend_from_slice(&self.window.to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 0]);
            p.extend_from_slice(&self.opts);
        } else {
            p.extend_from_slice(&(l4_len as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        p.extend_from_slice(&self.payload);
        let c = !fold(pseudo_slow(&p, l4) + slow_sum(&p[l4..]));
        let at = l4 + if self.proto == TCP { 16 } else { 6 };
        let c = if self.proto == UDP && c == 0 {
            0xffff
        } else {
            c
        };
        p[at..at + 2].copy_from_slice(&c.to_be_bytes());
        p
    }
}

fn pseudo_slow(p: &[u8], l4: usize) -> u64 {
    let (addrs, proto) = if p[0] >> 4 == 6 {
        (&p[8..40], p[6])
    } else {
        (&p[12..20], p[9])
    };
    let len = (p.len() - l4) as u64;
    slow_sum(addrs) + u64::from(proto) + (len & 0xffff) + (len >> 16)
}

/// Whether `p`'s IPv4 header checksum (if IPv4) and its TCP/UDP checksum
/// are right, and its length fields match its size.
pub fn valid(p: &[u8]) -> bool {
    let l4 = if p[0] >> 4 == 6 {
        if usize::from(u16::from_be_bytes([p[4], p[5]])) + 40 != p.len() {
            return false;
        }
        40
    } else {
        let ihl = usize::from(p[0] & 0xf) * 4;
        if usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
            || fold(slow_sum(&p[..ihl])) != 0xffff
        {
            return false;
        }
        ihl
    };
    let proto = if p[0] >> 4 == 6 { p[6] } else { p[9] };
    if proto == UDP && usize::from(u16::from_be_bytes([p[l4 + 4], p[l4 + 5]])) != p.len() - l4 {
        return false;
    }
    fold(pseudo_slow(p, l4) + slow_sum(&p[l4..])) == 0xffff
}

pub fn tcp4(payload_len: usize, seq: u32, opts: usize) -> Vec<u8> {
    Pkt::tcp(false, seq, payload_len, opts).build()
}

pub fn tcp6(payload_len: usize, seq: u32, opts: usize) -> Vec<u8> {
    Pkt::tcp(true, seq, payload_len, opts).build()
}

pub fn udp4(payload_len: usize) -> Vec<u8> {
    Pkt::udp(false, payload_len).build()
}

#[allow(dead_code)]
pub fn udp6(payload_len: usize) -> Vec<u8> {
    Pkt::udp(true, payload_len).build()
}

/// `p` as the kernel hands out a TSO/USO super-packet: the transport
/// checksum field holds only the pseudo-header sum (for the whole length),
/// with the header that says so.
pub fn as_partial(mut p: Vec<u8>, gso_type: u8, gso_size: u16) -> (super::VnetHdr, Vec<u8>) {
    let v6 = p[0] >> 4 == 6;
    let l4 = if v6 { 40 } else { usize::from(p[0] & 0xf) * 4 };
    let proto = if v6 { p[6] } else { p[9] };
    let off = if proto == TCP { 16 } else { 6 };
    let partial = fold(pseudo_slow(&p, l4));
    p[l4 + off..l4 + off + 2].copy_from_slice(&partial.to_be_bytes());
    let hlen = l4
        + if proto == TCP {
            usize::from(p[l4 + 12] >> 4) * 4
        } else {
            8
        };
    (
        super::VnetHdr {
            flags: super::vnet::F_NEEDS_CSUM,
            gso_type,
            hdr_len: hlen as u16,
            gso_size,
            csum_start: l4 as u16,
            csum_offset: off as u16,
        },
        p,
    )
}
