//! `docker service ps` / `docker node ps` task tables (docker/cli
//! `cli/command/task/print.go` and `formatter.go`).

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use time::OffsetDateTime;

use crate::display::{ellipsis, pretty_print, truncate_id};
use crate::service::{headers, s, u};
use crate::{FormatError, gotime, natural, reference};

const DEFAULT_TABLE_FORMAT: &str = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}";
const RAW_FORMAT: &str = "id: {{.ID}}\\nname: {{.Name}}\\nimage: {{.Image}}\\nnode: {{.Node}}\\ndesired_state: {{.DesiredState}}\\ncurrent_state: {{.CurrentState}}\\nerror: {{.Error}}\\nports: {{.Ports}}\\n";
const MAX_ERR_LENGTH: usize = 30;

const TASK_HEADERS: [(&str, &str); 8] = [
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Image", "IMAGE"),
    ("Node", "NODE"),
    ("DesiredState", "DESIRED STATE"),
    ("CurrentState", "CURRENT STATE"),
    ("Error", "ERROR"),
    ("Ports", "PORTS"),
];

/// How IDs are shown: what docker's `idresolver` found (service ID to
/// service name, node ID to node name or hostname). IDs not in a map are
/// shown as they are (as with `--no-resolve`).
#[derive(Debug, Default, Clone)]
pub struct TaskNames {
    /// Service ID to name.
    pub services: BTreeMap<String, String>,
    /// Node ID to name.
    pub nodes: BTreeMap<String, String>,
}

fn created(task: &Json) -> Option<OffsetDateTime> {
    gotime::parse_time(s(task, "/CreatedAt")).ok()
}

/// The task table of `docker service ps` / `docker node ps` for `tasks` (as
/// `GET /tasks` returns them, any order).
///
/// Tasks are named `service.slot` (`service.nodeID` without a slot), sorted
/// by name (natural order) then newest first; with a table format a task
/// with the same name as the row above is shown as ` \_ name`. `trunc`
/// (docker's default, off with `--no-trunc` or `-q`) shortens IDs to 12
/// characters, errors to 30 and drops image digests. `format`: `None`,
/// `"table"`, `"raw"`, `"json"`, `"table <tmpl>"` or a template; `quiet`
/// applies to the default table and `raw`.
///
/// Row fields: `.ID`, `.Name`, `.Image`, `.Node`, `.DesiredState`
/// (`Running`), `.CurrentState` (`Running 3 seconds ago`, relative to
/// `now`), `.Error` (quoted), `.Ports` (`*:8080->80/tcp`).
pub fn task_list(
    tasks: &[Json],
    names: &TaskNames,
    format: Option<&str>,
    quiet: bool,
    trunc: bool,
    now: OffsetDateTime,
) -> Result<String, FormatError> {
    let source = match format {
        None | Some("") => "table",
        Some(f) => f,
    };
    let format = match (source, quiet) {
        ("table", true) => "{{.ID}}",
        ("table", false) => DEFAULT_TABLE_FORMAT,
        ("raw", true) => "id: {{.ID}}",
        ("raw", false) => RAW_FORMAT,
        (other, _) => other,
    };
    let mut named: Vec<(String, &Json)> = tasks
        .iter()
        .map(|t| {
            let service_id = s(t, "/ServiceID");
            let service = names
                .services
                .get(service_id)
                .cloned()
                .unwrap_or_else(|| service_id.to_string());
            let slot = t.pointer("/Slot").and_then(Json::as_i64).unwrap_or(0);
            let name = if slot != 0 {
                format!("{service}.{slot}")
            } else {
                format!("{service}.{}", s(t, "/NodeID"))
            };
            (name, t)
        })
        .collect();
    named.sort_by(|(na, a), (nb, b)| {
        if na != nb {
            natural::natural_cmp(na, nb)
        } else {
            created(b).cmp(&created(a))
        }
    });
    let indent = if format.starts_with("table") {
        " \\_ "
    } else {
        ""
    };
    let mut prev = String::new();
    let mut rows = Vec::with_capacity(named.len());
    for (name, t) in named {
        let shown = if name == prev {
            format!("{indent}{name}")
        } else {
            name.clone()
        };
        prev = name;
        let node_id = s(t, "/NodeID");
        let node = names
            .nodes
            .get(node_id)
            .cloned()
            .unwrap_or_else(|| node_id.to_string());
        let id = s(t, "/ID");
        let image = s(t, "/Spec/ContainerSpec/Image");
        let mut err = s(t, "/Status/Err").to_string();
        if trunc {
            err = ellipsis(&err, MAX_ERR_LENGTH);
        }
        if !err.is_empty() {
            err = format!("\"{err}\"");
        }
        let since = gotime::since(gotime::parse_time(s(t, "/Status/Timestamp")).ok(), now);
        let current = format!(
            "{} {} ago",
            pretty_print(s(t, "/Status/State")),
            gotime::human_duration(since).to_lowercase()
        );
        let ports: Vec<String> = t
            .pointer("/Status/PortStatus/Ports")
            .and_then(Json::as_array)
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        format!(
                            "*:{}->{}/{}",
                            u(p, "/PublishedPort"),
                            u(p, "/TargetPort"),
                            s(p, "/Protocol")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        rows.push(json!({
            "ID": if trunc { truncate_id(id) } else { id.to_string() },
            "Name": shown,
            "Image": if trunc { reference::image_display(image) } else { image.to_string() },
            "Node": node,
            "DesiredState": pretty_print(s(t, "/DesiredState")),
            "CurrentState": current,
            "Error": err,
            "Ports": ports.join(","),
            "$type": "*task.taskContext",
        }));
    }
    crate::table(format, &headers(&TASK_HEADERS), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_history_and_states() {
        let now = gotime::parse_time("2026-11-23T11:40:00Z").unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let tasks = vec![
            json!({"ID": "nswvo6ocmwuiaaaaaaaaaaaaa", "CreatedAt": "2026-11-23T11:30:00Z", "ServiceID": "s1", "Slot": 1, "NodeID": "n1", "Spec": {"ContainerSpec": {"Image": "busybox:local"}}, "Status": {"Timestamp": "2026-11-23T11:38:00Z", "State": "shutdown"}, "DesiredState": "shutdown"}),
            json!({"ID": "28rkafn2buumaaaaaaaaaaaaa", "CreatedAt": "2026-11-23T11:37:00Z", "ServiceID": "s1", "Slot": 1, "NodeID": "n1", "Spec": {"ContainerSpec": {"Image": "busybox:local"}}, "Status": {"Timestamp": "2026-11-23T11:39:59.5Z", "State": "running"}, "DesiredState": "running"}),
            json!({"ID": "pvflcg9x9g7zaaaaaaaaaaaaa", "CreatedAt": "2026-11-23T11:37:00Z", "ServiceID": "s2", "NodeID": "n1", "Spec": {"ContainerSpec": {"Image": "busybox:local"}}, "Status": {"Timestamp": "2026-11-23T11:39:00Z", "State": "failed", "Err": "starting container failed: no such image"}, "DesiredState": "shutdown"}),
        ];
        let mut names = TaskNames::default();
        names.services.insert("s1".into(), "web".into());
        names.nodes.insert("n1".into(), "vm".into());
        let out = task_list(&tasks, &names, None, false, true, now);
        assert_eq!(
            out,
            Ok("ID             NAME        IMAGE           NODE      DESIRED STATE   CURRENT STATE                    ERROR                              PORTS\n\
                pvflcg9x9g7z   s2.n1       busybox:local   vm        Shutdown        Failed about a minute ago        \"starting container failed: no…\"   \n\
                28rkafn2buum   web.1       busybox:local   vm        Running         Running less than a second ago                                      \n\
                nswvo6ocmwui    \\_ web.1   busybox:local   vm        Shutdown        Shutdown 2 minutes ago                                              \n"
                .into())
        );
        let out = task_list(&tasks, &names, Some("{{.Name}}|{{.ID}}"), true, false, now);
        assert_eq!(
            out,
            Ok("s2.n1|pvflcg9x9g7zaaaaaaaaaaaaa\nweb.1|28rkafn2buumaaaaaaaaaaaaa\nweb.1|nswvo6ocmwuiaaaaaaaaaaaaa\n".into())
        );
    }
}
