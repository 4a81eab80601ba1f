//! A private plain (non-swarm) dockerd for the docker executor's tests, started with
//! `../shared/tools/reference-swarm start-plain` and stopped on drop.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::Endpoint;

/// `../shared/tools/reference-swarm`, beside the repository.
pub fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/reference-swarm")
}

/// A private plain dockerd, stopped on drop.
pub struct Engine {
    dir: tempfile::TempDir,
    config: tempfile::TempDir,
}

impl Engine {
    /// Starts one, or says why `test` is skipped (not root, no docker CLI, no tool, dockerd
    /// failed) and returns `None`. `prefix` names its state directory.
    pub fn start(test: &str, prefix: &str) -> Option<Engine> {
        if !super::is_root() {
            super::skip(test, "needs root (dockerd, tmpfs mounts)");
            return None;
        }
        if let Some(why) = super::docker_unavailable() {
            super::skip(test, &why);
            return None;
        }
        let tool = tool();
        if !tool.exists() {
            super::skip(test, &format!("{} is missing", tool.display()));
            return None;
        }
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().ok()?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok()?;
        let out = Command::new("bash")
            .arg(&tool)
            .arg("start-plain")
            .arg(dir.path())
            .env("REF_SWARM_PORT", port.to_string())
            .stdin(Stdio::null())
            .output();
        let engine = Engine {
            dir,
            config: tempfile::tempdir().ok()?,
        };
        match out {
            Ok(o) if o.status.success() => Some(engine),
            Ok(o) => {
                super::skip(
                    test,
                    &format!(
                        "could not start a plain dockerd: {}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    ),
                );
                None
            }
            Err(e) => {
                super::skip(test, &format!("could not run {}: {e}", tool.display()));
                None
            }
        }
    }

    /// Its socket, as a `DOCKER_HOST` value.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    /// The stock docker CLI against this engine.
    pub fn docker(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        super::run_docker(
            &Endpoint::parse(&self.host()).expect("the engine's socket address"),
            self.config.path(),
            self.config.path(),
            &args,
            None,
        )
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The tool's `stop` removes containers and kills dockerd, which leaves the Linux bridges
        // of networks made on it behind; on a long-lived machine they pile up until new networks
        // get no address pool. Remove the networks first (containers first, as they hold them).
        let ids = self.docker(&["ps", "-aq"]);
        let ids = String::from_utf8_lossy(&ids.stdout).to_string();
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if !ids.is_empty() {
            let mut args = vec!["rm", "-f"];
            args.extend(ids);
            let _ = self.docker(&args);
        }
        let _ = self.docker(&["network", "prune", "-f"]);
        let _ = Command::new("bash")
            .arg(tool())
            .arg("stop")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A lockbox daemon using an engine. Dropped, it is stopped with SIGTERM (so that it removes
/// its containers and unmounts their secrets, even when a test fails), and its empty instance
/// directory under /run/lockbox/docker is removed.
pub struct Lockbox(pub super::Daemon);

impl std::ops::Deref for Lockbox {
    type Target = super::Daemon;
    fn deref(&self) -> &super::Daemon {
        &self.0
    }
}

impl std::ops::DerefMut for Lockbox {
    fn deref_mut(&mut self) -> &mut super::Daemon {
        &mut self.0
    }
}

impl Drop for Lockbox {
    fn drop(&mut self) {
        use std::time::{Duration, Instant};
        if let Some(pid) = self.0.pid() {
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
            }
            let stat = format!("/proc/{pid}/stat");
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                match std::fs::read_to_string(&stat) {
                    Ok(s) if !s.contains(") Z ") => std::thread::sleep(Duration::from_millis(50)),
                    _ => break,
                }
            }
        }
        let dir = Path::new(lockbox_docker::DEFAULT_SECRETS_ROOT)
            .join(lockbox_docker::instance_of(&self.0.data_dir()));
        let _ = std::fs::remove_dir(dir);
    }
}

/// A lockbox daemon whose docker executor uses `engine`.
pub fn daemon_with(engine: &Engine) -> Lockbox {
    Lockbox(super::Daemon::start_with(&[
        "--docker-host",
        &engine.host(),
    ]))
}

/// The non-empty, trimmed lines of a command's output.
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}
