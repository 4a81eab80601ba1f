//! The cluster listener.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use lockbox_pki::{PeerIdentity, Role};
use lockbox_store::Rpc;
use zeroize::Zeroizing;

use crate::messages::{AddManager, ClusterError, JoinRequest, JoinResponse};

/// The largest request body accepted (a snapshot chunk, or a batch of entries).
const MAX_BODY: usize = 64 << 20;

/// Who sent a request: the verified certificate's identity, if the connection had one, and
/// the remote address.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The node certificate's identity (`None`: a joining node without one yet).
    pub identity: Option<PeerIdentity>,
    /// The remote address of the connection.
    pub addr: SocketAddr,
}

impl Peer {
    /// The node ID, if the peer presented a manager certificate.
    pub fn manager(&self) -> Option<&str> {
        self.identity
            .as_ref()
            .filter(|i| i.role() == Some(Role::Manager))
            .map(|i| i.common_name.as_str())
    }
}

/// What the cluster listener serves; lockbox-core implements it.
pub trait Service: Send + Sync + 'static {
    /// Whether the certificate `peer` presented is a current manager's: the node is a
    /// manager now and the certificate is not revoked (removed nodes and superseded
    /// certificates are refused even when they chain to the CA).
    fn is_manager(&self, peer: &PeerIdentity) -> bool;
    /// A store message from another manager.
    fn raft(&self, rpc: Rpc, body: Bytes)
    -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, String>>;
    /// A node asking to join.
    fn join(
        &self,
        req: JoinRequest,
        peer: Peer,
    ) -> BoxFuture<'static, Result<JoinResponse, ClusterError>>;
    /// A worker's dispatcher session call (postcard in, postcard out).
    fn session(
        &self,
        body: Bytes,
        peer: Peer,
    ) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>>;
    /// A joined manager asking to be added to the Raft group.
    fn add_manager(
        &self,
        req: AddManager,
        peer: Peer,
    ) -> BoxFuture<'static, Result<(), ClusterError>>;
    /// How the leader sees every node (`node ls` on a follower): JSON.
    fn views(&self, peer: Peer) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>> {
        let _ = peer;
        Box::pin(async { Err(ClusterError::unavailable("node views are not served here")) })
    }
    /// A membership request from a manager (demote, remove, leave, status, unlock key): an
    /// opaque JSON body the service interprets, answered with JSON.
    fn membership(
        &self,
        body: Bytes,
        peer: Peer,
    ) -> BoxFuture<'static, Result<Zeroizing<Vec<u8>>, ClusterError>> {
        let _ = (body, peer);
        Box::pin(async {
            Err(ClusterError::unavailable(
                "membership changes are not served here",
            ))
        })
    }
}

fn reply(status: u16, body: impl Into<Bytes>) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    r
}

fn error(e: &ClusterError) -> http::Response<Full<Bytes>> {
    reply(e.status, serde_json::to_vec(e).unwrap_or_default())
}

async fn handle(
    svc: Arc<dyn Service>,
    peer: Peer,
    req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, std::convert::Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() != http::Method::POST {
        return Ok(reply(405, "method not allowed"));
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(reply(400, format!("reading the request: {e}"))),
    };
    if let Some(rpc) = Rpc::from_path(&path) {
        let allowed =
            peer.manager().is_some() && peer.identity.as_ref().is_some_and(|i| svc.is_manager(i));
        if !allowed {
            tracing::warn!(peer = %peer.addr, ?rpc, "refused a raft message from a node that is not a manager");
            return Ok(reply(
                403,
                "only managers of this cluster may send raft messages",
            ));
        }
        return Ok(match svc.raft(rpc, body).await {
            Ok(answer) => reply(200, Bytes::from_owner(answer)),
            Err(e) => reply(500, e),
        });
    }
    match path.as_str() {
        "/cluster/join" => {
            let parsed: Result<JoinRequest, _> = serde_json::from_slice(&body);
            drop(body);
            let Ok(jr) = parsed else {
                return Ok(error(&ClusterError::bad_request("malformed join request")));
            };
            Ok(match svc.join(jr, peer).await {
                Ok(answer) => match serde_json::to_vec(&answer) {
                    Ok(b) => reply(200, Bytes::from_owner(Zeroizing::new(b))),
                    Err(e) => error(&ClusterError::internal(e.to_string())),
                },
                Err(e) => error(&e),
            })
        }
        "/dispatcher/session" => {
            if peer.identity.is_none() {
                return Ok(error(&ClusterError::forbidden(
                    "a node certificate of this cluster is required",
                )));
            }
            Ok(match svc.session(body, peer).await {
                Ok(answer) => reply(200, Bytes::from_owner(answer)),
                Err(e) => error(&e),
            })
        }
        "/cluster/members" => {
            if peer.manager().is_none() {
                return Ok(error(&ClusterError::forbidden(
                    "a manager certificate of this cluster is required",
                )));
            }
            let Ok(am) = serde_json::from_slice::<AddManager>(&body) else {
                return Ok(error(&ClusterError::bad_request("malformed request")));
            };
            Ok(match svc.add_manager(am, peer).await {
                Ok(()) => reply(200, "{}"),
                Err(e) => error(&e),
            })
        }
        "/cluster/views" => {
            let allowed = peer.manager().is_some()
                && peer.identity.as_ref().is_some_and(|i| svc.is_manager(i));
            if !allowed {
                return Ok(error(&ClusterError::forbidden(
                    "a manager certificate of this cluster is required",
                )));
            }
            Ok(match svc.views(peer).await {
                Ok(answer) => reply(200, Bytes::from_owner(answer)),
                Err(e) => error(&e),
            })
        }
        "/cluster/membership" => {
            if peer.manager().is_none() {
                return Ok(error(&ClusterError::forbidden(
                    "a manager certificate of this cluster is required",
                )));
            }
            Ok(match svc.membership(body, peer).await {
                Ok(answer) => reply(200, Bytes::from_owner(answer)),
                Err(e) => error(&e),
            })
        }
        _ => Ok(reply(404, "not found")),
    }
}

/// Serves the cluster listener on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<lockbox_pki::ServerSlot>,
    svc: Arc<dyn Service>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    tokio::pin!(shutdown);
    // Dropped when the listener stops: its connections close too (a peer's cached connection
    // must not keep reaching a node that left and maybe joined again).
    let (_open, closing) = tokio::sync::watch::channel(());
    loop {
        let (tcp, addr) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "cluster listener accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = lockbox_pki::acceptor(tls.get());
        let svc = svc.clone();
        let mut closing = closing.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(std::time::Duration::from_secs(5), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::info!(peer = %addr, error = %e, "cluster TLS handshake refused");
                        return;
                    }
                    Err(_) => return,
                };
            let peer = Peer {
                identity: lockbox_pki::peer_identity(&tls),
                addr,
            };
            let service =
                hyper::service::service_fn(move |req| handle(svc.clone(), peer.clone(), req));
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            let ended = tokio::select! {
                ended = conn.as_mut() => ended,
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(peer = %addr, error = %e, "cluster connection ended");
            }
        });
    }
}
