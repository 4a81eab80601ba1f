//! The agent: runs this node's tasks through the executors, reports their states to the
//! store, keeps their output for `service logs`, and stops them when asked.
//!
//! Secret values are read from the store only for a task that references them, at start, and
//! handed to the executor; the agent keeps no copy.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use lockbox_crypto::SecretBytes;
use lockbox_types::{Command, Network, Task, TaskChange, TaskState, TaskStatus, Timestamp};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, oneshot};

use crate::executor::{Executor, Launch, NetworkAttachment, SecretMount, TaskHandle};
use crate::manager::{Active, now};

/// What the agent needs from the node it runs on: a manager reads its replica of the store;
/// a worker holds only what the dispatcher gave it for its own tasks.
pub(crate) trait AgentHost: Send + Sync + 'static {
    /// The tasks assigned to this node.
    fn tasks(&self) -> Vec<Task>;
    /// A secret's value, for a task of this node that references it.
    fn secret(&self, id: &str) -> Option<SecretBytes>;
    /// A service's name.
    fn service_name(&self, id: &str) -> String;
    /// A network by ID or name.
    fn network(&self, key: &str) -> Option<Network>;
    /// Records a task's new status.
    fn report(&self, id: String, status: TaskStatus) -> BoxFuture<'_, ()>;
    /// This node's audit trail, for deliveries.
    fn audit(&self) -> Option<&crate::audit::AuditTrail>;
    /// The keyed fingerprint of a value, when this node has the key.
    fn fingerprint(&self, value: &SecretBytes) -> Option<String>;
    /// Wakes the node's loop.
    fn kick(&self);
    /// The tasks whose output is kept (a manager also keeps its workers' task output).
    fn keep_logs_of(&self) -> std::collections::HashSet<String> {
        self.tasks().into_iter().map(|t| t.id).collect()
    }
}

impl AgentHost for Active {
    fn tasks(&self) -> Vec<Task> {
        self.store.read(|s| {
            s.tasks
                .values()
                .filter(|t| t.node_id == self.node_id)
                .cloned()
                .collect()
        })
    }
    fn secret(&self, id: &str) -> Option<SecretBytes> {
        self.store
            .read(|s| s.secrets.get(id).map(|s| s.spec.data.clone()))
    }
    fn service_name(&self, id: &str) -> String {
        self.store
            .read(|s| s.services.get(id).map(|s| s.spec.name.clone()))
            .unwrap_or_default()
    }
    fn network(&self, key: &str) -> Option<Network> {
        self.store.read(|st| {
            st.networks
                .get(key)
                .or_else(|| st.networks.values().find(|n| n.name == key))
                .cloned()
        })
    }
    fn report(&self, id: String, status: TaskStatus) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if self.is_stopping() {
                return;
            }
            let cmd = Command::Tasks {
                changes: vec![TaskChange::Status {
                    id: id.clone(),
                    status,
                }],
                now: now(),
            };
            if let Err(e) = self.store.propose(cmd).await {
                tracing::warn!(task = id, error = %e, "could not record task status");
            }
            Active::kick(self);
        })
    }
    fn audit(&self) -> Option<&crate::audit::AuditTrail> {
        self.audit.as_ref()
    }
    fn fingerprint(&self, value: &SecretBytes) -> Option<String> {
        self.value_fingerprint(value)
    }
    fn kick(&self) {
        Active::kick(self)
    }
    fn keep_logs_of(&self) -> std::collections::HashSet<String> {
        self.store.read(|s| s.tasks.keys().cloned().collect())
    }
}

/// One line of task output.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    /// Task ID.
    pub task_id: String,
    /// 1 = stdout, 2 = stderr.
    pub stream: u8,
    /// When it was read.
    pub time: Timestamp,
    /// The bytes, newline included.
    pub data: Vec<u8>,
}

const LOG_BYTES_PER_TASK: usize = 1024 * 1024;

/// Task output kept in memory (never on disk: a careless program may print a secret).
#[derive(Debug)]
pub struct Logs {
    per_task: Mutex<HashMap<String, (VecDeque<LogLine>, usize)>>,
    live: broadcast::Sender<LogLine>,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            per_task: Mutex::new(HashMap::new()),
            live: broadcast::channel(4096).0,
        }
    }
}

impl Logs {
    pub(crate) fn push(&self, line: LogLine) {
        if let Ok(mut m) = self.per_task.lock() {
            let (q, bytes) = m.entry(line.task_id.clone()).or_default();
            *bytes += line.data.len();
            q.push_back(line.clone());
            while *bytes > LOG_BYTES_PER_TASK {
                match q.pop_front() {
                    Some(old) => *bytes -= old.data.len(),
                    None => break,
                }
            }
        }
        let _ = self.live.send(line);
    }

    /// The kept lines of these tasks, in time order.
    pub fn lines(&self, task_ids: &[String]) -> Vec<LogLine> {
        let mut out: Vec<LogLine> = match self.per_task.lock() {
            Ok(m) => task_ids
                .iter()
                .filter_map(|id| m.get(id))
                .flat_map(|(q, _)| q.iter().cloned())
                .collect(),
            Err(_) => Vec::new(),
        };
        out.sort_by_key(|l| l.time);
        out
    }

    /// New lines as they come.
    pub fn follow(&self) -> broadcast::Receiver<LogLine> {
        self.live.subscribe()
    }

    fn forget_except(&self, keep: &dyn Fn(&str) -> bool) {
        if let Ok(mut m) = self.per_task.lock() {
            m.retain(|id, _| keep(id));
        }
    }
}

struct Running {
    stop: Option<oneshot::Sender<Duration>>,
    control: tokio::sync::mpsc::Sender<Control>,
}

/// A live update for a running task: new contents for some of its secret files, then an
/// optional signal.
pub(crate) struct Control {
    pub(crate) secrets: Vec<SecretMount>,
    pub(crate) signal: Option<String>,
    pub(crate) reply: oneshot::Sender<Result<(), String>>,
}

/// The agent of this node.
pub(crate) struct Agent {
    executors: Vec<Arc<dyn Executor>>,
    running: Mutex<HashMap<String, Running>>,
    pub(crate) logs: Arc<Logs>,
}

fn status(state: TaskState, message: &str) -> TaskStatus {
    TaskStatus {
        timestamp: now(),
        state,
        message: message.into(),
        err: String::new(),
        pid: 0,
        exit_code: 0,
        container_id: String::new(),
    }
}

async fn report(host: &dyn AgentHost, id: &str, st: TaskStatus) {
    host.report(id.to_owned(), st).await;
}

impl Agent {
    pub(crate) fn new(executors: Vec<Arc<dyn Executor>>) -> Agent {
        Agent {
            executors,
            running: Mutex::new(HashMap::new()),
            logs: Arc::new(Logs::default()),
        }
    }

    /// One pass: start assigned tasks, stop tasks asked to stop, fail tasks lost in a restart.
    pub(crate) async fn step(self: &Arc<Self>, active: &Arc<dyn AgentHost>) {
        let mine: Vec<Task> = active.tasks();
        let mut lost = Vec::new();
        {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            for t in &mine {
                let tracked = running.contains_key(&t.id);
                if t.desired_state == TaskState::Running
                    && t.status.state == TaskState::Assigned
                    && !tracked
                {
                    let (tx, rx) = oneshot::channel();
                    let (ctx, crx) = tokio::sync::mpsc::channel(4);
                    running.insert(
                        t.id.clone(),
                        Running {
                            stop: Some(tx),
                            control: ctx,
                        },
                    );
                    let agent = self.clone();
                    let active = active.clone();
                    let task = t.clone();
                    tokio::spawn(async move { agent.run(active, task, rx, crx).await });
                } else if t.desired_state > TaskState::Running && tracked {
                    if let Some(r) = running.get_mut(&t.id)
                        && let Some(stop) = r.stop.take()
                    {
                        let grace = t.spec.stop_grace_period.unwrap_or(10_000_000_000).max(0);
                        let _ = stop.send(Duration::from_nanos(grace as u64));
                    }
                } else if !tracked
                    && t.status.state > TaskState::Assigned
                    && !t.status.state.is_terminal()
                {
                    lost.push(t.id.clone());
                }
            }
        }
        for id in lost {
            let mut st = status(TaskState::Failed, "task lost");
            st.err = "the task's process ended when the lockbox daemon stopped".into();
            report(active.as_ref(), &id, st).await;
        }
        let ids = active.keep_logs_of();
        self.logs.forget_except(&|id| ids.contains(id));
    }

    /// Sends a live update to a running task of this node and waits for its answer.
    pub(crate) async fn live_update(
        &self,
        task_id: &str,
        secrets: Vec<SecretMount>,
        signal: Option<String>,
    ) -> Result<(), String> {
        let tx = self
            .running
            .lock()
            .ok()
            .and_then(|r| r.get(task_id).map(|r| r.control.clone()))
            .ok_or_else(|| format!("task {task_id} is not running on this node"))?;
        let (reply, rx) = oneshot::channel();
        tx.send(Control {
            secrets,
            signal,
            reply,
        })
        .await
        .map_err(|_| format!("task {task_id} ended"))?;
        rx.await.map_err(|_| format!("task {task_id} ended"))?
    }

    /// Stops every task and waits (at most `grace` plus a little) for them to end.
    pub(crate) async fn stop_all(&self, grace: Duration) {
        if let Ok(mut running) = self.running.lock() {
            for r in running.values_mut() {
                if let Some(stop) = r.stop.take() {
                    let _ = stop.send(grace.min(Duration::from_secs(2)));
                }
            }
        }
        let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(1);
        while tokio::time::Instant::now() < deadline {
            if self.running.lock().map(|r| r.is_empty()).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn executor_for(&self, image: &str) -> Option<Arc<dyn Executor>> {
        self.executors.iter().find(|e| e.handles(image)).cloned()
    }

    fn secrets_for(active: &dyn AgentHost, task: &Task) -> Result<Vec<SecretMount>, String> {
        let mut out = Vec::new();
        for r in &task.spec.secrets {
            let Some(file) = &r.file else { continue };
            let data = active.secret(&r.secret_id).ok_or_else(|| {
                format!(
                    "secret {} not found: unable to get secret from secret store",
                    r.secret_name
                )
            })?;
            let uid = file
                .uid
                .parse::<u32>()
                .map_err(|_| format!("invalid uid {:?} for secret {}", file.uid, r.secret_name))?;
            let gid = file
                .gid
                .parse::<u32>()
                .map_err(|_| format!("invalid gid {:?} for secret {}", file.gid, r.secret_name))?;
            out.push(SecretMount {
                target: file.name.clone(),
                data,
                uid,
                gid,
                mode: file.mode,
            });
        }
        Ok(out)
    }

    /// Records the delivery of each of the task's secrets before any byte of them is written
    /// for it; a record that cannot be written keeps the task from starting.
    async fn audit_deliveries(
        active: &dyn AgentHost,
        task: &Task,
        service_name: &str,
    ) -> Result<(), String> {
        let Some(trail) = active.audit() else {
            return Ok(());
        };
        for r in &task.spec.secrets {
            let Some(file) = &r.file else { continue };
            let fingerprint = active
                .secret(&r.secret_id)
                .and_then(|d| active.fingerprint(&d));
            let mut details = std::collections::BTreeMap::new();
            details.insert("target".to_owned(), file.name.clone());
            details.insert("node".to_owned(), task.node_id.clone());
            details.insert("uid".to_owned(), file.uid.clone());
            details.insert("gid".to_owned(), file.gid.clone());
            details.insert("mode".to_owned(), format!("{:o}", file.mode));
            if let Some(fp) = fingerprint {
                details.insert("value_hmac".to_owned(), fp);
            }
            let entry = crate::AuditEntry {
                actor: "daemon".into(),
                source: "agent".into(),
                action: "secret.deliver".into(),
                method: None,
                path: None,
                objects: vec![
                    crate::AuditObject::new("secret", r.secret_id.clone(), r.secret_name.clone()),
                    crate::AuditObject::new("task", task.id.clone(), String::new()),
                    crate::AuditObject::new(
                        "service",
                        task.service_id.clone(),
                        service_name.to_owned(),
                    ),
                ],
                status: 0,
                error: None,
                details,
            };
            trail
                .record(entry)
                .await
                .map_err(|e| format!("secret {} not delivered: {e}", r.secret_name))?;
        }
        Ok(())
    }

    /// The task's `TaskTemplate.Networks`, resolved against the stored networks (by ID, then
    /// name). Unknown targets are skipped: the service was validated when it was created, and a
    /// network removed since then has nothing to attach to.
    fn networks_for(active: &dyn AgentHost, task: &Task) -> Vec<NetworkAttachment> {
        #[derive(serde::Deserialize)]
        struct Template {
            #[serde(rename = "Networks", default)]
            networks: Option<Vec<Attach>>,
        }
        #[derive(serde::Deserialize)]
        struct Attach {
            #[serde(rename = "Target", default)]
            target: String,
            #[serde(rename = "Aliases", default)]
            aliases: Option<Vec<String>>,
        }
        let Ok(t) = serde_json::from_str::<Template>(&task.spec.raw) else {
            return Vec::new();
        };
        let wanted = t.networks.unwrap_or_default();
        wanted
            .into_iter()
            .filter_map(|a| {
                let n = active.network(&a.target)?;
                Some(NetworkAttachment {
                    id: n.id.clone(),
                    name: n.name.clone(),
                    attachable: n.attachable,
                    internal: n.internal,
                    labels: n.labels.clone(),
                    aliases: a.aliases.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn run(
        self: Arc<Self>,
        active: Arc<dyn AgentHost>,
        task: Task,
        stop: oneshot::Receiver<Duration>,
        control: tokio::sync::mpsc::Receiver<Control>,
    ) {
        let id = task.id.clone();
        let result = self.run_inner(active.as_ref(), &task, stop, control).await;
        if let Err(err) = result {
            let mut st = status(TaskState::Failed, "starting");
            st.err = err;
            report(active.as_ref(), &id, st).await;
        }
        if let Ok(mut r) = self.running.lock() {
            r.remove(&id);
        }
        active.kick();
    }

    async fn run_inner(
        &self,
        active: &dyn AgentHost,
        task: &Task,
        mut stop: oneshot::Receiver<Duration>,
        mut control: tokio::sync::mpsc::Receiver<Control>,
    ) -> Result<(), String> {
        report(active, &task.id, status(TaskState::Preparing, "preparing")).await;
        let image = task.spec.image.clone();
        let executor = self.executor_for(&image).ok_or_else(|| {
            format!(
                "no executor for image {image:?}: image \"host\" runs host processes; other images need the docker executor (start the daemon with --docker-host unix:///var/run/docker.sock)"
            )
        })?;
        let secrets = Self::secrets_for(active, task)?;
        let service_name = active.service_name(&task.service_id);
        Self::audit_deliveries(active, task, &service_name).await?;
        let launch = Launch {
            task_id: task.id.clone(),
            service_id: task.service_id.clone(),
            service_name,
            node_id: task.node_id.clone(),
            slot: task.slot,
            spec: task.spec.clone(),
            secrets,
            networks: Self::networks_for(active, task),
        };
        if let Err(err) = executor.prepare(&launch).await {
            let mut st = status(TaskState::Rejected, "preparing");
            st.err = err;
            report(active, &task.id, st).await;
            return Ok(());
        }
        report(active, &task.id, status(TaskState::Starting, "starting")).await;
        let mut handle: Box<dyn TaskHandle> = executor
            .start(launch)
            .await
            .map_err(|e| format!("starting container failed: {e}"))?;
        let mut st = status(TaskState::Running, "started");
        st.pid = handle.pid();
        st.container_id = handle.container_id();
        let container_id = st.container_id.clone();
        report(active, &task.id, st).await;
        let (out, err) = handle.take_output();
        for (stream, reader) in [(1u8, out), (2u8, err)] {
            if let Some(reader) = reader {
                let logs = self.logs.clone();
                let task_id = task.id.clone();
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(reader);
                    let mut buf = Vec::new();
                    loop {
                        buf.clear();
                        match lines.read_until(b'\n', &mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => logs.push(LogLine {
                                task_id: task_id.clone(),
                                stream,
                                time: now(),
                                data: buf.clone(),
                            }),
                        }
                    }
                });
            }
        }
        let stopped;
        let exit = loop {
            let update = tokio::select! {
                exit = handle.wait() => { stopped = false; break exit }
                grace = &mut stop => {
                    stopped = true;
                    break handle.stop(grace.unwrap_or(Duration::from_secs(10))).await
                }
                Some(c) = control.recv() => c,
            };
            // `wait` is cancel-safe: apply the update, then wait again.
            let mut result = handle.update_secrets(update.secrets).await;
            if result.is_ok()
                && let Some(sig) = &update.signal
            {
                result = handle.signal(sig).await;
            }
            let _ = update.reply.send(result);
        };
        let mut st = match (exit, stopped) {
            (_, true) => status(TaskState::Shutdown, "shutdown"),
            (Ok(e), false) if e.code == 0 => status(TaskState::Complete, "finished"),
            (Ok(e), false) => {
                let mut s = status(TaskState::Failed, "started");
                s.err = format!("task: non-zero exit ({})", e.code);
                s.exit_code = e.code;
                s
            }
            (Err(e), false) => {
                let mut s = status(TaskState::Failed, "started");
                s.err = e;
                s
            }
        };
        st.container_id = container_id;
        report(active, &task.id, st).await;
        Ok(())
    }
}
