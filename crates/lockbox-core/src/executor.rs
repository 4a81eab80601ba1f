//! The boundary between the agent and the things that run tasks. The process executor
//! (`lockbox-exec`) and, later, the docker executor implement [`Executor`]; the agent only
//! hands them a [`Launch`] and watches the [`TaskHandle`].

use std::time::Duration;

use futures::future::BoxFuture;
use lockbox_crypto::SecretBytes;
use lockbox_types::TaskSpec;
use tokio::io::AsyncRead;

/// A secret file for a task.
#[derive(Debug, Clone)]
pub struct SecretMount {
    /// Target: relative (under /run/secrets) or absolute.
    pub target: String,
    /// The value.
    pub data: SecretBytes,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Mode.
    pub mode: u32,
}

/// A network a task is attached to (from `TaskTemplate.Networks`, resolved to the stored
/// network). Host-process tasks share the host's network and ignore these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkAttachment {
    /// Network ID in lockbox.
    pub id: String,
    /// Network name (`<stack>_<net>` for stack networks).
    pub name: String,
    /// Whether other containers may attach (`--attachable`).
    pub attachable: bool,
    /// No external connectivity.
    pub internal: bool,
    /// Network labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// DNS aliases of the task on this network (the stack's short service name, ...).
    pub aliases: Vec<String>,
}

/// Everything needed to start a task.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Task ID.
    pub task_id: String,
    /// Service ID, for container labels.
    pub service_id: String,
    /// Service name, for container names and labels.
    pub service_name: String,
    /// The node running the task, for container names (global services) and labels.
    pub node_id: String,
    /// Slot.
    pub slot: u64,
    /// The template.
    pub spec: TaskSpec,
    /// The task's secrets, and only those.
    pub secrets: Vec<SecretMount>,
    /// Networks to attach to, in the order of the spec.
    pub networks: Vec<NetworkAttachment>,
}

/// How a task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code (128+signal when killed).
    pub code: i64,
}

/// A task's output stream.
pub type Output = Box<dyn AsyncRead + Send + Unpin>;

/// A running task.
pub trait TaskHandle: Send {
    /// Process ID, for the task status.
    fn pid(&self) -> u32;
    /// Executor handle (container ID, or the task ID for host processes).
    fn container_id(&self) -> String;
    /// Stdout and stderr, once.
    fn take_output(&mut self) -> (Option<Output>, Option<Output>);
    /// Waits for the task to end. Must be cancel-safe: the agent drops the future to apply a
    /// live update and then waits again.
    fn wait(&mut self) -> BoxFuture<'_, Result<Exit, String>>;
    /// Stops the task: its stop signal, then SIGKILL after `grace`.
    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, Result<Exit, String>>;
    /// Replaces the content of the task's secret files in place (live update). Each given mount
    /// names an existing target of this task; its file is written beside the old one and
    /// renamed over it, so a reader sees the old or the new value, never a mix. Ownership and
    /// mode as given. The error must never contain a secret value.
    fn update_secrets(&mut self, _secrets: Vec<SecretMount>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("this executor cannot update secrets in place".to_owned()) })
    }
    /// Sends `signal` (a name such as `SIGHUP` or `HUP`, or a number) to the task's main
    /// process. Used after a live update.
    fn signal(&mut self, _signal: &str) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Err("this executor cannot signal tasks".to_owned()) })
    }
}

/// Something that can run tasks of some images.
pub trait Executor: Send + Sync + 'static {
    /// Whether this executor runs `image`.
    fn handles(&self, image: &str) -> bool;
    /// Gets the task ready before it starts (the docker executor finds or pulls its image).
    /// An error rejects the task (state `rejected`, the error as it is, e.g. `No such image:
    /// x`), as swarm does when preparing fails. It must never contain a secret value.
    fn prepare(&self, _launch: &Launch) -> BoxFuture<'static, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
    /// Starts a task. The error is shown to users in the task status: it must never contain a
    /// secret value.
    fn start(&self, launch: Launch) -> BoxFuture<'static, Result<Box<dyn TaskHandle>, String>>;
}
