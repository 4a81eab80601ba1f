//! The error type of this crate.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Errors from opening, appending to, verifying and querying an audit trail.
///
/// Verification findings (a changed byte, a missing record, …) are not
/// errors: [`verify`](crate::verify) reports them in a
/// [`VerifyReport`](crate::VerifyReport). Errors are I/O failures, a trail
/// that cannot be resumed, and misuse.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An I/O error while opening, reading or maintaining the trail.
    #[error("could not {op} {}", path.display())]
    Io {
        /// What was being done ("open", "read", "create", …).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Another [`AuditLog`](crate::AuditLog) holds this directory open (in
    /// this process or another one).
    #[error("audit directory {} is in use by another audit log", path.display())]
    Locked {
        /// The audit directory.
        path: PathBuf,
    },
    /// The trail cannot be resumed on open: its last complete line is not a
    /// record, segment names disagree with their contents, or an anchor
    /// exists without segments. Nothing is repaired; run
    /// [`verify`](crate::verify) to locate the damage.
    #[error("audit trail {} cannot be resumed: {reason}", path.display())]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A stored line could not be read back as a record while querying.
    #[error("{file} line {line}: {reason}")]
    Malformed {
        /// The segment file name.
        file: String,
        /// The 1-based line number in that file.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// The record cannot be stored (for example, its time is outside years
    /// 0000–9999, which RFC 3339 cannot express).
    #[error("invalid audit record: {0}")]
    InvalidRecord(String),
    /// The [`Options`](crate::Options) are not usable.
    #[error("invalid audit options: {0}")]
    InvalidOptions(String),
    /// Writing or syncing the batch this record was part of failed. The
    /// segment was truncated back to its last durable length, so the trail
    /// stays consistent and later appends chain to the last durable record.
    /// The record is not known to be durable (it may still be found on disk
    /// if the rollback could not be completed; see [`AuditError::Failed`]).
    #[error("could not write the audit trail to {}", path.display())]
    Write {
        /// The segment being written.
        path: PathBuf,
        /// The write or sync error.
        #[source]
        source: Arc<io::Error>,
    },
    /// An earlier write failed and the segment could not be rolled back to
    /// its last durable length, so the log refuses every further append. Drop
    /// every handle and [`open`](crate::AuditLog::open) the directory again:
    /// opening re-reads the state from disk.
    #[error("the audit log stopped accepting records after a write failure; reopen it")]
    Failed {
        /// The error that failed the log.
        #[source]
        source: Arc<io::Error>,
    },
    /// The log was closed, or its writer thread is gone.
    #[error("the audit log is closed")]
    Closed,
}

impl AuditError {
    pub(crate) fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
