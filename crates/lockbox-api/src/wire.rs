//! Core objects in Docker's JSON shapes: Go struct field order, `omitempty` where Docker has
//! it, `Labels` always an object, times in Go's RFC 3339 with trimmed nanoseconds. Secret
//! values have no field here: nothing can serialize them.

use lockbox_core::{SecretInfo, SecretView};
use lockbox_types::{
    Cluster, ClusterSpec, Driver, Meta, Node, NodeAvailability, NodeRole, Timestamp,
};
use serde_json::{Map, Value, json};

/// Go's `time.RFC3339Nano` in UTC: fraction without trailing zeros, none when zero.
pub(crate) fn go_time(t: Timestamp) -> String {
    let secs = t.0.div_euclid(1_000_000_000);
    let nanos = t.0.rem_euclid(1_000_000_000);
    let dt =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    // Written digit by digit: lists format two times per secret, tens of thousands of times.
    fn digits(s: &mut String, v: u32, width: u32) {
        for p in (0..width).rev() {
            let d = (v / 10u32.pow(p)) % 10;
            s.push(char::from(b'0' + d as u8));
        }
    }
    let mut s = String::with_capacity(32);
    let year = dt.year();
    if (0..=9999).contains(&year) {
        digits(&mut s, year as u32, 4);
    } else {
        s.push_str(&format!("{year:04}"));
    }
    s.push('-');
    digits(&mut s, u32::from(u8::from(dt.month())), 2);
    s.push('-');
    digits(&mut s, u32::from(dt.day()), 2);
    s.push('T');
    digits(&mut s, u32::from(dt.hour()), 2);
    s.push(':');
    digits(&mut s, u32::from(dt.minute()), 2);
    s.push(':');
    digits(&mut s, u32::from(dt.second()), 2);
    if nanos != 0 {
        s.push('.');
        let mut n = nanos as u32;
        let mut width = 9;
        while n.is_multiple_of(10) {
            n /= 10;
            width -= 1;
        }
        digits(&mut s, n, width);
    }
    s.push('Z');
    s
}

fn version(meta: &Meta) -> Value {
    if meta.version == 0 {
        json!({})
    } else {
        json!({ "Index": meta.version })
    }
}

fn labels<'a>(l: impl IntoIterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Object(
        l.into_iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

#[cfg(test)]
fn driver(d: &Driver) -> Value {
    let mut m = Map::new();
    if !d.name.is_empty() {
        m.insert("Name".into(), Value::String(d.name.clone()));
    }
    if !d.options.is_empty() {
        m.insert("Options".into(), labels(&d.options));
    }
    Value::Object(m)
}

/// A secret, as `GET /secrets/{id}` returns it, as a `Value`: the reference [`SecretJson`]
/// is tested against.
#[cfg(test)]
pub(crate) fn secret(s: &SecretInfo) -> Value {
    let mut spec = Map::new();
    spec.insert("Name".into(), Value::String(s.name.clone()));
    spec.insert("Labels".into(), labels(s.labels.iter()));
    if let Some(d) = &s.driver {
        spec.insert("Driver".into(), driver(d));
    }
    if let Some(d) = &s.templating {
        spec.insert("Templating".into(), driver(d));
    }
    json!({
        "ID": s.id,
        "Version": version(&s.meta),
        "CreatedAt": go_time(s.meta.created_at),
        "UpdatedAt": go_time(s.meta.updated_at),
        "Spec": Value::Object(spec),
    })
}

/// The swarm spec.
pub(crate) fn cluster_spec(s: &ClusterSpec) -> Value {
    let mut orch = Map::new();
    if let Some(v) = s.orchestration.task_history_retention_limit {
        orch.insert("TaskHistoryRetentionLimit".into(), json!(v));
    }
    let mut raft = Map::new();
    raft.insert("SnapshotInterval".into(), json!(s.raft.snapshot_interval));
    if let Some(k) = s.raft.keep_old_snapshots {
        raft.insert("KeepOldSnapshots".into(), json!(k));
    }
    raft.insert(
        "LogEntriesForSlowFollowers".into(),
        json!(s.raft.log_entries_for_slow_followers),
    );
    raft.insert("ElectionTick".into(), json!(s.raft.election_tick));
    raft.insert("HeartbeatTick".into(), json!(s.raft.heartbeat_tick));
    let mut disp = Map::new();
    if let Some(p) = s.dispatcher.heartbeat_period {
        disp.insert("HeartbeatPeriod".into(), json!(p));
    }
    let mut ca = Map::new();
    if let Some(e) = s.ca_config.node_cert_expiry {
        ca.insert("NodeCertExpiry".into(), json!(e));
    }
    if s.ca_config.force_rotate != 0 {
        ca.insert("ForceRotate".into(), json!(s.ca_config.force_rotate));
    }
    json!({
        "Name": s.name,
        "Labels": labels(&s.labels),
        "Orchestration": Value::Object(orch),
        "Raft": Value::Object(raft),
        "Dispatcher": Value::Object(disp),
        "CAConfig": Value::Object(ca),
        "TaskDefaults": {},
        "EncryptionConfig": { "AutoLockManagers": s.encryption_config.auto_lock_managers },
    })
}

/// A `TLSInfo`: the trusted root CA and the raw subject and key of the certificate's issuer
/// (Go's `[]byte`, so base64).
fn tls_info(t: &lockbox_core::TlsInfo) -> Value {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    json!({
        "TrustRoot": t.trust_root,
        "CertIssuerSubject": b64(&t.issuer_subject),
        "CertIssuerPublicKey": b64(&t.issuer_public_key),
    })
}

/// `ClusterInfo` (as in `/info`), without join tokens.
pub(crate) fn cluster_info(c: &Cluster, pki: &lockbox_core::PkiStatus) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ID".into(), json!(c.id));
    m.insert("Version".into(), version(&c.meta));
    m.insert("CreatedAt".into(), json!(go_time(c.meta.created_at)));
    m.insert("UpdatedAt".into(), json!(go_time(c.meta.updated_at)));
    m.insert("Spec".into(), cluster_spec(&c.spec));
    m.insert("TLSInfo".into(), tls_info(&pki.cluster));
    m.insert(
        "RootRotationInProgress".into(),
        json!(pki.rotation_in_progress),
    );
    m.insert("DefaultAddrPool".into(), json!(c.default_addr_pool));
    m.insert("SubnetSize".into(), json!(c.subnet_size));
    m.insert("DataPathPort".into(), json!(c.data_path_port));
    m
}

/// `GET /swarm`: cluster info plus join tokens.
pub(crate) fn swarm(c: &Cluster, pki: &lockbox_core::PkiStatus) -> Value {
    let mut m = cluster_info(c, pki);
    m.insert(
        "JoinTokens".into(),
        json!({ "Worker": c.join_tokens.worker, "Manager": c.join_tokens.manager }),
    );
    Value::Object(m)
}

/// Facts about this host for node descriptions and `/info`.
#[derive(Debug, Clone)]
pub(crate) struct HostFacts {
    pub(crate) hostname: String,
    pub(crate) arch: String,
    pub(crate) kernel: String,
    pub(crate) ncpu: u64,
    pub(crate) mem_total: u64,
    pub(crate) os_name: String,
}

impl HostFacts {
    pub(crate) fn gather(hostname: &str) -> HostFacts {
        let uts = rustix::system::uname();
        let os_name = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_owned())
                })
            })
            .unwrap_or_else(|| "Linux".into());
        let mem_total = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                })
            })
            .map_or(0, |kb| kb * 1024);
        HostFacts {
            hostname: hostname.to_owned(),
            arch: uts.machine().to_string_lossy().into_owned(),
            kernel: uts.release().to_string_lossy().into_owned(),
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u64),
            mem_total,
            os_name,
        }
    }
}

fn role(r: NodeRole) -> &'static str {
    match r {
        NodeRole::Manager => "manager",
        NodeRole::Worker => "worker",
    }
}

fn availability(a: NodeAvailability) -> &'static str {
    match a {
        NodeAvailability::Active => "active",
        NodeAvailability::Pause => "pause",
        NodeAvailability::Drain => "drain",
    }
}

/// A node, as `GET /nodes/{id}` returns it.
pub(crate) fn node(
    n: &Node,
    tls: Option<&lockbox_core::TlsInfo>,
    host: &HostFacts,
    view: Option<&lockbox_core::NodeView>,
    engine_version: &str,
) -> Value {
    let leader = view.is_some_and(|v| v.leader);
    let reachability = view.map_or("unknown", |v| v.reachability);
    let state = view.map_or("unknown", |v| v.state);
    let mut spec = Map::new();
    if !n.spec.name.is_empty() {
        spec.insert("Name".into(), json!(n.spec.name));
    }
    spec.insert("Labels".into(), labels(&n.spec.labels));
    spec.insert("Role".into(), json!(role(n.spec.role)));
    spec.insert(
        "Availability".into(),
        json!(availability(n.spec.availability)),
    );
    let host_only = n.addr.rsplit_once(':').map_or(n.addr.as_str(), |(h, _)| h);
    let mut v = json!({
        "ID": n.id,
        "Version": version(&n.meta),
        "CreatedAt": go_time(n.meta.created_at),
        "UpdatedAt": go_time(n.meta.updated_at),
        "Spec": Value::Object(spec),
        "Description": {
            "Hostname": n.hostname,
            "Platform": { "Architecture": host.arch, "OS": "linux" },
            "Resources": { "NanoCPUs": host.ncpu * 1_000_000_000, "MemoryBytes": host.mem_total },
            "Engine": { "EngineVersion": engine_version, "Plugins": [] },
            "TLSInfo": tls.map(tls_info).unwrap_or_else(|| json!({})),
        },
        "Status": { "State": state, "Addr": host_only },
    });
    if n.spec.role == NodeRole::Manager
        && let Some(o) = v.as_object_mut()
    {
        o.insert(
            "ManagerStatus".into(),
            json!({ "Leader": leader, "Reachability": reachability, "Addr": n.addr }),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_trims_nanoseconds() {
        assert_eq!(
            go_time(Timestamp(1_567_098_735_257_671_700)),
            "2019-08-29T17:12:15.2576717Z"
        );
        assert_eq!(
            go_time(Timestamp(1_567_098_735_000_000_000)),
            "2019-08-29T17:12:15Z"
        );
        assert_eq!(
            go_time(Timestamp(1_567_098_735_100_000_000)),
            "2019-08-29T17:12:15.1Z"
        );
    }

    #[test]
    fn secret_shape_has_docker_key_order_and_no_data() {
        let s = SecretInfo {
            id: "ptjbcxir3eu4yg6zgv080w7ft".into(),
            meta: Meta {
                version: 15,
                created_at: Timestamp(1),
                updated_at: Timestamp(2),
            },
            name: "test".into(),
            labels: [("poi".to_string(), "qwe".to_string())].into(),
            driver: None,
            templating: None,
        };
        assert_eq!(
            secret(&s).to_string(),
            r#"{"ID":"ptjbcxir3eu4yg6zgv080w7ft","Version":{"Index":15},"CreatedAt":"1970-01-01T00:00:00.000000001Z","UpdatedAt":"1970-01-01T00:00:00.000000002Z","Spec":{"Name":"test","Labels":{"poi":"qwe"}}}"#
        );
    }
}

/// A secret, serialized straight to the writer: the same bytes as [`secret`] without building
/// a `Value` tree first. `GET /secrets` over tens of thousands of secrets is dominated by that
/// tree (time, and a peak of hundreds of MB that malloc keeps), so lists use this.
pub(crate) struct SecretJson<'a>(pub(crate) &'a SecretInfo);

/// [`SecretJson`] for a secret borrowed from the state (`GET /secrets`).
pub(crate) struct SecretViewJson<'a>(pub(crate) SecretView<'a>);

struct VersionJson(u64);
struct DriverJson<'a>(&'a Driver);
struct SpecJson<'a>(SecretView<'a>);

impl serde::Serialize for SecretJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SecretViewJson(SecretView::from(self.0)).serialize(s)
    }
}

impl serde::Serialize for SecretViewJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let info = self.0;
        let mut m = s.serialize_map(Some(5))?;
        m.serialize_entry("ID", &info.id)?;
        m.serialize_entry("Version", &VersionJson(info.meta.version))?;
        m.serialize_entry("CreatedAt", &go_time(info.meta.created_at))?;
        m.serialize_entry("UpdatedAt", &go_time(info.meta.updated_at))?;
        m.serialize_entry("Spec", &SpecJson(info))?;
        m.end()
    }
}

impl serde::Serialize for VersionJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(usize::from(self.0 != 0)))?;
        if self.0 != 0 {
            m.serialize_entry("Index", &self.0)?;
        }
        m.end()
    }
}

impl serde::Serialize for SpecJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let info = self.0;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("Name", info.name)?;
        m.serialize_entry("Labels", info.labels)?;
        if let Some(d) = info.driver {
            m.serialize_entry("Driver", &DriverJson(d))?;
        }
        if let Some(d) = info.templating {
            m.serialize_entry("Templating", &DriverJson(d))?;
        }
        m.end()
    }
}

impl serde::Serialize for DriverJson<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let d = self.0;
        let mut m = s.serialize_map(None)?;
        if !d.name.is_empty() {
            m.serialize_entry("Name", &d.name)?;
        }
        if !d.options.is_empty() {
            m.serialize_entry("Options", &d.options)?;
        }
        m.end()
    }
}

#[cfg(test)]
mod go_time_tests {
    use lockbox_types::Timestamp;

    use super::go_time;

    fn reference(t: Timestamp) -> String {
        let secs = t.0.div_euclid(1_000_000_000);
        let nanos = t.0.rem_euclid(1_000_000_000);
        let dt = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut s = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        );
        if nanos != 0 {
            let frac = format!("{nanos:09}");
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }

    #[test]
    fn matches_the_formatted_reference() {
        for t in [
            0i64,
            1,
            10,
            999_999_999,
            1_000_000_000,
            1_700_000_000_123_456_789,
            1_700_000_000_120_000_000,
            1_700_000_000_000_000_100,
            -1,
            i64::MIN,
            i64::MAX,
        ] {
            assert_eq!(go_time(Timestamp(t)), reference(Timestamp(t)), "{t}");
        }
    }
}

#[cfg(test)]
mod secret_json_tests {
    use std::collections::BTreeMap;

    use lockbox_types::{Driver, Meta, Timestamp};

    use super::*;

    #[test]
    fn streamed_secret_matches_the_value_form() {
        let mut labels = BTreeMap::new();
        labels.insert("b".to_string(), "2\u{2028}".to_string());
        labels.insert("a".to_string(), "1 \"q\"".to_string());
        let mut options = BTreeMap::new();
        options.insert("k".to_string(), "v".to_string());
        let cases = [
            SecretInfo {
                id: "abc".into(),
                meta: Meta {
                    version: 0,
                    created_at: Timestamp(1_700_000_000_123_000_000),
                    updated_at: Timestamp(1_700_000_000_000_000_000),
                },
                name: "plain".into(),
                labels: Default::default(),
                driver: None,
                templating: None,
            },
            SecretInfo {
                id: "def".into(),
                meta: Meta {
                    version: 42,
                    created_at: Timestamp(5),
                    updated_at: Timestamp(6),
                },
                name: "full".into(),
                labels: labels.into(),
                driver: Some(Driver {
                    name: "d".into(),
                    options: options.clone(),
                }),
                templating: Some(Driver {
                    name: String::new(),
                    options,
                }),
            },
        ];
        for info in &cases {
            assert_eq!(
                serde_json::to_string(&SecretJson(info)).unwrap(),
                serde_json::to_string(&secret(info)).unwrap()
            );
        }
        let list: Vec<SecretJson<'_>> = cases.iter().map(SecretJson).collect();
        let values: Vec<Value> = cases.iter().map(secret).collect();
        assert_eq!(
            serde_json::to_string(&list).unwrap(),
            serde_json::to_string(&values).unwrap()
        );
        // Lists serialize straight from the stored secret: the same bytes, and no value.
        for info in &cases {
            let stored = lockbox_types::Secret {
                id: info.id.clone(),
                meta: info.meta.clone(),
                spec: lockbox_types::SecretSpec {
                    name: info.name.clone(),
                    labels: info.labels.clone(),
                    data: lockbox_crypto::SecretBytes::new(b"hunter2".to_vec()),
                    driver: info.driver.clone().map(Box::new),
                    templating: info.templating.clone().map(Box::new),
                },
            };
            let from_state =
                serde_json::to_string(&SecretViewJson(SecretView::from(&stored))).unwrap();
            assert_eq!(from_state, serde_json::to_string(&secret(info)).unwrap());
            assert!(!from_state.contains("hunter2") && !from_state.contains("aHVudGVyMg"));
        }
    }
}
