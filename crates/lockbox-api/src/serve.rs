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
}

impl Listen {
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

/// A bound listener ready to serve.
pub(crate) enum Bound {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

async fn bind(l: &Listen) -> Result<Bound, ServeError> {
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
            Ok(Bound::Unix(listener, path.clone()))
        }
        Listen::Tcp(addr) => {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|e| ServeError::Io(l.to_string(), e))?;
            Ok(Bound::Tcp(listener))
        }
    }
}

/// Serves `router` on every address until `shutdown` resolves. Binds all first, so a bad
/// address fails before anything is served. Unix socket files are removed on shutdown.
pub async fn serve(
    router: Router,
    listen: &[Listen],
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let mut bound = Vec::new();
    for l in listen {
        bound.push(bind(l).await?);
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
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = rx.recv().await;
                        })
                        .await
                });
            }
            Bound::Tcp(listener) => {
                tasks.spawn(async move {
                    axum::serve(listener, router)
                        .with_graceful_shutdown(async move {
                            let _ = rx.recv().await;
                        })
                        .await
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
