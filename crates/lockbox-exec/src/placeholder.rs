//! Placeholders for absolute secret targets that do not exist on the host.
//!
//! A bind mount needs an existing file to mount on. For a missing absolute
//! target the helper creates an empty file (mode 0000, root) and any missing
//! parent directories (0755) on the host. Every path is recorded in
//! `<state_dir>/placeholders/<helper pid>-<start time>.rec` *before* it is
//! created, so a helper killed at any point leaves a record that
//! [`cleanup_stale`] can act on.
//!
//! Record lines are `f <path>` (a placeholder file this task created),
//! `d <path>` (a directory this task created) and `u <path>` (a placeholder
//! created by another task that this task mounts on). A path is removed
//! only when no other record names it, and a file only while it still looks
//! like a placeholder (empty regular file, mode 0000), so a file that
//! someone replaced is never deleted. Everything happens under an exclusive
//! `flock` on `<state_dir>/placeholders/.lock`.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Uses,
}

impl Kind {
    fn tag(self) -> char {
        match self {
            Kind::File => 'f',
            Kind::Dir => 'd',
            Kind::Uses => 'u',
        }
    }
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    path: PathBuf,
}

fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("placeholders")
}

fn lock(dir: &Path) -> io::Result<File> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(".lock"))?;
    flock(&f, FlockOperation::LockExclusive)?;
    Ok(f)
}

fn parse_record(text: &str) -> Vec<Entry> {
    text.lines()
        .filter_map(|l| {
            let (tag, path) = l.split_once(' ')?;
            let kind = match tag {
                "f" => Kind::File,
                "d" => Kind::Dir,
                "u" => Kind::Uses,
                _ => return None,
            };
            Some(Entry {
                kind,
                path: PathBuf::from(path),
            })
        })
        .collect()
}

/// The record files in `dir` other than `except`.
fn records(dir: &Path, except: Option<&Path>) -> io::Result<Vec<(PathBuf, Vec<Entry>)>> {
    let mut out = Vec::new();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let path = ent?.path();
        if path.extension().is_none_or(|e| e != "rec") || Some(path.as_path()) == except {
            continue;
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.push((path, parse_record(&text)));
    }
    Ok(out)
}

/// Whether `path` is still a placeholder of ours: an empty regular file
/// with mode 0000.
fn looks_like_placeholder(path: &Path) -> bool {
    fs::symlink_metadata(path)
        .map(|m| m.file_type().is_file() && m.len() == 0 && m.mode() & 0o7777 == 0)
        .unwrap_or(false)
}

/// Removes what `entries` created, newest first, except the paths in
/// `keep`. Returns how many files and directories were removed.
fn remove_entries(entries: &[Entry], keep: &HashSet<PathBuf>) -> usize {
    let mut removed = 0;
    for e in entries.iter().rev() {
        if keep.contains(&e.path) {
            continue;
        }
        let ok = match e.kind {
            Kind::File | Kind::Uses => {
                looks_like_placeholder(&e.path) && fs::remove_file(&e.path).is_ok()
            }
            // Only removed while empty.
            Kind::Dir => fs::remove_dir(&e.path).is_ok(),
        };
        removed += usize::from(ok);
    }
    removed
}

/// `(pid, start time)` of a process, from `/proc/<pid>/stat`.
fn start_time(pid: &str) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the command name start at field 3; start time is 22.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the helper that wrote record `file` (`<pid>-<start>.rec`) still
/// runs.
fn record_owner_alive(file: &Path) -> bool {
    let Some(stem) = file.file_stem().and_then(|s| s.to_str()) else {
        return false;
    };
    let Some((pid, start)) = stem.split_once('-') else {
        return false;
    };
    let Ok(start) = start.parse::<u64>() else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// The placeholder bookkeeping of one helper.
pub(crate) struct Records {
    dir: PathBuf,
    record: PathBuf,
    entries: Vec<Entry>,
}

impl Records {
    /// Must be called before the helper's pid namespace gets its own
    /// `/proc` (it reads `/proc/self/stat`).
    pub(crate) fn new(state_dir: &Path) -> io::Result<Records> {
        let pid = std::process::id();
        let start = start_time(&pid.to_string()).unwrap_or(0);
        let dir = records_dir(state_dir);
        let record = dir.join(format!("{pid}-{start}.rec"));
        Ok(Records {
            dir,
            record,
            entries: Vec::new(),
        })
    }

    fn save(&self) -> io::Result<()> {
        let mut text = String::new();
        for e in &self.entries {
            text.push(e.kind.tag());
            text.push(' ');
            text.push_str(&e.path.to_string_lossy());
            text.push('\n');
        }
        let tmp = self.record.with_extension("tmp");
        let mut f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &self.record)
    }

    fn push(&mut self, kind: Kind, path: &Path) -> io::Result<()> {
        self.entries.push(Entry {
            kind,
            path: path.to_owned(),
        });
        self.save()
    }

    /// Makes sure `target` (absolute, normalized) exists as a file to bind
    /// a secret on.
    pub(crate) fn prepare(&mut self, target: &Path) -> Result<(), String> {
        let ctx = |e: io::Error| {
            format!(
                "preparing secret target {}: {}",
                target.display(),
                crate::helper::err_text(&e)
            )
        };
        let _lock = lock(&self.dir).map_err(ctx)?;
        match fs::metadata(target) {
            Ok(m) if m.is_dir() => Err(format!(
                "cannot mount secret on {}: is a directory",
                target.display()
            )),
            Ok(_) => {
                let others = records(&self.dir, Some(&self.record)).map_err(ctx)?;
                let ours = others
                    .iter()
                    .any(|(_, es)| es.iter().any(|e| e.path == target));
                if ours && looks_like_placeholder(target) {
                    self.push(Kind::Uses, target).map_err(ctx)?;
                }
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut missing = Vec::new();
                let mut p = target.parent();
                while let Some(d) = p {
                    if fs::symlink_metadata(d).is_ok() {
                        break;
                    }
                    missing.push(d);
                    p = d.parent();
                }
                for d in missing.into_iter().rev() {
                    self.push(Kind::Dir, d).map_err(ctx)?;
                    match fs::DirBuilder::new().mode(0o755).create(d) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            self.entries.pop();
                        }
                        Err(e) => return Err(ctx(e)),
                    }
                }
                self.push(Kind::File, target).map_err(ctx)?;
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o000)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(target)
                {
                    Ok(f) => {
                        std::os::unix::fs::fchown(&f, Some(0), Some(0)).map_err(ctx)?;
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        self.entries.pop();
                        self.save().map_err(ctx)
                    }
                    Err(e) => Err(ctx(e)),
                }
            }
            Err(e) => Err(ctx(e)),
        }
    }

    /// Removes what this task created (unless another task uses it) and the
    /// record. The bind mounts must have been unmounted in the caller's
    /// namespace first.
    pub(crate) fn release(&mut self) {
        if self.entries.is_empty() {
            let _ = fs::remove_file(&self.record);
            return;
        }
        let Ok(_lock) = lock(&self.dir) else {
            return;
        };
        let keep: HashSet<PathBuf> = match records(&self.dir, Some(&self.record)) {
            Ok(others) => others
                .into_iter()
                .flat_map(|(_, es)| es.into_iter().map(|e| e.path))
                .collect(),
            // Without knowing the others, remove nothing; cleanup_stale will.
            Err(_) => return,
        };
        remove_entries(&self.entries, &keep);
        self.entries.clear();
        let _ = fs::remove_file(&self.record);
    }
}

/// Best-effort cleanup at daemon start: removes the placeholder files and
/// directories recorded under `state_dir` by helpers that no longer run
/// (e.g. killed together with a previous daemon), and their records.
/// Returns the number of files and directories removed. A missing
/// `state_dir` is not an error. Use the state directory given to
/// [`crate::Launcher::with_state_dir`] ([`crate::DEFAULT_STATE_DIR`] for
/// [`crate::Launcher::new`]).
pub fn cleanup_stale(state_dir: &Path) -> io::Result<usize> {
    let dir = records_dir(state_dir);
    if !dir.is_dir() {
        return Ok(0);
    }
    let _lock = lock(&dir)?;
    let all = records(&dir, None)?;
    let (live, stale): (Vec<_>, Vec<_>) = all.into_iter().partition(|(f, _)| record_owner_alive(f));
    let keep: HashSet<PathBuf> = live
        .into_iter()
        .flat_map(|(_, es)| es.into_iter().map(|e| e.path))
        .collect();
    let mut removed = 0;
    for (file, entries) in stale {
        removed += remove_entries(&entries, &keep);
        fs::remove_file(&file)?;
    }
    // Leftover temporary record files of dead helpers.
    for ent in fs::read_dir(&dir)? {
        let path = ent?.path();
        if path.extension().is_some_and(|e| e == "tmp") && !record_owner_alive(&path) {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_start_time() {
        let es = parse_record("f /a/b\nd /a\nu /c d\nbogus\n");
        assert_eq!(es.len(), 3);
        assert_eq!(es[2].path, Path::new("/c d"));
        assert!(start_time("self").is_some());
        let me = format!("{}-{}.rec", std::process::id(), start_time("self").unwrap());
        assert!(record_owner_alive(Path::new(&me)));
        assert!(!record_owner_alive(Path::new("999999999-1.rec")));
    }

    #[test]
    fn prepare_release_and_stale_cleanup() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("x/y/secret");
        let mut r = Records::new(state.path()).unwrap();
        r.prepare(&target).unwrap();
        let m = fs::metadata(&target).unwrap();
        assert_eq!((m.len(), m.mode() & 0o7777), (0, 0));
        r.release();
        assert!(!root.path().join("x").exists());

        // A "killed" helper: a record whose owner is gone.
        let mut r = Records::new(state.path()).unwrap();
        r.record = records_dir(state.path()).join("999999999-1.rec");
        r.prepare(&target).unwrap();
        // A host file that is not a placeholder is never adopted.
        let host = root.path().join("host");
        fs::write(&host, b"host").unwrap();
        r.prepare(&host).unwrap();
        drop(r);
        assert!(target.exists());
        assert_eq!(cleanup_stale(state.path()).unwrap(), 3);
        assert!(!root.path().join("x").exists());
        assert_eq!(fs::read(&host).unwrap(), b"host");
        assert_eq!(cleanup_stale(state.path()).unwrap(), 0);
        assert_eq!(cleanup_stale(&state.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn shared_placeholder_outlives_first_task() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("shared");
        let mut a = Records::new(state.path()).unwrap();
        a.prepare(&target).unwrap();
        let mut b = Records::new(state.path()).unwrap();
        b.record = records_dir(state.path()).join(format!("{}-0b.rec", std::process::id()));
        b.prepare(&target).unwrap();
        a.release();
        assert!(target.exists(), "still used by b");
        b.release();
        assert!(!target.exists());
    }
}
