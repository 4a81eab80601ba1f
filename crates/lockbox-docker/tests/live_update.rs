//! Live secret updates of docker tasks, through the executor itself: a container reads its
//! secret in a tight loop while `TaskHandle::update_secrets` replaces it, and every read must
//! be the old value or the new one, never a mix, with the new owner and mode.
//!
//! Starts a private plain Docker Engine (`../shared/tools/reference-swarm start-plain`, which
//! imports `busybox:local`). Needs root; skips, saying why, without it or the engine.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockbox_core::{Executor, Launch, SecretMount};
use lockbox_crypto::SecretBytes;
use lockbox_docker::{DockerConfig, DockerExecutor};
use lockbox_types::TaskSpec;
use tokio::io::AsyncReadExt;

fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/reference-swarm")
}

/// A private plain dockerd, stopped on drop.
struct Engine {
    dir: tempfile::TempDir,
}

impl Engine {
    fn start(test: &str) -> Option<Engine> {
        if !rustix::process::geteuid().is_root() {
            skip(test, "needs root (dockerd, tmpfs mounts)");
            return None;
        }
        let tool = tool();
        if !tool.exists() {
            skip(test, &format!("{} is missing", tool.display()));
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("lbxdx-engine-")
            .tempdir()
            .ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
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
        let engine = Engine { dir };
        match out {
            Ok(o) if o.status.success() => Some(engine),
            Ok(o) => {
                skip(
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
                skip(test, &format!("could not run {}: {e}", tool.display()));
                None
            }
        }
    }

    fn host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
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

fn secret(target: &str, value: &[u8], uid: u32, mode: u32) -> SecretMount {
    SecretMount {
        target: target.into(),
        data: SecretBytes::new(value.to_vec()),
        uid,
        gid: uid,
        mode,
    }
}

/// Reads the container's loop while the secret is replaced: each line is one whole read.
const SCRIPT: &str = r#"
n=0
while [ $n -lt 300 ]; do
  v=$(cat /run/secrets/x)
  echo "$v"
  case "$v" in new*) n=$((n+1));; esac
done
echo DONE
cat /etc/app/key; echo
stat -c '%a %u %g' /run/secrets/x /etc/app/key
ls -a /run/secrets | sort | tr '\n' ' '; echo
exec sleep 1000
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_update_is_atomic_under_run_secrets() {
    let test = "live_update_is_atomic_under_run_secrets";
    let Some(engine) = Engine::start(test) else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let cfg = DockerConfig {
        host: engine.host(),
        secrets_root: root.path().join("docker"),
        instance: format!("lbxdxlive{}", std::process::id()),
    };
    let exec = DockerExecutor::new(cfg.clone()).unwrap();
    if let Err(e) = exec.check().await {
        skip(test, &e);
        return;
    }
    // Values of different lengths: a torn read would show a mix or a truncation.
    let old = format!("old{}", "a".repeat(3000));
    let new = format!("new{}", "b".repeat(5000));
    let task_id = "lbxdxlivetask1";
    let launch = Launch {
        task_id: task_id.into(),
        service_id: "lbxdxsvc".into(),
        service_name: "lbxdx-live".into(),
        node_id: "lbxdxnode".into(),
        slot: 1,
        spec: TaskSpec {
            image: "busybox:local".into(),
            command: vec!["sh".into(), "-c".into()],
            args: vec![SCRIPT.into()],
            raw: "{}".into(),
            ..Default::default()
        },
        secrets: vec![
            secret("x", old.as_bytes(), 0, 0o444),
            secret("/etc/app/key", b"key-1", 0, 0o444),
        ],
        networks: Vec::new(),
    };
    exec.prepare(&launch).await.unwrap();
    let mut handle = exec.start(launch).await.unwrap();
    let (stdout, _stderr) = handle.take_output();
    let mut stdout = stdout.unwrap();
    let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = buf.clone();
    tokio::spawn(async move {
        let mut chunk = vec![0u8; 64 * 1024];
        while let Ok(n) = stdout.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&buf.lock().unwrap()).into_owned();
    let wait = |what: &str, f: &dyn Fn(&str) -> bool| {
        let start = Instant::now();
        let what = what.to_owned();
        loop {
            let t = text();
            if f(&t) {
                return t;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; output so far: {} bytes",
                t.len()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tokio::task::block_in_place(|| wait("reads of the old value", &|t| t.lines().count() >= 50));

    // A target the task does not have: refused, nothing changed, no value in the error.
    let err = handle
        .update_secrets(vec![secret("nope", b"zzz", 0, 0o444)])
        .await
        .unwrap_err();
    assert!(err.contains("no secret at /run/secrets/nope"), "{err}");
    assert!(!err.contains("zzz"));

    // The agent drops a pending `wait` to apply an update, then waits again.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), handle.wait())
            .await
            .is_err()
    );
    handle
        .update_secrets(vec![
            secret("x", new.as_bytes(), 1000, 0o440),
            secret("/etc/app/key", b"key-2", 7, 0o400),
        ])
        .await
        .unwrap();
    let out = tokio::task::block_in_place(|| {
        wait("the loop to finish", &|t| {
            t.split_once("DONE\n")
                .is_some_and(|(_, after)| after.lines().count() >= 4)
        })
    });
    let (reads, after) = out.split_once("DONE\n").unwrap();
    let mut seen_new = false;
    let (mut n_old, mut n_new) = (0, 0);
    for (i, line) in reads.lines().enumerate() {
        if line == old {
            assert!(!seen_new, "read {i}: the old value after the new one");
            n_old += 1;
        } else if line == new {
            seen_new = true;
            n_new += 1;
        } else {
            panic!(
                "read {i}: neither the old nor the new value ({} bytes, starts {:?})",
                line.len(),
                &line[..line.len().min(8)]
            );
        }
    }
    eprintln!("{n_old} reads of the old value, then {n_new} of the new one");
    assert!(n_old >= 50 && n_new == 300, "{n_old} old, {n_new} new");
    let after: Vec<&str> = after.lines().collect();
    // The absolute target, bind-mounted alone, is rewritten in place.
    assert_eq!(after[0], "key-2");
    assert_eq!(after[1], "440 1000 1000");
    assert_eq!(after[2], "400 7 7");
    // Nothing but the secret in /run/secrets (the staging file never shows).
    assert_eq!(after[3].trim(), ". .. x");

    // Signals reach the container's main process.
    let err = handle.signal("HUP; rm").await.unwrap_err();
    assert_eq!(err, r#"invalid signal "HUP; rm""#);
    handle.signal("SIGKILL").await.unwrap();
    // The task ends: container and tmpfs gone.
    let exit = handle.wait().await.unwrap();
    assert_eq!(exit.code, 137);
    let dir = cfg.instance_dir().join(task_id);
    assert!(!dir.exists(), "{} left behind", dir.display());
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!info.contains(task_id), "a mount of the task is left");
    let _ = std::fs::remove_dir(cfg.instance_dir());
}
