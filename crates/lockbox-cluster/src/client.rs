//! Dialing other nodes: one HTTP/2 connection per address, over TLS from the cluster CA.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lockbox_pki::rustls::ClientConfig;
use lockbox_store::{Call, Rpc, Transport, TransportError};
use zeroize::Zeroizing;

use crate::messages::{ClusterError, JoinRequest, JoinResponse};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Dials nodes with one TLS client configuration and keeps a connection per address.
pub struct Dialer {
    config: Arc<ClientConfig>,
    conns: Mutex<HashMap<String, SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").finish_non_exhaustive()
    }
}

async fn connect(
    config: Arc<ClientConfig>,
    addr: &str,
) -> Result<SendRequest<Full<Bytes>>, TransportError> {
    let err =
        |what: &str, e: &dyn std::fmt::Display| TransportError(format!("{addr}: {what}: {e}"));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|e| err("connect", &e))?
        .map_err(|e| err("connect", &e))?;
    let _ = tcp.set_nodelay(true);
    let tls = tokio::time::timeout(
        CONNECT_TIMEOUT,
        lockbox_pki::connector(config).connect(lockbox_pki::manager_server_name(), tcp),
    )
    .await
    .map_err(|e| err("TLS handshake", &e))?
    .map_err(|e| err("TLS handshake", &e))?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .map_err(|e| err("HTTP/2 handshake", &e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "node connection closed");
        }
    });
    Ok(send)
}

impl Dialer {
    /// A dialer presenting the identity in `config`.
    pub fn new(config: Arc<ClientConfig>) -> Dialer {
        Dialer {
            config,
            conns: Mutex::new(HashMap::new()),
        }
    }

    async fn sender(&self, addr: &str) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let cached = self
            .conns
            .lock()
            .ok()
            .and_then(|m| m.get(addr).cloned())
            .filter(|s| !s.is_closed());
        if let Some(s) = cached {
            return Ok(s);
        }
        let s = connect(self.config.clone(), addr).await?;
        if let Ok(mut m) = self.conns.lock() {
            m.insert(addr.to_owned(), s.clone());
        }
        Ok(s)
    }

    /// POSTs `body` to `path` on the node at `addr`; returns the status and the body.
    pub async fn post(
        &self,
        addr: &str,
        path: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes), TransportError> {
        let mut sender = self.sender(addr).await?;
        let result = send(&mut sender, addr, path, body).await;
        if result.is_err() {
            // The connection may have died between uses: forget it, the next call redials.
            if let Ok(mut m) = self.conns.lock() {
                m.remove(addr);
            }
        }
        result
    }
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    addr: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes), TransportError> {
    let err = |e: &dyn std::fmt::Display| TransportError(format!("{addr}{path}: {e}"));
    sender.ready().await.map_err(|e| err(&e))?;
    let req = http::Request::post(format!("https://{}{path}", lockbox_pki::MANAGER_NAME))
        .body(Full::new(body))
        .map_err(|e| err(&e))?;
    let resp = sender.send_request(req).await.map_err(|e| err(&e))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| err(&e))?
        .to_bytes();
    Ok((status, body))
}

/// The store's [`Transport`] over a [`Dialer`].
#[derive(Debug, Clone)]
pub struct TlsTransport(pub Arc<Dialer>);

impl Transport for TlsTransport {
    fn call(&self, addr: &str, rpc: Rpc, body: Zeroizing<Vec<u8>>) -> Call {
        let dialer = self.0.clone();
        let addr = addr.to_owned();
        Box::pin(async move {
            // The bytes are wiped when hyper drops its last reference to them.
            let body = Bytes::from_owner(body);
            let (status, answer) = dialer.post(&addr, rpc.path(), body).await?;
            if status != 200 {
                return Err(TransportError(format!(
                    "{addr}{}: {status}: {}",
                    rpc.path(),
                    String::from_utf8_lossy(&answer)
                )));
            }
            Ok(Zeroizing::new(answer.to_vec()))
        })
    }
}

/// A joining node's request: dials `addr` trusting only the CA `pin` accepts, presents the
/// join request and returns the answer. A refusal comes back as the manager's
/// [`ClusterError`]; a failure to connect or to verify the manager as one with status 0.
pub async fn join_pinned(
    addr: &str,
    pin: lockbox_pki::CaPin,
    req: &JoinRequest,
) -> Result<JoinResponse, ClusterError> {
    let config = lockbox_pki::pinned_client_config(pin)
        .map_err(|e| ClusterError::internal(e.to_string()))?;
    let unreachable = |e: TransportError| ClusterError {
        status: 0,
        message: e.0,
    };
    let mut sender = connect(config, addr).await.map_err(unreachable)?;
    let body = serde_json::to_vec(req).map_err(|e| ClusterError::internal(e.to_string()))?;
    let (status, answer) = send(
        &mut sender,
        addr,
        "/cluster/join",
        Bytes::from_owner(Zeroizing::new(body)),
    )
    .await
    .map_err(unreachable)?;
    if status != 200 {
        return Err(
            serde_json::from_slice::<ClusterError>(&answer).unwrap_or(ClusterError {
                status,
                message: String::from_utf8_lossy(&answer).into_owned(),
            }),
        );
    }
    serde_json::from_slice(&answer)
        .map_err(|e| ClusterError::internal(format!("undecodable join answer: {e}")))
}
