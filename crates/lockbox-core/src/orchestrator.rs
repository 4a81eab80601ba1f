//! The orchestrator: turns services into tasks. A pure planner (`Planner::step`) looks at the
//! state and decides task changes — new tasks for empty slots (restart policy), shutdowns for
//! scale-downs and removed services, rolling updates batch by batch, history retention — and a
//! loop proposes them. Keeping the planner pure makes it testable without processes or Raft.

use std::collections::{BTreeMap, HashMap};

use lockbox_store::State;
use lockbox_types::{
    Meta, Node, NodeAvailability, NodeRole, RestartCondition, RestartPolicy, Service, ServiceMode,
    Task, TaskChange, TaskSpec, TaskState, TaskStatus, Timestamp, UpdateConfig, UpdateStatus,
};

/// What one planning step decided.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) tasks: Vec<TaskChange>,
    /// (service ID, service version planned from, new update status, roll the spec back).
    pub(crate) statuses: Vec<(String, u64, Option<UpdateStatus>, bool)>,
}

impl Plan {
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.is_empty() && self.statuses.is_empty()
    }
}

/// A slot: the replica number, or the node for global services.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum SlotKey {
    Replica(u64),
    Node(String),
}

fn slot_of(svc: &Service, t: &Task) -> SlotKey {
    match svc.spec.mode {
        ServiceMode::Replicated { .. } => SlotKey::Replica(t.slot),
        ServiceMode::Global => SlotKey::Node(t.node_id.clone()),
    }
}

fn live(t: &Task) -> bool {
    t.desired_state <= TaskState::Running && !t.status.state.is_terminal()
}

/// Whether two templates would run the same thing: typed fields and the Docker JSON with Go's
/// zero values removed (clients differ in which zero values they send).
pub fn same_template(a: &TaskSpec, b: &TaskSpec) -> bool {
    let strip = |t: &TaskSpec| TaskSpec {
        raw: String::new(),
        ..t.clone()
    };
    if strip(a) != strip(b) {
        return false;
    }
    if a.raw == b.raw {
        return true;
    }
    let parse = |s: &str| {
        serde_json::from_str::<serde_json::Value>(s)
            .map(prune)
            .unwrap_or(serde_json::Value::Null)
    };
    parse(&a.raw) == parse(&b.raw)
}

fn prune(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune(v)))
                // Values dockerd fills in on output count as unset: a client that echoes them
                // back has not changed the template.
                .filter(|(k, v)| {
                    let server_filled = (k == "Isolation" && v == "default")
                        || (k == "Runtime" && v == "container");
                    !(is_zero(v) || server_filled)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

fn is_zero(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

/// Whether `node` satisfies every placement constraint (`node.role==manager`,
/// `node.hostname!=x`, `node.labels.k==v`, `node.id==...`, `node.platform.os==linux`).
pub(crate) fn constraints_met(constraints: &[String], node: &Node) -> bool {
    constraints.iter().all(|c| {
        let (key, want, eq) = if let Some((k, v)) = c.split_once("!=") {
            (k.trim(), v.trim(), false)
        } else if let Some((k, v)) = c.split_once("==") {
            (k.trim(), v.trim(), true)
        } else {
            return false;
        };
        let actual: Option<String> = match key {
            "node.id" => Some(node.id.clone()),
            "node.hostname" => Some(node.hostname.clone()),
            "node.role" => Some(
                if node.spec.role == NodeRole::Manager {
                    "manager"
                } else {
                    "worker"
                }
                .into(),
            ),
            "node.platform.os" => Some("linux".into()),
            "node.platform.arch" => Some(std::env::consts::ARCH.into()),
            k => k
                .strip_prefix("node.labels.")
                .and_then(|l| node.spec.labels.get(l).cloned()),
        };
        match actual {
            Some(a) => (a == want) == eq,
            None => !eq,
        }
    })
}

/// Where new tasks can go: the nodes that are up, and how many live tasks each runs (in all,
/// and per service), so replicas spread over nodes as swarmkit's scheduler spreads them.
pub(crate) struct Placement<'a> {
    nodes: Vec<&'a Node>,
    down: &'a std::collections::HashSet<String>,
    total: HashMap<String, usize>,
    per_service: HashMap<(String, String), usize>,
}

impl<'a> Placement<'a> {
    fn new(st: &'a State, down: &'a std::collections::HashSet<String>) -> Placement<'a> {
        let mut nodes: Vec<&Node> = st.nodes.values().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let mut total = HashMap::new();
        let mut per_service = HashMap::new();
        for t in st
            .tasks
            .values()
            .filter(|t| live(t) && !t.node_id.is_empty())
        {
            *total.entry(t.node_id.clone()).or_insert(0) += 1;
            *per_service
                .entry((t.service_id.clone(), t.node_id.clone()))
                .or_insert(0) += 1;
        }
        Placement {
            nodes,
            down,
            total,
            per_service,
        }
    }

    fn available(&self, n: &Node) -> bool {
        n.spec.availability == NodeAvailability::Active && !self.down.contains(&n.id)
    }

    /// Node `id`, if it can take new tasks.
    fn ready(&self, id: &str) -> Option<&'a Node> {
        self.nodes
            .iter()
            .copied()
            .find(|n| n.id == id && self.available(n))
    }

    /// The nodes a global service with `constraints` runs on.
    fn eligible(&self, constraints: &[String]) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| self.available(n) && constraints_met(constraints, n))
            .map(|n| n.id.clone())
            .collect()
    }

    /// The node for a new task of `service`: among the available nodes meeting the
    /// constraints, the one with the fewest tasks of the service, then the fewest tasks.
    fn pick(&mut self, service: &str, constraints: &[String]) -> Result<String, &'static str> {
        let mut unavailable = 0usize;
        let mut unfit = 0usize;
        let mut best: Option<(usize, usize, &Node)> = None;
        for n in &self.nodes {
            if !self.available(n) {
                unavailable += 1;
                continue;
            }
            if !constraints_met(constraints, n) {
                unfit += 1;
                continue;
            }
            let key = (
                self.per_service
                    .get(&(service.to_owned(), n.id.clone()))
                    .copied()
                    .unwrap_or(0),
                self.total.get(&n.id).copied().unwrap_or(0),
            );
            if best.is_none_or(|(a, b, _)| key < (a, b)) {
                best = Some((key.0, key.1, n));
            }
        }
        match best {
            Some((_, _, n)) => {
                *self.total.entry(n.id.clone()).or_insert(0) += 1;
                *self
                    .per_service
                    .entry((service.to_owned(), n.id.clone()))
                    .or_insert(0) += 1;
                Ok(n.id.clone())
            }
            None if self.nodes.is_empty() => Err("no suitable node"),
            None if unfit > 0 && unavailable == 0 && unfit == 1 => {
                Err("no suitable node (scheduling constraints not satisfied on 1 node)")
            }
            None if unfit > 0 && unavailable == 0 => {
                Err("no suitable node (scheduling constraints not satisfied on every node)")
            }
            None if unfit == 0 && unavailable == 1 => {
                Err("no suitable node (1 node not available for new tasks)")
            }
            None if unfit == 0 => Err("no suitable node (no node available for new tasks)"),
            None => Err(
                "no suitable node (scheduling constraints not satisfied or not available on every node)",
            ),
        }
    }
}

fn status(state: TaskState, message: &str, now: Timestamp) -> TaskStatus {
    TaskStatus {
        timestamp: now,
        state,
        message: message.into(),
        err: String::new(),
        pid: 0,
        exit_code: 0,
        container_id: String::new(),
    }
}

#[derive(Debug, Clone)]
struct SlotUpdate {
    key: SlotKey,
    old: Vec<String>,
    new: Option<String>,
}

#[derive(Debug, Clone)]
struct Progress {
    rollback: bool,
    template: String,
    batch: Vec<SlotUpdate>,
    running_since: Option<Timestamp>,
    next_batch_at: Timestamp,
    failures: u64,
    updated: u64,
    started_at: Timestamp,
    paused: bool,
}

/// The planner. Keeps rolling-update progress between steps (leader memory only: after a
/// restart an update resumes from the tasks' state).
#[derive(Debug, Default)]
pub(crate) struct Planner {
    progress: HashMap<String, Progress>,
    /// The template each service had when last seen: a change starts an update even when no
    /// running task needs replacing (as swarmkit's updater does).
    seen: HashMap<String, String>,
}

const NS: i64 = 1;

impl Planner {
    /// One planning step over `st` with every node ready (a one-node cluster).
    #[cfg(test)]
    pub(crate) fn step(&mut self, st: &State, _node_id: &str, now: Timestamp) -> Plan {
        self.step_with(st, &std::collections::HashSet::new(), now)
    }

    /// One planning step over `st`; the nodes in `down` are not answering: their tasks are
    /// orphaned (and replaced elsewhere, as the restart policy says) and nothing new goes to
    /// them.
    pub(crate) fn step_with(
        &mut self,
        st: &State,
        down: &std::collections::HashSet<String>,
        now: Timestamp,
    ) -> Plan {
        let mut plan = Plan::default();
        for t in st.tasks.values() {
            let gone = !t.node_id.is_empty()
                && (down.contains(&t.node_id) || !st.nodes.contains_key(&t.node_id));
            if gone && !t.status.state.is_terminal() && t.status.state >= TaskState::Assigned {
                let mut s = status(TaskState::Orphaned, "node is down", now);
                s.err = "task: node is down".into();
                plan.tasks.push(TaskChange::Status {
                    id: t.id.clone(),
                    status: s,
                });
            }
        }
        let mut node = Placement::new(st, down);
        let node = &mut node;
        let retention = st
            .cluster
            .as_ref()
            .and_then(|c| c.spec.orchestration.task_history_retention_limit)
            .unwrap_or(5)
            .max(1) as usize;
        self.progress.retain(|id, _| st.services.contains_key(id));
        self.seen.retain(|id, _| st.services.contains_key(id));
        for svc in st.services.values() {
            self.plan_service(st, svc, node, now, retention, &mut plan);
        }
        // Tasks of removed services: stop, then forget.
        for t in st.tasks.values() {
            if st.services.contains_key(&t.service_id) {
                continue;
            }
            if t.status.state.is_terminal() || t.node_id.is_empty() {
                plan.tasks.push(TaskChange::Remove { id: t.id.clone() });
            } else if t.desired_state < TaskState::Remove {
                plan.tasks.push(TaskChange::Desired {
                    id: t.id.clone(),
                    state: TaskState::Remove,
                });
            }
        }
        plan
    }

    fn new_task(svc: &Service, key: &SlotKey, node: &mut Placement<'_>, now: Timestamp) -> Task {
        let picked = match key {
            SlotKey::Node(n) => node
                .ready(n)
                .map(|n| n.id.clone())
                .ok_or("no suitable node (1 node not available for new tasks)"),
            SlotKey::Replica(_) => node.pick(&svc.id, &svc.spec.task.constraints),
        };
        let (node_id, st) = match picked {
            Ok(id) => (
                id,
                status(TaskState::Assigned, "scheduler assigned task to node", now),
            ),
            Err(why) => {
                let mut st = status(TaskState::Pending, "pending task scheduling", now);
                st.err = why.into();
                (String::new(), st)
            }
        };
        Task {
            id: lockbox_types::new_id(),
            meta: Meta {
                version: 0,
                created_at: now,
                updated_at: now,
            },
            service_id: svc.id.clone(),
            slot: match key {
                SlotKey::Replica(s) => *s,
                SlotKey::Node(_) => 0,
            },
            node_id: match key {
                SlotKey::Node(n) => n.clone(),
                SlotKey::Replica(_) => node_id,
            },
            spec: svc.spec.task.clone(),
            service_version: svc.meta.version,
            service_labels: svc.spec.labels.clone(),
            desired_state: TaskState::Running,
            status: st,
        }
    }

    fn plan_service(
        &mut self,
        st: &State,
        svc: &Service,
        node: &mut Placement<'_>,
        now: Timestamp,
        retention: usize,
        plan: &mut Plan,
    ) {
        let mut by_slot: BTreeMap<SlotKey, Vec<&Task>> = BTreeMap::new();
        for t in st.tasks_of(&svc.id) {
            by_slot.entry(slot_of(svc, t)).or_default().push(t);
        }
        for tasks in by_slot.values_mut() {
            tasks.sort_by_key(|t| (t.meta.created_at, t.id.clone()));
        }
        let wanted: Vec<SlotKey> = match svc.spec.mode {
            ServiceMode::Replicated { replicas } => (1..=replicas).map(SlotKey::Replica).collect(),
            ServiceMode::Global => node
                .eligible(&svc.spec.task.constraints)
                .into_iter()
                .map(SlotKey::Node)
                .collect(),
        };
        let updating: Vec<SlotKey> = self
            .progress
            .get(&svc.id)
            .map(|p| p.batch.iter().map(|b| b.key.clone()).collect())
            .unwrap_or_default();
        let restart = svc.spec.task.restart.clone().unwrap_or_default();

        // Pending tasks get placed when a node can take them.
        for t in st.tasks_of(&svc.id) {
            if t.node_id.is_empty()
                && live(t)
                && let Ok(n) = node.pick(&svc.id, &t.spec.constraints)
            {
                plan.tasks.push(TaskChange::Assign {
                    id: t.id.clone(),
                    node_id: n,
                    status: status(TaskState::Assigned, "scheduler assigned task to node", now),
                });
            }
        }
        // Drained nodes: their tasks stop.
        for n in st
            .nodes
            .values()
            .filter(|n| n.spec.availability == NodeAvailability::Drain)
        {
            for t in st.tasks_of(&svc.id) {
                if t.node_id == n.id && live(t) {
                    plan.tasks.push(TaskChange::Desired {
                        id: t.id.clone(),
                        state: TaskState::Shutdown,
                    });
                }
            }
        }

        for key in &wanted {
            let tasks = by_slot.get(key).map(Vec::as_slice).unwrap_or(&[]);
            if tasks.iter().any(|t| live(t)) || updating.contains(key) {
                continue;
            }
            match tasks.last() {
                None => plan.tasks.push(TaskChange::Create(Box::new(Self::new_task(
                    svc, key, node, now,
                )))),
                Some(last) if !last.status.state.is_terminal() => {
                    // Still stopping (update, drain, scale): wait for it.
                }
                Some(last) if last.status.state == TaskState::Shutdown => {
                    // Stopped on purpose: replace it now.
                    plan.tasks.push(TaskChange::Create(Box::new(Self::new_task(
                        svc, key, node, now,
                    ))));
                }
                Some(last) => {
                    // Ended by itself: the restart policy decides.
                    if should_restart(&restart, last, tasks, now) {
                        plan.tasks.push(TaskChange::Create(Box::new(Self::new_task(
                            svc, key, node, now,
                        ))));
                    }
                }
            }
        }
        // A task that ended by itself is not wanted running any more (swarmkit shows it as
        // desired `shutdown` once it is terminal).
        for t in st.tasks_of(&svc.id) {
            if t.desired_state == TaskState::Running && t.status.state.is_terminal() {
                plan.tasks.push(TaskChange::Desired {
                    id: t.id.clone(),
                    state: TaskState::Shutdown,
                });
            }
        }
        // Slots no longer wanted.
        for (key, tasks) in &by_slot {
            if wanted.contains(key) {
                continue;
            }
            for t in tasks.iter().filter(|t| live(t)) {
                plan.tasks.push(TaskChange::Desired {
                    id: t.id.clone(),
                    state: TaskState::Shutdown,
                });
            }
        }
        self.plan_update(svc, &by_slot, &wanted, node, now, plan);
        // History: keep the newest `retention` tasks of each slot.
        for tasks in by_slot.values() {
            if tasks.len() > retention {
                for t in &tasks[..tasks.len() - retention] {
                    if t.status.state.is_terminal() && t.desired_state > TaskState::Running {
                        plan.tasks.push(TaskChange::Remove { id: t.id.clone() });
                    }
                }
            }
        }
    }

    fn plan_update(
        &mut self,
        svc: &Service,
        by_slot: &BTreeMap<SlotKey, Vec<&Task>>,
        wanted: &[SlotKey],
        node: &mut Placement<'_>,
        now: Timestamp,
        plan: &mut Plan,
    ) {
        let dirty: Vec<(SlotKey, Vec<&Task>)> = wanted
            .iter()
            .filter_map(|k| {
                let tasks = by_slot.get(k)?;
                let old: Vec<&Task> = tasks
                    .iter()
                    .copied()
                    .filter(|t| live(t) && !same_template(&t.spec, &svc.spec.task))
                    .collect();
                (!old.is_empty()).then(|| (k.clone(), old))
            })
            .collect();
        let status_state = svc.update_status.as_ref().map(|s| s.state.as_str());
        let rolling_back = matches!(status_state, Some("rollback_started"));
        let progress_exists = self
            .progress
            .get(&svc.id)
            .is_some_and(|p| p.template == template_key(svc));
        let key = template_key(svc);
        let template_changed = self
            .seen
            .insert(svc.id.clone(), key.clone())
            .is_some_and(|old| old != key);
        if !progress_exists {
            self.progress.remove(&svc.id);
            if matches!(status_state, Some("paused" | "rollback_paused")) {
                return;
            }
            if dirty.is_empty() && template_changed && status_state.is_none() {
                plan.statuses.push((
                    svc.id.clone(),
                    svc.meta.version,
                    Some(UpdateStatus {
                        state: "completed".into(),
                        started_at: now,
                        completed_at: Some(now),
                        message: "update completed".into(),
                    }),
                    false,
                ));
                return;
            }
            if dirty.is_empty() {
                // Nothing left to replace: an update (or rollback) recorded as running is done.
                if let Some(started) = svc
                    .update_status
                    .as_ref()
                    .filter(|_| matches!(status_state, Some("updating" | "rollback_started")))
                {
                    plan.statuses.push((
                        svc.id.clone(),
                        svc.meta.version,
                        Some(UpdateStatus {
                            state: if rolling_back {
                                "rollback_completed"
                            } else {
                                "completed"
                            }
                            .into(),
                            started_at: started.started_at,
                            completed_at: Some(now),
                            message: if rolling_back {
                                "rollback completed"
                            } else {
                                "update completed"
                            }
                            .into(),
                        }),
                        false,
                    ));
                }
                return;
            }
            if !matches!(status_state, Some("updating" | "rollback_started")) {
                plan.statuses.push((
                    svc.id.clone(),
                    svc.meta.version,
                    Some(UpdateStatus {
                        state: if rolling_back {
                            "rollback_started"
                        } else {
                            "updating"
                        }
                        .into(),
                        started_at: now,
                        completed_at: None,
                        message: if rolling_back {
                            "manually requested rollback"
                        } else {
                            "update in progress"
                        }
                        .into(),
                    }),
                    false,
                ));
            }
            self.progress.insert(
                svc.id.clone(),
                Progress {
                    rollback: rolling_back,
                    template: template_key(svc),
                    batch: Vec::new(),
                    running_since: None,
                    next_batch_at: now,
                    failures: 0,
                    updated: 0,
                    started_at: svc.update_status.as_ref().map_or(now, |s| s.started_at),
                    paused: false,
                },
            );
        }
        let Some(p) = self.progress.get_mut(&svc.id) else {
            return;
        };
        if p.paused {
            return;
        }
        let cfg: UpdateConfig = if p.rollback {
            svc.spec.rollback.clone()
        } else {
            svc.spec.update.clone()
        }
        .unwrap_or_default();
        let start_first = cfg.order == "start-first";
        let find = |id: &str| by_slot.values().flatten().find(|t| t.id == id).copied();

        // Drive the current batch.
        let mut all_running = !p.batch.is_empty();
        let mut failed_task: Option<String> = None;
        for b in &mut p.batch {
            match &b.new {
                None => {
                    if start_first {
                        let t = Self::new_task(svc, &b.key, node, now);
                        b.new = Some(t.id.clone());
                        plan.tasks.push(TaskChange::Create(Box::new(t)));
                    } else {
                        // Stop-first: the old tasks stop, then a fresh task takes the slot.
                        let old_down = b
                            .old
                            .iter()
                            .all(|id| find(id).is_none_or(|t| t.status.state.is_terminal()));
                        for id in &b.old {
                            if find(id).is_some_and(|t| t.desired_state <= TaskState::Running) {
                                plan.tasks.push(TaskChange::Desired {
                                    id: id.clone(),
                                    state: TaskState::Shutdown,
                                });
                            }
                        }
                        if old_down {
                            let t = Self::new_task(svc, &b.key, node, now);
                            b.new = Some(t.id.clone());
                            plan.tasks.push(TaskChange::Create(Box::new(t)));
                        }
                    }
                    all_running = false;
                }
                Some(id) => match find(id) {
                    Some(t) if t.status.state == TaskState::Running => {
                        if start_first {
                            for old in &b.old {
                                if find(old).is_some_and(|t| t.desired_state <= TaskState::Running)
                                {
                                    plan.tasks.push(TaskChange::Desired {
                                        id: old.clone(),
                                        state: TaskState::Shutdown,
                                    });
                                }
                            }
                        }
                    }
                    Some(t) if t.status.state.is_terminal() => {
                        failed_task = Some(t.id.clone());
                        all_running = false;
                    }
                    Some(_) => all_running = false,
                    None => {
                        failed_task = Some(id.clone());
                        all_running = false;
                    }
                },
            }
        }
        if let Some(task_id) = failed_task {
            p.failures += 1;
            let total = (p.updated + p.batch.len() as u64).max(1);
            if (p.failures as f32) / (total as f32) > cfg.max_failure_ratio {
                let reason = format!("failure or early termination of task {task_id}");
                match (cfg.failure_action.as_str(), p.rollback) {
                    ("rollback", false) if svc.previous_spec.is_some() => {
                        plan.statuses.push((
                            svc.id.clone(),
                            svc.meta.version,
                            Some(UpdateStatus {
                                state: "rollback_started".into(),
                                started_at: now,
                                completed_at: None,
                                message: format!("update rolled back due to {reason}"),
                            }),
                            true,
                        ));
                        self.progress.remove(&svc.id);
                        return;
                    }
                    ("continue", _) => {}
                    (_, rollback) => {
                        plan.statuses.push((
                            svc.id.clone(),
                            svc.meta.version,
                            Some(UpdateStatus {
                                state: if rollback {
                                    "rollback_paused"
                                } else {
                                    "paused"
                                }
                                .into(),
                                started_at: p.started_at,
                                completed_at: None,
                                message: format!("update paused due to {reason}"),
                            }),
                            false,
                        ));
                        p.paused = true;
                        return;
                    }
                }
            }
            // Continue: the failed slot is left to the restart policy.
            p.batch.retain(|b| {
                b.new
                    .as_deref()
                    .and_then(find)
                    .is_none_or(|t| !t.status.state.is_terminal())
            });
        }
        if all_running {
            let since = *p.running_since.get_or_insert(now);
            if now.0 - since.0 >= cfg.monitor * NS {
                p.updated += p.batch.len() as u64;
                p.batch.clear();
                p.running_since = None;
                p.next_batch_at = Timestamp(now.0 + cfg.delay);
            }
        }
        if !p.batch.is_empty() {
            return;
        }
        // Next batch, or done.
        let in_flight: Vec<&SlotKey> = p.batch.iter().map(|b| &b.key).collect();
        let todo: Vec<&(SlotKey, Vec<&Task>)> = dirty
            .iter()
            .filter(|(k, _)| !in_flight.contains(&k))
            .collect();
        if todo.is_empty() {
            plan.statuses.push((
                svc.id.clone(),
                svc.meta.version,
                Some(UpdateStatus {
                    state: if p.rollback {
                        "rollback_completed"
                    } else {
                        "completed"
                    }
                    .into(),
                    started_at: p.started_at,
                    completed_at: Some(now),
                    message: if p.rollback {
                        "rollback completed"
                    } else {
                        "update completed"
                    }
                    .into(),
                }),
                false,
            ));
            p.paused = true; // nothing more until the spec changes
            return;
        }
        if now < p.next_batch_at {
            return;
        }
        let size = if cfg.parallelism == 0 {
            todo.len()
        } else {
            cfg.parallelism as usize
        };
        for (key, old) in todo.into_iter().take(size) {
            p.batch.push(SlotUpdate {
                key: key.clone(),
                old: old.iter().map(|t| t.id.clone()).collect(),
                new: None,
            });
        }
    }
}

/// What identifies the target of a rolling update: the template, and which way it goes.
fn template_key(svc: &Service) -> String {
    let t = &svc.spec.task;
    let pruned = serde_json::from_str::<serde_json::Value>(&t.raw)
        .map(prune)
        .unwrap_or(serde_json::Value::Null);
    let typed = TaskSpec {
        raw: String::new(),
        ..t.clone()
    };
    format!("{typed:?}|{}", canonical(&pruned))
}

/// JSON with object keys sorted, so key order does not matter.
fn canonical(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let sorted: std::collections::BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
            format!("{{{}}}", inner.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

fn should_restart(policy: &RestartPolicy, last: &Task, history: &[&Task], now: Timestamp) -> bool {
    let failed = matches!(
        last.status.state,
        TaskState::Failed | TaskState::Rejected | TaskState::Orphaned
    );
    match policy.condition {
        RestartCondition::None => return false,
        RestartCondition::OnFailure if !failed => return false,
        _ => {}
    }
    if now.0 < last.status.timestamp.0 + policy.delay {
        return false;
    }
    if policy.max_attempts > 0 {
        let window_start = if policy.window > 0 {
            now.0 - policy.window
        } else {
            i64::MIN
        };
        // Restarts so far: tasks of the slot after the first, within the window.
        let restarts = history
            .iter()
            .skip(1)
            .filter(|t| t.meta.created_at.0 >= window_start)
            .count() as u64;
        if restarts >= policy.max_attempts {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
