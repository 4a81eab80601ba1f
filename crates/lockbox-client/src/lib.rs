//! A small client for the Docker Engine API over a unix socket or loopback TCP, used by the
//! `lockbox` CLI. One connection per request keeps it simple; the CLI makes few requests.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use thiserror::Error;

/// The API version the client speaks.
pub const API_VERSION: &str = "1.47";

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
}

impl Client {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Client {
        Client { endpoint }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
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
        let connect_err = |source| ClientError::Connect {
            addr: self.endpoint.to_string(),
            source,
        };
        let resp = match &self.endpoint {
            Endpoint::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(connect_err)?;
                send(TokioIo::new(stream), req).await?
            }
            Endpoint::Tcp(a) => {
                let stream = tokio::net::TcpStream::connect(a)
                    .await
                    .map_err(connect_err)?;
                send(TokioIo::new(stream), req).await?
            }
        };
        Ok(resp)
    }
}

async fn send<T>(io: T, req: Request<Full<Bytes>>) -> Result<Response, ClientError>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError::Http(e.to_string()))?
        .to_bytes();
    Ok(Response { status, body })
}
