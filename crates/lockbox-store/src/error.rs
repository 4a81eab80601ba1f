use thiserror::Error;

/// Errors of the store. Messages never contain secret values.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error("the data directory {0} is in use by another lockbox daemon")]
    InUse(String),
    /// The database file could not be opened or read.
    #[error("store database: {0}")]
    Database(String),
    /// A record failed authentication or could not be decoded.
    #[error("store record {place} is corrupt or was tampered with: {reason}")]
    Corrupt {
        /// Where the record lives.
        place: String,
        /// What was wrong.
        reason: String,
    },
    /// Raft refused or failed.
    #[error("raft: {0}")]
    Raft(String),
    /// This node is not the leader (reserved for multi-manager clusters).
    #[error("not the leader")]
    NotLeader,
    /// The store is shutting down.
    #[error("store is shutting down")]
    Shutdown,
    /// I/O error.
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
}
