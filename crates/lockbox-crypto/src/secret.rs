//! [`SecretBytes`]: a byte string that is zeroized on drop and never printed.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Secret bytes: zeroized on drop; `Debug`/`Display` never show the content
/// (`SecretBytes([redacted; 12 bytes])`).
///
/// Equality is constant-time (for equal lengths). Serde encodes the value as
/// a byte string, so it can live inside postcard-encoded Raft entries.
#[derive(Clone, Default)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `v`; it is zeroized when the `SecretBytes` is
    /// dropped.
    pub fn new(v: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(v))
    }

    /// The secret content. Callers must not log or copy it carelessly.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Constant-time comparison with `other` (the running time depends only
    /// on the lengths, and unequal lengths return `false` at once).
    pub fn ct_eq(&self, other: &[u8]) -> bool {
        bool::from(self.0.as_slice().ct_eq(other))
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(v: Vec<u8>) -> Self {
        SecretBytes::new(v)
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(v: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(v)
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other.expose())
    }
}

impl Eq for SecretBytes {}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([redacted; {} bytes])", self.len())
    }
}

impl fmt::Display for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_byte_buf(SecretBytesVisitor)
    }
}

struct SecretBytesVisitor;

impl<'de> Visitor<'de> for SecretBytesVisitor {
    type Value = SecretBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<SecretBytes, E> {
        Ok(SecretBytes::new(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<SecretBytes, E> {
        Ok(SecretBytes::new(v))
    }

    // Self-describing formats without a byte type (JSON) encode bytes as a
    // sequence of integers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SecretBytes, A::Error> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            seq.size_hint().unwrap_or(0).clamp(16, 64 * 1024),
        ));
        while let Some(b) = seq.next_element::<u8>()? {
            if out.len() == out.capacity() {
                // Grow by hand so the old buffer is zeroized instead of being
                // freed with secret bytes still in it.
                let mut bigger = Zeroizing::new(Vec::with_capacity(out.capacity() * 2));
                bigger.extend_from_slice(&out);
                out = bigger;
            }
            out.push(b);
        }
        Ok(SecretBytes(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = SecretBytes::new(b"hunter2hunte".to_vec());
        assert_eq!(format!("{s:?}"), "SecretBytes([redacted; 12 bytes])");
        assert_eq!(format!("{s}"), "SecretBytes([redacted; 12 bytes])");
        assert!(!format!("{s:#?}").contains("hunter"));
        assert!(!format!("{:?}", Some(&s)).contains("104")); // 'h' as a number
    }

    #[test]
    fn accessors_and_equality() {
        let s = SecretBytes::from(b"abc".to_vec());
        assert_eq!(s.expose(), b"abc");
        assert_eq!(s.len(), 3);
        assert!(!s.is_empty());
        assert!(SecretBytes::default().is_empty());
        assert!(s.ct_eq(b"abc"));
        assert!(!s.ct_eq(b"abd"));
        assert!(!s.ct_eq(b"ab"));
        assert!(!s.ct_eq(b"abcd"));
        assert_eq!(s, SecretBytes::new(b"abc".to_vec()));
        assert_ne!(s, SecretBytes::new(b"abx".to_vec()));
        assert_eq!(s.clone(), s);
    }

    #[test]
    fn postcard_round_trip_is_a_byte_string() {
        let s = SecretBytes::new(vec![0, 1, 2, 255]);
        let enc = postcard::to_allocvec(&s).unwrap();
        // varint length prefix then the raw bytes
        assert_eq!(enc, vec![4, 0, 1, 2, 255]);
        let back: SecretBytes = postcard::from_bytes(&enc).unwrap();
        assert_eq!(back, s);

        #[derive(Serialize, Deserialize)]
        struct Entry {
            name: String,
            data: SecretBytes,
        }
        let e = Entry {
            name: "db".into(),
            data: SecretBytes::new(vec![9; 300]),
        };
        let enc = postcard::to_allocvec(&e).unwrap();
        let back: Entry = postcard::from_bytes(&enc).unwrap();
        assert_eq!(back.name, "db");
        assert_eq!(back.data.expose(), &[9; 300][..]);
    }

    #[test]
    fn json_round_trip_via_sequence() {
        let s = SecretBytes::new((0..=255u8).collect());
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.starts_with("[0,1,2,"));
        let back: SecretBytes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<SecretBytes>("[256]").is_err());
        // serde_json hands a JSON string to a bytes visitor as its UTF-8 bytes.
        let s: SecretBytes = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(s.expose(), b"abc");
        assert!(serde_json::from_str::<SecretBytes>("{}").is_err());
    }
}
