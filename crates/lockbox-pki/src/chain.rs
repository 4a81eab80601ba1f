//! Facts about certificates that a root rotation needs: which CA issued a certificate, the
//! issuer fields Docker shows (`TLSInfo`), and certificate digests.

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use x509_parser::extensions::ParsedExtension;

use crate::identity::parse;
use crate::pem::one_cert;
use crate::{PkiError, Result};

/// Every `CERTIFICATE` block of `pem`, in order. Fails on malformed PEM; an empty input is
/// an empty list.
pub fn certs_of(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| {
            c.map_err(|_| PkiError::Pem {
                what,
                reason: "malformed PEM",
            })
        })
        .collect()
}

/// The lower-case hex SHA-256 of the DER of the first certificate in `pem` (the digest
/// [`Ca::digest`](crate::Ca::digest) gives for a CA).
pub fn cert_digest(pem: &str) -> Result<String> {
    let der = certs_of("certificate", pem)?
        .into_iter()
        .next()
        .ok_or(PkiError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block",
        })?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// The issuer fields of Docker's `TLSInfo` for certificates issued by the CA `ca_pem`: the
/// CA's raw subject and raw SubjectPublicKeyInfo (DER), as swarmkit reports them.
pub fn issuer_info(ca_pem: &str) -> Result<(Vec<u8>, Vec<u8>)> {
    let der = one_cert("CA certificate", ca_pem)?;
    let cert = parse("CA certificate", der.as_ref())?;
    Ok((
        cert.subject().as_raw().to_vec(),
        cert.public_key().raw.to_vec(),
    ))
}

/// Whether the certificate `leaf_pem` was issued by the CA `ca_pem`: its issuer is the CA's
/// subject and, when both carry key identifiers, its authority key identifier is the CA's
/// subject key identifier. Anything unparsable is "no".
pub fn issued_by(leaf_pem: &str, ca_pem: &str) -> bool {
    let (Ok(leaf), Ok(ca)) = (
        one_cert("certificate", leaf_pem),
        one_cert("CA certificate", ca_pem),
    ) else {
        return false;
    };
    let (Ok(leaf), Ok(ca)) = (
        parse("certificate", leaf.as_ref()),
        parse("CA certificate", ca.as_ref()),
    ) else {
        return false;
    };
    if leaf.issuer().as_raw() != ca.subject().as_raw() {
        return false;
    }
    let aki = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
    let ski = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0),
            _ => None,
        });
    match (aki, ski) {
        (Some(a), Some(s)) => a == s,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Ca, NodeRole};
    use std::time::Duration;

    #[test]
    fn a_successor_is_told_apart_and_its_cross_signed_certificate_names_it() {
        let old = Ca::generate("c1").unwrap();
        let new = old.successor().unwrap();
        assert_ne!(old.digest(), new.digest());
        let leaf = new
            .issue_node("n1", NodeRole::Worker, &[], &[], Duration::from_secs(3600))
            .unwrap();
        assert!(issued_by(&leaf.cert_pem, new.cert_pem()));
        assert!(!issued_by(&leaf.cert_pem, old.cert_pem()));
        let cross = old.cross_sign(&new).unwrap();
        // The cross-signed certificate has the successor's subject and key, the old issuer.
        let (subject, key) = issuer_info(new.cert_pem()).unwrap();
        let (cross_subject, cross_key) = issuer_info(&cross).unwrap();
        assert_eq!(subject, cross_subject);
        assert_eq!(key, cross_key);
        assert!(issued_by(&cross, old.cert_pem()));
        assert!(issued_by(&leaf.cert_pem, &cross));
        assert_eq!(cert_digest(new.cert_pem()).unwrap(), new.digest());
        assert_eq!(
            certs_of("x", &format!("{}{}", old.cert_pem(), cross))
                .unwrap()
                .len(),
            2
        );
    }
}
