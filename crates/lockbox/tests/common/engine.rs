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
