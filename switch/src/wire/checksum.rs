//! The Internet checksum (RFC 1071), its incremental update (RFC 1624) and
//! the pseudo-header sums of TCP, UDP and ICMPv6: the one checksum of the
//! crate, used by every view, the ICMP errors and the offloads.
//!
//! Sums are unfolded `u64` accumulators of big-endian 16-bit words:
//! [`sum`] of `[0x12, 0x34]` adds `0x1234`, whatever the host. [`sum`]
//! adds eight bytes at a time in native byte order and converts once at
//! the end (the one's-complement sum is byte-order independent, RFC 1071
//! 2.B), so a 64 KiB super-packet costs ~8 K additions. Sums of separate
//! ranges may be added together as long as every range but the last has
//! an even length. Nothing here panics on any input.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds `data`, read as big-endian 16-bit words (an odd last byte padded
/// with a zero byte), to the unfolded sum `acc`.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut native: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        // Always 8 bytes: the fallback is never taken (and compiles away).
        let w = u64::from_ne_bytes(c.try_into().unwrap_or_default());
        // Two 32-bit halves: at most 2^33 per step, so even 2^30 steps
        // (8 GiB) cannot overflow 2^64.
        native += (w & 0xffff_ffff) + (w >> 32);
    }
    let mut pairs = chunks.remainder().chunks_exact(2);
    for p in &mut pairs {
        native += u64::from(u16::from_ne_bytes(p.try_into().unwrap_or_default()));
    }
    if let [last] = pairs.remainder() {
        native += u64::from(u16::from_ne_bytes([*last, 0]));
    }
    let folded = fold(native);
    let be = if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    };
    acc + u64::from(be)
}

/// Folds a sum into 16 bits (end-around carry).
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // `acc <= 0xffff` here, so the conversion never falls back.
    u16::try_from(acc).unwrap_or(0xffff)
}

/// The checksum to store in a field (zeroed while summing) for a sum of
/// `acc`.
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The checksum of `data` (its checksum field zeroed).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// Whether `data`, checksum field included, sums to all ones (the sum
/// `acc` of whatever else is covered, e.g. a pseudo-header, added).
pub fn verify(data: &[u8], acc: u64) -> bool {
    fold(sum(data, acc)) == 0xffff
}

/// RFC 1624 equation 3 for a field that changes from `old` to `new`
/// (equal lengths, at an even offset of the covered data; an odd length
/// is padded as [`sum`] pads): the new value of a checksum `checksum`,
/// `HC' = ~(~HC + ~m + m')`, without summing the rest again.
pub fn update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !update_sum(!checksum, old, new)
}

/// [`update`] for a 16-bit word.
pub fn update_word(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// The same change applied to a field that holds a folded *sum* rather
/// than its complement: a partial checksum (virtio `NEEDS_CSUM`, which
/// holds the pseudo-header sum the device completes later).
pub fn update_sum(sum_field: u16, old: &[u8], new: &[u8]) -> u16 {
    // Adding ~m is subtracting m in one's complement: ~m = 0xffff - m per
    // word, so the words of `old` subtract as `0xffff * words - sum(old)`.
    let words = old.len().div_ceil(2) as u64;
    let minus_old = 0xffff * words - u64::from(fold(sum(old, 0)));
    fold(u64::from(sum_field) + minus_old + sum(new, 0))
}

/// The pseudo-header sum of TCP or UDP over IPv4 (RFC 768, RFC 9293 3.1)
/// for an upper-layer packet of `len` bytes.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> u64 {
    pseudo(&src.octets(), &dst.octets(), proto, len)
}

/// The pseudo-header sum of TCP, UDP or ICMPv6 over IPv6 (RFC 8200 8.1)
/// for an upper-layer packet of `len` bytes.
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: usize) -> u64 {
    pseudo(&src.octets(), &dst.octets(), proto, len)
}

/// The pseudo-header sum from the address bytes as they sit in an IP
/// header (4 or 16 bytes each). `len` may exceed 16 bits (it is folded in
/// as the 32-bit IPv6 field is).
pub(crate) fn pseudo(src: &[u8], dst: &[u8], proto: u8, len: usize) -> u64 {
    let len = len as u64;
    sum(dst, sum(src, 0)) + u64::from(proto) + (len & 0xffff) + (len >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::slow_sum;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(&[0x12, 0x34, 0x56], 0)), 0x1234 + 0x5600);
        assert_eq!(fold(sum(&[], 0)), 0);
    }

    #[test]
    fn matches_the_textbook_sum_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let d = &data[start..end];
                assert_eq!(fold(sum(d, 0)), fold(slow_sum(d)), "{start}..{end}");
            }
        }
        let ones = vec![0xff; 65_535];
        assert_eq!(fold(sum(&ones, 0)), fold(slow_sum(&ones)));
    }

    #[test]
    fn verify_accepts_a_filled_checksum() {
        let mut data = [
            0x45, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x11, 0, 0,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&data, 0));
        data[0] ^= 1;
        assert!(!verify(&data, 0));
    }

    #[test]
    fn word_update_matches_a_recompute_for_every_change() {
        // Including checksums at the 0x0000 / 0xffff boundary.
        let bases: [[u8; 6]; 3] = [
            [0x40, 0x11, 0x12, 0x34, 0, 0],
            [0xff, 0xff, 0x00, 0x00, 0, 0],
            [0x00, 0x00, 0x00, 0x00, 0, 0],
        ];
        for base in bases {
            let mut data = base;
            let c = checksum(&data);
            data[4..6].copy_from_slice(&c.to_be_bytes());
            let old = u16::from_be_bytes([data[0], data[1]]);
            for new in (0..=u16::MAX).step_by(7) {
                let mut changed = data;
                changed[0..2].copy_from_slice(&new.to_be_bytes());
                if changed[..4] == [0; 4] {
                    // All-zero data sums to +0, which no checksum field can
                    // complement to all ones; no header is all zero.
                    continue;
                }
                let inc = update_word(c, old, new);
                changed[4..6].copy_from_slice(&inc.to_be_bytes());
                assert!(verify(&changed, 0), "base {base:?} new {new:#x}");
                let by_bytes = update(c, &old.to_be_bytes(), &new.to_be_bytes());
                assert_eq!(fold(u64::from(by_bytes)), fold(u64::from(inc)));
            }
        }
    }

    /// A 16-bit one's-complement value with its two zeros made one.
    fn ones_complement(x: u16) -> u16 {
        if x == 0xffff {
            0
        } else {
            x
        }
    }

    #[test]
    fn field_updates_match_a_recompute() {
        // A 4-byte address and a 16-byte one, changed in the middle of the
        // covered data.
        let data: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37)).collect();
        for (at, len) in [(12usize, 4usize), (8, 16), (2, 2)] {
            for salt in 0..50u8 {
                let c = checksum(&data);
                let mut changed = data.clone();
                for (i, b) in changed[at..at + len].iter_mut().enumerate() {
                    *b = b.wrapping_add(salt).wrapping_mul(i as u8 | 1);
                }
                let full = update(c, &data[at..at + len], &changed[at..at + len]);
                assert!(
                    verify(&changed, u64::from(full)),
                    "full update at {at}+{len}, salt {salt}"
                );
                // The same change to a stored sum, as NEEDS_CSUM holds it.
                let partial = update_sum(
                    fold(sum(&data, 0)),
                    &data[at..at + len],
                    &changed[at..at + len],
                );
                assert_eq!(
                    ones_complement(partial),
                    ones_complement(fold(sum(&changed, 0))),
                    "partial update at {at}+{len}, salt {salt}"
                );
            }
        }
    }

    #[test]
    fn pseudo_headers_count_addresses_protocol_and_length() {
        let s4 = Ipv4Addr::new(10, 0, 0, 1);
        let d4 = Ipv4Addr::new(10, 0, 0, 2);
        let expect = slow_sum(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20]);
        assert_eq!(fold(pseudo_v4(s4, d4, 6, 20)), fold(expect));
        // A length above 16 bits (an IPv6 jumbogram's) still folds in.
        assert_eq!(
            fold(pseudo_v4(s4, d4, 17, 0x1_0002)),
            fold(slow_sum(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 1, 0, 2]))
        );
        let s6: Ipv6Addr = "fd00::1".parse().unwrap();
        let d6: Ipv6Addr = "fd00::2".parse().unwrap();
        let mut bytes = s6.octets().to_vec();
        bytes.extend_from_slice(&d6.octets());
        bytes.extend_from_slice(&[0, 0, 0, 40, 0, 0, 0, 58]);
        assert_eq!(fold(pseudo_v6(s6, d6, 58, 40)), fold(slow_sum(&bytes)));
    }
}
