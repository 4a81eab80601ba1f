//! End-to-end mutual TLS over 127.0.0.1 with the crate's configurations.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use lockbox_pki::rustls::pki_types::ServerName;
use lockbox_pki::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use lockbox_pki::{
    Ca, Issued, NodeRole, PeerIdentity, Revocations, Role, Validity, acceptor, client_config,
    connector, peer_identity, server_config, server_identity,
};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const DAY: Duration = Duration::from_secs(86_400);
const GREETING: &[u8] = b"hello from lockbox\n";

/// What the server saw of one connection: the client's identity and the
/// negotiated ALPN protocol, or the handshake error.
type Seen = Result<(Option<PeerIdentity>, Option<Vec<u8>>), String>;

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    async fn start(config: Arc<ServerConfig>) -> Server {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = acceptor(config);
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match acceptor.accept(tcp).await {
                        Ok(mut tls) => {
                            let identity = peer_identity(&tls);
                            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                            let _ = tls.write_all(GREETING).await;
                            let _ = tls.shutdown().await;
                            let _ = tx.send(Ok((identity, alpn)));
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                    }
                });
            }
        });
        Server { addr, seen }
    }

    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the server saw the connection in time")
            .expect("server task alive")
    }

    /// Connects with `config` to `name` and reads what the server sends.
    /// Returns the client's view (greeting or error) and the server's.
    async fn connect(
        &mut self,
        config: Arc<ClientConfig>,
        name: &str,
    ) -> (Result<(), String>, Seen) {
        let client = connect(self.addr, config, name).await;
        (client, self.next().await)
    }
}

async fn connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> Result<(), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let mut tls = connector(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("client refused or was refused during handshake: {e}"))?;
    if let Some(server) = server_identity(&tls) {
        assert_eq!(server.role(), Some(Role::Manager));
    }
    let mut got = Vec::new();
    tls.read_to_end(&mut got)
        .await
        .map_err(|e| format!("read failed: {e}"))?;
    if got == GREETING {
        Ok(())
    } else {
        Err(format!("unexpected data {got:?}"))
    }
}

struct Cluster {
    ca: Ca,
    revocations: Revocations,
    server: Server,
}

fn localhost_names() -> (Vec<String>, Vec<IpAddr>) {
    (
        vec!["localhost".to_owned()],
        vec![
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ],
    )
}

async fn cluster() -> Cluster {
    let ca = Ca::generate("test-cluster").unwrap();
    // The listener runs with a CA restored from PEM, as after a restart.
    let restored = Ca::from_pem(ca.cert_pem(), &ca.key_pem()).unwrap();
    let (names, ips) = localhost_names();
    let server_cert = restored
        .issue_server("managernode0000000000000", &names, &ips, 30 * DAY)
        .unwrap();
    let revocations = Revocations::new();
    let config = server_config(ca.cert_pem(), &server_cert, revocations.clone()).unwrap();
    Cluster {
        server: Server::start(config).await,
        ca,
        revocations,
    }
}

fn client(ca: &Ca, issued: &Issued) -> Arc<ClientConfig> {
    client_config(ca.cert_pem(), issued).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca: &Ca) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    roots
}

/// A TLS 1.2-only client presenting `issued`.
fn client_tls12(ca: &Ca, issued: &Issued) -> Arc<ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let chain = vec![issued.cert_der().unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_client_auth_cert(chain, key)
        .unwrap();
    Arc::new(config)
}

fn assert_accepted(result: (Result<(), String>, Seen), user: &str, role: Role) {
    let (client, server) = result;
    client.unwrap();
    let (identity, alpn) = server.unwrap();
    let identity = identity.expect("server sees the client identity");
    assert_eq!(identity.common_name, user);
    assert_eq!(identity.role(), Some(role));
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
}

fn assert_refused(result: (Result<(), String>, Seen), server_error: &str) {
    let (client, server) = result;
    assert!(client.is_err(), "client got the greeting");
    let err = server.expect_err("server accepted the handshake");
    eprintln!("refused as expected: client {client:?}, server {err:?}");
    assert!(
        err.contains(server_error),
        "server error {err:?} lacks {server_error:?}"
    );
}

#[tokio::test]
async fn client_of_this_ca_is_accepted_and_identified() {
    let mut c = cluster().await;
    let alice = c.ca.issue_client("alice", DAY).unwrap();
    let result = c.server.connect(client(&c.ca, &alice), "127.0.0.1").await;
    let (_, ref seen) = result;
    let serial = seen.as_ref().unwrap().0.as_ref().unwrap().serial.clone();
    assert_eq!(serial, alice.serial);
    assert_accepted(result, "alice", Role::User);

    // Over TLS 1.2 as well, and by host name and IPv6 SAN.
    let r = c
        .server
        .connect(client_tls12(&c.ca, &alice), "127.0.0.1")
        .await;
    let (client_side, server_side) = r;
    client_side.unwrap();
    assert_eq!(server_side.unwrap().0.unwrap().common_name, "alice");
    assert_accepted(
        c.server.connect(client(&c.ca, &alice), "localhost").await,
        "alice",
        Role::User,
    );
    assert_accepted(
        c.server.connect(client(&c.ca, &alice), "::1").await,
        "alice",
        Role::User,
    );
}

#[tokio::test]
async fn node_certificates_are_accepted_as_clients() {
    let mut c = cluster().await;
    let worker =
        c.ca.issue_node("workernode000000000000000", NodeRole::Worker, &[], &[], DAY)
            .unwrap();
    assert_accepted(
        c.server.connect(client(&c.ca, &worker), "127.0.0.1").await,
        "workernode000000000000000",
        Role::Worker,
    );
    let manager =
        c.ca.issue_node(
            "othermanager0000000000000",
            NodeRole::Manager,
            &[],
            &[],
            DAY,
        )
        .unwrap();
    assert_accepted(
        c.server.connect(client(&c.ca, &manager), "127.0.0.1").await,
        "othermanager0000000000000",
        Role::Manager,
    );
}

#[tokio::test]
async fn client_of_another_ca_is_refused() {
    let mut c = cluster().await;
    // Same cluster name, so the same subject: only the key differs.
    let other = Ca::generate("test-cluster").unwrap();
    let mallory = other.issue_client("alice", DAY).unwrap();
    // The client trusts our CA (so the server certificate is fine) but
    // presents a certificate of the other CA.
    let config = client_config(c.ca.cert_pem(), &mallory).unwrap();
    assert_refused(
        c.server.connect(config, "127.0.0.1").await,
        "invalid peer certificate",
    );
    let config = client_tls12(&c.ca, &mallory);
    assert_refused(
        c.server.connect(config, "127.0.0.1").await,
        "invalid peer certificate",
    );
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let mut c = cluster().await;
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots(&c.ca))
            .with_no_client_auth();
        assert_refused(
            c.server.connect(Arc::new(config), "127.0.0.1").await,
            "peer sent no certificates",
        );
    }
}

#[tokio::test]
async fn revoked_certificate_is_refused_at_the_next_handshake() {
    let mut c = cluster().await;
    let alice = c.ca.issue_client("alice", DAY).unwrap();
    let bob = c.ca.issue_client("bob", DAY).unwrap();
    // One config per user, reused: a client that could resume its earlier
    // session must still be refused after revocation.
    let alice_config = client(&c.ca, &alice);
    let bob_config = client(&c.ca, &bob);
    assert_accepted(
        c.server.connect(alice_config.clone(), "127.0.0.1").await,
        "alice",
        Role::User,
    );
    assert_accepted(
        c.server.connect(bob_config.clone(), "127.0.0.1").await,
        "bob",
        Role::User,
    );

    assert!(c.revocations.revoke(&alice.serial));
    assert_refused(
        c.server.connect(alice_config.clone(), "127.0.0.1").await,
        "Revoked",
    );
    assert_refused(
        c.server
            .connect(client_tls12(&c.ca, &alice), "127.0.0.1")
            .await,
        "Revoked",
    );
    assert_accepted(
        c.server.connect(bob_config.clone(), "127.0.0.1").await,
        "bob",
        Role::User,
    );

    // Replacing the set takes effect too, both ways.
    c.revocations.replace([bob.serial.to_uppercase()]);
    assert_accepted(
        c.server.connect(alice_config, "127.0.0.1").await,
        "alice",
        Role::User,
    );
    assert_refused(c.server.connect(bob_config, "127.0.0.1").await, "Revoked");
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let mut c = cluster().await;
    let now = OffsetDateTime::now_utc();
    let expired =
        c.ca.issue_client(
            "old",
            Validity::between(now - time::Duration::days(2), now - time::Duration::days(1)),
        )
        .unwrap();
    assert_refused(
        c.server.connect(client(&c.ca, &expired), "127.0.0.1").await,
        "certificate expired",
    );
    let future =
        c.ca.issue_client(
            "early",
            Validity::between(now + time::Duration::days(1), now + time::Duration::days(2)),
        )
        .unwrap();
    assert_refused(
        c.server.connect(client(&c.ca, &future), "127.0.0.1").await,
        "certificate not valid yet",
    );
}

#[tokio::test]
async fn client_checks_the_server_certificate() {
    let mut c = cluster().await;
    let alice = c.ca.issue_client("alice", DAY).unwrap();
    // A name the server certificate does not carry.
    let (client_side, _) = c
        .server
        .connect(client(&c.ca, &alice), "other.example")
        .await;
    let err = client_side.unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    // A client that trusts another CA refuses our server.
    let other = Ca::generate("test-cluster").unwrap();
    let carol = other.issue_client("carol", DAY).unwrap();
    let (client_side, _) = c.server.connect(client(&other, &carol), "127.0.0.1").await;
    let err = client_side.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn a_certificate_without_server_auth_cannot_serve() {
    // A worker certificate has clientAuth only. Dialed by its own DNS SAN,
    // the name matches, so the refusal comes from the usage check.
    let ca = Ca::generate("test-cluster").unwrap();
    let worker = ca
        .issue_node("workernode000000000000000", NodeRole::Worker, &[], &[], DAY)
        .unwrap();
    let config = server_config(ca.cert_pem(), &worker, Revocations::new()).unwrap();
    let mut server = Server::start(config).await;
    let bob = ca.issue_client("bob", DAY).unwrap();
    let (client_side, _) = server
        .connect(client(&ca, &bob), "workernode000000000000000")
        .await;
    let err = client_side.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");

    // The same dial to a manager certificate works.
    let manager = ca
        .issue_node("managernode0000000000000", NodeRole::Manager, &[], &[], DAY)
        .unwrap();
    let config = server_config(ca.cert_pem(), &manager, Revocations::new()).unwrap();
    let mut server = Server::start(config).await;
    let (client_side, _) = server
        .connect(client(&ca, &bob), "managernode0000000000000")
        .await;
    client_side.unwrap();
    let (client_side, _) = server.connect(client(&ca, &bob), "lockbox-manager").await;
    client_side.unwrap();
}

#[tokio::test]
async fn server_prefers_h2_when_offered() {
    let mut c = cluster().await;
    let alice = c.ca.issue_client("alice", DAY).unwrap();
    let mut config = (*client(&c.ca, &alice)).clone();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let (client_side, server_side) = c.server.connect(Arc::new(config), "127.0.0.1").await;
    client_side.unwrap();
    assert_eq!(server_side.unwrap().1.as_deref(), Some(&b"h2"[..]));
}
