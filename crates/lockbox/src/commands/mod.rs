//! The CLI verbs. Data goes to stdout, messages and errors to stderr.

pub(crate) mod access;
pub(crate) mod audit;
mod env;
mod node;
mod run;
mod secret;
mod service;
mod stack;
mod swarm;
pub(crate) mod swarm_backup;
mod system;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use lockbox_client::{Client, Endpoint, TlsFiles};

use crate::cli::{Command, Global};

pub(crate) async fn run(g: &Global, cmd: Command) -> anyhow::Result<ExitCode> {
    // `env` needs no daemon.
    let cmd = match cmd {
        Command::Env(a) => return env::run(a),
        other => other,
    };
    let client = client(g, |k| std::env::var_os(k))?;
    match cmd {
        Command::Secret(c) => secret::run(&client, c).await,
        Command::Swarm(c) => swarm::run(&client, c).await,
        Command::Service(c) => service::run(&client, c).await,
        Command::Node(c) => node::run(&client, c).await,
        Command::Stack(c) => stack::run(&client, c).await,
        Command::Run(a) => run::run(&client, &a).await,
        Command::Version(f) => system::version(&client, f.format.as_deref()).await,
        Command::Info(f) => system::info(&client, f.format.as_deref()).await,
        Command::Whoami(f) => access::whoami(&client, f.format.as_deref()).await,
        Command::User(c) => access::user(&client, c).await,
        Command::Role(c) => access::role(&client, c).await,
        Command::Grant(c) => access::grant(&client, c).await,
        Command::Audit(c) => audit::run(&client, c).await,
        Command::Daemon(_) | Command::Env(_) => unreachable!("handled before"),
    }
}

/// The client for the global options: `-H`/`LOCKBOX_HOST` (else the default unix socket) and,
/// for `tcp://` addresses, TLS as the docker CLI sets it up: `--tlsverify` or a non-empty
/// `DOCKER_TLS_VERIFY`, the files from `--tlscacert`, `--tlscert`, `--tlskey`, each defaulting
/// to `ca.pem`, `cert.pem`, `key.pem` in `DOCKER_CERT_PATH`, else `DOCKER_CONFIG`, else
/// `~/.docker`. `env` reads the environment (a parameter for the tests).
fn client(g: &Global, env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<Client> {
    let host = g
        .host
        .last()
        .cloned()
        .unwrap_or_else(crate::paths::default_host);
    let endpoint = Endpoint::parse(&host)?;
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    let verify = g.tlsverify || set("DOCKER_TLS_VERIFY").is_some();
    if g.tls && !verify {
        bail!(
            "--tls without --tlsverify (TLS without verifying the daemon) is not supported: \
             lockbox always verifies the daemon's certificate; use --tlsverify with \
             --tlscacert, --tlscert and --tlskey (or DOCKER_CERT_PATH)"
        );
    }
    if !verify || !matches!(endpoint, Endpoint::Tcp(_)) {
        return Ok(Client::new(endpoint));
    }
    let explicit = g.tlscacert.is_some() && g.tlscert.is_some() && g.tlskey.is_some();
    let dir = || -> anyhow::Result<PathBuf> {
        if let Some(d) = set("DOCKER_CERT_PATH").or_else(|| set("DOCKER_CONFIG")) {
            return Ok(PathBuf::from(d));
        }
        match set("HOME") {
            Some(h) => Ok(PathBuf::from(h).join(".docker")),
            None => bail!(
                "TLS is on but HOME is not set: give the certificate files with --tlscacert, \
                 --tlscert and --tlskey, or their directory in DOCKER_CERT_PATH"
            ),
        }
    };
    let defaults = if explicit {
        TlsFiles::in_dir(&PathBuf::new())
    } else {
        TlsFiles::in_dir(&dir()?)
    };
    let files = TlsFiles {
        ca: g.tlscacert.clone().unwrap_or(defaults.ca),
        cert: g.tlscert.clone().unwrap_or(defaults.cert),
        key: g.tlskey.clone().unwrap_or(defaults.key),
    };
    let tls = files.load().with_context(|| {
        format!(
            "TLS client setup for {endpoint} (--tlsverify{})",
            if set("DOCKER_TLS_VERIFY").is_some() && !g.tlsverify {
                " from DOCKER_TLS_VERIFY"
            } else {
                ""
            }
        )
    })?;
    Ok(Client::with_tls(endpoint, tls))
}

/// Parses `key=value` (a bare `key` gives an empty value), as docker's `-l`.
pub(crate) fn key_value(s: &str) -> (String, String) {
    match s.split_once('=') {
        Some((k, v)) => (k.to_owned(), v.to_owned()),
        None => (s.to_owned(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(host: &str) -> Global {
        Global {
            host: vec![host.to_owned()],
            tls: false,
            tlsverify: false,
            tlscacert: None,
            tlscert: None,
            tlskey: None,
        }
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    fn err(g: &Global, vars: &[(&str, &str)]) -> String {
        format!("{:#}", client(g, env(vars)).unwrap_err())
    }

    #[test]
    fn plain_unless_asked() {
        let c = client(&global("tcp://127.0.0.1:2375"), env(&[])).unwrap();
        assert!(!c.uses_tls());
        // An empty DOCKER_TLS_VERIFY is off, as for docker.
        let c = client(
            &global("tcp://127.0.0.1:2375"),
            env(&[("DOCKER_TLS_VERIFY", "")]),
        )
        .unwrap();
        assert!(!c.uses_tls());
    }

    #[test]
    fn unix_sockets_never_use_tls() {
        let mut g = global("unix:///run/lockbox/lockbox.sock");
        g.tlsverify = true;
        let c = client(&g, env(&[("DOCKER_CERT_PATH", "/nonexistent")])).unwrap();
        assert!(!c.uses_tls());
    }

    #[test]
    fn tls_alone_is_refused() {
        let mut g = global("tcp://127.0.0.1:2376");
        g.tls = true;
        assert!(err(&g, &[]).contains("use --tlsverify"));
    }

    #[test]
    fn docker_tls_verify_is_on_when_non_empty_and_files_come_from_the_cert_path() {
        let g = global("tcp://127.0.0.1:2376");
        // Any non-empty value turns it on, "0" too (as docker reads it).
        let e = err(
            &g,
            &[
                ("DOCKER_TLS_VERIFY", "0"),
                ("DOCKER_CERT_PATH", "/nonexistent/certs"),
                ("HOME", "/nonexistent/home"),
            ],
        );
        assert!(e.contains("/nonexistent/certs/ca.pem"), "{e}");
        let e = err(
            &g,
            &[
                ("DOCKER_TLS_VERIFY", "1"),
                ("DOCKER_CONFIG", "/nonexistent/config"),
            ],
        );
        assert!(e.contains("/nonexistent/config/ca.pem"), "{e}");
        let e = err(
            &g,
            &[("DOCKER_TLS_VERIFY", "1"), ("HOME", "/nonexistent/home")],
        );
        assert!(e.contains("/nonexistent/home/.docker/ca.pem"), "{e}");
        assert!(err(&g, &[("DOCKER_TLS_VERIFY", "1")]).contains("HOME is not set"));
    }

    #[test]
    fn flags_override_each_default() {
        let mut g = global("tcp://127.0.0.1:2376");
        g.tlsverify = true;
        g.tlscacert = Some("/flag/ca.pem".into());
        let e = err(&g, &[("DOCKER_CERT_PATH", "/nonexistent/certs")]);
        assert!(e.contains("/flag/ca.pem"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        g.tlscacert = Some(ca);
        let e = err(&g, &[("DOCKER_CERT_PATH", "/nonexistent/certs")]);
        assert!(e.contains("/nonexistent/certs/cert.pem"), "{e}");
    }
}
