//! The compose model for `stack deploy`: what lockbox uses of a compose file, read from a
//! [`Node`] tree with Compose's flexible syntax (lists or mappings, strings or numbers), every
//! other key reported as a [`Warning`] rather than dropped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::node::{Key, Node, Pos, Value};
use crate::words;
use crate::{Error, Warning};

/// A service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Service {
    /// `image`.
    pub image: Option<String>,
    /// `command` (a string is split into words as a shell would).
    pub command: Option<Vec<String>>,
    /// `entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `environment` (list or mapping); `None` means "from the environment, if set".
    pub environment: BTreeMap<String, Option<String>>,
    /// `env_file`, as absolute paths, with whether each is required.
    pub env_file: Vec<EnvFile>,
    /// `user`.
    pub user: Option<String>,
    /// `working_dir`.
    pub working_dir: Option<String>,
    /// `hostname`.
    pub hostname: Option<String>,
    /// `labels` (container labels).
    pub labels: BTreeMap<String, String>,
    /// `secrets`.
    pub secrets: Vec<ServiceSecret>,
    /// `networks`: network key to its aliases.
    pub networks: BTreeMap<String, Vec<String>>,
    /// `stop_grace_period`, in nanoseconds.
    pub stop_grace_period: Option<i64>,
    /// `stop_signal`.
    pub stop_signal: Option<String>,
    /// `init`.
    pub init: Option<bool>,
    /// `tty`.
    pub tty: Option<bool>,
    /// `read_only`.
    pub read_only: Option<bool>,
    /// `deploy`.
    pub deploy: Deploy,
}

/// One `env_file` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvFile {
    /// Absolute path.
    pub path: PathBuf,
    /// `required` (default true): a missing optional file is skipped.
    pub required: bool,
}

/// A service's use of a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSecret {
    /// The top-level secret's key.
    pub source: String,
    /// The file name under `/run/secrets` (or an absolute path); default `source`.
    pub target: Option<String>,
    /// Owner (default `"0"`).
    pub uid: Option<String>,
    /// Group (default `"0"`).
    pub gid: Option<String>,
    /// Permissions (default 0444).
    pub mode: Option<u32>,
    /// Where it was written.
    pub pos: Pos,
    /// In which file.
    pub file: String,
}

/// `deploy`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploy {
    /// `mode`: replicated (default), global, replicated-job, global-job.
    pub mode: Option<String>,
    /// `replicas`.
    pub replicas: Option<u64>,
    /// `labels` (service labels).
    pub labels: BTreeMap<String, String>,
    /// `update_config`.
    pub update_config: Option<UpdateConfig>,
    /// `rollback_config`.
    pub rollback_config: Option<UpdateConfig>,
    /// `restart_policy`.
    pub restart_policy: Option<RestartPolicy>,
    /// `placement.constraints`.
    pub constraints: Vec<String>,
    /// `endpoint_mode`.
    pub endpoint_mode: Option<String>,
}

/// `update_config` / `rollback_config`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpdateConfig {
    /// `parallelism` (default 1).
    pub parallelism: Option<u64>,
    /// `delay`, ns.
    pub delay: Option<i64>,
    /// `failure_action`.
    pub failure_action: Option<String>,
    /// `monitor`, ns.
    pub monitor: Option<i64>,
    /// `max_failure_ratio`.
    pub max_failure_ratio: Option<f64>,
    /// `order`: start-first or stop-first.
    pub order: Option<String>,
}

/// `restart_policy`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestartPolicy {
    /// `condition`: none, on-failure, any.
    pub condition: Option<String>,
    /// `delay`, ns.
    pub delay: Option<i64>,
    /// `max_attempts`.
    pub max_attempts: Option<u64>,
    /// `window`, ns.
    pub window: Option<i64>,
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// `file:` (absolute path).
    File(PathBuf),
    /// `environment:` (a variable's name).
    Environment(String),
    /// `external: true`: it must already exist.
    External,
}

/// A top-level secret.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretDef {
    /// Where the value comes from.
    pub source: SecretSource,
    /// `name` (or the deprecated `external.name`).
    pub name: Option<String>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// Where it was written.
    pub pos: Pos,
    /// In which file.
    pub file: String,
}

/// A top-level network.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkDef {
    /// `driver`.
    pub driver: Option<String>,
    /// `driver_opts`.
    pub driver_opts: BTreeMap<String, String>,
    /// `labels`.
    pub labels: BTreeMap<String, String>,
    /// `external`.
    pub external: bool,
    /// `name` (or `external.name`).
    pub name: Option<String>,
    /// `internal`.
    pub internal: bool,
    /// `attachable`.
    pub attachable: bool,
}

/// One compose file (or several merged).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Compose {
    /// `services`, by name.
    pub services: BTreeMap<String, Service>,
    /// `secrets`, by key.
    pub secrets: BTreeMap<String, SecretDef>,
    /// `networks`, by key.
    pub networks: BTreeMap<String, NetworkDef>,
}

/// Reads nodes of one file, collecting warnings.
pub(crate) struct Reader<'a> {
    pub(crate) file: &'a str,
    pub(crate) dir: &'a Path,
    pub(crate) warnings: &'a mut Vec<Warning>,
}

/// Compose keys of a service that lockbox does not use.
const UNSUPPORTED_SERVICE_KEYS: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "cgroupns_mode",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "ipc",
    "isolation",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "network_mode",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "privileged",
    "profiles",
    "pull_policy",
    "restart",
    "runtime",
    "scale",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "ulimits",
    "userns_mode",
    "uts",
    "volume_driver",
    "volumes",
    "volumes_from",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Reader<'_> {
    fn err(&self, pos: Pos, path: &str, message: impl Into<String>) -> Error {
        Error::Invalid {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        }
    }

    fn warn(&mut self, pos: Pos, path: &str, message: impl Into<String>) {
        self.warnings.push(Warning {
            file: self.file.to_owned(),
            pos,
            path: path.to_owned(),
            message: message.into(),
        });
    }

    /// A key this reader does not know: extension keys (`x-...`) are ignored quietly.
    fn unknown(&mut self, key: &Key, path: &str, known_elsewhere: bool) {
        if key.name.starts_with("x-") {
            return;
        }
        let message = if known_elsewhere {
            "not supported by lockbox; ignored"
        } else {
            "unknown key; ignored"
        };
        self.warn(key.pos, &join(path, &key.name), message);
    }

    fn entries<'n>(&self, node: &'n Node, path: &str) -> Result<&'n [(Key, Node)], Error> {
        match &node.value {
            Value::Map(m) => Ok(m),
            Value::Null => Ok(&[]),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be a mapping, not {}", v.kind()),
            )),
        }
    }

    fn string(&self, node: &Node, path: &str) -> Result<Option<String>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            v => v.scalar_text().map(Some).ok_or_else(|| {
                self.err(
                    node.pos,
                    path,
                    format!("must be a string, not {}", v.kind()),
                )
            }),
        }
    }

    fn boolean(&self, node: &Node, path: &str) -> Result<Option<bool>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(*b)),
            Value::Str(s) => words::parse_bool(s)
                .map(Some)
                .ok_or_else(|| self.err(node.pos, path, format!("must be a boolean, not {s:?}"))),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be a boolean, not {}", v.kind()),
            )),
        }
    }

    fn uint(&self, node: &Node, path: &str) -> Result<Option<u64>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Int(i) => u64::try_from(*i).map(Some).map_err(|_| {
                self.err(
                    node.pos,
                    path,
                    format!("must be a non-negative integer, not {i}"),
                )
            }),
            Value::Str(s) => words::parse_uint(s).map(Some).map_err(|_| {
                self.err(
                    node.pos,
                    path,
                    format!("must be a non-negative integer, not {s:?}"),
                )
            }),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be an integer, not {}", v.kind()),
            )),
        }
    }

    fn float(&self, node: &Node, path: &str) -> Result<Option<f64>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Int(i) => Ok(Some(*i as f64)),
            Value::Float(f) => Ok(Some(*f)),
            Value::Str(s) => s
                .trim()
                .parse::<f64>()
                .map(Some)
                .map_err(|_| self.err(node.pos, path, format!("must be a number, not {s:?}"))),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be a number, not {}", v.kind()),
            )),
        }
    }

    fn duration(&self, node: &Node, path: &str) -> Result<Option<i64>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Str(s) => words::parse_duration(s)
                .map(Some)
                .map_err(|e| self.err(node.pos, path, e)),
            Value::Int(0) => Ok(Some(0)),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be a duration such as \"10s\", not {}", v.kind()),
            )),
        }
    }

    fn one_of(&self, node: &Node, path: &str, allowed: &[&str]) -> Result<Option<String>, Error> {
        let v = self.string(node, path)?;
        if let Some(s) = &v
            && !allowed.contains(&s.as_str())
        {
            return Err(self.err(
                node.pos,
                path,
                format!("must be one of {}, not {s:?}", allowed.join(", ")),
            ));
        }
        Ok(v)
    }

    /// A command: a string split into words, or a list of words.
    fn command(&self, node: &Node, path: &str) -> Result<Option<Vec<String>>, Error> {
        match &node.value {
            Value::Null => Ok(None),
            Value::Seq(items) => items
                .iter()
                .map(|n| {
                    n.value.scalar_text().ok_or_else(|| {
                        self.err(
                            n.pos,
                            path,
                            format!("must list strings, not {}", n.value.kind()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            v => match v.scalar_text() {
                Some(s) => words::shell_split(&s)
                    .map(Some)
                    .map_err(|e| self.err(node.pos, path, e)),
                None => Err(self.err(
                    node.pos,
                    path,
                    format!("must be a string or a list, not {}", v.kind()),
                )),
            },
        }
    }

    fn strings(&self, node: &Node, path: &str) -> Result<Vec<String>, Error> {
        match &node.value {
            Value::Null => Ok(Vec::new()),
            Value::Seq(items) => items
                .iter()
                .map(|n| {
                    n.value.scalar_text().ok_or_else(|| {
                        self.err(
                            n.pos,
                            path,
                            format!("must list strings, not {}", n.value.kind()),
                        )
                    })
                })
                .collect(),
            v => Err(self.err(
                node.pos,
                path,
                format!("must be a list of strings, not {}", v.kind()),
            )),
        }
    }

    /// A list of `KEY=VALUE` (or bare `KEY`) or a mapping; `None` values are "no value".
    fn list_or_dict(
        &self,
        node: &Node,
        path: &str,
    ) -> Result<BTreeMap<String, Option<String>>, Error> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Null => {}
            Value::Seq(items) => {
                for n in items {
                    let Some(s) = n.value.scalar_text() else {
                        return Err(self.err(
                            n.pos,
                            path,
                            format!("must list KEY=VALUE strings, not {}", n.value.kind()),
                        ));
                    };
                    match s.split_once('=') {
                        Some((k, v)) => out.insert(k.to_owned(), Some(v.to_owned())),
                        None => out.insert(s, None),
                    };
                }
            }
            Value::Map(m) => {
                for (k, v) in m {
                    let value = match &v.value {
                        Value::Null => None,
                        other => Some(other.scalar_text().ok_or_else(|| {
                            self.err(
                                v.pos,
                                &join(path, &k.name),
                                format!(
                                    "must be a string, number or boolean, not {}",
                                    other.kind()
                                ),
                            )
                        })?),
                    };
                    out.insert(k.name.clone(), value);
                }
            }
            v => {
                return Err(self.err(
                    node.pos,
                    path,
                    format!("must be a list or a mapping, not {}", v.kind()),
                ));
            }
        }
        Ok(out)
    }

    fn labels(&self, node: &Node, path: &str) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .list_or_dict(node, path)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect())
    }

    fn string_map(&self, node: &Node, path: &str) -> Result<BTreeMap<String, String>, Error> {
        let mut out = BTreeMap::new();
        for (k, v) in self.entries(node, path)? {
            out.insert(
                k.name.clone(),
                self.string(v, &join(path, &k.name))?.unwrap_or_default(),
            );
        }
        Ok(out)
    }

    /// `p` made absolute against the working directory, without `.` components.
    fn abs(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        let joined = if p.is_absolute() {
            p.to_owned()
        } else {
            self.dir.join(p)
        };
        joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }

    /// A whole file.
    pub(crate) fn compose(&mut self, root: &Node) -> Result<Compose, Error> {
        let mut c = Compose::default();
        let Value::Map(top) = &root.value else {
            return Err(self.err(
                root.pos,
                "",
                "the top level of a compose file must be a mapping",
            ));
        };
        for (k, v) in top {
            match k.name.as_str() {
                "version" | "name" => {}
                "services" => {
                    for (sk, sv) in self.entries(v, "services")? {
                        let path = join("services", &sk.name);
                        if sk.name.starts_with("x-") {
                            continue;
                        }
                        let s = self.service(sv, &path)?;
                        c.services.insert(sk.name.clone(), s);
                    }
                }
                "secrets" => {
                    for (sk, sv) in self.entries(v, "secrets")? {
                        if sk.name.starts_with("x-") {
                            continue;
                        }
                        let path = join("secrets", &sk.name);
                        let s = self.secret(sk, sv, &path)?;
                        c.secrets.insert(sk.name.clone(), s);
                    }
                }
                "networks" => {
                    for (nk, nv) in self.entries(v, "networks")? {
                        if nk.name.starts_with("x-") {
                            continue;
                        }
                        let path = join("networks", &nk.name);
                        let n = self.network(nv, &path)?;
                        c.networks.insert(nk.name.clone(), n);
                    }
                }
                "volumes" | "configs" | "include" => {
                    if !self
                        .entries(v, &k.name)
                        .map(<[_]>::is_empty)
                        .unwrap_or(false)
                    {
                        self.unknown(k, "", true);
                    }
                }
                _ => self.unknown(k, "", false),
            }
        }
        Ok(c)
    }

    fn service(&mut self, node: &Node, path: &str) -> Result<Service, Error> {
        let mut s = Service::default();
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "image" => s.image = self.string(v, &p)?,
                "command" => s.command = self.command(v, &p)?,
                "entrypoint" => s.entrypoint = self.command(v, &p)?,
                "environment" => s.environment = self.list_or_dict(v, &p)?,
                "env_file" => s.env_file = self.env_files(v, &p)?,
                "user" => s.user = self.string(v, &p)?,
                "working_dir" => s.working_dir = self.string(v, &p)?,
                "hostname" => s.hostname = self.string(v, &p)?,
                "labels" => s.labels = self.labels(v, &p)?,
                "secrets" => s.secrets = self.service_secrets(v, &p)?,
                "networks" => s.networks = self.service_networks(v, &p)?,
                "stop_grace_period" => s.stop_grace_period = self.duration(v, &p)?,
                "stop_signal" => s.stop_signal = self.string(v, &p)?,
                "init" => s.init = self.boolean(v, &p)?,
                "tty" => s.tty = self.boolean(v, &p)?,
                "read_only" => s.read_only = self.boolean(v, &p)?,
                "deploy" => s.deploy = self.deploy(v, &p)?,
                other => self.unknown(k, path, UNSUPPORTED_SERVICE_KEYS.contains(&other)),
            }
        }
        Ok(s)
    }

    fn env_files(&mut self, node: &Node, path: &str) -> Result<Vec<EnvFile>, Error> {
        let items: Vec<&Node> = match &node.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for n in items {
            match &n.value {
                Value::Map(m) => {
                    let mut file = None;
                    let mut required = true;
                    for (k, v) in m {
                        let p = join(path, &k.name);
                        match k.name.as_str() {
                            "path" => file = self.string(v, &p)?,
                            "required" => required = self.boolean(v, &p)?.unwrap_or(true),
                            "format" => self.unknown(k, path, true),
                            _ => self.unknown(k, path, false),
                        }
                    }
                    let Some(f) = file else {
                        return Err(self.err(n.pos, path, "an env_file entry needs a path"));
                    };
                    out.push(EnvFile {
                        path: self.abs(&f),
                        required,
                    });
                }
                v => match v.scalar_text() {
                    Some(f) => out.push(EnvFile {
                        path: self.abs(&f),
                        required: true,
                    }),
                    None => {
                        return Err(self.err(
                            n.pos,
                            path,
                            format!("must be a path or a list, not {}", v.kind()),
                        ));
                    }
                },
            }
        }
        Ok(out)
    }

    fn service_secrets(&mut self, node: &Node, path: &str) -> Result<Vec<ServiceSecret>, Error> {
        let Value::Seq(items) = &node.value else {
            if node.value == Value::Null {
                return Ok(Vec::new());
            }
            return Err(self.err(
                node.pos,
                path,
                format!("must be a list, not {}", node.value.kind()),
            ));
        };
        let mut out = Vec::new();
        for n in items {
            let mut s = ServiceSecret {
                source: String::new(),
                target: None,
                uid: None,
                gid: None,
                mode: None,
                pos: n.pos,
                file: self.file.to_owned(),
            };
            match &n.value {
                Value::Map(m) => {
                    for (k, v) in m {
                        let p = join(path, &k.name);
                        match k.name.as_str() {
                            "source" => s.source = self.string(v, &p)?.unwrap_or_default(),
                            "target" => s.target = self.string(v, &p)?,
                            "uid" => s.uid = self.string(v, &p)?,
                            "gid" => s.gid = self.string(v, &p)?,
                            "mode" => {
                                let m = self.uint(v, &p)?;
                                s.mode = match m {
                                    Some(m) => Some(u32::try_from(m).map_err(|_| {
                                        self.err(v.pos, &p, format!("mode {m} is out of range"))
                                    })?),
                                    None => None,
                                };
                            }
                            _ => self.unknown(k, path, false),
                        }
                    }
                    if s.source.is_empty() {
                        return Err(self.err(n.pos, path, "a secret needs a source"));
                    }
                }
                v => match v.scalar_text() {
                    Some(src) => s.source = src,
                    None => {
                        return Err(self.err(
                            n.pos,
                            path,
                            format!("must list secret names or mappings, not {}", v.kind()),
                        ));
                    }
                },
            }
            out.push(s);
        }
        Ok(out)
    }

    fn service_networks(
        &mut self,
        node: &Node,
        path: &str,
    ) -> Result<BTreeMap<String, Vec<String>>, Error> {
        let mut out = BTreeMap::new();
        match &node.value {
            Value::Null => {}
            Value::Seq(items) => {
                for n in items {
                    let Some(name) = n.value.scalar_text() else {
                        return Err(self.err(
                            n.pos,
                            path,
                            format!("must list network names, not {}", n.value.kind()),
                        ));
                    };
                    out.insert(name, Vec::new());
                }
            }
            Value::Map(m) => {
                for (k, v) in m {
                    let p = join(path, &k.name);
                    let mut aliases = Vec::new();
                    for (ak, av) in self.entries(v, &p)? {
                        match ak.name.as_str() {
                            "aliases" => aliases = self.strings(av, &join(&p, "aliases"))?,
                            "ipv4_address" | "ipv6_address" | "link_local_ips" | "priority"
                            | "driver_opts" | "mac_address" | "gw_priority" | "interface_name" => {
                                self.unknown(ak, &p, true)
                            }
                            _ => self.unknown(ak, &p, false),
                        }
                    }
                    out.insert(k.name.clone(), aliases);
                }
            }
            v => {
                return Err(self.err(
                    node.pos,
                    path,
                    format!("must be a list or a mapping, not {}", v.kind()),
                ));
            }
        }
        Ok(out)
    }

    fn deploy(&mut self, node: &Node, path: &str) -> Result<Deploy, Error> {
        let mut d = Deploy::default();
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "mode" => {
                    d.mode = self.one_of(
                        v,
                        &p,
                        &["replicated", "global", "replicated-job", "global-job"],
                    )?
                }
                "replicas" => d.replicas = self.uint(v, &p)?,
                "labels" => d.labels = self.labels(v, &p)?,
                "update_config" => d.update_config = Some(self.update_config(v, &p, false)?),
                "rollback_config" => d.rollback_config = Some(self.update_config(v, &p, true)?),
                "restart_policy" => d.restart_policy = Some(self.restart_policy(v, &p)?),
                "endpoint_mode" => d.endpoint_mode = self.one_of(v, &p, &["vip", "dnsrr"])?,
                "placement" => {
                    for (pk, pv) in self.entries(v, &p)? {
                        match pk.name.as_str() {
                            "constraints" => {
                                d.constraints = self.strings(pv, &join(&p, "constraints"))?
                            }
                            "preferences" | "max_replicas_per_node" => self.unknown(pk, &p, true),
                            _ => self.unknown(pk, &p, false),
                        }
                    }
                }
                "resources" => {
                    if !self.entries(v, &p).map(<[_]>::is_empty).unwrap_or(false) {
                        self.unknown(k, path, true);
                    }
                }
                _ => self.unknown(k, path, false),
            }
        }
        if matches!(d.mode.as_deref(), Some("global" | "global-job")) && d.replicas.is_some() {
            return Err(self.err(
                node.pos,
                path,
                "replicas can only be used with replicated or replicated-job mode",
            ));
        }
        Ok(d)
    }

    fn update_config(
        &mut self,
        node: &Node,
        path: &str,
        rollback: bool,
    ) -> Result<UpdateConfig, Error> {
        let mut u = UpdateConfig::default();
        let actions: &[&str] = if rollback {
            &["pause", "continue"]
        } else {
            &["pause", "continue", "rollback"]
        };
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "parallelism" => u.parallelism = self.uint(v, &p)?,
                "delay" => u.delay = self.duration(v, &p)?,
                "failure_action" => u.failure_action = self.one_of(v, &p, actions)?,
                "monitor" => u.monitor = self.duration(v, &p)?,
                "max_failure_ratio" => u.max_failure_ratio = self.float(v, &p)?,
                "order" => u.order = self.one_of(v, &p, &["start-first", "stop-first"])?,
                _ => self.unknown(k, path, false),
            }
        }
        Ok(u)
    }

    fn restart_policy(&mut self, node: &Node, path: &str) -> Result<RestartPolicy, Error> {
        let mut r = RestartPolicy::default();
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "condition" => r.condition = self.one_of(v, &p, &["none", "on-failure", "any"])?,
                "delay" => r.delay = self.duration(v, &p)?,
                "max_attempts" => r.max_attempts = self.uint(v, &p)?,
                "window" => r.window = self.duration(v, &p)?,
                _ => self.unknown(k, path, false),
            }
        }
        Ok(r)
    }

    /// `external:` as a boolean or as the deprecated `{name: ...}`.
    fn external(&mut self, node: &Node, path: &str) -> Result<(bool, Option<String>), Error> {
        match &node.value {
            Value::Map(m) => {
                let mut name = None;
                for (k, v) in m {
                    match k.name.as_str() {
                        "name" => name = self.string(v, &join(path, "name"))?,
                        "external" => {}
                        _ => self.unknown(k, path, false),
                    }
                }
                if name.is_some() {
                    self.warn(
                        node.pos,
                        path,
                        "external.name is deprecated in favor of name",
                    );
                }
                Ok((true, name))
            }
            _ => Ok((self.boolean(node, path)?.unwrap_or(false), None)),
        }
    }

    fn secret(&mut self, key: &Key, node: &Node, path: &str) -> Result<SecretDef, Error> {
        let mut file = None;
        let mut environment = None;
        let mut external = false;
        let mut external_name = None;
        let mut name = None;
        let mut labels = BTreeMap::new();
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "file" => file = self.string(v, &p)?,
                "environment" => environment = self.string(v, &p)?,
                "external" => (external, external_name) = self.external(v, &p)?,
                "name" => name = self.string(v, &p)?,
                "labels" => labels = self.labels(v, &p)?,
                "driver" | "driver_opts" | "template_driver" | "content" => {
                    self.unknown(k, path, true)
                }
                _ => self.unknown(k, path, false),
            }
        }
        if external_name.is_some() {
            if name.is_some() {
                return Err(self.err(
                    node.pos,
                    path,
                    "secret.external.name and secret.name conflict; only use secret.name",
                ));
            }
            name = external_name;
        }
        let sources = usize::from(file.is_some())
            + usize::from(environment.is_some())
            + usize::from(external);
        if sources > 1 {
            return Err(self.err(
                node.pos,
                path,
                "only one of file, environment and external may be given",
            ));
        }
        let source = if external {
            SecretSource::External
        } else if let Some(f) = file {
            SecretSource::File(self.abs(&f))
        } else if let Some(e) = environment {
            SecretSource::Environment(e)
        } else {
            return Err(self.err(
                key.pos,
                path,
                "a secret needs file, environment or external: true",
            ));
        };
        Ok(SecretDef {
            source,
            name,
            labels,
            pos: key.pos,
            file: self.file.to_owned(),
        })
    }

    fn network(&mut self, node: &Node, path: &str) -> Result<NetworkDef, Error> {
        let mut n = NetworkDef::default();
        let mut external_name = None;
        for (k, v) in self.entries(node, path)? {
            let p = join(path, &k.name);
            match k.name.as_str() {
                "driver" => n.driver = self.string(v, &p)?,
                "driver_opts" => n.driver_opts = self.string_map(v, &p)?,
                "labels" => n.labels = self.labels(v, &p)?,
                "external" => (n.external, external_name) = self.external(v, &p)?,
                "name" => n.name = self.string(v, &p)?,
                "internal" => n.internal = self.boolean(v, &p)?.unwrap_or(false),
                "attachable" => n.attachable = self.boolean(v, &p)?.unwrap_or(false),
                "ipam" | "enable_ipv4" | "enable_ipv6" => self.unknown(k, path, true),
                _ => self.unknown(k, path, false),
            }
        }
        if external_name.is_some() {
            if n.name.is_some() {
                return Err(self.err(
                    node.pos,
                    path,
                    "network.external.name and network.name conflict; only use network.name",
                ));
            }
            n.name = external_name;
        }
        Ok(n)
    }
}

fn merge_map<V: Clone>(base: &mut BTreeMap<String, V>, over: &BTreeMap<String, V>) {
    for (k, v) in over {
        base.insert(k.clone(), v.clone());
    }
}

fn merge_update(base: &mut Option<UpdateConfig>, over: &Option<UpdateConfig>) {
    let Some(o) = over else { return };
    let b = base.get_or_insert_with(UpdateConfig::default);
    b.parallelism = o.parallelism.or(b.parallelism);
    b.delay = o.delay.or(b.delay);
    b.failure_action = o.failure_action.clone().or(b.failure_action.take());
    b.monitor = o.monitor.or(b.monitor);
    b.max_failure_ratio = o.max_failure_ratio.or(b.max_failure_ratio);
    b.order = o.order.clone().or(b.order.take());
}

impl Service {
    /// Applies `over` (a later file) on top of this service, as `docker stack deploy` merges
    /// files: values replace, mappings merge by key, `secrets` merge by source, lists append.
    pub fn merge(&mut self, over: &Service) {
        macro_rules! take {
            ($($f:ident),*) => {$( if over.$f.is_some() { self.$f = over.$f.clone(); } )*};
        }
        take!(
            image,
            command,
            entrypoint,
            user,
            working_dir,
            hostname,
            stop_grace_period,
            stop_signal,
            init,
            tty,
            read_only
        );
        merge_map(&mut self.environment, &over.environment);
        merge_map(&mut self.labels, &over.labels);
        merge_map(&mut self.networks, &over.networks);
        self.env_file.extend(over.env_file.iter().cloned());
        for s in &over.secrets {
            match self.secrets.iter_mut().find(|b| b.source == s.source) {
                Some(b) => *b = s.clone(),
                None => self.secrets.push(s.clone()),
            }
        }
        let (d, o) = (&mut self.deploy, &over.deploy);
        if o.mode.is_some() {
            d.mode = o.mode.clone();
        }
        if o.replicas.is_some() {
            d.replicas = o.replicas;
        }
        if o.endpoint_mode.is_some() {
            d.endpoint_mode = o.endpoint_mode.clone();
        }
        merge_map(&mut d.labels, &o.labels);
        merge_update(&mut d.update_config, &o.update_config);
        merge_update(&mut d.rollback_config, &o.rollback_config);
        if let Some(r) = &o.restart_policy {
            let b = d.restart_policy.get_or_insert_with(RestartPolicy::default);
            b.condition = r.condition.clone().or(b.condition.take());
            b.delay = r.delay.or(b.delay);
            b.max_attempts = r.max_attempts.or(b.max_attempts);
            b.window = r.window.or(b.window);
        }
        for c in &o.constraints {
            if !d.constraints.contains(c) {
                d.constraints.push(c.clone());
            }
        }
    }
}

impl Compose {
    /// Applies a later file: services merge ([`Service::merge`]); secrets and networks are
    /// replaced by key.
    pub fn merge(&mut self, over: Compose) {
        for (name, s) in over.services {
            match self.services.get_mut(&name) {
                Some(b) => b.merge(&s),
                None => {
                    self.services.insert(name, s);
                }
            }
        }
        self.secrets.extend(over.secrets);
        self.networks.extend(over.networks);
    }
}
