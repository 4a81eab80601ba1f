//! The process executor of lockbox: runs a task of a service whose image is
//! the reserved name `host` as a plain host process that sees its secrets at
//! `/run/secrets/<target>` exactly as a Docker swarm container would
//! (read-only, in memory, with the requested uid/gid/mode), while the host
//! sees nothing of them.
//!
//! # How a task starts
//!
//! ```text
//! daemon (multi-threaded tokio)
//!   Launcher::spawn ──request──► launcher thread (one dedicated, long-lived std thread)
//!                                 └─ fork+exec `<helper_exe> __exec-helper <spec> <status> <update>`
//!   spec pipe  ──────────────────────► helper: reads the spec and the secret values,
//!                                       then signal requests (the control channel)
//!   status pipe ◄──────────────────────        reports Started / Failed / Exited
//!   update socket ◄────────────────────►       live secret updates and their replies
//!   stdout/stderr pipes ◄──────────────────────────── workload (the task's logs)
//! ```
//!
//! (The three numbers are descriptor numbers: no value is ever on a command
//! line.)
//!
//! The helper is a fresh, single-threaded process (the lockbox binary's
//! `main()` calls [`helper_main`] before anything else). It arms
//! `PR_SET_PDEATHSIG(SIGKILL)` (tied to the launcher thread, which lives as
//! long as the [`Launcher`]), unshares a mount and a pid namespace, makes `/`
//! recursively private, mounts a tmpfs on `/run/secrets` (`nosuid,nodev,
//! noexec,mode=0755,size=…`, plus `noswap` when the kernel knows it), writes
//! the secret files with their uid/gid/mode, remounts it read-only, wipes its
//! copies of the values and forks the workload, which becomes pid 1 of the
//! new pid namespace. The workload mounts a fresh `/proc`, drops privileges
//! (supplementary groups, gid, uid), re-arms `PR_SET_PDEATHSIG`, changes
//! directory, resolves `argv[0]` through `PATH` and `execve`s with exactly
//! the requested environment. The helper relays signals to the workload,
//! reaps it and reports its exit through the status pipe.
//!
//! Secret values travel only through the spec pipe, are held in zeroizing
//! buffers and are written only into the tmpfs. They never appear in argv,
//! the environment, a log line or an error message. The helper is not
//! dumpable (no core dumps, no ptrace by other users).
//!
//! # Live secret update
//!
//! [`Running::update_secrets`] replaces secret files of a running task in
//! place: the workload keeps running and finds the new value at the same
//! path. The helper is the one to do it: it stays alive for the whole task
//! as the parent of the workload, single-threaded, in the task's mount
//! namespace and with the privileges to remount. The daemon sends it the
//! request over a socket pair made for this at spawn (not the spec pipe,
//! whose small signal messages must stay atomic while a large request is
//! written): `b'U'`, the count, each secret's metadata and its value bytes
//! straight from the [`lockbox_crypto::SecretBytes`], exactly as in the
//! spec. The helper reads the values into zeroizing buffers of their final
//! size, answers with one frame (done, or an error naming targets only) and
//! wipes them. The exchange runs as its own tokio task, so a caller that
//! stops waiting never leaves half a request on the socket.
//!
//! The helper then, between two polls of its supervision loop:
//!
//! 1. normalizes every target as at the start and checks that each is one
//!    of the task's (and that none repeats): otherwise nothing changes;
//! 2. remounts `/run/secrets` read-write (larger, if the new files do not
//!    fit beside the old ones);
//! 3. writes every new file in full, with its uid, gid and mode, before
//!    any old one is touched (a failure here removes them all again):
//!    * relative target: `.<name>.lbx-tmp` in the file's own directory;
//!    * absolute target: a fresh tmpfs (size-capped, `noswap`) mounted on a
//!      hidden directory of `/run/secrets`, then made read-only; a detached,
//!      read-only clone of each file's mount (`open_tree(OPEN_TREE_CLONE)`)
//!      is kept and the staging mount and directory are removed again;
//! 4. swaps each file in:
//!    * relative: `rename(2)` over the old file, atomic on tmpfs;
//!    * absolute: a bind mount pins its file, so a rename beside it would
//!      never be seen. The clone is mounted *beneath* the old mount on the
//!      target (`move_mount(MOVE_MOUNT_BENEATH)`, Linux 6.5) and the old
//!      mount is then detached: a lookup finds the old file or the new one,
//!      never the placeholder or host file underneath. Older kernels mount
//!      the clone on top instead (as atomic; the covered old mount stays
//!      until the task ends);
//! 5. makes `/run/secrets` read-only again: the mount first (always
//!    possible unless someone holds a file of it open for writing), then
//!    the superblock, which the kernel refuses while a reader still holds
//!    a replaced file open; the mount's flag alone keeps the workload out
//!    until the next update retries.
//!
//! A reader that opens the file sees the old or the new content in full,
//! never a mix, an empty or a missing file; one that holds the old file
//! open keeps reading the old value. `/run/secrets` is writable only
//! during step 2–5 (microseconds to milliseconds), and only by root: it
//! stays `0755 root`. The temporary names may show in a listing during
//! that time. The absolute targets' mounts are never writable.
//!
//! Why this way: the helper already is the task's supervisor in its
//! namespace, so no second process has to join the namespace (`setns`
//! from a short-lived helper would need the workload's pid, which can be
//! reused, and a second channel for the values), and no descriptor of a
//! writable mount has to leave the task's helper. A variant that never
//! makes `/run/secrets` writable (writes through a detached, writable
//! clone of the tmpfs held by the helper) would hide the window, but a
//! growing tmpfs would then need `fspick`, and a root workload can remount
//! its own namespace's mounts anyway: read-only protects against mistakes,
//! not against root.
//!
//! Errors: [`ExecError::NotRunning`] (`task is not running`) once the task
//! has ended (the helper closes the socket when it exits),
//! [`ExecError::Update`] otherwise. A workload that made its own mount
//! namespace (a nested container) does not see updates.
//!
//! # Lifetime
//!
//! The task ends, and its namespaces and tmpfs with it, when the workload
//! (pid 1 of its namespace) exits, when its [`Running`] is dropped (the
//! helper sees the control channel close and kills it), when the helper is
//! killed (`PR_SET_PDEATHSIG` of the workload), and when the daemon or the
//! [`Launcher`] goes away (`PR_SET_PDEATHSIG` of the helper). The workload
//! inherits only stdin (`/dev/null`), stdout and stderr.
//!
//! # What stays on the host
//!
//! * `/run/secrets`, created as an empty root-owned 0755 directory if it was
//!   missing (the task's tmpfs is mounted over it in its own namespace).
//! * For absolute targets only: `<state_dir>/placeholders/` (0700) with a
//!   `.lock` file, and placeholders while the task runs (see below).
//!
//! Never secret bytes.
//!
//! # Absolute targets
//!
//! A target outside `/run/secrets` (e.g. `/etc/app/key.pem`) is written to a
//! second, detached tmpfs and bind-mounted (read-only, `nosuid,nodev,noexec`)
//! onto the target path inside the task's private mount namespace. A bind
//! mount needs an existing file to mount on: when the target exists on the
//! host, the host file is merely covered in the task's namespace (the host
//! still sees its own file). When it does not exist, the helper creates an
//! **empty placeholder file** (mode 0000, root-owned) and any missing parent
//! directories (mode 0755) on the host, records them under
//! `<state_dir>/placeholders/` *before* creating them, and removes them when
//! the task ends. If the daemon (and so the helper) is killed, the records
//! stay and [`cleanup_stale`] removes the placeholders at the next start.
//! Placeholders never contain secret bytes.
//!
//! # Limits
//!
//! * Needs root (CAP_SYS_ADMIN) for the namespaces and mounts.
//! * The workload is pid 1 of its namespace: like a container without
//!   `--init`, it ignores signals it has no handler for (except SIGKILL), so
//!   [`Running::stop`] falls back to SIGKILL after the grace period.
//! * The workload shares the host's filesystem, network, IPC and user
//!   namespace; only the mount table, the pid space (and the hostname, when
//!   one is set) are private.

// This is the only crate of the workspace allowed to use `unsafe`: creating
// namespaces (`unshare`), `fork`, `execve`, signal masks and signalfd, and
// adopting file descriptors passed across `exec` have no safe API. Every
// unsafe block carries a `// SAFETY:` comment.
#![allow(unsafe_code)]

mod helper;
mod launcher;
mod lookpath;
mod placeholder;
mod user;
mod wire;

use std::fmt;
use std::path::PathBuf;

pub use helper::helper_main;
pub use launcher::{Launcher, Running, Signaller};
pub use placeholder::cleanup_stale;

/// The `argv[1]` marker that makes the lockbox binary run [`helper_main`].
pub const HELPER_ARG: &str = "__exec-helper";

/// Where secrets with a relative target are placed.
pub const SECRETS_DIR: &str = "/run/secrets";

/// The `PATH` used to resolve `argv[0]` when the task's environment has none
/// (the same default as Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state directory used by [`Launcher::new`] for placeholder records.
/// Give the same directory to [`cleanup_stale`].
pub const DEFAULT_STATE_DIR: &str = "/run/lockbox-exec";

/// One secret file to place in the task's namespace.
#[derive(Clone, Debug)]
pub struct SecretFile {
    /// Relative (placed under `/run/secrets/`, may contain subdirectories
    /// like `relative/secret`) or absolute (e.g. `/etc/secret`). An absolute
    /// path under `/run/secrets/` is treated as the relative path below it.
    pub target: PathBuf,
    /// The value (zeroized on drop; `Debug` is redacted).
    pub data: lockbox_crypto::SecretBytes,
    pub uid: u32,
    pub gid: u32,
    /// Permission bits (`0o444` is Docker's default); only `0o7777` is used.
    pub mode: u32,
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct ProcessSpec {
    /// For naming and logging only.
    pub task_id: String,
    /// Command and arguments. `argv[0]` is resolved through the `PATH` of
    /// `env` ([`DEFAULT_PATH`] when `env` has none) unless it contains a `/`;
    /// the process receives `argv` unchanged.
    pub argv: Vec<String>,
    /// Exactly the environment of the process (`K=V`); nothing is inherited
    /// from the daemon.
    pub env: Vec<String>,
    /// Working directory (default `/`). It must exist.
    pub dir: Option<PathBuf>,
    /// `uid`, `name`, `uid:gid`, `name:group` (and mixes), resolved with the
    /// host's `/etc/passwd` and `/etc/group` like runc does. Default root.
    /// Without an explicit group the user's supplementary groups from
    /// `/etc/group` are set.
    pub user: Option<String>,
    /// When set, the task also gets a private UTS namespace with this
    /// hostname.
    pub hostname: Option<String>,
    pub secrets: Vec<SecretFile>,
    /// Size of the `/run/secrets` tmpfs in bytes; default: the relative
    /// secrets' sizes, each rounded up to whole pages, plus 64 KiB.
    pub tmpfs_size: Option<u64>,
}

/// How the workload ended. Exactly one of the fields is set, as with
/// [`std::process::ExitStatus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, when the workload exited.
    pub code: Option<i32>,
    /// The signal that killed the workload.
    pub signal: Option<i32>,
}

impl Exit {
    /// Docker's exit code: the exit code, or 128 + the signal number.
    pub fn docker_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(sig)) => 128 + sig,
            (None, None) => -1,
        }
    }

    /// Whether the workload exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(sig)) => write!(f, "killed by signal {sig}"),
            (None, None) => f.write_str("unknown exit"),
        }
    }
}

/// Errors of the executor. No message ever contains secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The task could not be started. The field is the bare reason in
    /// Docker's words (e.g. `exec: "foo": executable file not found in
    /// $PATH`, `unable to find user nobodyx: no matching entries in passwd
    /// file`); `Display` prefixes it with `starting container failed: ` as a
    /// swarm task status does.
    #[error("starting container failed: {0}")]
    Setup(String),
    /// An I/O error talking to the helper process.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// [`Running::signal`] was given a number that is not a signal.
    #[error("invalid signal {0}")]
    InvalidSignal(i32),
    /// [`Running::update_secrets`] on a task that has ended.
    #[error("task is not running")]
    NotRunning,
    /// [`Running::update_secrets`] failed; the field is the reason (e.g.
    /// `secret target "x" is not one of the task's`), never a value.
    #[error("updating the task's secrets: {0}")]
    Update(String),
}
