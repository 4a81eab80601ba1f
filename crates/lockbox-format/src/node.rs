//! `docker node ls` and `docker node inspect` (docker/cli
//! `cli/command/node/formatter.go`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Value as Json, json};

use crate::display::{bytes_size, pretty_print};
use crate::service::{headers, i, ptr, s};
use crate::{FormatError, gostruct, gotime, natural};

const DEFAULT_TABLE_FORMAT: &str = "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}";
const RAW_FORMAT: &str = "node_id: {{.ID}}\\nhostname: {{.Hostname}}\\nstatus: {{.Status}}\\navailability: {{.Availability}}\\nmanager_status: {{.ManagerStatus}}\\n";
const PRETTY_KEY: &str = "pretty";

const NODE_HEADERS: [(&str, &str); 8] = [
    ("ID", "ID"),
    ("Self", ""),
    ("Hostname", "HOSTNAME"),
    ("Status", "STATUS"),
    ("Availability", "AVAILABILITY"),
    ("ManagerStatus", "MANAGER STATUS"),
    ("EngineVersion", "ENGINE VERSION"),
    ("TLSStatus", "TLS STATUS"),
];

fn tls_zero(t: &Json) -> bool {
    ["TrustRoot", "CertIssuerSubject", "CertIssuerPublicKey"]
        .iter()
        .all(|k| t.get(*k).and_then(Json::as_str).unwrap_or("").is_empty())
}

fn tls_fields(t: Option<&Json>) -> Json {
    let t = t.cloned().unwrap_or(Json::Null);
    json!({
        "TrustRoot": t.get("TrustRoot").cloned().unwrap_or(Json::Null),
        "CertIssuerSubject": t.get("CertIssuerSubject").cloned().unwrap_or(Json::Null),
        "CertIssuerPublicKey": t.get("CertIssuerPublicKey").cloned().unwrap_or(Json::Null),
    })
}

/// `docker node ls` for `nodes` (as `GET /nodes` returns them; rows sorted
/// by hostname in natural order). `info` is `GET /info` (docker reads it
/// unless `quiet` or there are no nodes): the node whose ID is
/// `Swarm.NodeID` is marked `*` (`.Self`), `Swarm.Cluster.TLSInfo` gives
/// `.TLSStatus` (`Ready`, `Needs Rotation`, `Unknown`).
///
/// `format`: `None`/`"table"` (`ID HOSTNAME STATUS AVAILABILITY MANAGER
/// STATUS ENGINE VERSION`), `"raw"`, `"json"`, `"table <tmpl>"` or a
/// template; `quiet` (IDs) applies to the default table and `raw`.
pub fn node_list(
    nodes: &[Json],
    info: Option<&Json>,
    format: Option<&str>,
    quiet: bool,
) -> Result<String, FormatError> {
    let source = match format {
        None | Some("") => "table",
        Some(f) => f,
    };
    let format = match (source, quiet) {
        ("table", true) => "{{.ID}}",
        ("table", false) => DEFAULT_TABLE_FORMAT,
        ("raw", true) => "node_id: {{.ID}}",
        ("raw", false) => RAW_FORMAT,
        ("pretty", _) => return Ok(String::new()),
        (other, _) => other,
    };
    let self_id = info.map(|i| s(i, "/Swarm/NodeID")).unwrap_or("");
    let cluster_tls = info
        .and_then(|i| ptr(i, "/Swarm/Cluster"))
        .map(|c| tls_fields(c.get("TLSInfo")));
    let mut sorted: Vec<&Json> = nodes.iter().collect();
    sorted.sort_by(|a, b| {
        natural::natural_cmp(s(a, "/Description/Hostname"), s(b, "/Description/Hostname"))
    });
    let rows: Vec<Json> = sorted
        .into_iter()
        .map(|n| {
            let manager = match ptr(n, "/ManagerStatus") {
                Some(m) if m.get("Leader").and_then(Json::as_bool) == Some(true) => {
                    "Leader".to_string()
                }
                Some(m) => s(m, "/Reachability").to_string(),
                None => String::new(),
            };
            let node_tls = tls_fields(n.pointer("/Description/TLSInfo"));
            let tls_status = match &cluster_tls {
                Some(c) if !tls_zero(c) && !tls_zero(&node_tls) => {
                    if *c == node_tls {
                        "Ready"
                    } else {
                        "Needs Rotation"
                    }
                }
                _ => "Unknown",
            };
            json!({
                "ID": s(n, "/ID"),
                "Self": !s(n, "/ID").is_empty() && s(n, "/ID") == self_id,
                "Hostname": s(n, "/Description/Hostname"),
                "Status": pretty_print(s(n, "/Status/State")),
                "Availability": pretty_print(s(n, "/Spec/Availability")),
                "ManagerStatus": pretty_print(&manager),
                "EngineVersion": s(n, "/Description/Engine/EngineVersion"),
                "TLSStatus": tls_status,
                "$type": "*node.nodeContext",
            })
        })
        .collect();
    crate::table(format, &headers(&NODE_HEADERS), &rows)
}

/// `docker node inspect [--pretty] [--format F]` for the nodes (as `GET
/// /nodes/{id}` returned them, in argument order): stdout and the errors.
/// JSON and templates as [`crate::service_inspect_with_errors`] (Go's
/// `swarm.Node`); `pretty` gives [`node_pretty`] for each.
pub fn node_inspect_with_errors(
    nodes: &[Json],
    format: Option<&str>,
    pretty: bool,
) -> (String, Vec<FormatError>) {
    let f = if pretty {
        PRETTY_KEY
    } else {
        format.unwrap_or("")
    };
    if f == PRETTY_KEY {
        let mut out = String::new();
        for n in nodes {
            out.push_str(&node_pretty(n));
            out.push('\n');
        }
        return (out, Vec::new());
    }
    if f.starts_with(PRETTY_KEY) {
        return (
            String::new(),
            vec![FormatError::Usage(
                "cannot supply extra formatting options to the pretty template".into(),
            )],
        );
    }
    let json: Vec<Json> = nodes
        .iter()
        .map(|v| gostruct::encode(&gostruct::NODE, Some(v)))
        .collect();
    let views: Vec<Json> = nodes
        .iter()
        .map(|v| gostruct::view(&gostruct::NODE, Some(v)))
        .collect();
    crate::inspect_typed(&json, &views, f, &node_types())
}

/// Go type names along field paths of `swarm.Node`, for template errors.
fn node_types() -> Vec<(String, String)> {
    [
        ("", "swarm.Node"),
        ("Version", "swarm.Version"),
        ("Spec", "swarm.NodeSpec"),
        ("Description", "swarm.NodeDescription"),
        ("Description.Platform", "swarm.Platform"),
        ("Description.Resources", "swarm.Resources"),
        ("Description.Engine", "swarm.EngineDescription"),
        ("Description.TLSInfo", "swarm.TLSInfo"),
        ("Status", "swarm.NodeStatus"),
        ("ManagerStatus", "*swarm.ManagerStatus"),
    ]
    .iter()
    .map(|(p, t)| ((*p).to_string(), (*t).to_string()))
    .collect()
}

fn sorted_labels(v: Option<&Json>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = v
        .and_then(Json::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The `node inspect --pretty` text of one node (docker's
/// `nodeInspectPrettyTemplate`, without the newline docker adds after it).
pub fn node_pretty(n: &Json) -> String {
    let mut o = String::new();
    let _ = write!(o, "ID:\t\t\t{}", s(n, "/ID"));
    if !s(n, "/Spec/Name").is_empty() {
        let _ = write!(o, "\nName:\t\t\t{}", s(n, "/Spec/Name"));
    }
    let labels = sorted_labels(ptr(n, "/Spec/Labels"));
    if !labels.is_empty() {
        o.push_str("\nLabels:");
        for (k, v) in &labels {
            let _ = write!(o, "\n - {k}");
            if !v.is_empty() {
                let _ = write!(o, "={v}");
            }
        }
    }
    let created = gotime::parse_time(s(n, "/CreatedAt")).ok();
    let _ = write!(
        o,
        "\nHostname:              \t{}\nJoined at:             \t{}\nStatus:\n State:\t\t\t{}",
        s(n, "/Description/Hostname"),
        pretty_print(&gotime::go_time_string(created)),
        pretty_print(s(n, "/Status/State"))
    );
    if !s(n, "/Status/Message").is_empty() {
        let _ = write!(
            o,
            "\n Message:              \t{}",
            pretty_print(s(n, "/Status/Message"))
        );
    }
    let _ = write!(
        o,
        "\n Availability:         \t{}",
        pretty_print(s(n, "/Spec/Availability"))
    );
    if !s(n, "/Status/Addr").is_empty() {
        let _ = write!(o, "\n Address:\t\t{}", s(n, "/Status/Addr"));
    }
    if let Some(m) = ptr(n, "/ManagerStatus") {
        let leader = m.get("Leader").and_then(Json::as_bool).unwrap_or(false);
        let _ = write!(
            o,
            "\nManager Status:\n Address:\t\t{}\n Raft Status:\t\t{}\n Leader:\t\t{}",
            s(m, "/Addr"),
            pretty_print(s(m, "/Reachability")),
            if leader { "Yes" } else { "No" }
        );
    }
    let cpus = i(n, "/Description/Resources/NanoCPUs") / 1_000_000_000;
    let mem = i(n, "/Description/Resources/MemoryBytes");
    let _ = write!(
        o,
        "\nPlatform:\n Operating System:\t{}\n Architecture:\t\t{}\nResources:\n CPUs:\t\t\t{}\n Memory:\t\t{}",
        s(n, "/Description/Platform/OS"),
        s(n, "/Description/Platform/Architecture"),
        cpus,
        if mem == 0 {
            String::new()
        } else {
            bytes_size(mem as f64)
        }
    );
    if let Some(plugins) = ptr(n, "/Description/Engine/Plugins")
        .and_then(Json::as_array)
        .filter(|p| !p.is_empty())
    {
        let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for p in plugins {
            by_type
                .entry(s(p, "/Type").to_string())
                .or_default()
                .push(s(p, "/Name").to_string());
        }
        o.push_str("\nPlugins:");
        for (k, v) in &by_type {
            let joined = v.join(", ");
            let _ = write!(o, "\n {k}:");
            if !joined.is_empty() {
                let _ = write!(o, "\t\t{joined}");
            }
        }
    }
    let _ = write!(
        o,
        "\nEngine Version:\t\t{}",
        s(n, "/Description/Engine/EngineVersion")
    );
    let engine_labels = sorted_labels(ptr(n, "/Description/Engine/Labels"));
    if !engine_labels.is_empty() {
        o.push_str("\nEngine Labels:");
        for (k, v) in &engine_labels {
            let _ = write!(o, "\n - {k}");
            if !v.is_empty() {
                let _ = write!(o, "={v}");
            }
        }
    }
    let tls = tls_fields(n.pointer("/Description/TLSInfo"));
    if !tls_zero(&tls) {
        let _ = write!(
            o,
            "\nTLS Info:\n TrustRoot:\n{}\n Issuer Subject:\t{}\n Issuer Public Key:\t{}",
            s(&tls, "/TrustRoot"),
            s(&tls, "/CertIssuerSubject"),
            s(&tls, "/CertIssuerPublicKey")
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_marks_self() {
        let nodes = vec![
            json!({"ID": "b2", "Description": {"Hostname": "node-10", "Engine": {"EngineVersion": "1.0"}}, "Status": {"State": "ready"}, "Spec": {"Availability": "drain", "Role": "worker"}}),
            json!({"ID": "a1", "Description": {"Hostname": "node-9", "Engine": {"EngineVersion": "1.0"}}, "Status": {"State": "ready"}, "Spec": {"Availability": "active"}, "ManagerStatus": {"Leader": true, "Reachability": "reachable"}}),
        ];
        let info = json!({"Swarm": {"NodeID": "a1"}});
        assert_eq!(
            node_list(&nodes, Some(&info), None, false),
            Ok(
                "ID        HOSTNAME   STATUS    AVAILABILITY   MANAGER STATUS   ENGINE VERSION\n\
                a1 *      node-9     Ready     Active         Leader           1.0\n\
                b2        node-10    Ready     Drain                           1.0\n"
                    .into()
            )
        );
        assert_eq!(
            node_list(
                &nodes,
                None,
                Some("{{.Hostname}} {{.Self}} {{.TLSStatus}}"),
                false
            ),
            Ok("node-9 false Unknown\nnode-10 false Unknown\n".into())
        );
    }
}
