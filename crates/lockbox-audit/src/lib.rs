//! lockbox's audit trail: append-only, hash-chained and durable.
//!
//! # Overview
//!
//! * [`AuditLog`] appends [`Record`]s to a directory. [`AuditLog::append`]
//!   answers only once the record is written and `fdatasync`ed; concurrent
//!   appends are group-committed by one writer thread (one write and one
//!   sync per batch).
//! * [`verify`] checks a trail from its files alone and names the first bad
//!   record ([`VerifyReport`]). Pass the head saved from [`AuditLog::head`] to
//!   also detect records cut from the end, or a rewritten tail.
//! * [`query`] and [`export`] stream records (parsed, or as the stored lines)
//!   matching a [`Filter`].
//! * [`value_hmac`] fingerprints a secret value under a key the daemon keeps,
//!   so records can identify a value without containing it.
//!
//! # Files
//!
//! The directory (created 0700) holds segment files (0600) named
//! `audit-<seq of their first record, 20 digits>.jsonl`, one JSON object per
//! line, and `audit.lock` (held by the open log). A new segment starts when
//! the current one would exceed [`Options::max_segment_bytes`]; its first
//! record chains to the last record of the previous segment. With
//! [`Options::max_segments`], the oldest segments are deleted after
//! `audit-anchor.json` (`{"seq":…,"prev":…,"removed_through":…}`) records
//! where the kept part starts and which hash it chains to.
//!
//! A line has the fields `seq`, `time` (UTC RFC 3339, nine fractional
//! digits), `actor`, `source`, `action`, `method`, `path`, `objects`,
//! `outcome`, `details`, `prev` and `hash`, in this order, in compact JSON:
//!
//! ```text
//! {"seq":1,"time":"2025-03-04T03:06:07.000000008Z",…,"details":{},"prev":"000…000","hash":"5f1…"}
//! ```
//!
//! `hash` is `SHA-256(prev || P)`, where `prev` is the previous record's hash
//! as 32 bytes (32 zero bytes for seq 1) and `P` is the exact bytes of the
//! line before `,"prev":`, that is, everything but the last 149 bytes
//! (`,"prev":"<64 hex>","hash":"<64 hex>"}`). Hex is lowercase. The hash
//! covers the bytes as written, so any change, even one that keeps the JSON
//! equivalent, is detected; `prev` links each line to the one before it.
//!
//! # Failure
//!
//! The log fails closed. If writing or syncing a batch fails, every record
//! of the batch gets [`AuditError::Write`] and the segment is truncated back
//! to its last durable length (and synced), so the next record chains to
//! the last durable one. If that rollback fails too, the log is failed: every
//! later append gets [`AuditError::Failed`] until the directory is opened
//! again. Opening truncates a partial last line (an interrupted write) and
//! repairs nothing else.
//!
//! # Example
//!
//! ```
//! use lockbox_audit::{AuditLog, Filter, ObjectRef, Options, Outcome, Record};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lockbox_audit::AuditError> {
//! let dir = tempfile::tempdir().expect("tempdir");
//! let log = AuditLog::open(dir.path(), Options::default())?;
//! let seq = log
//!     .append(Record {
//!         time: time::OffsetDateTime::now_utc(),
//!         actor: "alice".into(),
//!         source: "unix:uid=1001,pid=77".into(),
//!         action: "secret.create".into(),
//!         method: Some("POST".into()),
//!         path: Some("/v1.47/secrets/create".into()),
//!         objects: vec![ObjectRef { kind: "secret".into(), id: "x1".into(), name: "db".into() }],
//!         outcome: Outcome { status: 201, error: None },
//!         details: Default::default(),
//!     })
//!     .await?;
//! assert_eq!(seq, 1);
//! let head = log.head();
//! log.close().await;
//!
//! let report = lockbox_audit::verify(dir.path(), Some(head))?;
//! assert!(report.ok && report.records == 1);
//! let mut filter = Filter::default();
//! filter.action = Some("secret.*".into());
//! assert_eq!(lockbox_audit::query(dir.path(), &filter)?.count(), 1);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod error;
mod fingerprint;
mod log;
mod query;
mod record;
mod segment;
mod verify;

#[cfg(test)]
mod tests;

pub use error::AuditError;
pub use fingerprint::{check_value_hmac, value_hmac};
pub use log::{AuditLog, Options};
pub use query::{Export, Filter, Query, export, query};
pub use record::{GENESIS, ObjectRef, Outcome, Record, StoredRecord};
pub use verify::{BadRecord, VerifyReport, verify};
