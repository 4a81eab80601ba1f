//! `docker service ls` and `docker service inspect` (docker/cli
//! `cli/command/service/formatter.go`).

use std::fmt::Write as _;

use serde_json::{Map, Value as Json, json};
use time::OffsetDateTime;

use crate::display::{bytes_size, fmt_v, fmt_v32, truncate_id};
use crate::{FormatError, gostruct, gotime, natural, reference};

const DEFAULT_TABLE_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}";
const RAW_FORMAT: &str = "id: {{.ID}}\\nname: {{.Name}}\\nmode: {{.Mode}}\\nreplicas: {{.Replicas}}\\nimage: {{.Image}}\\nports: {{.Ports}}\\n";
const PRETTY_KEY: &str = "pretty";

pub(crate) fn ptr<'a>(v: &'a Json, path: &str) -> Option<&'a Json> {
    v.pointer(path).filter(|x| !x.is_null())
}

pub(crate) fn s<'a>(v: &'a Json, path: &str) -> &'a str {
    v.pointer(path).and_then(Json::as_str).unwrap_or("")
}

pub(crate) fn u(v: &Json, path: &str) -> u64 {
    v.pointer(path).and_then(Json::as_u64).unwrap_or(0)
}

pub(crate) fn i(v: &Json, path: &str) -> i64 {
    v.pointer(path).and_then(Json::as_i64).unwrap_or(0)
}

fn mode(svc: &Json) -> &'static str {
    if ptr(svc, "/Spec/Mode/Global").is_some() {
        "global"
    } else if ptr(svc, "/Spec/Mode/Replicated").is_some() {
        "replicated"
    } else if ptr(svc, "/Spec/Mode/ReplicatedJob").is_some() {
        "replicated job"
    } else if ptr(svc, "/Spec/Mode/GlobalJob").is_some() {
        "global job"
    } else {
        ""
    }
}

fn replicas(svc: &Json) -> String {
    let running = u(svc, "/ServiceStatus/RunningTasks");
    let desired = u(svc, "/ServiceStatus/DesiredTasks");
    let completed = u(svc, "/ServiceStatus/CompletedTasks");
    if ptr(svc, "/Spec/Mode/ReplicatedJob").is_some() {
        let total = u(svc, "/Spec/Mode/ReplicatedJob/TotalCompletions");
        return format!("{running}/{desired} ({completed}/{total} completed)");
    }
    if ptr(svc, "/Spec/Mode/GlobalJob").is_some() {
        return format!(
            "{running}/{desired} ({completed}/{} completed)",
            desired + completed
        );
    }
    let max = if mode(svc) == "replicated" {
        u(svc, "/Spec/TaskTemplate/Placement/MaxReplicas")
    } else {
        0
    };
    if max > 0 {
        format!("{running}/{desired} (max {max} per node)")
    } else {
        format!("{running}/{desired}")
    }
}

/// `serviceContext.Ports`: ingress ports, grouped into ranges.
fn ports(svc: &Json) -> String {
    let Some(list) = ptr(svc, "/Endpoint/Ports").and_then(Json::as_array) else {
        return String::new();
    };
    let mut ports: Vec<(String, u64, u64, String)> = list
        .iter()
        .map(|p| {
            (
                s(p, "/Protocol").to_string(),
                u(p, "/PublishedPort"),
                u(p, "/TargetPort"),
                s(p, "/PublishMode").to_string(),
            )
        })
        .collect();
    ports.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    #[derive(Default)]
    struct Range {
        p_start: u64,
        p_end: u64,
        t_start: u64,
        t_end: u64,
        protocol: String,
    }
    fn show(r: &Range) -> String {
        let public = if r.p_end > r.p_start {
            format!("{}-{}", r.p_start, r.p_end)
        } else {
            r.p_start.to_string()
        };
        let target = if r.t_end > r.t_start {
            format!("{}-{}", r.t_start, r.t_end)
        } else {
            r.t_start.to_string()
        };
        format!("*:{public}->{target}/{}", r.protocol)
    }
    let mut out = Vec::new();
    let mut pr = Range::default();
    for (protocol, published, target, publish_mode) in ports {
        if publish_mode != "ingress" {
            continue;
        }
        let is_range = pr.t_end != pr.t_start;
        let overlaps = target <= pr.t_end;
        // Go computes these differences on uint32 (wrapping).
        let gap = |a: u64, b: u64| (a as u32).wrapping_sub(b as u32) > 1;
        if protocol != pr.protocol
            || gap(published, pr.p_end)
            || gap(target, pr.t_end)
            || (is_range && overlaps)
        {
            if pr.p_start > 0 {
                out.push(show(&pr));
            }
            pr = Range {
                p_start: published,
                p_end: published,
                t_start: target,
                t_end: target,
                protocol,
            };
            continue;
        }
        pr.p_end = published;
        pr.t_end = target;
    }
    if pr.p_start > 0 {
        out.push(show(&pr));
    }
    out.join(", ")
}

/// `docker service ls` output for `services` (as `GET /services?status=true`
/// returns them, any order: rows are sorted by name in natural order).
///
/// `format`: `None`/`""`/`"table"` is the default table
/// `ID NAME MODE REPLICAS IMAGE PORTS`, `"raw"` docker's raw format,
/// `"json"`, `"table <tmpl>"` or a Go template. `quiet` prints IDs (full
/// length) but only with the default table or `raw`, as docker.
///
/// Row fields: `.ID` (12 characters), `.Name`, `.Mode` (`replicated`,
/// `global`, `replicated job`, `global job`), `.Replicas` (`1/1`,
/// `1/2 (max 1 per node)`, `0/1 (1/1 completed)` for jobs; from
/// `ServiceStatus`), `.Image` (a tagged image without its digest),
/// `.Ports` (`*:8080->80/tcp`, ranges grouped).
pub fn service_list(
    services: &[Json],
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
        ("raw", true) => "id: {{.ID}}",
        ("raw", false) => RAW_FORMAT,
        (other, _) => other,
    };
    let mut sorted: Vec<&Json> = services.iter().collect();
    sorted.sort_by(|a, b| natural::natural_cmp(s(a, "/Spec/Name"), s(b, "/Spec/Name")));
    let rows: Vec<Json> = sorted
        .into_iter()
        .map(|svc| {
            let image = reference::image_display(s(svc, "/Spec/TaskTemplate/ContainerSpec/Image"));
            json!({
                "ID": truncate_id(s(svc, "/ID")),
                "Name": s(svc, "/Spec/Name"),
                "Mode": mode(svc),
                "Replicas": replicas(svc),
                "Image": image,
                "Ports": ports(svc),
                "$type": "*service.serviceContext",
            })
        })
        .collect();
    crate::table(format, &headers(&SERVICE_HEADERS), &rows)
}

const SERVICE_HEADERS: [(&str, &str); 6] = [
    ("ID", "ID"),
    ("Name", "NAME"),
    ("Mode", "MODE"),
    ("Replicas", "REPLICAS"),
    ("Image", "IMAGE"),
    ("Ports", "PORTS"),
];

pub(crate) fn headers(pairs: &[(&str, &str)]) -> Map<String, Json> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), Json::String((*v).to_string())))
        .collect()
}

/// `docker service inspect [--pretty] [--format F]` for the services as
/// `GET /services/{id}?insertDefaults=true` returned them, in argument
/// order. Returns stdout and the errors (docker's stderr lines).
///
/// Without a format the output is the JSON docker prints: the values
/// re-encoded as the CLI's Go types do it (fields in declaration order,
/// unknown fields dropped, zero values added, map keys sorted, `<`, `>`,
/// `&` escaped). `pretty` (or format `"pretty"`) gives the human friendly
/// form, `now` being used for "Started: 2 minutes ago"; a format that only
/// starts with `pretty` is refused like docker does.
pub fn service_inspect_with_errors(
    services: &[Json],
    format: Option<&str>,
    pretty: bool,
    now: OffsetDateTime,
) -> (String, Vec<FormatError>) {
    let f = if pretty {
        PRETTY_KEY
    } else {
        format.unwrap_or("")
    };
    if f == PRETTY_KEY {
        let mut out = String::new();
        for svc in services {
            out.push_str(&service_pretty(svc, now));
            out.push('\n');
        }
        return (out, Vec::new());
    }
    if f.starts_with(PRETTY_KEY) {
        return (
            String::new(),
            vec![FormatError::Usage(
                "Cannot supply extra formatting options to the pretty template".into(),
            )],
        );
    }
    let json: Vec<Json> = services
        .iter()
        .map(|v| gostruct::encode(&gostruct::SERVICE, Some(v)))
        .collect();
    let views: Vec<Json> = services
        .iter()
        .map(|v| gostruct::view(&gostruct::SERVICE, Some(v)))
        .collect();
    crate::inspect_typed(&json, &views, f, &service_types())
}

/// Go type names along field paths of `swarm.Service`, for template
/// errors (`*T` for pointers: they may be nil).
fn service_types() -> Vec<(String, String)> {
    const SPEC: [(&str, &str); 18] = [
        ("TaskTemplate", "swarm.TaskSpec"),
        ("TaskTemplate.ContainerSpec", "*swarm.ContainerSpec"),
        ("TaskTemplate.ContainerSpec.Privileges", "*swarm.Privileges"),
        ("TaskTemplate.ContainerSpec.DNSConfig", "*swarm.DNSConfig"),
        (
            "TaskTemplate.NetworkAttachmentSpec",
            "*swarm.NetworkAttachmentSpec",
        ),
        ("TaskTemplate.Resources", "*swarm.ResourceRequirements"),
        ("TaskTemplate.Resources.Limits", "*swarm.Limit"),
        ("TaskTemplate.Resources.Reservations", "*swarm.Resources"),
        ("TaskTemplate.RestartPolicy", "*swarm.RestartPolicy"),
        ("TaskTemplate.Placement", "*swarm.Placement"),
        ("TaskTemplate.LogDriver", "*swarm.Driver"),
        ("Mode", "swarm.ServiceMode"),
        ("Mode.Replicated", "*swarm.ReplicatedService"),
        ("Mode.Global", "*swarm.GlobalService"),
        ("Mode.ReplicatedJob", "*swarm.ReplicatedJob"),
        ("UpdateConfig", "*swarm.UpdateConfig"),
        ("RollbackConfig", "*swarm.UpdateConfig"),
        ("EndpointSpec", "*swarm.EndpointSpec"),
    ];
    let mut t: Vec<(String, String)> = [
        ("", "swarm.Service"),
        ("Version", "swarm.Version"),
        ("Spec", "swarm.ServiceSpec"),
        ("PreviousSpec", "*swarm.ServiceSpec"),
        ("Endpoint", "swarm.Endpoint"),
        ("Endpoint.Spec", "swarm.EndpointSpec"),
        ("UpdateStatus", "*swarm.UpdateStatus"),
        ("ServiceStatus", "*swarm.ServiceStatus"),
        ("JobStatus", "*swarm.JobStatus"),
        ("JobStatus.JobIteration", "swarm.Version"),
        ("Spec.Mode.GlobalJob", "*swarm.GlobalJob"),
    ]
    .iter()
    .map(|(p, t)| ((*p).to_string(), (*t).to_string()))
    .collect();
    for prefix in ["Spec", "PreviousSpec"] {
        for (p, ty) in SPEC {
            t.push((format!("{prefix}.{p}"), ty.to_string()));
        }
    }
    t
}

fn ago(t: &str, now: OffsetDateTime) -> String {
    gotime::ago(gotime::parse_time(t).ok(), now)
}

fn strings(v: &Json, path: &str) -> Vec<String> {
    ptr(v, path)
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn sorted_map(v: &Json, path: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ptr(v, path)
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

/// Go's `%v` of a `[]string`: `[a b]`.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// The `service inspect --pretty` text of one service (docker's
/// `serviceInspectPrettyTemplate`, without the final newline docker adds
/// after each service).
pub fn service_pretty(svc: &Json, now: OffsetDateTime) -> String {
    let mut o = String::new();
    let spec = ptr(svc, "/Spec").cloned().unwrap_or(Json::Null);
    let task = ptr(&spec, "/TaskTemplate").cloned().unwrap_or(Json::Null);
    let cs = ptr(&task, "/ContainerSpec").cloned().unwrap_or(Json::Null);
    let _ = write!(
        o,
        "\nID:\t\t{}\nName:\t\t{}",
        s(svc, "/ID"),
        s(&spec, "/Name")
    );
    let labels = sorted_map(&spec, "/Labels");
    if !labels.is_empty() {
        o.push_str("\nLabels:");
        for (k, v) in &labels {
            let _ = write!(o, "\n {k}");
            if !v.is_empty() {
                let _ = write!(o, "={v}");
            }
        }
    }
    o.push_str("\nService Mode:");
    if ptr(&spec, "/Mode/Global").is_some() {
        o.push_str("\tGlobal");
    } else if ptr(&spec, "/Mode/Replicated").is_some() {
        o.push_str("\tReplicated");
        if let Some(n) = ptr(&spec, "/Mode/Replicated/Replicas") {
            let _ = write!(o, "\n Replicas:\t{n}");
        }
    }
    if let Some(us) = ptr(svc, "/UpdateStatus").filter(|us| !s(us, "/State").is_empty()) {
        let _ = write!(o, "\nUpdateStatus:\n State:\t\t{}", s(us, "/State"));
        if let Some(t) = ptr(us, "/StartedAt").and_then(Json::as_str) {
            let _ = write!(o, "\n Started:\t{}", ago(t, now));
        }
        if s(us, "/State") == "completed"
            && let Some(t) = ptr(us, "/CompletedAt").and_then(Json::as_str)
        {
            let _ = write!(o, "\n Completed:\t{}", ago(t, now));
        }
        let _ = write!(o, "\n Message:\t{}", s(us, "/Message"));
    }
    o.push_str("\nPlacement:");
    let constraints = strings(&task, "/Placement/Constraints");
    if !constraints.is_empty() {
        let _ = write!(o, "\n Constraints:\t{}", go_list(&constraints));
    }
    let prefs: Vec<String> = ptr(&task, "/Placement/Preferences")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|p| ptr(p, "/Spread"))
                .map(|sp| format!("spread={}", s(sp, "/SpreadDescriptor")))
                .collect()
        })
        .unwrap_or_default();
    if !prefs.is_empty() {
        let _ = write!(o, "\n Preferences:   {}", go_list(&prefs));
    }
    let max = u(&task, "/Placement/MaxReplicas");
    if max > 0 {
        let _ = write!(o, "\n Max Replicas Per Node:   {max}");
    }
    for (key, title, order) in [
        ("/UpdateConfig", "UpdateConfig", "Update order:      "),
        ("/RollbackConfig", "RollbackConfig", "Rollback order:    "),
    ] {
        let Some(uc) = ptr(&spec, key) else { continue };
        let _ = write!(o, "\n{title}:\n Parallelism:\t{}", u(uc, "/Parallelism"));
        let delay = i(uc, "/Delay");
        if delay > 0 {
            let _ = write!(o, "\n Delay:\t\t{}", gotime::go_duration(delay));
        }
        let _ = write!(o, "\n On failure:\t{}", s(uc, "/FailureAction"));
        let monitor = i(uc, "/Monitor");
        if monitor > 0 {
            let _ = write!(o, "\n Monitoring Period: {}", gotime::go_duration(monitor));
        }
        let ratio = ptr(uc, "/MaxFailureRatio")
            .and_then(Json::as_f64)
            .unwrap_or(0.0);
        let _ = write!(
            o,
            "\n Max failure ratio: {}\n {order}{}",
            fmt_v32(ratio),
            s(uc, "/Order")
        );
    }
    let _ = write!(o, "\nContainerSpec:\n Image:\t\t{}", s(&cs, "/Image"));
    let args = strings(&cs, "/Args");
    if !args.is_empty() {
        o.push_str("\n Args:\t\t");
        for a in &args {
            let _ = write!(o, "{a} ");
        }
    }
    let env = strings(&cs, "/Env");
    if !env.is_empty() {
        o.push_str("\n Env:\t\t");
        for e in &env {
            let _ = write!(o, "{e} ");
        }
    }
    if !s(&cs, "/Dir").is_empty() {
        let _ = write!(o, "\n Dir:\t\t{}", s(&cs, "/Dir"));
    }
    if let Some(init) = ptr(&cs, "/Init") {
        let _ = write!(o, "\n Init:\t\t{}", init.as_bool().unwrap_or(false));
    }
    if !s(&cs, "/User").is_empty() {
        let _ = write!(o, "\n User: {}", s(&cs, "/User"));
    }
    let cap_add = strings(&cs, "/CapabilityAdd");
    let cap_drop = strings(&cs, "/CapabilityDrop");
    if !cap_add.is_empty() || !cap_drop.is_empty() {
        o.push_str("\nCapabilities:");
        if !cap_add.is_empty() {
            let _ = write!(o, "\n Add: {}", cap_add.join(", "));
        }
        if !cap_drop.is_empty() {
            let _ = write!(o, "\n Drop: {}", cap_drop.join(", "));
        }
    }
    let sysctls = sorted_map(&cs, "/Sysctls");
    if !sysctls.is_empty() {
        o.push_str("\nSysCtls:");
        for (k, v) in &sysctls {
            let _ = write!(o, "\n {k}");
            if !v.is_empty() {
                let _ = write!(o, ": {v}");
            }
        }
    }
    let mut ulimits: Vec<(String, String)> = ptr(&cs, "/Ulimits")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        s(l, "/Name").to_string(),
                        format!("{}:{}", i(l, "/Soft"), i(l, "/Hard")),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    ulimits.sort();
    ulimits.dedup_by(|a, b| a.0 == b.0);
    if !ulimits.is_empty() {
        o.push_str("\nUlimits:");
        for (k, v) in &ulimits {
            let _ = write!(o, "\n {k}: {v}");
        }
    }
    let mounts = ptr(&cs, "/Mounts").and_then(Json::as_array);
    if let Some(mounts) = mounts.filter(|m| !m.is_empty()) {
        o.push_str("\nMounts:");
        for m in mounts {
            let _ = write!(
                o,
                "\n Target:\t{}\n  Source:\t{}\n  ReadOnly:\t{}\n  Type:\t\t{}",
                s(m, "/Target"),
                s(m, "/Source"),
                m.pointer("/ReadOnly")
                    .and_then(Json::as_bool)
                    .unwrap_or(false),
                s(m, "/Type")
            );
        }
    }
    for (key, title, name) in [
        ("/Configs", "Configs", "/ConfigName"),
        ("/Secrets", "Secrets", "/SecretName"),
    ] {
        if let Some(list) = ptr(&cs, key)
            .and_then(Json::as_array)
            .filter(|l| !l.is_empty())
        {
            let _ = write!(o, "\n{title}:");
            for r in list {
                let _ = write!(
                    o,
                    "\n Target:\t{}\n  Source:\t{}",
                    s(r, "/File/Name"),
                    s(r, name)
                );
            }
        }
    }
    if let Some(ld) = ptr(&task, "/LogDriver") {
        o.push_str("\nLog Driver:");
        if !s(ld, "/Name").is_empty() {
            let _ = write!(o, "\n Name:\t\t{}", s(ld, "/Name"));
        }
        let opts = sorted_map(ld, "/Options");
        if !opts.is_empty() {
            o.push_str("\n LogOpts:");
            for (k, v) in &opts {
                let _ = write!(o, "\n  {k}");
                if !v.is_empty() {
                    let _ = write!(o, ":       {v}");
                }
            }
        }
        o.push('\n');
    }
    if let Some(res) = ptr(&task, "/Resources") {
        o.push_str("\nResources:");
        let r_cpu = i(res, "/Reservations/NanoCPUs");
        let r_mem = i(res, "/Reservations/MemoryBytes");
        if ptr(res, "/Reservations").is_some() && (r_cpu > 0 || r_mem > 0) {
            o.push_str("\n Reservations:");
            if r_cpu > 0 {
                let _ = write!(o, "\n  CPU:\t\t{}", fmt_v(r_cpu as f64 / 1e9));
            }
            if r_mem != 0 {
                let _ = write!(o, "\n  Memory:\t{}", bytes_size(r_mem as f64));
            }
        }
        let l_cpu = i(res, "/Limits/NanoCPUs");
        let l_mem = i(res, "/Limits/MemoryBytes");
        let l_pids = i(res, "/Limits/Pids");
        if ptr(res, "/Limits").is_some() && (l_cpu > 0 || l_mem > 0 || l_pids > 0) {
            o.push_str("\n Limits:");
            if l_cpu > 0 {
                let _ = write!(o, "\n  CPU:\t\t{}", fmt_v(l_cpu as f64 / 1e9));
            }
            if l_mem != 0 {
                let _ = write!(o, "\n  Memory:\t{}", bytes_size(l_mem as f64));
            }
        }
    }
    let pids = i(&task, "/Resources/Limits/Pids");
    if pids > 0 {
        let _ = write!(o, "\n  PIDs:\t\t{pids}");
    }
    let networks: Vec<String> = ptr(&task, "/Networks")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(|n| s(n, "/Target").to_string()).collect())
        .unwrap_or_default();
    if !networks.is_empty() {
        o.push_str("\nNetworks:");
        for n in &networks {
            let _ = write!(o, " {n}");
        }
        o.push(' ');
    }
    let _ = write!(o, "\nEndpoint Mode:\t{}", s(&spec, "/EndpointSpec/Mode"));
    if let Some(ports) = ptr(svc, "/Endpoint/Ports")
        .and_then(Json::as_array)
        .filter(|p| !p.is_empty())
    {
        o.push_str("\nPorts:");
        for p in ports {
            let _ = write!(
                o,
                "\n PublishedPort = {}\n  Protocol = {}\n  TargetPort = {}\n  PublishMode = {}",
                u(p, "/PublishedPort"),
                s(p, "/Protocol"),
                u(p, "/TargetPort"),
                s(p, "/PublishMode")
            );
        }
        o.push(' ');
    }
    if let Some(hc) = ptr(&cs, "/Healthcheck") {
        let _ = write!(
            o,
            "\n Healthcheck:\n  Interval = {}\n  Retries = {}\n  StartPeriod =\t{}\n  Timeout =\t{}",
            gotime::go_duration(i(hc, "/Interval")),
            i(hc, "/Retries"),
            gotime::go_duration(i(hc, "/StartPeriod")),
            gotime::go_duration(i(hc, "/Timeout"))
        );
        let tests = strings(hc, "/Test");
        if !tests.is_empty() {
            o.push_str("\n  Tests:");
            for t in &tests {
                let _ = write!(o, "\n\t Test = {t}");
            }
            o.push(' ');
        }
    }
    o.push('\n');
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        gotime::parse_time("2026-11-23T11:40:00Z").unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    #[test]
    fn list_rows() {
        let svcs = vec![
            json!({"ID": "dtvyd7a42pxgtiqg6ozyo5yv5", "Spec": {"Name": "web-10", "Mode": {"Replicated": {"Replicas": 2}}, "TaskTemplate": {"ContainerSpec": {"Image": "nginx:1@sha256:0aa5f12721b8a0d5d6e0e4c4b4d2e8b1b1a8f8e0c5c2b9e5d0e1f2a3b4c5d6e7"}, "Placement": {"MaxReplicas": 1}}}, "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 2}, "Endpoint": {"Ports": [
                {"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 8080, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 81, "PublishedPort": 8081, "PublishMode": "ingress"},
                {"Protocol": "udp", "TargetPort": 53, "PublishedPort": 53, "PublishMode": "ingress"},
                {"Protocol": "tcp", "TargetPort": 9, "PublishedPort": 9, "PublishMode": "host"}]}}),
            json!({"ID": "93gq8mxtw8n8h0sksj7juld5x", "Spec": {"Name": "web-9", "Mode": {"Global": {}}, "TaskTemplate": {"ContainerSpec": {"Image": "busybox:local"}}}, "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 1}}),
            json!({"ID": "i6gy2ufvy1w6v53ol3z3ufvt6", "Spec": {"Name": "job", "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 3}}, "TaskTemplate": {"ContainerSpec": {"Image": "busybox:local"}}}, "ServiceStatus": {"RunningTasks": 0, "DesiredTasks": 1, "CompletedTasks": 2}}),
        ];
        assert_eq!(
            service_list(&svcs, None, false),
            Ok("ID             NAME      MODE             REPLICAS               IMAGE           PORTS\n\
                i6gy2ufvy1w6   job       replicated job   0/1 (2/3 completed)    busybox:local   \n\
                93gq8mxtw8n8   web-9     global           1/1                    busybox:local   \n\
                dtvyd7a42pxg   web-10    replicated       1/2 (max 1 per node)   nginx:1         *:8080-8081->80-81/tcp, *:53->53/udp\n"
                .into())
        );
        assert_eq!(
            service_list(&svcs, None, true),
            Ok("i6gy2ufvy1w6\n93gq8mxtw8n8\ndtvyd7a42pxg\n".into())
        );
        assert_eq!(
            service_list(&svcs[1..2], Some("json"), false),
            Ok("{\"ID\":\"93gq8mxtw8n8\",\"Image\":\"busybox:local\",\"Mode\":\"global\",\"Name\":\"web-9\",\"Ports\":\"\",\"Replicas\":\"1/1\"}\n".into())
        );
        assert_eq!(
            service_list(&[], None, false),
            Ok("ID        NAME      MODE      REPLICAS   IMAGE     PORTS\n".into())
        );
    }

    #[test]
    fn pretty_minimal() {
        let svc = json!({"ID": "abc", "Spec": {"Name": "x", "Labels": {}, "TaskTemplate": {"ContainerSpec": {"Image": "busybox:local"}}, "Mode": {"Global": {}}}});
        assert_eq!(
            service_pretty(&svc, now()),
            "\nID:\t\tabc\nName:\t\tx\nService Mode:\tGlobal\nPlacement:\nContainerSpec:\n Image:\t\tbusybox:local\nEndpoint Mode:\t\n"
        );
    }
}
