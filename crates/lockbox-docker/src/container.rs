//! A task's container: its name, its labels and its create request, built from the task's
//! template the way swarm's container executor (`daemon/cluster/executor/container`) does.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountBindOptions,
    MountBindOptionsPropagationEnum, MountType, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use lockbox_core::Launch;
use serde_json::Value;

use crate::mounts::SecretFile;
use crate::network::EngineNetwork;

/// The daemon instance (one per data directory) that owns the container.
pub const LABEL_INSTANCE: &str = "com.lockbox.instance";
/// The task ID.
pub const LABEL_TASK_ID: &str = "com.lockbox.task.id";
/// The task name, `<service>.<slot>.<task id>`.
pub const LABEL_TASK_NAME: &str = "com.lockbox.task.name";
/// The service ID.
pub const LABEL_SERVICE_ID: &str = "com.lockbox.service.id";
/// The service name.
pub const LABEL_SERVICE_NAME: &str = "com.lockbox.service.name";
/// The node ID.
pub const LABEL_NODE_ID: &str = "com.lockbox.node.id";

/// Swarm's task name and container name: `<service>.<slot>.<task id>`, with the node ID in
/// place of the slot for global services.
pub(crate) fn container_name(l: &Launch) -> String {
    let service = if l.service_name.is_empty() {
        "lockbox"
    } else {
        l.service_name.as_str()
    };
    let slot = if l.slot != 0 {
        l.slot.to_string()
    } else if !l.node_id.is_empty() {
        l.node_id.clone()
    } else {
        "0".into()
    };
    format!("{service}.{slot}.{}", l.task_id)
}

/// The container's labels: the template's, then lockbox's (which win).
pub(crate) fn labels(l: &Launch, instance: &str) -> HashMap<String, String> {
    let mut m: HashMap<String, String> = l
        .spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    m.insert(LABEL_INSTANCE.into(), instance.into());
    m.insert(LABEL_TASK_ID.into(), l.task_id.clone());
    m.insert(LABEL_TASK_NAME.into(), container_name(l));
    m.insert(LABEL_SERVICE_ID.into(), l.service_id.clone());
    m.insert(LABEL_SERVICE_NAME.into(), l.service_name.clone());
    m.insert(LABEL_NODE_ID.into(), l.node_id.clone());
    m
}

/// A field of a Go-decoded JSON object: exact name first, then case-insensitively.
fn field<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    let o = v?.as_object()?;
    o.get(name).or_else(|| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    let a = v?.as_array()?;
    let out: Vec<String> = a
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    (!out.is_empty()).then_some(out)
}

fn nonempty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The create request for the task's container, with its secrets bind-mounted read-only, on
/// its first network (the others are connected before it starts) or, without one, on the
/// engine's default network.
pub(crate) fn create_body(
    l: &Launch,
    instance: &str,
    secrets: &[SecretFile],
    network: Option<&EngineNetwork>,
) -> ContainerCreateBody {
    let s = &l.spec;
    // Fields lockbox does not model are read from the template as the client sent it.
    let raw: Value = serde_json::from_str(&s.raw).unwrap_or(Value::Null);
    let cs = field(Some(&raw), "ContainerSpec");
    let limits = field(field(Some(&raw), "Resources"), "Limits");
    let reservations = field(field(Some(&raw), "Resources"), "Reservations");
    let flag = |name: &str| field(cs, name).and_then(Value::as_bool);
    let int =
        |v: Option<&Value>, name: &str| field(v, name).and_then(Value::as_i64).filter(|n| *n != 0);

    let mounts: Vec<Mount> = secrets
        .iter()
        .map(|f| Mount {
            target: Some(f.target.clone()),
            source: Some(f.host.to_string_lossy().into_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            bind_options: Some(MountBindOptions {
                propagation: Some(MountBindOptionsPropagationEnum::RPRIVATE),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let sysctls: Option<HashMap<String, String>> = field(cs, "Sysctls")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .filter(|m: &HashMap<String, String>| !m.is_empty());
    let host_config = HostConfig {
        mounts: (!mounts.is_empty()).then_some(mounts),
        group_add: (!s.groups.is_empty()).then(|| s.groups.clone()),
        init: flag("Init"),
        readonly_rootfs: flag("ReadOnly"),
        cap_add: strings(field(cs, "CapabilityAdd")),
        cap_drop: strings(field(cs, "CapabilityDrop")),
        sysctls,
        memory: int(limits, "MemoryBytes"),
        nano_cpus: int(limits, "NanoCPUs"),
        pids_limit: int(limits, "Pids"),
        memory_reservation: int(reservations, "MemoryBytes"),
        // The orchestrator restarts tasks, never the engine.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        network_mode: network.map(|n| n.name.clone()),
        ..Default::default()
    };
    let networking_config = network.map(|n| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            n.name.clone(),
            EndpointSettings {
                aliases: Some(n.aliases.clone()),
                ..Default::default()
            },
        )])),
    });
    ContainerCreateBody {
        hostname: nonempty(&s.hostname),
        user: nonempty(&s.user),
        env: (!s.env.is_empty()).then(|| s.env.clone()),
        // Swarm: ContainerSpec.Command is the entrypoint, Args the command.
        entrypoint: (!s.command.is_empty()).then(|| s.command.clone()),
        cmd: (!s.args.is_empty()).then(|| s.args.clone()),
        image: Some(s.image.clone()),
        working_dir: nonempty(&s.dir),
        labels: Some(labels(l, instance)),
        stop_signal: nonempty(&s.stop_signal),
        tty: flag("TTY"),
        open_stdin: flag("OpenStdin"),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The image reference with a tag when it has neither tag nor digest (pulling an untagged
/// name would pull every tag).
pub(crate) fn tagged(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') {
        image.to_owned()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use lockbox_types::TaskSpec;

    use super::*;

    fn launch() -> Launch {
        Launch {
            task_id: "t1".into(),
            service_id: "s1".into(),
            service_name: "web".into(),
            node_id: "n1".into(),
            slot: 2,
            spec: TaskSpec {
                image: "busybox:local".into(),
                command: vec!["sh".into(), "-c".into()],
                args: vec!["sleep 1".into()],
                env: vec!["A=1".into()],
                user: "1000:1000".into(),
                dir: "/tmp".into(),
                hostname: "h".into(),
                groups: vec!["10".into()],
                labels: [("com.lockbox.task.id".to_owned(), "spoof".to_owned()), ("a".to_owned(), "b".to_owned())]
                    .into_iter()
                    .collect(),
                stop_signal: "SIGINT".into(),
                raw: r#"{"ContainerSpec":{"Init":true,"readonly":true,"TTY":false},"Resources":{"Limits":{"MemoryBytes":33554432,"Pids":0}}}"#.into(),
                ..Default::default()
            },
            secrets: Vec::new(),
            networks: Vec::new(),
        }
    }

    #[test]
    fn names_like_swarm() {
        let mut l = launch();
        assert_eq!(container_name(&l), "web.2.t1");
        l.slot = 0;
        assert_eq!(container_name(&l), "web.n1.t1");
    }

    #[test]
    fn body_from_template() {
        let l = launch();
        let files = vec![SecretFile {
            host: PathBuf::from("/run/lockbox/docker/i/t1/0"),
            target: "/run/secrets/x".into(),
        }];
        let b = create_body(&l, "inst", &files, None);
        assert_eq!(b.entrypoint, Some(vec!["sh".to_owned(), "-c".to_owned()]));
        assert_eq!(b.cmd, Some(vec!["sleep 1".to_owned()]));
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(b.working_dir.as_deref(), Some("/tmp"));
        assert_eq!(b.stop_signal.as_deref(), Some("SIGINT"));
        let labels = b.labels.unwrap();
        assert_eq!(labels[LABEL_TASK_ID], "t1");
        assert_eq!(labels[LABEL_INSTANCE], "inst");
        assert_eq!(labels[LABEL_TASK_NAME], "web.2.t1");
        assert_eq!(labels["a"], "b");
        let hc = b.host_config.unwrap();
        assert_eq!(hc.init, Some(true));
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.memory, Some(33554432));
        assert_eq!(hc.pids_limit, None);
        assert_eq!(hc.group_add, Some(vec!["10".to_owned()]));
        let m = &hc.mounts.unwrap()[0];
        assert_eq!(m.typ, Some(MountType::BIND));
        assert_eq!(m.read_only, Some(true));
        assert_eq!(m.target.as_deref(), Some("/run/secrets/x"));
    }

    #[test]
    fn image_tags() {
        assert_eq!(tagged("busybox"), "busybox:latest");
        assert_eq!(tagged("busybox:local"), "busybox:local");
        assert_eq!(tagged("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(tagged("app@sha256:ab"), "app@sha256:ab");
    }
}
