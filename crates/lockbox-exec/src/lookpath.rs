//! `argv[0]` resolution, following Go's `exec.LookPath` (used by runc), with
//! its error texts.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::helper::err_text;

fn find_executable(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("stat {}: {}", path.display(), err_text(&e)))?;
    if meta.is_dir() {
        return Err("is a directory".into());
    }
    if meta.permissions().mode() & 0o111 != 0 {
        Ok(())
    } else {
        Err("permission denied".into())
    }
}

/// The path to execute for `file`, searched in `path_var` unless `file`
/// contains a slash.
pub(crate) fn look_path(file: &str, path_var: &str) -> Result<PathBuf, String> {
    if file.contains('/') {
        return find_executable(Path::new(file))
            .map(|()| PathBuf::from(file))
            .map_err(|e| format!("exec: \"{file}\": {e}"));
    }
    if !file.is_empty() {
        for dir in path_var.split(':') {
            let relative = dir.is_empty() || !dir.starts_with('/');
            let dir = if dir.is_empty() { "." } else { dir };
            let candidate = Path::new(dir).join(file);
            if find_executable(&candidate).is_ok() {
                if relative {
                    return Err(format!(
                        "exec: \"{file}\": cannot run executable found relative to current directory"
                    ));
                }
                return Ok(candidate);
            }
        }
    }
    Err(format!(
        "exec: \"{file}\": executable file not found in $PATH"
    ))
}

/// The value of `PATH` in `env` (`K=V` entries; the last one wins, as in
/// Go's `os.Getenv` after `execve`), or [`crate::DEFAULT_PATH`].
pub(crate) fn path_var(env: &[Vec<u8>]) -> String {
    env.iter()
        .rev()
        .find_map(|e| e.strip_prefix(b"PATH="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_else(|| crate::DEFAULT_PATH.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_in_path() {
        let p = look_path("sh", "/nonexistent:/usr/bin:/bin").unwrap();
        assert!(
            p == Path::new("/usr/bin/sh") || p == Path::new("/bin/sh"),
            "{p:?}"
        );
    }

    #[test]
    fn not_found_in_docker_words() {
        assert_eq!(
            look_path("foo-no-such-cmd", "/usr/bin:/bin").unwrap_err(),
            "exec: \"foo-no-such-cmd\": executable file not found in $PATH"
        );
        assert_eq!(
            look_path("", "/usr/bin").unwrap_err(),
            "exec: \"\": executable file not found in $PATH"
        );
    }

    #[test]
    fn slash_paths_are_checked_directly() {
        assert_eq!(look_path("/bin/sh", "").unwrap(), Path::new("/bin/sh"));
        assert_eq!(
            look_path("/no/such/file", "/bin").unwrap_err(),
            "exec: \"/no/such/file\": stat /no/such/file: no such file or directory"
        );
        assert_eq!(
            look_path("/etc/passwd", "/bin").unwrap_err(),
            "exec: \"/etc/passwd\": permission denied"
        );
        assert_eq!(
            look_path("/etc", "/bin").unwrap_err(),
            "exec: \"/etc\": is a directory"
        );
    }

    #[test]
    fn path_var_from_env() {
        assert_eq!(path_var(&[]), crate::DEFAULT_PATH);
        assert_eq!(
            path_var(&[b"A=1".to_vec(), b"PATH=/x:/y".to_vec()]),
            "/x:/y"
        );
    }
}
