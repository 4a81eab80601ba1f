//! `/_ping`, `/version`, `/info`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use lockbox_core::LocalState;
use serde_json::{Value, json};

use crate::body::json;
use crate::{API_VERSION, AppState, ENGINE_VERSION, MIN_API_VERSION};

fn swarm_header(s: LocalState) -> &'static str {
    match s {
        LocalState::Active => "active/manager",
        LocalState::Worker => "active/worker",
        LocalState::Locked => "locked",
        LocalState::Inactive => "inactive",
    }
}

pub(crate) async fn ping(State(app): State<AppState>, method: Method) -> Response {
    let state = app.manager.local_state().await;
    let mut resp = if method == Method::HEAD {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    } else {
        let mut r = (StatusCode::OK, "OK").into_response();
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    };
    let h = resp.headers_mut();
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static(swarm_header(state)));
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

pub(crate) async fn version(State(app): State<AppState>) -> Response {
    let arch = go_arch(&app.host.arch).to_owned();
    let details = json!({
        "ApiVersion": API_VERSION.to_string(),
        "Arch": arch,
        "BuildTime": "",
        "Experimental": "false",
        "GitCommit": option_env!("LOCKBOX_GIT_COMMIT").unwrap_or(""),
        "GoVersion": "",
        "KernelVersion": app.host.kernel,
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "Os": "linux",
    });
    json(
        StatusCode::OK,
        &json!({
            "Platform": { "Name": "lockbox" },
            "Components": [{ "Name": "Engine", "Version": ENGINE_VERSION, "Details": details }],
            "Version": ENGINE_VERSION,
            "ApiVersion": API_VERSION.to_string(),
            "MinAPIVersion": MIN_API_VERSION.to_string(),
            "GitCommit": option_env!("LOCKBOX_GIT_COMMIT").unwrap_or(""),
            "GoVersion": "",
            "Os": "linux",
            "Arch": arch,
            "KernelVersion": app.host.kernel,
            "BuildTime": "",
        }),
    )
}

pub(crate) async fn info(State(app): State<AppState>) -> Response {
    let state = app.manager.local_state().await;
    let node_id = app.manager.node_id().await.unwrap_or_default();
    let mut swarm = serde_json::Map::new();
    let addr = app.manager.config().advertise_addr.clone();
    let host_only = addr
        .rsplit_once(':')
        .map_or(addr.clone(), |(h, _)| h.to_owned());
    swarm.insert(
        "NodeID".into(),
        json!(
            if matches!(state, LocalState::Active | LocalState::Worker) {
                node_id.clone()
            } else {
                String::new()
            }
        ),
    );
    swarm.insert(
        "NodeAddr".into(),
        json!(
            if matches!(state, LocalState::Active | LocalState::Worker) {
                host_only
            } else {
                String::new()
            }
        ),
    );
    swarm.insert(
        "LocalNodeState".into(),
        json!(match state {
            LocalState::Active | LocalState::Worker => "active",
            LocalState::Locked => "locked",
            LocalState::Inactive => "inactive",
        }),
    );
    swarm.insert(
        "ControlAvailable".into(),
        json!(state == LocalState::Active),
    );
    swarm.insert(
        "Error".into(),
        json!(if state == LocalState::Locked {
            crate::error::LOCKED
        } else {
            ""
        }),
    );
    if state == LocalState::Active {
        let nodes = app.manager.nodes().await.unwrap_or_default();
        let managers = nodes
            .iter()
            .filter(|n| n.spec.role == lockbox_types::NodeRole::Manager)
            .count();
        let remote: Vec<Value> = nodes
            .iter()
            .filter(|n| n.spec.role == lockbox_types::NodeRole::Manager)
            .map(|n| json!({ "NodeID": n.id, "Addr": n.addr }))
            .collect();
        swarm.insert("RemoteManagers".into(), json!(remote));
        swarm.insert("Nodes".into(), json!(nodes.len()));
        swarm.insert("Managers".into(), json!(managers));
        if let (Ok(c), Ok(pki)) = (app.manager.cluster().await, app.manager.pki_status().await) {
            swarm.insert(
                "Cluster".into(),
                Value::Object(crate::wire::cluster_info(&c, &pki)),
            );
        }
    } else {
        swarm.insert("RemoteManagers".into(), Value::Null);
    }
    let now = crate::wire::go_time(lockbox_types::Timestamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    ));
    json(
        StatusCode::OK,
        &json!({
            "ID": node_id,
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
            "Driver": "",
            "DriverStatus": null,
            "Plugins": { "Volume": null, "Network": null, "Authorization": null, "Log": null },
            "MemoryLimit": false,
            "SwapLimit": false,
            "CpuCfsPeriod": false,
            "CpuCfsQuota": false,
            "CPUShares": false,
            "CPUSet": false,
            "PidsLimit": false,
            "IPv4Forwarding": false,
            "Debug": false,
            "NFd": 0,
            "OomKillDisable": false,
            "NGoroutines": 0,
            "SystemTime": now,
            "LoggingDriver": "",
            "CgroupDriver": "",
            "NEventsListener": 0,
            "KernelVersion": app.host.kernel,
            "OperatingSystem": app.host.os_name,
            "OSVersion": "",
            "OSType": "linux",
            "Architecture": app.host.arch,
            "IndexServerAddress": "",
            "RegistryConfig": null,
            "NCPU": app.host.ncpu,
            "MemTotal": app.host.mem_total,
            "GenericResources": null,
            "DockerRootDir": app.manager.config().data_dir.display().to_string(),
            "HttpProxy": "",
            "HttpsProxy": "",
            "NoProxy": "",
            "Name": app.host.hostname,
            "Labels": [],
            "ExperimentalBuild": false,
            "ServerVersion": ENGINE_VERSION,
            "Runtimes": {},
            "DefaultRuntime": "",
            "Swarm": Value::Object(swarm),
            "LiveRestoreEnabled": false,
            "Isolation": "",
            "InitBinary": "",
            "ContainerdCommit": { "ID": "" },
            "RuncCommit": { "ID": "" },
            "InitCommit": { "ID": "" },
            "SecurityOptions": [],
            "Warnings": null,
        }),
    )
}
