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
    /// This node is not the leader, or the manager a write was forwarded to no longer is.
    #[error("not the leader")]
    NotLeader,
    /// No leader is elected (fewer than a quorum of managers can talk to each other).
    #[error(
        "The swarm does not have a leader. It's possible that too few managers are online. Make sure more than half of the managers are online."
    )]
    NoLeader,
    /// The leader could not be reached to forward a write.
    #[error("cannot reach the leader: {0}")]
    Unreachable(String),
    /// The store is shutting down.
    #[error("store is shutting down")]
    Shutdown,
    /// I/O error.
    #[error("store I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// A copy for handing one failure to several waiters (I/O errors become their text).
    pub(crate) fn clone_shallow(&self) -> StoreError {
        match self {
            StoreError::InUse(s) => StoreError::InUse(s.clone()),
            StoreError::Database(s) => StoreError::Database(s.clone()),
            StoreError::Corrupt { place, reason } => StoreError::Corrupt {
                place: place.clone(),
                reason: reason.clone(),
            },
            StoreError::Raft(s) => StoreError::Raft(s.clone()),
            StoreError::NotLeader => StoreError::NotLeader,
            StoreError::NoLeader => StoreError::NoLeader,
            StoreError::Unreachable(s) => StoreError::Unreachable(s.clone()),
            StoreError::Shutdown => StoreError::Shutdown,
            StoreError::Io(e) => StoreError::Database(e.to_string()),
        }
    }
}
