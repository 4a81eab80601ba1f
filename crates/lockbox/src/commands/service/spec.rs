//! Flags to `ServiceSpec` JSON, as docker/cli's `serviceOptions.ToService`
//! (create) and `updateService` (update) build it, with docker's parsing
//! and validation messages.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::cli::{ServiceCreateArgs, ServiceFlags, ServiceUpdateArgs};

/// A flag value docker refuses while parsing flags (`invalid argument ...`;
/// exit status 125 with the usage) or a later validation error.
#[derive(Debug)]
pub(crate) enum SpecError {
    /// `invalid argument "VALUE" for "FLAG" flag: MESSAGE`.
    Flag(String),
    /// Any other error, printed as is.
    Other(String),
}

fn flag_err(flag: &str, value: &str, msg: impl std::fmt::Display) -> SpecError {
    SpecError::Flag(format!(
        "invalid argument {value:?} for {flag:?} flag: {msg}"
    ))
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub(crate) fn parse_uint(s: &str) -> Result<u64, String> {
    let syntax = || format!("strconv.ParseUint: parsing {s:?}: invalid syntax");
    let range = || format!("strconv.ParseUint: parsing {s:?}: value out of range");
    let cleaned: String = s.replace('_', "");
    let (digits, radix) = if let Some(r) = cleaned
        .strip_prefix("0x")
        .or_else(|| cleaned.strip_prefix("0X"))
    {
        (r.to_string(), 16)
    } else if let Some(r) = cleaned
        .strip_prefix("0b")
        .or_else(|| cleaned.strip_prefix("0B"))
    {
        (r.to_string(), 2)
    } else if let Some(r) = cleaned
        .strip_prefix("0o")
        .or_else(|| cleaned.strip_prefix("0O"))
    {
        (r.to_string(), 8)
    } else if cleaned.len() > 1 && cleaned.starts_with('0') {
        (cleaned[1..].to_string(), 8)
    } else {
        (cleaned.clone(), 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(syntax());
    }
    if s.contains('_') && radix == 10 {
        return Err(syntax());
    }
    u64::from_str_radix(&digits, radix).map_err(|_| range())
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {s:?}: invalid syntax")),
    }
}

/// Go's `strconv.ParseFloat(s, 32)`, as a JSON number.
fn parse_f32(s: &str) -> Result<Value, String> {
    let v: f32 = s
        .trim()
        .parse()
        .ok()
        .filter(|_| s.trim() == s && !s.is_empty())
        .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))?;
    let shortest: f64 = format!("{v}").parse().unwrap_or(0.0);
    Ok(if shortest.fract() == 0.0 && shortest.abs() < 1e15 {
        json!(shortest as i64)
    } else {
        json!(shortest)
    })
}

fn duration(flag: &str, v: &str) -> Result<i64, SpecError> {
    lockbox_format::parse_go_duration(v).map_err(|e| flag_err(flag, v, e))
}

fn uint(flag: &str, v: &str) -> Result<u64, SpecError> {
    parse_uint(v).map_err(|e| flag_err(flag, v, e))
}

fn boolean(flag: &str, v: &str) -> Result<bool, SpecError> {
    parse_bool(v).map_err(|e| flag_err(flag, v, e))
}

/// `github.com/google/shlex` splitting (`--entrypoint`, `--args`), shared with compose's
/// `command:` and `entrypoint:` strings.
pub(crate) use lockbox_compose::words::shell_split as shlex;

/// One record of Go's `encoding/csv` (fields separated by `,`, `"`
/// quoting; error columns are 1-based byte positions, as Go's).
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let quote_err = |pos: usize| {
        format!("parse error on line 1, column {pos}: extraneous or missing \" in quoted-field")
    };
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.char_indices().peekable();
    loop {
        if chars.peek().map(|(_, c)| *c) == Some('"') {
            chars.next();
            loop {
                match chars.next() {
                    Some((_, '"')) if chars.peek().map(|(_, c)| *c) == Some('"') => {
                        chars.next();
                        cur.push('"');
                    }
                    Some((_, '"')) => break,
                    Some((_, c)) => cur.push(c),
                    None => return Err(quote_err(s.len() + 1)),
                }
            }
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut cur));
                    break;
                }
                Some((_, ',')) => fields.push(std::mem::take(&mut cur)),
                Some((i, _)) => return Err(quote_err(i + 1)),
            }
        } else {
            let mut bare = String::new();
            let mut ended = true;
            for (i, c) in chars.by_ref() {
                if c == ',' {
                    ended = false;
                    break;
                }
                if c == '"' {
                    return Err(format!(
                        "parse error on line 1, column {}: bare \" in non-quoted-field",
                        i + 1
                    ));
                }
                bare.push(c);
            }
            fields.push(bare);
            if ended {
                break;
            }
        }
    }
    Ok(fields)
}

/// A `--secret`/`--secret-add` value (docker's `SecretOpt.Set`).
#[derive(Debug, Clone)]
pub(crate) struct SecretRequest {
    pub(crate) source: String,
    pub(crate) target: String,
    pub(crate) uid: String,
    pub(crate) gid: String,
    pub(crate) mode: u64,
}

fn parse_secret(value: &str) -> Result<SecretRequest, String> {
    let fields = csv_fields(value)?;
    let mut req = SecretRequest {
        source: String::new(),
        target: String::new(),
        uid: "0".into(),
        gid: "0".into(),
        mode: 0o444,
    };
    if fields.len() == 1 && !fields[0].contains('=') {
        req.source = fields[0].clone();
        req.target = fields[0].clone();
        return Ok(req);
    }
    for field in &fields {
        let Some((key, val)) = field.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(format!("invalid field '{field}' must be a key=value pair"));
        };
        match key.to_lowercase().as_str() {
            "source" | "src" => req.source = val.to_string(),
            "target" => req.target = val.to_string(),
            "uid" => req.uid = val.to_string(),
            "gid" => req.gid = val.to_string(),
            "mode" => {
                let m = parse_uint(val)
                    .and_then(|m| {
                        if m > u64::from(u32::MAX) {
                            Err(format!(
                                "strconv.ParseUint: parsing {val:?}: value out of range"
                            ))
                        } else {
                            Ok(m)
                        }
                    })
                    .map_err(|e| format!("invalid mode specified: {e}"))?;
                req.mode = m;
            }
            _ => return Err(format!("invalid field in secret request: {key}")),
        }
    }
    if req.source.is_empty() {
        return Err("source is required".into());
    }
    if req.target.is_empty() {
        req.target = req.source.clone();
    }
    Ok(req)
}

pub(crate) fn parse_secrets(
    flag: &str,
    values: &[String],
) -> Result<Vec<SecretRequest>, SpecError> {
    values
        .iter()
        .map(|v| parse_secret(v).map_err(|e| flag_err(flag, v, e)))
        .collect()
}

/// `opts.ValidateLabel`.
fn validate_label(flag: &str, v: &str) -> Result<(), SpecError> {
    let key = v.split_once('=').map_or(v, |(k, _)| k);
    let key = key.trim_start_matches([' ', '\t']);
    if key.is_empty() {
        return Err(flag_err(
            flag,
            v,
            format!("invalid label '{v}': empty name"),
        ));
    }
    if key.contains([' ', '\t']) {
        return Err(flag_err(
            flag,
            v,
            format!("label '{key}' contains whitespaces"),
        ));
    }
    Ok(())
}

/// `opts.ValidateEnv`: `KEY` alone takes the value from the environment.
fn validate_env(flag: &str, v: &str) -> Result<String, SpecError> {
    let (k, has_value) = match v.split_once('=') {
        Some((k, _)) => (k, true),
        None => (v, false),
    };
    if k.is_empty() {
        return Err(flag_err(
            flag,
            v,
            format!("invalid environment variable: {v}"),
        ));
    }
    if has_value {
        return Ok(v.to_string());
    }
    Ok(match std::env::var(k) {
        Ok(val) => format!("{k}={val}"),
        Err(_) => v.to_string(),
    })
}

/// `ConvertKVStringsToMap`.
fn kv_map(values: &[String]) -> Map<String, Value> {
    let mut m = BTreeMap::new();
    for v in values {
        let (k, val) = v.split_once('=').unwrap_or((v.as_str(), ""));
        m.insert(k.to_string(), Value::String(val.to_string()));
    }
    m.into_iter().collect()
}

/// `kvfile.Parse` of an `--env-file`.
fn read_env_file(path: &str) -> Result<Vec<String>, String> {
    let data = std::fs::read(path).map_err(|e| {
        let msg = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        format!("open {path}: {msg}")
    })?;
    let mut out = Vec::new();
    for (n, raw) in data.split(|b| *b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let Ok(line) = std::str::from_utf8(raw) else {
            return Err(format!(
                "invalid env file ({path}): invalid utf8 bytes at line {}: {raw:?}",
                n + 1
            ));
        };
        let line = if n == 0 {
            line.trim_start_matches('\u{feff}')
        } else {
            line
        };
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, has_value) = match line.split_once('=') {
            Some((k, _)) => (k, true),
            None => (line, false),
        };
        if key.is_empty() {
            return Err(format!(
                "invalid env file ({path}): no variable name on line '{line}'"
            ));
        }
        if key.contains([' ', '\t']) {
            return Err(format!(
                "invalid env file ({path}): variable '{key}' contains whitespaces"
            ));
        }
        if has_value {
            out.push(line.to_string());
        } else if let Ok(v) = std::env::var(line) {
            out.push(format!("{key}={v}"));
        }
    }
    Ok(out)
}

/// `makeEnv`: env files, then `-e`; a later value for a key replaces the
/// earlier one (at the end).
fn make_env(files: &[String], env: &[String]) -> Result<Vec<String>, SpecError> {
    let mut all = Vec::new();
    for f in files {
        all.extend(read_env_file(f).map_err(SpecError::Other)?);
    }
    all.extend(env.iter().cloned());
    let mut current: Vec<String> = Vec::new();
    for e in all {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string();
        let prefix = format!("{key}=");
        current.retain(|c| *c == e || !c.starts_with(&prefix));
        current.push(e);
    }
    Ok(current)
}

fn update_config_defaults() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Parallelism".into(), json!(1));
    m.insert("Delay".into(), json!(0));
    m.insert("FailureAction".into(), json!("pause"));
    m.insert("Monitor".into(), json!(5_000_000_000i64));
    m.insert("MaxFailureRatio".into(), json!(0));
    m.insert("Order".into(), json!("stop-first"));
    m
}

struct UpdateFlags<'a> {
    parallelism: &'a Option<String>,
    delay: &'a Option<String>,
    monitor: &'a Option<String>,
    failure_action: &'a Option<String>,
    max_failure_ratio: &'a Option<String>,
    order: &'a Option<String>,
    prefix: &'static str,
}

impl UpdateFlags<'_> {
    fn any(&self) -> bool {
        self.parallelism.is_some()
            || self.delay.is_some()
            || self.monitor.is_some()
            || self.failure_action.is_some()
            || self.max_failure_ratio.is_some()
            || self.order.is_some()
    }

    fn apply(&self, m: &mut Map<String, Value>) -> Result<(), SpecError> {
        let p = self.prefix;
        if let Some(v) = self.parallelism {
            m.insert(
                "Parallelism".into(),
                json!(uint(&format!("--{p}-parallelism"), v)?),
            );
        }
        if let Some(v) = self.delay {
            m.insert("Delay".into(), json!(duration(&format!("--{p}-delay"), v)?));
        }
        if let Some(v) = self.monitor {
            m.insert(
                "Monitor".into(),
                json!(duration(&format!("--{p}-monitor"), v)?),
            );
        }
        if let Some(v) = self.failure_action {
            m.insert("FailureAction".into(), json!(v));
        }
        if let Some(v) = self.max_failure_ratio {
            m.insert(
                "MaxFailureRatio".into(),
                parse_f32(v).map_err(|e| flag_err(&format!("--{p}-max-failure-ratio"), v, e))?,
            );
        }
        if let Some(v) = self.order {
            m.insert("Order".into(), json!(v));
        }
        Ok(())
    }
}

fn update_flags(f: &ServiceFlags) -> UpdateFlags<'_> {
    UpdateFlags {
        parallelism: &f.update_parallelism,
        delay: &f.update_delay,
        monitor: &f.update_monitor,
        failure_action: &f.update_failure_action,
        max_failure_ratio: &f.update_max_failure_ratio,
        order: &f.update_order,
        prefix: "update",
    }
}

fn rollback_flags(f: &ServiceFlags) -> UpdateFlags<'_> {
    UpdateFlags {
        parallelism: &f.rollback_parallelism,
        delay: &f.rollback_delay,
        monitor: &f.rollback_monitor,
        failure_action: &f.rollback_failure_action,
        max_failure_ratio: &f.rollback_max_failure_ratio,
        order: &f.rollback_order,
        prefix: "rollback",
    }
}

fn restart_changed(f: &ServiceFlags) -> bool {
    f.restart_condition.is_some()
        || f.restart_delay.is_some()
        || f.restart_max_attempts.is_some()
        || f.restart_window.is_some()
}

/// Applies the `--restart-*` flags to `rp` (docker's default policy when
/// the service had none).
fn apply_restart(f: &ServiceFlags, rp: &mut Map<String, Value>) -> Result<(), SpecError> {
    if let Some(v) = &f.restart_condition {
        rp.insert("Condition".into(), json!(v));
    }
    if let Some(v) = &f.restart_delay {
        rp.insert("Delay".into(), json!(duration("--restart-delay", v)?));
    }
    if let Some(v) = &f.restart_max_attempts {
        rp.insert(
            "MaxAttempts".into(),
            json!(uint("--restart-max-attempts", v)?),
        );
    }
    if let Some(v) = &f.restart_window {
        rp.insert("Window".into(), json!(duration("--restart-window", v)?));
    }
    Ok(())
}

fn default_restart_policy() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("Condition".into(), json!("any"));
    m.insert("Delay".into(), json!(5_000_000_000i64));
    m.insert("MaxAttempts".into(), json!(0));
    m
}

/// Flag values checked before anything is sent, in docker's flag order.
fn check_common(f: &ServiceFlags) -> Result<(), SpecError> {
    if let Some(v) = &f.replicas {
        uint("--replicas", v)?;
    }
    for (flag, v) in [
        ("--init", &f.init),
        ("--read-only", &f.read_only),
        ("-t, --tty", &f.tty),
    ] {
        if let Some(v) = v {
            boolean(flag, v)?;
        }
    }
    if let Some(v) = &f.stop_grace_period {
        duration("--stop-grace-period", v)?;
    }
    if let Some(v) = &f.entrypoint {
        shlex(v).map_err(|e| flag_err("--entrypoint", v, e))?;
    }
    let mut scratch = Map::new();
    apply_restart(f, &mut scratch)?;
    update_flags(f).apply(&mut scratch)?;
    rollback_flags(f).apply(&mut scratch)?;
    Ok(())
}

/// What `service create` needs besides the spec: the secrets to resolve.
pub(crate) struct CreatePlan {
    /// The spec without `Secrets`.
    pub(crate) spec: Value,
    pub(crate) secrets: Vec<SecretRequest>,
}

/// docker's `ToService` for `service create`.
pub(crate) fn create_spec(a: &ServiceCreateArgs) -> Result<CreatePlan, SpecError> {
    let f = &a.common;
    check_common(f)?;
    for l in &a.labels {
        validate_label("-l, --label", l)?;
    }
    for l in &a.container_labels {
        validate_label("--container-label", l)?;
    }
    let mut env = Vec::new();
    for e in &a.env {
        env.push(validate_env("-e, --env", e)?);
    }
    let secrets = parse_secrets("--secret", &a.secrets)?;
    let (image, args) = match a.image_and_args.split_first() {
        Some((i, rest)) => (i.clone(), rest.to_vec()),
        None => (String::new(), Vec::new()),
    };

    let env = make_env(&a.env_file, &env)?;
    let replicas = match &f.replicas {
        Some(v) => Some(uint("--replicas", v)?),
        None => None,
    };
    let mode_name = a.mode.as_deref().unwrap_or("replicated");
    let mode = match mode_name {
        "global" => {
            if replicas.is_some() {
                return Err(SpecError::Other(
                    "replicas can only be used with replicated or replicated-job mode".into(),
                ));
            }
            json!({"Global": {}})
        }
        "replicated" => json!({"Replicated": {"Replicas": replicas}}),
        "replicated-job" => {
            json!({"ReplicatedJob": {"MaxConcurrent": replicas, "TotalCompletions": replicas}})
        }
        "global-job" => {
            if replicas.is_some() {
                return Err(SpecError::Other(
                    "replicas can only be used with replicated or replicated-job mode".into(),
                ));
            }
            json!({"GlobalJob": {}})
        }
        other => {
            return Err(SpecError::Other(format!(
                "Unknown mode: {other}, only replicated and global supported"
            )));
        }
    };
    let update = update_flags(f);
    let rollback = rollback_flags(f);
    let is_job = matches!(mode_name, "replicated-job" | "global-job");
    if is_job && (update.any() || rollback.any()) {
        return Err(SpecError::Other(
            "update and rollback configuration is not supported for jobs".into(),
        ));
    }
    let update_config = if update.any() {
        let mut m = update_config_defaults();
        update.apply(&mut m)?;
        Value::Object(m)
    } else {
        Value::Null
    };
    let rollback_config = if rollback.any() {
        let mut m = update_config_defaults();
        rollback.apply(&mut m)?;
        Value::Object(m)
    } else {
        Value::Null
    };
    let restart = if restart_changed(f) {
        let mut rp = default_restart_policy();
        apply_restart(f, &mut rp)?;
        Value::Object(rp)
    } else {
        Value::Null
    };
    let command = match &f.entrypoint {
        Some(v) => Value::from(shlex(v).map_err(|e| flag_err("--entrypoint", v, e))?),
        None => Value::Null,
    };
    let bool_flag = |flag: &str, v: &Option<String>| -> Result<bool, SpecError> {
        match v {
            Some(v) => boolean(flag, v),
            None => Ok(false),
        }
    };
    let stop_grace = match &f.stop_grace_period {
        Some(v) => json!(duration("--stop-grace-period", v)?),
        None => Value::Null,
    };
    let image = lockbox_format::image_with_tag(&image).unwrap_or(image);
    let spec = json!({
        "Name": a.name.clone().unwrap_or_default(),
        "Labels": kv_map(&a.labels),
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Labels": kv_map(&a.container_labels),
                "Command": command,
                "Args": if args.is_empty() { Value::Null } else { Value::from(args) },
                "Hostname": f.hostname.clone().unwrap_or_default(),
                "Env": env,
                "Dir": f.workdir.clone().unwrap_or_default(),
                "User": f.user.clone().unwrap_or_default(),
                "Groups": a.groups,
                "Init": bool_flag("--init", &f.init)?,
                "StopSignal": f.stop_signal.clone().unwrap_or_default(),
                "TTY": bool_flag("-t, --tty", &f.tty)?,
                "ReadOnly": bool_flag("--read-only", &f.read_only)?,
                "StopGracePeriod": stop_grace,
                "DNSConfig": {},
            },
            "Resources": {"Limits": {}, "Reservations": {}},
            "RestartPolicy": restart,
            "Placement": {"Constraints": a.constraints},
        },
        "Mode": mode,
        "UpdateConfig": update_config,
        "RollbackConfig": rollback_config,
        "EndpointSpec": {"Mode": f.endpoint_mode.clone().unwrap_or_else(|| "vip".into()).to_lowercase()},
    });
    Ok(CreatePlan { spec, secrets })
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        _ => unreachable!("just made an object"),
    }
}

/// The object at `key` of `m`, created when missing or null.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key.to_string()).or_insert(Value::Null);
    obj(v)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether any flag other than `--rollback`, `--detach`, `--quiet` was given.
pub(crate) fn other_than_rollback(a: &ServiceUpdateArgs) -> bool {
    let f = &a.common;
    let options = [
        &f.workdir,
        &f.user,
        &f.hostname,
        &f.entrypoint,
        &f.replicas,
        &f.restart_condition,
        &f.restart_delay,
        &f.restart_max_attempts,
        &f.restart_window,
        &f.update_parallelism,
        &f.update_delay,
        &f.update_monitor,
        &f.update_failure_action,
        &f.update_max_failure_ratio,
        &f.update_order,
        &f.rollback_parallelism,
        &f.rollback_delay,
        &f.rollback_monitor,
        &f.rollback_failure_action,
        &f.rollback_max_failure_ratio,
        &f.rollback_order,
        &f.stop_grace_period,
        &f.stop_signal,
        &f.init,
        &f.read_only,
        &f.tty,
        &f.endpoint_mode,
        &a.image,
        &a.args,
    ];
    let lists = [
        &a.secret_add,
        &a.secret_rm,
        &a.env_add,
        &a.env_rm,
        &a.label_add,
        &a.label_rm,
        &a.container_label_add,
        &a.container_label_rm,
        &a.constraint_add,
        &a.constraint_rm,
        &a.group_add,
        &a.group_rm,
    ];
    options.iter().any(|o| o.is_some())
        || lists.iter().any(|l| !l.is_empty())
        || a.force
        || f.no_resolve_image
}

/// Checks the update flags' values (docker does it while parsing flags).
pub(crate) fn check_update(a: &ServiceUpdateArgs) -> Result<Vec<SecretRequest>, SpecError> {
    check_common(&a.common)?;
    for l in &a.label_add {
        validate_label("--label-add", l)?;
    }
    for l in &a.container_label_add {
        validate_label("--container-label-add", l)?;
    }
    for e in &a.env_add {
        validate_env("--env-add", e)?;
    }
    if let Some(v) = &a.args {
        shlex(v).map_err(|e| flag_err("--args", v, e))?;
    }
    parse_secrets("--secret-add", &a.secret_add)
}

/// docker's `updateService` on `spec` (the service's current spec, as the
/// daemon returned it); secrets are handled by the caller.
pub(crate) fn apply_update(a: &ServiceUpdateArgs, spec: &mut Value) -> Result<(), SpecError> {
    let f = &a.common;
    let spec = obj(spec);

    // Service labels: remove (if any), then add.
    update_labels(spec, "Labels", &a.label_rm, &a.label_add);
    let task = child(spec, "TaskTemplate");
    {
        let cs = child(task, "ContainerSpec");
        update_labels(cs, "Labels", &a.container_label_rm, &a.container_label_add);
        if let Some(i) = &a.image {
            cs.insert("Image".into(), json!(i));
        }
        if let Some(v) = &a.args {
            cs.insert(
                "Args".into(),
                json!(shlex(v).map_err(|e| flag_err("--args", v, e))?),
            );
        }
        if let Some(v) = &f.entrypoint {
            cs.insert(
                "Command".into(),
                json!(shlex(v).map_err(|e| flag_err("--entrypoint", v, e))?),
            );
        }
        // Environment: remove by key, then add or replace (in place).
        let mut env: Vec<String> = strings(cs.get("Env"))
            .into_iter()
            .filter(|e| {
                let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
                !a.env_rm.iter().any(|r| r == key)
            })
            .collect();
        for add in &a.env_add {
            let add = validate_env("--env-add", add)?;
            let key = add
                .split_once('=')
                .map_or(add.as_str(), |(k, _)| k)
                .to_string();
            match env
                .iter_mut()
                .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
            {
                Some(slot) => *slot = add,
                None => env.push(add),
            }
        }
        cs.insert("Env".into(), json!(env));
        for (key, v) in [
            ("Dir", &f.workdir),
            ("User", &f.user),
            ("Hostname", &f.hostname),
        ] {
            if let Some(v) = v {
                cs.insert(key.into(), json!(v));
            }
        }
        if let Some(v) = &f.init {
            cs.insert("Init".into(), json!(boolean("--init", v)?));
        }
        if let Some(v) = &f.stop_grace_period {
            cs.insert(
                "StopGracePeriod".into(),
                json!(duration("--stop-grace-period", v)?),
            );
        }
    }
    if restart_changed(f) {
        let rp = task.entry("RestartPolicy").or_insert(Value::Null);
        if rp.is_null() {
            *rp = Value::Object(default_restart_policy());
        }
        apply_restart(f, obj(rp))?;
    }
    if !a.constraint_add.is_empty() || !a.constraint_rm.is_empty() {
        let placement = child(task, "Placement");
        let mut constraints = strings(placement.get("Constraints"));
        constraints.extend(a.constraint_add.iter().cloned());
        constraints.retain(|c| !a.constraint_rm.contains(c));
        constraints.sort();
        placement.insert("Constraints".into(), json!(constraints));
    }
    if let Some(v) = &f.replicas {
        let n = uint("--replicas", v)?;
        match spec
            .get_mut("Mode")
            .and_then(|m| m.get_mut("Replicated"))
            .filter(|r| !r.is_null())
        {
            Some(r) => {
                obj(r).insert("Replicas".into(), json!(n));
            }
            None => {
                return Err(SpecError::Other(
                    "replicas can only be used with replicated mode".into(),
                ));
            }
        }
    }
    for (key, flags) in [
        ("UpdateConfig", update_flags(f)),
        ("RollbackConfig", rollback_flags(f)),
    ] {
        if flags.any() {
            let c = spec.entry(key).or_insert(Value::Null);
            if c.is_null() {
                *c = Value::Object(update_config_defaults());
            }
            flags.apply(obj(c))?;
        }
    }
    if let Some(m) = &f.endpoint_mode {
        child(spec, "EndpointSpec").insert("Mode".into(), json!(m));
    }
    let task = child(spec, "TaskTemplate");
    if !a.group_add.is_empty() || !a.group_rm.is_empty() {
        let cs = child(task, "ContainerSpec");
        let mut groups = strings(cs.get("Groups"));
        groups.extend(a.group_add.iter().cloned());
        groups.retain(|g| !a.group_rm.contains(g));
        cs.insert("Groups".into(), json!(groups));
    }
    if a.force {
        let n = task.get("ForceUpdate").and_then(Value::as_u64).unwrap_or(0);
        task.insert("ForceUpdate".into(), json!(n + 1));
    }
    let cs = child(task, "ContainerSpec");
    if let Some(v) = &f.tty {
        cs.insert("TTY".into(), json!(boolean("-t, --tty", v)?));
    }
    if let Some(v) = &f.read_only {
        cs.insert("ReadOnly".into(), json!(boolean("--read-only", v)?));
    }
    if let Some(v) = &f.stop_signal {
        cs.insert("StopSignal".into(), json!(v));
    }
    Ok(())
}

fn update_labels(m: &mut Map<String, Value>, key: &str, rm: &[String], add: &[String]) {
    let present = m.get(key).is_some_and(|v| !v.is_null());
    if present && !rm.is_empty() {
        let labels = child(m, key);
        for r in rm {
            labels.remove(r);
        }
    }
    if !add.is_empty() {
        let labels = child(m, key);
        for (k, v) in kv_map(add) {
            labels.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_parsers() {
        assert_eq!(parse_uint("10"), Ok(10));
        assert_eq!(parse_uint("0400"), Ok(256));
        assert_eq!(parse_uint("0x10"), Ok(16));
        assert_eq!(
            parse_uint("x"),
            Err("strconv.ParseUint: parsing \"x\": invalid syntax".into())
        );
        assert_eq!(
            parse_uint("-1"),
            Err("strconv.ParseUint: parsing \"-1\": invalid syntax".into())
        );
        assert_eq!(
            shlex("sh -c 'echo hi; sleep 1' \"a b\""),
            Ok(vec![
                "sh".into(),
                "-c".into(),
                "echo hi; sleep 1".into(),
                "a b".into()
            ])
        );
        assert_eq!(
            csv_fields("\"source=a,b\",target=x"),
            Ok(vec!["source=a,b".into(), "target=x".into()])
        );
        assert_eq!(
            csv_fields("source=a,target=\"b,c\""),
            Err("parse error on line 1, column 17: bare \" in non-quoted-field".into())
        );
        assert_eq!(parse_f32("0.1"), Ok(json!(0.1)));
        assert_eq!(parse_f32("1"), Ok(json!(1)));
    }

    #[test]
    fn secrets_like_docker() {
        let s = parse_secret("src=db,target=/run/x,uid=1,gid=2,mode=0400");
        let s = s.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (
                s.source.as_str(),
                s.target.as_str(),
                s.uid.as_str(),
                s.gid.as_str(),
                s.mode
            ),
            ("db", "/run/x", "1", "2", 256)
        );
        let s = parse_secret("db").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((s.target.as_str(), s.mode), ("db", 292));
        assert_eq!(
            parse_secret("a=b").err(),
            Some("invalid field in secret request: a".into())
        );
        assert_eq!(
            parse_secret("mode=abc,src=x").err(),
            Some(
                "invalid mode specified: strconv.ParseUint: parsing \"abc\": invalid syntax".into()
            )
        );
        assert_eq!(
            parse_secret("target=x").err(),
            Some("source is required".into())
        );
        assert_eq!(
            parse_secret("src").err(),
            None,
            "a bare name is the simple syntax"
        );
        assert_eq!(
            parse_secret("src=a,b").err(),
            Some("invalid field 'b' must be a key=value pair".into())
        );
    }

    #[test]
    fn env_dedup() {
        let env = make_env(&[], &["A=1".into(), "B".into(), "A=2".into()]);
        assert_eq!(env.ok(), Some(vec!["B".to_string(), "A=2".to_string()]));
    }
}
