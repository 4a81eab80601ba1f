//! lockbox-compose: compose files for `stack deploy`.
//!
//! * [`load`] reads one or more compose files (merged in order), interpolates `${VAR}`,
//!   `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$` from the process environment
//!   and the `.env` file beside the first file, and returns a [`Project`] with the
//!   [`Warning`]s for every key it does not use (`x-` extension keys are ignored quietly).
//!   YAML errors name the file, line and column.
//! * [`convert`] turns a project into Engine API bodies (`ServiceSpec`, `SecretSpec`,
//!   network create requests) the way `docker stack deploy` builds them.
//! * [`Project::to_yaml`] prints the resolved file (`stack config`).
//!
//! The model is the subset of the Compose specification that `docker stack deploy` uses and
//! lockbox runs: see [`model`].

#![forbid(unsafe_code)]

pub mod convert;
mod envfile;
pub mod model;
pub mod node;
mod output;
pub mod words;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

pub use envfile::{parse_dotenv, parse_kvfile};
pub use model::{Compose, Deploy, NetworkDef, SecretDef, SecretSource, Service, ServiceSecret};
pub use node::Pos;
use zeroize::Zeroizing;

/// Something in a compose file that lockbox ignores (an unknown or unsupported key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The file.
    pub file: String,
    /// Where in it.
    pub pos: Pos,
    /// The key's path (`services.api.ports`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.pos, self.path, self.message
        )
    }
}

/// Why a compose file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{0}")]
    Io(String),
    /// Not YAML, or an interpolation failed (rendered with file, line, column and snippet).
    #[error("{0}")]
    Yaml(String),
    /// A value of the wrong kind.
    #[error("{file}:{pos}: {path}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// Where.
        pos: Pos,
        /// The key's path.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Anything else (e.g. a service naming an undefined secret).
    #[error("{0}")]
    Other(String),
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The files, in merge order; `-` reads `stdin`.
    pub files: Vec<String>,
    /// The process environment.
    pub env: HashMap<String, String>,
    /// What `-` reads.
    pub stdin: Option<Vec<u8>>,
    /// Leave `${...}` as written (`stack config --skip-interpolation`).
    pub skip_interpolation: bool,
    /// The directory `-` is relative to (default: the current directory).
    pub cwd: Option<PathBuf>,
}

/// Loaded compose files.
#[derive(Clone)]
pub struct Project {
    /// The files as given.
    pub files: Vec<String>,
    /// Relative paths are relative to this directory (the first file's).
    pub working_dir: PathBuf,
    /// The merged model; each service's `environment` is resolved (env files, then the
    /// environment for entries without a value).
    pub compose: Compose,
    /// What was ignored.
    pub warnings: Vec<Warning>,
    /// The variables (process environment over `.env`), for `environment:` secrets.
    env: HashMap<String, String>,
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The variables may hold secrets: never printed.
        f.debug_struct("Project")
            .field("files", &self.files)
            .field("working_dir", &self.working_dir)
            .field("compose", &self.compose)
            .field("warnings", &self.warnings)
            .finish_non_exhaustive()
    }
}

fn read(path: &str, stdin: &Option<Vec<u8>>) -> Result<String, Error> {
    let bytes = if path == "-" {
        stdin.clone().unwrap_or_default()
    } else {
        std::fs::read(path).map_err(|e| Error::Io(format!("open {path}: {}", io_text(&e))))?
    };
    String::from_utf8(bytes).map_err(|_| Error::Io(format!("{path}: not UTF-8 text")))
}

/// An I/O error in Go's words (`no such file or directory`).
pub fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_lowercase(),
                None => s,
            }
        }
    }
}

fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_owned()
    } else {
        cwd.join(p)
    }
}

/// Loads and merges compose files.
pub fn load(opts: &LoadOptions) -> Result<Project, Error> {
    if opts.files.is_empty() {
        return Err(Error::Other(
            "specify a Compose file (with --compose-file)".into(),
        ));
    }
    let cwd = match &opts.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir()
            .map_err(|e| Error::Io(format!("current directory: {}", io_text(&e))))?,
    };
    let working_dir = if opts.files[0] == "-" {
        cwd.clone()
    } else {
        absolute(Path::new(&opts.files[0]), &cwd)
            .parent()
            .map_or_else(|| cwd.clone(), Path::to_owned)
    };
    // Variables: `.env` beside the first file, overridden by the process environment.
    let mut env: HashMap<String, String> = HashMap::new();
    let dotenv = working_dir.join(".env");
    if dotenv.is_file() {
        let name = dotenv.display().to_string();
        let text = std::fs::read_to_string(&dotenv)
            .map_err(|e| Error::Io(format!("open {name}: {}", io_text(&e))))?;
        for (k, v) in parse_dotenv(&text, &name).map_err(Error::Other)? {
            env.insert(k, v);
        }
    }
    env.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));

    let parse_opts = node::ParseOptions {
        properties: (!opts.skip_interpolation).then(|| env.clone()),
    };
    let mut warnings = Vec::new();
    let mut merged: Option<Compose> = None;
    for file in &opts.files {
        let text = read(file, &opts.stdin)?;
        let shown = if file == "-" {
            "<stdin>"
        } else {
            file.as_str()
        };
        if text.trim().is_empty() {
            return Err(Error::Other(format!("{shown}: empty compose file")));
        }
        let root = node::parse(&text, shown, &parse_opts).map_err(Error::Yaml)?;
        let mut reader = model::Reader {
            file: shown,
            dir: &working_dir,
            warnings: &mut warnings,
        };
        let c = reader.compose(&root)?;
        match &mut merged {
            None => merged = Some(c),
            Some(m) => m.merge(c),
        }
    }
    let mut compose = merged.unwrap_or_default();
    for (name, s) in compose.services.iter_mut() {
        resolve_environment(name, s, &env)?;
    }
    validate(&compose)?;
    Ok(Project {
        files: opts.files.clone(),
        working_dir,
        compose,
        warnings,
        env,
    })
}

/// docker's `resolveEnvironment`: env files in order, then `environment`; an entry without a
/// value (or with an empty one) takes the variable's value when it is set.
fn resolve_environment(
    name: &str,
    s: &mut Service,
    env: &HashMap<String, String>,
) -> Result<(), Error> {
    let mut out: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut apply = |vars: Vec<(String, Option<String>)>| {
        for (k, v) in vars {
            let value = match (&v, env.get(&k)) {
                (None, Some(e)) => Some(e.clone()),
                (Some(x), Some(e)) if x.is_empty() => Some(e.clone()),
                _ => v,
            };
            out.insert(k, value);
        }
    };
    for f in &s.env_file {
        let shown = f.path.display().to_string();
        let data = match std::fs::read(&f.path) {
            Ok(d) => d,
            Err(e) if !f.required && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::Io(format!(
                    "service {name}: env_file: open {shown}: {}",
                    io_text(&e)
                )));
            }
        };
        apply(parse_kvfile(&data, &shown).map_err(Error::Other)?);
    }
    apply(s.environment.clone().into_iter().collect());
    s.environment = out;
    Ok(())
}

/// Checks that need the whole (merged) model.
fn validate(c: &Compose) -> Result<(), Error> {
    for (name, s) in &c.services {
        for r in &s.secrets {
            if !c.secrets.contains_key(&r.source) {
                return Err(Error::Other(format!(
                    "{}:{}: service {name}: undefined secret {:?}",
                    r.file, r.pos, r.source
                )));
            }
        }
        for n in s.networks.keys() {
            if n != "default" && !c.networks.contains_key(n) {
                return Err(Error::Other(format!(
                    "service {name}: undefined network {n:?}"
                )));
            }
        }
        match &s.image {
            None => {
                return Err(Error::Other(format!(
                    "invalid image reference for service {name}: no image specified"
                )));
            }
            Some(i) if i.trim().is_empty() || i.contains(char::is_whitespace) => {
                return Err(Error::Other(format!(
                    "invalid image reference for service {name}: invalid reference format"
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// A problem with a secret's value, found before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretProblem {
    /// The secret's key in the file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret {:?}: {}", self.key, self.message)
    }
}

impl Project {
    /// The value of a `file:` or `environment:` secret (`None` for an external one).
    pub fn secret_value(&self, key: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretProblem> {
        let problem = |message: String| SecretProblem {
            key: key.to_owned(),
            message,
        };
        let Some(def) = self.compose.secrets.get(key) else {
            return Err(problem("not defined".into()));
        };
        match &def.source {
            SecretSource::External => Ok(None),
            SecretSource::File(p) => {
                let shown = self.display_path(p);
                match std::fs::read(p) {
                    Ok(d) => Ok(Some(Zeroizing::new(d))),
                    Err(e) => Err(problem(format!(
                        "cannot read file {shown}: {}",
                        io_text(&e)
                    ))),
                }
            }
            SecretSource::Environment(var) => match self.env.get(var) {
                Some(v) => Ok(Some(Zeroizing::new(v.as_bytes().to_vec()))),
                None => Err(problem(format!("environment variable {var} is not set"))),
            },
        }
    }

    /// Every `file:` and `environment:` secret that cannot be read, each with its key.
    pub fn secret_problems(&self) -> Vec<SecretProblem> {
        self.compose
            .secrets
            .keys()
            .filter_map(|k| self.secret_value(k).err())
            .collect()
    }

    /// `path` relative to the working directory when it is inside it (`./secrets/x.txt`).
    pub fn display_path(&self, p: &Path) -> String {
        match p.strip_prefix(&self.working_dir) {
            Ok(rel) => format!("./{}", rel.display()),
            Err(_) => p.display().to_string(),
        }
    }

    /// The resolved compose file, as YAML.
    pub fn to_yaml(&self) -> String {
        output::to_yaml(self)
    }
}
