//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! Pure functions over byte slices; none of them panics on any input.

use std::net::Ipv6Addr;

/// Adds `data`, read as big-endian 16-bit words (an odd last byte padded with
/// a zero byte), to the unfolded one's-complement accumulator `acc`.
pub(crate) fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

/// Folds an accumulator into 16 bits (end-around carry).
pub(crate) fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    // `acc <= 0xffff` here, so the cast is lossless.
    acc as u16
}

/// The checksum to store in a header whose other bytes sum to `acc`.
pub(crate) fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The checksum of `data` (with its checksum field zeroed).
pub(crate) fn checksum(data: &[u8]) -> u16 {
    finish(sum(data, 0))
}

/// True if `data`, checksum field included, sums to all ones.
pub(crate) fn verify(data: &[u8]) -> bool {
    fold(sum(data, 0)) == 0xffff
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1) for an upper-layer
/// packet of `len` bytes with next header `next_header`.
pub(crate) fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u64 {
    let mut acc = sum(&src.octets(), 0);
    acc = sum(&dst.octets(), acc);
    acc = sum(&len.to_be_bytes(), acc);
    acc + u64::from(next_header)
}

/// RFC 1624, equation 3: the new checksum after one 16-bit word of the
/// covered data changes from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
pub(crate) fn update_word(checksum: u16, old: u16, new: u16) -> u16 {
    let acc = u64::from(!checksum) + u64::from(!old) + u64::from(new);
    !fold(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn verify_accepts_filled_checksum() {
        let mut data = [
            0x45, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x00, 0x00, 0x40, 0x11, 0, 0,
        ];
        let c = checksum(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&data));
        data[0] ^= 1;
        assert!(!verify(&data));
    }

    #[test]
    fn incremental_update_matches_recompute_for_every_word_change() {
        // Over the changed word for a few fixed headers, including ones whose
        // checksum sits at the 0x0000 / 0xffff boundary.
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
                    // complement to all ones; an IPv4 header is never all zero.
                    continue;
                }
                let inc = update_word(c, old, new);
                changed[4..6].copy_from_slice(&inc.to_be_bytes());
                assert!(verify(&changed), "base {base:?} new {new:#x}");
            }
        }
    }
}
