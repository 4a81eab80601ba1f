//! Durability and at-rest protection, black-box: the real daemon on temp dirs, driven by the
//! stock docker CLI, the lockbox CLI and raw HTTP. Crash tests kill the daemon with SIGKILL.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Daemon, http_request};

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn marker() -> String {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .unwrap();
    format!(
        "lbx-marker-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_trace(dir: &Path, needles: &[&[u8]]) {
    let all = files(dir);
    assert!(!all.is_empty());
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        for n in needles {
            assert!(
                !contains(&bytes, n),
                "{} contains {:?}",
                f.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
}

fn ok(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn unlock_key(d: &Daemon) -> String {
    ok(&d.docker(&["swarm", "unlock-key", "-q"], None))
        .trim()
        .to_owned()
}

fn enable_autolock(d: &Daemon) -> String {
    ok(&d.docker(&["swarm", "update", "--autolock=true"], None));
    let key = unlock_key(d);
    assert!(key.starts_with("SWMKEY-1-"), "{key}");
    key
}

fn unlock(d: &Daemon, key: &str) {
    let state = ok(&d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None));
    assert_eq!(state.trim(), "locked");
    ok(&d.docker(&["swarm", "unlock"], Some(format!("{key}\n").as_bytes())));
    let state = ok(&d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None));
    assert_eq!(state.trim(), "active");
}

#[test]
fn no_trace_of_values_or_names_on_disk() {
    for autolock in [false, true] {
        let mut d = Daemon::start();
        let key = autolock.then(|| enable_autolock(&d));
        let value = marker();
        let name = format!("n{}", &marker()[11..]);
        ok(&d.docker(
            &["secret", "create", "-l", "purpose=trace-test", &name, "-"],
            Some(value.as_bytes()),
        ));
        // Enough writes to go through a snapshot too.
        for i in 0..20 {
            ok(&d.lockbox(
                &["secret", "create", &format!("filler-{i}"), "-"],
                Some(value.as_bytes()),
            ));
        }
        d.restart();
        if let Some(k) = &key {
            unlock(&d, k);
        }
        let listed = ok(&d.docker(&["secret", "ls", "--format", "{{.Name}}"], None));
        assert!(listed.contains(&name), "{listed}");
        let _ = d.sigterm();
        // Values: nowhere, not even in the audit trail.
        assert_no_trace(
            &d.data_dir(),
            &[value.as_bytes(), b64(value.as_bytes()).as_bytes()],
        );
        // Names and labels: only in the audit trail, which records metadata in clear (for a
        // SIEM) — the store, its log and snapshots are sealed.
        for entry in std::fs::read_dir(d.data_dir()).unwrap().flatten() {
            let p = entry.path();
            if p.file_name().is_some_and(|n| n == "audit") {
                let trail: Vec<u8> = files(&p)
                    .iter()
                    .flat_map(|f| std::fs::read(f).unwrap())
                    .collect();
                assert!(
                    contains(&trail, name.as_bytes()),
                    "the create was not audited"
                );
                continue;
            }
            if p.is_dir() {
                assert_no_trace(&p, &[name.as_bytes(), b"trace-test"]);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                assert!(!contains(&bytes, name.as_bytes()), "{}", p.display());
                assert!(!contains(&bytes, b"trace-test"), "{}", p.display());
            }
        }
        if let Some(k) = &key {
            // The unlock key is never stored.
            assert_no_trace(
                &d.data_dir(),
                &[k.as_bytes(), k.trim_start_matches("SWMKEY-1-").as_bytes()],
            );
            assert!(
                !d.data_dir().join("kek").exists(),
                "autolock must remove the key file"
            );
        }
    }
}

/// Creates secrets from `clients` threads until `stop`; returns the names acknowledged (201).
fn hammer(
    d: &Daemon,
    clients: usize,
    prefix: &str,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    (0..clients)
        .map(|c| {
            let ep = d.endpoint();
            let stop = stop.clone();
            let prefix = prefix.to_owned();
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let name = format!("{prefix}-{c}-{i}");
                    i += 1;
                    let body = format!(r#"{{"Name":"{name}","Data":"{}"}}"#, b64(name.as_bytes()));
                    let headers =
                        vec![("Content-Type".to_string(), "application/json".to_string())];
                    match http_request(
                        &ep,
                        "POST",
                        "/v1.47/secrets/create",
                        &headers,
                        Some(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 201 => acked.push(name),
                        Ok(r) => panic!("unexpected {}: {}", r.status, r.body_str()),
                        Err(_) => break, // the daemon died
                    }
                }
                acked
            })
        })
        .collect()
}

fn crash_rounds(autolock: bool) {
    let mut d = Daemon::start();
    let key = autolock.then(|| enable_autolock(&d));
    let mut all_acked: Vec<String> = Vec::new();
    for round in 0..3 {
        let stop = Arc::new(AtomicBool::new(false));
        let handles = hammer(&d, 8, &format!("crash{round}"), stop.clone());
        std::thread::sleep(Duration::from_millis(700 + 300 * round as u64));
        d.kill9();
        stop.store(true, Ordering::Relaxed);
        let mut acked = 0;
        for h in handles {
            let names = h.join().unwrap();
            acked += names.len();
            all_acked.extend(names);
        }
        assert!(
            acked > 0,
            "round {round}: no create was acknowledged before the kill"
        );
        d.restart();
        if let Some(k) = &key {
            unlock(&d, k);
        }
        let listed = ok(&d.docker(&["secret", "ls", "--format", "{{.Name}}"], None));
        let present: std::collections::HashSet<&str> = listed.lines().collect();
        let missing: Vec<&String> = all_acked
            .iter()
            .filter(|n| !present.contains(n.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: {} acknowledged creates lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
    // The store still accepts writes and reads after the crashes.
    ok(&d.docker(&["secret", "create", "after-crash", "-"], Some(b"v")));
    ok(&d.docker(&["secret", "inspect", "after-crash"], None));
}

#[test]
fn crash_kill9_keeps_every_acknowledged_create() {
    crash_rounds(false);
}

#[test]
fn crash_kill9_keeps_every_acknowledged_create_with_autolock() {
    crash_rounds(true);
}

#[test]
fn restart_keeps_secrets_labels_versions_and_autolock() {
    let mut d = Daemon::start();
    ok(&d.docker(
        &["secret", "create", "-l", "a=1", "-l", "b=2", "keep-me", "-"],
        Some(b"value"),
    ));
    let v = ok(&d.docker(
        &[
            "secret",
            "inspect",
            "--format",
            "{{.Version.Index}}",
            "keep-me",
        ],
        None,
    ));
    let upd = r#"{"Name":"keep-me","Labels":{"a":"changed"}}"#.to_string();
    let (status, _, body) = d.http(
        "POST",
        &format!("/v1.47/secrets/keep-me/update?version={}", v.trim()),
        Some(upd.as_bytes()),
        Some("application/json"),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let before = ok(&d.docker(&["secret", "inspect", "keep-me"], None));
    let key = enable_autolock(&d);
    d.restart();
    // Locked after restart: secrets are unavailable with Docker's text until unlocked.
    let o = d.docker(&["secret", "ls"], None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("Swarm is encrypted and needs to be unlocked")
    );
    unlock(&d, &key);
    let after = ok(&d.docker(&["secret", "inspect", "keep-me"], None));
    assert_eq!(before, after);
    assert!(after.contains(r#""a": "changed""#), "{after}");
    let autolock = ok(&d.docker(
        &[
            "info",
            "--format",
            "{{.Swarm.Cluster.Spec.EncryptionConfig.AutoLockManagers}}",
        ],
        None,
    ));
    assert_eq!(autolock.trim(), "true");
    // The same key still works after a second restart, and turning autolock off sticks.
    d.restart();
    unlock(&d, &key);
    ok(&d.docker(&["swarm", "update", "--autolock=false"], None));
    d.restart();
    let state = ok(&d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None));
    assert_eq!(state.trim(), "active");
    assert_eq!(
        ok(&d.docker(&["secret", "inspect", "keep-me"], None)),
        after
    );
}

#[test]
fn wrong_and_malformed_unlock_keys() {
    let mut d = Daemon::start();
    let key = enable_autolock(&d);
    d.restart();
    let bad = "SWMKEY-1-7c37Cc8654o6p38HnroywCi19pllOnGtbdZEgtKxZu8";
    let (s, _, b) = d.http(
        "POST",
        "/v1.47/swarm/unlock",
        Some(format!(r#"{{"UnlockKey":"{bad}"}}"#).as_bytes()),
        Some("application/json"),
    );
    assert_eq!(
        (s, String::from_utf8_lossy(&b).trim()),
        (
            401,
            r#"{"message":"swarm could not be unlocked: invalid key provided"}"#
        )
    );
    let (s, _, b) = d.http(
        "POST",
        "/v1.47/swarm/unlock",
        Some(br#"{"UnlockKey":"nonsense"}"#),
        Some("application/json"),
    );
    assert_eq!(
        (s, String::from_utf8_lossy(&b).trim()),
        (400, r#"{"message":"invalid key string"}"#)
    );
    let (s, _, b) = d.http("GET", "/v1.47/secrets", None, None);
    assert_eq!(s, 503, "{}", String::from_utf8_lossy(&b));
    unlock(&d, &key);
    let (s, _, b) = d.http(
        "POST",
        "/v1.47/swarm/unlock",
        Some(format!(r#"{{"UnlockKey":"{key}"}}"#).as_bytes()),
        Some("application/json"),
    );
    assert_eq!(
        (s, String::from_utf8_lossy(&b).trim()),
        (409, r#"{"message":"swarm is not locked"}"#)
    );
}

#[test]
fn second_daemon_on_the_same_data_dir_is_refused() {
    let d = Daemon::start();
    let other = d.dir().join("other.sock");
    let o = std::process::Command::new(common::lockbox_bin())
        .args(["daemon", "--data-dir"])
        .arg(d.data_dir())
        .arg("-H")
        .arg(format!("unix://{}", other.display()))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("in use by another lockbox daemon"), "{err}");
    // The first daemon is unaffected.
    ok(&d.docker(&["secret", "ls"], None));
}

#[test]
fn sigterm_stops_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start();
    ok(&d.docker(&["secret", "create", "s", "-"], Some(b"v")));
    let st = d.sigterm();
    assert!(st.success(), "{st:?}\n{}", d.log());
    assert!(!d.socket().exists());
    d.restart();
    ok(&d.docker(&["secret", "inspect", "s"], None));
}

#[test]
fn a_damaged_log_entry_is_detected_not_dropped() {
    let mut d = Daemon::start();
    for i in 0..4 {
        ok(&d.docker(&["secret", "create", &format!("s{i}"), "-"], Some(b"v")));
    }
    let _ = d.sigterm();
    let dir = d.data_dir().join("raft-log");
    let segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    let mut bytes = std::fs::read(&segments[0]).unwrap();
    let records: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == b"LBX1")
        .map(|(i, _)| i)
        .collect();
    assert!(records.len() >= 5, "{} sealed entries", records.len());
    // An early entry: later writes follow it, so it cannot be a write torn by a crash.
    bytes[records[1] + 40] ^= 0x01;
    std::fs::write(&segments[0], &bytes).unwrap();
    let err = d
        .try_restart()
        .expect_err("a damaged log must not be opened");
    assert!(
        err.contains("damaged"),
        "the daemon must say which entry is damaged:\n{err}"
    );
}

#[test]
fn tampered_store_is_detected_not_used() {
    let mut d = Daemon::start();
    ok(&d.docker(&["secret", "create", "s", "-"], Some(b"v")));
    let _ = d.sigterm();
    let db = d.data_dir().join("store.redb");
    let mut bytes = std::fs::read(&db).unwrap();
    let mut flipped = 0;
    let mut i = 0;
    while i + 48 < bytes.len() {
        if &bytes[i..i + 4] == b"LBX1" {
            bytes[i + 40] ^= 0x01; // inside the ciphertext of every sealed record
            flipped += 1;
            i += 48;
        } else {
            i += 1;
        }
    }
    assert!(flipped > 0);
    std::fs::write(&db, &bytes).unwrap();
    let err = d
        .try_restart()
        .expect_err("a tampered store must not be opened");
    assert!(
        err.contains("tampered") || err.contains("corrupt"),
        "the daemon must say why it refuses to start:\n{err}"
    );
}

#[test]
fn tampered_key_file_is_detected() {
    let mut d = Daemon::start();
    let _ = d.sigterm();
    let keys = d.data_dir().join("keys.json");
    let text = std::fs::read_to_string(&keys).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let w = v["deks"][0]["wrapped"].as_str().unwrap().to_owned();
    let mut chars: Vec<char> = w.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    v["deks"][0]["wrapped"] = serde_json::Value::String(chars.into_iter().collect());
    std::fs::write(&keys, serde_json::to_string(&v).unwrap()).unwrap();
    let err = d
        .try_restart()
        .expect_err("a tampered key file must not be used");
    assert!(
        err.contains("tampered") || err.contains("corrupt") || err.contains("Tampered"),
        "{err}"
    );
}

#[test]
fn data_key_rotation_reencrypts_online() {
    let mut d = Daemon::start();
    ok(&d.docker(
        &["secret", "create", "-l", "x=y", "before", "-"],
        Some(b"v1"),
    ));
    let out = ok(&d.lockbox(&["swarm", "rotate-key"], None));
    assert!(out.contains("key 2 now seals the store"), "{out}");
    ok(&d.docker(&["secret", "create", "after", "-"], Some(b"v2")));
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.data_dir().join("keys.json")).unwrap())
            .unwrap();
    assert_eq!(keys["current"], 2);
    assert_eq!(
        keys["deks"].as_array().unwrap().len(),
        1,
        "the old key must be forgotten: {keys}"
    );
    d.restart();
    let names = ok(&d.docker(&["secret", "ls", "--format", "{{.Name}}"], None));
    assert_eq!(names.lines().collect::<Vec<_>>(), vec!["after", "before"]);
}

#[test]
fn leave_force_erases_state_and_init_starts_over() {
    let d = Daemon::start();
    ok(&d.docker(&["secret", "create", "gone", "-"], Some(b"v")));
    let o = d.docker(&["swarm", "leave"], None);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Removing the last manager erases all current state")
    );
    ok(&d.docker(&["swarm", "leave", "--force"], None));
    assert!(!d.data_dir().join("store.redb").exists());
    let o = d.docker(&["secret", "ls"], None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("This node is not a swarm manager"));
    ok(&d.docker(&["swarm", "init", "--autolock"], None));
    let listed = ok(&d.docker(&["secret", "ls", "-q"], None));
    assert!(listed.trim().is_empty(), "{listed}");
    assert!(unlock_key(&d).starts_with("SWMKEY-1-"));
}

#[test]
fn no_auto_init_waits_for_swarm_init() {
    let d = Daemon::start_with(&["--no-auto-init"]);
    let state = ok(&d.docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"], None));
    assert_eq!(state.trim(), "inactive");
    assert!(!d.data_dir().join("keys.json").exists());
    let out = ok(&d.lockbox(&["swarm", "init"], None));
    assert!(out.contains("Swarm initialized: current node ("), "{out}");
    ok(&d.lockbox(&["secret", "create", "x", "-"], Some(b"v")));
}

#[test]
fn full_disk_is_a_clear_error_and_the_daemon_keeps_serving() {
    if !common::is_root() {
        common::skip("full_disk", "needs root to mount a small tmpfs");
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(mnt.path())
        .status()
        .unwrap();
    if !st.success() {
        common::skip("full_disk", "cannot mount tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _guard = Unmount(mnt.path().to_owned());
    // A daemon of our own: its data dir is on the small tmpfs.
    let work = tempfile::tempdir().unwrap();
    let data = mnt.path().join("data");
    let sock = work.path().join("s.sock");
    let ep = common::Endpoint::Unix(sock.clone());
    let cfg = work.path().join("cfg");
    std::fs::create_dir_all(&cfg).unwrap();
    let spawn = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.path().join("log"))
            .unwrap();
        let mut child = std::process::Command::new(common::lockbox_bin())
            .arg("daemon")
            .arg("--data-dir")
            .arg(&data)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stderr(log)
            .spawn()
            .unwrap();
        common::wait_for_ping(&ep, Duration::from_secs(20), || match child.try_wait() {
            Ok(Some(st)) => Err(format!("exited: {st}")),
            _ => Ok(()),
        })
        .unwrap();
        child
    };
    let docker = |args: &[&str], stdin: Option<&[u8]>| {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        common::run_docker(&ep, &cfg, work.path(), &args, stdin)
    };
    let mut child = spawn();
    let big = vec![b'x'; 400 * 1024];
    let mut failed = None;
    for i in 0..200 {
        let o = docker(&["secret", "create", &format!("big-{i}"), "-"], Some(&big));
        if !o.status.success() {
            failed = Some((i, String::from_utf8_lossy(&o.stderr).into_owned()));
            break;
        }
    }
    let (n, err) = failed.expect("a 12 MiB disk must fill up");
    assert!(err.contains("no space left on device"), "{err}");
    // Still serving, nothing half-written, and every acknowledged create survives a restart.
    let listed = ok(&docker(&["secret", "ls", "-q"], None));
    assert_eq!(listed.lines().count(), n, "{listed}");
    ok(&docker(&["secret", "rm", "big-0"], None));
    let _ = child.kill();
    let _ = child.wait();
    let mut child = spawn();
    let listed = ok(&docker(&["secret", "ls", "--format", "{{.Name}}"], None));
    assert_eq!(
        listed.lines().filter(|l| l.starts_with("big-")).count(),
        n - 1,
        "{listed}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn docker_python_sdk_lifecycle() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import docker"])
        .output();
    if !matches!(probe, Ok(ref o) if o.status.success()) {
        common::skip(
            "docker_python_sdk_lifecycle",
            "python3 with the docker package is not installed",
        );
        return;
    }
    let d = Daemon::start();
    let script = r#"
import docker, sys
c = docker.DockerClient(base_url=sys.argv[1], version="auto")
s = c.secrets.create(name="py-secret", data=b"from python", labels={"sdk": "py"})
assert len(s.id) == 25, s.id
got = c.secrets.get("py-secret")
assert got.name == "py-secret" and got.attrs["Spec"]["Labels"] == {"sdk": "py"}, got.attrs
assert "Data" not in got.attrs["Spec"]
names = [x.name for x in c.secrets.list(filters={"name": "py-"})]
assert names == ["py-secret"], names
names = [x.name for x in c.secrets.list(filters={"label": "sdk=py"})]
assert names == ["py-secret"], names
try:
    c.secrets.create(name="py-secret", data=b"again")
    raise SystemExit("duplicate accepted")
except docker.errors.APIError as e:
    assert e.status_code == 409, e
    assert "already exists" in str(e), e
s.remove()
try:
    c.secrets.get("py-secret")
    raise SystemExit("removed secret still there")
except docker.errors.NotFound:
    pass
print("ok")
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, &d.host()])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");
}
