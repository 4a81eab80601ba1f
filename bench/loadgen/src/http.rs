//! One keep-alive HTTP/1.1 connection to a Docker Engine API endpoint (unix socket or TCP).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// Where the daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// `unix:///path`, `tcp://host:port`, or a bare socket path.
    pub(crate) fn parse(s: &str) -> Result<Endpoint> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            return Ok(Endpoint::Tcp(a.trim_end_matches('/').to_owned()));
        }
        if s.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(s)));
        }
        bail!("invalid endpoint {s}: expected unix:///PATH or tcp://HOST:PORT")
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

/// A response: status and the whole body.
pub(crate) struct Response {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Response {
    /// The daemon's error message, or the start of the body.
    pub(crate) fn message(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_else(|| text.chars().take(200).collect());
        format!("{}: {msg}", self.status)
    }
}

/// One persistent connection. Requests on it are sequential (HTTP/1.1 keep-alive).
pub(crate) struct Conn {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    pub(crate) async fn connect(endpoint: &Endpoint) -> Result<Conn> {
        let mut c = Conn {
            endpoint: endpoint.clone(),
            sender: None,
        };
        c.reconnect().await?;
        Ok(c)
    }

    async fn reconnect(&mut self) -> Result<()> {
        self.sender = None;
        let sender = match &self.endpoint {
            Endpoint::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p)
                    .await
                    .with_context(|| format!("connecting to {}", self.endpoint))?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(conn);
                sender
            }
            Endpoint::Tcp(a) => {
                let s = tokio::net::TcpStream::connect(a.as_str())
                    .await
                    .with_context(|| format!("connecting to {}", self.endpoint))?;
                s.set_nodelay(true)?;
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        self.sender = Some(sender);
        Ok(())
    }

    /// Sends one request and reads the whole response. A broken connection is re-opened for
    /// the next request (the failed one is still an error).
    pub(crate) async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Response> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.reconnect().await?;
        }
        let result = self.send(method, path, body).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn send(&mut self, method: Method, path: &str, body: Option<Bytes>) -> Result<Response> {
        let Some(sender) = self.sender.as_mut() else {
            bail!("not connected");
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "docker")
            .header(header::USER_AGENT, "lockbox-bench");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Response { status, body })
    }
}

/// Percent-encodes a query value.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
