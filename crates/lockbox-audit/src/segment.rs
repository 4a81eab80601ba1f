//! Segment files, the retention anchor and small file helpers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::AuditError;
use crate::record::{decode_hash, split_line};

pub(crate) const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;
/// Name of the retention anchor file.
pub(crate) const ANCHOR_FILE: &str = "audit-anchor.json";
/// Name of the lock file held by an open [`AuditLog`](crate::AuditLog).
pub(crate) const LOCK_FILE: &str = "audit.lock";
const SEGMENT_PREFIX: &str = "audit-";
const SEGMENT_SUFFIX: &str = ".jsonl";
const SEQ_DIGITS: usize = 20;

/// A segment file: `audit-<first seq, 20 digits>.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    /// The seq of its first record, from its name.
    pub(crate) first: u64,
    pub(crate) path: PathBuf,
}

impl Segment {
    pub(crate) fn name(&self) -> String {
        segment_name(self.first)
    }
}

pub(crate) fn segment_name(first: u64) -> String {
    format!("{SEGMENT_PREFIX}{first:0SEQ_DIGITS$}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name
        .strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the segments of `dir`, in seq order. Other files are ignored.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<Segment>, AuditError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| AuditError::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| AuditError::io("read directory", dir, e))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(parse_segment_name) {
            out.push(Segment {
                first,
                path: entry.path(),
            });
        }
    }
    out.sort_by_key(|s| s.first);
    Ok(out)
}

/// The retention anchor, `audit-anchor.json`: where the kept part of a trail
/// starts after older segments were deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Anchor {
    /// The seq of the first kept record.
    pub(crate) seq: u64,
    /// Lowercase hex of the hash the first kept record chains to.
    pub(crate) prev: String,
    /// The last seq deleted by retention (`seq - 1`).
    pub(crate) removed_through: u64,
}

impl Anchor {
    /// The anchor's `prev` as bytes, after checking the anchor is coherent.
    pub(crate) fn checked_prev(&self) -> Result<[u8; 32], String> {
        if self.seq < 2 || self.removed_through != self.seq - 1 {
            return Err(format!(
                "anchor seq {} and removed_through {} disagree",
                self.seq, self.removed_through
            ));
        }
        decode_hash(self.prev.as_bytes())
            .ok_or_else(|| "anchor prev is not 64 lowercase hex digits".to_string())
    }
}

/// Reads the anchor of `dir`: `Ok(None)` if there is none, `Err(reason)` if
/// it is unreadable or malformed.
pub(crate) fn read_anchor(dir: &Path) -> Result<Option<(Anchor, [u8; 32])>, AnchorError> {
    let path = dir.join(ANCHOR_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(AnchorError::Io(AuditError::io("read", &path, e))),
    };
    let anchor: Anchor = serde_json::from_slice(&bytes)
        .map_err(|e| AnchorError::Invalid(format!("anchor is not valid: {e}")))?;
    let prev = anchor.checked_prev().map_err(AnchorError::Invalid)?;
    Ok(Some((anchor, prev)))
}

/// Why an anchor could not be used.
#[derive(Debug)]
pub(crate) enum AnchorError {
    Io(AuditError),
    Invalid(String),
}

/// Writes `anchor` atomically (temporary 0600 file, fsync, rename, fsync of
/// the directory).
pub(crate) fn write_anchor(dir: &Path, anchor: &Anchor) -> Result<(), AuditError> {
    let target = dir.join(ANCHOR_FILE);
    let tmp = dir.join(format!(".{ANCHOR_FILE}.tmp"));
    let mut data = serde_json::to_vec(anchor).map_err(|e| {
        AuditError::io(
            "encode",
            &target,
            io::Error::new(io::ErrorKind::InvalidData, e),
        )
    })?;
    data.push(b'\n');
    let _ = fs::remove_file(&tmp);
    let mut f = create_file(&tmp)?;
    f.write_all(&data)
        .map_err(|e| AuditError::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| AuditError::io("sync", &tmp, e))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(|e| AuditError::io("rename", &target, e))?;
    sync_dir(dir)
}

/// Creates `dir` (mode 0700) if it does not exist.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), AuditError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(|e| AuditError::io("create directory", dir, e))
}

/// fsyncs a directory so that a create, rename or unlink in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| AuditError::io("sync directory", dir, e))
}

/// Creates a new file with mode exactly 0600, for writing.
pub(crate) fn create_file(path: &Path) -> Result<File, AuditError> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(|e| AuditError::io("create", path, e))?;
    // The umask can only remove bits; make the mode exactly 0600.
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .map_err(|e| AuditError::io("set permissions on", path, e))?;
    Ok(f)
}

/// The end of a segment as found on disk.
#[derive(Debug)]
pub(crate) struct Tail {
    /// Length up to and including the last newline (the length to truncate
    /// to if the file ends with a partial line).
    pub(crate) complete_len: u64,
    /// The last complete line, without its newline, if there is one.
    pub(crate) last_line: Option<Vec<u8>>,
}

/// Reads the end of `file` (of length `len`) backwards until the last
/// complete line is found.
pub(crate) fn read_tail(file: &File, len: u64) -> io::Result<Tail> {
    const CHUNK: u64 = 64 * 1024;
    // `buf` holds the file bytes [pos, len).
    let mut pos = len;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let newlines = buf.iter().filter(|&&b| b == b'\n').count();
        if newlines >= 2 || pos == 0 {
            break;
        }
        let step = CHUNK.min(pos);
        pos -= step;
        let mut chunk = vec![0u8; usize::try_from(step).map_err(io::Error::other)?];
        file.read_exact_at(&mut chunk, pos)?;
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
        // No newline at all: the whole file is one partial line.
        return Ok(Tail {
            complete_len: 0,
            last_line: None,
        });
    };
    let start = buf[..last_nl]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    Ok(Tail {
        complete_len: pos + last_nl as u64 + 1,
        last_line: Some(buf[start..last_nl].to_vec()),
    })
}

/// Reads the `prev` of the first record of a segment.
pub(crate) fn first_prev(path: &Path) -> Result<[u8; 32], AuditError> {
    let f = File::open(path).map_err(|e| AuditError::io("open", path, e))?;
    let mut line = Vec::new();
    BufReader::new(f)
        .read_until(b'\n', &mut line)
        .map_err(|e| AuditError::io("read", path, e))?;
    if line.pop() != Some(b'\n') {
        return Err(AuditError::corrupt(
            path,
            "segment has no complete first line",
        ));
    }
    split_line(&line)
        .map(|s| s.prev)
        .map_err(|reason| AuditError::corrupt(path, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_name(42), "audit-00000000000000000042.jsonl");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("audit-42.jsonl"), None);
        assert_eq!(parse_segment_name("audit-anchor.json"), None);
        assert_eq!(parse_segment_name("audit-0000000000000000004x.jsonl"), None);
    }

    #[test]
    fn tail_finds_last_complete_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let check = |content: &[u8], complete: u64, last: Option<&[u8]>| {
            fs::write(&path, content).expect("write");
            let f = File::open(&path).expect("open");
            let tail = read_tail(&f, content.len() as u64).expect("tail");
            assert_eq!(tail.complete_len, complete, "{content:?}");
            assert_eq!(tail.last_line.as_deref(), last, "{content:?}");
        };
        check(b"", 0, None);
        check(b"abc", 0, None);
        check(b"abc\n", 4, Some(b"abc"));
        check(b"abc\nde", 4, Some(b"abc"));
        check(b"abc\nde\n", 7, Some(b"de"));
        check(b"abc\nde\nf", 7, Some(b"de"));
        let mut big = vec![b'x'; 200_000];
        big.push(b'\n');
        big.extend_from_slice(&[b'y'; 150_000]);
        big.push(b'\n');
        big.extend_from_slice(&[b'z'; 70_000]);
        check(&big, 350_002, Some(&[b'y'; 150_000]));
    }
}
