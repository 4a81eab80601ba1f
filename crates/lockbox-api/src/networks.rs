//! `/networks`: create, list, inspect, remove, as `docker network` and `docker stack deploy`
//! use them. Networks have no effect on image-`host` tasks.

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use lockbox_types::{Meta, Network};
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{self, json, read_json};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::wire::go_time;

fn network_json(n: &Network) -> Value {
    let ipam: Value = serde_json::from_str(&n.ipam)
        .unwrap_or_else(|_| json!({ "Driver": "default", "Options": null, "Config": [] }));
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": go_time(n.meta.created_at),
        "Scope": "swarm",
        "Driver": n.driver,
        "EnableIPv6": n.ipv6,
        "IPAM": ipam,
        "Internal": n.internal,
        "Attachable": n.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": null,
        "Options": n.options,
        "Labels": n.labels,
    })
}

pub(crate) async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let v = read_json(&headers, body).await?;
    let obj = body::object(&v, "network.CreateRequest")?;
    let name = body::string(obj, "Name", "CreateRequest.Name")?;
    if name.is_empty() {
        return Err(ApiError::bad_request("invalid name: name is empty"));
    }
    let driver = Some(body::string(obj, "Driver", "CreateRequest.Driver")?)
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "overlay".into());
    let ipam = body::field(obj, "IPAM")
        .map(Value::to_string)
        .unwrap_or_default();
    let network = Network {
        id: String::new(),
        meta: Meta::default(),
        name,
        driver,
        labels: body::string_map(obj, "Labels", "CreateRequest.Labels")?,
        options: body::string_map(obj, "Options", "CreateRequest.Options")?,
        attachable: body::boolean(obj, "Attachable", "CreateRequest.Attachable")?,
        internal: body::boolean(obj, "Internal", "CreateRequest.Internal")?,
        ipv6: body::boolean(obj, "EnableIPv6", "CreateRequest.EnableIPv6")?,
        ipam,
    };
    let id = app.manager.create_network(network).await?;
    Ok(json(
        StatusCode::CREATED,
        &json!({ "Id": id, "Warning": "" }),
    ))
}

pub(crate) async fn list(
    State(app): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Response> {
    let f = Filters::parse(q.get("filters").map(String::as_str))?;
    f.validate(&["name", "id", "label", "driver", "scope", "type", "dangling"])?;
    let names = f.values("name");
    let ids = f.values("id");
    let drivers = f.values("driver");
    let scopes = f.values("scope");
    let types = f.values("type");
    let labels = f.labels("label");
    let out: Vec<Value> = app
        .manager
        .list_networks()
        .await?
        .iter()
        .filter(|n| {
            (names.is_empty() || names.iter().any(|p| n.name.contains(p.as_str())))
                && (ids.is_empty() || ids.iter().any(|p| n.id.starts_with(p.as_str())))
                && (drivers.is_empty() || drivers.contains(&n.driver))
                && (scopes.is_empty() || scopes.iter().any(|s| s == "swarm"))
                && (types.is_empty() || types.iter().any(|t| t == "custom"))
                && labels.iter().all(|(k, v)| match (n.labels.get(k), v) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(a), Some(w)) => w.is_empty() || a == w,
                })
        })
        .map(network_json)
        .collect();
    Ok(json(StatusCode::OK, &out))
}

pub(crate) async fn inspect(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    let n = app
        .manager
        .inspect_network(p.get("id").map_or("", String::as_str))
        .await?;
    Ok(json(StatusCode::OK, &network_json(&n)))
}

pub(crate) async fn delete(
    State(app): State<AppState>,
    Path(p): Path<HashMap<String, String>>,
) -> ApiResult<Response> {
    app.manager
        .remove_network(p.get("id").map_or("", String::as_str))
        .await?;
    Ok(body::empty(StatusCode::NO_CONTENT))
}
