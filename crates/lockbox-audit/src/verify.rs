//! Offline verification of a trail's files.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::record::{GENESIS, chain_hash, parse_line, split_line};
use crate::segment::{ANCHOR_FILE, AnchorError, Segment, list_segments, read_anchor};

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// Whether the whole trail verified (`first_bad` is `None`).
    pub ok: bool,
    /// Records verified, up to the first bad one.
    pub records: u64,
    /// Segment files read (segments already retired by retention but not
    /// yet deleted are skipped and not counted).
    pub files: usize,
    /// Records deleted by retention before the kept part of the trail
    /// (`removed_through` of `audit-anchor.json`; 0 without an anchor).
    /// Retention is not tampering.
    pub retired: u64,
    /// The first record that failed verification.
    pub first_bad: Option<BadRecord>,
}

/// Where and why verification failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRecord {
    /// The file name (not the path) of the segment, or `audit-anchor.json`.
    pub file: String,
    /// The 1-based line number in that file. For records missing from the
    /// end of the trail, the line where the next record would be.
    pub line: u64,
    /// The seq expected at that place.
    pub expected_seq: u64,
    /// The seq found there, if the line could be read as a record.
    pub found_seq: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

/// Verifies the trail in `dir` from its files alone (no daemon needed).
///
/// Checks, in order, every line of every kept segment: it ends with a
/// newline, it has the `prev`/`hash` suffix, it is a JSON record, its seq is
/// the next one (the first line of a segment must also have the seq in the
/// file name), its `prev` is the previous record's hash (the anchor's `prev`,
/// or 64 zeros, for the first kept record) and its `hash` is
/// `SHA-256(prev || line prefix)`. Verification stops at the first failure.
///
/// Anyone who can write the directory can rewrite the trail from any point
/// on and recompute the hashes, or cut records from its end. Pass the head
/// recorded elsewhere ([`AuditLog::head`](crate::AuditLog::head)) as
/// `expected_head` to detect both: the record with that seq must exist and
/// have that hash (a head older than the records retired by retention
/// cannot be checked and is ignored).
///
/// Returns an error only if the files cannot be read; every finding is in
/// the report. Verifying while a log appends is safe but may report the line
/// being written as truncated.
pub fn verify(
    dir: &Path,
    expected_head: Option<(u64, [u8; 32])>,
) -> Result<VerifyReport, AuditError> {
    let segments = list_segments(dir)?;
    let mut v = Verifier {
        report: VerifyReport {
            ok: true,
            records: 0,
            files: 0,
            retired: 0,
            first_bad: None,
        },
        expected_head,
    };
    let anchor = match read_anchor(dir) {
        Ok(a) => a,
        Err(AnchorError::Io(e)) => return Err(e),
        Err(AnchorError::Invalid(reason)) => {
            return Ok(v.fail(BadRecord {
                file: ANCHOR_FILE.into(),
                line: 1,
                expected_seq: 0,
                found_seq: None,
                reason,
            }));
        }
    };
    let (mut next, mut prev) = match &anchor {
        Some((a, prev)) => {
            v.report.retired = a.removed_through;
            (a.seq, *prev)
        }
        None => (1, GENESIS),
    };
    // Segments wholly before the anchor were retired; their deletion may
    // have been interrupted. Skip them.
    let kept_from = match &anchor {
        Some((a, _)) => segments
            .windows(2)
            .take_while(|w| w[1].first <= a.seq)
            .count(),
        None => 0,
    };
    let kept = &segments[kept_from..];

    // An expected head right before the first kept record.
    if let Some((s, h)) = expected_head
        && s == next - 1
        && h != prev
    {
        return Ok(v.fail(BadRecord {
            file: kept
                .first()
                .map_or_else(|| ANCHOR_FILE.into(), Segment::name),
            line: 1,
            expected_seq: next,
            found_seq: None,
            reason: format!("seq {s} does not have the expected head hash"),
        }));
    }

    let mut last_lines = 0;
    for (i, seg) in kept.iter().enumerate() {
        v.report.files += 1;
        let name = seg.name();
        let file = File::open(&seg.path).map_err(|e| AuditError::io("open", &seg.path, e))?;
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        let mut line_no = 0u64;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| AuditError::io("read", &seg.path, e))?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let bad = |reason: String, found_seq: Option<u64>| BadRecord {
                file: name.clone(),
                line: line_no,
                expected_seq: next,
                found_seq,
                reason,
            };
            if line.pop() != Some(b'\n') {
                return Ok(v.fail(bad("truncated line: no newline at the end".into(), None)));
            }
            let split = match split_line(&line) {
                Ok(s) => s,
                Err(reason) => return Ok(v.fail(bad(reason.into(), None))),
            };
            let found = match parse_line(&line) {
                Ok(r) => r.seq,
                Err(reason) => return Ok(v.fail(bad(reason, None))),
            };
            if found != next {
                let reason = if found > next {
                    format!("records missing: expected seq {next}, found {found}")
                } else {
                    format!("records out of order or repeated: expected seq {next}, found {found}")
                };
                return Ok(v.fail(bad(reason, Some(found))));
            }
            if line_no == 1 && seg.first != found {
                let reason = format!("file name says the segment starts at seq {}", seg.first);
                return Ok(v.fail(bad(reason, Some(found))));
            }
            if split.prev != prev {
                let reason = "prev is not the hash of the previous record".into();
                return Ok(v.fail(bad(reason, Some(found))));
            }
            let hash = chain_hash(&prev, split.prefix);
            if hash != split.hash {
                let reason = "hash mismatch: the record was modified".into();
                return Ok(v.fail(bad(reason, Some(found))));
            }
            if let Some((s, h)) = expected_head
                && s == found
                && h != hash
            {
                let reason = "hash differs from the expected head: the trail was rewritten".into();
                return Ok(v.fail(bad(reason, Some(found))));
            }
            v.report.records += 1;
            prev = hash;
            next += 1;
        }
        if line_no == 0 && (i + 1 < kept.len() || seg.first != next) {
            return Ok(v.fail(BadRecord {
                file: name,
                line: 1,
                expected_seq: next,
                found_seq: None,
                reason: if i + 1 < kept.len() {
                    "empty segment in the middle of the trail".into()
                } else {
                    format!("empty last segment should start at seq {next}")
                },
            }));
        }
        last_lines = line_no;
    }

    if let Some((s, _)) = expected_head
        && s >= next
    {
        let last = next - 1;
        return Ok(v.fail(BadRecord {
            file: kept.last().map_or_else(String::new, Segment::name),
            line: last_lines + 1,
            expected_seq: next,
            found_seq: None,
            reason: format!(
                "trail ends at seq {last} but the expected head is seq {s}: records were removed from the end"
            ),
        }));
    }
    Ok(v.report)
}

struct Verifier {
    report: VerifyReport,
    expected_head: Option<(u64, [u8; 32])>,
}

impl Verifier {
    fn fail(mut self, bad: BadRecord) -> VerifyReport {
        tracing::debug!(
            file = %bad.file,
            line = bad.line,
            reason = %bad.reason,
            head_given = self.expected_head.is_some(),
            "audit verification failed"
        );
        self.report.ok = false;
        self.report.first_bad = Some(bad);
        self.report
    }
}
