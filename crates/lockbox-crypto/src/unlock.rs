//! [`UnlockKey`]: the Swarm-compatible autolock key.

use std::fmt;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{CryptoError, fill_random};

/// Prefix of the text form, as in Docker Swarm.
const PREFIX: &str = "SWMKEY-1-";
/// Length of generated keys.
const KEY_LEN: usize = 32;

/// Go's `base64.RawStdEncoding`: standard alphabet, no padding, and (as in
/// Go's non-strict mode) non-zero trailing bits are accepted.
const RAW_STD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// Swarm-compatible unlock key: `"SWMKEY-1-"` + base64 (standard alphabet,
/// no padding) of 32 random bytes.
///
/// Zeroized on drop; `Debug` is redacted. Equality is constant-time.
#[derive(Clone)]
pub struct UnlockKey(Zeroizing<Vec<u8>>);

impl UnlockKey {
    /// A new random key.
    pub fn generate() -> UnlockKey {
        let mut v = Zeroizing::new(vec![0u8; KEY_LEN]);
        fill_random(&mut v);
        UnlockKey(v)
    }

    /// Parses the text form. Surrounding whitespace is trimmed.
    ///
    /// Accepts the prefix followed by any valid unpadded standard base64 that
    /// decodes to at least one byte (a key of the wrong length is then simply
    /// a wrong key). A missing prefix or invalid base64 gives
    /// [`CryptoError::InvalidUnlockKey`].
    pub fn parse(s: &str) -> Result<UnlockKey, CryptoError> {
        let b64 = s
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(CryptoError::InvalidUnlockKey)?;
        let mut buf = Zeroizing::new(vec![0u8; b64.len() / 4 * 3 + 3]);
        let n = RAW_STD
            .decode_slice(b64, &mut buf[..])
            .map_err(|_| CryptoError::InvalidUnlockKey)?;
        if n == 0 {
            return Err(CryptoError::InvalidUnlockKey);
        }
        buf.truncate(n);
        Ok(UnlockKey(buf))
    }

    /// The text form, `"SWMKEY-1-…"`.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(
            PREFIX.len() + self.0.len().div_ceil(3) * 4,
        ));
        s.push_str(PREFIX);
        RAW_STD.encode_string(&self.0[..], &mut s);
        s
    }

    /// The raw key bytes (input to the key derivation function).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for UnlockKey {
    fn eq(&self, other: &Self) -> bool {
        bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }
}

impl Eq for UnlockKey {}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UnlockKey([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_and_round_trip() {
        let k = UnlockKey::generate();
        assert_eq!(k.bytes().len(), 32);
        let text = k.to_text();
        assert!(text.starts_with("SWMKEY-1-"));
        // 32 bytes -> 43 unpadded base64 characters
        assert_eq!(text.len(), 9 + 43);
        assert!(!text.contains('='));
        let back = UnlockKey::parse(&text).unwrap();
        assert_eq!(back, k);
        assert_eq!(back.bytes(), k.bytes());
        assert_ne!(UnlockKey::generate(), k);
    }

    #[test]
    fn known_vector() {
        // Bytes 0..32 encoded with Go's base64.RawStdEncoding.
        let text = "SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let k = UnlockKey::parse(text).unwrap();
        assert_eq!(k.bytes(), (0u8..32).collect::<Vec<_>>().as_slice());
        assert_eq!(&*k.to_text(), text);
    }

    #[test]
    fn parse_trims_whitespace() {
        let k = UnlockKey::generate();
        let text = format!("  {}\n", &*k.to_text());
        assert_eq!(UnlockKey::parse(&text).unwrap(), k);
        let text = format!("{}\r\n", &*k.to_text());
        assert_eq!(UnlockKey::parse(&text).unwrap(), k);
    }

    #[test]
    fn parse_accepts_other_lengths() {
        let k = UnlockKey::parse("SWMKEY-1-YWJj").unwrap();
        assert_eq!(k.bytes(), b"abc");
        let k = UnlockKey::parse("SWMKEY-1-YQ").unwrap();
        assert_eq!(k.bytes(), b"a");
    }

    #[test]
    fn parse_rejects() {
        let good = UnlockKey::generate().to_text();
        let no_prefix = good.trim_start_matches("SWMKEY-1-").to_string();
        for bad in [
            "",
            "   ",
            "SWMKEY-1-",
            "SWMKEY-1-  ",
            "swmkey-1-YWJj",
            "SWMKEY-2-YWJj",
            "SWMKEY-1YWJj",
            no_prefix.as_str(),
            "SWMKEY-1-YWJj!",
            "SWMKEY-1-YW Jj",
            "SWMKEY-1-YQ==",         // padding is not allowed (RawStdEncoding)
            "SWMKEY-1-YWJjZA=",      // padding
            "SWMKEY-1-Y",            // impossible length
            "SWMKEY-1-YWJj-_",       // URL-safe alphabet
            "SWMKEY-1-\u{e9}\u{e9}", // non-ASCII
        ] {
            assert!(
                matches!(UnlockKey::parse(bad), Err(CryptoError::InvalidUnlockKey)),
                "accepted {bad:?}"
            );
        }
        assert_eq!(
            CryptoError::InvalidUnlockKey.to_string(),
            "invalid key string"
        );
    }

    #[test]
    fn debug_is_redacted() {
        let k = UnlockKey::parse("SWMKEY-1-AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8").unwrap();
        let d = format!("{k:?} {k:#?}");
        assert_eq!(format!("{k:?}"), "UnlockKey([redacted])");
        assert!(!d.contains("AAEC"));
        crate::test_util::assert_no_key_bytes(&d, k.bytes());
        let k = UnlockKey::generate();
        crate::test_util::assert_no_key_bytes(&format!("{k:?}"), k.bytes());
    }
}
