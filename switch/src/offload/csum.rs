//! The Internet checksum (RFC 1071), fast enough for the offload paths: it
//! adds eight bytes at a time in native byte order and converts once at the
//! end (the one's-complement sum is byte-order independent, RFC 1071 2.B).
//!
//! Sums are "big-endian word" values: [`sum`] of `[0x12, 0x34]` is `0x1234`,
//! whatever the host. Nothing here panics.

/// Adds `data`, read as big-endian 16-bit words (an odd last byte padded
/// with a zero byte), to the unfolded sum `acc`.
pub fn sum(data: &[u8], acc: u64) -> u64 {
    let mut native: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(c);
        let w = u64::from_ne_bytes(word);
        // Two 32-bit halves: at most 2^33 per step, so a 64 KiB packet
        // (8192 steps) cannot overflow 2^64.
        native += (w & 0xffff_ffff) + (w >> 32);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        native += u64::from(u16::from_ne_bytes([p[0], p[1]]));
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
    // `acc <= 0xffff` here.
    acc as u16
}

/// The checksum to store for a sum of `acc` (field zeroed).
pub fn finish(acc: u64) -> u16 {
    !fold(acc)
}

/// The pseudo-header sum (RFC 768 / 793 for IPv4, RFC 8200 8.1 for IPv6)
/// of an upper-layer packet of `len` bytes: `addrs` is the source and
/// destination address bytes as they sit in the IP header (8 or 32 bytes).
pub fn pseudo(addrs: &[u8], proto: u8, len: usize) -> u64 {
    let len = len as u64;
    sum(addrs, 0) + u64::from(proto) + (len & 0xffff) + (len >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook two-bytes-at-a-time sum.
    fn slow(data: &[u8]) -> u64 {
        let mut acc = 0u64;
        for c in data.chunks(2) {
            acc += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        acc
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
        assert_eq!(finish(sum(&data, 0)), !0xddf2);
    }

    #[test]
    fn matches_the_slow_sum_at_every_length_and_alignment() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7919 % 251) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                let d = &data[start..end];
                assert_eq!(fold(sum(d, 0)), fold(slow(d)), "{start}..{end}");
            }
        }
    }

    #[test]
    fn all_ones_does_not_overflow() {
        let data = vec![0xff; 65_535];
        assert_eq!(fold(sum(&data, 0)), fold(slow(&data)));
    }

    #[test]
    fn pseudo_header_counts_length_and_protocol() {
        let addrs = [10, 0, 0, 1, 10, 0, 0, 2];
        let expect = slow(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 20]);
        assert_eq!(fold(pseudo(&addrs, 6, 20)), fold(expect));
        // A length above 16 bits (an IPv6 jumbogram's) still folds in.
        assert_eq!(
            fold(pseudo(&addrs, 17, 0x1_0002)),
            fold(slow(&[10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 1, 0, 2]))
        );
    }
}
