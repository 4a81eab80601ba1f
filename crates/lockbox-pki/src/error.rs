//! The error type of this crate.

use std::io;
use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// Errors from certificate generation, parsing, TLS configuration and
/// bundle files.
///
/// Messages never contain private key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A name to be put into a certificate (cluster name, user name, node
    /// id, host name) is not acceptable.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// What the name is (for example `"user name"`).
        what: &'static str,
        /// The rejected name.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The requested validity period is empty or cannot be represented.
    #[error("invalid validity period: {0}")]
    InvalidValidity(&'static str),
    /// A PEM input does not hold what it should (no block, a block of the
    /// wrong kind, or more than one where one is expected).
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (for example `"CA certificate"`).
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A certificate could not be parsed or lacks something this crate
    /// needs.
    #[error("{what}: {reason}")]
    Certificate {
        /// Which certificate (for example `"CA certificate"`).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The private key is not the key of the certificate it came with.
    #[error("the private key does not belong to the {0}")]
    KeyMismatch(&'static str),
    /// A certificate given as a certificate authority is not one (no basic
    /// constraints with `CA:TRUE`).
    #[error("the certificate is not a certificate authority")]
    NotCa,
    /// The private key could not be loaded (unsupported algorithm or
    /// malformed PKCS#8).
    #[error("{0}: unsupported or malformed private key")]
    Key(&'static str, #[source] rcgen::Error),
    /// rcgen refused to build or sign a certificate.
    #[error("certificate generation failed")]
    Generate(#[source] rcgen::Error),
    /// The operating system's random number generator failed.
    #[error("random number generator failed")]
    Random(#[source] getrandom::Error),
    /// rustls rejected the configuration (for example an unusable key).
    #[error("invalid TLS configuration")]
    Tls(#[source] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("invalid client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    /// A bundle file exists and overwriting was not asked for.
    #[error("{} already exists (use force to overwrite)", path.display())]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// An I/O error on a bundle file or directory.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (for example `"create"`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl PkiError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        PkiError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn cert(what: &'static str, reason: impl Into<String>) -> Self {
        PkiError::Certificate {
            what,
            reason: reason.into(),
        }
    }
}
