//! Read secrets in Rust apps the way Docker and lockbox deliver them.
//!
//! [`get_secret`]`("DB_PASSWORD")` looks, in order, at:
//!
//! 1. `DB_PASSWORD_FILE`: when set (and not empty), the file it names is *the* source: a
//!    missing or unreadable file is an error, never a silent fall-back;
//! 2. `/run/secrets/db_password` (the name in lower case), where a service granted the secret
//!    `db_password` finds it;
//! 3. the environment variable `DB_PASSWORD` itself (for development).
//!
//! Files lose their trailing newlines (`\n` or `\r\n`, as `$(cat file)` in a shell); values must
//! be UTF-8 and at least [`DEFAULT_MIN_LEN`] characters long ([`Loader::min_len`] changes that).
//! The value comes back as a [`Secret`]: its `Debug` and `Display` print `[redacted]`, its
//! memory is zeroized when dropped, and no [`Error`] ever contains it.
//!
//! ```no_run
//! let password = lockbox_secrets::get_secret("DB_PASSWORD")?;
//! println!("loaded {password:?} from {}", password.source()); // loaded [redacted] from ...
//! let url = format!("postgres://app:{}@db/app", password.expose());
//! # Ok::<(), lockbox_secrets::Error>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::ffi::OsString;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, Zeroizing};

/// Where services find their secrets.
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";

/// The minimum length (in characters) [`get_secret`] accepts.
pub const DEFAULT_MIN_LEN: usize = 16;

/// The largest secret Docker and lockbox store (500 KiB); larger files are refused.
pub const MAX_SECRET_SIZE: usize = 500 * 1024;

/// Reads the secret `name` with the default [`Loader`]: `NAME_FILE`, then
/// `/run/secrets/name`, then `NAME`; at least [`DEFAULT_MIN_LEN`] characters.
pub fn get_secret(name: &str) -> Result<Secret, Error> {
    Loader::new().get(name)
}

/// Where a value was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The file named by the variable `var` (`X_FILE`).
    FileVar {
        /// The variable, e.g. `DB_PASSWORD_FILE`.
        var: String,
        /// The file it names.
        path: PathBuf,
    },
    /// A file of the secrets directory (`/run/secrets/x`).
    SecretsDir(PathBuf),
    /// The environment variable of this name.
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::FileVar { var, path } => write!(f, "{var}={}", path.display()),
            Source::SecretsDir(p) => write!(f, "{}", p.display()),
            Source::Env(v) => write!(f, "${v}"),
        }
    }
}

/// A secret value: zeroized on drop, `[redacted]` when printed.
pub struct Secret {
    value: Zeroizing<String>,
    source: Source,
}

impl Secret {
    /// The value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.value
    }

    /// Where it was read from.
    pub fn source(&self) -> &Source {
        &self.source
    }

    /// Length in characters.
    pub fn len(&self) -> usize {
        self.value.chars().count()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a secret could not be read. Never contains the value.
#[derive(Debug)]
pub enum Error {
    /// The name cannot name a file or a variable.
    InvalidName(String),
    /// No source had it.
    NotFound {
        /// The secret.
        name: String,
        /// What was looked at, in order.
        tried: Vec<String>,
    },
    /// A file could not be read.
    Read {
        /// The secret.
        name: String,
        /// Where it was looked for.
        source: Source,
        /// Why.
        error: io::Error,
    },
    /// The value is not UTF-8.
    NotUtf8 {
        /// The secret.
        name: String,
        /// Where it was found.
        source: Source,
    },
    /// The value is shorter than required.
    TooShort {
        /// The secret.
        name: String,
        /// Where it was found.
        source: Source,
        /// Its length in characters.
        len: usize,
        /// The minimum.
        min: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidName(n) => write!(f, "invalid secret name {n:?}"),
            Error::NotFound { name, tried } => {
                write!(f, "secret {name} not found (tried {})", tried.join(", "))
            }
            Error::Read {
                name,
                source,
                error,
            } => write!(f, "secret {name}: cannot read {source}: {error}"),
            Error::NotUtf8 { name, source } => {
                write!(f, "secret {name} from {source} is not valid UTF-8")
            }
            Error::TooShort {
                name,
                source,
                len,
                min,
            } => write!(
                f,
                "secret {name} from {source} is too short ({len} characters, at least {min} required)"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

type EnvLookup = Box<dyn Fn(&str) -> Option<OsString> + Send + Sync>;

/// How secrets are looked up; [`Loader::new`] gives [`get_secret`]'s defaults.
pub struct Loader {
    dir: PathBuf,
    min_len: usize,
    env_fallback: bool,
    env: EnvLookup,
}

impl Default for Loader {
    fn default() -> Self {
        Loader::new()
    }
}

impl fmt::Debug for Loader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loader")
            .field("dir", &self.dir)
            .field("min_len", &self.min_len)
            .field("env_fallback", &self.env_fallback)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// `/run/secrets`, a minimum of [`DEFAULT_MIN_LEN`] characters, the environment as the last
    /// resort.
    pub fn new() -> Loader {
        Loader {
            dir: PathBuf::from(DEFAULT_SECRETS_DIR),
            min_len: DEFAULT_MIN_LEN,
            env_fallback: true,
            env: Box::new(|k| std::env::var_os(k)),
        }
    }

    /// Looks for `<dir>/<name in lower case>` instead of `/run/secrets/...`.
    pub fn secrets_dir(mut self, dir: impl Into<PathBuf>) -> Loader {
        self.dir = dir.into();
        self
    }

    /// The minimum length in characters (0 accepts anything, even empty values).
    pub fn min_len(mut self, min: usize) -> Loader {
        self.min_len = min;
        self
    }

    /// Whether the variable `NAME` itself is the last resort (default true). Turn it off in
    /// production so that a value can only come from a file.
    pub fn env_fallback(mut self, on: bool) -> Loader {
        self.env_fallback = on;
        self
    }

    /// Reads variables with `lookup` instead of the process environment (for tests).
    pub fn env_lookup(
        mut self,
        lookup: impl Fn(&str) -> Option<OsString> + Send + Sync + 'static,
    ) -> Loader {
        self.env = Box::new(lookup);
        self
    }

    /// Reads the secret `name` (see the crate documentation for the order).
    pub fn get(&self, name: &str) -> Result<Secret, Error> {
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '=']) {
            return Err(Error::InvalidName(name.to_owned()));
        }
        let mut tried = Vec::new();
        let var = format!("{name}_FILE");
        if let Some(path) = (self.env)(&var).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            let result = read_secret_file(&path);
            let source = Source::FileVar { var, path };
            return match result {
                Ok(bytes) => self.finish(name, bytes, source),
                Err(error) => Err(Error::Read {
                    name: name.to_owned(),
                    source,
                    error,
                }),
            };
        }
        tried.push(format!("${var}"));
        let path = self.dir.join(name.to_lowercase());
        match read_secret_file(&path) {
            Ok(bytes) => return self.finish(name, bytes, Source::SecretsDir(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => tried.push(path.display().to_string()),
            Err(error) => {
                return Err(Error::Read {
                    name: name.to_owned(),
                    source: Source::SecretsDir(path),
                    error,
                });
            }
        }
        if self.env_fallback {
            if let Some(v) = (self.env)(name).filter(|v| !v.is_empty()) {
                let source = Source::Env(name.to_owned());
                return match v.into_string() {
                    Ok(s) => self.check(name, Zeroizing::new(s), source),
                    Err(raw) => {
                        std::os::unix::ffi::OsStringExt::into_vec(raw).zeroize();
                        Err(Error::NotUtf8 {
                            name: name.to_owned(),
                            source,
                        })
                    }
                };
            }
            tried.push(format!("${name}"));
        }
        Err(Error::NotFound {
            name: name.to_owned(),
            tried,
        })
    }

    fn finish(
        &self,
        name: &str,
        bytes: Zeroizing<Vec<u8>>,
        source: Source,
    ) -> Result<Secret, Error> {
        match into_string(bytes) {
            Some(s) => self.check(name, s, source),
            None => Err(Error::NotUtf8 {
                name: name.to_owned(),
                source,
            }),
        }
    }

    fn check(&self, name: &str, value: Zeroizing<String>, source: Source) -> Result<Secret, Error> {
        let len = value.chars().count();
        if len < self.min_len {
            return Err(Error::TooShort {
                name: name.to_owned(),
                source,
                len,
                min: self.min_len,
            });
        }
        Ok(Secret { value, source })
    }
}

/// The bytes as a string without copying them (the buffer is wiped if they are not UTF-8).
fn into_string(mut bytes: Zeroizing<Vec<u8>>) -> Option<Zeroizing<String>> {
    let v = std::mem::take(&mut *bytes);
    match String::from_utf8(v) {
        Ok(s) => Some(Zeroizing::new(s)),
        Err(e) => {
            e.into_bytes().zeroize();
            None
        }
    }
}

/// Reads a secret file as `lockbox env` and [`get_secret`] do: a regular file of at most
/// [`MAX_SECRET_SIZE`] bytes, trailing newlines (`\n`, `\r\n`) removed. The buffer is sized
/// up front from the file's length, so no partial copy of the value is left behind by growth.
pub fn read_secret_file(path: &Path) -> io::Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
    if size > MAX_SECRET_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_SIZE} bytes"),
        ));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(size + 1));
    file.take(MAX_SECRET_SIZE as u64 + 1)
        .read_to_end(&mut buf)?;
    if buf.len() > MAX_SECRET_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {MAX_SECRET_SIZE} bytes"),
        ));
    }
    trim_trailing_newlines(&mut buf);
    Ok(buf)
}

/// Removes every trailing `\n` and `\r\n` (what `$(cat file)` does), wiping the removed bytes.
pub fn trim_trailing_newlines(buf: &mut Vec<u8>) {
    let mut end = buf.len();
    while end > 0 && buf[end - 1] == b'\n' {
        end -= 1;
        if end > 0 && buf[end - 1] == b'\r' {
            end -= 1;
        }
    }
    buf[end..].zeroize();
    buf.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn loader(dir: &Path, env: &[(&str, &str)]) -> Loader {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Loader::new()
            .secrets_dir(dir)
            .env_lookup(move |k| env.get(k).cloned())
    }

    const LONG: &str = "correct-horse-battery-staple";

    #[test]
    fn file_variable_comes_first_and_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, format!("{LONG}\r\n\n")).unwrap();
        std::fs::write(dir.path().join("db_password"), "from-the-secrets-dir").unwrap();
        let l = loader(
            dir.path(),
            &[
                ("DB_PASSWORD_FILE", f.to_str().unwrap()),
                ("DB_PASSWORD", "from-the-environment"),
            ],
        );
        let s = l.get("DB_PASSWORD").unwrap();
        assert_eq!(s.expose(), LONG);
        assert_eq!(
            s.source(),
            &Source::FileVar {
                var: "DB_PASSWORD_FILE".into(),
                path: f.clone()
            }
        );
        assert_eq!(s.len(), LONG.len());
    }

    #[test]
    fn then_the_secrets_dir_in_lower_case_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db_password"), "from-the-secrets-dir\n").unwrap();
        let l = loader(dir.path(), &[("DB_PASSWORD", "from-the-environment")]);
        let s = l.get("DB_PASSWORD").unwrap();
        assert_eq!(s.expose(), "from-the-secrets-dir");
        assert_eq!(
            s.source(),
            &Source::SecretsDir(dir.path().join("db_password"))
        );
        let l = loader(dir.path(), &[("API_KEY", "from-the-environment")]);
        let s = l.get("API_KEY").unwrap();
        assert_eq!(s.expose(), "from-the-environment");
        assert_eq!(s.source().to_string(), "$API_KEY");
        // Without the fall-back, the environment is not consulted.
        let e = l.env_fallback(false).get("API_KEY").unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e}");
    }

    #[test]
    fn a_named_file_that_cannot_be_read_is_an_error_not_a_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), LONG).unwrap();
        let l = loader(dir.path(), &[("X_FILE", "/nonexistent/x"), ("X", LONG)]);
        let e = l.get("X").unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(e.to_string().contains("X_FILE=/nonexistent/x"), "{e}");
        // A directory is not a secret file.
        let l = loader(dir.path(), &[("X_FILE", dir.path().to_str().unwrap())]);
        assert!(matches!(l.get("X"), Err(Error::Read { .. })));
    }

    #[test]
    fn not_found_lists_what_was_tried() {
        let dir = tempfile::tempdir().unwrap();
        let e = loader(dir.path(), &[]).get("REDIS_PASSWORD").unwrap_err();
        let text = e.to_string();
        assert!(text.contains("$REDIS_PASSWORD_FILE"), "{text}");
        assert!(text.contains("redis_password"), "{text}");
        assert!(text.ends_with("$REDIS_PASSWORD)"), "{text}");
    }

    #[test]
    fn minimum_length_and_redaction() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("short"), "hunter2\n").unwrap();
        let e = loader(dir.path(), &[]).get("SHORT").unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            matches!(
                e,
                Error::TooShort {
                    len: 7,
                    min: 16,
                    ..
                }
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2"), "{text}");
        let s = loader(dir.path(), &[]).min_len(4).get("SHORT").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{s}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert!(!format!("{:?}", loader(dir.path(), &[])).contains("hunter2"));
        // Characters, not bytes.
        std::fs::write(dir.path().join("u"), "ééééé").unwrap();
        let e = loader(dir.path(), &[]).min_len(6).get("U").unwrap_err();
        assert!(matches!(e, Error::TooShort { len: 5, .. }), "{e}");
    }

    #[test]
    fn binary_and_oversized_values_are_refused_without_showing_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe, 0x41, 0x42].repeat(8)).unwrap();
        let e = loader(dir.path(), &[]).get("BIN").unwrap_err();
        assert!(matches!(e, Error::NotUtf8 { .. }), "{e}");
        std::fs::write(dir.path().join("big"), vec![b'a'; MAX_SECRET_SIZE + 1]).unwrap();
        let e = loader(dir.path(), &[]).get("BIG").unwrap_err();
        assert!(matches!(e, Error::Read { .. }), "{e}");
        assert!(!e.to_string().contains("aaaa"));
        for bad in ["", "a/b", "..", "A=B"] {
            assert!(matches!(
                loader(dir.path(), &[]).get(bad),
                Err(Error::InvalidName(_))
            ));
        }
    }

    #[test]
    fn trimming() {
        let mut v = b"a\nb\r\n\n\r\n".to_vec();
        trim_trailing_newlines(&mut v);
        assert_eq!(v, b"a\nb");
        let mut v = b"\n".to_vec();
        trim_trailing_newlines(&mut v);
        assert!(v.is_empty());
        let mut v = b"x\r".to_vec();
        trim_trailing_newlines(&mut v);
        assert_eq!(v, b"x\r");
    }
}
