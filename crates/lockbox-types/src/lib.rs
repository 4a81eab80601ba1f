//! The vocabulary shared by every part of lockbox: object identifiers, validated names,
//! the replicated objects (secrets, the cluster, nodes) and the commands that change them.
//!
//! Nothing here does I/O, reads a clock or talks HTTP. Objects are plain serde data so they
//! can be carried in Raft entries and snapshots; the Docker wire shapes live in `lockbox-api`.

#![forbid(unsafe_code)]

mod access;
mod command;
mod id;
mod labels;
mod name;
mod object;
mod service;

pub use access::{
    AccessChange, AccessError, AccessModel, Grant, PERMISSIONS, Role, Scope, Subject, User,
    UserCert, builtin_roles, expand_permissions, glob_match, is_scoped_permission, valid_principal,
};
pub use command::{Command, Outcome, Rejection, SUPERSEDED_BY_LABEL};
pub use id::{ID_LEN, is_id, new_id};
pub use labels::Labels;
pub use name::{MAX_NAME_LEN, NameError, validate_name};
pub use object::{
    CaConfig, CaRotation, Cluster, ClusterKeys, ClusterSpec, DispatcherConfig, Driver,
    EncryptionConfig, JoinTokens, Meta, Network, Node, NodeAvailability, NodeCert, NodeRole,
    NodeSpec, OrchestrationConfig, PkiState, RaftConfig, Secret, SecretSpec, Timestamp,
};
pub use service::{
    RestartCondition, RestartPolicy, SecretFileTarget, SecretRef, Service, ServiceMode,
    ServiceSpec, Task, TaskChange, TaskSpec, TaskState, TaskStatus, UpdateConfig, UpdateStatus,
};

/// The largest secret payload accepted, exclusive: Docker's `MaxSecretSize` (500 KiB).
pub const MAX_SECRET_SIZE: usize = 500 * 1024;
