//! lockbox's node-to-node transport.
//!
//! Managers listen on their cluster address (`--listen-addr`, swarm's 2377) with mutual TLS
//! from the cluster CA ([`lockbox_pki::cluster_server_config`]); nodes dial each other with
//! their node certificates over HTTP/2, one connection per peer. Served here:
//!
//! - `POST /raft/{append,vote,snapshot,propose}`: the store's messages ([`lockbox_store::Rpc`]),
//!   only from current managers;
//! - `POST /cluster/join`: a new node presents a join token (no certificate yet: its
//!   connection pins the CA by the token's digest) and gets its node ID and certificate;
//! - `POST /cluster/members`: a joined manager asks to be added to the Raft group;
//! - `POST /cluster/views`: how the leader sees every node (for `node ls` on a follower);
//! - `POST /cluster/membership`: a manager's membership request (demote, remove, leave,
//!   status, the unlock key), served by the leader;
//! - `POST /dispatcher/session`: a worker's heartbeat, task statuses and assignments (and,
//!   once it is promoted, its manager certificate).
//!
//! What each request means is the [`Service`]'s business (lockbox-core implements it); this
//! crate only carries, authenticates and routes.

#![forbid(unsafe_code)]

mod client;
mod messages;
mod server;

pub use client::{Dialer, TlsTransport, join_pinned};
pub use messages::{
    AddManager, ClusterError, JoinRequest, JoinResponse, Promotion, RenewedCert, SessionRequest,
    SessionResponse, decode, encode,
};
pub use server::{Peer, Service, serve};
