//! A running task: its container, its output, its end.

use std::time::Duration;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use futures::StreamExt;
use futures::future::BoxFuture;
use lockbox_core::{Exit, Output, SecretMount, TaskHandle};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

use crate::engine_error;
use crate::mounts::SecretDir;
use crate::network::{self, EngineNetwork, Networks};

/// How long the output pump may take to deliver what is left after the container exited.
const DRAIN: Duration = Duration::from_secs(5);

pub(crate) struct DockerTask {
    pub(crate) docker: Docker,
    pub(crate) container: String,
    pub(crate) pid: u32,
    pub(crate) stdout: Option<Output>,
    pub(crate) stderr: Option<Output>,
    pub(crate) pump_done: Option<oneshot::Receiver<()>>,
    pub(crate) secrets: Option<SecretDir>,
    pub(crate) networks: Option<TaskNetworks>,
    /// How the container ended, once known (so that a `wait` dropped while it cleaned up
    /// picks up where it was).
    pub(crate) exited: Option<Result<i64, String>>,
    pub(crate) finished: bool,
}

/// The engine networks a task's container is attached to, removed after it when no other
/// container uses them.
pub(crate) struct TaskNetworks {
    pub(crate) lock: std::sync::Arc<Networks>,
    pub(crate) list: Vec<EngineNetwork>,
}

impl TaskNetworks {
    /// Removes those of the networks that no container uses any more (call after removing the
    /// task's container).
    pub(crate) async fn remove_unused(self, docker: &Docker) {
        if self.list.is_empty() {
            return;
        }
        let _guard = self.lock.lock().await;
        for n in &self.list {
            network::remove_if_unused(docker, &n.id, &n.name).await;
        }
    }
}

/// Removes a task's networks if unused (after its container).
async fn remove_networks(docker: &Docker, nets: Option<TaskNetworks>) {
    if let Some(n) = nets {
        n.remove_unused(docker).await;
    }
}

/// Copies the attach stream into two pipes the agent reads; they end when the stream does.
pub(crate) fn pump(
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, BollardError>> + Send>,
    >,
) -> (Output, Output, oneshot::Receiver<()>) {
    let (mut out_w, out_r) = tokio::io::duplex(64 * 1024);
    let (mut err_w, err_r) = tokio::io::duplex(64 * 1024);
    let (done_tx, done_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut out_open, mut err_open) = (true, true);
        while let Some(item) = output.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    if out_open && out_w.write_all(&message).await.is_err() {
                        out_open = false;
                    }
                }
                Ok(LogOutput::StdErr { message }) => {
                    if err_open && err_w.write_all(&message).await.is_err() {
                        err_open = false;
                    }
                }
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "container output stream ended");
                    break;
                }
            }
        }
        let _ = out_w.shutdown().await;
        let _ = err_w.shutdown().await;
        drop((out_w, err_w));
        let _ = done_tx.send(());
    });
    (Box::new(out_r), Box::new(err_r), done_rx)
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// Waits for the container to stop; its exit code. Survives a dropped connection (an engine
/// restart) by looking at the container's state.
pub(crate) async fn wait_exit(docker: &Docker, id: &str) -> Result<i64, String> {
    let mut failures = 0;
    loop {
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut s = docker.wait_container(id, Some(opts));
        let err = match s.next().await {
            Some(Ok(r)) => return Ok(r.status_code),
            Some(Err(BollardError::DockerContainerWaitError { code, .. })) => return Ok(code),
            Some(Err(e)) => e.to_string(),
            None => "the wait stream ended".into(),
        };
        drop(s);
        tokio::time::sleep(Duration::from_millis(500)).await;
        match docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        {
            Ok(info) => {
                let st = info.state.unwrap_or_default();
                if st.running != Some(true) && st.restarting != Some(true) {
                    return Ok(st.exit_code.unwrap_or(0));
                }
            }
            Err(e) if is_not_found(&e) => {
                return Err(format!("container {id} was removed while it ran"));
            }
            Err(e) => {
                failures += 1;
                if failures > 120 {
                    return Err(format!(
                        "lost the Docker Engine while waiting for container {id}: {err}; {}",
                        engine_error(&e)
                    ));
                }
            }
        }
    }
}

/// Removes a container (and its anonymous volumes), whatever its state.
pub(crate) async fn remove_container(docker: &Docker, id: &str) {
    let opts = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(opts)).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => {}
        Err(e) => {
            tracing::warn!(container = id, error = %engine_error(&e), "could not remove a task's container")
        }
    }
}

/// Unmounts a task's secrets tmpfs (blocking syscalls, off the async threads).
pub(crate) async fn remove_secrets(sd: Option<SecretDir>) {
    let Some(mut sd) = sd else { return };
    let res = tokio::task::spawn_blocking(move || {
        let dir = sd.dir().to_path_buf();
        sd.remove().map_err(|e| (dir, e))
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err((dir, e))) => {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a task's secrets tmpfs")
        }
        Err(e) => tracing::warn!(error = %e, "secrets tmpfs removal panicked"),
    }
}

impl DockerTask {
    /// After the container stopped: notes an OOM kill, lets the output drain, removes the
    /// container, then unmounts the secrets.
    async fn finish(&mut self, code: i64) -> Exit {
        if let Ok(info) = self
            .docker
            .inspect_container(&self.container, None::<InspectContainerOptions>)
            .await
            && let Some(st) = info.state
            && st.oom_killed == Some(true)
        {
            tracing::warn!(container = %self.container, code, "task's container was killed for lack of memory (OOM)");
        }
        if let Some(done) = self.pump_done.take() {
            let _ = tokio::time::timeout(DRAIN, done).await;
        }
        remove_container(&self.docker, &self.container).await;
        remove_secrets(self.secrets.take()).await;
        remove_networks(&self.docker, self.networks.take()).await;
        self.finished = true;
        Exit { code }
    }
}

impl TaskHandle for DockerTask {
    fn pid(&self) -> u32 {
        self.pid
    }

    fn container_id(&self) -> String {
        self.container.clone()
    }

    fn take_output(&mut self) -> (Option<Output>, Option<Output>) {
        (self.stdout.take(), self.stderr.take())
    }

    /// Cancel-safe: waiting has no effect until the container ended; after that, its end is
    /// kept and each cleanup step is idempotent, so a dropped `wait` is finished by the next.
    fn wait(&mut self) -> BoxFuture<'_, Result<Exit, String>> {
        Box::pin(async move {
            let code = match self.exited.clone() {
                Some(c) => c,
                None => {
                    let c = wait_exit(&self.docker, &self.container).await;
                    self.exited = Some(c.clone());
                    c
                }
            };
            match code {
                Ok(code) => Ok(self.finish(code).await),
                Err(e) => {
                    remove_container(&self.docker, &self.container).await;
                    remove_secrets(self.secrets.take()).await;
                    remove_networks(&self.docker, self.networks.take()).await;
                    self.finished = true;
                    Err(e)
                }
            }
        })
    }

    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, Result<Exit, String>> {
        Box::pin(async move {
            let secs = grace.as_secs() + u64::from(grace.subsec_nanos() > 0);
            let t = i32::try_from(secs).unwrap_or(i32::MAX);
            // The stop call answers only once the container stopped: allow for the grace period.
            let docker = self
                .docker
                .clone()
                .with_timeout(Duration::from_secs(secs + 60));
            let opts = StopContainerOptionsBuilder::new().t(t).build();
            match docker.stop_container(&self.container, Some(opts)).await {
                Ok(()) => {}
                // 304: already stopped.
                Err(BollardError::DockerResponseServerError {
                    status_code: 304, ..
                }) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(container = %self.container, error = %engine_error(&e), "stopping a task's container")
                }
            }
            let code = wait_exit(&self.docker, &self.container)
                .await
                .unwrap_or(137);
            Ok(self.finish(code).await)
        })
    }

    fn update_secrets(&mut self, secrets: Vec<SecretMount>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.update(secrets))
    }

    fn signal(&mut self, signal: &str) -> BoxFuture<'_, Result<(), String>> {
        let signal = signal.to_owned();
        Box::pin(async move {
            // The engine takes `SIGHUP`, `HUP` or a number, as `docker kill --signal`.
            if signal.is_empty() || !signal.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("invalid signal {signal:?}"));
            }
            if self.finished {
                return Err("the task's container has ended".into());
            }
            let opts = KillContainerOptionsBuilder::new().signal(&signal).build();
            self.docker
                .kill_container(&self.container, Some(opts))
                .await
                .map_err(|e| format!("signalling the task's container: {}", engine_error(&e)))
        })
    }
}

impl DockerTask {
    /// Live update of the task's secret files (see `mounts`), off the async threads.
    async fn update(&mut self, secrets: Vec<SecretMount>) -> Result<(), String> {
        if self.finished {
            return Err("the task's container has ended".into());
        }
        let Some(mut sd) = self.secrets.take() else {
            return Err("the task has no secrets to update".into());
        };
        let res = tokio::task::spawn_blocking(move || {
            let r = sd.update(&secrets);
            (sd, r)
        })
        .await;
        match res {
            Ok((sd, r)) => {
                self.secrets = Some(sd);
                r.map_err(|e| format!("updating the task's secrets: {e}"))
            }
            // The tmpfs is left to the next start's cleanup.
            Err(e) => Err(format!("updating the task's secrets: {e}")),
        }
    }
}

impl Drop for DockerTask {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Dropped without waiting (the daemon is going away): best effort now; whatever is
        // left is removed by the next start's cleanup.
        let docker = self.docker.clone();
        let id = self.container.clone();
        let secrets = self.secrets.take();
        let networks = self.networks.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                remove_container(&docker, &id).await;
                remove_secrets(secrets).await;
                remove_networks(&docker, networks).await;
            });
        }
    }
}
