//! Services and tasks.
//!
//! A service spec is kept twice: the typed fields lockbox acts on, and `raw`, the Docker JSON
//! the client sent, which the API echoes back so that every field round-trips even when lockbox
//! does not act on it. The API fills both at ingress; nothing else writes `raw`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::object::{Meta, Timestamp};

/// Where and how a secret appears in a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretFileTarget {
    /// Relative to /run/secrets, or absolute.
    pub name: String,
    /// Owner uid, as a decimal string (Docker's wire type).
    pub uid: String,
    /// Owner gid, as a decimal string.
    pub gid: String,
    /// File mode.
    pub mode: u32,
}

/// A reference from a task template to a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    /// The secret's ID.
    pub secret_id: String,
    /// The secret's name, as the client saw it.
    pub secret_name: String,
    /// The file target; a reference without one is malformed.
    pub file: Option<SecretFileTarget>,
}

/// When a task is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartCondition {
    /// Never.
    None,
    /// After a non-zero exit.
    OnFailure,
    /// Always.
    Any,
}

/// The restart policy of a task template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// Condition (default any).
    pub condition: RestartCondition,
    /// Delay between restarts, ns (default 5 s).
    pub delay: i64,
    /// Attempts within `window` (0 = unlimited).
    pub max_attempts: u64,
    /// Window for counting attempts, ns (0 = forever).
    pub window: i64,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            condition: RestartCondition::Any,
            delay: 5_000_000_000,
            max_attempts: 0,
            window: 0,
        }
    }
}

/// What a task runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Image; `host` runs the command as a host process.
    pub image: String,
    /// Entrypoint override.
    pub command: Vec<String>,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment, `K=V`.
    pub env: Vec<String>,
    /// Working directory.
    pub dir: String,
    /// User, `uid[:gid]` or names.
    pub user: String,
    /// Supplementary groups.
    pub groups: Vec<String>,
    /// Hostname.
    pub hostname: String,
    /// Container labels.
    pub labels: BTreeMap<String, String>,
    /// Secrets granted to the task.
    pub secrets: Vec<SecretRef>,
    /// Restart policy; `None` means the defaults.
    pub restart: Option<RestartPolicy>,
    /// Grace period before SIGKILL, ns (default 10 s).
    pub stop_grace_period: Option<i64>,
    /// Signal sent to stop (default SIGTERM).
    pub stop_signal: String,
    /// Placement constraints.
    pub constraints: Vec<String>,
    /// Bumped to force a rolling restart.
    pub force_update: u64,
    /// The Docker `TaskTemplate` JSON as sent.
    pub raw: String,
}

/// Replicated or global.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceMode {
    /// A fixed number of tasks.
    Replicated {
        /// How many.
        replicas: u64,
    },
    /// One task per eligible node.
    Global,
}

/// `UpdateConfig` / `RollbackConfig`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    /// Tasks updated at once (0 = all).
    pub parallelism: u64,
    /// Delay between batches, ns.
    pub delay: i64,
    /// `pause`, `continue` or `rollback`.
    pub failure_action: String,
    /// How long to watch new tasks for failure, ns.
    pub monitor: i64,
    /// Failures tolerated, as a ratio of the tasks updated.
    pub max_failure_ratio: f32,
    /// `stop-first` or `start-first`.
    pub order: String,
}

impl Eq for UpdateConfig {}

impl Default for UpdateConfig {
    fn default() -> Self {
        UpdateConfig {
            parallelism: 1,
            delay: 0,
            failure_action: "pause".into(),
            monitor: 5_000_000_000,
            max_failure_ratio: 0.0,
            order: "stop-first".into(),
        }
    }
}

/// A service spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Unique name.
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Mode.
    pub mode: ServiceMode,
    /// Task template.
    pub task: TaskSpec,
    /// Update settings; `None` means the defaults.
    pub update: Option<UpdateConfig>,
    /// Rollback settings; `None` means the defaults.
    pub rollback: Option<UpdateConfig>,
    /// The Docker `ServiceSpec` JSON as sent.
    pub raw: String,
}

/// Progress of a rolling update, as Docker's `UpdateStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// `updating`, `paused`, `completed`, `rollback_started`, `rollback_paused`, `rollback_completed`.
    pub state: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it finished, if it did.
    pub completed_at: Option<Timestamp>,
    /// Human message.
    pub message: String,
}

/// A service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Current spec.
    pub spec: ServiceSpec,
    /// The spec before the last update, for rollback.
    pub previous_spec: Option<ServiceSpec>,
    /// Rolling update progress.
    pub update_status: Option<UpdateStatus>,
}

/// Task states, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskState {
    /// Created.
    New,
    /// Waiting for resources.
    Pending,
    /// Given to a node.
    Assigned,
    /// Accepted by the node.
    Accepted,
    /// Preparing (secrets, image).
    Preparing,
    /// Ready to start.
    Ready,
    /// Starting.
    Starting,
    /// Running.
    Running,
    /// Exited 0.
    Complete,
    /// Stopped on request.
    Shutdown,
    /// Exited non-zero or could not start.
    Failed,
    /// Refused by the node.
    Rejected,
    /// Marked for removal.
    Remove,
    /// Its node is gone.
    Orphaned,
}

impl TaskState {
    /// Docker's lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "new",
            TaskState::Pending => "pending",
            TaskState::Assigned => "assigned",
            TaskState::Accepted => "accepted",
            TaskState::Preparing => "preparing",
            TaskState::Ready => "ready",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Complete => "complete",
            TaskState::Shutdown => "shutdown",
            TaskState::Failed => "failed",
            TaskState::Rejected => "rejected",
            TaskState::Remove => "remove",
            TaskState::Orphaned => "orphaned",
        }
    }

    /// Parses Docker's name.
    pub fn parse(s: &str) -> Option<TaskState> {
        [
            TaskState::New,
            TaskState::Pending,
            TaskState::Assigned,
            TaskState::Accepted,
            TaskState::Preparing,
            TaskState::Ready,
            TaskState::Starting,
            TaskState::Running,
            TaskState::Complete,
            TaskState::Shutdown,
            TaskState::Failed,
            TaskState::Rejected,
            TaskState::Remove,
            TaskState::Orphaned,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Whether the task has stopped for good.
    pub fn is_terminal(self) -> bool {
        self > TaskState::Running
    }
}

/// What happened to a task last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// When.
    pub timestamp: Timestamp,
    /// State.
    pub state: TaskState,
    /// Message (`started`, `finished`, ...).
    pub message: String,
    /// Error, if any.
    pub err: String,
    /// Process ID while running.
    pub pid: u32,
    /// Exit code after exit.
    pub exit_code: i64,
    /// Executor's handle (container ID, or the task ID for host processes).
    pub container_id: String,
}

/// A task: one scheduled run of a service's template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// ID.
    pub id: String,
    /// Version and times.
    pub meta: Meta,
    /// Owning service.
    pub service_id: String,
    /// Slot (replicated; 0 for global).
    pub slot: u64,
    /// Node.
    pub node_id: String,
    /// The template it runs (a copy of the service's at creation).
    pub spec: TaskSpec,
    /// Version of the service spec it was created from.
    pub service_version: u64,
    /// The service's labels when the task was created (what the `label` filter matches).
    pub service_labels: BTreeMap<String, String>,
    /// What it should be doing.
    pub desired_state: TaskState,
    /// What it is doing.
    pub status: TaskStatus,
}

/// One change to tasks; a batch of them is one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskChange {
    /// Create a task (ignored if its service is gone).
    Create(Box<Task>),
    /// Record a status (ignored if the task is gone or the state would go backwards).
    Status {
        /// Task ID.
        id: String,
        /// New status.
        status: TaskStatus,
    },
    /// Change the desired state (only forward).
    Desired {
        /// Task ID.
        id: String,
        /// New desired state.
        state: TaskState,
    },
    /// Place a pending task on a node, with its new status.
    Assign {
        /// Task ID.
        id: String,
        /// Node.
        node_id: String,
        /// New status.
        status: TaskStatus,
    },
    /// Delete a task record.
    Remove {
        /// Task ID.
        id: String,
    },
}
