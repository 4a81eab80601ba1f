//! `lockbox user bundle`: issue a client certificate and write the files docker's `--tlsverify`
//! reads from `DOCKER_CERT_PATH`. The private key goes to `key.pem` (0600) and nowhere else.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use http::Method;
use lockbox_client::{Client, Endpoint};
use serde_json::{Value, json};
use zeroize::{Zeroize as _, Zeroizing};

use super::{seg, send, str_of};

/// The files of a bundle: name, answer field, mode.
const FILES: [(&str, &str, u32); 3] = [
    ("ca.pem", "Ca", 0o644),
    ("cert.pem", "Cert", 0o644),
    ("key.pem", "Key", 0o600),
];

/// What `POST /lockbox/v1/users/{name}/bundle` answered; the key is wiped on drop.
struct Bundle {
    ca: String,
    cert: String,
    key: Zeroizing<String>,
    serial: String,
    not_after: String,
}

impl Bundle {
    /// Takes the bundle out of the answer, leaving no copy of the key in `v`.
    fn take(v: &mut Value) -> anyhow::Result<Bundle> {
        let mut key = Zeroizing::new(String::new());
        if let Some(Value::String(k)) = v.get_mut("Key") {
            std::mem::swap(&mut *key, k);
        }
        let b = Bundle {
            ca: str_of(v, "Ca").to_owned(),
            cert: str_of(v, "Cert").to_owned(),
            key,
            serial: str_of(v, "Serial").to_owned(),
            not_after: str_of(v, "NotAfter").to_owned(),
        };
        if b.ca.is_empty() || b.cert.is_empty() || b.key.is_empty() {
            bail!("unexpected response from daemon: the bundle lacks Ca, Cert or Key");
        }
        Ok(b)
    }

    fn pem(&self, field: &str) -> &str {
        match field {
            "Ca" => &self.ca,
            "Cert" => &self.cert,
            _ => &self.key,
        }
    }
}

pub(super) async fn run(
    client: &Client,
    name: &str,
    output: Option<PathBuf>,
    days: Option<u32>,
    force: bool,
) -> anyhow::Result<ExitCode> {
    let dir = output.unwrap_or_else(|| PathBuf::from(format!("{name}-bundle")));
    // Refuse before a certificate is issued for nothing.
    check_target(&dir, force)?;
    let body = match days {
        Some(d) => json!({ "ValidDays": d }),
        None => json!({}),
    };
    let resp = send(
        client,
        Method::POST,
        &format!("/lockbox/v1/users/{}/bundle", seg(name)),
        Some(&body),
    )
    .await?;
    let parsed = resp.json();
    // The body held the key: wipe it if nothing else shares it.
    if let Ok(mut b) = resp.body.try_into_mut() {
        b.as_mut().zeroize();
    }
    let mut answer = parsed?;
    let bundle = Bundle::take(&mut answer)?;
    let dir = match write_files(&dir, &bundle, force) {
        Ok(d) => d,
        Err(e) => {
            // Nobody holds the key: the certificate must not stay valid.
            let revoked = send(
                client,
                Method::POST,
                &format!("/lockbox/v1/users/{}/revoke", seg(name)),
                Some(&json!({ "Serial": bundle.serial })),
            )
            .await;
            return Err(match revoked {
                Ok(_) => e.context(format!("certificate {} was revoked again", bundle.serial)),
                Err(r) => e.context(format!(
                    "certificate {} could not be revoked ({r}): run `lockbox user revoke {name} --serial {}`",
                    bundle.serial, bundle.serial
                )),
            });
        }
    };
    println!("{}", bundle.serial);
    eprint!("{}", usage_text(name, &bundle, &dir, client.endpoint()));
    Ok(ExitCode::SUCCESS)
}

/// Fails if a file of the bundle exists (without `--force`) or `dir` is not a directory.
fn check_target(dir: &Path, force: bool) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if !m.is_dir() => bail!("{} exists and is not a directory", dir.display()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot use {}", dir.display())),
    }
    if force {
        return Ok(());
    }
    for (file, _, _) in FILES {
        let p = dir.join(file);
        if std::fs::symlink_metadata(&p).is_ok() {
            bail!(
                "{} already exists: use --force to overwrite it",
                p.display()
            );
        }
    }
    Ok(())
}

/// Creates `dir` (0700) if needed and writes the files; returns the absolute directory.
/// On failure the files written so far are removed.
fn write_files(dir: &Path, bundle: &Bundle, force: bool) -> anyhow::Result<PathBuf> {
    if std::fs::symlink_metadata(dir).is_err() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut written = Vec::new();
    for (file, field, mode) in FILES {
        let path = dir.join(file);
        if let Err(e) = write_one(&path, bundle.pem(field), mode, force) {
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        written.push(path);
    }
    std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))
}

/// Writes a new file with `mode` (an existing one is replaced only with `force`; it is removed
/// first, so the mode applies and no symlink is followed).
fn write_one(path: &Path, text: &str, mode: u32, force: bool) -> anyhow::Result<()> {
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", path.display())),
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// What `bundle` tells on stderr: where the files are and how docker uses them.
fn usage_text(name: &str, bundle: &Bundle, dir: &Path, endpoint: &Endpoint) -> String {
    let (host, placeholder) = match endpoint {
        Endpoint::Tcp(a) => (format!("tcp://{a}"), false),
        Endpoint::Unix(_) => ("tcp://<host>:<port>".to_owned(), true),
    };
    let until = if bundle.not_after.is_empty() {
        String::new()
    } else {
        format!(", valid until {}", bundle.not_after)
    };
    let mut out = format!(
        "Wrote a client certificate for {name} (serial {}{until}) to {}:\n\
         ca.pem, cert.pem and key.pem (the private key, mode 0600: keep it private).\n\
         To use it with docker:\n\n    export DOCKER_HOST={} DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH={}\n",
        bundle.serial,
        dir.display(),
        shell_quote(&host),
        shell_quote(&dir.display().to_string()),
    );
    if placeholder {
        out.push_str("\n(replace <host>:<port> with the address of the daemon's TLS listener)\n");
    }
    out
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt as _;

    fn sample() -> Bundle {
        let mut v = json!({"Ca": "CA PEM\n", "Cert": "CERT PEM\n", "Key": "KEY PEM\n",
                           "Serial": "3f2a", "NotAfter": "2027-11-23T10:00:00Z"});
        let b = Bundle::take(&mut v).unwrap();
        assert_eq!(v["Key"], json!(""), "the key must not stay in the answer");
        b
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn writes_files_with_modes_and_refuses_to_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("alice-bundle");
        let b = sample();
        check_target(&dir, false).unwrap();
        let abs = write_files(&dir, &b, false).unwrap();
        assert!(abs.is_absolute());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join("key.pem")).unwrap(),
            "KEY PEM\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            "CA PEM\n"
        );
        let err = check_target(&dir, false).unwrap_err().to_string();
        assert!(err.contains("ca.pem already exists"), "{err}");
        assert!(err.contains("--force"), "{err}");
        // --force replaces, and a loose mode left on the old key does not survive.
        std::fs::set_permissions(dir.join("key.pem"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        check_target(&dir, true).unwrap();
        write_files(&dir, &b, true).unwrap();
        assert_eq!(mode(&dir.join("key.pem")), 0o600);
        // Without --force, writing over an existing file fails and removes nothing it did not
        // write.
        std::fs::remove_file(dir.join("ca.pem")).unwrap();
        assert!(write_files(&dir, &b, false).is_err());
        assert!(!dir.join("ca.pem").exists());
        assert!(dir.join("cert.pem").exists());
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(check_target(&f, true).is_err());
    }

    #[test]
    fn usage_names_host_and_never_the_key() {
        let b = sample();
        let tcp = usage_text(
            "alice",
            &b,
            Path::new("/home/a/alice bundle"),
            &Endpoint::Tcp("10.0.0.1:2376".into()),
        );
        assert!(
            tcp.contains("export DOCKER_HOST=tcp://10.0.0.1:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH='/home/a/alice bundle'\n"),
            "{tcp}"
        );
        assert!(tcp.contains("serial 3f2a, valid until 2027-11-23T10:00:00Z"));
        assert!(!tcp.contains("KEY PEM"));
        assert!(!tcp.contains("<host>"));
        let unix = usage_text(
            "alice",
            &b,
            Path::new("/b"),
            &Endpoint::Unix("/run/lockbox.sock".into()),
        );
        assert!(
            unix.contains(
                "DOCKER_HOST='tcp://<host>:<port>' DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=/b"
            ),
            "{unix}"
        );
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_quote("/a/b-c_d.e"), "/a/b-c_d.e");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
