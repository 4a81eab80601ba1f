//! Who is calling, whether they may, and the audit record of every request.
//!
//! The connection tells who calls ([`Peer`]): the unix socket's SO_PEERCRED, the owner of the
//! client's socket for plain loopback TCP (`tcp_owner`, once per connection), or the verified client
//! certificate over TLS. [`access_layer`] turns it into an [`Identity`], checks the route's
//! permission, hands the identity to the handler ([`Caller`]) for object-level checks, and
//! records the request in the audit trail before the response leaves (fail closed: when the
//! record cannot be written the client gets a 500 instead).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use http::Method;
use lockbox_core::{AuditEntry, AuditObject, CertPeer, Identity, UnixPeer};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::OnceCell;

use crate::AppState;
use crate::error::ApiError;

/// The far end of a connection.
#[derive(Debug, Clone)]
pub enum Peer {
    /// A unix-socket peer.
    Unix(Option<UnixPeer>),
    /// Plain TCP (loopback only).
    Tcp {
        /// The client's address.
        remote: SocketAddr,
        /// Our address.
        local: SocketAddr,
        /// The uid and gid owning the client's socket, looked up by the connection's first
        /// request and shared by the rest (a socket's owner does not change).
        owner: Arc<OnceCell<Option<(u32, u32)>>>,
    },
    /// TLS with a verified client certificate.
    Tls(CertPeer),
}

impl Connected<IncomingStream<'_, UnixListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        let cred = stream.io().peer_cred().ok().map(|c| UnixPeer {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        });
        Peer::Unix(cred)
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let remote = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(remote);
        Peer::Tcp {
            remote,
            local,
            owner: Arc::default(),
        }
    }
}

/// The identity of the request's caller, for handlers.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub(crate) Identity);

/// Objects a handler tells the audit trail about (set on the response).
#[derive(Debug, Clone, Default)]
pub(crate) struct Audited {
    pub(crate) objects: Vec<AuditObject>,
    pub(crate) details: Vec<(String, String)>,
}

/// The error text of an error response, for the audit trail.
#[derive(Debug, Clone)]
pub(crate) struct ErrorText(pub(crate) String);

/// Attaches audit facts to a response.
pub(crate) fn audited(mut resp: Response, a: Audited) -> Response {
    resp.extensions_mut().insert(a);
    resp
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Anyone connected (no secret, no state).
    Open,
    /// A permission (secret permissions: on some scope; handlers check the object).
    Perm(&'static str),
}

/// The audit action and the requirement of a request.
fn classify(method: &Method, path: &str) -> (&'static str, Need) {
    use Need::{Open, Perm};
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let del = *method == Method::DELETE;
    match seg.as_slice() {
        ["_ping"] => ("system.ping", Open),
        ["version"] => ("system.version", Open),
        ["info"] => ("system.info", Open),
        ["events"] => ("system.events", Perm("swarm.view")),
        ["secrets"] if get => ("secret.list", Perm("secret.list")),
        ["secrets", "create"] if post => ("secret.create", Perm("secret.create")),
        ["secrets", _] if get => ("secret.inspect", Perm("secret.inspect")),
        ["secrets", _] if del => ("secret.remove", Perm("secret.remove")),
        ["secrets", _, "update"] if post => ("secret.update", Perm("secret.update")),
        ["swarm"] if get => ("swarm.inspect", Perm("swarm.view")),
        ["swarm", "unlock"] if post => ("swarm.unlock", Open),
        ["swarm", "unlockkey"] if get => ("swarm.unlockkey", Perm("swarm.manage")),
        ["swarm", "init"] => ("swarm.init", Perm("swarm.manage")),
        ["swarm", "join"] => ("swarm.join", Perm("swarm.manage")),
        ["swarm", "leave"] => ("swarm.leave", Perm("swarm.manage")),
        ["swarm", "update"] => ("swarm.update", Perm("swarm.manage")),
        ["nodes"] if get => ("node.list", Perm("node.view")),
        ["nodes", _] if get => ("node.inspect", Perm("node.view")),
        ["nodes", _] if del => ("node.remove", Perm("node.manage")),
        ["nodes", _, "update"] => ("node.update", Perm("node.manage")),
        ["services"] if get => ("service.list", Perm("service.view")),
        ["services", "create"] if post => ("service.create", Perm("service.manage")),
        ["services", _] if get => ("service.inspect", Perm("service.view")),
        ["services", _] if del => ("service.remove", Perm("service.manage")),
        ["services", _, "update"] => ("service.update", Perm("service.manage")),
        ["services", _, "logs"] => ("service.logs", Perm("service.view")),
        ["tasks"] if get => ("task.list", Perm("service.view")),
        ["tasks", _] if get => ("task.inspect", Perm("service.view")),
        ["tasks", _, "logs"] => ("task.logs", Perm("service.view")),
        ["configs", ..] if get => ("config.read", Perm("service.view")),
        ["configs", ..] => ("config.write", Perm("service.manage")),
        ["networks"] if get => ("network.list", Perm("network.view")),
        ["networks", _] if get => ("network.inspect", Perm("network.view")),
        ["networks", ..] if post || del => ("network.write", Perm("network.manage")),
        ["lockbox", "v1", "swarm", "rotate-key"] => ("swarm.rotate-key", Perm("swarm.manage")),
        // Core also asks for every permission: a backup holds every secret.
        ["lockbox", "v1", "swarm", "backup"] => ("swarm.backup", Perm("swarm.manage")),
        ["lockbox", "v1", "run"] => ("service.run", Perm("service.manage")),
        ["lockbox", "v1", "services", _, "secrets", "swap"] => {
            ("service.secret-swap", Perm("service.manage"))
        }
        ["lockbox", "v1", "agent"] => ("node.agent", Perm("node.manage")),
        ["lockbox", "v1", "whoami"] => ("access.whoami", Open),
        ["lockbox", "v1", "permissions"] => ("access.permissions", Open),
        ["lockbox", "v1", "users", ..] => (access_action("user", method), Perm("access.manage")),
        ["lockbox", "v1", "roles", ..] => (access_action("role", method), Perm("access.manage")),
        ["lockbox", "v1", "grants", ..] => (access_action("grant", method), Perm("access.manage")),
        ["lockbox", "v1", "audit", ..] => ("audit.read", Perm("audit.read")),
        // Anything else is a 404 from the router: no state behind it.
        _ => ("http.unknown", Open),
    }
}

fn access_action(noun: &'static str, method: &Method) -> &'static str {
    let read = *method == Method::GET;
    match (noun, read) {
        ("user", true) => "user.list",
        ("user", false) => "user.change",
        ("role", true) => "role.list",
        ("role", false) => "role.change",
        ("grant", true) => "grant.list",
        _ => "grant.change",
    }
}

/// Strips `/v1.xx` from a path.
fn unversioned(path: &str) -> &str {
    if let Some(rest) = path.strip_prefix("/v")
        && let Some(i) = rest.find('/')
        && rest[..i].split_once('.').is_some_and(|(a, b)| {
            a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit())
        })
    {
        return &rest[i..];
    }
    path
}

/// The objects a request names in its path, before a handler says more.
fn path_objects(path: &str) -> Vec<AuditObject> {
    let seg: Vec<&str> = path.trim_matches('/').split('/').collect();
    let kind = match seg.first() {
        Some(&"secrets") => "secret",
        Some(&"services") => "service",
        Some(&"tasks") => "task",
        Some(&"nodes") => "node",
        Some(&"networks") => "network",
        _ => return Vec::new(),
    };
    match seg.get(1) {
        Some(&"create") | None => Vec::new(),
        Some(key) if lockbox_types::is_id(key) => vec![AuditObject::new(kind, *key, "")],
        Some(key) => vec![AuditObject::new(kind, "", *key)],
    }
}

async fn identify(app: &AppState, peer: Option<Peer>) -> Identity {
    match peer {
        None => Identity::internal("in-process"),
        Some(Peer::Unix(Some(p))) => app.manager.identify_unix(p).await,
        Some(Peer::Unix(None)) => Identity {
            user: "unknown".into(),
            groups: Vec::new(),
            source: "unix (no peer credentials)".into(),
            kind: lockbox_core::IdentityKind::Unknown,
        },
        Some(Peer::Tcp {
            remote,
            local,
            owner,
        }) => match *owner
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || crate::tcp_owner::owner(remote, local))
                    .await
                    .unwrap_or(None)
            })
            .await
        {
            Some((uid, gid)) => {
                let mut id = app
                    .manager
                    .identify_unix(UnixPeer {
                        uid,
                        gid,
                        pid: None,
                    })
                    .await;
                id.source = format!("tcp {remote} uid={uid}");
                id
            }
            None => Identity {
                user: "unknown".into(),
                groups: Vec::new(),
                source: format!("tcp {remote}"),
                kind: lockbox_core::IdentityKind::Unknown,
            },
        },
        Some(Peer::Tls(c)) => app.manager.identify_cert(c).await,
    }
}

/// The middleware: identify, authorize, hand over, audit.
pub(crate) async fn access_layer(
    State(app): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|c| c.0.clone())
        .or_else(|| req.extensions().get::<Peer>().cloned());
    let identity = identify(&app, peer).await;
    let method = req.method().clone();
    let full_path = req.uri().path().to_owned();
    let path = unversioned(&full_path).to_owned();
    let (action, need) = classify(&method, &path);
    let decision = match need {
        Need::Open => Ok(()),
        Need::Perm(p) => app.manager.authorize(&identity, p).await,
    };
    let mutating = !(method == Method::GET || method == Method::HEAD);
    let auditing = app.manager.auditing();
    let resp = match decision {
        Ok(()) if auditing && mutating && action != "http.unknown" => {
            // Fail closed before anything changes: a request that may change state is
            // recorded (durably) as begun before its handler runs; if that record cannot be
            // written the request is refused and nothing happens.
            let intent = AuditEntry {
                actor: identity.user.clone(),
                source: identity.source.clone(),
                action: action.to_owned(),
                method: Some(method.to_string()),
                path: Some(full_path.clone()),
                objects: path_objects(&path),
                status: 0,
                error: None,
                details: [("phase".to_owned(), "begin".to_owned())].into(),
            };
            match app.manager.audit(intent).await {
                Ok(()) => {
                    req.extensions_mut().insert(Caller(identity.clone()));
                    next.run(req).await
                }
                Err(e) => {
                    drain(req).await;
                    return ApiError::from(e).into_response();
                }
            }
        }
        Ok(()) => {
            req.extensions_mut().insert(Caller(identity.clone()));
            next.run(req).await
        }
        Err(e) => {
            // Read what the client is still sending, so it gets the answer instead of a
            // broken pipe.
            drain(req).await;
            ApiError::from(e).into_response()
        }
    };
    // Pings are not recorded: every docker command sends one, and they touch no state.
    if !auditing || action == "system.ping" {
        return resp;
    }
    let status = resp.status().as_u16();
    let audited = resp
        .extensions()
        .get::<Audited>()
        .cloned()
        .unwrap_or_default();
    let objects = if audited.objects.is_empty() {
        path_objects(&path)
    } else {
        audited.objects
    };
    let error = (status >= 400)
        .then(|| resp.extensions().get::<ErrorText>().map(|e| e.0.clone()))
        .flatten();
    let entry = AuditEntry {
        actor: identity.user.clone(),
        source: identity.source.clone(),
        action: action.to_owned(),
        method: Some(method.to_string()),
        path: Some(full_path),
        objects,
        status,
        error,
        details: audited.details.into_iter().collect(),
    };
    if let Err(e) = app.manager.audit(entry).await {
        return ApiError::from(e).into_response();
    }
    resp
}

/// Reads and discards a refused request's body (at most 4 MiB, for at most 5 s).
async fn drain(req: Request) {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let mut left: usize = 4 << 20;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            if n >= left {
                break;
            }
            left -= n;
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let g = Method::GET;
        let p = Method::POST;
        assert_eq!(
            classify(&g, "/secrets"),
            ("secret.list", Need::Perm("secret.list"))
        );
        assert_eq!(
            classify(&p, "/secrets/create"),
            ("secret.create", Need::Perm("secret.create"))
        );
        assert_eq!(
            classify(&Method::DELETE, "/secrets/abc"),
            ("secret.remove", Need::Perm("secret.remove"))
        );
        assert_eq!(classify(&p, "/swarm/unlock").1, Need::Open);
        assert_eq!(
            classify(&g, "/swarm/unlockkey").1,
            Need::Perm("swarm.manage")
        );
        assert_eq!(
            classify(&p, "/services/x/update").1,
            Need::Perm("service.manage")
        );
        assert_eq!(
            classify(&g, "/lockbox/v1/audit").1,
            Need::Perm("audit.read")
        );
        assert_eq!(
            classify(&p, "/lockbox/v1/swarm/backup"),
            ("swarm.backup", Need::Perm("swarm.manage"))
        );
        assert_eq!(unversioned("/v1.47/secrets/x"), "/secrets/x");
        assert_eq!(unversioned("/version"), "/version");
        assert_eq!(unversioned("/volumes"), "/volumes");
    }
}
