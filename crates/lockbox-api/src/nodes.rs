//! `/nodes`: this cluster's members.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use lockbox_core::CoreError;
use lockbox_types::{Node, NodeRole};

use crate::AppState;
use crate::body::json;
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;

async fn render(app: &AppState, nodes: &[Node]) -> ApiResult<Vec<serde_json::Value>> {
    let pki = app.manager.pki_status().await?;
    let views = app.manager.node_views().await?;
    Ok(nodes
        .iter()
        .map(|n| {
            crate::wire::node(
                n,
                pki.nodes.get(&n.id),
                &app.host,
                views.get(&n.id),
                crate::ENGINE_VERSION,
            )
        })
        .collect())
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let f = Filters::parse(q.get("filters").map(String::as_str))?;
    f.validate(&["id", "label", "name", "membership", "role", "node.label"])?;
    for r in f.values("role") {
        if r != "manager" && r != "worker" {
            return Err(ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid role filter: '{r}'"),
            ));
        }
    }
    for m in f.values("membership") {
        if m != "accepted" && m != "pending" {
            return Err(ApiError::new(
                http::StatusCode::INTERNAL_SERVER_ERROR,
                format!("Invalid membership filter: '{m}'"),
            ));
        }
    }
    // `label` filters engine labels: lockbox nodes have none.
    let engine_label = f.contains_key("label");
    let nodes: Vec<Node> = app
        .manager
        .nodes()
        .await?
        .into_iter()
        .filter(|n| {
            let ids = f.values("id");
            let names = f.values("name");
            let roles = f.values("role");
            let role = if n.spec.role == NodeRole::Manager {
                "manager"
            } else {
                "worker"
            };
            (ids.is_empty() || ids.iter().any(|p| n.id.starts_with(p.as_str())))
                && (names.is_empty()
                    || names.iter().any(|p| {
                        n.hostname.starts_with(p.as_str()) || n.spec.name.starts_with(p.as_str())
                    }))
                && (roles.is_empty() || roles.iter().any(|r| r == role))
                && !engine_label
                && (!f.contains_key("membership")
                    || f.values("membership").iter().any(|m| m == "accepted"))
                && f.labels("node.label")
                    .iter()
                    .all(|(k, v)| match (n.spec.labels.get(k), v) {
                        (None, _) => false,
                        (Some(_), None) => true,
                        (Some(a), Some(w)) => a == w,
                    })
        })
        .collect();
    Ok(json(StatusCode::OK, &render(&app, &nodes).await?))
}

pub(crate) async fn inspect(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let key = p.get("id").map_or("", String::as_str);
    let nodes = app.manager.nodes().await?;
    let found = nodes.iter().find(|n| n.id == key).or_else(|| {
        nodes
            .iter()
            .find(|n| n.hostname == key || (!n.spec.name.is_empty() && n.spec.name == key))
    });
    let found = match found {
        Some(n) => n.clone(),
        None => {
            let m: Vec<&Node> = if key.is_empty() {
                vec![]
            } else {
                nodes.iter().filter(|n| n.id.starts_with(key)).collect()
            };
            match m.len() {
                0 => return Err(CoreError::NotFound(format!("node {key} not found")).into()),
                1 => m[0].clone(),
                n => {
                    return Err(ApiError::bad_request(format!(
                        "node {key} is ambiguous ({n} matches found)"
                    )));
                }
            }
        }
    };
    let v = render(&app, &[found]).await?;
    Ok(json(StatusCode::OK, &v[0]))
}

/// `DELETE /nodes/{id}` (`docker node rm [--force]`).
pub(crate) async fn remove(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let key = p.get("id").map_or("", String::as_str);
    let force = crate::body::bool_value(q.get("force"));
    app.manager.remove_node(key, force).await?;
    Ok(crate::body::empty(StatusCode::OK))
}
