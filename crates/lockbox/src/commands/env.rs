//! `lockbox env [--only X,...] -- CMD [ARG...]`: for apps without `_FILE` support (the
//! docker-library `file_env` convention): every variable `X_FILE` that names a readable
//! regular file becomes `X` = the file's content without its trailing newlines, then CMD
//! replaces this process (`execvp`), so the values are only in CMD's environment.
//!
//! * `X` already set (not empty) together with `X_FILE` is an error, as in `file_env`;
//! * an `X_FILE` whose file cannot be read, is not a regular file, holds a NUL byte or is too
//!   large for an environment variable (128 KiB on Linux) is skipped with a warning on stderr
//!   (the path, never the content);
//! * `--only X,Y` limits this to those variables (then a problem with one of them is an
//!   error, not a warning).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::EnvArgs;

/// Linux's limit on one `NAME=value` string (`MAX_ARG_STRLEN`, with its NUL).
const MAX_ENV_STRING: usize = 32 * 4096;

pub(crate) fn run(a: EnvArgs) -> anyhow::Result<ExitCode> {
    let only: BTreeSet<String> = a
        .only
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    let vars: Vec<(OsString, OsString)> = std::env::vars_os().collect();
    let lookup = |k: &str| {
        vars.iter()
            .find(|(n, _)| n.as_os_str() == k)
            .map(|(_, v)| v.clone())
    };
    let mut exports: Vec<(String, OsString)> = Vec::new();
    let mut errors = Vec::new();
    let mut seen = BTreeSet::new();
    for (k, v) in &vars {
        let Some(key) = k.to_str() else { continue };
        let Some(target) = key.strip_suffix("_FILE") else {
            continue;
        };
        if target.is_empty() || v.is_empty() || (!only.is_empty() && !only.contains(target)) {
            continue;
        }
        seen.insert(target.to_owned());
        let strict = !only.is_empty();
        let problem = |msg: String, errors: &mut Vec<String>| {
            if strict {
                errors.push(msg);
            } else {
                eprintln!("lockbox env: warning: {msg}; {target} not set");
            }
        };
        if lookup(target).is_some_and(|x| !x.is_empty()) {
            errors.push(format!(
                "both {target} and {key} are set (but are exclusive)"
            ));
            continue;
        }
        let path = PathBuf::from(v);
        match lockbox_secrets::read_secret_file(&path) {
            Ok(mut value) => {
                if value.contains(&0) {
                    problem(
                        format!("{key}: {} contains a NUL byte", path.display()),
                        &mut errors,
                    );
                    continue;
                }
                if target.len() + value.len() + 2 > MAX_ENV_STRING {
                    problem(
                        format!(
                            "{key}: {} is too large for an environment variable ({} bytes)",
                            path.display(),
                            value.len()
                        ),
                        &mut errors,
                    );
                    continue;
                }
                let bytes = std::mem::take(&mut *value);
                exports.push((target.to_owned(), OsString::from_vec(bytes)));
            }
            Err(e) => problem(
                format!("{key}: cannot read {}: {e}", path.display()),
                &mut errors,
            ),
        }
    }
    for name in only.difference(&seen) {
        errors.push(format!("{name}_FILE is not set"));
    }
    if !errors.is_empty() {
        for e in &errors {
            eprintln!("lockbox env: {e}");
        }
        return Ok(ExitCode::from(1));
    }
    let Some((cmd, args)) = a.command.split_first() else {
        anyhow::bail!("lockbox env: no command given");
    };
    let err = std::process::Command::new(cmd)
        .args(args)
        .envs(exports)
        .exec();
    eprintln!("lockbox env: {}: {err}", cmd.to_string_lossy());
    Ok(ExitCode::from(
        if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}
