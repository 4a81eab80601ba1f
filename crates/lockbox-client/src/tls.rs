//! TLS to the daemon's `--tlsverify` listener: the client bundle files (`ca.pem`, `cert.pem`,
//! `key.pem`, as the docker CLI reads them), rustls with the ring provider through
//! `lockbox-pki`, and readable messages for TLS failures.

use std::error::Error as StdError;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lockbox_pki::rustls::pki_types::ServerName;
use lockbox_pki::rustls::{self, AlertDescription, CertificateError, ClientConfig};
use zeroize::Zeroizing;

use crate::ClientError;

/// Bundle files larger than this are refused (as `lockbox_pki::read_bundle` does).
const MAX_FILE: u64 = 1 << 20;

/// Where the CA certificate, the client certificate and its private key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA certificate the daemon's certificate must chain to (`ca.pem`).
    pub ca: PathBuf,
    /// The client certificate presented to the daemon (`cert.pem`).
    pub cert: PathBuf,
    /// Its private key (`key.pem`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The three files of a bundle directory: `DIR/ca.pem`, `DIR/cert.pem`, `DIR/key.pem`.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join(lockbox_pki::CA_FILE),
            cert: dir.join(lockbox_pki::CERT_FILE),
            key: dir.join(lockbox_pki::KEY_FILE),
        }
    }

    /// Reads the files and builds the client configuration: the daemon is verified against
    /// the CA, the certificate is presented, TLS 1.3/1.2 with the ring provider, ALPN
    /// `http/1.1`. The private key is only held in zeroizing buffers; errors name the file
    /// at fault and never contain key material.
    pub fn load(&self) -> Result<Tls, ClientError> {
        let ca = Zeroizing::new(read_small(&self.ca, "CA certificate")?);
        let cert = Zeroizing::new(read_small(&self.cert, "client certificate")?);
        let key = Zeroizing::new(read_small(&self.key, "client key")?);
        // Borrowed, not copied: the only copies of the key are wiped.
        let ca = pem_text(&ca, "CA certificate", &self.ca)?;
        let cert = pem_text(&cert, "client certificate", &self.cert)?;
        let key = pem_text(&key, "client key", &self.key)?;
        let issued = lockbox_pki::Issued::from_pem(cert, key).map_err(|e| {
            ClientError::TlsConfig(format!(
                "cannot use the client certificate {} with the key {}: {}",
                self.cert.display(),
                self.key.display(),
                chain(&e)
            ))
        })?;
        let config = lockbox_pki::client_config(ca, &issued).map_err(|e| {
            ClientError::TlsConfig(format!(
                "cannot use the CA certificate {}: {}",
                self.ca.display(),
                chain(&e)
            ))
        })?;
        Ok(Tls { config })
    }
}

fn pem_text<'a>(data: &'a [u8], what: &'static str, path: &Path) -> Result<&'a str, ClientError> {
    std::str::from_utf8(data).map_err(|_| ClientError::TlsFile {
        what,
        path: path.to_owned(),
        reason: "not a PEM file (not UTF-8 text)".into(),
    })
}

/// Reads a bundle file of at most 1 MiB into a buffer that is wiped when dropped (the
/// capacity is reserved first, so no unwiped copy is left behind by growing it).
fn read_small(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientError> {
    let err = |e: io::Error| ClientError::TlsFile {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let file = File::open(path).map_err(err)?;
    let len = file.metadata().map_err(err)?.len();
    if len > MAX_FILE {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is larger than 1 MiB",
        )));
    }
    let mut data = Zeroizing::new(Vec::with_capacity(len as usize + 1));
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(err)?;
    if data.len() as u64 > MAX_FILE {
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            "file is larger than 1 MiB",
        )));
    }
    Ok(std::mem::take(&mut *data))
}

/// A TLS client configuration for the daemon (see [`TlsFiles::load`]).
#[derive(Clone)]
pub struct Tls {
    config: Arc<ClientConfig>,
}

impl Tls {
    /// Wraps a configuration built elsewhere (for example with `lockbox_pki::client_config`).
    pub fn from_config(config: Arc<ClientConfig>) -> Tls {
        Tls { config }
    }

    pub(crate) fn connector(&self) -> lockbox_pki::tokio_rustls::TlsConnector {
        lockbox_pki::connector(self.config.clone())
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The configuration holds the private key: show nothing of it.
        f.write_str("Tls { .. }")
    }
}

/// The name the daemon's certificate must carry for `host:port` (an IP address or a DNS
/// name; `[v6]:port` too).
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, ClientError> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned())
        .map_err(|_| ClientError::Address(format!("tcp://{addr} (not a host name for TLS)")))
}

/// The error chain of `e`, joined with `: ` (as anyhow's `{:#}`).
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// The first rustls error in the chain of `e`, if any.
pub(crate) fn find_tls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        // tokio-rustls reports rustls errors as `io::Error`s that wrap them.
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(t) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// A TLS failure in the words of Go's `crypto/tls` (what the docker CLI prints) where they
/// are clearer than rustls' own: alerts from the daemon as `remote error: tls: …`, and why
/// the daemon's certificate was not accepted.
pub(crate) fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::AlertReceived(alert) => {
            format!("remote error: tls: {}", alert_text(*alert))
        }
        rustls::Error::InvalidCertificate(c) => {
            let why = match c {
                CertificateError::UnknownIssuer => "certificate signed by unknown authority".into(),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    format!("certificate has expired ({c})")
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    format!(
                        "{c} (connect with a name or address it names, or issue the daemon's certificate with --tls-san)"
                    )
                }
                other => other.to_string(),
            };
            format!("tls: failed to verify the daemon's certificate: {why}")
        }
        rustls::Error::InvalidMessage(_) => format!(
            "tls: the daemon did not answer with TLS ({e}); is it serving plain HTTP on this address?"
        ),
        other => format!("tls: {other}"),
    }
}

/// Go's names of TLS alerts (`crypto/tls`), which docker users see in its errors.
fn alert_text(a: AlertDescription) -> String {
    let s = match a {
        AlertDescription::CloseNotify => "close notify",
        AlertDescription::UnexpectedMessage => "unexpected message",
        AlertDescription::BadRecordMac => "bad record MAC",
        AlertDescription::DecryptionFailed => "decryption failed",
        AlertDescription::RecordOverflow => "record overflow",
        AlertDescription::DecompressionFailure => "decompression failure",
        AlertDescription::HandshakeFailure => "handshake failure",
        AlertDescription::BadCertificate => "bad certificate",
        AlertDescription::UnsupportedCertificate => "unsupported certificate",
        AlertDescription::CertificateRevoked => "revoked certificate",
        AlertDescription::CertificateExpired => "expired certificate",
        AlertDescription::CertificateUnknown => "unknown certificate",
        AlertDescription::IllegalParameter => "illegal parameter",
        AlertDescription::UnknownCA => "unknown certificate authority",
        AlertDescription::AccessDenied => "access denied",
        AlertDescription::DecodeError => "error decoding message",
        AlertDescription::DecryptError => "error decrypting message",
        AlertDescription::ProtocolVersion => "protocol version not supported",
        AlertDescription::InsufficientSecurity => "insufficient security level",
        AlertDescription::InternalError => "internal error",
        AlertDescription::InappropriateFallback => "inappropriate fallback",
        AlertDescription::UserCanceled => "user canceled",
        AlertDescription::NoRenegotiation => "no renegotiation",
        AlertDescription::MissingExtension => "missing extension",
        AlertDescription::UnsupportedExtension => "unsupported extension",
        AlertDescription::UnrecognisedName => "unrecognized name",
        AlertDescription::BadCertificateStatusResponse => "bad certificate status response",
        AlertDescription::UnknownPSKIdentity => "unknown PSK identity",
        AlertDescription::CertificateRequired => "certificate required",
        AlertDescription::NoApplicationProtocol => "no application protocol",
        other => return format!("alert({})", u8::from(other)),
    };
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("127.0.0.1:2376"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("[::1]:2376"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("manager-1.example:2376"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(server_name("bad name:1").is_err());
    }

    #[test]
    fn alerts_read_like_go() {
        assert_eq!(
            describe(&rustls::Error::AlertReceived(
                AlertDescription::CertificateRevoked
            )),
            "remote error: tls: revoked certificate"
        );
        assert_eq!(
            describe(&rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            )),
            "tls: failed to verify the daemon's certificate: certificate signed by unknown authority"
        );
    }

    #[test]
    fn finds_rustls_errors_inside_io_errors() {
        let io = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::BadCertificate),
        );
        let found = find_tls_error(&io).map(describe);
        assert_eq!(found.as_deref(), Some("remote error: tls: bad certificate"));
    }

    #[test]
    fn missing_files_are_named() {
        let dir = std::env::temp_dir().join("lockbox-client-no-such-bundle");
        let err = TlsFiles::in_dir(&dir).load().unwrap_err().to_string();
        assert!(err.contains("CA certificate"), "{err}");
        assert!(
            err.contains(&dir.join("ca.pem").display().to_string()),
            "{err}"
        );
    }
}
