//! Errors on the wire: `{"message":"..."}` plus a newline, `Content-Type: application/json`
//! exactly (the Go client only parses that exact value), with Docker's status codes and texts.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use lockbox_core::CoreError;

/// `503` text for a node in no swarm.
pub(crate) const NOT_MANAGER: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
/// `503` text for a locked node.
pub(crate) const LOCKED: &str = "Swarm is encrypted and needs to be unlocked before it can be used. Please use \"docker swarm unlock\" to unlock it.";
/// `503` text for `swarm init` in a swarm.
pub(crate) const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one.";
/// `503` text for `swarm leave` outside a swarm.
pub(crate) const NOT_IN_SWARM: &str = "This node is not part of a swarm";
/// `503` text for leaving as the last manager.
pub(crate) const LAST_MANAGER: &str = "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message. ";

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub(crate) fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "page not found")
    }
}

fn rpc(code: &str, desc: &str) -> String {
    format!("rpc error: code = {code} desc = {desc}")
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        use StatusCode as S;
        match e {
            CoreError::NotInSwarm => Self::new(S::SERVICE_UNAVAILABLE, NOT_MANAGER),
            e @ CoreError::WorkerNode => Self::new(S::SERVICE_UNAVAILABLE, e.to_string()),
            CoreError::Locked => Self::new(S::SERVICE_UNAVAILABLE, LOCKED),
            CoreError::AlreadyInSwarm => Self::new(S::SERVICE_UNAVAILABLE, ALREADY_IN_SWARM),
            CoreError::LastManager => Self::new(S::SERVICE_UNAVAILABLE, LAST_MANAGER),
            CoreError::NotLocked => Self::new(S::CONFLICT, "swarm is not locked"),
            CoreError::InvalidKey => Self::new(S::BAD_REQUEST, "invalid key string"),
            CoreError::WrongKey => Self::new(
                S::UNAUTHORIZED,
                "swarm could not be unlocked: invalid key provided",
            ),
            CoreError::InvalidArgument(m) => Self::new(S::BAD_REQUEST, rpc("InvalidArgument", &m)),
            CoreError::InvalidParameter(m) => Self::new(S::BAD_REQUEST, m),
            CoreError::AlreadyExists(m) => Self::new(S::CONFLICT, rpc("AlreadyExists", &m)),
            CoreError::Conflict(m) => Self::new(S::CONFLICT, m),
            CoreError::NotFound(m) => Self::new(S::NOT_FOUND, m),
            CoreError::Ambiguous(m) => Self::new(S::BAD_REQUEST, m),
            CoreError::FailedPrecondition(m) => {
                Self::new(S::BAD_REQUEST, rpc("FailedPrecondition", &m))
            }
            CoreError::Unimplemented(m) => Self::new(S::NOT_IMPLEMENTED, rpc("Unimplemented", &m)),
            CoreError::Unknown(m) => Self::new(S::INTERNAL_SERVER_ERROR, rpc("Unknown", &m)),
            CoreError::OutOfSequence => Self::new(
                S::INTERNAL_SERVER_ERROR,
                rpc("Unknown", "update out of sequence"),
            ),
            CoreError::PermissionDenied(m) => Self::new(S::FORBIDDEN, m),
            e @ CoreError::NoSpace(_) => Self::new(S::INSUFFICIENT_STORAGE, e.to_string()),
            CoreError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Self::new(S::INTERNAL_SERVER_ERROR, m)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "message": self.message }).to_string();
        body.push('\n');
        let mut resp = (self.status, body).into_response();
        resp.extensions_mut()
            .insert(crate::access::ErrorText(self.message));
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
