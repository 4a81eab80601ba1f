//! Fingerprints of secret values, for audit records that must show *which*
//! value was delivered without containing it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const PREFIX: &str = "hmac-sha256:";

fn mac(key: &[u8; 32], value: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .expect("invariant: HMAC accepts keys of any length");
    mac.update(value);
    mac
}

/// The fingerprint of `value` under `key`: `hmac-sha256:` followed by the
/// lowercase hex HMAC-SHA256. The key stays with the daemon, so the
/// fingerprint reveals nothing about the value to readers of the trail, yet
/// the daemon can later tell whether a given value is the one recorded.
pub fn value_hmac(key: &[u8; 32], value: &[u8]) -> String {
    let tag = mac(key, value).finalize().into_bytes();
    format!("{PREFIX}{}", hex::encode(tag))
}

/// Whether `fingerprint` (as made by [`value_hmac`]) is the fingerprint of
/// `value` under `key`. The tag comparison is constant-time. A malformed
/// fingerprint is simply not a match.
pub fn check_value_hmac(key: &[u8; 32], value: &[u8], fingerprint: &str) -> bool {
    let Some(tag) = fingerprint
        .strip_prefix(PREFIX)
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    mac(key, value).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        // Computed independently with Python's `hmac` module:
        // hmac.new(bytes(range(32)), b"hunter2", "sha256").hexdigest()
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        assert_eq!(
            value_hmac(&key, b"hunter2"),
            format!("{PREFIX}{}", EXPECTED)
        );
    }
    const EXPECTED: &str = "8629d712da366318588317f3f98c728c71d4819f843d95db8803c019c561c1e7";

    #[test]
    fn check_accepts_only_the_right_value_and_key() {
        let key = [7u8; 32];
        let fp = value_hmac(&key, b"s3cret");
        assert!(check_value_hmac(&key, b"s3cret", &fp));
        assert!(!check_value_hmac(&key, b"s3cres", &fp));
        assert!(!check_value_hmac(&[8u8; 32], b"s3cret", &fp));
        assert!(!check_value_hmac(&key, b"s3cret", &fp[PREFIX.len()..]));
        assert!(!check_value_hmac(&key, b"s3cret", &fp[..fp.len() - 2]));
        assert!(!check_value_hmac(&key, b"s3cret", &format!("{fp}00")));
        assert!(!check_value_hmac(&key, b"s3cret", "hmac-sha256:zz"));
        assert!(!check_value_hmac(&key, b"s3cret", ""));
    }
}
