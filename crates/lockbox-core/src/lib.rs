//! The manager core of a lockbox node: its lifecycle (inactive, locked, active), its keys
//! (data keys, key file or autolock), and the operations on replicated objects.
//!
//! It knows nothing of HTTP or of Docker's wire shapes: `lockbox-api` maps [`CoreError`]s to
//! Docker's status codes and texts, and core objects to Docker's JSON.

#![forbid(unsafe_code)]

mod access;
mod agent;
mod audit;
mod backup;
mod cluster;
mod error;
mod events;
mod executor;
mod files;
mod live;
mod lockfile;
mod manager;
mod membership;
mod networks;
mod orchestrator;
mod pki;
mod run;
mod secrets;
mod services;
mod tokens;
mod worker;

pub use access::{
    CertPeer, Identity, IdentityKind, Permissions, RoleInfo, ServerTlsMaterial, UnixPeer, UserInfo,
};
pub use agent::{LogLine, Logs};
pub use audit::{AuditEntry, AuditFilter, AuditObject, AuditReport};
pub use backup::{
    BackupFile, BackupSummary, OpenedBackup, RestoreOptions, RestoreReport, WRONG_PASSPHRASE,
    check_restore_target, open_backup, restore,
};
pub use cluster::{DEFAULT_CLUSTER_PORT, NodeView, with_default_port};
pub use error::CoreError;
pub use events::Event;
pub use executor::{Executor, Exit, Launch, NetworkAttachment, Output, SecretMount, TaskHandle};
pub use live::{LIVE_SIGNAL_LABEL, LIVE_TARGETS_LABEL, SwapReport, allows_live_update};
pub use manager::{
    InitOptions, JoinOptions, LocalState, Manager, ManagerConfig, RotateReport, SwarmUpdate,
};
pub use orchestrator::same_template;
pub use pki::{PkiStatus, TlsInfo};
pub use run::{RunEvent, RunExit, RunRequest, RunSession};
pub use secrets::{SecretFilter, SecretInfo, SecretInput, SecretView};
pub use services::ServiceInfo;
