//! The record model and the exact bytes of a stored line.
//!
//! A stored line is `PREFIX SUFFIX "\n"` where
//!
//! * `PREFIX` is `{"seq":N,` followed by the compact `serde_json` encoding of
//!   the [`Record`] without its opening and closing braces, so it ends with
//!   the `details` object: `{"seq":7,"time":…,"details":{…}`;
//! * `SUFFIX` is exactly [`SUFFIX_LEN`] bytes:
//!   `,"prev":"<64 lowercase hex>","hash":"<64 lowercase hex>"}`;
//! * `hash = SHA-256(prev as 32 raw bytes || PREFIX bytes)`.
//!
//! The suffix is found by its fixed length from the end of the line, never by
//! searching for `,"prev":`, which may also occur inside `details` (a detail
//! named `prev`). `serde_json` escapes every control character, so a line
//! never contains a raw newline.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::AuditError;

/// The hash the first record of a trail chains to: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// Length of the fixed `,"prev":"…","hash":"…"}` suffix of a stored line.
pub(crate) const SUFFIX_LEN: usize = 149;
const PREV_TAG: &[u8] = b",\"prev\":\"";
const HASH_TAG: &[u8] = b"\",\"hash\":\"";
const END_TAG: &[u8] = b"\"}";

/// An object an audited action concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object kind: `secret`, `service`, `task`, `node`, `user`,
    /// `grant`, …
    pub kind: String,
    /// The object's ID.
    pub id: String,
    /// The object's name (empty if it has none).
    pub name: String,
}

/// How an audited action ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The HTTP status of an API request, or 0 for internal events.
    pub status: u16,
    /// The error message, if the action failed.
    pub error: Option<String>,
}

/// One audit event, as submitted by a caller.
///
/// The time is stored in UTC as RFC 3339 with nine fractional digits. A
/// record read back has its time in UTC and compares equal to the one
/// appended ([`OffsetDateTime`] equality compares instants).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// When the action happened (years 0000 to 9999).
    #[serde(with = "rfc3339_nanos")]
    pub time: OffsetDateTime,
    /// Who acted: `root`, `alice`, `uid:1001`, `daemon`, …
    pub actor: String,
    /// Where the request came from: `unix:uid=1001,pid=77`,
    /// `tls:10.0.0.3:5521 cn=alice serial=…`, `internal`, …
    pub source: String,
    /// What was done: `secret.create`, `secret.inspect`, `swarm.unlock`,
    /// `http`, …
    pub action: String,
    /// The HTTP method, for API requests.
    pub method: Option<String>,
    /// The HTTP path, for API requests.
    pub path: Option<String>,
    /// The objects concerned.
    pub objects: Vec<ObjectRef>,
    /// How it ended.
    pub outcome: Outcome,
    /// Further facts (`target`, `node`, `task`, `value_hmac`, …).
    pub details: BTreeMap<String, String>,
}

/// A record as stored: its sequence number, the record and its chain hashes.
///
/// Serialized with `serde_json` it has the same fields in the same order as
/// the stored line. To hand records to something that re-verifies the chain,
/// use [`export`](crate::export), which yields the stored bytes unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The sequence number: 1 for the first record of the trail, then +1.
    pub seq: u64,
    /// The record.
    #[serde(flatten)]
    pub record: Record,
    /// Lowercase hex of the previous record's hash (64 zeros for seq 1).
    pub prev: String,
    /// Lowercase hex of this record's hash.
    pub hash: String,
}

/// Encodes `record` as the part of the line prefix after `{"seq":N,`:
/// `"time":…,"details":{…}` (no braces around it).
pub(crate) fn encode_body(record: &Record) -> Result<Vec<u8>, AuditError> {
    let mut json =
        serde_json::to_vec(record).map_err(|e| AuditError::InvalidRecord(e.to_string()))?;
    // `to_vec` of a struct always yields `{…}`; strip the braces.
    if json.first() != Some(&b'{') || json.last() != Some(&b'}') || json.len() < 2 {
        return Err(AuditError::InvalidRecord(
            "record did not encode as an object".into(),
        ));
    }
    json.pop();
    json.remove(0);
    Ok(json)
}

/// Builds the full stored line (with its newline) for `body` at `seq`
/// chained to `prev`, and returns it with the record's hash.
pub(crate) fn encode_line(seq: u64, prev: &[u8; 32], body: &[u8]) -> (Vec<u8>, [u8; 32]) {
    let mut line = Vec::with_capacity(body.len() + SUFFIX_LEN + 32);
    line.extend_from_slice(b"{\"seq\":");
    line.extend_from_slice(seq.to_string().as_bytes());
    line.push(b',');
    line.extend_from_slice(body);
    let hash = chain_hash(prev, &line);
    line.extend_from_slice(PREV_TAG);
    line.extend_from_slice(hex::encode(prev).as_bytes());
    line.extend_from_slice(HASH_TAG);
    line.extend_from_slice(hex::encode(hash).as_bytes());
    line.extend_from_slice(END_TAG);
    line.push(b'\n');
    (line, hash)
}

/// `SHA-256(prev || prefix)`.
pub(crate) fn chain_hash(prev: &[u8; 32], prefix: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(prefix);
    h.finalize().into()
}

/// A stored line split into its hashed prefix and its chain hashes.
#[derive(Debug)]
pub(crate) struct SplitLine<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) prev: [u8; 32],
    pub(crate) hash: [u8; 32],
}

/// Splits a stored line (without its newline) into prefix, prev and hash.
/// Checks only the fixed suffix, not the JSON of the prefix.
pub(crate) fn split_line(line: &[u8]) -> Result<SplitLine<'_>, &'static str> {
    if line.len() < SUFFIX_LEN + 2 {
        return Err("line is too short to be a record");
    }
    let (prefix, suffix) = line.split_at(line.len() - SUFFIX_LEN);
    let (prev_tag, rest) = suffix.split_at(PREV_TAG.len());
    let (prev_hex, rest) = rest.split_at(64);
    let (hash_tag, rest) = rest.split_at(HASH_TAG.len());
    let (hash_hex, end_tag) = rest.split_at(64);
    if prev_tag != PREV_TAG || hash_tag != HASH_TAG || end_tag != END_TAG {
        return Err("line does not end with the \"prev\" and \"hash\" fields");
    }
    let prev = decode_hash(prev_hex).ok_or("\"prev\" is not 64 lowercase hex digits")?;
    let hash = decode_hash(hash_hex).ok_or("\"hash\" is not 64 lowercase hex digits")?;
    Ok(SplitLine { prefix, prev, hash })
}

/// Decodes 64 lowercase hex digits. Uppercase is refused: the suffix is not
/// covered by the record's own hash, so its spelling must be unique.
pub(crate) fn decode_hash(hex_digits: &[u8]) -> Option<[u8; 32]> {
    if hex_digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex_digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Parses a stored line (without its newline) as a [`StoredRecord`].
pub(crate) fn parse_line(line: &[u8]) -> Result<StoredRecord, String> {
    serde_json::from_slice(line).map_err(|e| format!("not a valid JSON record: {e}"))
}

/// Serde for [`OffsetDateTime`] as UTC RFC 3339 with nine fractional
/// digits (`2025-01-02T03:04:05.000000006Z`). Parsing accepts any RFC 3339.
mod rfc3339_nanos {
    use serde::{Deserialize, Deserializer, Serializer, de, ser};
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    use time::{OffsetDateTime, UtcOffset};

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let utc = t
            .checked_to_offset(UtcOffset::UTC)
            .filter(|u| (0..=9999).contains(&u.year()))
            .ok_or_else(|| ser::Error::custom("time is outside years 0000-9999 UTC"))?;
        let text = utc
            .format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
            ))
            .map_err(ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    pub(crate) fn sample() -> Record {
        Record {
            time: datetime!(2025-03-04 05:06:07.000000008 +02:00),
            actor: "alice".into(),
            source: "unix:uid=1001,pid=77".into(),
            action: "secret.create".into(),
            method: Some("POST".into()),
            path: Some("/v1.47/secrets/create".into()),
            objects: vec![ObjectRef {
                kind: "secret".into(),
                id: "abc".into(),
                name: "db".into(),
            }],
            outcome: Outcome {
                status: 201,
                error: None,
            },
            details: BTreeMap::from([("target".into(), "db".into())]),
        }
    }

    #[test]
    fn line_layout_is_fixed() {
        let body = encode_body(&sample()).expect("encodes");
        let (line, hash) = encode_line(7, &GENESIS, &body);
        let text = std::str::from_utf8(&line).expect("utf-8");
        assert_eq!(
            text,
            format!(
                "{{\"seq\":7,\"time\":\"2025-03-04T03:06:07.000000008Z\",\"actor\":\"alice\",\
                 \"source\":\"unix:uid=1001,pid=77\",\"action\":\"secret.create\",\"method\":\"POST\",\
                 \"path\":\"/v1.47/secrets/create\",\"objects\":[{{\"kind\":\"secret\",\"id\":\"abc\",\
                 \"name\":\"db\"}}],\"outcome\":{{\"status\":201,\"error\":null}},\
                 \"details\":{{\"target\":\"db\"}},\"prev\":\"{}\",\"hash\":\"{}\"}}\n",
                "0".repeat(64),
                hex::encode(hash)
            )
        );
        let split = split_line(&line[..line.len() - 1]).expect("splits");
        assert_eq!(split.prev, GENESIS);
        assert_eq!(split.hash, hash);
        assert_eq!(chain_hash(&GENESIS, split.prefix), hash);
        let parsed = parse_line(&line[..line.len() - 1]).expect("parses");
        assert_eq!(parsed.seq, 7);
        assert_eq!(parsed.record, sample());
        assert_eq!(parsed.hash, hex::encode(hash));
        // Re-serializing the parsed record gives the stored line back.
        let mut again = serde_json::to_vec(&parsed).expect("serializes");
        again.push(b'\n');
        assert_eq!(again, line);
    }

    #[test]
    fn detail_named_prev_does_not_confuse_the_split() {
        let mut r = sample();
        let fake = format!("{}\",\"hash\":\"{}", "1".repeat(64), "2".repeat(64));
        r.details.insert("prev".into(), fake);
        let body = encode_body(&r).expect("encodes");
        let (line, hash) = encode_line(1, &GENESIS, &body);
        let split = split_line(&line[..line.len() - 1]).expect("splits");
        assert_eq!((split.prev, split.hash), (GENESIS, hash));
        assert_eq!(chain_hash(&GENESIS, split.prefix), hash);
    }

    #[test]
    fn uppercase_hex_is_refused() {
        let (line, _) = encode_line(1, &[0xab; 32], &encode_body(&sample()).expect("encodes"));
        let mut line = line[..line.len() - 1].to_vec();
        let at = line.len() - SUFFIX_LEN + PREV_TAG.len();
        assert_eq!(line[at], b'a');
        line[at] = b'A';
        assert!(split_line(&line).is_err());
    }

    #[test]
    fn out_of_range_time_is_refused() {
        let mut r = sample();
        r.time = datetime!(-0001-01-01 0:00 UTC);
        assert!(matches!(encode_body(&r), Err(AuditError::InvalidRecord(_))));
    }
}
