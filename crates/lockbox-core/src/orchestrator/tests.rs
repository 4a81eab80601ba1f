//! Planner simulations: the planner and a fake agent move tasks forward step by step.

use lockbox_types::{
    Cluster, ClusterSpec, Command, JoinTokens, NodeSpec, ServiceSpec, TaskSpec, UpdateConfig,
};

use super::*;

const SEC: i64 = 1_000_000_000;

struct Sim {
    st: State,
    planner: Planner,
    index: u64,
    now: Timestamp,
    node: String,
}

fn meta() -> Meta {
    Meta {
        version: 0,
        created_at: Timestamp(0),
        updated_at: Timestamp(0),
    }
}

impl Sim {
    fn new() -> Sim {
        let mut st = State::default();
        let cluster = Cluster {
            id: "c".into(),
            meta: meta(),
            spec: ClusterSpec::default(),
            join_tokens: JoinTokens::default(),
            root_ca_pem: String::new(),
            default_addr_pool: vec![],
            subnet_size: 24,
            data_path_port: 4789,
        };
        let node = Node {
            id: "n1".into(),
            meta: meta(),
            spec: NodeSpec {
                name: String::new(),
                labels: Default::default(),
                role: NodeRole::Manager,
                availability: NodeAvailability::Active,
            },
            hostname: "h".into(),
            addr: "127.0.0.1:2377".into(),
            raft_id: 1,
        };
        st.apply(
            1,
            &Command::InitCluster {
                cluster: Box::new(cluster),
                node: Box::new(node),
            },
        );
        Sim {
            st,
            planner: Planner::default(),
            index: 1,
            now: Timestamp(SEC),
            node: "n1".into(),
        }
    }

    fn apply(&mut self, cmd: Command) {
        self.index += 1;
        let out = self.st.apply(self.index, &cmd);
        assert!(
            matches!(out, lockbox_types::Outcome::Applied { .. }),
            "{out:?}"
        );
    }

    fn spec(name: &str, replicas: u64, args: &[&str], order: &str) -> ServiceSpec {
        ServiceSpec {
            name: name.into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas },
            task: TaskSpec {
                image: "host".into(),
                args: args.iter().map(|s| s.to_string()).collect(),
                restart: Some(RestartPolicy {
                    delay: SEC,
                    ..Default::default()
                }),
                ..Default::default()
            },
            update: Some(UpdateConfig {
                order: order.into(),
                monitor: SEC,
                ..Default::default()
            }),
            rollback: None,
            raw: String::new(),
        }
    }

    fn create(&mut self, spec: ServiceSpec) -> String {
        let svc = Service {
            id: format!("svc-{}", spec.name),
            meta: meta(),
            spec,
            previous_spec: None,
            update_status: None,
        };
        let id = svc.id.clone();
        self.apply(Command::CreateService {
            service: Box::new(svc),
        });
        id
    }

    fn update(&mut self, id: &str, spec: ServiceSpec) {
        let v = self.st.services[id].meta.version;
        self.apply(Command::UpdateService {
            id: id.into(),
            expected_version: v,
            spec: Box::new(spec),
            rollback: false,
            now: self.now,
        });
    }

    /// One tick: plan, apply, then the fake agent starts assigned tasks (`fail` decides which
    /// fail right away) and stops those asked to stop.
    fn tick(&mut self, fail: &dyn Fn(&Task) -> bool) {
        let plan = self.planner.step(&self.st, &self.node, self.now);
        if !plan.tasks.is_empty() {
            self.apply(Command::Tasks {
                changes: plan.tasks,
                now: self.now,
            });
        }
        for (id, expected_version, status, rollback_spec) in plan.statuses {
            self.apply(Command::SetUpdateStatus {
                id,
                expected_version,
                status,
                rollback_spec,
                now: self.now,
            });
        }
        let mut changes = Vec::new();
        for t in self.st.tasks.values() {
            let next = if t.desired_state > TaskState::Running && !t.status.state.is_terminal() {
                Some(TaskState::Shutdown)
            } else if t.desired_state == TaskState::Running && t.status.state == TaskState::Assigned
            {
                Some(if fail(t) {
                    TaskState::Failed
                } else {
                    TaskState::Running
                })
            } else {
                None
            };
            if let Some(state) = next {
                changes.push(TaskChange::Status {
                    id: t.id.clone(),
                    status: status(state, "sim", self.now),
                });
            }
        }
        if !changes.is_empty() {
            self.apply(Command::Tasks {
                changes,
                now: self.now,
            });
        }
        self.now = Timestamp(self.now.0 + SEC / 2);
    }

    fn running<'a>(&'a self, svc: &'a str) -> Vec<&'a Task> {
        self.st
            .tasks_of(svc)
            .filter(|t| t.status.state == TaskState::Running)
            .collect()
    }
}

fn never(_: &Task) -> bool {
    false
}

#[test]
fn replicas_start_and_scale_down() {
    let mut s = Sim::new();
    let id = s.create(Sim::spec("web", 3, &["sleep", "1000"], "stop-first"));
    for _ in 0..3 {
        s.tick(&never);
    }
    let mut slots: Vec<u64> = s.running(&id).iter().map(|t| t.slot).collect();
    slots.sort_unstable();
    assert_eq!(slots, vec![1, 2, 3]);
    let mut spec = s.st.services[&id].spec.clone();
    spec.mode = ServiceMode::Replicated { replicas: 1 };
    s.update(&id, spec);
    for _ in 0..3 {
        s.tick(&never);
    }
    assert_eq!(
        s.running(&id).iter().map(|t| t.slot).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn failed_tasks_restart_after_the_delay_up_to_max_attempts() {
    let mut s = Sim::new();
    let mut spec = Sim::spec("crashy", 1, &["false"], "stop-first");
    spec.task.restart = Some(RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay: SEC,
        max_attempts: 2,
        window: 0,
    });
    let id = s.create(spec);
    for _ in 0..20 {
        s.tick(&|_| true);
    }
    let tasks: Vec<&Task> = s.st.tasks_of(&id).collect();
    assert_eq!(tasks.len(), 3, "first run plus 2 restarts: {tasks:#?}");
    assert!(tasks.iter().all(|t| t.status.state == TaskState::Failed));
}

#[test]
fn start_first_update_never_leaves_zero_running() {
    let mut s = Sim::new();
    let id = s.create(Sim::spec("api", 2, &["sleep", "1"], "start-first"));
    for _ in 0..3 {
        s.tick(&never);
    }
    assert_eq!(s.running(&id).len(), 2);
    s.update(&id, Sim::spec("api", 2, &["sleep", "2"], "start-first"));
    for _ in 0..30 {
        s.tick(&never);
        assert!(
            s.running(&id).len() >= 2,
            "start-first must keep every slot served"
        );
    }
    let running = s.running(&id);
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|t| t.spec.args == vec!["sleep".to_string(), "2".to_string()])
    );
    assert_eq!(
        s.st.services[&id]
            .update_status
            .as_ref()
            .map(|u| u.state.as_str()),
        Some("completed")
    );
}

#[test]
fn stop_first_update_replaces_every_task() {
    let mut s = Sim::new();
    let id = s.create(Sim::spec("w", 2, &["a"], "stop-first"));
    for _ in 0..3 {
        s.tick(&never);
    }
    s.update(&id, Sim::spec("w", 2, &["b"], "stop-first"));
    for _ in 0..30 {
        s.tick(&never);
        assert!(
            !s.running(&id).is_empty(),
            "parallelism 1 keeps one slot up"
        );
    }
    let running = s.running(&id);
    assert_eq!(running.len(), 2);
    assert!(running.iter().all(|t| t.spec.args == vec!["b".to_string()]));
}

#[test]
fn a_failing_update_pauses() {
    let mut s = Sim::new();
    let id = s.create(Sim::spec("p", 2, &["ok"], "stop-first"));
    for _ in 0..3 {
        s.tick(&never);
    }
    s.update(&id, Sim::spec("p", 2, &["bad"], "stop-first"));
    let bad = |t: &Task| t.spec.args == vec!["bad".to_string()];
    for _ in 0..20 {
        s.tick(&bad);
    }
    let status = s.st.services[&id].update_status.clone().unwrap();
    assert_eq!(status.state, "paused", "{status:?}");
    assert!(
        status
            .message
            .starts_with("update paused due to failure or early termination of task")
    );
}

#[test]
fn a_failing_update_rolls_back_when_asked() {
    let mut s = Sim::new();
    let id = s.create(Sim::spec("r", 1, &["ok"], "start-first"));
    for _ in 0..3 {
        s.tick(&never);
    }
    let mut spec = Sim::spec("r", 1, &["bad"], "start-first");
    spec.update = Some(UpdateConfig {
        order: "start-first".into(),
        failure_action: "rollback".into(),
        monitor: SEC,
        ..Default::default()
    });
    s.update(&id, spec);
    let bad = |t: &Task| t.spec.args == vec!["bad".to_string()];
    for _ in 0..30 {
        s.tick(&bad);
    }
    let svc = &s.st.services[&id];
    assert_eq!(
        svc.spec.task.args,
        vec!["ok".to_string()],
        "the spec is rolled back"
    );
    assert_eq!(
        svc.update_status.as_ref().map(|u| u.state.as_str()),
        Some("rollback_completed")
    );
    let running = s.running(&id);
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].spec.args, vec!["ok".to_string()]);
}

#[test]
fn removed_services_lose_their_tasks_and_history_is_bounded() {
    let mut s = Sim::new();
    let mut spec = Sim::spec("h", 1, &["x"], "stop-first");
    spec.task.restart = Some(RestartPolicy {
        delay: 0,
        ..Default::default()
    });
    let id = s.create(spec);
    for _ in 0..30 {
        s.tick(&|_| true);
    }
    // The newest 5, plus the replacement created in the same step.
    assert!(s.st.tasks_of(&id).count() <= 6, "task history retention");
    s.apply(Command::RemoveService { id: id.clone() });
    for _ in 0..4 {
        s.tick(&never);
    }
    assert_eq!(s.st.tasks.len(), 0);
}

#[test]
fn templates_compare_without_go_zero_values() {
    let a = TaskSpec {
        image: "host".into(),
        raw: r#"{"ContainerSpec":{"Image":"host","Init":false}}"#.into(),
        ..Default::default()
    };
    let b = TaskSpec {
        image: "host".into(),
        raw: r#"{"ContainerSpec":{"Image":"host"},"ForceUpdate":0}"#.into(),
        ..Default::default()
    };
    assert!(same_template(&a, &b));
    let echoed = TaskSpec {
        image: "host".into(),
        raw: r#"{"ContainerSpec":{"Image":"host","Isolation":"default"},"Runtime":"container"}"#
            .into(),
        ..Default::default()
    };
    assert!(
        same_template(&a, &echoed),
        "server-filled values are not a change"
    );
    let c = TaskSpec {
        image: "host".into(),
        raw: r#"{"ContainerSpec":{"Image":"host","Env":["A=1"]}}"#.into(),
        ..Default::default()
    };
    assert!(!same_template(&a, &c));
}

#[test]
fn constraints() {
    let s = Sim::new();
    let n = &s.st.nodes["n1"];
    assert!(constraints_met(
        &["node.role==manager".into(), "node.hostname!=other".into()],
        n
    ));
    assert!(!constraints_met(&["node.role==worker".into()], n));
    assert!(!constraints_met(&["node.labels.zone==a".into()], n));
    assert!(constraints_met(&["node.labels.zone!=a".into()], n));
}
