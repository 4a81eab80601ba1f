use lockbox_types::Rejection;
use thiserror::Error;

/// Errors of core operations, by the category clients act on. Messages never contain secret
/// values. The API layer renders them in Docker's words.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The node is in no swarm.
    #[error("this node is not part of a swarm")]
    NotInSwarm,
    /// The node is a worker: the cluster's state is only on managers.
    #[error(
        "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. Please run this command on a manager node or promote the current node to a manager."
    )]
    WorkerNode,
    /// The node is locked (autolock) and needs its unlock key.
    #[error("the swarm is locked")]
    Locked,
    /// `init` while already in a swarm.
    #[error("this node is already part of a swarm")]
    AlreadyInSwarm,
    /// Leaving would erase the last manager's state without `force`.
    #[error("leaving would remove the last manager")]
    LastManager,
    /// `unlock` while not locked.
    #[error("swarm is not locked")]
    NotLocked,
    /// The unlock key text is malformed.
    #[error("invalid key string")]
    InvalidKey,
    /// The unlock key does not open the keys.
    #[error("swarm could not be unlocked: invalid key provided")]
    WrongKey,
    /// A validation failure (swarmkit's InvalidArgument).
    #[error("{0}")]
    InvalidArgument(String),
    /// A bad request parameter detected by the daemon itself (not swarmkit).
    #[error("{0}")]
    InvalidParameter(String),
    /// swarmkit's `FailedPrecondition` (HTTP 400 with an `rpc error` prefix).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A name is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A conflict reported by the daemon itself (HTTP 409, no `rpc error` prefix).
    #[error("{0}")]
    Conflict(String),
    /// Lookup failed.
    #[error("{0}")]
    NotFound(String),
    /// An ID prefix matched several objects.
    #[error("{0}")]
    Ambiguous(String),
    /// The caller's version is stale.
    #[error("update out of sequence")]
    OutOfSequence,
    /// Not enough free disk space to accept a write.
    #[error("no space left on device: {0}")]
    NoSpace(String),
    /// An operation swarmkit reports as gRPC `Unimplemented` (HTTP 501).
    #[error("{0}")]
    Unimplemented(String),
    /// A failure swarmkit reports as gRPC `Unknown` (HTTP 500 with an `rpc error` prefix).
    #[error("{0}")]
    Unknown(String),
    /// The caller lacks a permission (HTTP 403). The text names the permission and the object
    /// as the caller named it, never whether an out-of-scope object exists.
    #[error("{0}")]
    PermissionDenied(String),
    /// Storage, Raft or key-file failure.
    #[error("{0}")]
    Internal(String),
}

impl From<lockbox_store::StoreError> for CoreError {
    fn from(e: lockbox_store::StoreError) -> Self {
        match e {
            // swarmkit answers these as gRPC Unknown.
            lockbox_store::StoreError::NoLeader
            | lockbox_store::StoreError::NotLeader
            | lockbox_store::StoreError::Unreachable(_) => CoreError::Unknown(e.to_string()),
            other => CoreError::Internal(other.to_string()),
        }
    }
}

impl From<lockbox_crypto::CryptoError> for CoreError {
    fn from(e: lockbox_crypto::CryptoError) -> Self {
        match e {
            lockbox_crypto::CryptoError::Tampered | lockbox_crypto::CryptoError::Corrupt(_) => {
                CoreError::Internal(format!(
                    "the key file keys.json is corrupt or was tampered with: {e}"
                ))
            }
            other => CoreError::Internal(format!("keys: {other}")),
        }
    }
}

impl From<Rejection> for CoreError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::AlreadyInitialized => CoreError::AlreadyInSwarm,
            Rejection::NotInitialized => CoreError::NotInSwarm,
            Rejection::NameConflict { ref kind, ref name } if kind == "service" => {
                CoreError::AlreadyExists(format!(
                    "name conflicts with an existing object: service {name} already exists"
                ))
            }
            Rejection::NameConflict { .. } => CoreError::AlreadyExists(r.to_string()),
            Rejection::NotFound { .. } => CoreError::NotFound(r.to_string()),
            Rejection::SequenceConflict => CoreError::OutOfSequence,
            Rejection::InUse { .. } | Rejection::SecretsNotFound { .. } => {
                CoreError::InvalidArgument(r.to_string())
            }
            Rejection::Conflict(m) => CoreError::Conflict(m),
            Rejection::Missing(m) => CoreError::NotFound(m),
        }
    }
}
