//! End-to-end tests of the process executor. They need root (CAP_SYS_ADMIN)
//! and skip with a message where namespaces cannot be created.
//!
//! The helper executable is this crate's `lockbox-exec-helper` binary, which
//! cargo builds for integration tests (also under `cargo nextest`).

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lockbox_crypto::SecretBytes;
use lockbox_exec::{ExecError, Exit, Launcher, ProcessSpec, Running, SecretFile, cleanup_stale};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

/// `LOCKBOX_EXEC_TEST_HELPER` may name another helper (e.g. the lockbox
/// binary) to run these tests against.
fn helper_exe() -> PathBuf {
    std::env::var_os("LOCKBOX_EXEC_TEST_HELPER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_lockbox-exec-helper")))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A launcher with its own state directory.
fn launcher() -> (Launcher, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let l = Launcher::with_state_dir(helper_exe(), state.path().to_owned()).unwrap();
    (l, state)
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn spec(argv: Vec<String>) -> ProcessSpec {
    ProcessSpec {
        task_id: format!("test-{}", random_hex(4)),
        argv,
        env: vec!["PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into()],
        ..Default::default()
    }
}

fn secret(target: &str, data: &str, uid: u32, gid: u32, mode: u32) -> SecretFile {
    SecretFile {
        target: target.into(),
        data: SecretBytes::new(data.as_bytes().to_vec()),
        uid,
        gid,
        mode,
    }
}

async fn read_all(mut r: impl tokio::io::AsyncRead + Unpin) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).await.unwrap();
    s
}

async fn collect(mut r: Running) -> (Exit, String, String) {
    let out = r.take_stdout().unwrap();
    let err = r.take_stderr().unwrap();
    let (o, e) = tokio::join!(read_all(out), read_all(err));
    let exit = r.wait().await.unwrap();
    (exit, o, e)
}

async fn run(l: &Launcher, s: ProcessSpec) -> Result<(Exit, String, String), ExecError> {
    Ok(collect(l.spawn(s).await?).await)
}

/// Whether host tasks can run here; prints why not.
async fn available(l: &Launcher) -> bool {
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED: lockbox-exec tests need root");
        return false;
    }
    match run(l, spec(vec!["true".into()])).await {
        Ok(_) => true,
        Err(ExecError::Setup(m)) if m.contains("operation not permitted") => {
            eprintln!("SKIPPED: cannot create namespaces here: {m}");
            false
        }
        Err(e) => panic!("probe task failed: {e}"),
    }
}

/// A tmpfs size nobody else uses, to find our mount in any mount table.
fn unique_size() -> u64 {
    let pages = 256 + u64::from_str_radix(&random_hex(2), 16).unwrap() % 4096;
    pages * 4096
}

fn size_marker(size: u64) -> String {
    format!("size={}k", size / 1024)
}

/// Mount tables of every process that contain `needle`.
fn mount_tables_containing(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for ent in fs::read_dir("/proc").unwrap().flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(t) = fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            && t.contains(needle)
        {
            hits.push(pid.to_owned());
        }
    }
    hits
}

/// Files under `roots` whose content contains `needle`. Only files
/// modified since `since` can hold a marker generated then.
fn files_containing(roots: &[&Path], needle: &[u8], since: std::time::SystemTime) -> Vec<PathBuf> {
    let since = since - Duration::from_secs(2);
    let mut hits = Vec::new();
    let mut stack: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(rd) = fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.is_file()
            && meta.len() <= 16 << 20
            && meta.modified().is_ok_and(|m| m >= since)
            && let Ok(data) = fs::read(&p)
            && data.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p);
        }
    }
    hits.sort();
    hits.dedup();
    hits
}

async fn wait_for_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            l = lines.next_line() => match l.unwrap() {
                Some(l) if l == want => return seen,
                Some(l) => seen.push(l),
                None => panic!("task ended before {want:?}; output: {seen:#?}"),
            },
            () = &mut deadline => panic!("timeout waiting for {want:?}; output: {seen:#?}"),
        }
    }
}

fn process_gone(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn task_sees_its_secrets_and_the_host_does_not() {
    let (l, state) = launcher();
    if !available(&l).await {
        return;
    }
    let started = std::time::SystemTime::now();
    let marker = random_hex(16);
    let size = unique_size();
    let host_dir = tempfile::tempdir().unwrap();
    let work_dir = tempfile::tempdir().unwrap();
    // An absolute target that exists on the host…
    let host_file = host_dir.path().join("hostfile");
    fs::write(&host_file, "host-content\n").unwrap();
    // …and one that does not (nor does its parent).
    let missing_parent = host_dir.path().join(format!("sub-{}", random_hex(4)));
    let abs_missing = missing_parent.join("secret");

    let mut s = spec(sh(&format!(
        "set -e
echo pid=$$
echo uid=$(id -u) gid=$(id -g)
echo pwd=$(pwd)
ls -ln /run/secrets | grep -v '^total'
stat -c 'stat %n %a:%u:%g' /run/secrets /run/secrets/a /run/secrets/relative \
  /run/secrets/relative/secret {abs} {host}
echo a=$(cat /run/secrets/a)
echo rel=$(cat /run/secrets/relative/secret)
echo abs=$(cat {abs})
echo host=$(cat {host})
grep ' /run/secrets ' /proc/self/mountinfo | sed 's/^/mount /'
if echo x > /run/secrets/a 2>/dev/null; then echo write=ok; else echo write=failed; fi
if touch /run/secrets/new 2>/dev/null; then echo create=ok; else echo create=failed; fi
echo maxpid=$(ls /proc | grep '^[0-9]' | sort -n | tail -n 1)
test -e /proc/{testpid} && echo test-process=visible || echo test-process=invisible
echo READY
exec sleep 1000",
        abs = abs_missing.display(),
        host = host_file.display(),
        testpid = std::process::id(),
    )));
    s.user = Some("65534:65534".into());
    s.dir = Some(work_dir.path().to_owned());
    s.tmpfs_size = Some(size);
    s.secrets = vec![
        secret("a", &format!("{marker}-a"), 65534, 65534, 0o400),
        secret("relative/secret", &format!("{marker}-rel"), 0, 0, 0o444),
        secret(
            abs_missing.to_str().unwrap(),
            &format!("{marker}-abs"),
            0,
            65534,
            0o440,
        ),
        secret(
            host_file.to_str().unwrap(),
            &format!("{marker}-host"),
            0,
            0,
            0o444,
        ),
    ];

    let mut task = l.spawn(s).await.unwrap();
    assert!(task.pid() > 0 && task.workload_pid() > 0);
    let mut lines = BufReader::new(task.take_stdout().unwrap()).lines();
    let out = wait_for_line(&mut lines, "READY").await;
    let has = |line: &str| out.iter().any(|l| l == line);
    let text = out.join("\n");

    // pid 1 of its own pid namespace, with its own /proc.
    assert!(has("pid=1"), "{text}");
    let maxpid: u32 = out
        .iter()
        .find_map(|l| l.strip_prefix("maxpid="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(maxpid < 50, "{text}");
    assert!(
        has("test-process=invisible") || std::process::id() < 50,
        "{text}"
    );
    assert!(has("uid=65534 gid=65534"), "{text}");
    assert!(has(&format!("pwd={}", work_dir.path().display())), "{text}");
    // Listing, ownership and modes.
    let ls: Vec<&String> = out.iter().filter(|l| l.starts_with(['-', 'd'])).collect();
    assert_eq!(ls.len(), 2, "{text}");
    let fields = |l: &str| -> Vec<String> {
        let f: Vec<&str> = l.split_whitespace().collect();
        // mode, links, uid, gid, size, …, name
        vec![f[0], f[1], f[2], f[3], f[4], f[f.len() - 1]]
            .into_iter()
            .map(String::from)
            .collect()
    };
    let a_len = (marker.len() + 2).to_string();
    assert_eq!(
        fields(ls[0]),
        ["-r--------", "1", "65534", "65534", &a_len, "a"],
        "{text}"
    );
    assert_eq!(fields(ls[1])[..4], ["drwxr-xr-x", "2", "0", "0"], "{text}");
    assert_eq!(fields(ls[1])[5], "relative", "{text}");
    assert!(has("stat /run/secrets 755:0:0"), "{text}");
    assert!(has("stat /run/secrets/a 400:65534:65534"), "{text}");
    assert!(has("stat /run/secrets/relative 755:0:0"), "{text}");
    assert!(has("stat /run/secrets/relative/secret 444:0:0"), "{text}");
    assert!(
        has(&format!("stat {} 440:0:65534", abs_missing.display())),
        "{text}"
    );
    assert!(
        has(&format!("stat {} 444:0:0", host_file.display())),
        "{text}"
    );
    // Content.
    assert!(has(&format!("a={marker}-a")), "{text}");
    assert!(has(&format!("rel={marker}-rel")), "{text}");
    assert!(has(&format!("abs={marker}-abs")), "{text}");
    assert!(has(&format!("host={marker}-host")), "{text}");
    // A read-only, nosuid, nodev, noexec tmpfs of the requested size.
    let mounts: Vec<&String> = out.iter().filter(|l| l.starts_with("mount ")).collect();
    assert_eq!(mounts.len(), 1, "{text}");
    assert!(
        mounts[0].contains(" /run/secrets ro,nosuid,nodev,noexec"),
        "{text}"
    );
    assert!(mounts[0].contains(" - tmpfs "), "{text}");
    assert!(mounts[0].contains(&size_marker(size)), "{text}");
    assert!(has("write=failed") && has("create=failed"), "{text}");

    // The host sees none of it while the task runs.
    let host_mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&size_marker(size)), "{host_mounts}");
    assert!(!host_mounts.contains(" /run/secrets "), "{host_mounts}");
    assert_eq!(fs::read_dir("/run/secrets").unwrap().count(), 0);
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host-content\n");
    let ph = fs::metadata(&abs_missing).unwrap();
    assert_eq!(
        (ph.len(), ph.mode() & 0o7777, ph.uid()),
        (0, 0, 0),
        "placeholder"
    );

    // A second task without secrets meanwhile sees an empty /run/secrets.
    let (exit, out2, _) = run(
        &l,
        spec(sh("echo entries=$(ls -A /run/secrets | wc -l); \
                 grep -c ' /run/secrets ' /proc/self/mountinfo")),
    )
    .await
    .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(out2, "entries=0\n1\n");

    // stop(): pid 1 ignores SIGTERM, so SIGKILL after the grace period.
    let t0 = Instant::now();
    let exit = task.stop(Duration::from_millis(500)).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(
        exit,
        Exit {
            code: None,
            signal: Some(9)
        }
    );
    assert_eq!(exit.docker_code(), 137);
    assert!(process_gone(task.workload_pid()));

    // Nothing remains: no mount in any namespace, no placeholder, no bytes.
    assert_eq!(
        mount_tables_containing(&size_marker(size)),
        Vec::<String>::new()
    );
    assert!(!abs_missing.exists() && !missing_parent.exists());
    assert_eq!(fs::read_to_string(&host_file).unwrap(), "host-content\n");
    let roots = [
        Path::new("/run"),
        Path::new("/tmp"),
        state.path(),
        host_dir.path(),
        work_dir.path(),
    ];
    assert_eq!(
        files_containing(&roots, marker.as_bytes(), started),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_helper_kills_the_task_and_leaves_nothing() {
    let (l, state) = launcher();
    if !available(&l).await {
        return;
    }
    let started = std::time::SystemTime::now();
    let marker = random_hex(16);
    let size = unique_size();
    let host_dir = tempfile::tempdir().unwrap();
    let abs_missing = host_dir.path().join("deep/er/secret");
    let mut s = spec(sh("echo READY; exec sleep 1000"));
    s.tmpfs_size = Some(size);
    s.secrets = vec![
        secret("x", &format!("{marker}-x"), 0, 0, 0o444),
        secret(
            abs_missing.to_str().unwrap(),
            &format!("{marker}-abs"),
            0,
            0,
            0o444,
        ),
    ];
    let mut task = l.spawn(s).await.unwrap();
    let mut lines = BufReader::new(task.take_stdout().unwrap()).lines();
    wait_for_line(&mut lines, "READY").await;
    assert_eq!(
        mount_tables_containing(&size_marker(size)).len(),
        2,
        "helper and workload"
    );
    assert!(abs_missing.exists());

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(task.pid() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let exit = task.wait().await.unwrap();
    assert_eq!(exit.signal, Some(9));
    // PR_SET_PDEATHSIG killed the workload, and the namespace went with it.
    let t0 = Instant::now();
    while !process_gone(task.workload_pid()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "workload survived its helper"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        mount_tables_containing(&size_marker(size)),
        Vec::<String>::new()
    );

    // The killed helper could not remove its placeholder; cleanup_stale does.
    assert!(abs_missing.exists());
    assert_eq!(cleanup_stale(state.path()).unwrap(), 3);
    assert!(!host_dir.path().join("deep").exists());
    assert_eq!(cleanup_stale(state.path()).unwrap(), 0);
    let roots = [
        Path::new("/run"),
        Path::new("/tmp"),
        state.path(),
        host_dir.path(),
    ];
    assert_eq!(
        files_containing(&roots, marker.as_bytes(), started),
        Vec::<PathBuf>::new()
    );
    // The scan does find a file with the marker.
    let probe = host_dir.path().join("probe");
    fs::write(&probe, format!("..{marker}..")).unwrap();
    assert_eq!(
        files_containing(&roots, marker.as_bytes(), started),
        vec![probe]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn environment_and_working_dir_are_exact() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let mut s = spec(vec!["env".into()]);
    s.env = vec![
        "A=1".into(),
        "B=two words".into(),
        "PATH=/usr/bin:/bin".into(),
    ];
    let (exit, out, err) = run(&l, s).await.unwrap();
    assert!(exit.success(), "{exit:?} {err}");
    assert_eq!(out, "A=1\nB=two words\nPATH=/usr/bin:/bin\n");

    // No PATH in env: argv[0] is resolved with the default PATH, which is
    // not added to the environment.
    let mut s = spec(vec!["env".into()]);
    s.env = vec!["X=y".into()];
    let (_, out, _) = run(&l, s).await.unwrap();
    assert_eq!(out, "X=y\n");

    // Only stdin, stdout and stderr are inherited (3 is ls's own), even
    // when the daemon leaks a descriptor.
    let (_leak_r, _leak_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::empty()).unwrap();
    let (_, out, _) = run(&l, spec(vec!["ls".into(), "/proc/self/fd".into()]))
        .await
        .unwrap();
    assert_eq!(out, "0\n1\n2\n3\n");
    let (_, out, _) = run(&l, spec(sh("readlink /proc/self/fd/0"))).await.unwrap();
    assert_eq!(out, "/dev/null\n");

    // Default working dir is /; argv[0] stays as given.
    let (_, out, _) = run(&l, spec(sh("pwd; echo $0"))).await.unwrap();
    assert_eq!(out, "/\n/bin/sh\n");
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(vec!["pwd".into()]);
    s.dir = Some(dir.path().to_owned());
    let (_, out, _) = run(&l, s).await.unwrap();
    assert_eq!(out, format!("{}\n", dir.path().display()));
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_signals_and_logs() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let (exit, out, err) = run(&l, spec(sh("echo out; echo err >&2; exit 3")))
        .await
        .unwrap();
    assert_eq!(
        exit,
        Exit {
            code: Some(3),
            signal: None
        }
    );
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));

    // A signal the workload handles is relayed to it.
    let mut task = l
        .spawn(spec(sh(
            "trap 'echo got-term; exit 42' TERM; echo READY; while :; do sleep 0.05; done",
        )))
        .await
        .unwrap();
    let mut lines = BufReader::new(task.take_stdout().unwrap()).lines();
    wait_for_line(&mut lines, "READY").await;
    task.signal(libc_sigterm()).unwrap();
    wait_for_line(&mut lines, "got-term").await;
    assert_eq!(task.wait().await.unwrap().code, Some(42));
    // Signalling an ended task is fine; invalid numbers are not.
    task.signal(libc_sigterm()).unwrap();
    task.signaller().signal(libc_sigterm()).unwrap();
    assert!(matches!(task.signal(0), Err(ExecError::InvalidSignal(0))));

    // SIGKILL through the control channel (here from another tokio task,
    // while this one waits) kills the workload.
    let mut task = l
        .spawn(spec(vec!["sleep".into(), "1000".into()]))
        .await
        .unwrap();
    let signaller = task.signaller();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        signaller.signal(9).unwrap();
    });
    assert_eq!(
        task.wait().await.unwrap(),
        Exit {
            code: None,
            signal: Some(9)
        }
    );

    // Dropping the handle kills the task.
    let task = l
        .spawn(spec(vec!["sleep".into(), "1000".into()]))
        .await
        .unwrap();
    let workload = task.workload_pid();
    assert!(!process_gone(workload));
    drop(task);
    let t0 = Instant::now();
    while !process_gone(workload) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "task outlived its handle"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Setting the hostname needs a UTS namespace, which we make then.
    let mut s = spec(vec!["uname".into(), "-n".into()]);
    s.hostname = Some("lbx-test-host".into());
    let (_, out, _) = run(&l, s).await.unwrap();
    assert_eq!(out, "lbx-test-host\n");
}

fn libc_sigterm() -> i32 {
    15
}

#[tokio::test(flavor = "multi_thread")]
async fn setup_errors_are_clear() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let setup = |r: Result<(Exit, String, String), ExecError>| match r {
        Err(ExecError::Setup(m)) => m,
        other => panic!("expected a setup error, got {other:?}"),
    };

    let e = run(&l, spec(vec!["no-such-command-lbx".into()])).await;
    let m = setup(e);
    assert_eq!(
        m,
        "exec: \"no-such-command-lbx\": executable file not found in $PATH"
    );
    assert_eq!(
        ExecError::Setup(m).to_string(),
        "starting container failed: exec: \"no-such-command-lbx\": executable file not found in $PATH"
    );

    let m = setup(run(&l, spec(vec!["/no/such/binary".into()])).await);
    assert_eq!(
        m,
        "exec: \"/no/such/binary\": stat /no/such/binary: no such file or directory"
    );

    let mut s = spec(vec!["true".into()]);
    s.user = Some("nobodyx".into());
    assert_eq!(
        setup(run(&l, s).await),
        "unable to find user nobodyx: no matching entries in passwd file"
    );
    let mut s = spec(vec!["true".into()]);
    s.user = Some("nobody:nogroupx".into());
    assert_eq!(
        setup(run(&l, s).await),
        "unable to find group nogroupx: no matching entries in group file"
    );

    let mut s = spec(vec!["true".into()]);
    s.dir = Some("/no/such/dir".into());
    assert_eq!(
        setup(run(&l, s).await),
        "chdir to cwd (\"/no/such/dir\") set in config.json failed: no such file or directory"
    );

    assert_eq!(setup(run(&l, spec(vec![])).await), "no command specified");

    let mut s = spec(vec!["true".into()]);
    s.secrets = vec![secret("../escape", "v", 0, 0, 0o444)];
    assert_eq!(
        setup(run(&l, s).await),
        "invalid secret target \"../escape\""
    );

    // Too small a tmpfs: the error names the target, never the value.
    let mut s = spec(vec!["true".into()]);
    let big = "v".repeat(64 * 1024);
    s.secrets = vec![secret("big", &big, 0, 0, 0o444)];
    s.tmpfs_size = Some(4096);
    let m = setup(run(&l, s).await);
    assert_eq!(m, "writing secret big: no space left on device");

    // A helper binary that does not speak the protocol.
    let bad = Launcher::with_state_dir("/bin/true".into(), "/nonexistent".into()).unwrap();
    let m = setup(run(&bad, spec(vec!["true".into()])).await);
    assert!(
        m.starts_with("exec helper exited without starting the task"),
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_with_many_files_fit_the_default_size() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let mut s = spec(sh("ls /run/secrets | wc -l; cat /run/secrets/s49 | wc -c"));
    s.secrets = (0..50)
        .map(|i| secret(&format!("s{i}"), &"x".repeat(100 + i * 100), 0, 0, 0o444))
        .collect();
    let (exit, out, err) = run(&l, s).await.unwrap();
    assert!(exit.success(), "{err}");
    assert_eq!(out, "50\n5000\n");
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<Launcher>();
    send_sync::<lockbox_exec::Signaller>();
    send_sync::<ExecError>();
    send_sync::<Running>();
    fn spawn_future(l: &Launcher) {
        send(&l.spawn(ProcessSpec::default()));
    }
    fn wait_future(r: &mut Running) {
        send(&r.wait());
        send(&r.stop(Duration::ZERO));
        send(&r.update_secrets(Vec::new()));
    }
    let _ = (spawn_future, wait_future);
}

fn processes_with_cmdline(needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for ent in fs::read_dir("/proc").unwrap().flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Ok(c) = fs::read(format!("/proc/{pid}/cmdline"))
            && String::from_utf8_lossy(&c).contains(needle)
            && !process_gone(pid.parse().unwrap())
        {
            hits.push(pid.to_owned());
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread")]
async fn abandoned_spawns_leave_no_task() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let marker = format!("lbx-abandoned-{}", random_hex(8));
    for micros in [0, 50, 200, 500, 1000, 2000, 5000, 10_000, 20_000] {
        let mut s = spec(sh(&format!("sleep 1000; : {marker}")));
        s.secrets = vec![secret("x", "v", 0, 0, 0o444)];
        // Cancelled before, during and after the setup.
        let _ = tokio::time::timeout(Duration::from_micros(micros), l.spawn(s)).await;
    }
    let t0 = Instant::now();
    loop {
        let left = processes_with_cmdline(&marker);
        if left.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_tasks_each_see_only_their_own_secrets() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let l = std::sync::Arc::new(l);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let l = l.clone();
            tokio::spawn(async move {
                let mut s = spec(sh("ls /run/secrets; cat /run/secrets/own"));
                s.secrets = vec![secret("own", &format!("value-{i}"), 0, 0, 0o444)];
                run(&l, s).await.unwrap()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (exit, out, err) = t.await.unwrap();
        assert!(exit.success(), "{err}");
        assert_eq!(out, format!("own\nvalue-{i}"));
    }
}

// ---------------------------------------------------------------------------
// Live secret update (`Running::update_secrets`).

/// The kernel's (major, minor) version.
fn kernel_version() -> (u32, u32) {
    let r = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut it = r
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// A file of the task's mount namespace, seen from the host.
fn in_task(task: &Running, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root{path}", task.workload_pid()))
}

/// The task's mount table lines for `mountpoint`.
fn task_mounts(task: &Running, mountpoint: &str) -> Vec<String> {
    fs::read_to_string(format!("/proc/{}/mountinfo", task.workload_pid()))
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(mountpoint))
        .map(String::from)
        .collect()
}

/// Stdout lines of a task, read in the background.
fn line_stream(out: tokio::process::ChildStdout) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(out).lines();
        while let Ok(Some(l)) = lines.next_line().await {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

/// Collects lines until one equals `want` (returned without it).
async fn lines_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>,
    want: &str,
) -> Vec<String> {
    let mut seen = Vec::new();
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            l = rx.recv() => match l {
                Some(l) if l == want => return seen,
                Some(l) => seen.push(l),
                None => panic!("task ended before {want:?}; {} lines", seen.len()),
            },
            () = &mut deadline => panic!("timeout waiting for {want:?}; {} lines", seen.len()),
        }
    }
}

/// Version `i` of a value: same length for every version, so a reader that
/// mixed two would be caught, as would an empty or a cut one.
fn version(marker: &str, what: &str, i: usize) -> String {
    let fill = char::from(b'A' + (i % 26) as u8);
    format!("{marker}-{what}-{i:03}-{}", fill.to_string().repeat(3000))
}

#[tokio::test(flavor = "multi_thread")]
async fn update_secrets_swaps_files_atomically_under_a_busy_reader() {
    let (l, state) = launcher();
    if !available(&l).await {
        return;
    }
    let started = std::time::SystemTime::now();
    let marker = random_hex(16);
    let host_dir = tempfile::tempdir().unwrap();
    let ctl_dir = tempfile::tempdir().unwrap();
    let abs = host_dir.path().join("sub/abs-secret");
    let trigger = ctl_dir.path().join("check");
    // Reads both files as fast as it can; on request (made after the last
    // update, so the reads of that round see the last values) checks that
    // both mounts refuse writes (as root: only the read-only flag stops it).
    let mut s = spec(sh(&format!(
        "abs={abs}; trig={trig}
echo READY
while :; do
  check=
  if [ -e $trig ]; then check=1; rm -f $trig; fi
  printf 'x=%s\\n' \"$(cat /run/secrets/x)\"
  printf 'a=%s\\n' \"$(cat $abs)\"
  if [ -n \"$check\" ]; then
    touch /run/secrets/y 2>&1 | sed 's/^/touch-new: /'
    touch /run/secrets/x 2>&1 | sed 's/^/touch-rel: /'
    touch $abs 2>&1 | sed 's/^/touch-abs: /'
    (echo z > /run/secrets/x) 2>&1 | sed 's/^/write-rel: /'
    (echo z > $abs) 2>&1 | sed 's/^/write-abs: /'
    stat -c 'stat %n %a:%u:%g:%s' /run/secrets/x $abs
    ls -A /run/secrets | sed 's/^/ls /'
    echo CHECKED
  fi
done",
        abs = abs.display(),
        trig = trigger.display(),
    )));
    s.secrets = vec![
        secret("x", &version(&marker, "x", 0), 0, 0, 0o444),
        secret(
            abs.to_str().unwrap(),
            &version(&marker, "a", 0),
            0,
            0,
            0o444,
        ),
    ];
    let mut task = l.spawn(s).await.unwrap();
    let mut rx = line_stream(task.take_stdout().unwrap());
    lines_until(&mut rx, "READY").await;

    const N: usize = 25;
    let (uid, gid, mode) = (1234, 5678, 0o440);
    for i in 1..=N {
        // Let the reader go round a few times between updates.
        tokio::time::sleep(Duration::from_millis(15)).await;
        let (u, g, m) = if i == N {
            (uid, gid, mode)
        } else {
            (i as u32, 0, 0o400 + i as u32 % 2 * 0o40)
        };
        task.update_secrets(vec![
            secret("x", &version(&marker, "x", i), u, g, m),
            secret(abs.to_str().unwrap(), &version(&marker, "a", i), u, g, m),
        ])
        .await
        .unwrap();
    }
    // From the host, through the task's root: the last values, owners, modes.
    for (path, what) in [("/run/secrets/x", "x"), (abs.to_str().unwrap(), "a")] {
        let p = in_task(&task, path);
        assert_eq!(fs::read_to_string(&p).unwrap(), version(&marker, what, N));
        let m = fs::metadata(&p).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (uid, gid, mode),
            "{path}"
        );
    }
    fs::write(&trigger, "").unwrap();
    let out = lines_until(&mut rx, "CHECKED").await;

    // Every read was one whole version, and they only ever moved forward.
    let mut last = [0usize; 2];
    let mut reads = [0usize; 2];
    let mut versions_seen = [
        std::collections::BTreeSet::new(),
        std::collections::BTreeSet::new(),
    ];
    for line in &out {
        let (k, v) = match line.split_once('=') {
            Some(("x", v)) => (0, v),
            Some(("a", v)) => (1, v),
            _ => continue,
        };
        let what = ["x", "a"][k];
        let i = (0..=N)
            .find(|&i| v == version(&marker, what, i))
            .unwrap_or_else(|| {
                panic!(
                    "{what}: a read that is no whole version ({} bytes): {:?}",
                    v.len(),
                    &v[..v.len().min(60)]
                )
            });
        assert!(i >= last[k], "{what}: version {i} after {}", last[k]);
        last[k] = i;
        reads[k] += 1;
        versions_seen[k].insert(i);
    }
    assert_eq!(last, [N, N], "the reader saw the last versions");
    // The reads went on while the files were being replaced.
    let seen = [versions_seen[0].len(), versions_seen[1].len()];
    eprintln!("reads {reads:?}, versions seen {seen:?} of {}", N + 1);
    assert!(seen[0] > N / 2 && seen[1] > N / 2, "{reads:?} {seen:?}");

    // Still read-only to the task (which runs as root), for both kinds.
    let has_prefix = |p: &str| out.iter().filter(|l| l.starts_with(p)).collect::<Vec<_>>();
    for p in [
        "touch-new: ",
        "touch-rel: ",
        "touch-abs: ",
        "write-rel: ",
        "write-abs: ",
    ] {
        let lines = has_prefix(p);
        assert_eq!(lines.len(), 1, "{p}: {out:#?}");
        assert!(lines[0].contains("Read-only file system"), "{}", lines[0]);
    }
    let len = version(&marker, "x", N).len();
    let stat: Vec<&String> = has_prefix("stat ");
    assert_eq!(
        stat,
        [
            &format!("stat /run/secrets/x 440:1234:5678:{len}"),
            &format!("stat {} 440:1234:5678:{len}", abs.display()),
        ]
    );
    // No temporary file or staging directory is left.
    assert_eq!(has_prefix("ls "), [&"ls x".to_owned()]);
    let rel = task_mounts(&task, "/run/secrets");
    assert_eq!(rel.len(), 1, "{rel:#?}");
    assert!(
        rel[0].contains(" /run/secrets ro,nosuid,nodev,noexec"),
        "{}",
        rel[0]
    );
    let abs_mounts = task_mounts(&task, abs.to_str().unwrap());
    assert!(
        abs_mounts
            .iter()
            .all(|m| m.contains(" ro,nosuid,nodev,noexec") && m.contains(" - tmpfs ")),
        "{abs_mounts:#?}"
    );
    if kernel_version() >= (6, 5) {
        // The new mount went beneath the old one, which was then removed.
        assert_eq!(abs_mounts.len(), 1, "{abs_mounts:#?}");
    }
    // The host sees its placeholder only.
    assert_eq!(fs::metadata(&abs).unwrap().len(), 0);

    task.stop(Duration::from_millis(100)).await.unwrap();
    assert!(!abs.exists() && !host_dir.path().join("sub").exists());
    let roots = [
        Path::new("/run"),
        Path::new("/tmp"),
        state.path(),
        host_dir.path(),
    ];
    assert_eq!(
        files_containing(&roots, marker.as_bytes(), started),
        Vec::<PathBuf>::new()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_secrets_checks_every_target_first() {
    let (l, _state) = launcher();
    if !available(&l).await {
        return;
    }
    let host_dir = tempfile::tempdir().unwrap();
    let abs = host_dir.path().join("abs");
    let abs_s = abs.to_str().unwrap().to_owned();
    let mut s = spec(sh("echo READY; exec sleep 1000"));
    s.secrets = vec![
        secret("x", "old-x", 0, 0, 0o444),
        secret("sub/y", "old-y", 0, 0, 0o444),
        secret(&abs_s, "old-abs", 0, 0, 0o444),
    ];
    let mut task = l.spawn(s).await.unwrap();
    let mut lines = BufReader::new(task.take_stdout().unwrap()).lines();
    wait_for_line(&mut lines, "READY").await;
    let read = |task: &Running, p: &str| fs::read_to_string(in_task(task, p)).unwrap();
    let unchanged = |task: &Running| {
        assert_eq!(read(task, "/run/secrets/x"), "old-x");
        assert_eq!(read(task, "/run/secrets/sub/y"), "old-y");
        assert_eq!(read(task, &abs_s), "old-abs");
        let m = fs::metadata(in_task(task, "/run/secrets/x")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o444);
    };
    let update_err = |r: Result<(), ExecError>| match r {
        Err(ExecError::Update(m)) => m,
        other => panic!("expected an update error, got {other:?}"),
    };

    // An unknown target anywhere in the list: nothing changes.
    for bad in ["nope", "/etc/lbx-not-a-target", "sub", "x/deeper"] {
        let m = update_err(
            task.update_secrets(vec![
                secret("x", "new-x-value", 7, 7, 0o400),
                secret(&abs_s, "new-abs-value", 7, 7, 0o400),
                secret(bad, "zzz-value", 0, 0, 0o444),
            ])
            .await,
        );
        assert_eq!(
            m,
            format!("secret target \"{bad}\" is not one of the task's")
        );
        unchanged(&task);
    }
    let e = task
        .update_secrets(vec![secret("nope", "zzz-value", 0, 0, 0o444)])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "updating the task's secrets: secret target \"nope\" is not one of the task's"
    );
    assert!(!e.to_string().contains("zzz"));
    // The same target twice (also spelled differently), or an invalid one.
    let m = update_err(
        task.update_secrets(vec![
            secret("x", "new-x-value", 0, 0, 0o444),
            secret("/run/secrets/x", "other-value", 0, 0, 0o444),
        ])
        .await,
    );
    assert_eq!(m, "duplicate secret target \"/run/secrets/x\"");
    let m = update_err(
        task.update_secrets(vec![
            secret("x", "new-x-value", 0, 0, 0o444),
            secret("../x", "zzz-value", 0, 0, 0o444),
        ])
        .await,
    );
    assert_eq!(m, "invalid secret target \"../x\"");
    unchanged(&task);
    // Nothing to do is fine.
    task.update_secrets(Vec::new()).await.unwrap();
    unchanged(&task);

    // Targets as spelled at the start or normalized; a value larger than
    // the tmpfs had room for (it grows); an empty value.
    let big = "b".repeat(300 * 1024);
    task.update_secrets(vec![
        secret("/run/secrets/sub/y", "new-y", 0, 0, 0o444),
        secret("./x", &big, 0, 0, 0o444),
    ])
    .await
    .unwrap();
    assert_eq!(read(&task, "/run/secrets/sub/y"), "new-y");
    assert_eq!(read(&task, "/run/secrets/x"), big);
    task.update_secrets(vec![secret(&abs_s, "", 0, 0, 0o400)])
        .await
        .unwrap();
    assert_eq!(read(&task, &abs_s), "");
    let mut names: Vec<String> = fs::read_dir(in_task(&task, "/run/secrets"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["sub", "x"]);
    let rel = task_mounts(&task, "/run/secrets");
    assert_eq!(rel.len(), 1, "{rel:#?}");
    assert!(rel[0].contains(" /run/secrets ro,"), "{}", rel[0]);

    // After the task ended.
    task.stop(Duration::from_millis(100)).await.unwrap();
    let e = task
        .update_secrets(vec![secret("x", "v", 0, 0, 0o444)])
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::NotRunning), "{e:?}");
    assert_eq!(e.to_string(), "task is not running");

    // A task whose helper was killed, not yet waited for.
    let mut s = spec(sh("echo READY; exec sleep 1000"));
    s.secrets = vec![secret("x", "old-x", 0, 0, 0o444)];
    let mut task = l.spawn(s).await.unwrap();
    let mut lines = BufReader::new(task.take_stdout().unwrap()).lines();
    wait_for_line(&mut lines, "READY").await;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(task.pid() as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    let e = task
        .update_secrets(vec![secret("x", "v", 0, 0, 0o444)])
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::NotRunning), "{e:?}");
    assert_eq!(task.wait().await.unwrap().signal, Some(9));

    // A task that exited on its own.
    let mut s = spec(vec!["true".into()]);
    s.secrets = vec![secret("x", "old-x", 0, 0, 0o444)];
    let mut task = l.spawn(s).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = task
        .update_secrets(vec![secret("x", "v", 0, 0, 0o444)])
        .await
        .unwrap_err();
    assert!(matches!(e, ExecError::NotRunning), "{e:?}");
}

/// `cmdline` and `environ` of every process that contain `needle`.
fn processes_exposing(needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for ent in fs::read_dir("/proc").unwrap().flatten() {
        let name = ent.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        for f in ["cmdline", "environ"] {
            if let Ok(c) = fs::read(format!("/proc/{pid}/{f}"))
                && c.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(format!("{pid}/{f}"));
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread")]
async fn update_secrets_keeps_values_out_of_argv_environ_and_disk() {
    let (l, state) = launcher();
    if !available(&l).await {
        return;
    }
    let started = std::time::SystemTime::now();
    let marker = random_hex(16);
    let host_dir = tempfile::tempdir().unwrap();
    let abs = host_dir.path().join("abs");
    let abs_s = abs.to_str().unwrap().to_owned();
    // Exec'd directly: its argv and environment are exactly these.
    let mut s = spec(vec!["sleep".into(), "1000".into()]);
    s.secrets = vec![
        secret("x", "old", 0, 0, 0o444),
        secret(&abs_s, "old", 0, 0, 0o444),
    ];
    let task = l.spawn(s).await.unwrap();
    let (helper, workload) = (task.pid(), task.workload_pid());

    // Updates in the background while the process table is watched.
    let value = {
        let marker = marker.clone();
        move |i: usize| format!("{marker}-{i}-{}", "v".repeat(64 * 1024))
    };
    let values = value.clone();
    let updater = tokio::spawn(async move {
        let value = values;
        let mut task = task;
        for i in 0..20 {
            task.update_secrets(vec![
                secret("x", &value(i), 0, 0, 0o444),
                secret(&abs_s, &value(i), 0, 0, 0o444),
            ])
            .await
            .unwrap();
        }
        // A failed update names no value either.
        let e = task
            .update_secrets(vec![
                secret("x", &value(99), 0, 0, 0o444),
                secret("nope", &value(99), 0, 0, 0o444),
            ])
            .await
            .unwrap_err();
        (task, e)
    });
    let mut rounds = 0;
    while !updater.is_finished() {
        assert_eq!(processes_exposing(marker.as_bytes()), Vec::<String>::new());
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (mut task, e) = updater.await.unwrap();
    assert!(rounds > 0);
    assert!(!e.to_string().contains(&marker), "{e}");
    assert_eq!(processes_exposing(marker.as_bytes()), Vec::<String>::new());
    // The helper's and the workload's argv and environment, exactly.
    let cmdline = fs::read(format!("/proc/{helper}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .collect();
    assert_eq!(args.len(), 5, "{:?}", String::from_utf8_lossy(&cmdline));
    assert_eq!(args[1], b"__exec-helper");
    assert!(args[2..].iter().all(|a| a.iter().all(u8::is_ascii_digit)));
    assert_eq!(fs::read(format!("/proc/{helper}/environ")).unwrap(), b"");
    assert_eq!(
        fs::read(format!("/proc/{workload}/cmdline")).unwrap(),
        b"sleep\x001000\x00"
    );
    assert_eq!(
        fs::read(format!("/proc/{workload}/environ")).unwrap(),
        b"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin\x00"
    );
    // The update socket is the helper's alone.
    let fds: Vec<_> = fs::read_dir(format!("/proc/{workload}/fd"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(fds.len(), 3, "{fds:?}");
    assert_eq!(
        fs::read_to_string(in_task(&task, "/run/secrets/x")).unwrap(),
        value(19)
    );

    task.stop(Duration::from_millis(100)).await.unwrap();
    let roots = [
        Path::new("/run"),
        Path::new("/tmp"),
        state.path(),
        host_dir.path(),
    ];
    assert_eq!(
        files_containing(&roots, marker.as_bytes(), started),
        Vec::<PathBuf>::new()
    );
}
