//! The per-task secrets tmpfs on the host.
//!
//! ```text
//! /run/lockbox/docker/                 0700 root   (DockerConfig::secrets_root)
//!   <instance>/                        0700 root   one per daemon (its data directory)
//!     <task id>/                       tmpfs, ro after filling: nosuid,nodev,noexec,noswap
//!       secrets/                       0755: targets under /run/secrets, by name
//!         db_password  sub/dir/x       (subdirectories 0755), each its uid/gid/mode
//!       files/                         0700: every other (absolute) target
//!         0  1 ...                     one file per secret reference, its uid/gid/mode
//!       new/                           0700: where live updates are written first
//! ```
//!
//! `secrets/` is bind-mounted read-only, as a directory, at `/run/secrets`; each file of
//! `files/` is bind-mounted read-only at its target. The tmpfs is never swapped (`noswap`,
//! when the kernel knows it), nothing is written before the directory is checked to be a
//! tmpfs, and the directory is unmounted and removed when the task ends, so a secret's bytes
//! are never on a disk. Only root can reach the directory.
//!
//! # Live updates
//!
//! [`SecretDir::update`] replaces files while the container runs: the tmpfs is remounted
//! read-write (the container's bind mounts stay read-only: that flag is theirs), each new
//! value is written to a file in `new/`, given its owner and mode, and renamed over the old
//! file; then the tmpfs is made read-only again. A rename is atomic, and the container sees it
//! through its mount of the `secrets/` *directory*: a reader opens the old file or the new one,
//! never a mix, and a file it has open keeps the old value. A bind mount of a single file
//! cannot show that: it pins the file (the inode) it was made of, and a rename in the
//! directory on the host does not reach it. So a target outside `/run/secrets`, bind-mounted
//! alone, is rewritten in place (truncated, then written): a reader that reads at that moment
//! can see it empty or partly written. Targets under `/run/secrets`, the default, do not
//! have that problem. While a reader still holds a replaced file open, the kernel refuses to
//! make the tmpfs read-only again (EBUSY: an unlinked file is still open); then the host's
//! mount of it is made read-only instead, so that no mount of it can be written, and the next
//! update (which remounts it read-write first) tries again.
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use lockbox_core::SecretMount;
use rustix::fs::{Gid, Mode, Uid};
use rustix::mount::{MountFlags, UnmountFlags};

/// `TMPFS_MAGIC` from `linux/magic.h`.
const TMPFS_MAGIC: i128 = 0x0102_1994;

/// Where secrets with a relative target appear in the container.
pub(crate) const SECRETS_DIR: &str = "/run/secrets";

/// A bind mount of a task's secrets: the directory of those under `/run/secrets` or one file
/// with another target; its place on the host and in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SecretFile {
    pub(crate) host: PathBuf,
    pub(crate) target: String,
}

/// Where a secret target's file is, for live updates.
#[derive(Debug, Clone)]
struct Entry {
    /// The container path.
    target: String,
    /// The file on the host.
    host: PathBuf,
    /// Seen by the container through the directory mount (replaceable by a rename).
    in_dir: bool,
}

/// A task's secrets tmpfs. [`SecretDir::remove`] unmounts and removes it; dropping it without
/// doing so leaves it for [`cleanup_stale`] (it is never unmounted from `Drop`, which may run
/// while the container still uses it).
#[derive(Debug)]
pub(crate) struct SecretDir {
    dir: PathBuf,
    /// The bind mounts for the container.
    pub(crate) files: Vec<SecretFile>,
    entries: Vec<Entry>,
    removed: bool,
}

/// The container path of a secret `target`: absolute targets as they are, others under
/// `/run/secrets`, both cleaned lexically (`../secret` is `/run/secret`, as dockerd gives it).
pub(crate) fn container_target(target: &str) -> String {
    let joined = if target.starts_with('/') {
        PathBuf::from(target)
    } else {
        Path::new(SECRETS_DIR).join(target)
    };
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in joined.components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let mut out = String::new();
    for p in parts {
        out.push('/');
        out.push_str(&p.to_string_lossy());
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Creates `dir` (and parents) and makes sure it is a real directory owned by us, mode 0700.
pub(crate) fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let meta = fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(invalid(format!("{} is not a directory", dir.display())));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(invalid(format!(
            "{} is owned by uid {}, not {me}",
            dir.display(),
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn is_tmpfs(path: &Path) -> io::Result<bool> {
    let st = rustix::fs::statfs(path)?;
    Ok(i128::from(st.f_type) == TMPFS_MAGIC)
}

/// Mounts a fresh tmpfs on `dir`: nosuid, nodev, noexec and, when the kernel knows it, noswap.
/// No size or mode option, so that the container's `mount` shows what swarm's shows; the root
/// directory is made 0700 by `chmod` instead.
fn mount_tmpfs(dir: &Path) -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    match rustix::mount::mount("tmpfs", dir, "tmpfs", flags, c"noswap") {
        Ok(()) => {}
        Err(rustix::io::Errno::INVAL) => {
            tracing::warn!(
                "this kernel's tmpfs has no `noswap` option (Linux < 6.4): secrets may be swapped out"
            );
            rustix::mount::mount("tmpfs", dir, "tmpfs", flags, None)?;
        }
        Err(e) => return Err(e.into()),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Remounts `dir` read-only, retrying on EBUSY (moby#48783).
fn remount_ro(dir: &Path) -> io::Result<()> {
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let mut tries = 0;
    loop {
        match rustix::mount::mount_remount(dir, flags, c"") {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Makes the mount at `dir` read-only without the superblock (which cannot be while a file
/// unlinked from it is still open).
fn remount_bind_ro(dir: &Path) -> io::Result<()> {
    let flags = MountFlags::BIND
        | MountFlags::RDONLY
        | MountFlags::NOSUID
        | MountFlags::NODEV
        | MountFlags::NOEXEC;
    rustix::mount::mount_remount(dir, flags, c"")?;
    Ok(())
}

/// Remounts `dir` (the superblock and the mount) read-write for a live update.
fn remount_rw(dir: &Path) -> io::Result<()> {
    let flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount_remount(dir, flags, c"")?;
    Ok(())
}

fn check_owner(m: &SecretMount) -> io::Result<()> {
    if m.uid == u32::MAX || m.gid == u32::MAX {
        return Err(invalid(format!(
            "invalid owner {}:{} for secret {}",
            m.uid, m.gid, m.target
        )));
    }
    Ok(())
}

/// Writes a new file at `path` (which must not exist) with the secret's value, owner and mode.
fn write_secret(path: &Path, m: &SecretMount) -> io::Result<()> {
    check_owner(m)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(m.data.expose())?;
    rustix::fs::fchown(&f, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))?;
    rustix::fs::fchmod(&f, Mode::from_raw_mode(m.mode & 0o7777))?;
    Ok(())
}

/// Rewrites the existing file at `path` in place (its inode is bind-mounted alone): owner and
/// mode first, so that the new value is never readable by whom the new mode excludes; then
/// truncated and written (not atomic: see the module docs).
fn rewrite_secret(path: &Path, m: &SecretMount) -> io::Result<()> {
    check_owner(m)?;
    let mut f = OpenOptions::new().write(true).truncate(false).open(path)?;
    rustix::fs::fchown(&f, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))?;
    rustix::fs::fchmod(&f, Mode::from_raw_mode(m.mode & 0o7777))?;
    f.set_len(0)?;
    f.write_all(m.data.expose())?;
    Ok(())
}

/// The path of `target` (a container path under /run/secrets) inside `secrets/`, when it is
/// one.
fn under_secrets_dir(target: &str) -> Option<&str> {
    target
        .strip_prefix(SECRETS_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .filter(|r| !r.is_empty())
}

/// Creates the directories between `root` and `file` (0755, root).
fn make_parents(root: &Path, file: &Path) -> io::Result<()> {
    let Some(parent) = file.parent() else {
        return Ok(());
    };
    let mut at = root.to_path_buf();
    for c in parent
        .strip_prefix(root)
        .map_err(io::Error::other)?
        .components()
    {
        at.push(c);
        match fs::create_dir(&at) {
            Ok(()) => fs::set_permissions(&at, fs::Permissions::from_mode(0o755))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(&at)?.is_dir() {
                    return Err(invalid(format!(
                        "secret target {} is both a file and a directory",
                        at.display()
                    )));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Unmounts whatever is mounted on `dir` (lazily if busy) and removes the directory.
pub(crate) fn unmount_and_remove(dir: &Path) -> io::Result<()> {
    for _ in 0..8 {
        match rustix::mount::unmount(dir, UnmountFlags::NOFOLLOW) {
            Ok(()) => continue, // stacked mounts: unmount until nothing is left
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => break,
            Err(rustix::io::Errno::BUSY) => {
                rustix::mount::unmount(dir, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl SecretDir {
    /// Mounts the task's tmpfs under `base` and writes its secrets, then makes it read-only.
    /// On error nothing is left behind.
    pub(crate) fn create(
        base: &Path,
        task_id: &str,
        secrets: &[SecretMount],
    ) -> io::Result<SecretDir> {
        if !valid_task_id(task_id) {
            return Err(invalid(format!("invalid task ID {task_id:?}")));
        }
        let dir = base.join(task_id);
        let mut sd = SecretDir {
            dir: dir.clone(),
            files: Vec::new(),
            entries: Vec::new(),
            removed: false,
        };
        if secrets.is_empty() {
            sd.removed = true;
            return Ok(sd);
        }
        if fs::symlink_metadata(&dir).is_ok() {
            // A leftover of an earlier attempt of this task.
            unmount_and_remove(&dir)?;
        }
        fs::create_dir(&dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
        let filled = (|| -> io::Result<(Vec<SecretFile>, Vec<Entry>)> {
            mount_tmpfs(&dir)?;
            if !is_tmpfs(&dir)? {
                return Err(io::Error::other(format!(
                    "{} is not a tmpfs after mounting one: refusing to write secrets",
                    dir.display()
                )));
            }
            let in_dir = dir.join("secrets");
            let alone = dir.join("files");
            for (d, mode) in [(&in_dir, 0o755), (&alone, 0o700), (&dir.join("new"), 0o700)] {
                fs::create_dir(d)?;
                fs::set_permissions(d, fs::Permissions::from_mode(mode))?;
            }
            let mut files = Vec::new();
            let mut entries = Vec::new();
            for (i, m) in secrets.iter().enumerate() {
                let target = container_target(&m.target);
                let (host, inside) = match under_secrets_dir(&target) {
                    Some(rel) => {
                        let host = in_dir.join(rel);
                        make_parents(&in_dir, &host)?;
                        (host, true)
                    }
                    None => (alone.join(i.to_string()), false),
                };
                write_secret(&host, m).map_err(|e| {
                    if e.kind() == io::ErrorKind::AlreadyExists {
                        invalid(format!("two secrets have the target {target}"))
                    } else {
                        e
                    }
                })?;
                if !inside {
                    files.push(SecretFile {
                        host: host.clone(),
                        target: target.clone(),
                    });
                }
                entries.push(Entry {
                    target,
                    host,
                    in_dir: inside,
                });
            }
            if entries.iter().any(|e| e.in_dir) {
                files.insert(
                    0,
                    SecretFile {
                        host: in_dir,
                        target: SECRETS_DIR.to_owned(),
                    },
                );
            }
            remount_ro(&dir)?;
            Ok((files, entries))
        })();
        match filled {
            Ok((files, entries)) => {
                sd.files = files;
                sd.entries = entries;
                Ok(sd)
            }
            Err(e) => {
                sd.removed = true;
                if let Err(e2) = unmount_and_remove(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e2, "could not remove a secrets tmpfs");
                }
                Err(e)
            }
        }
    }

    /// Replaces the value, owner and mode of existing secret files (live update; see the
    /// module docs): each target under `/run/secrets` atomically, by a rename, any other in
    /// place. Every target must be one of the task's; nothing is changed otherwise.
    pub(crate) fn update(&mut self, secrets: &[SecretMount]) -> io::Result<()> {
        let mut plan: Vec<(&Entry, &SecretMount)> = Vec::with_capacity(secrets.len());
        for m in secrets {
            let target = container_target(&m.target);
            let entry = self
                .entries
                .iter()
                .find(|e| e.target == target)
                .filter(|_| !self.removed)
                .ok_or_else(|| invalid(format!("the task has no secret at {target}")))?;
            check_owner(m)?;
            plan.push((entry, m));
        }
        if plan.is_empty() {
            return Ok(());
        }
        remount_rw(&self.dir)?;
        let written = (|| -> io::Result<()> {
            if !is_tmpfs(&self.dir)? {
                return Err(io::Error::other(format!(
                    "{} is no longer a tmpfs: refusing to write secrets",
                    self.dir.display()
                )));
            }
            let staging = self.dir.join("new");
            for (i, (entry, m)) in plan.iter().enumerate() {
                if entry.in_dir {
                    let tmp = staging.join(i.to_string());
                    match fs::remove_file(&tmp) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                    write_secret(&tmp, m)?;
                    if let Err(e) = fs::rename(&tmp, &entry.host) {
                        let _ = fs::remove_file(&tmp);
                        return Err(e);
                    }
                } else {
                    rewrite_secret(&entry.host, m)?;
                }
            }
            Ok(())
        })();
        let ro = match remount_ro(&self.dir) {
            // A reader still holds a file the update replaced: the kernel keeps the tmpfs
            // writable until it is closed. Its mount on the host is made read-only instead, so
            // that, with the container's read-only bind mounts, no mount of it can be written.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error()) => {
                tracing::debug!(dir = %self.dir.display(), "secrets tmpfs busy (a replaced file is still open): its host mount is made read-only instead");
                remount_bind_ro(&self.dir)
            }
            other => other,
        };
        written?;
        ro
    }

    /// Unmounts the tmpfs and removes its directory. Call after the container is removed.
    pub(crate) fn remove(&mut self) -> io::Result<()> {
        if self.removed {
            return Ok(());
        }
        unmount_and_remove(&self.dir)?;
        self.removed = true;
        Ok(())
    }

    /// The tmpfs directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Decodes the octal escapes of `/proc/self/mountinfo` (`\040` for a space).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && b.len() >= i + 4
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points strictly below `base`, deepest first, from a mountinfo text.
pub(crate) fn mounts_below(mountinfo: &str, base: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(base) && p != base)
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    out.dedup();
    out
}

/// Unmounts every tmpfs a previous run left under `base` and removes their directories.
/// Returns how many directories were removed.
pub(crate) fn cleanup_stale(base: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    for m in mounts_below(&info, base) {
        if let Err(e) = rustix::mount::unmount(&m, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW) {
            tracing::warn!(path = %m.display(), error = %e, "could not unmount a stale secrets tmpfs");
        }
    }
    let entries = match fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            match unmount_and_remove(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not remove a stale secrets directory")
                }
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_like_dockerd() {
        assert_eq!(container_target("db_password"), "/run/secrets/db_password");
        assert_eq!(
            container_target("relative/secret"),
            "/run/secrets/relative/secret"
        );
        assert_eq!(container_target("/etc/secret"), "/etc/secret");
        assert_eq!(container_target("../secret"), "/run/secret");
        assert_eq!(container_target("/run/secrets/./a//b"), "/run/secrets/a/b");
    }

    #[test]
    fn mountinfo_parsing() {
        let info = "\
22 1 0:21 / /run rw,nosuid,nodev shared:5 - tmpfs tmpfs rw
30 22 0:40 / /run/lockbox/docker/abc/t1 ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,noswap
31 30 0:41 / /run/lockbox/docker/abc/t1/x ro shared:9 - tmpfs tmpfs ro
32 22 0:42 / /run/lockbox/docker/abc\\040d/t2 ro shared:9 - tmpfs tmpfs ro
33 22 0:43 / /run/lockbox/docker/abcd/t3 ro shared:9 - tmpfs tmpfs ro
";
        let base = Path::new("/run/lockbox/docker/abc");
        assert_eq!(
            mounts_below(info, base),
            vec![
                PathBuf::from("/run/lockbox/docker/abc/t1/x"),
                PathBuf::from("/run/lockbox/docker/abc/t1"),
            ]
        );
        assert_eq!(
            mounts_below(info, Path::new("/run/lockbox/docker/abc d")),
            vec![PathBuf::from("/run/lockbox/docker/abc d/t2")]
        );
    }

    #[test]
    fn task_ids() {
        assert!(valid_task_id("abc123"));
        assert!(!valid_task_id("../x"));
        assert!(!valid_task_id(""));
        assert!(!valid_task_id("a/b"));
    }

    /// Needs root (mount); skipped otherwise.
    #[test]
    fn tmpfs_roundtrip() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED tmpfs_roundtrip: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        ensure_private_dir(&base).unwrap();
        let secrets = vec![
            SecretMount {
                target: "a".into(),
                data: lockbox_crypto::SecretBytes::new(b"hunter2".to_vec()),
                uid: 1000,
                gid: 1001,
                mode: 0o400,
            },
            SecretMount {
                target: "/etc/b".into(),
                data: lockbox_crypto::SecretBytes::new(b"x".to_vec()),
                uid: 0,
                gid: 0,
                mode: 0o444,
            },
        ];
        let mut sd = match SecretDir::create(&base, "task1", &secrets) {
            Ok(sd) => sd,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                eprintln!("SKIPPED tmpfs_roundtrip: mount not permitted here");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        assert!(is_tmpfs(sd.dir()).unwrap());
        // The directory of /run/secrets, then the file of the absolute target.
        assert_eq!(sd.files.len(), 2);
        assert_eq!(sd.files[0].target, "/run/secrets");
        assert_eq!(sd.files[0].host, sd.dir().join("secrets"));
        assert_eq!(sd.files[1].target, "/etc/b");
        let m = fs::metadata(&sd.files[0].host).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o755));
        let a = sd.files[0].host.join("a");
        let m = fs::metadata(&a).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o400));
        assert_eq!(fs::read(&a).unwrap(), b"hunter2");
        assert_eq!(fs::read(&sd.files[1].host).unwrap(), b"x");
        // Read-only now.
        assert!(fs::write(sd.dir().join("new"), b"x").is_err());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.contains(&*sd.dir().to_string_lossy()))
            .unwrap()
            .to_owned();
        assert!(line.contains("ro,nosuid,nodev,noexec"), "{line}");
        let dir = sd.dir().to_path_buf();
        sd.remove().unwrap();
        assert!(!dir.exists());

        // A stale one is found and removed.
        let sd2 = SecretDir::create(&base, "task2", &secrets).unwrap();
        let dir2 = sd2.dir().to_path_buf();
        drop(sd2);
        assert!(dir2.exists());
        assert_eq!(cleanup_stale(&base).unwrap(), 1);
        assert!(!dir2.exists());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!info.contains(&*base.to_string_lossy()));
    }

    fn mount(target: &str, value: &[u8], uid: u32, mode: u32) -> SecretMount {
        SecretMount {
            target: target.into(),
            data: lockbox_crypto::SecretBytes::new(value.to_vec()),
            uid,
            gid: uid,
            mode,
        }
    }

    /// Needs root (mount); skipped otherwise.
    #[test]
    fn tmpfs_layout_and_live_update() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED tmpfs_layout_and_live_update: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("base");
        ensure_private_dir(&base).unwrap();
        let secrets = vec![
            mount("a", b"old-a", 0, 0o444),
            mount("sub/dir/x", b"old-x", 1000, 0o400),
            mount("/etc/app/key", b"old-key", 0, 0o444),
        ];
        let mut sd = match SecretDir::create(&base, "task3", &secrets) {
            Ok(sd) => sd,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {
                eprintln!("SKIPPED tmpfs_layout_and_live_update: mount not permitted here");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let inside = sd.dir().join("secrets");
        let sub = inside.join("sub/dir");
        assert_eq!(fs::metadata(&sub).unwrap().mode() & 0o7777, 0o755);
        let a_before = fs::metadata(inside.join("a")).unwrap().ino();
        // A reader that opened the old file before the update keeps the old value.
        let mut held = fs::File::open(inside.join("a")).unwrap();
        let held_x = fs::File::open(sub.join("x")).unwrap();

        sd.update(&[
            mount("a", b"new value of a", 5, 0o440),
            mount("/run/secrets/sub/dir/x", b"new-x", 1000, 0o400),
            mount("/etc/app/key", b"k2", 7, 0o400),
        ])
        .unwrap();
        let m = fs::metadata(inside.join("a")).unwrap();
        assert_ne!(m.ino(), a_before, "replaced by a rename");
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (5, 5, 0o440));
        assert_eq!(fs::read(inside.join("a")).unwrap(), b"new value of a");
        assert_eq!(fs::read(sub.join("x")).unwrap(), b"new-x");
        let mut old = String::new();
        std::io::Read::read_to_string(&mut held, &mut old).unwrap();
        assert_eq!(old, "old-a");
        // While a replaced file is open the superblock stays writable, but the host mount is
        // read-only; once closed, a further update makes the whole tmpfs read-only again.
        assert!(fs::write(sd.dir().join("y"), b"x").is_err());
        drop((held, held_x));
        sd.update(&[mount("sub/dir/x", b"newer-x", 1000, 0o400)])
            .unwrap();
        assert_eq!(fs::read(sub.join("x")).unwrap(), b"newer-x");
        // The absolute target's file, bind-mounted alone, keeps its inode.
        let key = &sd.files[1].host;
        let m = fs::metadata(key).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (7, 7, 0o400));
        assert_eq!(fs::read(key).unwrap(), b"k2");
        // Nothing left in the staging directory; read-only again.
        assert_eq!(fs::read_dir(sd.dir().join("new")).unwrap().count(), 0);
        assert!(fs::write(sd.dir().join("y"), b"x").is_err());
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let line = info
            .lines()
            .find(|l| l.contains(&*sd.dir().to_string_lossy()))
            .unwrap()
            .to_owned();
        assert!(line.contains(" ro,nosuid,nodev,noexec"), "{line}");

        // A target the task does not have: an error, and nothing changed.
        let err = sd
            .update(&[
                mount("a", b"zzz", 0, 0o444),
                mount("nope", b"zzz", 0, 0o444),
            ])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the task has no secret at /run/secrets/nope"
        );
        assert_eq!(fs::read(inside.join("a")).unwrap(), b"new value of a");

        // Two secrets at one target, or a file where a directory is needed: refused.
        assert!(
            SecretDir::create(
                &base,
                "task4",
                &[
                    mount("a", b"1", 0, 0o444),
                    mount("/run/secrets/a", b"2", 0, 0o444)
                ]
            )
            .is_err()
        );
        assert!(
            SecretDir::create(
                &base,
                "task5",
                &[mount("a", b"1", 0, 0o444), mount("a/b", b"2", 0, 0o444)]
            )
            .is_err()
        );
        assert!(!base.join("task4").exists() && !base.join("task5").exists());
        sd.remove().unwrap();
    }
}
