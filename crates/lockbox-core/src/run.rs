//! One-off tasks (`lockbox run`, `POST /lockbox/v1/run`).
//!
//! A run is a service of one replica that is never restarted (restart condition `none`), so
//! that it goes through the same orchestrator, agent and executors as any task (image `host`
//! through the process executor, other images through the docker executor), shows in
//! `service ls`/`service ps`, and can be inspected, followed and removed with docker's verbs.
//! [`Manager::run`] creates it and follows it: the task's output, then how it ended with a
//! `docker run`-like exit code. With `auto_remove` the service is removed once the task ended.
//!
//! Who is attached matters: an attached run whose client goes away is stopped (its service is
//! removed: the task cannot be re-attached), a detached run keeps going. Secret values never
//! pass through here: the spec references secrets by ID, and the agent hands their values to
//! the executor as for any task.

use std::sync::Arc;
use std::time::Duration;

use lockbox_types::{RestartCondition, ServiceMode, ServiceSpec, Task, TaskState};
use tokio::sync::{broadcast, mpsc};

use crate::{CoreError, LogLine, Manager};

/// A one-off task to run.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The service to create: one replica, restart condition `none`.
    pub spec: ServiceSpec,
    /// Remove the service once its task ended.
    pub auto_remove: bool,
    /// The caller does not stay attached: the run goes on without it.
    pub detach: bool,
}

/// How a run's task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunExit {
    /// The task.
    pub task_id: String,
    /// Its final state (`complete`, `failed`, `rejected`, `shutdown`, ...).
    pub state: TaskState,
    /// `docker run`'s exit code: the task's own, or 125 (could not run), 126 (could not be
    /// invoked), 127 (command not found), 137 (stopped before it ended).
    pub code: i64,
    /// The task status's error, if any.
    pub err: String,
}

/// What a run reports, in order: `Started` (if it was seen running), `Output`…, `Ended`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The task runs.
    Started {
        /// The task.
        task_id: String,
        /// Its container (or, for image `host`, its task ID).
        container_id: String,
    },
    /// Output of the task.
    Output {
        /// 1 = stdout, 2 = stderr.
        stream: u8,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The task ended.
    Ended(RunExit),
}

/// A run in progress.
#[derive(Debug)]
pub struct RunSession {
    /// The run's service.
    pub service_id: String,
    /// Its events; dropping this detaches (attached runs are then stopped).
    pub events: mpsc::Receiver<RunEvent>,
}

/// Lines kept while the task ID is not known yet.
const PENDING_LINES: usize = 10_000;
/// How often the task's state is looked at.
const POLL: Duration = Duration::from_millis(50);
/// After the task ended, output still arriving is forwarded until this long a silence...
const DRAIN_QUIET: Duration = Duration::from_millis(200);
/// ...or this long in all.
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// `docker run`'s exit code for a task that ended.
pub(crate) fn exit_of(t: &Task) -> RunExit {
    let st = &t.status;
    let code = match st.state {
        TaskState::Complete => 0,
        _ if st.exit_code != 0 => st.exit_code,
        TaskState::Failed | TaskState::Rejected => {
            let e = st.err.as_str();
            if e.contains("executable file not found") || e.contains("no such file or directory") {
                127
            } else if e.contains("permission denied") {
                126
            } else {
                125
            }
        }
        TaskState::Shutdown => 137,
        _ => 125,
    };
    RunExit {
        task_id: t.id.clone(),
        state: st.state,
        code,
        err: st.err.clone(),
    }
}

/// Checks that `spec` describes a one-off task.
pub(crate) fn check_spec(spec: &ServiceSpec) -> Result<(), CoreError> {
    if spec.mode != (ServiceMode::Replicated { replicas: 1 }) {
        return Err(CoreError::InvalidArgument(
            "a run is a replicated service of exactly one replica".into(),
        ));
    }
    match &spec.task.restart {
        Some(r) if r.condition == RestartCondition::None => Ok(()),
        _ => Err(CoreError::InvalidArgument(
            "a run's restart condition must be \"none\"".into(),
        )),
    }
}

impl Manager {
    /// Starts a one-off task: creates its service and follows it (see the module docs).
    pub async fn run(self: Arc<Self>, req: RunRequest) -> Result<RunSession, CoreError> {
        check_spec(&req.spec)?;
        let logs = self.logs().await?;
        // Subscribed before the service exists: no line of the task can be missed.
        let lines = logs.follow();
        let service_id = self.create_service(req.spec).await?;
        let (tx, rx) = mpsc::channel(1024);
        let follow = Follow {
            mgr: self,
            service_id: service_id.clone(),
            tx,
            attached: !req.detach,
            auto_remove: req.auto_remove,
        };
        tokio::spawn(follow.run(lines));
        Ok(RunSession {
            service_id,
            events: rx,
        })
    }
}

struct Follow {
    mgr: Arc<Manager>,
    service_id: String,
    tx: mpsc::Sender<RunEvent>,
    attached: bool,
    auto_remove: bool,
}

impl Follow {
    /// Sends an event; `false` once nobody listens.
    async fn send(&self, ev: RunEvent) -> bool {
        self.tx.send(ev).await.is_ok()
    }

    async fn remove_service(&self) {
        match self.mgr.remove_service(&self.service_id).await {
            Ok(()) | Err(CoreError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(service = %self.service_id, error = %e, "could not remove a run's service")
            }
        }
    }

    async fn run(self, mut lines: broadcast::Receiver<LogLine>) {
        let mut pending: Vec<LogLine> = Vec::new();
        let mut task_id: Option<String> = None;
        let mut started = false;
        let mut listening = true;
        let mut tick = tokio::time::interval(POLL);
        let end: RunExit = loop {
            tokio::select! {
                l = lines.recv() => match l {
                    Ok(l) => match &task_id {
                        Some(id) if l.task_id == *id => {
                            if listening && !self.send(RunEvent::Output { stream: l.stream, data: l.data }).await {
                                listening = false;
                            }
                        }
                        Some(_) => {}
                        None => {
                            if pending.len() == PENDING_LINES {
                                pending.remove(0);
                            }
                            pending.push(l);
                        }
                    },
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(service = %self.service_id, lines = n, "a run's output fell behind; lines were lost");
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        lines = broadcast::channel(1).1;
                    }
                },
                _ = self.tx.closed(), if self.attached && listening => {
                    // The client went away: an attached run ends with it.
                    tracing::info!(service = %self.service_id, "client detached from a run; stopping it");
                    self.remove_service().await;
                    return;
                }
                _ = tick.tick() => {
                    let tasks = match self.mgr.list_tasks().await {
                        Ok(t) => t,
                        Err(e) => {
                            tracing::debug!(error = %e, "a run lost its manager");
                            return;
                        }
                    };
                    let task = match &task_id {
                        Some(id) => tasks.into_iter().find(|t| t.id == *id),
                        None => {
                            let t = tasks
                                .into_iter()
                                .filter(|t| t.service_id == self.service_id)
                                .min_by_key(|t| t.meta.created_at);
                            if let Some(t) = &t {
                                task_id = Some(t.id.clone());
                                for l in std::mem::take(&mut pending) {
                                    if l.task_id == t.id && listening
                                        && !self.send(RunEvent::Output { stream: l.stream, data: l.data }).await
                                    {
                                        listening = false;
                                    }
                                }
                            }
                            t
                        }
                    };
                    let Some(task) = task else {
                        if task_id.is_some() {
                            // Removed (its service was removed by someone else).
                            break RunExit {
                                task_id: task_id.clone().unwrap_or_default(),
                                state: TaskState::Remove,
                                code: 137,
                                err: "the task was removed".into(),
                            };
                        }
                        if self.mgr.inspect_service(&self.service_id).await.is_err() {
                            return;
                        }
                        continue;
                    };
                    if task.status.state.is_terminal() {
                        break exit_of(&task);
                    }
                    if !started && task.status.state == TaskState::Running {
                        started = true;
                        let ev = RunEvent::Started {
                            task_id: task.id.clone(),
                            container_id: task.status.container_id.clone(),
                        };
                        if listening && !self.send(ev).await {
                            listening = false;
                        }
                    }
                }
            }
        };
        // Output read after the end was recorded.
        let deadline = tokio::time::Instant::now() + DRAIN_MAX;
        while listening {
            let quiet = tokio::time::Instant::now() + DRAIN_QUIET;
            let until = quiet.min(deadline);
            match tokio::time::timeout_at(until, lines.recv()).await {
                Ok(Ok(l)) if l.task_id == end.task_id => {
                    if !self
                        .send(RunEvent::Output {
                            stream: l.stream,
                            data: l.data,
                        })
                        .await
                    {
                        listening = false;
                    }
                }
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => break,
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        if listening {
            let _ = self.send(RunEvent::Ended(end)).await;
        }
        if self.auto_remove {
            self.remove_service().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use lockbox_types::{Meta, TaskSpec, TaskStatus, Timestamp};

    use super::*;

    fn task(state: TaskState, code: i64, err: &str) -> Task {
        Task {
            id: "t".into(),
            meta: Meta {
                version: 1,
                created_at: Timestamp(1),
                updated_at: Timestamp(1),
            },
            service_id: "s".into(),
            slot: 1,
            node_id: "n".into(),
            spec: TaskSpec::default(),
            service_labels: Default::default(),
            service_version: 1,
            desired_state: TaskState::Running,
            status: TaskStatus {
                timestamp: Timestamp(1),
                state,
                message: String::new(),
                err: err.into(),
                pid: 0,
                exit_code: code,
                container_id: String::new(),
            },
        }
    }

    #[test]
    fn exit_codes_like_docker_run() {
        assert_eq!(exit_of(&task(TaskState::Complete, 0, "")).code, 0);
        assert_eq!(
            exit_of(&task(TaskState::Failed, 3, "task: non-zero exit (3)")).code,
            3
        );
        assert_eq!(
            exit_of(&task(
                TaskState::Failed,
                0,
                "starting container failed: exec: \"nope\": executable file not found in $PATH"
            ))
            .code,
            127
        );
        assert_eq!(
            exit_of(&task(TaskState::Rejected, 0, "No such image: x")).code,
            125
        );
        assert_eq!(exit_of(&task(TaskState::Shutdown, 0, "")).code, 137);
    }

    #[test]
    fn spec_must_be_one_off() {
        let mut spec = ServiceSpec {
            name: "r".into(),
            labels: Default::default(),
            mode: ServiceMode::Replicated { replicas: 1 },
            task: TaskSpec::default(),
            update: None,
            rollback: None,
            raw: String::new(),
        };
        assert!(check_spec(&spec).is_err());
        spec.task.restart = Some(lockbox_types::RestartPolicy {
            condition: RestartCondition::None,
            ..Default::default()
        });
        assert!(check_spec(&spec).is_ok());
        spec.mode = ServiceMode::Replicated { replicas: 2 };
        assert!(check_spec(&spec).is_err());
    }
}
