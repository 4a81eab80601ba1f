//! The exec helper: `<lockbox> __exec-helper <spec fd> <status fd> <update fd>`.
//!
//! It runs as a fresh, single-threaded process, so namespace and credential
//! changes affect the whole process and `fork` is safe to follow with
//! ordinary code.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsString};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::fs::Mode;
use rustix::io::{Errno, FdFlags};
use rustix::mount::{
    MountFlags, MountPropagationFlags, UnmountFlags, mount, mount_bind, mount_change,
    mount_remount, unmount,
};
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Gid, Pid, Signal, Uid, WaitOptions, WaitStatus, waitpid};
use rustix::thread::UnshareFlags;

use crate::placeholder::Records;
use crate::user::Creds;
use crate::wire::{self, Frame, HelperSecret, HelperSpec};
use crate::{Exit, SECRETS_DIR};

mod update;

/// Signals the helper forwards to the workload.
const RELAYED: [i32; 8] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGWINCH,
];

/// Exit code of the helper when the task could not be started.
const SETUP_FAILED: i32 = 125;

/// `io::Error` text in Go's style: lower case, without `(os error N)`.
pub(crate) fn err_text(e: &io::Error) -> String {
    let s = e.to_string();
    let s = match (e.raw_os_error(), s.rfind(" (os error ")) {
        (Some(_), Some(i)) => &s[..i],
        _ => &s[..],
    };
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

fn errno_text(e: Errno) -> String {
    err_text(&io::Error::from(e))
}

/// Sends `sig` to `pid` (which must be a real process id, never 0 or -1).
pub(crate) fn send_signal(pid: i32, sig: i32) -> io::Result<()> {
    if pid <= 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill(2) takes two integers and has no memory-safety
    // preconditions; pid > 0 addresses exactly one process.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs the exec helper. Called by the lockbox binary's `main()` as the very
/// first thing when `argv[1] == HELPER_ARG`, before any thread or async
/// runtime exists. Never returns.
pub fn helper_main() -> ! {
    std::process::exit(run())
}

fn run() -> i32 {
    // If the launcher thread (i.e. the daemon) dies from here on, so do we.
    let _ = rustix::process::set_parent_process_death_signal(Some(Signal::KILL));
    // No core dumps and no ptrace by non-root users while we hold secrets.
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    // Every mode we create is explicit.
    rustix::process::umask(Mode::empty());

    let args: Vec<OsString> = std::env::args_os().collect();
    let (mut control, mut status, updates) = match adopt_fds(&args) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("lockbox exec helper: {e}");
            return SETUP_FAILED;
        }
    };
    // The daemon may have died before PR_SET_PDEATHSIG was armed; then the
    // read end of the status pipe is gone.
    if peer_gone(&status) {
        return SETUP_FAILED;
    }
    let spec = match wire::decode(&mut control) {
        Ok(s) => s,
        Err(e) => {
            let _ = send(
                &mut status,
                &Frame::Failed(format!("reading task spec: {}", err_text(&e))),
            );
            return SETUP_FAILED;
        }
    };
    // `ps` shows which task this helper runs (comm is 15 bytes at most).
    let name: String = format!("lbx-{}", spec.task_id)
        .chars()
        .filter(|c| *c != '\0')
        .take(15)
        .collect();
    if let Ok(name) = CString::new(name) {
        let _ = rustix::thread::set_name(&name);
    }
    let mut task = Task {
        spec,
        records: None,
        binds: Vec::new(),
        liveness: None,
        mask: None,
        rel_targets: HashSet::new(),
        abs_targets: HashSet::new(),
    };
    let child = match task.start() {
        Ok(c) => c,
        Err(msg) => {
            task.cleanup();
            let _ = send(&mut status, &Frame::Failed(msg));
            return SETUP_FAILED;
        }
    };
    let started = Frame::Started {
        workload_pid: child.as_raw_nonzero().get().unsigned_abs(),
    };
    if send(&mut status, &started).is_err() {
        // Nobody listens any more (the spawn was abandoned): leave no
        // unsupervised task behind.
        let _ = send_signal(child.as_raw_nonzero().get(), libc::SIGKILL);
        let _ = waitpid(Some(child), WaitOptions::empty());
        task.cleanup();
        return SETUP_FAILED;
    }
    let exit = supervise(child, Some(control), Some(updates), &mut task);
    task.cleanup();
    let _ = send(&mut status, &Frame::Exited(exit));
    exit.docker_code()
}

fn send(status: &mut File, frame: &Frame) -> io::Result<()> {
    status.write_all(&wire::encode_frame(frame))
}

/// Takes ownership of the three descriptors named on the command line.
fn adopt_fds(args: &[OsString]) -> Result<(File, File, UnixStream), String> {
    let fd = |i: usize| -> Result<RawFd, String> {
        let raw: RawFd = args
            .get(i)
            .and_then(|a| a.to_str())
            .and_then(|a| a.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or("usage: __exec-helper <spec fd> <status fd> <update fd>")?;
        // SAFETY: the descriptor is only used for this fcntl call; if it is
        // not open, fcntl fails with EBADF and we stop.
        let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
        rustix::io::fcntl_setfd(borrowed, FdFlags::CLOEXEC)
            .map_err(|e| format!("descriptor {raw}: {}", errno_text(e)))?;
        Ok(raw)
    };
    let (spec_fd, status_fd, update_fd) = (fd(2)?, fd(3)?, fd(4)?);
    if spec_fd == status_fd || spec_fd == update_fd || status_fd == update_fd {
        return Err("spec, status and update descriptors must differ".into());
    }
    // The update channel must be a socket (it is answered on).
    // SAFETY: borrowed only for this call; open (checked above).
    let borrowed = unsafe { BorrowedFd::borrow_raw(update_fd) };
    if rustix::fs::fstat(borrowed)
        .map(|st| rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Socket)
        .unwrap_or(true)
    {
        return Err(format!("descriptor {update_fd}: not a socket"));
    }
    // SAFETY: the launcher passed these three open descriptors (checked
    // above) for this process's exclusive use; nothing else in this process
    // owns them, and each is adopted exactly once.
    let (spec, status, update) = unsafe {
        (
            OwnedFd::from_raw_fd(spec_fd),
            OwnedFd::from_raw_fd(status_fd),
            OwnedFd::from_raw_fd(update_fd),
        )
    };
    let update = UnixStream::from(update);
    // A request is written in one go by the daemon; never wait forever for
    // the rest of one, nor for the daemon to take a reply.
    let limit = Some(Duration::from_secs(10));
    update
        .set_read_timeout(limit)
        .and_then(|()| update.set_write_timeout(limit))
        .map_err(|e| format!("descriptor {update_fd}: {}", err_text(&e)))?;
    Ok((File::from(spec), File::from(status), update))
}

/// Whether the reader of the pipe whose write end is `w` has gone.
fn peer_gone(w: &File) -> bool {
    let mut fds = [PollFd::new(w, PollFlags::OUT)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).is_ok()
        && fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
}

/// Whether the writer of the pipe whose read end is `r` has gone (the
/// helper holds the write end of the liveness pipe until it exits).
fn writer_gone(r: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(r, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

struct Task {
    spec: HelperSpec,
    records: Option<Records>,
    /// Absolute targets with a bind mount in our namespace.
    binds: Vec<PathBuf>,
    /// Write end of the pipe the workload polls to learn whether we live.
    liveness: Option<OwnedFd>,
    /// The blocked signals (for signalfd).
    mask: Option<libc::sigset_t>,
    /// Normalized relative targets (below /run/secrets), for live updates.
    rel_targets: HashSet<PathBuf>,
    /// Normalized absolute targets, for live updates.
    abs_targets: HashSet<PathBuf>,
}

impl Task {
    fn start(&mut self) -> Result<Pid, String> {
        if self.spec.argv.is_empty() {
            return Err("no command specified".into());
        }
        let creds = crate::user::resolve_host(self.spec.user.as_deref())?;
        let secrets = std::mem::take(&mut self.spec.secrets);
        let (rel, abs) = classify(&secrets)?;
        self.rel_targets = rel.iter().map(|(p, _)| p.clone()).collect();
        self.abs_targets = abs.iter().map(|(p, _)| p.clone()).collect();
        let rel_size = self
            .spec
            .tmpfs_size
            .unwrap_or_else(|| default_size(rel.iter().map(|(_, s)| s.data.len())));
        if !abs.is_empty() {
            // Before the pid namespace gets its own /proc.
            self.records = Some(
                Records::new(&self.spec.state_dir)
                    .map_err(|e| format!("preparing state directory: {}", err_text(&e)))?,
            );
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(SECRETS_DIR)
            .map_err(|e| format!("creating {SECRETS_DIR}: {}", err_text(&e)))?;

        let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWPID;
        if self.spec.hostname.is_some() {
            flags |= UnshareFlags::NEWUTS;
        }
        // SAFETY: unshare_unsafe is unsafe because unsharing CLONE_FILES or
        // CLONE_FS could break Rust's assumptions about descriptors and the
        // working directory; we only unshare mount, pid and UTS namespaces,
        // and this process is single-threaded.
        unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| {
            if e == Errno::PERM {
                "creating namespaces: operation not permitted (host tasks need CAP_SYS_ADMIN)"
                    .to_owned()
            } else {
                format!("creating namespaces: {}", errno_text(e))
            }
        })?;
        mount_change(
            "/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .map_err(|e| format!("making / private: {}", errno_text(e)))?;
        if let Some(h) = &self.spec.hostname {
            rustix::system::sethostname(h.as_bytes())
                .map_err(|e| format!("setting hostname: {}", errno_text(e)))?;
        }
        if !abs.is_empty() {
            self.mount_absolute(&abs)?;
        }
        mount_tmpfs(SECRETS_DIR, rel_size)?;
        for (path, s) in &rel {
            write_secret(Path::new(SECRETS_DIR), path, s, path)?;
        }
        remount_ro(SECRETS_DIR)?;
        // Our copies of the values are no longer needed: wipe them before
        // the workload is forked from this memory.
        drop(rel);
        drop(abs);
        drop(secrets);
        self.fork_workload(&creds)
    }

    /// Absolute targets: a second tmpfs, mounted on /run/secrets only while
    /// the files are written and bound onto their targets, then detached
    /// (the bind mounts keep it alive; nothing of it is reachable by path).
    fn mount_absolute(&mut self, abs: &[(PathBuf, &HelperSecret)]) -> Result<(), String> {
        let staging = Path::new(SECRETS_DIR);
        mount_tmpfs(
            SECRETS_DIR,
            default_size(abs.iter().map(|(_, s)| s.data.len())),
        )?;
        for (i, (target, s)) in abs.iter().enumerate() {
            write_secret(staging, Path::new(&i.to_string()), s, target)?;
        }
        remount_ro(SECRETS_DIR)?;
        for (i, (target, _)) in abs.iter().enumerate() {
            if let Some(r) = &mut self.records {
                r.prepare(target)?;
            }
            let fail =
                |e: Errno| format!("mounting secret on {}: {}", target.display(), errno_text(e));
            mount_bind(staging.join(i.to_string()), target).map_err(fail)?;
            self.binds.push(target.clone());
            mount_remount(
                target,
                MountFlags::BIND
                    | MountFlags::RDONLY
                    | MountFlags::NOSUID
                    | MountFlags::NODEV
                    | MountFlags::NOEXEC,
                "",
            )
            .map_err(fail)?;
        }
        unmount(SECRETS_DIR, UnmountFlags::DETACH)
            .map_err(|e| format!("unmounting staging tmpfs: {}", errno_text(e)))
    }

    fn fork_workload(&mut self, creds: &Creds) -> Result<Pid, String> {
        let pipe = || pipe_with(PipeFlags::CLOEXEC).map_err(|e| format!("pipe: {}", errno_text(e)));
        let (err_r, err_w) = pipe()?;
        let (live_r, live_w) = pipe()?;
        let mask = block_signals()?;
        self.mask = Some(mask);
        // SAFETY: this process is single-threaded (helper_main runs before any
        // thread is started), so the child may allocate and run ordinary code
        // after fork: no lock can be held by a thread that does not exist in
        // the child.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", err_text(&io::Error::last_os_error())));
        }
        if pid == 0 {
            drop(err_r);
            drop(live_w);
            let msg = workload(&self.spec, creds, &live_r);
            let mut err_w = File::from(err_w);
            let _ = err_w.write_all(msg.as_bytes());
            std::process::exit(127);
        }
        drop(err_w);
        drop(live_r);
        self.liveness = Some(live_w);
        let Some(pid) = Pid::from_raw(pid) else {
            return Err("fork returned an invalid pid".into());
        };
        let mut msg = Vec::new();
        let _ = File::from(err_r).read_to_end(&mut msg);
        if !msg.is_empty() {
            let _ = waitpid(Some(pid), WaitOptions::empty());
            return Err(String::from_utf8_lossy(&msg).into_owned());
        }
        Ok(pid)
    }

    /// Unmounts our bind mounts and removes the placeholders we created.
    fn cleanup(&mut self) {
        for t in self.binds.drain(..).rev() {
            let _ = unmount(&t, UnmountFlags::DETACH);
        }
        if let Some(r) = &mut self.records {
            r.release();
        }
    }
}

/// Splits the secrets into relative targets (below /run/secrets) and
/// absolute ones, normalized and checked.
#[allow(clippy::type_complexity)]
fn classify(
    secrets: &[HelperSecret],
) -> Result<(Vec<(PathBuf, &HelperSecret)>, Vec<(PathBuf, &HelperSecret)>), String> {
    let base = Path::new(SECRETS_DIR);
    let mut rel = Vec::new();
    let mut abs = Vec::new();
    let mut seen = HashSet::new();
    for s in secrets {
        let t = &s.target;
        let invalid = || format!("invalid secret target \"{}\"", t.display());
        let bytes = t.as_os_str().as_bytes();
        if bytes.is_empty() || bytes.contains(&0) || bytes.contains(&b'\n') {
            return Err(invalid());
        }
        let mut norm = PathBuf::new();
        for c in t.components() {
            match c {
                Component::RootDir => norm.push("/"),
                Component::Normal(n) => norm.push(n),
                Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => return Err(invalid()),
            }
        }
        let (rel_path, is_rel) = if norm.is_absolute() {
            match norm.strip_prefix(base) {
                Ok(r) => (r.to_path_buf(), true),
                Err(_) => (norm.clone(), false),
            }
        } else {
            (norm.clone(), true)
        };
        if rel_path.as_os_str().is_empty() || rel_path == Path::new("/") {
            return Err(invalid());
        }
        let full = if is_rel {
            base.join(&rel_path)
        } else {
            rel_path.clone()
        };
        if !seen.insert(full) {
            return Err(format!("duplicate secret target \"{}\"", t.display()));
        }
        if is_rel {
            rel.push((rel_path, s));
        } else {
            abs.push((rel_path, s));
        }
    }
    Ok((rel, abs))
}

const PAGE: u64 = 4096;

/// Each file rounded up to whole pages, plus 64 KiB.
fn default_size(lens: impl Iterator<Item = usize>) -> u64 {
    lens.map(|l| (l as u64).div_ceil(PAGE) * PAGE).sum::<u64>() + 64 * 1024
}

fn mount_tmpfs(target: &str, size: u64) -> Result<(), String> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let opts = |noswap: bool| {
        let extra = if noswap { ",noswap" } else { "" };
        CString::new(format!("mode=0755,size={size}{extra}")).unwrap_or_default()
    };
    // `noswap` (Linux 6.4+) keeps the values out of swap; older kernels
    // reject the unknown option with EINVAL.
    let r = match mount("tmpfs", target, "tmpfs", flags, opts(true).as_c_str()) {
        Err(Errno::INVAL) => mount("tmpfs", target, "tmpfs", flags, opts(false).as_c_str()),
        r => r,
    };
    r.map_err(|e| format!("mounting tmpfs on {target}: {}", errno_text(e)))
}

fn remount_ro(target: &str) -> Result<(), String> {
    mount_remount(
        target,
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "",
    )
    .map_err(|e| format!("remounting {target} read-only: {}", errno_text(e)))
}

/// Writes one secret file `base/rel`; `name` is what error messages show.
fn write_secret(base: &Path, rel: &Path, s: &HelperSecret, name: &Path) -> Result<(), String> {
    let ctx = |e: io::Error| secret_error(name, &e);
    let path = base.join(rel);
    if let Some(parent) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(ctx)?;
    }
    let mut f = create_new(&path).map_err(ctx)?;
    fill(&mut f, s).map_err(ctx)
}

/// The error for writing the secret file of target `name`: its name and
/// the reason, never its value.
fn secret_error(name: &Path, e: &io::Error) -> String {
    format!("writing secret {}: {}", name.display(), err_text(e))
}

/// Creates `path`, which must not exist (nor be a symlink), mode 0000.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Writes the value into the new file `f`, then gives it its owner and mode.
fn fill(f: &mut File, s: &HelperSecret) -> io::Result<()> {
    f.write_all(&s.data)?;
    std::os::unix::fs::fchown(&*f, Some(s.uid), Some(s.gid))?;
    // After chown, which would clear set-id bits.
    f.set_permissions(Permissions::from_mode(s.mode & 0o7777))
}

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: sigset_t is a plain bit array for which all-zero is a valid
    // value; sigemptyset/sigaddset only write into the local set and cannot
    // fail for valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks SIGCHLD and the relayed signals (they are read from a signalfd
/// later and stay pending until then).
fn block_signals() -> Result<libc::sigset_t, String> {
    let mut all = RELAYED.to_vec();
    all.push(libc::SIGCHLD);
    let set = sigset(&all);
    // SAFETY: `set` is a valid, initialized sigset; the old mask is not
    // requested (null). The process is single-threaded.
    let r = unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if r != 0 {
        return Err(format!(
            "sigprocmask: {}",
            err_text(&io::Error::last_os_error())
        ));
    }
    Ok(set)
}

/// Arms PR_SET_PDEATHSIG and exits if the helper already died.
fn arm_pdeathsig(live: &OwnedFd) -> Result<(), String> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG): {}", errno_text(e)))?;
    if writer_gone(live) {
        std::process::exit(SETUP_FAILED);
    }
    Ok(())
}

/// In the forked child (pid 1 of the new pid namespace): finish the setup
/// and exec. Returns only on failure, with the message for the daemon.
fn workload(spec: &HelperSpec, creds: &Creds, live: &OwnedFd) -> String {
    match workload_exec(spec, creds, live) {
        Err(msg) => msg,
        Ok(never) => match never {},
    }
}

fn workload_exec(
    spec: &HelperSpec,
    creds: &Creds,
    live: &OwnedFd,
) -> Result<std::convert::Infallible, String> {
    arm_pdeathsig(live)?;
    // A /proc of our own pid namespace (mounted by a member of it).
    mount(
        "proc",
        "/proc",
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(|e| format!("mounting proc on /proc: {}", errno_text(e)))?;

    // rustix's set_thread_* change the calling thread only; this process
    // has exactly one thread, so they change the process.
    let groups: Vec<Gid> = creds.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    rustix::thread::set_thread_groups(&groups)
        .map_err(|e| format!("setgroups: {}", errno_text(e)))?;
    rustix::thread::set_thread_gid(Gid::from_raw(creds.gid))
        .map_err(|e| format!("setgid {}: {}", creds.gid, errno_text(e)))?;
    rustix::thread::set_thread_uid(Uid::from_raw(creds.uid))
        .map_err(|e| format!("setuid {}: {}", creds.uid, errno_text(e)))?;
    // Credential changes clear PR_SET_PDEATHSIG.
    arm_pdeathsig(live)?;

    let dir = spec.dir.as_deref().unwrap_or(Path::new("/"));
    rustix::process::chdir(dir).map_err(|e| {
        format!(
            "chdir to cwd (\"{}\") set in config.json failed: {}",
            dir.display(),
            errno_text(e)
        )
    })?;
    let argv0 = String::from_utf8_lossy(&spec.argv[0]).into_owned();
    let prog = crate::lookpath::look_path(&argv0, &crate::lookpath::path_var(&spec.env))?;
    let cstrings = |v: &[Vec<u8>]| -> Result<Vec<CString>, String> {
        v.iter()
            .map(|a| CString::new(a.clone()).map_err(|_| "argument contains a NUL byte".to_owned()))
            .collect()
    };
    let argv = cstrings(&spec.argv)?;
    let env = cstrings(&spec.env)?;
    let prog = CString::new(prog.as_os_str().as_bytes())
        .map_err(|_| "argument contains a NUL byte".to_owned())?;
    // A container's usual umask.
    rustix::process::umask(Mode::from_raw_mode(0o022));
    reset_signals();
    close_other_fds();
    let err = execve(&prog, &argv, &env);
    Err(format!("exec: \"{argv0}\": {}", err_text(&err)))
}

/// Restores the signal state a freshly started process expects: SIGPIPE
/// (ignored by the Rust runtime) back to default, nothing blocked.
fn reset_signals() {
    let empty = sigset(&[]);
    // SAFETY: signal() with SIG_DFL installs no handler code; sigprocmask
    // gets a valid, initialized set. The process is single-threaded.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Marks every descriptor above stderr close-on-exec, so the workload
/// inherits only stdin, stdout and stderr even if the daemon leaked one.
fn close_other_fds() {
    // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC only sets a flag on
    // descriptors; it closes nothing and touches no memory.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3 as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r == 0 {
        return;
    }
    // Kernels before 5.11: walk our (fresh) /proc/self/fd.
    let fds: Vec<RawFd> = match fs::read_dir("/proc/self/fd") {
        Ok(rd) => rd
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: borrowed only for this fcntl call; a descriptor that was
        // closed meanwhile (the directory handle) just fails with EBADF.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(bfd, FdFlags::CLOEXEC);
    }
}

fn execve(prog: &CStr, argv: &[CString], env: &[CString]) -> io::Error {
    let argv_p: Vec<*const libc::c_char> = argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let env_p: Vec<*const libc::c_char> = env
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    // SAFETY: `prog` and every element of argv/env are NUL-terminated
    // strings that outlive the call, and both pointer arrays end with NULL,
    // as execve(2) requires. It returns only on failure.
    unsafe { libc::execve(prog.as_ptr(), argv_p.as_ptr(), env_p.as_ptr()) };
    io::Error::last_os_error()
}

fn exit_of(ws: WaitStatus) -> Exit {
    match (ws.exit_status(), ws.terminating_signal()) {
        (Some(code), _) => Exit {
            code: Some(code),
            signal: None,
        },
        (None, Some(sig)) => Exit {
            code: None,
            signal: Some(sig),
        },
        (None, None) => LOST,
    }
}

/// What we report when the workload's status cannot be known.
const LOST: Exit = Exit {
    code: Some(SETUP_FAILED),
    signal: None,
};

/// Relays signals (sent to the helper, or asked for on the control pipe)
/// to the workload and answers secret updates until the workload exits;
/// returns how it ended.
fn supervise(
    child: Pid,
    mut control: Option<File>,
    mut updates: Option<UnixStream>,
    task: &mut Task,
) -> Exit {
    let child_raw = child.as_raw_nonzero().get();
    let sfd = task.mask.as_ref().and_then(|mask| {
        // SAFETY: `mask` is a valid, initialized sigset; signalfd(-1, …)
        // creates a new descriptor or returns -1.
        let fd = unsafe { libc::signalfd(-1, mask, libc::SFD_CLOEXEC) };
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        (fd >= 0).then(|| File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    });
    let Some(mut sfd) = sfd else {
        // No signalfd: we can only wait.
        loop {
            match waitpid(Some(child), WaitOptions::empty()) {
                Ok(Some((_, st))) => return exit_of(st),
                Err(Errno::INTR) => continue,
                _ => return LOST,
            }
        }
    };
    let mut pending: Vec<u8> = Vec::new();
    loop {
        match waitpid(Some(child), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => return exit_of(st),
            Ok(None) => {}
            Err(Errno::INTR) => continue,
            Err(_) => return LOST,
        }
        let (sig_ready, ctl_ready, upd_ready) = {
            let mut fds = vec![PollFd::new(&sfd, PollFlags::IN)];
            let ctl_at = control.as_ref().map(|c| {
                fds.push(PollFd::new(c, PollFlags::IN));
                fds.len() - 1
            });
            let upd_at = updates.as_ref().map(|u| {
                fds.push(PollFd::new(u, PollFlags::IN));
                fds.len() - 1
            });
            match poll(&mut fds, None) {
                Ok(_) => {}
                Err(Errno::INTR) => continue,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    continue;
                }
            }
            let ready = |at: Option<usize>| at.is_some_and(|i| !fds[i].revents().is_empty());
            (!fds[0].revents().is_empty(), ready(ctl_at), ready(upd_at))
        };
        if sig_ready {
            let mut buf = [0u8; 128 * 8];
            if let Ok(n) = sfd.read(&mut buf) {
                for info in buf[..n].chunks_exact(128) {
                    let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
                    if signo != libc::SIGCHLD {
                        let _ = send_signal(child_raw, signo);
                    }
                }
            }
        }
        if ctl_ready && let Some(c) = &mut control {
            let mut buf = [0u8; 64];
            match c.read(&mut buf) {
                // The daemon dropped its `Running` (or an unfinished
                // spawn): no task runs without a handle.
                Ok(0) | Err(_) => {
                    control = None;
                    let _ = send_signal(child_raw, libc::SIGKILL);
                }
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    while pending.len() >= wire::CONTROL_LEN {
                        if pending[0] == b'S' {
                            let sig = i32::from_be_bytes([
                                pending[1], pending[2], pending[3], pending[4],
                            ]);
                            if (1..=64).contains(&sig) {
                                let _ = send_signal(child_raw, sig);
                            }
                        }
                        pending.drain(..wire::CONTROL_LEN);
                    }
                }
            }
        }
        if upd_ready && let Some(u) = &mut updates {
            // A workload that has ended gets no update: the channel closes
            // when we exit, which tells the daemon the task is not running.
            if let Ok(Some((_, st))) = waitpid(Some(child), WaitOptions::NOHANG) {
                return exit_of(st);
            }
            if !answer_update(u, task) {
                updates = None;
            }
        }
    }
}

/// Reads one update request from `u`, applies it and replies. Returns
/// whether the channel is still usable.
fn answer_update(u: &mut UnixStream, task: &mut Task) -> bool {
    let (reply, usable) = match wire::decode_update(u) {
        // The daemon closed the channel.
        Ok(None) => return false,
        Ok(Some(secrets)) => {
            let reply = match task.update(&secrets) {
                Ok(()) => Frame::Updated,
                Err(msg) => Frame::Failed(msg),
            };
            // Wipes our copies of the values.
            drop(secrets);
            (reply, true)
        }
        // A cut or malformed request: the stream cannot be trusted after it.
        Err(e) => (
            Frame::Failed(format!("reading secret update: {}", err_text(&e))),
            false,
        ),
    };
    u.write_all(&wire::encode_frame(&reply)).is_ok() && usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn secret(target: &str) -> HelperSecret {
        HelperSecret {
            target: target.into(),
            uid: 0,
            gid: 0,
            mode: 0o444,
            data: Zeroizing::new(b"x".to_vec()),
        }
    }

    #[test]
    fn classify_targets() {
        let s = [
            secret("a"),
            secret("dir/b"),
            secret("/run/secrets/c"),
            secret("/etc/d"),
            secret("./e"),
        ];
        let (rel, abs) = classify(&s).unwrap();
        let rel: Vec<_> = rel.iter().map(|(p, _)| p.clone()).collect();
        let abs: Vec<_> = abs.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(
            rel,
            vec![
                PathBuf::from("a"),
                PathBuf::from("dir/b"),
                PathBuf::from("c"),
                PathBuf::from("e")
            ]
        );
        assert_eq!(abs, vec![PathBuf::from("/etc/d")]);
    }

    #[test]
    fn classify_rejects_bad_targets() {
        for t in ["", "../x", "a/../../x", "/run/secrets", "/", "a\nb"] {
            assert!(classify(&[secret(t)]).is_err(), "{t:?}");
        }
        assert_eq!(
            classify(&[secret("a"), secret("/run/secrets/a")]).unwrap_err(),
            "duplicate secret target \"/run/secrets/a\""
        );
    }

    #[test]
    fn sizes_round_up_per_file() {
        assert_eq!(default_size([].into_iter()), 65536);
        assert_eq!(default_size([1, 4096, 4097].into_iter()), 65536 + 4 * 4096);
    }

    #[test]
    fn error_texts_look_like_go() {
        let e = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(err_text(&e), "no such file or directory");
        assert_eq!(errno_text(Errno::PERM), "operation not permitted");
    }
}
