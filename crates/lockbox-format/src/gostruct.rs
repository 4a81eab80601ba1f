//! The Engine API's swarm types as the docker CLI (28.2.2, its vendored
//! `github.com/docker/docker/api/types/swarm`) declares them, and what Go's
//! `encoding/json` makes of a server's JSON after decoding it into them and
//! encoding it again: fields in declaration order, unknown fields dropped,
//! missing fields as zero values (`omitempty` ones left out), map keys
//! sorted, times in RFC 3339 with nanoseconds, `float32` printed as such.
//!
//! docker prints `service inspect` / `node inspect` this way (the typed
//! value, not the server's bytes) and sends `service update` bodies this
//! way (the spec it decoded, modified).
//!
//! Types the CLI takes from other packages (`mount.Mount`,
//! `container.HealthConfig`, the plugin spec, ...) are kept as the server
//! sent them.

use serde_json::{Map, Value as Json};

use crate::gotime;

/// A Go type, as far as JSON encoding is concerned.
pub(crate) enum Ty {
    /// `string` (and named string types).
    Str,
    /// Any integer type.
    Int,
    Bool,
    /// `float32`: printed with the shortest representation of a float32.
    F32,
    /// `time.Time` (a struct: never left out by `omitempty`).
    Time,
    /// `[]byte`: a base64 string, `null` when nil.
    Bytes,
    /// A type this table does not describe: the server's JSON as is
    /// (`null` when missing).
    Any,
    Struct(&'static [Field]),
    /// A pointer: `null` when missing.
    Ptr(&'static Ty),
    Slice(&'static Ty),
    /// `map[string]T`: keys sorted.
    Map(&'static Ty),
}

pub(crate) struct Field {
    name: &'static str,
    ty: &'static Ty,
    omitempty: bool,
}

const fn f(name: &'static str, ty: &'static Ty) -> Field {
    Field {
        name,
        ty,
        omitempty: false,
    }
}

const fn o(name: &'static str, ty: &'static Ty) -> Field {
    Field {
        name,
        ty,
        omitempty: true,
    }
}

static STR: Ty = Ty::Str;
static INT: Ty = Ty::Int;
static BOOL: Ty = Ty::Bool;
static F32: Ty = Ty::F32;
static TIME: Ty = Ty::Time;
static BYTES: Ty = Ty::Bytes;
static ANY: Ty = Ty::Any;
static STRINGS: Ty = Ty::Slice(&STR);
static STRING_MAP: Ty = Ty::Map(&STR);
static P_INT: Ty = Ty::Ptr(&INT);
static P_BOOL: Ty = Ty::Ptr(&BOOL);
static P_TIME: Ty = Ty::Ptr(&TIME);

static VERSION: Ty = Ty::Struct(&[o("Index", &INT)]);
static P_VERSION: Ty = Ty::Ptr(&VERSION);

static DRIVER: Ty = Ty::Struct(&[o("Name", &STR), o("Options", &STRING_MAP)]);
static P_DRIVER: Ty = Ty::Ptr(&DRIVER);

// --- ContainerSpec ---------------------------------------------------------

static CREDENTIAL_SPEC: Ty = Ty::Struct(&[f("Config", &STR), f("File", &STR), f("Registry", &STR)]);
static SELINUX: Ty = Ty::Struct(&[
    f("Disable", &BOOL),
    f("User", &STR),
    f("Role", &STR),
    f("Type", &STR),
    f("Level", &STR),
]);
static SECCOMP: Ty = Ty::Struct(&[o("Mode", &STR), o("Profile", &BYTES)]);
static APPARMOR: Ty = Ty::Struct(&[o("Mode", &STR)]);
static PRIVILEGES: Ty = Ty::Struct(&[
    f("CredentialSpec", &Ty::Ptr(&CREDENTIAL_SPEC)),
    f("SELinuxContext", &Ty::Ptr(&SELINUX)),
    o("Seccomp", &Ty::Ptr(&SECCOMP)),
    o("AppArmor", &Ty::Ptr(&APPARMOR)),
    f("NoNewPrivileges", &BOOL),
]);
static DNS_CONFIG: Ty = Ty::Struct(&[
    o("Nameservers", &STRINGS),
    o("Search", &STRINGS),
    o("Options", &STRINGS),
]);
static FILE_TARGET: Ty = Ty::Struct(&[
    f("Name", &STR),
    f("UID", &STR),
    f("GID", &STR),
    f("Mode", &INT),
]);
static SECRET_REF: Ty = Ty::Struct(&[
    f("File", &Ty::Ptr(&FILE_TARGET)),
    f("SecretID", &STR),
    f("SecretName", &STR),
]);
static CONFIG_REF: Ty = Ty::Struct(&[
    o("File", &Ty::Ptr(&FILE_TARGET)),
    o("Runtime", &Ty::Ptr(&ANY_STRUCT)),
    f("ConfigID", &STR),
    f("ConfigName", &STR),
]);
static ANY_STRUCT: Ty = Ty::Struct(&[]);
static ULIMIT: Ty = Ty::Struct(&[f("Name", &STR), f("Hard", &INT), f("Soft", &INT)]);
static CONTAINER_SPEC: Ty = Ty::Struct(&[
    o("Image", &STR),
    o("Labels", &STRING_MAP),
    o("Command", &STRINGS),
    o("Args", &STRINGS),
    o("Hostname", &STR),
    o("Env", &STRINGS),
    o("Dir", &STR),
    o("User", &STR),
    o("Groups", &STRINGS),
    o("Privileges", &Ty::Ptr(&PRIVILEGES)),
    o("Init", &P_BOOL),
    o("StopSignal", &STR),
    o("TTY", &BOOL),
    o("OpenStdin", &BOOL),
    o("ReadOnly", &BOOL),
    o("Mounts", &Ty::Slice(&ANY)),
    o("StopGracePeriod", &P_INT),
    o("Healthcheck", &ANY),
    o("Hosts", &STRINGS),
    o("DNSConfig", &Ty::Ptr(&DNS_CONFIG)),
    o("Secrets", &Ty::Slice(&Ty::Ptr(&SECRET_REF))),
    o("Configs", &Ty::Slice(&Ty::Ptr(&CONFIG_REF))),
    o("Isolation", &STR),
    o("Sysctls", &STRING_MAP),
    o("CapabilityAdd", &STRINGS),
    o("CapabilityDrop", &STRINGS),
    o("Ulimits", &Ty::Slice(&Ty::Ptr(&ULIMIT))),
    o("OomScoreAdj", &INT),
]);

// --- TaskSpec --------------------------------------------------------------

static NAMED_GENERIC: Ty = Ty::Struct(&[o("Kind", &STR), o("Value", &STR)]);
static DISCRETE_GENERIC: Ty = Ty::Struct(&[o("Kind", &STR), o("Value", &INT)]);
static GENERIC_RESOURCE: Ty = Ty::Struct(&[
    o("NamedResourceSpec", &Ty::Ptr(&NAMED_GENERIC)),
    o("DiscreteResourceSpec", &Ty::Ptr(&DISCRETE_GENERIC)),
]);
static GENERIC_RESOURCES: Ty = Ty::Slice(&GENERIC_RESOURCE);
static LIMIT: Ty = Ty::Struct(&[o("NanoCPUs", &INT), o("MemoryBytes", &INT), o("Pids", &INT)]);
static RESOURCES: Ty = Ty::Struct(&[
    o("NanoCPUs", &INT),
    o("MemoryBytes", &INT),
    o("GenericResources", &GENERIC_RESOURCES),
]);
static RESOURCE_REQUIREMENTS: Ty = Ty::Struct(&[
    o("Limits", &Ty::Ptr(&LIMIT)),
    o("Reservations", &Ty::Ptr(&RESOURCES)),
]);
static RESTART_POLICY: Ty = Ty::Struct(&[
    o("Condition", &STR),
    o("Delay", &P_INT),
    o("MaxAttempts", &P_INT),
    o("Window", &P_INT),
]);
static SPREAD_OVER: Ty = Ty::Struct(&[f("SpreadDescriptor", &STR)]);
static PLACEMENT_PREF: Ty = Ty::Struct(&[f("Spread", &Ty::Ptr(&SPREAD_OVER))]);
static PLATFORM: Ty = Ty::Struct(&[o("Architecture", &STR), o("OS", &STR)]);
static PLACEMENT: Ty = Ty::Struct(&[
    o("Constraints", &STRINGS),
    o("Preferences", &Ty::Slice(&PLACEMENT_PREF)),
    o("MaxReplicas", &INT),
    o("Platforms", &Ty::Slice(&PLATFORM)),
]);
static NETWORK_ATTACHMENT_CONFIG: Ty = Ty::Struct(&[
    o("Target", &STR),
    o("Aliases", &STRINGS),
    o("DriverOpts", &STRING_MAP),
]);
static NETWORK_ATTACHMENT_CONFIGS: Ty = Ty::Slice(&NETWORK_ATTACHMENT_CONFIG);
static NETWORK_ATTACHMENT_SPEC: Ty = Ty::Struct(&[f("ContainerID", &STR)]);
static TASK_SPEC: Ty = Ty::Struct(&[
    o("ContainerSpec", &Ty::Ptr(&CONTAINER_SPEC)),
    o("PluginSpec", &ANY),
    o("NetworkAttachmentSpec", &Ty::Ptr(&NETWORK_ATTACHMENT_SPEC)),
    o("Resources", &Ty::Ptr(&RESOURCE_REQUIREMENTS)),
    o("RestartPolicy", &Ty::Ptr(&RESTART_POLICY)),
    o("Placement", &Ty::Ptr(&PLACEMENT)),
    o("Networks", &NETWORK_ATTACHMENT_CONFIGS),
    o("LogDriver", &P_DRIVER),
    f("ForceUpdate", &INT),
    o("Runtime", &STR),
]);

// --- ServiceSpec -----------------------------------------------------------

static REPLICATED: Ty = Ty::Struct(&[o("Replicas", &P_INT)]);
static REPLICATED_JOB: Ty =
    Ty::Struct(&[o("MaxConcurrent", &P_INT), o("TotalCompletions", &P_INT)]);
static SERVICE_MODE: Ty = Ty::Struct(&[
    o("Replicated", &Ty::Ptr(&REPLICATED)),
    o("Global", &Ty::Ptr(&ANY_STRUCT)),
    o("ReplicatedJob", &Ty::Ptr(&REPLICATED_JOB)),
    o("GlobalJob", &Ty::Ptr(&ANY_STRUCT)),
]);
static UPDATE_CONFIG: Ty = Ty::Struct(&[
    f("Parallelism", &INT),
    o("Delay", &INT),
    o("FailureAction", &STR),
    o("Monitor", &INT),
    f("MaxFailureRatio", &F32),
    f("Order", &STR),
]);
static PORT_CONFIG: Ty = Ty::Struct(&[
    o("Name", &STR),
    o("Protocol", &STR),
    o("TargetPort", &INT),
    o("PublishedPort", &INT),
    o("PublishMode", &STR),
]);
static PORT_CONFIGS: Ty = Ty::Slice(&PORT_CONFIG);
static ENDPOINT_SPEC: Ty = Ty::Struct(&[o("Mode", &STR), o("Ports", &PORT_CONFIGS)]);
pub(crate) static SERVICE_SPEC: Ty = Ty::Struct(&[
    o("Name", &STR),
    f("Labels", &STRING_MAP),
    o("TaskTemplate", &TASK_SPEC),
    o("Mode", &SERVICE_MODE),
    o("UpdateConfig", &Ty::Ptr(&UPDATE_CONFIG)),
    o("RollbackConfig", &Ty::Ptr(&UPDATE_CONFIG)),
    o("Networks", &NETWORK_ATTACHMENT_CONFIGS),
    o("EndpointSpec", &Ty::Ptr(&ENDPOINT_SPEC)),
]);

// --- Service ---------------------------------------------------------------

static VIRTUAL_IP: Ty = Ty::Struct(&[o("NetworkID", &STR), o("Addr", &STR)]);
static ENDPOINT: Ty = Ty::Struct(&[
    o("Spec", &ENDPOINT_SPEC),
    o("Ports", &PORT_CONFIGS),
    o("VirtualIPs", &Ty::Slice(&VIRTUAL_IP)),
]);
static UPDATE_STATUS: Ty = Ty::Struct(&[
    o("State", &STR),
    o("StartedAt", &P_TIME),
    o("CompletedAt", &P_TIME),
    o("Message", &STR),
]);
static SERVICE_STATUS: Ty = Ty::Struct(&[
    f("RunningTasks", &INT),
    f("DesiredTasks", &INT),
    f("CompletedTasks", &INT),
]);
static JOB_STATUS: Ty = Ty::Struct(&[f("JobIteration", &VERSION), o("LastExecution", &TIME)]);
pub(crate) static SERVICE: Ty = Ty::Struct(&[
    f("ID", &STR),
    o("Version", &VERSION),
    o("CreatedAt", &TIME),
    o("UpdatedAt", &TIME),
    o("Spec", &SERVICE_SPEC),
    o("PreviousSpec", &Ty::Ptr(&SERVICE_SPEC)),
    o("Endpoint", &ENDPOINT),
    o("UpdateStatus", &Ty::Ptr(&UPDATE_STATUS)),
    o("ServiceStatus", &Ty::Ptr(&SERVICE_STATUS)),
    o("JobStatus", &Ty::Ptr(&JOB_STATUS)),
]);

// --- Node ------------------------------------------------------------------

pub(crate) static NODE_SPEC: Ty = Ty::Struct(&[
    o("Name", &STR),
    f("Labels", &STRING_MAP),
    o("Role", &STR),
    o("Availability", &STR),
]);
static PLUGIN_DESCRIPTION: Ty = Ty::Struct(&[o("Type", &STR), o("Name", &STR)]);
static ENGINE_DESCRIPTION: Ty = Ty::Struct(&[
    o("EngineVersion", &STR),
    o("Labels", &STRING_MAP),
    o("Plugins", &Ty::Slice(&PLUGIN_DESCRIPTION)),
]);
static TLS_INFO: Ty = Ty::Struct(&[
    o("TrustRoot", &STR),
    o("CertIssuerSubject", &BYTES),
    o("CertIssuerPublicKey", &BYTES),
]);
static TOPOLOGY: Ty = Ty::Struct(&[o("Segments", &STRING_MAP)]);
static NODE_CSI_INFO: Ty = Ty::Struct(&[
    o("PluginName", &STR),
    o("NodeID", &STR),
    o("MaxVolumesPerNode", &INT),
    o("AccessibleTopology", &Ty::Ptr(&TOPOLOGY)),
]);
static NODE_DESCRIPTION: Ty = Ty::Struct(&[
    o("Hostname", &STR),
    o("Platform", &PLATFORM),
    o("Resources", &RESOURCES),
    o("Engine", &ENGINE_DESCRIPTION),
    o("TLSInfo", &TLS_INFO),
    o("CSIInfo", &Ty::Slice(&NODE_CSI_INFO)),
]);
static NODE_STATUS: Ty = Ty::Struct(&[o("State", &STR), o("Message", &STR), o("Addr", &STR)]);
static MANAGER_STATUS: Ty =
    Ty::Struct(&[o("Leader", &BOOL), o("Reachability", &STR), o("Addr", &STR)]);
pub(crate) static NODE: Ty = Ty::Struct(&[
    f("ID", &STR),
    o("Version", &VERSION),
    o("CreatedAt", &TIME),
    o("UpdatedAt", &TIME),
    o("Spec", &NODE_SPEC),
    o("Description", &NODE_DESCRIPTION),
    o("Status", &NODE_STATUS),
    o("ManagerStatus", &Ty::Ptr(&MANAGER_STATUS)),
]);

// --- Task ------------------------------------------------------------------

static CONTAINER_STATUS: Ty =
    Ty::Struct(&[f("ContainerID", &STR), f("PID", &INT), f("ExitCode", &INT)]);
static PORT_STATUS: Ty = Ty::Struct(&[o("Ports", &PORT_CONFIGS)]);
static TASK_STATUS: Ty = Ty::Struct(&[
    o("Timestamp", &TIME),
    o("State", &STR),
    o("Message", &STR),
    o("Err", &STR),
    o("ContainerStatus", &Ty::Ptr(&CONTAINER_STATUS)),
    o("PortStatus", &PORT_STATUS),
]);
pub(crate) static TASK: Ty = Ty::Struct(&[
    f("ID", &STR),
    o("Version", &VERSION),
    o("CreatedAt", &TIME),
    o("UpdatedAt", &TIME),
    o("Name", &STR),
    f("Labels", &STRING_MAP),
    o("Spec", &TASK_SPEC),
    o("ServiceID", &STR),
    o("Slot", &INT),
    o("NodeID", &STR),
    o("Status", &TASK_STATUS),
    o("DesiredState", &STR),
    o("NetworksAttachments", &Ty::Slice(&ANY)),
    o("GenericResources", &GENERIC_RESOURCES),
    o("JobIteration", &P_VERSION),
    f("Volumes", &Ty::Slice(&ANY)),
]);

/// Go's `encoding/json` field lookup: exact name, else case-insensitive.
fn lookup<'a>(obj: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// Go's `isEmptyValue` on an encoded value of type `ty` (structs, times
/// included, are never empty).
fn is_empty(ty: &Ty, v: &Json) -> bool {
    match ty {
        Ty::Struct(_) | Ty::Time => false,
        Ty::Ptr(_) => v.is_null(),
        _ => match v {
            Json::Null => true,
            Json::Bool(b) => !b,
            Json::Number(n) => n.as_f64() == Some(0.0),
            Json::String(s) => s.is_empty(),
            Json::Array(a) => a.is_empty(),
            Json::Object(m) => m.is_empty(),
        },
    }
}

fn zero(ty: &Ty) -> Json {
    match ty {
        Ty::Str => Json::String(String::new()),
        Ty::Int | Ty::F32 => Json::from(0),
        Ty::Bool => Json::Bool(false),
        Ty::Time => Json::String("0001-01-01T00:00:00Z".into()),
        Ty::Struct(_) => encode_as(ty, None, false),
        Ty::Bytes | Ty::Any | Ty::Ptr(_) | Ty::Slice(_) | Ty::Map(_) => Json::Null,
    }
}

/// `float32` as Go's `encoding/json` prints it.
fn f32_json(f: f64) -> Json {
    let narrowed = f as f32;
    let shortest = format!("{narrowed}");
    match shortest.parse::<f64>() {
        Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => Json::from(v as i64),
        Ok(v) => serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number),
        Err(_) => Json::Null,
    }
}

/// Go's `time.Time.MarshalJSON`: RFC 3339 with up to 9 fraction digits.
fn time_json(s: &str) -> Json {
    match gotime::parse_time(s) {
        Ok(t) => Json::String(gotime::rfc3339_nano(t)),
        Err(_) => Json::String(s.to_owned()),
    }
}

/// What Go encodes for a value of type `ty` decoded from `v` (`None`:
/// the field was absent).
pub(crate) fn encode(ty: &Ty, v: Option<&Json>) -> Json {
    encode_as(ty, v, false)
}

/// The decoded value as a Go template sees it: every field present,
/// `omitempty` or not (nil pointers, maps and slices as `null`).
pub(crate) fn view(ty: &Ty, v: Option<&Json>) -> Json {
    encode_as(ty, v, true)
}

fn encode_as(ty: &Ty, v: Option<&Json>, full: bool) -> Json {
    let v = v.filter(|v| !v.is_null());
    match ty {
        Ty::Str => match v {
            Some(Json::String(s)) => Json::String(s.clone()),
            _ => zero(ty),
        },
        Ty::Int => match v {
            Some(Json::Number(n)) => Json::Number(n.clone()),
            _ => zero(ty),
        },
        Ty::Bool => match v {
            Some(Json::Bool(b)) => Json::Bool(*b),
            _ => zero(ty),
        },
        Ty::F32 => match v.and_then(Json::as_f64) {
            Some(x) => f32_json(x),
            None => zero(ty),
        },
        Ty::Time => match v {
            Some(Json::String(s)) => time_json(s),
            _ => zero(ty),
        },
        Ty::Bytes | Ty::Any => v.cloned().unwrap_or(Json::Null),
        Ty::Struct(fields) => {
            let empty = Map::new();
            let obj = match v {
                Some(Json::Object(m)) => m,
                _ => &empty,
            };
            let mut out = Map::new();
            for field in *fields {
                let value = encode_as(field.ty, lookup(obj, field.name), full);
                if !full && field.omitempty && is_empty(field.ty, &value) {
                    continue;
                }
                out.insert(field.name.to_owned(), value);
            }
            Json::Object(out)
        }
        Ty::Ptr(inner) => match v {
            None => Json::Null,
            Some(x) => encode_as(inner, Some(x), full),
        },
        Ty::Slice(inner) => match v {
            Some(Json::Array(items)) => Json::Array(
                items
                    .iter()
                    .map(|i| encode_as(inner, Some(i), full))
                    .collect(),
            ),
            _ => Json::Null,
        },
        Ty::Map(inner) => match v {
            Some(Json::Object(m)) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), encode_as(inner, m.get(k), full));
                }
                Json::Object(out)
            }
            _ => Json::Null,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn spec_in_go_order_with_zero_values() {
        let server = json!({
            "Labels": {"b": "2", "a": "1"},
            "Name": "web",
            "Extra": true,
            "Mode": {"Replicated": {"Replicas": 1}},
            "TaskTemplate": {"ContainerSpec": {"Image": "x", "Init": false}},
            "UpdateConfig": {"Parallelism": 1, "MaxFailureRatio": 0.1, "Order": "stop-first"},
        });
        let out = encode(&SERVICE_SPEC, Some(&server));
        assert_eq!(
            out.to_string(),
            r#"{"Name":"web","Labels":{"a":"1","b":"2"},"TaskTemplate":{"ContainerSpec":{"Image":"x","Init":false},"ForceUpdate":0},"Mode":{"Replicated":{"Replicas":1}},"UpdateConfig":{"Parallelism":1,"MaxFailureRatio":0.1,"Order":"stop-first"}}"#
        );
        let empty = encode(&SERVICE_SPEC, None);
        assert_eq!(
            empty.to_string(),
            r#"{"Labels":null,"TaskTemplate":{"ForceUpdate":0},"Mode":{}}"#
        );
    }

    #[test]
    fn times_and_floats() {
        assert_eq!(
            time_json("2026-11-23T10:59:55.093350000Z"),
            json!("2026-11-23T10:59:55.09335Z")
        );
        assert_eq!(f32_json(0.25), json!(0.25));
        assert_eq!(f32_json(0.1f32 as f64), json!(0.1));
        assert_eq!(f32_json(0.0), json!(0));
        let svc = encode(&SERVICE, Some(&json!({"ID": "x", "JobStatus": {}})));
        assert_eq!(
            svc.to_string(),
            r#"{"ID":"x","Version":{},"CreatedAt":"0001-01-01T00:00:00Z","UpdatedAt":"0001-01-01T00:00:00Z","Spec":{"Labels":null,"TaskTemplate":{"ForceUpdate":0},"Mode":{}},"Endpoint":{"Spec":{}},"JobStatus":{"JobIteration":{},"LastExecution":"0001-01-01T00:00:00Z"}}"#
        );
    }
}
