//! Object identifiers: 25 characters of lowercase base36, as swarmkit's `identity.NewID`.

/// Length of every object ID.
pub const ID_LEN: usize = 25;

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// A new random ID: 128 random bits written in base36, zero-padded to 25 characters.
///
/// Like swarmkit, an ID never starts with a digit-only form that could be mistaken for
/// something else: every ID is exactly [`ID_LEN`] characters of `[0-9a-z]`.
pub fn new_id() -> String {
    let mut bytes = [0u8; 16];
    // From the OS CSPRNG, fetched in batches (IDs are not secret); its failing is not
    // recoverable for a secrets manager.
    lockbox_crypto::fill_public_random(&mut bytes);
    encode_base36(u128::from_be_bytes(bytes))
}

fn encode_base36(mut n: u128) -> String {
    let mut out = [b'0'; ID_LEN];
    let mut i = ID_LEN;
    while n > 0 && i > 0 {
        i -= 1;
        out[i] = ALPHABET[(n % 36) as usize];
        n /= 36;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Whether `s` has the shape of an object ID.
pub fn is_id(s: &str) -> bool {
    s.len() == ID_LEN
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_docker_shape_and_differ() {
        let a = new_id();
        let b = new_id();
        assert!(is_id(&a), "{a}");
        assert!(is_id(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn largest_value_fits_in_25_chars() {
        // 36^25 > 2^128, so the maximum never overflows the buffer.
        let s = encode_base36(u128::MAX);
        assert_eq!(s, "f5lxx1zz5pnorynqglhzmsp33");
        assert_eq!(encode_base36(0), "0000000000000000000000000");
        assert_eq!(encode_base36(35), "000000000000000000000000z");
    }

    proptest::proptest! {
        #[test]
        fn encoding_round_trips(n: u128) {
            let s = encode_base36(n);
            proptest::prop_assert_eq!(u128::from_str_radix(&s, 36).ok(), Some(n));
            proptest::prop_assert!(is_id(&s));
        }
    }
}
