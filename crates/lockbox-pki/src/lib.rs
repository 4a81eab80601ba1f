//! The lockbox cluster's certificate authority, client bundles and TLS
//! configurations.
//!
//! # Overview
//!
//! * [`Ca`] is the cluster CA: an ECDSA P-256 self-signed certificate
//!   (`O=<cluster>, CN=lockbox-ca`, 20 years) and its private key. It issues
//!   [`Issued`] certificates:
//!   * [`Ca::issue_server`] for the daemon's TLS listener (serverAuth and
//!     clientAuth, DNS/IP subject alternative names);
//!   * [`Ca::issue_client`] for lockbox users (`OU=lockbox-user`,
//!     clientAuth);
//!   * [`Ca::issue_node`] for cluster nodes (`OU=lockbox-manager` or
//!     `OU=lockbox-worker`), swarmkit style.
//! * [`identity_of`] reads a certificate's [`PeerIdentity`] (common name,
//!   organizational unit, serial, expiry); [`Role`] interprets the unit.
//! * [`server_config`] builds the rustls server configuration of the
//!   daemon's listener: client certificates are required, verified against
//!   the CA and checked against the shared [`Revocations`] at every
//!   handshake. [`acceptor`] wraps it for tokio and [`peer_identity`] reads
//!   who connected. [`client_config`] and [`connector`] are the other side.
//! * [`write_bundle`] and [`read_bundle`] store `ca.pem`, `cert.pem` and
//!   `key.pem` the way the docker CLI reads them with `--tlsverify`.
//!
//! TLS uses the ring provider, named explicitly; this crate neither needs
//! nor installs a process-wide default provider.
//!
//! This crate only handles PEM in memory (apart from bundles): persisting
//! the CA key, sealed, is the daemon's job.
//!
//! # Secrets
//!
//! Private keys are held in [`zeroize::Zeroizing`] strings or in key pairs
//! that are zeroized on drop, and no `Debug` implementation prints them.
//! What this crate cannot reach is not wiped: ring's parsed key schedules,
//! and the transient DER copies that rustls and rcgen make while loading
//! or encoding a key.
//!
//! # Serial numbers
//!
//! Serials are written as lower-case hex of the integer's bytes, without
//! separators or leading zero bytes. Certificates issued here get a random
//! positive 16-byte serial, so their serials are 32 hex digits.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use lockbox_pki::{Ca, Role, identity_of};
//!
//! let ca = Ca::generate("prod")?;
//! let ca = Ca::from_pem(ca.cert_pem(), &ca.key_pem())?; // as after a restart
//!
//! let alice = ca.issue_client("alice", Duration::from_secs(90 * 86_400))?;
//! let who = identity_of(&alice.cert_der()?)?;
//! assert_eq!(who.common_name, "alice");
//! assert_eq!(who.role(), Some(Role::User));
//! assert_eq!(who.serial, alice.serial);
//! assert_eq!(ca.digest().len(), 64);
//! # Ok::<(), lockbox_pki::PkiError>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bundle;
mod ca;
mod chain;
mod cluster;
mod error;
mod identity;
mod pem;
mod revocation;
mod tls;

pub use bundle::{Bundle, CA_FILE, CERT_FILE, KEY_FILE, read_bundle, write_bundle};
pub use ca::{BACKDATE, CA_COMMON_NAME, CA_VALIDITY, Ca, Issued, Validity};
pub use chain::{cert_digest, certs_of, issued_by, issuer_info};
pub use cluster::{
    CLUSTER_ALPN, CaPin, MANAGER_NAME, cluster_client_config, cluster_server_config,
    manager_server_name, pinned_client_config,
};
pub use error::{PkiError, Result};
pub use identity::{NodeRole, OU_MANAGER, OU_USER, OU_WORKER, PeerIdentity, Role, identity_of};
pub use revocation::Revocations;
pub use tls::{
    CLIENT_ALPN, SERVER_ALPN, ServerSlot, acceptor, client_config, connector, peer_identity,
    server_config, server_config_with_chain, server_identity,
};

/// rustls, as used by this crate (ring provider), for callers that need its
/// types (`ServerConfig`, `pki_types::ServerName`, …).
pub use rustls;
/// tokio-rustls, as used by this crate: `TlsAcceptor`, `TlsConnector` and
/// the `server::TlsStream` / `client::TlsStream` connection types.
pub use tokio_rustls;
