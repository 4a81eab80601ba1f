//! lockbox's replicated, encrypted store.
//!
//! - [`State`] is the in-memory state and its deterministic `apply`.
//! - The Raft log lives in append-only segment files (`raft-log/`, see `wal.rs`); the vote, the
//!   committed and purged positions and the snapshots in one redb file (`store.redb`). Every
//!   record is sealed with the node's data key ([`lockbox_crypto::Keyring`]) with associated
//!   data that binds it to its place (`log:<index>`, `meta:vote`, `snapshot`).
//! - openraft drives replication: one node by default; more managers join the same group
//!   through a [`Transport`] (lockbox-cluster's mutual TLS), and a follower forwards writes to
//!   the leader.
//!
//! This is the only crate that names openraft or redb types.

#![forbid(unsafe_code)]

mod backup;
mod error;
mod network;
mod proposal;
mod raft;
mod state;
mod storage;
mod wal;

pub use backup::{StateImport, create_restored, export_state, import_state};
pub use error::StoreError;
pub use network::{Call, Rpc, Transport, TransportError};
pub use raft::{DB_FILE, Member, Store, StoreConfig, remove_store_files};
pub use state::State;
pub use storage::{SnapshotBuf, WAL_DIR};
