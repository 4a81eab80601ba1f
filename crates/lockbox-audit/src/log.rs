//! The appending side: [`AuditLog`] and its group-commit writer thread.
//!
//! Callers encode their record (on their own task) and queue it. One writer
//! thread owns the current segment: it takes every queued record (up to
//! [`MAX_BATCH`]), assigns seqs, chains the hashes, writes the batch with one
//! `write` and makes it durable with one `fdatasync`, then answers every
//! waiter. A batch is split only where a segment is rotated.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, oneshot};

use crate::record::{GENESIS, encode_body, encode_line, split_line};
use crate::segment::{
    self, Anchor, AnchorError, LOCK_FILE, Segment, first_prev, list_segments, read_anchor,
    read_tail, segment_name, sync_dir,
};
use crate::{AuditError, Record};

/// The most records one batch (one write and one `fdatasync`) takes.
const MAX_BATCH: usize = 4096;
/// How many appends may wait in the queue before `append` waits for room.
const QUEUE: usize = 8192;

/// Options for [`AuditLog::open`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Start a new segment when appending a record would make the current one
    /// larger than this (a record larger on its own gets a segment to
    /// itself). Default 64 MiB.
    pub max_segment_bytes: u64,
    /// Keep at most this many segments, deleting the oldest after a rotation
    /// (and on open) and recording where the kept part starts in
    /// `audit-anchor.json`. `None` (the default) keeps every segment.
    /// Must be at least 1.
    pub max_segments: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_segment_bytes: 64 * 1024 * 1024,
            max_segments: None,
        }
    }
}

/// The last durable record: its seq and hash (`(0, GENESIS)` for an empty
/// trail).
type Head = (u64, [u8; 32]);

enum Request {
    Append {
        body: Vec<u8>,
        reply: oneshot::Sender<Result<u64, AuditError>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// State shared between the handles and the writer thread.
#[derive(Debug)]
struct Shared {
    head: Mutex<Head>,
    /// Number of successful batch commits (each one `fdatasync`).
    #[cfg(test)]
    commits: std::sync::atomic::AtomicU64,
    /// Injected failures, for tests of the failure paths.
    #[cfg(test)]
    faults: Mutex<Faults>,
}

/// Failures the writer injects, for tests.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Faults {
    /// Fail this many upcoming commits after the write, before the sync.
    pub(crate) fail_sync: u32,
    /// Also fail the rollback of those commits.
    pub(crate) fail_rollback: bool,
}

/// A handle on an open audit trail. Cheap to clone; every clone appends to
/// the same trail.
///
/// Dropping the last handle lets the writer finish the queued appends in the
/// background and release the directory; [`AuditLog::close`] waits for that.
#[derive(Debug, Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    tx: mpsc::Sender<Request>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { body, .. } => write!(f, "Append({} bytes)", body.len()),
            Self::Close { .. } => f.write_str("Close"),
        }
    }
}

impl AuditLog {
    /// Opens (or creates) the trail in `dir` and starts its writer thread.
    ///
    /// Creates `dir` with mode 0700 if needed and takes an exclusive lock on
    /// `dir/audit.lock` ([`AuditError::Locked`] if another log holds it).
    /// Resumes seq and hash from the last complete line of the last segment.
    /// If that segment ends with a partial line (a crash during a write), the
    /// partial line is truncated away with a warning; this is the only repair
    /// ever made. Damage elsewhere is left for [`verify`](crate::verify) to
    /// report, and appending continues after the last line. If the last
    /// complete line cannot be read as a record, opening fails with
    /// [`AuditError::Corrupt`].
    pub fn open(dir: &Path, options: Options) -> Result<Self, AuditError> {
        if options.max_segment_bytes == 0 {
            return Err(AuditError::InvalidOptions(
                "max_segment_bytes must be at least 1".into(),
            ));
        }
        if options.max_segments == Some(0) {
            return Err(AuditError::InvalidOptions(
                "max_segments must be at least 1".into(),
            ));
        }
        segment::ensure_dir(dir)?;
        let lock = lock_dir(dir)?;
        let (seg, file, seg_len, head) = resume(dir)?;
        let shared = Arc::new(Shared {
            head: Mutex::new(head),
            #[cfg(test)]
            commits: Default::default(),
            #[cfg(test)]
            faults: Default::default(),
        });
        let mut writer = Writer {
            dir: dir.to_path_buf(),
            options,
            seg,
            file,
            seg_len,
            head,
            failed: None,
            shared: shared.clone(),
            _lock: lock,
        };
        writer.enforce_retention();
        tracing::debug!(dir = %dir.display(), seq = head.0, "audit trail opened");

        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("lockbox-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| AuditError::io("start the writer thread for", dir, e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                tx,
                shared,
            }),
        })
    }

    /// Appends `record` and returns its seq once the record is written and
    /// `fdatasync`ed. Concurrent appends share one write and one sync.
    ///
    /// On [`AuditError::Write`] the record is not known to be durable and the
    /// trail stays consistent (later records chain to the last durable one);
    /// after [`AuditError::Failed`] the log refuses every append until it is
    /// reopened. If the returned future is dropped after the record was
    /// queued, the record is still written.
    pub async fn append(&self, record: Record) -> Result<u64, AuditError> {
        let body = encode_body(&record)?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .send(Request::Append { body, reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        rx.await.map_err(|_| AuditError::Closed)?
    }

    /// The seq and hash of the last durable record (`(0, [0; 32])` for an
    /// empty trail). Store it somewhere the audit directory's owner cannot
    /// rewrite and pass it to [`verify`](crate::verify): without it, removing
    /// records from the end of the trail is undetectable.
    pub fn head(&self) -> (u64, [u8; 32]) {
        *self
            .inner
            .shared
            .head
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Writes every append queued before this call, closes the segment and
    /// releases the directory, then returns. Appends made afterwards, from
    /// any handle, fail with [`AuditError::Closed`]. Closing twice is fine.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.inner.tx.send(Request::Close { reply }).await.is_ok() {
            // An error means the writer is already gone, which is the goal.
            let _ = rx.await;
        }
    }

    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.inner
            .shared
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    #[cfg(test)]
    pub(crate) fn inject(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self
            .inner
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }
}

/// Takes the exclusive lock of the directory.
fn lock_dir(dir: &Path) -> Result<File, AuditError> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(segment::FILE_MODE)
        .open(&path)
        .map_err(|e| AuditError::io("open", &path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(fs::TryLockError::WouldBlock) => Err(AuditError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(AuditError::io("lock", &path, e)),
    }
}

/// Finds where to append: the last segment (opened for appending), its
/// length and the head. Truncates a partial last line.
fn resume(dir: &Path) -> Result<(Segment, File, u64, Head), AuditError> {
    let anchor = match read_anchor(dir) {
        Ok(a) => a,
        Err(AnchorError::Io(e)) => return Err(e),
        Err(AnchorError::Invalid(reason)) => {
            return Err(AuditError::corrupt(&dir.join(segment::ANCHOR_FILE), reason));
        }
    };
    let segments = list_segments(dir)?;
    // The head before the first kept segment.
    let base: Head = match &anchor {
        Some((a, prev)) => (a.removed_through, *prev),
        None => (0, GENESIS),
    };
    let Some(last) = segments.last().cloned() else {
        if anchor.is_some() {
            return Err(AuditError::corrupt(
                dir,
                "audit-anchor.json exists but every segment is gone",
            ));
        }
        let seg = Segment {
            first: 1,
            path: dir.join(segment_name(1)),
        };
        let file = create_segment(dir, &seg)?;
        return Ok((seg, file, 0, base));
    };

    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .open(&last.path)
        .map_err(|e| AuditError::io("open", &last.path, e))?;
    let len = file
        .metadata()
        .map_err(|e| AuditError::io("stat", &last.path, e))?
        .len();
    let tail = read_tail(&file, len).map_err(|e| AuditError::io("read", &last.path, e))?;
    if tail.complete_len < len {
        tracing::warn!(
            file = %last.path.display(),
            bytes = len - tail.complete_len,
            "audit segment ends with a partial line (interrupted write); truncating it"
        );
        file.set_len(tail.complete_len)
            .and_then(|()| file.sync_all())
            .map_err(|e| AuditError::io("truncate", &last.path, e))?;
    }
    let head = match tail.last_line {
        Some(line) => head_of_line(&last.path, &line)?,
        None => {
            // An empty last segment (a crash right after a rotation): the
            // head is the end of the previous segment.
            let head = match segments.len().checked_sub(2).map(|i| &segments[i]) {
                Some(prev_seg) => last_head(prev_seg)?,
                None => base,
            };
            if head.0.checked_add(1) != Some(last.first) {
                return Err(AuditError::corrupt(
                    &last.path,
                    format!(
                        "empty segment should start at seq {} but its name says {}",
                        head.0.saturating_add(1),
                        last.first
                    ),
                ));
            }
            head
        }
    };
    Ok((last, file, tail.complete_len, head))
}

/// The head (seq and hash) of a stored line, trusted as is.
fn head_of_line(path: &Path, line: &[u8]) -> Result<Head, AuditError> {
    let split = split_line(line).map_err(|r| AuditError::corrupt(path, r))?;
    let seq = crate::record::parse_line(line)
        .map_err(|r| AuditError::corrupt(path, format!("last line: {r}")))?
        .seq;
    Ok((seq, split.hash))
}

/// The head at the end of a segment that must end with a complete line.
fn last_head(seg: &Segment) -> Result<Head, AuditError> {
    let file = File::open(&seg.path).map_err(|e| AuditError::io("open", &seg.path, e))?;
    let len = file
        .metadata()
        .map_err(|e| AuditError::io("stat", &seg.path, e))?
        .len();
    let tail = read_tail(&file, len).map_err(|e| AuditError::io("read", &seg.path, e))?;
    match tail.last_line {
        Some(line) if tail.complete_len == len => head_of_line(&seg.path, &line),
        _ => Err(AuditError::corrupt(
            &seg.path,
            "segment before the last one does not end with a complete line",
        )),
    }
}

/// Creates an empty segment file (0600) and makes its name durable. An empty
/// file left by an earlier failed attempt is reused.
fn create_segment(dir: &Path, seg: &Segment) -> Result<File, AuditError> {
    match segment::create_file(&seg.path) {
        Ok(f) => drop(f),
        Err(AuditError::Io { source, .. })
            if source.kind() == io::ErrorKind::AlreadyExists
                && fs::metadata(&seg.path).is_ok_and(|m| m.len() == 0) => {}
        Err(e) => return Err(e),
    }
    sync_dir(dir)?;
    OpenOptions::new()
        .append(true)
        .open(&seg.path)
        .map_err(|e| AuditError::io("open", &seg.path, e))
}

/// The writer thread's state.
struct Writer {
    dir: PathBuf,
    options: Options,
    seg: Segment,
    /// The current segment, opened with `O_APPEND`.
    file: File,
    /// Durable length of the current segment.
    seg_len: u64,
    /// The last durable record.
    head: Head,
    /// Set when a failed commit could not be rolled back.
    failed: Option<Arc<io::Error>>,
    shared: Arc<Shared>,
    /// Holds the directory lock until the writer ends.
    _lock: File,
}

/// Lines encoded but not yet committed, and who waits for them.
#[derive(Default)]
struct Batch {
    buf: Vec<u8>,
    waiters: Vec<(u64, oneshot::Sender<Result<u64, AuditError>>)>,
    /// Head after the last line in `buf`.
    head: Option<Head>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut close_reply = None;
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Batch::default();
            let mut next = Some(first);
            while let Some(req) = next.take() {
                match req {
                    Request::Append { body, reply } => self.add(&mut batch, body, reply),
                    Request::Close { reply } => {
                        close_reply = Some(reply);
                        break;
                    }
                }
                if batch.waiters.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            self.commit(&mut batch);
            if close_reply.is_some() {
                break;
            }
        }
        // Refuse whatever is still queued, release the files, then confirm.
        rx.close();
        while let Ok(req) = rx.try_recv() {
            match req {
                Request::Append { reply, .. } => {
                    let _ = reply.send(Err(AuditError::Closed));
                }
                Request::Close { reply } => drop(reply),
            }
        }
        tracing::debug!(dir = %self.dir.display(), seq = self.head.0, "audit trail closed");
        drop(self);
        if let Some(reply) = close_reply {
            let _ = reply.send(());
        }
    }

    /// Adds one record to the batch, committing first and rotating if the
    /// record does not fit in the current segment.
    fn add(
        &mut self,
        batch: &mut Batch,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<u64, AuditError>>,
    ) {
        if let Some(e) = &self.failed {
            let _ = reply.send(Err(AuditError::Failed { source: e.clone() }));
            return;
        }
        let (mut seq, mut prev) = batch.head.unwrap_or(self.head);
        let (mut line, mut hash) = encode_line(seq + 1, &prev, &body);
        let used = self.seg_len + batch.buf.len() as u64;
        if used > 0 && used + line.len() as u64 > self.options.max_segment_bytes {
            self.commit(batch);
            if let Some(e) = &self.failed {
                let _ = reply.send(Err(AuditError::Failed { source: e.clone() }));
                return;
            }
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, "could not start a new audit segment");
                let _ = reply.send(Err(e));
                return;
            }
            // A failed commit resets the head; re-encode against it.
            (seq, prev) = self.head;
            (line, hash) = encode_line(seq + 1, &prev, &body);
        }
        batch.buf.extend_from_slice(&line);
        batch.waiters.push((seq + 1, reply));
        batch.head = Some((seq + 1, hash));
    }

    /// Writes and syncs the batch, then answers its waiters. On failure the
    /// segment is truncated back to its durable length; if that fails too,
    /// the log is marked failed.
    fn commit(&mut self, batch: &mut Batch) {
        let batch = std::mem::take(batch);
        let Some(new_head) = batch.head else {
            return;
        };
        match self.write_and_sync(&batch.buf) {
            Ok(()) => {
                self.seg_len += batch.buf.len() as u64;
                self.head = new_head;
                *self
                    .shared
                    .head
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = new_head;
                #[cfg(test)]
                self.shared
                    .commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                for (seq, reply) in batch.waiters {
                    let _ = reply.send(Ok(seq));
                }
            }
            Err(e) => {
                let e = Arc::new(e);
                tracing::error!(
                    file = %self.seg.path.display(),
                    records = batch.waiters.len(),
                    error = %e,
                    "audit write failed; rolling the segment back"
                );
                if let Err(rollback) = self.rollback() {
                    tracing::error!(
                        file = %self.seg.path.display(),
                        error = %rollback,
                        "audit rollback failed; the audit log refuses further records"
                    );
                    self.failed = Some(e.clone());
                }
                for (_, reply) in batch.waiters {
                    let _ = reply.send(Err(AuditError::Write {
                        path: self.seg.path.clone(),
                        source: e.clone(),
                    }));
                }
            }
        }
    }

    fn write_and_sync(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        #[cfg(test)]
        {
            let mut faults = self
                .shared
                .faults
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if faults.fail_sync > 0 {
                faults.fail_sync -= 1;
                return Err(io::Error::other("injected sync failure"));
            }
        }
        self.file.sync_data()
    }

    /// Truncates the segment back to its durable length.
    fn rollback(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self
            .shared
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fail_rollback
        {
            return Err(io::Error::other("injected rollback failure"));
        }
        self.file.set_len(self.seg_len)?;
        self.file.sync_all()
    }

    /// Starts a new segment after the head, then applies retention.
    fn rotate(&mut self) -> Result<(), AuditError> {
        let first = self.head.0 + 1;
        let seg = Segment {
            first,
            path: self.dir.join(segment_name(first)),
        };
        let file = create_segment(&self.dir, &seg)?;
        tracing::debug!(file = %seg.path.display(), "audit segment started");
        self.seg = seg;
        self.file = file;
        self.seg_len = 0;
        self.enforce_retention();
        Ok(())
    }

    /// Deletes the oldest segments beyond `max_segments`, after recording
    /// the new starting point in the anchor. Also finishes a deletion that
    /// was interrupted after its anchor was written. Failures are logged and
    /// retried at the next rotation: retention never fails an append.
    fn enforce_retention(&mut self) {
        if let Err(e) = self.try_enforce_retention() {
            tracing::warn!(error = %e, "audit retention failed; will retry at the next rotation");
        }
    }

    fn try_enforce_retention(&mut self) -> Result<(), AuditError> {
        let segments = list_segments(&self.dir)?;
        let anchored = match read_anchor(&self.dir) {
            Ok(Some((a, _))) => a.seq,
            Ok(None) => 0,
            Err(AnchorError::Io(e)) => return Err(e),
            Err(AnchorError::Invalid(reason)) => {
                return Err(AuditError::corrupt(
                    &self.dir.join(segment::ANCHOR_FILE),
                    reason,
                ));
            }
        };
        let keep = self.options.max_segments.unwrap_or(usize::MAX);
        let first_kept = segments.len().saturating_sub(keep);
        // The kept part starts at the newer of the anchor and the limit.
        let mut start = segments.get(first_kept).map_or(0, |s| s.first);
        if anchored > start {
            start = anchored;
        }
        let doomed: Vec<&Segment> = segments.iter().filter(|s| s.first < start).collect();
        if doomed.is_empty() {
            return Ok(());
        }
        if start > anchored {
            let Some(kept) = segments.iter().find(|s| s.first == start) else {
                return Ok(());
            };
            let prev = first_prev(&kept.path)?;
            segment::write_anchor(
                &self.dir,
                &Anchor {
                    seq: start,
                    prev: hex::encode(prev),
                    removed_through: start - 1,
                },
            )?;
        }
        for seg in doomed {
            // Never delete the segment being written.
            if seg.first >= self.seg.first {
                continue;
            }
            match fs::remove_file(&seg.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(AuditError::io("remove", &seg.path, e)),
            }
            tracing::info!(file = %seg.path.display(), "audit segment retired by retention");
        }
        sync_dir(&self.dir)
    }
}
