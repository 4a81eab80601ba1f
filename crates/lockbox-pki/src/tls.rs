//! rustls configurations for the daemon's mutual-TLS listener and for
//! clients, with the ring provider.

use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::identity::{identity_of, parse, serial_hex};
use crate::pem::{one_cert, private_key};
use crate::{Issued, PeerIdentity, PkiError, Result, Revocations};

/// The ALPN protocols the server offers, in order of preference. The stock
/// docker CLI speaks HTTP/1.1 over TLS.
pub const SERVER_ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The ALPN protocol [`client_config`] offers.
pub const CLIENT_ALPN: &[u8] = b"http/1.1";

/// The ring crypto provider, named explicitly so that no process-wide
/// default provider is needed (and none is installed).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of `ca_cert_pem` (one CA certificate, or several while a root
/// rotation is under way) as trust anchors.
pub(crate) fn roots(ca_cert_pem: &str) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    for ca in crate::certs_of("CA certificate", ca_cert_pem)? {
        roots.add(ca).map_err(PkiError::Tls)?;
    }
    if roots.is_empty() {
        return Err(PkiError::Pem {
            what: "CA certificate",
            reason: "no CERTIFICATE block",
        });
    }
    Ok(Arc::new(roots))
}

/// A server configuration that can be replaced while a listener serves (a renewed
/// certificate, a new CA): each new connection takes the current one.
#[derive(Debug)]
pub struct ServerSlot(std::sync::RwLock<Arc<ServerConfig>>);

impl ServerSlot {
    /// A slot holding `config`.
    pub fn new(config: Arc<ServerConfig>) -> Arc<ServerSlot> {
        Arc::new(ServerSlot(std::sync::RwLock::new(config)))
    }

    /// Replaces the configuration for connections accepted from now on.
    pub fn set(&self, config: Arc<ServerConfig>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }

    /// The current configuration.
    pub fn get(&self) -> Arc<ServerConfig> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The chain and key rustls needs, out of an [`Issued`].
fn cert_and_key(issued: &Issued) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let cert = one_cert("certificate", &issued.cert_pem)?;
    let key = private_key("private key", &issued.key_pem)?;
    Ok((vec![cert], key))
}

/// The server configuration for the daemon's TLS listener.
///
/// * TLS 1.3 and 1.2, ring provider.
/// * The server presents `server` (from [`Ca::issue_server`]).
/// * **Client certificates are required** and must chain to `ca_cert_pem`,
///   be within their validity period and carry the clientAuth extended key
///   usage (rustls' WebPKI verifier), and their serial must not be in
///   `revocations` at the time of the handshake.
/// * ALPN: `h2` and `http/1.1` ([`SERVER_ALPN`]).
/// * Session resumption is off (no tickets, no session cache), so every
///   connection runs the full handshake and with it the revocation check.
///
/// Any certificate of the CA is accepted (users, managers, workers);
/// authorization by [`Role`](crate::Role) is the caller's job, with
/// [`peer_identity`].
///
/// [`Ca::issue_server`]: crate::Ca::issue_server
pub fn server_config(
    ca_cert_pem: &str,
    server: &Issued,
    revocations: Revocations,
) -> Result<Arc<ServerConfig>> {
    server_config_with_chain(ca_cert_pem, server, "", revocations)
}

/// [`server_config`] presenting `server` followed by the intermediates of `chain_pem` (the
/// cross-signed CA certificate while a root rotation is under way, so that clients still
/// trusting only the old CA accept a certificate of the new one); `ca_cert_pem` may hold
/// several CA certificates, each trusted for client certificates.
pub fn server_config_with_chain(
    ca_cert_pem: &str,
    server: &Issued,
    chain_pem: &str,
    revocations: Revocations,
) -> Result<Arc<ServerConfig>> {
    let provider = provider();
    let inner = WebPkiClientVerifier::builder_with_provider(roots(ca_cert_pem)?, provider.clone())
        .build()
        .map_err(PkiError::Verifier)?;
    let verifier = Arc::new(RevocationCheckingVerifier { inner, revocations });
    // rustls takes the key DER by value and does not wipe it after parsing;
    // pki-types' key types do not zeroize on drop either.
    let (mut chain, key) = cert_and_key(server)?;
    chain.extend(crate::certs_of("intermediate certificate", chain_pem)?);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(PkiError::Tls)
        .and_then(|b| {
            b.with_client_cert_verifier(verifier)
                .with_single_cert(chain, key)
                .map_err(PkiError::Tls)
        })?;
    config.alpn_protocols = SERVER_ALPN.iter().map(|p| p.to_vec()).collect();
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// The client configuration for lockbox's own CLI and node-to-node
/// connections: trusts only `ca_cert_pem` (the server certificate must
/// chain to it, carry serverAuth and name the dialed host or address),
/// presents `client` as the client certificate, TLS 1.3 and 1.2, ring
/// provider, ALPN `http/1.1` ([`CLIENT_ALPN`]).
///
/// For HTTP/2, clone the config and set `alpn_protocols`.
pub fn client_config(ca_cert_pem: &str, client: &Issued) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    // Build the server verifier explicitly so it uses the same provider.
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots(ca_cert_pem)?, provider.clone())
            .build()
            .map_err(PkiError::Verifier)?;
    let (chain, key) = cert_and_key(client)?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(PkiError::Tls)
        .and_then(|b| {
            b.with_webpki_verifier(server_verifier)
                .with_client_auth_cert(chain, key)
                .map_err(PkiError::Tls)
        })?;
    config.alpn_protocols = vec![CLIENT_ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// A [`TlsAcceptor`] for `config` (from [`server_config`]).
///
/// Run `acceptor.accept(tcp)` in the task spawned for the connection, not
/// in the accept loop, so that a slow handshake does not hold up others.
pub fn acceptor(config: Arc<ServerConfig>) -> TlsAcceptor {
    TlsAcceptor::from(config)
}

/// A [`TlsConnector`] for `config` (from [`client_config`]).
pub fn connector(config: Arc<ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}

/// The identity in the client certificate of an accepted connection.
///
/// With a [`server_config`] every accepted connection has a client
/// certificate that was verified during the handshake; `None` means the
/// connection has none (another configuration) or its subject is
/// unreadable or ambiguous (see [`identity_of`]).
pub fn peer_identity<IO>(conn: &tokio_rustls::server::TlsStream<IO>) -> Option<PeerIdentity> {
    let (_, session) = conn.get_ref();
    let end_entity = session.peer_certificates()?.first()?;
    identity_of(end_entity).ok()
}

/// The identity in the server certificate of a client connection (which
/// [`client_config`] verified during the handshake).
pub fn server_identity<IO>(conn: &tokio_rustls::client::TlsStream<IO>) -> Option<PeerIdentity> {
    let (_, session) = conn.get_ref();
    let end_entity = session.peer_certificates()?.first()?;
    identity_of(end_entity).ok()
}

/// rustls' WebPKI client verifier plus a revocation check by serial.
struct RevocationCheckingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Revocations,
}

impl fmt::Debug for RevocationCheckingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevocationCheckingVerifier")
            .field("inner", &self.inner)
            .field("revocations", &self.revocations)
            .finish()
    }
}

impl ClientCertVerifier for RevocationCheckingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = parse("client certificate", end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.revocations.is_revoked(&serial_hex(cert.raw_serial())) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
