//! Listening on unix sockets and TCP.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use axum::Router;
use thiserror::Error;
use tokio::net::{TcpListener, UnixListener};

/// Where to listen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A unix socket (mode 0660).
    Unix(PathBuf),
    /// Plain TCP: loopback addresses only.
    Tcp(SocketAddr),
    /// TLS with client certificates required: any address.
    Tls(SocketAddr),
}

impl Listen {
    /// Parses `unix:///path` or `tcp://host:port` (TLS with client certificates when `tls`).
    pub fn parse_tls(s: &str, tls: bool) -> Result<Listen, ServeError> {
        if tls && let Some(a) = s.strip_prefix("tcp://") {
            use std::net::ToSocketAddrs;
            let addr = a
                .parse()
                .ok()
                .or_else(|| a.to_socket_addrs().ok().and_then(|mut i| i.next()))
                .ok_or_else(|| {
                    ServeError::Address(s.to_owned(), "expected tcp://HOST:PORT".into())
                })?;
            return Ok(Listen::Tls(addr));
        }
        Self::parse(s)
    }

    /// Parses `unix:///path` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Listen, ServeError> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(ServeError::Address(
                    s.to_owned(),
                    "empty socket path".into(),
                ));
            }
            return Ok(Listen::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let addr: SocketAddr = a
                .parse()
                .or_else(|_| {
                    use std::net::ToSocketAddrs;
                    a.to_socket_addrs()
                        .ok()
                        .and_then(|mut i| i.next())
                        .ok_or(())
                })
                .map_err(|_| {
                    ServeError::Address(s.to_owned(), "expected tcp://HOST:PORT".into())
                })?;
            if !addr.ip().is_loopback() {
                return Err(ServeError::Address(
                    s.to_owned(),
                    "plain TCP is served only on loopback addresses (127.0.0.1, ::1): secret values would cross the network unencrypted".into(),
                ));
            }
            return Ok(Listen::Tcp(addr));
        }
        Err(ServeError::Address(
            s.to_owned(),
            "expected unix:///PATH or tcp://HOST:PORT".into(),
        ))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::Tcp(a) => write!(f, "tcp://{a}"),
            Listen::Tls(a) => write!(f, "tcp://{a} (TLS, client certificates required)"),
        }
    }
}

/// Listener errors.
#[derive(Debug, Error)]
pub enum ServeError {
    /// A bad `-H` value.
    #[error("invalid listen address {0}: {1}")]
    Address(String, String),
    /// Another process serves on the socket.
    #[error("{0} is in use by another process")]
    InUse(String),
    /// I/O.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
}

/// TLS settings for [`Listen::Tls`] addresses.
#[derive(Clone)]
pub struct TlsConfig {
    /// The server configuration (certificate, client verification, revocations), replaced
    /// in place when the cluster's CA changes.
    pub server: std::sync::Arc<lockbox_pki::ServerSlot>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// A bound listener ready to serve.
pub(crate) enum Bound {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
    Tls(TcpListener),
}

async fn bind(l: &Listen, socket_gid: Option<u32>) -> Result<Bound, ServeError> {
    match l {
        Listen::Unix(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ServeError::Io(dir.display().to_string(), e))?;
            }
            if path.exists() {
                if tokio::net::UnixStream::connect(path).await.is_ok() {
                    return Err(ServeError::InUse(l.to_string()));
                }
                std::fs::remove_file(path)
                    .map_err(|e| ServeError::Io(path.display().to_string(), e))?;
            }
            let listener = UnixListener::bind(path)
                .map_err(|e| ServeError::Io(path.display().to_string(), e))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                .map_err(|e| ServeError::Io(path.display().to_string(), e))?;
            if let Some(gid) = socket_gid {
                std::os::unix::fs::chown(path, None, Some(gid))
                    .map_err(|e| ServeError::Io(path.display().to_string(), e))?;
            }
            Ok(Bound::Unix(listener, path.clone()))
        }
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Io(l.to_string(), e))?;
            Ok(Bound::Tcp(listener))
        }
        Listen::Tls(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Io(l.to_string(), e))?;
            Ok(Bound::Tls(listener))
        }
    }
}

/// Serves one TLS listener: handshake (client certificate verified against the cluster CA
/// and the revocation list), then HTTP/1.1 or HTTP/2 with the peer's identity on every
/// request.
async fn serve_tls(
    listener: TcpListener,
    tls: TlsConfig,
    router: Router,
    mut stop: tokio::sync::broadcast::Receiver<()>,
) {
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS accept");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.recv() => return,
        };
        let acceptor = lockbox_pki::acceptor(tls.server.get());
        let router = router.clone();
        tokio::spawn(async move {
            let conn = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(tcp),
            )
            .await
            {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::info!(peer = %remote, error = %e, "TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let Some(id) = lockbox_pki::peer_identity(&conn) else {
                return;
            };
            let peer = crate::access::Peer::Tls(lockbox_core::CertPeer {
                common_name: id.common_name,
                org_unit: id.org_unit.unwrap_or_default(),
                serial: id.serial,
                addr: remote.to_string(),
            });
            let svc = tower::ServiceBuilder::new()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    req
                })
                .service(router);
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(conn), svc)
                .await
            {
                tracing::debug!(peer = %remote, error = %e, "TLS connection");
            }
        });
    }
}

/// Serves `router` on every address until `shutdown` resolves. Binds all first, so a bad
/// address fails before anything is served. Unix socket files are removed on shutdown.
pub async fn serve(
    router: Router,
    listen: &[Listen],
    tls: Option<TlsConfig>,
    socket_gid: Option<u32>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut bound = Vec::new();
    for l in listen {
        if matches!(l, Listen::Tls(_)) && tls.is_none() {
            return Err(ServeError::Address(
                l.to_string(),
                "TLS listener without a TLS configuration".into(),
            ));
        }
        bound.push(bind(l, socket_gid).await?);
    }
    let (tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for b in bound {
        let mut rx = tx.subscribe();
        let router = router.clone();
        match b {
            Bound::Unix(listener, path) => {
                sockets.push(path);
                tasks.spawn(async move {
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<crate::access::Peer>(),
                    )
                    .with_graceful_shutdown(async move {
                        let _ = rx.recv().await;
                    })
                    .await
                });
            }
            Bound::Tcp(listener) => {
                tasks.spawn(async move {
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<crate::access::Peer>(),
                    )
                    .with_graceful_shutdown(async move {
                        let _ = rx.recv().await;
                    })
                    .await
                });
            }
            Bound::Tls(listener) => {
                let tls = tls.clone().ok_or_else(|| {
                    ServeError::Address("tls".into(), "no TLS configuration".into())
                })?;
                tasks.spawn(async move {
                    serve_tls(listener, tls, router, rx).await;
                    Ok(())
                });
            }
        }
    }
    shutdown.await;
    let _ = tx.send(());
    // Streams such as /events never end by themselves: give requests a moment, then stop.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    for p in sockets {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
