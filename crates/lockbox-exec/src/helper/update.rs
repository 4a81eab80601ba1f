//! The helper's side of a live secret update (see "Live secret update" in
//! the crate docs). Runs in the helper process, which is in the task's
//! mount namespace, between two polls of its supervision loop.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::CWD;
use rustix::io::Errno;
use rustix::mount::{
    MountFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags, mount_remount, move_mount, open_tree,
    unmount,
};

use super::{
    PAGE, Task, classify, create_new, default_size, errno_text, fill, mount_tmpfs, remount_ro,
    secret_error, write_secret,
};
use crate::SECRETS_DIR;
use crate::wire::HelperSecret;

/// How many names are tried for a temporary file or the staging directory.
const NAME_TRIES: u32 = 64;

/// Flags of `/run/secrets` besides read-only.
fn base_flags() -> MountFlags {
    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
}

impl Task {
    /// Replaces the files of `secrets`, each a target this task already
    /// has. Every target is checked before anything changes; then every new
    /// file is written in full (beside its old one, or in a staging tmpfs
    /// for absolute targets) before the first one replaces its old one.
    pub(super) fn update(&mut self, secrets: &[HelperSecret]) -> Result<(), String> {
        let (rel, abs) = classify(secrets)?;
        for (path, s) in &rel {
            if !self.rel_targets.contains(path) {
                return Err(unknown(&s.target));
            }
        }
        for (path, s) in &abs {
            if !self.abs_targets.contains(path) {
                return Err(unknown(&s.target));
            }
        }
        if rel.is_empty() && abs.is_empty() {
            return Ok(());
        }
        let grow = grown_size(rel.iter().map(|(_, s)| s.data.len()))?;
        open_window(grow)?;
        let res = self.replace(&rel, &abs);
        let closed = close_window();
        res.and(closed)
    }

    /// With `/run/secrets` writable: stage every file, then swap them in.
    fn replace(
        &mut self,
        rel: &[(PathBuf, &HelperSecret)],
        abs: &[(PathBuf, &HelperSecret)],
    ) -> Result<(), String> {
        let mut staged: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(rel.len());
        let mut stage = || -> Result<Vec<OwnedFd>, String> {
            for (path, s) in rel {
                staged.push(self.stage_relative(path, s)?);
            }
            stage_absolute(abs)
        };
        let clones = match stage() {
            Ok(c) => c,
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = fs::remove_file(tmp);
                }
                return Err(e);
            }
        };
        // Each step below replaces one file atomically; a failure (which
        // nothing short of a workload meddling as root should cause) does
        // not stop the others.
        let mut first_err = None;
        for ((tmp, dest), (_, s)) in staged.iter().zip(rel) {
            if let Err(e) = fs::rename(tmp, dest) {
                let _ = fs::remove_file(tmp);
                first_err.get_or_insert_with(|| secret_error(&s.target, &e));
            }
        }
        for ((target, _), clone) in abs.iter().zip(clones) {
            if let Err(e) = self.swap_mount(target, clone) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Writes the new file of the relative target `path` under a hidden
    /// name in its directory; returns that name and the file's own.
    fn stage_relative(&self, path: &Path, s: &HelperSecret) -> Result<(PathBuf, PathBuf), String> {
        let base = Path::new(SECRETS_DIR);
        let dest = base.join(path);
        let dir = dest.parent().unwrap_or(base);
        let name = dest.file_name().unwrap_or_default();
        for i in 0..NAME_TRIES {
            let mut tmp_name = OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(".lbx-tmp");
            if i > 0 {
                tmp_name.push(format!(".{i}"));
            }
            let tmp = dir.join(&tmp_name);
            // Never a name the task's own secrets use.
            if tmp
                .strip_prefix(base)
                .is_ok_and(|r| self.rel_targets.contains(r))
            {
                continue;
            }
            let mut f = match create_new(&tmp) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(secret_error(&s.target, &e)),
            };
            if let Err(e) = fill(&mut f, s) {
                drop(f);
                let _ = fs::remove_file(&tmp);
                return Err(secret_error(&s.target, &e));
            }
            return Ok((tmp, dest));
        }
        Err(format!(
            "writing secret {}: no free temporary name",
            s.target.display()
        ))
    }

    /// Puts the new file (the root of the detached mount `clone`) on
    /// `target` in place of the old one: mounted beneath the old mount,
    /// which is then detached, so a lookup of `target` finds the old file
    /// or the new one and never the file underneath.
    fn swap_mount(&mut self, target: &Path, clone: OwnedFd) -> Result<(), String> {
        let fail = |e: Errno| format!("mounting secret on {}: {}", target.display(), errno_text(e));
        let beneath = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_BENEATH;
        match move_mount(&clone, "", CWD, target, beneath) {
            Ok(()) => unmount(target, UnmountFlags::DETACH).map_err(|e| {
                // Both stay: cleanup must unmount two.
                self.binds.push(target.to_path_buf());
                format!(
                    "unmounting the old secret on {}: {}",
                    target.display(),
                    errno_text(e)
                )
            }),
            // Before Linux 6.5 (no MOVE_MOUNT_BENEATH): on top of the old
            // one, which stays covered until the task ends.
            Err(Errno::INVAL) => {
                move_mount(
                    &clone,
                    "",
                    CWD,
                    target,
                    MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
                )
                .map_err(fail)?;
                self.binds.push(target.to_path_buf());
                Ok(())
            }
            Err(e) => Err(fail(e)),
        }
    }
}

fn unknown(target: &Path) -> String {
    format!(
        "secret target \"{}\" is not one of the task's",
        target.display()
    )
}

/// The new size of the `/run/secrets` tmpfs if files of `lens` bytes do not
/// fit beside the current ones (old and new exist together until the
/// renames), else `None`.
fn grown_size(lens: impl Iterator<Item = usize>) -> Result<Option<u64>, String> {
    let need: u64 = lens.map(|l| (l as u64).div_ceil(PAGE) * PAGE).sum();
    if need == 0 {
        return Ok(None);
    }
    let st = rustix::fs::statvfs(SECRETS_DIR)
        .map_err(|e| format!("statfs {SECRETS_DIR}: {}", errno_text(e)))?;
    let unit = st.f_frsize.max(1);
    let (total, free) = (st.f_blocks * unit, st.f_bfree * unit);
    Ok((need > free).then(|| total - free + need + 64 * 1024))
}

/// Makes `/run/secrets` writable (the superblock and the mount), larger
/// when `size` says so.
fn open_window(size: Option<u64>) -> Result<(), String> {
    let data =
        CString::new(size.map(|s| format!("size={s}")).unwrap_or_default()).unwrap_or_default();
    mount_remount(SECRETS_DIR, base_flags(), data.as_c_str())
        .map_err(|e| format!("remounting {SECRETS_DIR} read-write: {}", errno_text(e)))
}

/// Makes `/run/secrets` read-only again: first the mount the workload sees
/// (refused only while someone holds a file of it open for writing, which
/// no one but a root workload can), then, as at the start, the superblock.
/// The kernel refuses the latter while a reader still holds a replaced file
/// open; the mount's own flag keeps the workload out meanwhile, and the
/// next update tries again.
fn close_window() -> Result<(), String> {
    let ro = base_flags() | MountFlags::RDONLY;
    let mut tries = 0;
    loop {
        match mount_remount(SECRETS_DIR, ro | MountFlags::BIND, "") {
            Ok(()) => break,
            Err(Errno::BUSY) if tries < 100 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(format!(
                    "remounting {SECRETS_DIR} read-only: {}",
                    errno_text(e)
                ));
            }
        }
    }
    let _ = mount_remount(SECRETS_DIR, ro, "");
    Ok(())
}

/// Writes the new files of absolute targets into a fresh tmpfs, mounted
/// (read-only once written) on a hidden directory of `/run/secrets` only
/// for as long as it takes to clone one detached, read-only mount of each
/// file. Returns the clones, in the order of `abs`; the staging mount and
/// its directory are gone again, the clones keep the tmpfs alive.
fn stage_absolute(abs: &[(PathBuf, &HelperSecret)]) -> Result<Vec<OwnedFd>, String> {
    if abs.is_empty() {
        return Ok(Vec::new());
    }
    let dir = staging_dir()?;
    let dir_str = dir.to_string_lossy().into_owned();
    let mut mounted = false;
    let mut stage = || -> Result<Vec<OwnedFd>, String> {
        mount_tmpfs(
            &dir_str,
            default_size(abs.iter().map(|(_, s)| s.data.len())),
        )?;
        mounted = true;
        for (i, (target, s)) in abs.iter().enumerate() {
            write_secret(&dir, Path::new(&i.to_string()), s, target)?;
        }
        // The clones inherit the mount's flags: ro, nosuid, nodev, noexec.
        remount_ro(&dir_str)?;
        (0..abs.len())
            .map(|i| {
                open_tree(
                    CWD,
                    dir.join(i.to_string()),
                    OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
                )
                .map_err(|e| {
                    format!(
                        "mounting secret on {}: {}",
                        abs[i].0.display(),
                        errno_text(e)
                    )
                })
            })
            .collect()
    };
    let res = stage();
    if mounted {
        let _ = unmount(&dir, UnmountFlags::DETACH);
    }
    let _ = fs::remove_dir(&dir);
    res
}

/// Creates a new, empty, hidden directory in `/run/secrets` (0700).
fn staging_dir() -> Result<PathBuf, String> {
    for i in 0..NAME_TRIES {
        let name = if i == 0 {
            ".lbx-staging".to_owned()
        } else {
            format!(".lbx-staging.{i}")
        };
        let dir = Path::new(SECRETS_DIR).join(name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "creating a staging directory in {SECRETS_DIR}: {}",
                    super::err_text(&e)
                ));
            }
        }
    }
    Err(format!(
        "creating a staging directory in {SECRETS_DIR}: no free name"
    ))
}
