//! The executors the daemon gives its agent. Image `host` runs through the process executor
//! (`lockbox-exec`): a host process in a private mount namespace with its secrets on tmpfs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lockbox_core::{Executor, Exit, Launch, Output, TaskHandle};
use lockbox_exec::{Launcher, ProcessSpec, Running, SecretFile};

/// The reserved image name for host processes.
pub(crate) const HOST_IMAGE: &str = "host";

/// Whether `image` names the reserved `host` image. The docker CLI tags it (`host:latest`),
/// and may pin a digest (`host:latest@sha256:...`); a name with a registry or path
/// (`host:5000/app`, `library/host`) is a real image.
pub(crate) fn is_host_image(image: &str) -> bool {
    let name = image.split('@').next().unwrap_or("");
    if name.contains('/') {
        return false;
    }
    let (repo, tag) = name.split_once(':').unwrap_or((name, "latest"));
    repo == HOST_IMAGE && tag == "latest"
}

/// Runs image-`host` tasks as host processes.
pub(crate) struct ProcessExecutor {
    launcher: Arc<Launcher>,
}

impl ProcessExecutor {
    pub(crate) fn new() -> std::io::Result<ProcessExecutor> {
        let exe = std::env::current_exe()?;
        Ok(ProcessExecutor {
            launcher: Arc::new(Launcher::new(exe)?),
        })
    }
}

fn spec_of(launch: Launch) -> ProcessSpec {
    let s = launch.spec;
    let mut argv = s.command.clone();
    argv.extend(s.args.iter().cloned());
    let mut env = s.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.push(format!("PATH={}", lockbox_exec::DEFAULT_PATH));
    }
    let user = match (s.user.is_empty(), s.groups.is_empty()) {
        (true, _) => None,
        (false, _) => Some(s.user.clone()),
    };
    ProcessSpec {
        task_id: launch.task_id,
        argv,
        env,
        dir: (!s.dir.is_empty()).then(|| PathBuf::from(&s.dir)),
        user,
        hostname: (!s.hostname.is_empty()).then(|| s.hostname.clone()),
        secrets: launch
            .secrets
            .into_iter()
            .map(|m| SecretFile {
                target: PathBuf::from(m.target),
                data: m.data,
                uid: m.uid,
                gid: m.gid,
                mode: m.mode,
            })
            .collect(),
        tmpfs_size: None,
    }
}

impl Executor for ProcessExecutor {
    fn handles(&self, image: &str) -> bool {
        is_host_image(image)
    }

    fn start(&self, launch: Launch) -> BoxFuture<'static, Result<Box<dyn TaskHandle>, String>> {
        let launcher = self.launcher.clone();
        let task_id = launch.task_id.clone();
        Box::pin(async move {
            if launch.spec.command.is_empty() && launch.spec.args.is_empty() {
                return Err("no command specified: image \"host\" needs a command to run".into());
            }
            let running = launcher
                .spawn(spec_of(launch))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Box::new(ProcessTask { running, task_id }) as Box<dyn TaskHandle>)
        })
    }
}

struct ProcessTask {
    running: Running,
    task_id: String,
}

fn exit(e: lockbox_exec::Exit) -> Exit {
    Exit {
        code: i64::from(e.docker_code()),
    }
}

impl TaskHandle for ProcessTask {
    fn pid(&self) -> u32 {
        self.running.pid()
    }

    fn container_id(&self) -> String {
        self.task_id.clone()
    }

    fn take_output(&mut self) -> (Option<Output>, Option<Output>) {
        let out = self.running.take_stdout().map(|o| Box::new(o) as Output);
        let err = self.running.take_stderr().map(|o| Box::new(o) as Output);
        (out, err)
    }

    fn wait(&mut self) -> BoxFuture<'_, Result<Exit, String>> {
        Box::pin(async move {
            self.running
                .wait()
                .await
                .map(exit)
                .map_err(|e| e.to_string())
        })
    }

    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, Result<Exit, String>> {
        Box::pin(async move {
            self.running
                .stop(grace)
                .await
                .map(exit)
                .map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_host_image;

    #[test]
    fn host_image_names() {
        for yes in [
            "host",
            "host:latest",
            "host:latest@sha256:abc",
            "host@sha256:abc",
        ] {
            assert!(is_host_image(yes), "{yes}");
        }
        for no in [
            "busybox",
            "host:5000/app",
            "library/host",
            "hostx",
            "host:1.0",
            "docker.io/library/host",
        ] {
            assert!(!is_host_image(no), "{no}");
        }
    }
}
