//! Curve25519 public keys of small order: the encodings for which X25519
//! with any private key yields the all-zero shared secret. A node announcing
//! one would make every peer that handshakes with it derive a predictable
//! key, and no WireGuard private key has one as its public key, so they are
//! refused.
//!
//! The list is the u-coordinates of the points of order 1, 2, 4 and 8 on
//! Curve25519 and its twist, plus the non-canonical encodings `p` and `p + 1`
//! (which reduce to 0 and 1), each with the top bit clear. X25519 ignores
//! bit 255 (RFC 7748, section 5), so [`is_low_order`] ignores it too, which
//! also refuses the seven encodings with it set. The list was computed with
//! a Montgomery ladder (`[8]u = 0` for each); the tests check each entry
//! against boringtun's X25519.

/// The small-order u-coordinates, little-endian, top bit clear.
pub const LOW_ORDER_POINTS: [[u8; 32]; 7] = [
    // 0 (order 2 on the curve)
    [0; 32],
    // 1 (order 4)
    one_byte(0x01),
    // 325606250916557431795983626356110631294008115727848805560023387167927233504 (order 8)
    [
        0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4,
        0x6a, 0xda, 0x09, 0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49,
        0xb8, 0x00,
    ],
    // 39382357235489614581723060781553021112529911719440698176882885853963445705823 (order 8)
    [
        0x5f, 0x9c, 0x95, 0xbc, 0xa3, 0x50, 0x8c, 0x24, 0xb1, 0xd0, 0xb1, 0x55, 0x9c, 0x83, 0xef,
        0x5b, 0x04, 0x44, 0x5c, 0xc4, 0x58, 0x1c, 0x8e, 0x86, 0xd8, 0x22, 0x4e, 0xdd, 0xd0, 0x9f,
        0x11, 0x57,
    ],
    // p - 1 (order 4 on the twist)
    near_p(0xec),
    // p (non-canonical 0)
    near_p(0xed),
    // p + 1 (non-canonical 1)
    near_p(0xee),
];

const fn one_byte(low: u8) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = low;
    b
}

/// `2^255 - 19 + (low - 0xed)`: 0xff bytes, top byte 0x7f.
const fn near_p(low: u8) -> [u8; 32] {
    let mut b = [0xffu8; 32];
    b[0] = low;
    b[31] = 0x7f;
    b
}

/// Whether `key` is a small-order Curve25519 point (bit 255 ignored).
pub fn is_low_order(key: &[u8; 32]) -> bool {
    let mut masked = *key;
    masked[31] &= 0x7f;
    LOW_ORDER_POINTS.contains(&masked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::x25519::{PublicKey, StaticSecret};

    fn shared(secret_seed: u8, public: [u8; 32]) -> [u8; 32] {
        let secret = StaticSecret::from([secret_seed; 32]);
        *secret.diffie_hellman(&PublicKey::from(public)).as_bytes()
    }

    #[test]
    fn every_listed_point_gives_the_all_zero_secret_and_is_refused() {
        for point in LOW_ORDER_POINTS {
            for high in [0u8, 0x80] {
                let mut p = point;
                p[31] |= high;
                for seed in [1u8, 0x42, 0xfe] {
                    assert_eq!(shared(seed, p), [0; 32], "{p:02x?} is not low order");
                }
                assert!(is_low_order(&p), "{p:02x?}");
            }
        }
    }

    #[test]
    fn real_public_keys_are_not_low_order() {
        for seed in 1..=64u8 {
            let public = PublicKey::from(&StaticSecret::from([seed; 32]));
            assert!(!is_low_order(public.as_bytes()), "seed {seed}");
            assert_ne!(shared(7, *public.as_bytes()), [0; 32]);
        }
        // Neighbours of the listed points are ordinary points.
        for near in [one_byte(2), near_p(0xeb), near_p(0xef)] {
            assert!(!is_low_order(&near), "{near:02x?}");
            assert_ne!(shared(7, near), [0; 32], "{near:02x?}");
        }
    }
}
