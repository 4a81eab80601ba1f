//! Secret families and versions (see `docs/secrets.md`), and `lockbox secret versions`.
//!
//! A *family* `NAME` is a set of immutable secrets, its *versions*. Membership is read from a
//! secret as follows:
//!
//! * the version is the label `lockbox.version` when it is a number, else the `N` of a name
//!   `F-vN` (`N` ≥ 1, no leading zero), else 0;
//! * the family is the label `lockbox.family` when present, else the `F` of a name `F-vN`,
//!   else the whole name.
//!
//! So `db` (unlabelled) is version 0 of `db`, `db-v2` is version 2 of `db`, and a secret
//! `legacy_pw` labelled `lockbox.family=db`, `lockbox.version=1` is version 1 of `db`. The
//! *current* version is the highest; the next is `F-v<highest + 1>` (skipping names taken by
//! other secrets). lockbox labels every version it creates with both labels.
//!
//! These helpers are `pub(crate)` for every command that creates versions (rotation, import,
//! compose stacks).

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::schedule;
use crate::commands::service::{Api, Filters, with_query};

/// The family a secret belongs to (optional: the name says it for `F-vN`).
pub(crate) const FAMILY_LABEL: &str = "lockbox.family";
/// The version number of a secret in its family.
pub(crate) const VERSION_LABEL: &str = "lockbox.version";
/// Set on a version that rotation replaced: when it will be (or may be) removed (RFC 3339).
pub(crate) const REMOVE_AFTER_LABEL: &str = "lockbox.remove-after";

/// `F-vN`.
pub(crate) fn version_name(family: &str, version: u64) -> String {
    format!("{family}-v{version}")
}

/// `F-vN` → `(F, N)` (`N` ≥ 1 without leading zeros; `F` not empty).
pub(crate) fn parse_version_name(name: &str) -> Option<(&str, u64)> {
    let (family, v) = name.rsplit_once("-v")?;
    if family.is_empty()
        || v.is_empty()
        || v.starts_with('0')
        || !v.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some((family, v.parse().ok()?))
}

/// The labels lockbox puts on version `version` of `family`.
pub(crate) fn version_labels(family: &str, version: u64) -> [(String, String); 2] {
    [
        (FAMILY_LABEL.to_owned(), family.to_owned()),
        (VERSION_LABEL.to_owned(), version.to_string()),
    ]
}

/// One secret seen as a version.
#[derive(Debug, Clone)]
pub(crate) struct SecretVersion {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) family: String,
    pub(crate) version: u64,
    pub(crate) labels: BTreeMap<String, String>,
    /// `CreatedAt` as the API sent it.
    pub(crate) created_at: String,
    /// `Version.Index` (for label updates).
    pub(crate) index: u64,
}

impl SecretVersion {
    /// Reads a secret as `GET /secrets` returns it.
    pub(crate) fn from_api(s: &Value) -> SecretVersion {
        let name = s
            .pointer("/Spec/Name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let labels: BTreeMap<String, String> = s
            .pointer("/Spec/Labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let parsed = parse_version_name(&name);
        let version = labels
            .get(VERSION_LABEL)
            .and_then(|v| v.parse::<u64>().ok())
            .or(parsed.map(|(_, v)| v))
            .unwrap_or(0);
        let family = labels
            .get(FAMILY_LABEL)
            .filter(|f| !f.is_empty())
            .cloned()
            .or(parsed.map(|(f, _)| f.to_owned()))
            .unwrap_or_else(|| name.clone());
        SecretVersion {
            id: s.get("ID").and_then(Value::as_str).unwrap_or("").to_owned(),
            family,
            version,
            created_at: s
                .get("CreatedAt")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            index: s
                .pointer("/Version/Index")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            labels,
            name,
        }
    }

    /// When a rotation scheduled this version's removal.
    pub(crate) fn remove_after(&self) -> Option<OffsetDateTime> {
        self.labels
            .get(REMOVE_AFTER_LABEL)
            .and_then(|t| schedule::parse_due(t))
    }
}

/// Every secret of `GET /secrets` as a version.
pub(crate) fn all_versions(list: &Value) -> Vec<SecretVersion> {
    list.as_array()
        .map(|a| a.iter().map(SecretVersion::from_api).collect())
        .unwrap_or_default()
}

/// The versions of one family, lowest first.
#[derive(Debug, Clone)]
pub(crate) struct Family {
    pub(crate) name: String,
    pub(crate) versions: Vec<SecretVersion>,
}

impl Family {
    /// The members of `family` among `all`.
    pub(crate) fn of(all: &[SecretVersion], family: &str) -> Family {
        let mut versions: Vec<SecretVersion> =
            all.iter().filter(|v| v.family == family).cloned().collect();
        versions.sort_by(|a, b| a.version.cmp(&b.version).then(a.name.cmp(&b.name)));
        Family {
            name: family.to_owned(),
            versions,
        }
    }

    /// The highest version.
    pub(crate) fn current(&self) -> Option<&SecretVersion> {
        self.versions.last()
    }

    /// The number and name of the next version: `highest + 1`, or higher when that name is
    /// taken by a secret outside the family.
    pub(crate) fn next(&self, all: &[SecretVersion]) -> (u64, String) {
        let taken: BTreeSet<String> = all.iter().map(|s| s.name.to_lowercase()).collect();
        let mut n = self.current().map_or(1, |c| c.version + 1);
        while taken.contains(&version_name(&self.name, n).to_lowercase()) {
            n += 1;
        }
        (n, version_name(&self.name, n))
    }

    pub(crate) fn by_id(&self, id: &str) -> Option<&SecretVersion> {
        self.versions.iter().find(|v| v.id == id)
    }
}

/// Every family of `all`, by name.
pub(crate) fn families(all: &[SecretVersion]) -> BTreeMap<String, Family> {
    let names: BTreeSet<&str> = all.iter().map(|v| v.family.as_str()).collect();
    names
        .into_iter()
        .map(|n| (n.to_owned(), Family::of(all, n)))
        .collect()
}

/// The family a user means by `arg`: the family of the secret named `arg` when there is one
/// (so `db-v3` means `db`), else `arg` when it has members, else `None`.
pub(crate) fn resolve_family(all: &[SecretVersion], arg: &str) -> Option<String> {
    if let Some(s) = all.iter().find(|s| s.name == arg) {
        return Some(s.family.clone());
    }
    all.iter().any(|s| s.family == arg).then(|| arg.to_owned())
}

/// The secret references of a service spec (`TaskTemplate.ContainerSpec.Secrets`).
pub(crate) fn secret_refs(spec: &Value) -> Vec<Value> {
    spec.pointer("/TaskTemplate/ContainerSpec/Secrets")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub(crate) fn ref_is_member(r: &Value, family: &Family) -> bool {
    let id = r.get("SecretID").and_then(Value::as_str).unwrap_or("");
    let name = r.get("SecretName").and_then(Value::as_str).unwrap_or("");
    family.by_id(id).is_some() || (id.is_empty() && family.versions.iter().any(|v| v.name == name))
}

/// Whether a service spec references any version of `family`.
pub(crate) fn uses_family(spec: &Value, family: &Family) -> bool {
    secret_refs(spec).iter().any(|r| ref_is_member(r, family))
}

/// Points every reference to a version of `family` at `(new_id, new_name)`, keeping its file
/// target, owner and mode. Returns the IDs it replaced.
pub(crate) fn repoint(
    spec: &mut Value,
    family: &Family,
    new_id: &str,
    new_name: &str,
) -> Vec<String> {
    let mut replaced = Vec::new();
    if let Some(refs) = spec
        .pointer_mut("/TaskTemplate/ContainerSpec/Secrets")
        .and_then(Value::as_array_mut)
    {
        for r in refs.iter_mut() {
            if ref_is_member(r, family) {
                if let Some(id) = r.get("SecretID").and_then(Value::as_str) {
                    replaced.push(id.to_owned());
                }
                r["SecretID"] = json!(new_id);
                r["SecretName"] = json!(new_name);
            }
        }
    }
    replaced
}

/// Who uses a version: services by their spec, and services whose old tasks still run it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage {
    /// Service name → the file targets (spec references).
    pub(crate) specs: BTreeMap<String, Vec<String>>,
    /// Services with live tasks still holding it although their spec moved on.
    pub(crate) draining: BTreeSet<String>,
}

/// Usage of every secret ID, from `GET /services` and `GET /tasks` (live tasks only).
pub(crate) fn usage(services: &Value, tasks: &Value) -> BTreeMap<String, Usage> {
    let mut out: BTreeMap<String, Usage> = BTreeMap::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    for s in services.as_array().into_iter().flatten() {
        let name = s
            .pointer("/Spec/Name")
            .and_then(Value::as_str)
            .unwrap_or("");
        names.insert(s.get("ID").and_then(Value::as_str).unwrap_or(""), name);
        for r in secret_refs(s.get("Spec").unwrap_or(&Value::Null)) {
            let id = r.get("SecretID").and_then(Value::as_str).unwrap_or("");
            let target = r
                .pointer("/File/Name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            out.entry(id.to_owned())
                .or_default()
                .specs
                .entry(name.to_owned())
                .or_default()
                .push(target);
        }
    }
    for t in tasks.as_array().into_iter().flatten() {
        let live = t.get("DesiredState").and_then(Value::as_str) == Some("running")
            && matches!(
                t.pointer("/Status/State").and_then(Value::as_str),
                Some(
                    "new"
                        | "pending"
                        | "assigned"
                        | "accepted"
                        | "preparing"
                        | "ready"
                        | "starting"
                        | "running"
                )
            );
        if !live {
            continue;
        }
        let svc = names
            .get(t.get("ServiceID").and_then(Value::as_str).unwrap_or(""))
            .copied()
            .unwrap_or("");
        let refs = t
            .pointer("/Spec/ContainerSpec/Secrets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for r in refs {
            let id = r.get("SecretID").and_then(Value::as_str).unwrap_or("");
            let u = out.entry(id.to_owned()).or_default();
            if !u.specs.contains_key(svc) {
                u.draining.insert(svc.to_owned());
            }
        }
    }
    out
}

impl Usage {
    /// `api (db), worker (db, /etc/app/db.conf), web (old tasks)`, or `-`.
    pub(crate) fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .specs
            .iter()
            .map(|(svc, targets)| format!("{svc} ({})", targets.join(", ")))
            .collect();
        parts.extend(self.draining.iter().map(|s| format!("{s} (old tasks)")));
        if parts.is_empty() {
            "-".into()
        } else {
            parts.join(", ")
        }
    }

    pub(crate) fn in_use(&self) -> bool {
        !self.specs.is_empty()
    }
}

/// Live tasks, for [`usage`].
pub(crate) async fn live_tasks(api: &Api<'_>) -> anyhow::Result<Value> {
    let mut f = Filters::default();
    f.add("desired-state", "running");
    Ok(api.get(&with_query("/tasks", &[f.query()])).await?)
}

const VERSIONS_HEADERS: [(&str, &str); 8] = [
    ("Version", "VERSION"),
    ("Name", "NAME"),
    ("ID", "ID"),
    ("CreatedAt", "CREATED"),
    ("State", "STATE"),
    ("RotationDue", "ROTATION DUE"),
    ("UsedBy", "USED BY"),
    ("Family", "FAMILY"),
];
const VERSIONS_FORMAT: &str = "table {{.Version}}\t{{.Name}}\t{{.ID}}\t{{.CreatedAt}}\t{{.State}}\t{{.RotationDue}}\t{{.UsedBy}}";

/// `lockbox secret versions NAME`: newest first.
pub(crate) async fn run(
    api: &Api<'_>,
    quiet: bool,
    format: Option<&str>,
    arg: &str,
) -> anyhow::Result<ExitCode> {
    let all = all_versions(&api.get("/secrets").await?);
    let Some(family) = resolve_family(&all, arg) else {
        anyhow::bail!("no such secret: {arg}");
    };
    let family = Family::of(&all, &family);
    let services = api.get("/services").await?;
    let tasks = live_tasks(api).await?;
    let usage = usage(&services, &tasks);
    let now = OffsetDateTime::now_utc();
    let current = family.current().map(|c| c.id.clone());
    let mut rows = Vec::new();
    for v in family.versions.iter().rev() {
        let u = usage.get(&v.id).cloned().unwrap_or_default();
        let state = if let Some(t) = v.remove_after() {
            format!("retired (remove after {})", schedule::format_time(t))
        } else if current.as_deref() == Some(v.id.as_str()) {
            "current".to_owned()
        } else {
            "old".to_owned()
        };
        let created = lockbox_format::parse_time(&v.created_at)
            .map(|t| {
                let d = now - t;
                let d = std::time::Duration::try_from(d).unwrap_or_default();
                format!("{} ago", lockbox_format::human_duration(d))
            })
            .unwrap_or_default();
        let due = match (
            v.labels.get(schedule::ROTATION_DUE_LABEL),
            schedule::overdue(&v.labels, now),
        ) {
            (Some(d), Some(true)) => format!("{d} (overdue)"),
            (Some(d), _) => d.clone(),
            (None, _) => String::new(),
        };
        rows.push(json!({
            "Version": v.version,
            "Name": v.name,
            "ID": v.id,
            "CreatedAt": created,
            "State": state,
            "RotationDue": due,
            "UsedBy": u.describe(),
            "Services": u.specs.keys().cloned().collect::<Vec<_>>(),
            "Family": family.name,
            "Labels": v.labels,
        }));
    }
    let format = match (format, quiet) {
        (_, true) => "{{.Name}}",
        (None | Some("") | Some("table"), false) => VERSIONS_FORMAT,
        (Some(f), false) => f,
    };
    let headers: serde_json::Map<String, Value> = VERSIONS_HEADERS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    print!("{}", lockbox_format::table(format, &headers, &rows)?);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(id: &str, name: &str, labels: &[(&str, &str)]) -> Value {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), json!(v)))
            .collect();
        json!({"ID": id, "Version": {"Index": 7}, "CreatedAt": "2026-01-01T00:00:00Z",
               "Spec": {"Name": name, "Labels": labels}})
    }

    #[test]
    fn names() {
        assert_eq!(parse_version_name("db-v2"), Some(("db", 2)));
        assert_eq!(
            parse_version_name("api-v2-key-v13"),
            Some(("api-v2-key", 13))
        );
        assert_eq!(parse_version_name("db-v0"), None);
        assert_eq!(parse_version_name("db-v02"), None);
        assert_eq!(parse_version_name("-v2"), None);
        assert_eq!(parse_version_name("db-v"), None);
        assert_eq!(parse_version_name("db-vx"), None);
        assert_eq!(parse_version_name("db_password"), None);
        assert_eq!(version_name("db", 3), "db-v3");
    }

    #[test]
    fn membership_and_next() {
        let list = json!([
            secret("a", "db", &[]),
            secret("b", "db-v2", &[]),
            secret(
                "c",
                "legacy_pw",
                &[(FAMILY_LABEL, "db"), (VERSION_LABEL, "1")]
            ),
            secret("d", "db-v3", &[(FAMILY_LABEL, "other")]),
            secret("e", "tok", &[(VERSION_LABEL, "4")]),
            secret("f", "other-v1", &[]),
        ]);
        let all = all_versions(&list);
        let db = Family::of(&all, "db");
        let names: Vec<(&str, u64)> = db
            .versions
            .iter()
            .map(|v| (v.name.as_str(), v.version))
            .collect();
        assert_eq!(names, vec![("db", 0), ("legacy_pw", 1), ("db-v2", 2)]);
        assert_eq!(db.current().map(|c| c.id.as_str()), Some("b"));
        // db-v3 is taken by a secret of another family: skip to v4.
        assert_eq!(db.next(&all), (4, "db-v4".to_string()));
        let other = Family::of(&all, "other");
        assert_eq!(other.versions.len(), 2);
        assert_eq!(other.current().map(|c| c.name.as_str()), Some("db-v3"));
        assert_eq!(Family::of(&all, "tok").next(&all), (5, "tok-v5".into()));
        assert_eq!(Family::of(&all, "new").next(&all), (1, "new-v1".into()));
        assert_eq!(resolve_family(&all, "db-v2").as_deref(), Some("db"));
        assert_eq!(resolve_family(&all, "legacy_pw").as_deref(), Some("db"));
        assert_eq!(resolve_family(&all, "db").as_deref(), Some("db"));
        assert_eq!(resolve_family(&all, "other").as_deref(), Some("other"));
        assert_eq!(resolve_family(&all, "nope"), None);
        assert_eq!(families(&all).len(), 3);
    }

    #[test]
    fn repointing_keeps_targets() {
        let all = all_versions(&json!([
            secret("a", "db-v1", &[]),
            secret("x", "other", &[])
        ]));
        let db = Family::of(&all, "db");
        let mut spec = json!({"TaskTemplate": {"ContainerSpec": {"Secrets": [
            {"SecretID": "a", "SecretName": "db-v1", "File": {"Name": "db", "UID": "0", "GID": "0", "Mode": 292}},
            {"SecretID": "x", "SecretName": "other", "File": {"Name": "other"}},
            {"SecretID": "a", "SecretName": "db-v1", "File": {"Name": "/etc/db.conf", "UID": "1", "GID": "2", "Mode": 256}},
        ]}}});
        assert!(uses_family(&spec, &db));
        assert_eq!(repoint(&mut spec, &db, "n", "db-v2"), vec!["a", "a"]);
        let refs = secret_refs(&spec);
        assert_eq!(refs[0]["SecretID"], "n");
        assert_eq!(refs[0]["SecretName"], "db-v2");
        assert_eq!(refs[0]["File"]["Name"], "db");
        assert_eq!(refs[1]["SecretID"], "x");
        assert_eq!(
            refs[2]["File"],
            json!({"Name": "/etc/db.conf", "UID": "1", "GID": "2", "Mode": 256})
        );
        assert!(!uses_family(&spec, &db));
    }

    #[test]
    fn usage_by_specs_and_tasks() {
        let services = json!([
            {"ID": "s1", "Spec": {"Name": "api", "TaskTemplate": {"ContainerSpec": {"Secrets": [
                {"SecretID": "new", "File": {"Name": "db"}}]}}}},
        ]);
        let tasks = json!([
            {"ServiceID": "s1", "DesiredState": "running", "Status": {"State": "running"},
             "Spec": {"ContainerSpec": {"Secrets": [{"SecretID": "old"}]}}},
            {"ServiceID": "s1", "DesiredState": "shutdown", "Status": {"State": "running"},
             "Spec": {"ContainerSpec": {"Secrets": [{"SecretID": "older"}]}}},
        ]);
        let u = usage(&services, &tasks);
        assert_eq!(u["new"].describe(), "api (db)");
        assert_eq!(u["old"].describe(), "api (old tasks)");
        assert!(!u["old"].in_use());
        assert!(!u.contains_key("older"));
    }
}
