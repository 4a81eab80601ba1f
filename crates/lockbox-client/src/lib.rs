//! A small client for the Docker Engine API over a unix socket, TCP, or TCP with TLS and a
//! client certificate (the daemon's `--tlsverify` listener), used by the `lockbox` CLI. One
//! connection per request keeps it simple; the CLI makes few requests.
//!
//! Callers that read a response as it arrives open their own connection with
//! [`Client::connect`] (plain or TLS, as configured) and turn transport failures into
//! [`ClientError`]s with [`Client::transport_error`].

#![forbid(unsafe_code)]

mod tls;

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use tls::{Tls, TlsFiles};

/// The API version the client speaks.
pub const API_VERSION: &str = "1.47";

/// How long the TLS handshake may take before the connection is given up (a listener that
/// accepted the connection but does not answer would otherwise hang the CLI).
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Client errors.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The daemon address is malformed.
    #[error("invalid daemon address {0}: expected unix:///PATH or tcp://HOST:PORT")]
    Address(String),
    /// The daemon could not be reached.
    #[error("Cannot connect to the lockbox daemon at {addr}. Is the daemon running? ({source})")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TLS connection to the daemon failed: the handshake, or the daemon refused the
    /// client certificate (revoked, unknown CA, none).
    #[error("Cannot connect to the lockbox daemon at {addr}: {message}")]
    Tls {
        /// The address tried.
        addr: String,
        /// What went wrong, as rustls reported it (alerts in the words of Go's TLS).
        message: String,
    },
    /// A TLS file (CA certificate, client certificate or key) cannot be read.
    #[error("cannot read the {what} {}: {reason}", path.display())]
    TlsFile {
        /// Which file (for example `"client key"`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why (never the file's content).
        reason: String,
    },
    /// The TLS files do not make a usable configuration.
    #[error("{0}")]
    TlsConfig(String),
    /// An HTTP-level failure.
    #[error("{0}")]
    Http(String),
    /// The daemon answered with an error status.
    #[error("Error response from daemon: {message}")]
    Daemon {
        /// HTTP status.
        status: StatusCode,
        /// The daemon's message.
        message: String,
    },
    /// The response was not what the API promises.
    #[error("unexpected response from daemon: {0}")]
    Decode(String),
}

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// Unix socket path.
    Unix(PathBuf),
    /// host:port.
    Tcp(String),
}

impl Endpoint {
    /// Parses `unix:///path` or `tcp://host:port`.
    pub fn parse(s: &str) -> Result<Endpoint, ClientError> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.is_empty() {
                return Ok(Endpoint::Unix(PathBuf::from(p)));
            }
        } else if let Some(a) = s.strip_prefix("tcp://")
            && a.contains(':')
        {
            return Ok(Endpoint::Tcp(a.trim_end_matches('/').to_owned()));
        }
        Err(ClientError::Address(s.to_owned()))
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status.
    pub status: StatusCode,
    /// Body bytes.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, ClientError> {
        serde_json::from_slice(&self.body).map_err(|e| ClientError::Decode(e.to_string()))
    }
}

/// The client.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
    tls: Option<Tls>,
}

impl Client {
    /// A client for `endpoint`, without TLS.
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            tls: None,
        }
    }

    /// A client for `endpoint` that speaks TLS with `tls` to `tcp://` addresses (the daemon
    /// never serves TLS on unix sockets, so those stay plain).
    pub fn with_tls(endpoint: Endpoint, tls: Tls) -> Client {
        Client {
            endpoint,
            tls: Some(tls),
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Whether connections to the endpoint use TLS.
    pub fn uses_tls(&self) -> bool {
        self.tls.is_some() && matches!(self.endpoint, Endpoint::Tcp(_))
    }

    /// Opens a connection to the daemon: a unix socket, TCP, or TCP with a completed TLS
    /// handshake (the daemon verified against the CA, the client certificate presented).
    ///
    /// With TLS 1.3 the daemon checks the client certificate after the client considers the
    /// handshake done, so a refused certificate shows as an error on the first read; pass
    /// such errors through [`Client::transport_error`].
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let connect_err = |source| ClientError::Connect {
            addr: self.endpoint.to_string(),
            source,
        };
        match (&self.endpoint, &self.tls) {
            (Endpoint::Unix(p), _) => Ok(Connection(Inner::Unix(
                tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?,
            ))),
            (Endpoint::Tcp(a), None) => Ok(Connection(Inner::Tcp(
                tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(connect_err)?,
            ))),
            (Endpoint::Tcp(a), Some(tls)) => {
                let name = tls::server_name(a)?;
                let tcp = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .map_err(connect_err)?;
                let handshake = tls.connector().connect(name, tcp);
                let stream = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, handshake)
                    .await
                    .map_err(|_| ClientError::Tls {
                        addr: self.endpoint.to_string(),
                        message: format!(
                            "tls: no answer to the handshake within {} s",
                            TLS_HANDSHAKE_TIMEOUT.as_secs()
                        ),
                    })?
                    .map_err(|e| ClientError::Tls {
                        addr: self.endpoint.to_string(),
                        message: match tls::find_tls_error(&e) {
                            Some(t) => tls::describe(t),
                            // The daemon closed or reset the connection mid-handshake.
                            None => format!("tls: {}", tls::chain(&e)),
                        },
                    })?;
                Ok(Connection(Inner::Tls(Box::new(stream))))
            }
        }
    }

    /// Turns a failure while talking to the daemon (an I/O, hyper or rustls error) into a
    /// [`ClientError`]: a TLS failure anywhere in its chain becomes [`ClientError::Tls`]
    /// (`Cannot connect to the lockbox daemon at tcp://…: remote error: tls: revoked
    /// certificate`); anything else [`ClientError::Http`].
    pub fn transport_error<E: StdError + 'static>(&self, e: E) -> ClientError {
        if let Some(t) = tls::find_tls_error(&e) {
            return ClientError::Tls {
                addr: self.endpoint.to_string(),
                message: tls::describe(t),
            };
        }
        let text = tls::chain(&e);
        if let Endpoint::Tcp(_) = self.endpoint
            && self.tls.is_none()
            && is_no_answer(&e)
        {
            return ClientError::Http(format!(
                "Cannot connect to the lockbox daemon at {}: {text} (if the daemon serves TLS \
                 on this address, use --tlsverify with a client certificate)",
                self.endpoint
            ));
        }
        ClientError::Http(text)
    }

    /// Sends a request to `/v1.47{path}`; non-2xx answers become [`ClientError::Daemon`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let resp = self
            .raw(method, &format!("/v{API_VERSION}{path}"), body)
            .await?;
        if resp.status.is_success() {
            return Ok(resp);
        }
        let message = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_owned());
        Err(ClientError::Daemon {
            status: resp.status,
            message,
        })
    }

    /// `GET` and decode JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None).await?.json()
    }

    /// Sends a request without version prefix or status handling.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let payload = match body {
            Some(v) => {
                Bytes::from(serde_json::to_vec(v).map_err(|e| ClientError::Http(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "lockbox");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(payload))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let resp = self.send_request(req).await?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport_error(e))?
            .to_bytes();
        Ok(Response { status, body })
    }

    /// Sends `req` (its path as given) over a new connection ([`Client::connect`]) and returns
    /// the response as soon as its head arrived, its body to be read as it comes (map errors
    /// reading it with [`Client::transport_error`]).
    pub async fn send_request<B>(
        &self,
        req: Request<B>,
    ) -> Result<http::Response<hyper::body::Incoming>, ClientError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let io = TokioIo::new(self.connect().await?);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| self.transport_error(e))?;
        let conn = tokio::spawn(conn);
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                // When the connection failed first (say, the daemon refused the certificate
                // with a TLS alert right after the handshake) the request only learns that it
                // was canceled: the connection's own error says why.
                if let Ok(Ok(Err(conn_err))) =
                    tokio::time::timeout(std::time::Duration::from_secs(5), conn).await
                {
                    return Err(self.transport_error(conn_err));
                }
                Err(self.transport_error(e))
            }
        }
    }
}

/// Whether `e` says the peer closed or reset the connection, or answered with something
/// that is not HTTP: what a plain request to a TLS port gets.
fn is_no_answer(e: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_parse())
        {
            return true;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && matches!(
                io.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::BrokenPipe
            )
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A connection to the daemon from [`Client::connect`]: a tokio `AsyncRead + AsyncWrite`
/// (wrap it in `hyper_util::rt::TokioIo` for hyper).
pub struct Connection(Inner);

enum Inner {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream),
    Tls(Box<lockbox_pki::tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Inner::Unix(_) => "Connection(unix)",
            Inner::Tcp(_) => "Connection(tcp)",
            Inner::Tls(_) => "Connection(tls)",
        })
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().0 {
            Inner::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.0 {
            Inner::Unix(s) => s.is_write_vectored(),
            Inner::Tcp(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Unix(s) => Pin::new(s).poll_flush(cx),
            Inner::Tcp(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().0 {
            Inner::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
