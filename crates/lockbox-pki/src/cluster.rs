//! TLS between cluster nodes: the manager's listener for Raft, the dispatcher and joins, the
//! node-to-node client, and the first connection of a joining node, which trusts nothing but
//! the CA digest its join token carries.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::pem::{one_cert, private_key};
use crate::tls::{provider, roots};
use crate::{Issued, PkiError, Result, certs_of};

/// The name every manager's certificate carries and nodes dial managers by (swarmkit's
/// `swarm-manager`), whatever address they connect to.
pub const MANAGER_NAME: &str = "lockbox-manager";

/// The ALPN protocol of node-to-node connections.
pub const CLUSTER_ALPN: &[u8] = b"h2";

/// `node`'s certificate followed by the intermediates in `chain_pem` (a cross-signed CA
/// certificate while a root rotation is under way; usually none).
fn node_chain(node: &Issued, chain_pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let mut chain = vec![one_cert("certificate", &node.cert_pem)?];
    chain.extend(certs_of("intermediate certificate", chain_pem)?);
    Ok(chain)
}

/// The manager's cluster listener: presents `node`, the intermediates of `chain_pem` and
/// then the trusted CA certificates (so a joining node can check the CA against its token's
/// digest); asks for a client certificate and, when one is sent, requires it to chain to a
/// CA of `trust_pem`. Connections without one are accepted: they may only join (the caller
/// checks [`peer_identity`](crate::peer_identity) per request). TLS 1.3 only, ring
/// provider, ALPN h2.
pub fn cluster_server_config(
    trust_pem: &str,
    node: &Issued,
    chain_pem: &str,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(trust_pem)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(PkiError::Verifier)?;
    let mut chain = node_chain(node, chain_pem)?;
    chain.extend(certs_of("CA certificate", trust_pem)?);
    let key = private_key("private key", &node.key_pem)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::Tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(PkiError::Tls)?;
    config.alpn_protocols = vec![CLUSTER_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A node dialing a manager: trusts only the CAs of `trust_pem`, requires the manager role
/// name ([`MANAGER_NAME`]) in the server certificate, presents `node` and the intermediates
/// of `chain_pem`. TLS 1.3, ALPN h2.
pub fn cluster_client_config(
    trust_pem: &str,
    node: &Issued,
    chain_pem: &str,
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(trust_pem)?, provider.clone())
        .build()
        .map_err(PkiError::Verifier)?;
    let chain = node_chain(node, chain_pem)?;
    let key = private_key("private key", &node.key_pem)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::Tls)?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(PkiError::Tls)?;
    config.alpn_protocols = vec![CLUSTER_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Decides whether a certificate (DER) is the CA a join token names.
pub type CaPin = Arc<dyn Fn(&[u8]) -> bool + Send + Sync>;

/// A joining node's first connection: no client certificate; the server's chain must contain
/// a certificate that `pin` accepts (the CA whose digest the join token carries), and the
/// server certificate must chain to it and name [`MANAGER_NAME`]. A manager of another
/// cluster, or anyone in the middle, fails the handshake.
pub fn pinned_client_config(pin: CaPin) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let verifier = Arc::new(PinnedCa {
        pin,
        provider: provider.clone(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(PkiError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![CLUSTER_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The server name to dial managers with.
pub fn manager_server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls_pki_types::DnsName::try_from(MANAGER_NAME)
            .map(|n| n.to_owned())
            .unwrap_or_else(|_| unreachable!("a valid DNS name")),
    )
}

struct PinnedCa {
    pin: CaPin,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl fmt::Debug for PinnedCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCa").finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| (self.pin)(c.as_ref())) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned()).map_err(|_| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding)
        })?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        // The other certificates sent may bridge to the pinned CA (a certificate of a
        // successor CA, with the successor cross-signed by the pinned one).
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
