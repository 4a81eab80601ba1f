//! The daemon side: the launcher thread, the spec/status protocol, the
//! handle on a running task and its secret updates.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Weak, mpsc};
use std::time::Duration;

use rustix::io::FdFlags;
use rustix::pipe::{PipeFlags, pipe_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::pipe;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use crate::helper::send_signal;
use crate::wire::{self, Frame};
use crate::{DEFAULT_STATE_DIR, ExecError, Exit, HELPER_ARG, ProcessSpec, SecretFile};

/// A helper process just forked by the launcher thread.
struct Spawned {
    child: Child,
    spec_w: OwnedFd,
    status_r: OwnedFd,
    /// Our end of the update socket.
    update: StdUnixStream,
}

struct Request {
    handle: tokio::runtime::Handle,
    reply: tokio::sync::oneshot::Sender<io::Result<Spawned>>,
}

/// Starts host tasks. Owns one dedicated, long-lived std thread that
/// performs every fork: the helper's `PR_SET_PDEATHSIG` fires when the
/// thread that forked it ends, so that thread must live as long as the
/// tasks. Dropping the `Launcher` ends the thread, and with it (SIGKILL)
/// every task it started.
pub struct Launcher {
    tx: mpsc::Sender<Request>,
    state_dir: PathBuf,
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launcher")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

impl Launcher {
    /// `helper_exe` is the lockbox binary (`std::env::current_exe()`),
    /// whose `main()` calls [`crate::helper_main`] for [`HELPER_ARG`].
    /// Placeholder records go to [`DEFAULT_STATE_DIR`].
    pub fn new(helper_exe: PathBuf) -> io::Result<Launcher> {
        Self::with_state_dir(helper_exe, PathBuf::from(DEFAULT_STATE_DIR))
    }

    /// Like [`Launcher::new`], with placeholder records (see the crate
    /// docs) under `state_dir`. Give the same directory to
    /// [`crate::cleanup_stale`].
    pub fn with_state_dir(helper_exe: PathBuf, state_dir: PathBuf) -> io::Result<Launcher> {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("lockbox-exec-launcher".into())
            .spawn(move || launcher_thread(&helper_exe, &rx))?;
        Ok(Launcher { tx, state_dir })
    }

    /// The directory of the placeholder records.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Starts `spec`. Resolves once the workload has been exec'd, or with
    /// [`ExecError::Setup`] when it could not be started. Must be called
    /// within a tokio runtime. If this future is dropped before it
    /// resolves, the helper notices (its pipes close) and kills the
    /// workload.
    pub async fn spawn(&self, spec: ProcessSpec) -> Result<Running, ExecError> {
        validate(&spec)?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        let gone = || io::Error::other("the lockbox-exec launcher thread has stopped");
        self.tx
            .send(Request {
                handle: tokio::runtime::Handle::current(),
                reply,
            })
            .map_err(|_| gone())?;
        let Spawned {
            mut child,
            spec_w,
            status_r,
            update,
        } = rx.await.map_err(|_| gone())??;
        let pid = child.id().unwrap_or(0);
        let mut spec_tx = pipe::Sender::from_owned_fd(spec_w)?;
        let mut status_rx = pipe::Receiver::from_owned_fd(status_r)?;
        update.set_nonblocking(true)?;
        let update = UnixStream::from_std(update)?;

        let written = write_spec(&mut spec_tx, &spec, &self.state_dir).await;
        let task_id = spec.task_id.clone();
        // Wipes our copies of the values.
        drop(spec);
        let mut buf = Vec::new();
        match read_frame(&mut status_rx, &mut buf).await {
            Ok(Some(Frame::Started { workload_pid })) => {
                tracing::debug!(task_id, pid, workload_pid, "host task started");
                Ok(Running {
                    child,
                    pid,
                    workload_pid,
                    control: Some(Arc::new(spec_tx)),
                    status: Some(status_rx),
                    status_buf: buf,
                    updates: Some(Arc::new(tokio::sync::Mutex::new(UpdateChannel {
                        stream: update,
                        broken: false,
                    }))),
                    exit: None,
                })
            }
            Ok(Some(Frame::Failed(msg))) => {
                let _ = child.wait().await;
                tracing::debug!(task_id, error = %msg, "host task failed to start");
                Err(ExecError::Setup(msg))
            }
            other => {
                drop(spec_tx);
                let status = child.wait().await?;
                tracing::debug!(task_id, ?written, ?other, %status, "exec helper failed");
                Err(ExecError::Setup(format!(
                    "exec helper exited without starting the task ({status})"
                )))
            }
        }
    }
}

fn validate(spec: &ProcessSpec) -> Result<(), ExecError> {
    if spec.argv.is_empty() {
        return Err(ExecError::Setup("no command specified".into()));
    }
    let nul = |what: &str| ExecError::Setup(format!("invalid {what}: contains a NUL byte"));
    if spec.argv.iter().any(|a| a.contains('\0')) {
        return Err(nul("argument"));
    }
    if spec.env.iter().any(|a| a.contains('\0')) {
        return Err(nul("environment variable"));
    }
    if spec.user.as_deref().is_some_and(|u| u.contains('\0')) {
        return Err(nul("user"));
    }
    Ok(())
}

fn launcher_thread(helper_exe: &Path, rx: &mpsc::Receiver<Request>) {
    while let Ok(req) = rx.recv() {
        let _runtime = req.handle.enter();
        let res = spawn_helper(helper_exe);
        // If the caller went away, dropping the result closes our pipe ends
        // and the helper exits on its own.
        let _ = req.reply.send(res);
    }
}

/// Forks and execs the helper (on the launcher thread).
fn spawn_helper(helper_exe: &Path) -> io::Result<Spawned> {
    let (spec_r, spec_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (status_r, status_w) = pipe_with(PipeFlags::CLOEXEC)?;
    // Close-on-exec on both ends.
    let (update, update_helper) = StdUnixStream::pair()?;
    // Numbers ≥ 10, so std's stdio setup in the child (dup2 onto 0..2)
    // cannot clobber them; still close-on-exec in this process.
    let spec_r = rustix::io::fcntl_dupfd_cloexec(&spec_r, 10)?;
    let status_w = rustix::io::fcntl_dupfd_cloexec(&status_w, 10)?;
    let update_helper = rustix::io::fcntl_dupfd_cloexec(&update_helper, 10)?;
    let (a, b, c) = (
        spec_r.as_raw_fd(),
        status_w.as_raw_fd(),
        update_helper.as_raw_fd(),
    );

    let mut cmd = Command::new(helper_exe);
    cmd.arg(HELPER_ARG)
        .arg(a.to_string())
        .arg(b.to_string())
        .arg(c.to_string())
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Out of the daemon's process group: a Ctrl-C on the daemon's
        // terminal is not the task's business.
        .process_group(0)
        .kill_on_drop(false);
    let inherit = move || -> io::Result<()> {
        for fd in [a, b, c] {
            // SAFETY: `fd` was open in the parent when it forked, so it is
            // open in this child; it is only borrowed for the call.
            let fd = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd, FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the forked child before exec. It only
    // calls fcntl(2), which is async-signal-safe, and neither allocates nor
    // takes locks.
    unsafe {
        cmd.pre_exec(inherit);
    }
    let child = cmd.spawn()?;
    drop(spec_r);
    drop(status_w);
    drop(update_helper);
    Ok(Spawned {
        child,
        spec_w,
        status_r,
        update,
    })
}

async fn write_spec(tx: &mut pipe::Sender, spec: &ProcessSpec, state_dir: &Path) -> io::Result<()> {
    tx.write_all(&wire::encode_header(spec, state_dir)).await?;
    for s in &spec.secrets {
        tx.write_all(&wire::encode_secret_meta(s)).await?;
        // Straight from the SecretBytes into the pipe: no copy.
        tx.write_all(s.data.expose()).await?;
    }
    tx.flush().await
}

/// The next status frame, or `None` at end of file.
async fn read_frame(rx: &mut pipe::Receiver, buf: &mut Vec<u8>) -> io::Result<Option<Frame>> {
    loop {
        if let Some((frame, n)) = wire::parse_frame(buf)? {
            buf.drain(..n);
            return Ok(Some(frame));
        }
        let mut chunk = [0u8; 512];
        let n = rx.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A started task. Dropping it kills the task (SIGKILL, like tokio's
/// `kill_on_drop`): the helper sees its control pipe close. Keep it for as
/// long as the task should run.
pub struct Running {
    child: Child,
    pid: u32,
    workload_pid: u32,
    control: Option<Arc<pipe::Sender>>,
    status: Option<pipe::Receiver>,
    status_buf: Vec<u8>,
    /// The update socket; shared with the exchange in flight, which runs
    /// to its end even when the caller stops waiting for it.
    updates: Option<Arc<tokio::sync::Mutex<UpdateChannel>>>,
    exit: Option<Exit>,
}

/// The daemon's end of a task's update socket.
struct UpdateChannel {
    stream: UnixStream,
    /// An exchange failed half-way: the stream cannot be trusted any more.
    broken: bool,
}

/// How an update exchange with the helper ended.
enum Reply {
    Done,
    Failed(String),
    /// The channel broke (end of file, an I/O error, or nonsense).
    Closed,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("pid", &self.pid)
            .field("workload_pid", &self.workload_pid)
            .field("exit", &self.exit)
            .finish_non_exhaustive()
    }
}

impl Running {
    /// Pid of the helper, the top process of the task.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Pid (in the daemon's pid namespace) of the workload, which is pid 1
    /// of its own namespace.
    pub fn workload_pid(&self) -> u32 {
        self.workload_pid
    }

    /// The task's standard output (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// The task's standard error (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits for the workload to end. Cancel-safe; after the first success
    /// it returns the same result again.
    pub async fn wait(&mut self) -> Result<Exit, ExecError> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        let status = self.child.wait().await?;
        let mut reported = None;
        if let Some(rx) = &mut self.status {
            // The helper wrote its report before exiting.
            let buf = &mut self.status_buf;
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(Some(frame)) = read_frame(rx, buf).await {
                    if let Frame::Exited(e) = frame {
                        reported = Some(e);
                        break;
                    }
                }
            })
            .await;
        }
        // Without a report the helper itself was killed (e.g. SIGKILL);
        // PR_SET_PDEATHSIG took the workload with it.
        let exit = reported.unwrap_or(match (status.code(), status.signal()) {
            (Some(code), _) => Exit {
                code: Some(code),
                signal: None,
            },
            (None, sig) => Exit {
                code: None,
                signal: sig,
            },
        });
        self.status = None;
        self.control = None;
        self.updates = None;
        self.exit = Some(exit);
        Ok(exit)
    }

    /// Replaces the content of secret files of the running task (live
    /// update). Each file names a target the task was started with
    /// (normalized as at the start: `x`, `./x` and `/run/secrets/x` are the
    /// same target) and gets the new value, uid, gid and mode. A reader in
    /// the task sees the old or the new file, never a mix, a partial or a
    /// missing one; `/run/secrets` stays read-only to the task. All targets
    /// are checked first: an unknown or duplicate one changes nothing.
    ///
    /// Errors: [`ExecError::NotRunning`] once the task has ended,
    /// [`ExecError::Update`] with the reason otherwise (never a value). If
    /// this future is dropped, the update still runs to its end.
    pub async fn update_secrets(&mut self, secrets: Vec<SecretFile>) -> Result<(), ExecError> {
        let Some(chan) = self.updates.clone().filter(|_| self.exit.is_none()) else {
            return Err(ExecError::NotRunning);
        };
        // The values move into the exchange and are wiped when it ends.
        let reply = tokio::spawn(exchange(chan, secrets))
            .await
            .unwrap_or(Reply::Closed);
        match reply {
            Reply::Done => Ok(()),
            Reply::Failed(msg) => Err(ExecError::Update(msg)),
            Reply::Closed => {
                // The helper closes the channel when it exits (so has the
                // task), or after a request it could not read.
                let exited = tokio::time::timeout(Duration::from_secs(2), self.child.wait())
                    .await
                    .is_ok();
                if exited {
                    Err(ExecError::NotRunning)
                } else {
                    Err(ExecError::Update(
                        "the task's secret update channel is closed".into(),
                    ))
                }
            }
        }
    }

    /// Sends `sig` to the workload (through the helper). SIGKILL kills the
    /// workload, and so the whole task. Sending to a task that has ended is
    /// not an error.
    pub fn signal(&self, sig: i32) -> Result<(), ExecError> {
        if !(1..=64).contains(&sig) {
            return Err(ExecError::InvalidSignal(sig));
        }
        if self.exit.is_some() {
            return Ok(());
        }
        if let Some(ctl) = &self.control
            && send_control(ctl, sig).is_ok()
        {
            return Ok(());
        }
        // The helper relays the signals it receives; a SIGKILL kills the
        // helper and PR_SET_PDEATHSIG the workload.
        let Some(pid) = self.child.id() else {
            return Ok(());
        };
        match send_signal(pid as i32, sig) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            r => r.map_err(ExecError::Io),
        }
    }

    /// A cloneable handle that signals the workload from other tasks while
    /// this `Running` is busy in [`Running::wait`]. It does not keep the
    /// task alive: once the `Running` is dropped it does nothing.
    pub fn signaller(&self) -> Signaller {
        Signaller {
            control: self
                .control
                .as_ref()
                .map(Arc::downgrade)
                .unwrap_or_default(),
        }
    }

    /// SIGTERM, then SIGKILL if the workload has not ended after `grace`.
    pub async fn stop(&mut self, grace: Duration) -> Result<Exit, ExecError> {
        if let Some(e) = self.exit {
            return Ok(e);
        }
        self.signal(libc::SIGTERM)?;
        if let Ok(r) = tokio::time::timeout(grace, self.wait()).await {
            return r;
        }
        self.signal(libc::SIGKILL)?;
        if let Ok(r) = tokio::time::timeout(Duration::from_secs(10), self.wait()).await {
            return r;
        }
        // The helper does not respond: kill it; PR_SET_PDEATHSIG takes the
        // workload with it.
        if let Some(pid) = self.child.id() {
            let _ = send_signal(pid as i32, libc::SIGKILL);
        }
        self.wait().await
    }
}

/// Sends one update request and reads the helper's reply.
async fn exchange(chan: Arc<tokio::sync::Mutex<UpdateChannel>>, secrets: Vec<SecretFile>) -> Reply {
    let mut ch = chan.lock().await;
    if ch.broken {
        return Reply::Closed;
    }
    let stream = &mut ch.stream;
    let res: io::Result<Option<Frame>> = async {
        stream
            .write_all(&wire::encode_update_header(secrets.len()))
            .await?;
        for s in &secrets {
            stream.write_all(&wire::encode_secret_meta(s)).await?;
            // Straight from the SecretBytes into the socket: no copy.
            stream.write_all(s.data.expose()).await?;
        }
        stream.flush().await?;
        let mut buf = Vec::new();
        loop {
            if let Some((frame, _)) = wire::parse_frame(&buf)? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    }
    .await;
    drop(secrets);
    match res {
        Ok(Some(Frame::Updated)) => Reply::Done,
        Ok(Some(Frame::Failed(msg))) => Reply::Failed(msg),
        Ok(_) | Err(_) => {
            ch.broken = true;
            Reply::Closed
        }
    }
}

/// Writes one control message (5 bytes < PIPE_BUF: all or nothing).
fn send_control(ctl: &pipe::Sender, sig: i32) -> io::Result<()> {
    match ctl.try_write(&wire::encode_control_signal(sig)) {
        Ok(n) if n == wire::CONTROL_LEN => Ok(()),
        Ok(_) => Err(io::Error::from(io::ErrorKind::WriteZero)),
        Err(e) => Err(e),
    }
}

/// Sends signals to a task's workload; see [`Running::signaller`].
#[derive(Clone, Debug)]
pub struct Signaller {
    control: Weak<pipe::Sender>,
}

impl Signaller {
    /// Sends `sig` to the workload (SIGKILL kills the task). Does nothing
    /// once the task has ended or its `Running` was dropped.
    pub fn signal(&self, sig: i32) -> Result<(), ExecError> {
        if !(1..=64).contains(&sig) {
            return Err(ExecError::InvalidSignal(sig));
        }
        let Some(ctl) = self.control.upgrade() else {
            return Ok(());
        };
        match send_control(&ctl, sig) {
            // The helper has exited: so has the task.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            r => r.map_err(ExecError::Io),
        }
    }
}
