//! lockbox's replicated, encrypted store.
//!
//! - [`State`] is the in-memory state and its deterministic `apply`.
//! - The Raft log, vote and snapshots live in one redb file (`store.redb`); every record is
//!   sealed with the node's data key ([`lockbox_crypto::Keyring`]) with associated data that binds
//!   it to its place (`log:<index>`, `meta:vote`, `snapshot`).
//! - openraft drives replication. Today a store is a one-node Raft group; more managers join the
//!   same group later without a change of format.
//!
//! This is the only crate that names openraft or redb types.

#![forbid(unsafe_code)]

mod error;
mod proposal;
mod raft;
mod state;
mod storage;

pub use error::StoreError;
pub use raft::{DB_FILE, Store, StoreConfig};
pub use state::State;
pub use storage::SnapshotBuf;
