#![recursion_limit = "256"]
//! The Docker Engine API served by lockbox.
//!
//! Every route answers both unversioned and under `/v{version}/`, as dockerd does. Responses
//! carry dockerd's headers; errors are `{"message": ...}` with Docker's status codes and
//! texts, so the stock `docker` CLI and SDKs behave against lockbox as against a swarm.
//!
//! This is the only crate that knows HTTP routes and Docker's JSON shapes.

#![forbid(unsafe_code)]

mod access;
mod admin;
mod backup;
mod body;
mod error;
mod events;
mod filters;
mod gojson;
mod networks;
mod nodes;
mod run;
mod secrets;
mod serve;
mod services;
mod swarm;
mod system;
mod tcp_owner;
mod wire;

use std::fmt;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use http::HeaderValue;
use lockbox_core::Manager;

pub use access::Peer;
pub use serve::{Listen, ServeError, TlsConfig, serve};

/// The lockbox version reported as the engine version.
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// An API version such as 1.47.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ApiVersion {
    fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

/// The API version lockbox speaks (and the default for unversioned requests).
pub const API_VERSION: ApiVersion = ApiVersion(1, 47);
/// The oldest API version accepted.
pub const MIN_API_VERSION: ApiVersion = ApiVersion(1, 24);

/// Shared state of the handlers.
#[derive(Clone)]
pub struct AppState {
    manager: Arc<Manager>,
    host: Arc<wire::HostFacts>,
    events: Arc<events::EventLog>,
    revocations: lockbox_pki::Revocations,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// State for serving `manager`. Starts recording events for `/events?since=`.
    pub fn new(manager: Arc<Manager>) -> AppState {
        let host = Arc::new(wire::HostFacts::gather(&manager.config().hostname));
        let events = events::EventLog::start(&manager);
        AppState {
            manager,
            host,
            events,
            revocations: lockbox_pki::Revocations::new(),
        }
    }

    /// The revocation list the TLS listener checks; kept in step with the store.
    pub fn revocations(&self) -> lockbox_pki::Revocations {
        self.revocations.clone()
    }
}

/// Registers `route` both as `/path` and `/v{version}/path`.
fn dual(r: Router<AppState>, path: &str, route: MethodRouter<AppState>) -> Router<AppState> {
    r.route(path, route.clone())
        .route(&format!("/v{{version}}{path}"), route)
}

/// The API router.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    r = r.route("/_ping", get(system::ping).head(system::ping));
    r = r.route("/v{version}/_ping", get(system::ping).head(system::ping));
    r = dual(r, "/version", get(system::version));
    r = dual(r, "/info", get(system::info));
    r = dual(r, "/events", get(events::events));
    r = dual(r, "/secrets", get(secrets::list));
    r = dual(r, "/secrets/create", post(secrets::create));
    r = dual(
        r,
        "/secrets/{id}",
        get(secrets::inspect).delete(secrets::delete),
    );
    r = dual(r, "/secrets/{id}/update", post(secrets::update));
    r = dual(r, "/swarm", get(swarm::inspect));
    r = dual(r, "/swarm/init", post(swarm::init));
    r = dual(r, "/swarm/join", post(swarm::join));
    r = dual(r, "/swarm/leave", post(swarm::leave));
    r = dual(r, "/swarm/update", post(swarm::update));
    r = dual(r, "/swarm/unlock", post(swarm::unlock));
    r = dual(r, "/swarm/unlockkey", get(swarm::unlock_key));
    r = dual(r, "/nodes", get(nodes::list));
    r = dual(r, "/nodes/{id}", get(nodes::inspect).delete(nodes::remove));
    r = dual(r, "/nodes/{id}/update", post(services::node_update));
    r = dual(r, "/services", get(services::list));
    r = dual(r, "/services/create", post(services::create));
    r = dual(
        r,
        "/services/{id}",
        get(services::inspect).delete(services::delete),
    );
    r = dual(r, "/services/{id}/update", post(services::update));
    r = dual(r, "/services/{id}/logs", get(services::service_logs));
    r = dual(r, "/configs", get(configs_list));
    r = dual(r, "/configs/create", post(configs_unsupported));
    r = dual(
        r,
        "/configs/{id}",
        get(configs_unsupported).delete(configs_unsupported),
    );
    r = dual(r, "/configs/{id}/update", post(configs_unsupported));
    r = dual(r, "/networks", get(networks::list));
    r = dual(r, "/networks/create", post(networks::create));
    r = dual(
        r,
        "/networks/{id}",
        get(networks::inspect).delete(networks::delete),
    );
    r = dual(r, "/tasks", get(services::tasks));
    r = dual(r, "/tasks/{id}", get(services::task));
    r = dual(r, "/tasks/{id}/logs", get(services::task_logs));
    r = dual(r, "/lockbox/v1/swarm/rotate-key", post(swarm::rotate_key));
    r = dual(r, "/lockbox/v1/run", post(run::run));
    r = admin::routes(r);
    r.fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::access_layer,
        ))
        .layer(axum::middleware::from_fn(version_layer))
        .with_state(state)
}

/// lockbox stores no configs yet: listing answers an empty list (so `docker stack rm` and
/// `docker config ls` work), everything else says so.
async fn configs_list(
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    match filters::Filters::parse(q.get("filters").map(String::as_str))
        .and_then(|f| f.validate(&["id", "name", "names", "label"]))
    {
        Ok(()) => body::json(http::StatusCode::OK, &Vec::<serde_json::Value>::new()),
        Err(e) => e.into_response(),
    }
}

async fn configs_unsupported() -> Response {
    error::ApiError::new(
        http::StatusCode::NOT_IMPLEMENTED,
        "configs are not supported by lockbox yet; use secrets",
    )
    .into_response()
}

async fn not_found() -> Response {
    error::ApiError::not_found().into_response()
}

/// Checks the path's API version, records it for handlers, and sets dockerd's headers.
async fn version_layer(mut req: Request, next: Next) -> Response {
    let mut version = API_VERSION;
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v") {
        let seg = rest.split('/').next().unwrap_or("");
        if let Some(v) = ApiVersion::parse(seg) {
            if v > API_VERSION {
                return with_headers(
                    error::ApiError::bad_request(format!(
                        "client version {seg} is too new. Maximum supported API version is {API_VERSION}"
                    ))
                    .into_response(),
                );
            }
            if v < MIN_API_VERSION {
                return with_headers(
                    error::ApiError::bad_request(format!(
                        "client version {seg} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                    ))
                    .into_response(),
                );
            }
            version = v;
        }
    }
    tracing::debug!(method = %req.method(), path = %req.uri().path(), "request");
    req.extensions_mut().insert(version);
    with_headers(next.run(req).await)
}

fn with_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        http::header::SERVER,
        HeaderValue::from_static(concat!("lockbox/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
    h.insert("Api-Version", HeaderValue::from_static("1.47"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    resp
}
