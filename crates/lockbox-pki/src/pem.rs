//! PEM decoding helpers and the zeroizing key-pair wrapper.

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroize;

use crate::{PkiError, Result};

/// Decodes exactly one `CERTIFICATE` block from `pem`.
pub(crate) fn one_cert(what: &'static str, pem: &str) -> Result<CertificateDer<'static>> {
    let mut certs = CertificateDer::pem_slice_iter(pem.as_bytes());
    let first = match certs.next() {
        Some(Ok(cert)) => cert,
        Some(Err(_)) => {
            return Err(PkiError::Pem {
                what,
                reason: "malformed PEM",
            });
        }
        None => {
            return Err(PkiError::Pem {
                what,
                reason: "no CERTIFICATE block",
            });
        }
    };
    if certs.next().is_some() {
        return Err(PkiError::Pem {
            what,
            reason: "expected exactly one CERTIFICATE block",
        });
    }
    Ok(first)
}

/// Decodes the private key in `pem` (the first key block; other block
/// kinds are skipped). The caller must zeroize the result.
pub(crate) fn private_key(what: &'static str, pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::Pem {
        what,
        reason: "no readable PRIVATE KEY block",
    })
}

/// An rcgen key pair whose serialized private key is zeroized on drop.
///
/// rcgen keeps a copy of the PKCS#8 document next to ring's parsed key;
/// that copy is wiped here. ring's own key schedule is outside our reach.
pub(crate) struct SecretKeyPair(pub(crate) KeyPair);

impl SecretKeyPair {
    /// A new random ECDSA P-256 key pair.
    pub(crate) fn generate() -> Result<Self> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(SecretKeyPair)
            .map_err(PkiError::Generate)
    }

    /// Loads a PKCS#8 private key from PEM.
    pub(crate) fn from_pem(what: &'static str, pem: &str) -> Result<Self> {
        let mut der = private_key(what, pem)?;
        let key = KeyPair::try_from(&der).map_err(|e| PkiError::Key(what, e));
        der.zeroize();
        key.map(SecretKeyPair)
    }
}

impl Drop for SecretKeyPair {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for SecretKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKeyPair([redacted])")
    }
}

/// Encodes `der` as one PEM block with 64-character lines.
pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    // Base64 output is ASCII, so every 64-byte chunk is valid UTF-8.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}
