//! Loading compose files: the seeds' files, interpolation, merging, warnings, errors, and the
//! conversion to Engine API bodies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use lockbox_compose::convert;
use lockbox_compose::{Error, LoadOptions, Project, SecretSource, load};
use proptest::prelude::*;
use serde_json::json;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

fn env(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_files<S: AsRef<str>>(files: &[S], vars: &[(&str, &str)]) -> Result<Project, Error> {
    load(&LoadOptions {
        files: files.iter().map(|f| f.as_ref().to_owned()).collect(),
        env: env(vars),
        ..LoadOptions::default()
    })
}

/// Seed 000's production file: external secrets under other names, `*_FILE` variables.
const SEED_000: &str = r#"version: '3.9'

services:
  api:
    image: roi-poc-api:latest
    secrets:
      - jwt_secret
      - jwt_refresh_secret
      - db_password
      - redis_password
    environment:
      # Use _FILE suffix to read from secret file
      JWT_SECRET_FILE: /run/secrets/jwt_secret
      JWT_REFRESH_SECRET_FILE: /run/secrets/jwt_refresh_secret
      DB_PASSWORD_FILE: /run/secrets/db_password
      REDIS_PASSWORD_FILE: /run/secrets/redis_password
    deploy:
      update_config:
        parallelism: 1
        delay: 10s
        failure_action: rollback
        order: start-first

x-secret-dependencies:
  - jwt_secret-v1

secrets:
  jwt_secret:
    external: true
    name: roi-poc-jwt-secret-v1
  jwt_refresh_secret:
    external: true
    name: roi-poc-jwt-refresh-secret-v1
  db_password:
    external: true
    name: roi-poc-db-password-v1
  redis_password:
    external: true
    name: roi-poc-redis-password-v1
"#;

#[test]
fn seed_000_external_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "docker-compose.prod.yml", SEED_000);
    let p = load_files(&[f], &[]).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let c = &p.compose;
    let jwt = &c.secrets["jwt_secret"];
    assert_eq!(jwt.source, SecretSource::External);
    assert_eq!(
        convert::secret_name("roi-poc", "jwt_secret", jwt),
        "roi-poc-jwt-secret-v1"
    );
    let api = &c.services["api"];
    let names: BTreeMap<String, String> = BTreeMap::new();
    let refs = convert::secret_refs("roi-poc", api, c, &names);
    let r = refs
        .iter()
        .find(|r| r.secret_name == "roi-poc-jwt-secret-v1")
        .unwrap();
    assert_eq!(
        (r.target.as_str(), r.uid.as_str(), r.mode),
        ("jwt_secret", "0", 0o444)
    );
    let spec = convert::service_spec("roi-poc", "api", api, c);
    assert_eq!(spec["Name"], "roi-poc_api");
    assert_eq!(
        spec["TaskTemplate"]["ContainerSpec"]["Env"][1],
        "JWT_REFRESH_SECRET_FILE=/run/secrets/jwt_refresh_secret"
    );
    assert_eq!(
        spec["UpdateConfig"],
        json!({"Parallelism": 1, "Delay": 10_000_000_000i64, "FailureAction": "rollback",
               "Monitor": 0, "MaxFailureRatio": 0.0, "Order": "start-first"})
    );
    assert_eq!(spec["Labels"][convert::LABEL_IMAGE], "roi-poc-api:latest");
    assert_eq!(spec["Labels"][convert::LABEL_NAMESPACE], "roi-poc");
    assert_eq!(
        spec["TaskTemplate"]["Networks"],
        json!([{"Target": "roi-poc_default", "Aliases": ["api"]}])
    );
    assert!(p.secret_problems().is_empty());
}

/// Seed 001: `file:` secrets, list environment with defaults, a folded `sh -c` command.
const SEED_001: &str = r#"services:
  postgres:
    image: postgres:16-alpine
    secrets:
      - postgres_password
    environment:
      - POSTGRES_USER=${POSTGRES_USER:-security}
      - POSTGRES_DB=${POSTGRES_DB:-security}
      - POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password
  redis:
    image: redis:7
    secrets:
      - redis_password
    environment:
      - REDIS_PASSWORD_FILE=/run/secrets/redis_password
    command: >-
      sh -c '
      if [ -f /run/secrets/redis_password ]; then
        REDIS_PASSWORD=$$(cat /run/secrets/redis_password)
        redis-server --requirepass "$$REDIS_PASSWORD"
      else
        redis-server
      fi
      '
secrets:
  postgres_password:
    file: ./secrets/postgres_password.txt
  redis_password:
    file: ./secrets/redis_password.txt
"#;

#[test]
fn seed_001_file_secrets_and_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "docker-compose.prod.yml", SEED_001);
    write(dir.path(), "secrets/postgres_password.txt", "pg");
    let p = load_files(&[f], &[("POSTGRES_DB", "prod")]).unwrap();
    let pg = &p.compose.services["postgres"];
    assert_eq!(pg.environment["POSTGRES_USER"].as_deref(), Some("security"));
    assert_eq!(pg.environment["POSTGRES_DB"].as_deref(), Some("prod"));
    let redis = &p.compose.services["redis"];
    let cmd = redis.command.clone().unwrap();
    assert_eq!(cmd[0], "sh");
    assert_eq!(cmd[1], "-c");
    assert!(
        cmd[2].contains("REDIS_PASSWORD=$(cat /run/secrets/redis_password)"),
        "{cmd:?}"
    );
    match &p.compose.secrets["postgres_password"].source {
        SecretSource::File(path) => {
            assert_eq!(path, &dir.path().join("secrets/postgres_password.txt"));
        }
        other => panic!("{other:?}"),
    }
    // The redis secret file is missing: reported with its name, nothing else.
    let problems = p.secret_problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].key, "redis_password");
    assert_eq!(
        problems[0].to_string(),
        "secret \"redis_password\": cannot read file ./secrets/redis_password.txt: no such file or directory"
    );
    assert_eq!(
        &**p.secret_value("postgres_password").unwrap().unwrap(),
        b"pg"
    );
}

/// Seed 002: long syntax with `mode: 0400`, an `api_key` external secret, and keys lockbox
/// does not run (`build`, `volumes`, `depends_on`, `networks.internal` is fine).
const SEED_002: &str = r#"services:
  api:
    build: ./api
    image: myapp
    secrets:
      - source: db_password
        target: database_password  # Custom name
        uid: '1000'
        gid: '1000'
        mode: 0400  # Read-only by owner
      - api_key
    environment:
      NODE_ENV: production
      DB_PASSWORD_FILE: /run/secrets/database_password
    env_file:
      - .env.app
    networks:
      - frontend
      - backend
    depends_on:
      - db
  db:
    image: postgres:16-alpine
    volumes:
      - postgres_data:/var/lib/postgresql/data
    networks:
      - backend

secrets:
  db_password:
    file: ./secrets/db_password.txt
  api_key:
    external: true

networks:
  frontend:
  backend:
    internal: true

volumes:
  postgres_data:
"#;

#[test]
fn seed_002_long_syntax_octal_mode_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "compose.yml", SEED_002);
    write(
        dir.path(),
        ".env.app",
        "LOG_LEVEL=info\nNODE_ENV=dev\nFROM_ENV\n",
    );
    let p = load_files(&[f], &[("FROM_ENV", "yes")]).unwrap();
    let api = &p.compose.services["api"];
    let s = &api.secrets[0];
    assert_eq!(s.mode, Some(0o400));
    assert_eq!(s.uid.as_deref(), Some("1000"));
    // environment wins over env_file; a bare name comes from the environment.
    assert_eq!(api.environment["NODE_ENV"].as_deref(), Some("production"));
    assert_eq!(api.environment["LOG_LEVEL"].as_deref(), Some("info"));
    assert_eq!(api.environment["FROM_ENV"].as_deref(), Some("yes"));
    let warned: Vec<String> = p.warnings.iter().map(|w| w.path.clone()).collect();
    assert_eq!(
        warned,
        vec![
            "services.api.build",
            "services.api.depends_on",
            "services.db.volumes",
            "volumes"
        ]
    );
    assert!(
        p.warnings[0]
            .to_string()
            .ends_with(":3:5: services.api.build: not supported by lockbox; ignored")
    );
    let plan = convert::networks("app", &p.compose);
    assert_eq!(
        plan.create.keys().collect::<Vec<_>>(),
        ["app_backend", "app_frontend"]
    );
    assert_eq!(plan.create["app_backend"]["Internal"], true);
    assert_eq!(plan.create["app_backend"]["Driver"], "overlay");
    let names = BTreeMap::new();
    let refs = convert::secret_refs("app", api, &p.compose, &names);
    assert_eq!(refs[0].secret_name, "api_key");
    assert_eq!(refs[1].secret_name, "app_db_password");
    assert_eq!(refs[1].target, "database_password");
    let ids = BTreeMap::from([("app_db_password".to_owned(), "ID1".to_owned())]);
    assert_eq!(
        convert::secret_references(&refs[1..], &ids),
        vec![
            json!({"File": {"Name": "database_password", "UID": "1000", "GID": "1000", "Mode": 256},
                    "SecretID": "ID1", "SecretName": "app_db_password"})
        ]
    );
    let yaml = p.to_yaml();
    assert!(yaml.contains("mode: 256"), "{yaml}");
}

#[test]
fn dotenv_beside_the_file_and_the_process_environment() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), ".env", "TAG=from-dotenv\nNAME=dotenv\n");
    let f = write(
        dir.path(),
        "c.yml",
        "services:\n  a:\n    image: busybox:${TAG}\n    command: echo ${NAME} $$HOME ${UNSET-dflt} ${EMPTY:-dflt2} ${EMPTY-kept}\n",
    );
    let p = load_files(&[&f], &[("NAME", "process"), ("EMPTY", "")]).unwrap();
    let a = &p.compose.services["a"];
    assert_eq!(a.image.as_deref(), Some("busybox:from-dotenv"));
    assert_eq!(
        a.command.clone().unwrap(),
        vec!["echo", "process", "$HOME", "dflt", "dflt2"]
    );
    // `${VAR:?message}` names the file, line and column.
    let f2 = write(
        dir.path(),
        "d.yml",
        "services:\n  a:\n    image: ${IMAGE:?set IMAGE}\n",
    );
    let e = load_files(&[&f2], &[]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{f2}:3:12: ")), "{e}");
    assert!(e.contains("set IMAGE"), "{e}");
    // --skip-interpolation leaves them.
    let p = load(&LoadOptions {
        files: vec![f],
        skip_interpolation: true,
        ..LoadOptions::default()
    })
    .unwrap();
    assert_eq!(
        p.compose.services["a"].image.as_deref(),
        Some("busybox:${TAG}")
    );
}

#[test]
fn several_files_merge_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(
        dir.path(),
        "base.yml",
        r#"services:
  api:
    image: app:1
    command: ["run"]
    environment: {A: "1", B: "2"}
    labels: [x=1]
    secrets: [db, {source: key, target: k1}]
    deploy:
      replicas: 2
      labels: {tier: api}
      update_config: {parallelism: 2}
secrets:
  db: {file: ./db.txt}
  key: {file: ./key.txt}
"#,
    );
    let over = write(
        dir.path(),
        "override.yml",
        r#"services:
  api:
    image: app:2
    environment:
      - B=3
      - C=4
    secrets:
      - source: key
        target: k2
    deploy:
      update_config: {order: start-first}
  worker:
    image: app:2
secrets:
  db: {environment: DB_PASSWORD}
"#,
    );
    let p = load_files(&[base, over], &[]).unwrap();
    let api = &p.compose.services["api"];
    assert_eq!(api.image.as_deref(), Some("app:2"));
    assert_eq!(api.command.clone().unwrap(), vec!["run"]);
    let env: Vec<(String, Option<String>)> = api.environment.clone().into_iter().collect();
    assert_eq!(
        env,
        vec![
            ("A".into(), Some("1".into())),
            ("B".into(), Some("3".into())),
            ("C".into(), Some("4".into()))
        ]
    );
    assert_eq!(api.secrets.len(), 2);
    assert_eq!(api.secrets[1].target.as_deref(), Some("k2"));
    assert_eq!(api.deploy.replicas, Some(2));
    let u = api.deploy.update_config.clone().unwrap();
    assert_eq!(
        (u.parallelism, u.order.as_deref()),
        (Some(2), Some("start-first"))
    );
    assert!(p.compose.services.contains_key("worker"));
    assert_eq!(
        p.compose.secrets["db"].source,
        SecretSource::Environment("DB_PASSWORD".into())
    );
    assert_eq!(
        p.secret_problems()[0].to_string(),
        "secret \"db\": environment variable DB_PASSWORD is not set"
    );
}

#[test]
fn errors_point_at_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let bad_yaml = write(
        dir.path(),
        "a.yml",
        "services:\n  api:\n    image: [x\n  b: 1\n",
    );
    let e = load_files(&[&bad_yaml], &[]).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{bad_yaml}:4:")), "{e}");
    let bad_type = write(
        dir.path(),
        "b.yml",
        "services:\n  api:\n    image: x\n    deploy:\n      replicas: many\n",
    );
    let e = load_files(&[&bad_type], &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{bad_type}:5:17: services.api.deploy.replicas: must be a non-negative integer, not \"many\""
        )
    );
    let undefined = write(
        dir.path(),
        "c.yml",
        "services:\n  api:\n    image: x\n    secrets: [nope]\n",
    );
    let e = load_files(&[&undefined], &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{undefined}:4:15: service api: undefined secret \"nope\"")
    );
    let no_image = write(dir.path(), "d.yml", "services:\n  api:\n    command: x\n");
    let e = load_files(&[no_image], &[]).unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid image reference for service api: no image specified"
    );
    let order = write(
        dir.path(),
        "e.yml",
        "services:\n  api:\n    image: x\n    deploy: {update_config: {order: sideways}}\n",
    );
    let e = load_files(&[order], &[]).unwrap_err().to_string();
    assert!(e.ends_with("services.api.deploy.update_config.order: must be one of start-first, stop-first, not \"sideways\""), "{e}");
    let missing = dir.path().join("missing.yml").display().to_string();
    let e = load_files(&[&missing], &[]).unwrap_err().to_string();
    assert_eq!(e, format!("open {missing}: no such file or directory"));
}

#[test]
fn unknown_keys_are_warned_about_and_extensions_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "a.yml",
        "x-top: 1\nservices:\n  api:\n    image: x\n    x-mine: 2\n    imagee: typo\n    deploy:\n      resources: {limits: {cpus: '1'}}\n      placement: {constraints: [node.role==manager]}\nsecrets:\n  s:\n    file: ./s\n    x-note: 1\n    bogus: 2\nwhatever: 3\n",
    );
    let p = load_files(&[f], &[]).unwrap();
    let w: Vec<String> = p
        .warnings
        .iter()
        .map(|w| format!("{}: {}", w.path, w.message))
        .collect();
    assert_eq!(
        w,
        vec![
            "services.api.imagee: unknown key; ignored",
            "services.api.deploy.resources: not supported by lockbox; ignored",
            "secrets.s.bogus: unknown key; ignored",
            "whatever: unknown key; ignored",
        ]
    );
    assert_eq!(
        p.compose.services["api"].deploy.constraints,
        vec!["node.role==manager"]
    );
}

#[test]
fn global_mode_replicated_defaults_and_restart_policy() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "a.yml",
        "services:\n  g:\n    image: host\n    entrypoint: /bin/sh -c\n    command: ['echo hi']\n    user: '1000'\n    working_dir: /tmp\n    labels: {c: d}\n    stop_grace_period: 1m30s\n    deploy:\n      mode: global\n      labels: [a=b]\n      restart_policy: {condition: on-failure, delay: 1s, max_attempts: 3, window: 2m}\n      rollback_config: {parallelism: 0, failure_action: continue}\n",
    );
    let p = load_files(&[f], &[]).unwrap();
    let spec = convert::service_spec("s", "g", &p.compose.services["g"], &p.compose);
    assert_eq!(spec["Mode"], json!({"Global": {}}));
    let cs = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(cs["Command"], json!(["/bin/sh", "-c"]));
    assert_eq!(cs["Args"], json!(["echo hi"]));
    assert_eq!(cs["User"], "1000");
    assert_eq!(cs["Dir"], "/tmp");
    assert_eq!(
        cs["Labels"],
        json!({"c": "d", "com.docker.stack.namespace": "s"})
    );
    assert_eq!(cs["StopGracePeriod"], 90_000_000_000i64);
    assert_eq!(
        spec["TaskTemplate"]["RestartPolicy"],
        json!({"Condition": "on-failure", "Delay": 1_000_000_000i64, "MaxAttempts": 3, "Window": 120_000_000_000i64})
    );
    assert_eq!(spec["RollbackConfig"]["Parallelism"], 0);
    assert_eq!(spec["Labels"]["a"], "b");
    let f = write(
        dir.path(),
        "b.yml",
        "services:\n  g:\n    image: host\n    deploy: {mode: global, replicas: 2}\n",
    );
    let e = load_files(&[f], &[]).unwrap_err().to_string();
    assert!(
        e.ends_with("replicas can only be used with replicated or replicated-job mode"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Properties

fn var_name() -> impl Strategy<Value = String> {
    "[A-Z_][A-Z0-9_]{0,12}"
}

/// Text safe inside a `${VAR:-...}` default of a plain scalar.
fn plain_default() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_./@%+=-]{0,12}"
}

fn load_text(text: &str, vars: &HashMap<String, String>) -> Result<Project, Error> {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "p.yml", text);
    load(&LoadOptions {
        files: vec![f],
        env: vars.clone(),
        ..LoadOptions::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, .. ProptestConfig::default() })]

    /// `${VAR}` gives the variable's value exactly, whatever it holds (values are not
    /// interpolated again), and `$$` a single `$`.
    #[test]
    fn braced_reference_gives_the_value(name in var_name(), value in "\\PC{0,40}") {
        let vars = HashMap::from([(name.clone(), value.clone())]);
        let text = format!("services:\n  a:\n    image: x\n    environment:\n      V: ${{{name}}}\n      W: a$$b${{{name}}}\n");
        let p = load_text(&text, &vars).unwrap();
        let env = &p.compose.services["a"].environment;
        prop_assert_eq!(env["V"].as_deref(), Some(value.as_str()));
        let w = format!("a$b{value}");
        prop_assert_eq!(env["W"].as_deref(), Some(w.as_str()));
    }

    /// `:-` and `-` defaults: unset takes the default, empty takes it only with `:-`.
    #[test]
    fn defaults(name in var_name(), dflt in plain_default(), state in 0u8..3, value in "[a-z0-9]{1,10}") {
        let mut vars = HashMap::new();
        match state {
            0 => {}
            1 => { vars.insert(name.clone(), String::new()); }
            _ => { vars.insert(name.clone(), value.clone()); }
        }
        let text = format!("services:\n  a:\n    image: x\n    environment:\n      C: ${{{name}:-{dflt}}}\n      D: ${{{name}-{dflt}}}\n");
        let p = load_text(&text, &vars).unwrap();
        let env = &p.compose.services["a"].environment;
        let (c, d) = match state {
            0 => (dflt.clone(), dflt.clone()),
            1 => (dflt.clone(), String::new()),
            _ => (value.clone(), value.clone()),
        };
        // An empty result may come back as "no value" filled from the environment: compare text.
        prop_assert_eq!(env["C"].clone().unwrap_or_default(), c);
        let d_got = env["D"].clone().unwrap_or_default();
        prop_assert_eq!(d_got, d);
    }

    /// `${VAR:?msg}` fails, naming the place, when the variable is unset or empty.
    #[test]
    fn required_variables(name in var_name(), msg in "[a-z ]{0,12}", set in proptest::bool::ANY) {
        let vars: HashMap<String, String> = if set {
            HashMap::from([(name.clone(), "v".to_owned())])
        } else {
            HashMap::new()
        };
        let text = format!("services:\n  a:\n    image: ${{{name}:?{msg}}}\n");
        let r = load_text(&text, &vars);
        if set {
            prop_assert_eq!(r.unwrap().compose.services["a"].image.clone(), Some("v".to_owned()));
        } else {
            let e = r.unwrap_err().to_string();
            prop_assert!(e.contains(":3:12: "), "{}", e);
        }
    }

    /// Environment given as a mapping or as a list reads the same.
    #[test]
    fn environment_list_and_map_agree(vars in proptest::collection::btree_map("[A-Za-z_][A-Za-z0-9_]{0,8}", "[a-zA-Z0-9 ./:-]{0,16}", 0..8)) {
        let mut map = String::from("services:\n  a:\n    image: x\n    environment:\n");
        let mut list = map.clone();
        for (k, v) in &vars {
            map.push_str(&format!("      {k}: '{v}'\n"));
            list.push_str(&format!("      - '{k}={v}'\n"));
        }
        if vars.is_empty() {
            map.push_str("      {}\n");
            list.push_str("      []\n");
        }
        let none = HashMap::new();
        let a = load_text(&map, &none).unwrap().compose.services["a"].environment.clone();
        let b = load_text(&list, &none).unwrap().compose.services["a"].environment.clone();
        prop_assert_eq!(&a, &b);
        let want: BTreeMap<String, Option<String>> = vars.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        prop_assert_eq!(a, want);
    }

    /// Secret modes: YAML 1.1 octal (`0400`), `0o400` strings and decimal agree.
    #[test]
    fn secret_modes(mode in 0u32..0o1000) {
        let forms = [format!("0{mode:o}"), format!("'0o{mode:o}'"), format!("{mode}")];
        for form in forms {
            let text = format!("services:\n  a:\n    image: x\n    secrets:\n      - source: s\n        mode: {form}\nsecrets:\n  s:\n    environment: S\n");
            let p = load_text(&text, &HashMap::new()).unwrap();
            prop_assert_eq!(p.compose.services["a"].secrets[0].mode, Some(mode));
        }
    }

    /// The loader never panics, whatever the bytes.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = load_text(&text, &HashMap::new());
    }

    /// Arbitrary YAML-ish structure from compose-like keys never panics either.
    #[test]
    fn structured_noise_never_panics(lines in proptest::collection::vec(
        ("[ ]{0,6}", prop::sample::select(vec!["services:", "secrets:", "api:", "image: x", "- a", "mode: 0400",
            "deploy:", "replicas: ${N:-2}", "environment:", "- A=1", "file: ./x", "external: true", "x-a: 1", "command: [a, b]"])),
        0..20)) {
        let text: String = lines.iter().map(|(indent, l)| format!("{indent}{l}\n")).collect();
        let _ = load_text(&text, &HashMap::new());
    }
}
