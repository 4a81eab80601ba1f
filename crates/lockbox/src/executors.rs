//! The executors the daemon gives its agent. Image `host` runs through the process executor
//! (`lockbox-exec`): a host process in a private mount namespace with its secrets on tmpfs.
//! A live secret update (`TaskHandle::update_secrets`) goes to the task's exec helper, which
//! replaces each file in that namespace (see `lockbox_exec::Running::update_secrets`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lockbox_core::{Executor, Exit, Launch, Output, SecretMount, TaskHandle};
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
        secrets: launch.secrets.into_iter().map(secret_file).collect(),
        tmpfs_size: None,
    }
}

/// A secret for the process executor; the value moves (no copy to wipe).
fn secret_file(m: SecretMount) -> SecretFile {
    SecretFile {
        target: PathBuf::from(m.target),
        data: m.data,
        uid: m.uid,
        gid: m.gid,
        mode: m.mode,
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
            Ok(Box::new(ProcessTask {
                running,
                task_id,
                ended: false,
            }) as Box<dyn TaskHandle>)
        })
    }
}

struct ProcessTask {
    running: Running,
    task_id: String,
    /// `wait` or `stop` has seen the task end.
    ended: bool,
}

/// The number of a signal given as `docker kill --signal` takes it: a number, or a name with
/// or without `SIG`, in any case.
fn signal_number(signal: &str) -> Option<i32> {
    use rustix::process::Signal as S;
    let s = signal.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().filter(|n| (1..=64).contains(n));
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let sig = match name {
        "HUP" => S::HUP,
        "INT" => S::INT,
        "QUIT" => S::QUIT,
        "ILL" => S::ILL,
        "TRAP" => S::TRAP,
        "ABRT" | "IOT" => S::ABORT,
        "BUS" => S::BUS,
        "FPE" => S::FPE,
        "KILL" => S::KILL,
        "USR1" => S::USR1,
        "SEGV" => S::SEGV,
        "USR2" => S::USR2,
        "PIPE" => S::PIPE,
        "ALRM" => S::ALARM,
        "TERM" => S::TERM,
        "CHLD" | "CLD" => S::CHILD,
        "CONT" => S::CONT,
        "STOP" => S::STOP,
        "TSTP" => S::TSTP,
        "TTIN" => S::TTIN,
        "TTOU" => S::TTOU,
        "URG" => S::URG,
        "XCPU" => S::XCPU,
        "XFSZ" => S::XFSZ,
        "VTALRM" => S::VTALARM,
        "PROF" => S::PROF,
        "WINCH" => S::WINCH,
        "IO" | "POLL" => S::IO,
        "PWR" => S::POWER,
        "SYS" => S::SYS,
        _ => return None,
    };
    Some(sig.as_raw())
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
            let r = self.running.wait().await;
            self.ended |= r.is_ok();
            r.map(exit).map_err(|e| e.to_string())
        })
    }

    fn stop(&mut self, grace: Duration) -> BoxFuture<'_, Result<Exit, String>> {
        Box::pin(async move {
            let r = self.running.stop(grace).await;
            self.ended |= r.is_ok();
            r.map(exit).map_err(|e| e.to_string())
        })
    }

    /// Errors: `task is not running` once it has ended; otherwise `updating the task's
    /// secrets: <reason>` (an unknown target changes nothing). Never a value.
    fn update_secrets(&mut self, secrets: Vec<SecretMount>) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let files = secrets.into_iter().map(secret_file).collect();
            self.running
                .update_secrets(files)
                .await
                .map_err(|e| e.to_string())
        })
    }

    /// Through the task's exec helper to the workload, which is pid 1 of its namespace: a
    /// signal it has no handler for does nothing (SIGKILL excepted), as in a container
    /// without `--init`.
    fn signal(&mut self, signal: &str) -> BoxFuture<'_, Result<(), String>> {
        let sig = signal_number(signal).ok_or_else(|| format!("invalid signal {signal:?}"));
        Box::pin(async move {
            let sig = sig?;
            if self.ended {
                return Err("task is not running".into());
            }
            self.running.signal(sig).map_err(|e| e.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{is_host_image, signal_number};

    #[test]
    fn signal_names_and_numbers() {
        for (s, n) in [
            ("SIGHUP", 1),
            ("HUP", 1),
            ("hup", 1),
            ("sigterm", 15),
            ("USR1", 10),
            ("SIGKILL", 9),
            ("9", 9),
            ("64", 64),
            ("WINCH", 28),
        ] {
            assert_eq!(signal_number(s), Some(n), "{s}");
        }
        for s in ["", "0", "65", "-1", "SIG", "NOPE", "SIGHUP2", "1x"] {
            assert_eq!(signal_number(s), None, "{s:?}");
        }
    }

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
