//! `lockbox swarm backup FILE` (online, through the daemon) and `lockbox swarm restore FILE`
//! (offline, straight into a data directory).
//!
//! The passphrase comes from `--passphrase-file`, else `LOCKBOX_BACKUP_PASSPHRASE`, else a
//! prompt when stdin is a terminal. The daemon seals the backup with it, so only ciphertext
//! crosses the socket back and reaches the disk; the file is written beside its final name
//! (0600), fsynced and renamed into place. A restore decrypts in memory and writes nothing
//! until the backup opened and the data directory is known to be free.

use std::io::{BufRead, IsTerminal, Write};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use http::Method;
use http_body_util::{BodyExt, Full};
use lockbox_client::Client;
use serde_json::Value;
use zeroize::Zeroizing;

/// The environment variable a passphrase may come from.
const PASSPHRASE_ENV: &str = "LOCKBOX_BACKUP_PASSPHRASE";

/// `swarm backup`.
#[derive(Debug, ClapArgs)]
pub(crate) struct BackupArgs {
    /// Where to write the encrypted backup (`-` for stdout)
    pub(crate) file: PathBuf,
    /// Read the passphrase from this file (its first line); else LOCKBOX_BACKUP_PASSPHRASE,
    /// else a prompt
    #[arg(long, value_name = "PATH")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

/// `swarm restore`.
#[derive(Debug, ClapArgs)]
pub(crate) struct RestoreArgs {
    /// The backup to restore
    pub(crate) file: PathBuf,
    /// The data directory to create (no daemon may be running on it) [default: the daemon's]
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Replace a store already in the data directory (its keys and data are erased)
    #[arg(long)]
    pub(crate) force: bool,
    /// Read the passphrase from this file (its first line); else LOCKBOX_BACKUP_PASSPHRASE,
    /// else a prompt
    #[arg(long, value_name = "PATH")]
    pub(crate) passphrase_file: Option<PathBuf>,
    /// For a swarm with autolock: protect the restored node with this unlock key (read from
    /// the file); without it a terminal is asked, else a new key is issued and printed
    #[arg(long, value_name = "PATH")]
    pub(crate) unlock_key_file: Option<PathBuf>,
}

/// Reads a line from the terminal without echoing it.
pub(crate) fn read_hidden(prompt: &str) -> anyhow::Result<Zeroizing<String>> {
    let stdin = std::io::stdin();
    let mut line = Zeroizing::new(String::new());
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let tty = rustix::stdio::stdin();
    let old = rustix::termios::tcgetattr(tty).ok();
    if let Some(mut t) = old.clone() {
        t.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(tty, rustix::termios::OptionalActions::Now, &t);
    }
    let r = stdin.lock().read_line(&mut line);
    if let Some(t) = old {
        let _ = rustix::termios::tcsetattr(tty, rustix::termios::OptionalActions::Now, &t);
    }
    eprintln!();
    r.context("reading from the terminal")?;
    strip_newline(&mut line);
    Ok(line)
}

/// Removes one trailing `\n` or `\r\n`.
fn strip_newline(s: &mut String) {
    if s.ends_with('\n') {
        s.pop();
        if s.ends_with('\r') {
            s.pop();
        }
    }
}

/// The first line of a file, read into a buffer that is wiped on drop.
fn first_line(path: &Path, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading the {what} file {}", path.display()))?,
    );
    let text = std::str::from_utf8(&bytes)
        .with_context(|| format!("the {what} file {} is not UTF-8 text", path.display()))?;
    let mut line = Zeroizing::new(text.lines().next().unwrap_or("").to_owned());
    strip_newline(&mut line);
    Ok(line)
}

/// The backup passphrase: `--passphrase-file`, else the environment, else a prompt (twice
/// with `confirm`). Refuses an empty one.
fn passphrase(file: Option<&Path>, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    let p = if let Some(path) = file {
        first_line(path, "passphrase")?
    } else if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
        let bytes = Zeroizing::new(v.into_vec());
        match std::str::from_utf8(&bytes) {
            Ok(s) => Zeroizing::new(s.to_owned()),
            Err(_) => bail!("{PASSPHRASE_ENV} is not UTF-8 text"),
        }
    } else if std::io::stdin().is_terminal() {
        let p = read_hidden("Backup passphrase: ")?;
        if confirm && !p.is_empty() {
            let again = read_hidden("Repeat the passphrase: ")?;
            if *again != *p {
                bail!("the passphrases do not match");
            }
        }
        p
    } else {
        bail!(
            "no backup passphrase: give --passphrase-file PATH, set {PASSPHRASE_ENV}, or run \
             the command on a terminal"
        );
    };
    if p.is_empty() {
        bail!("the backup passphrase is empty");
    }
    Ok(p)
}

/// `swarm backup FILE`.
pub(crate) async fn backup(client: &Client, a: BackupArgs) -> anyhow::Result<ExitCode> {
    let to_stdout = a.file.as_os_str() == "-";
    if !to_stdout && a.file.is_dir() {
        bail!("{} is a directory", a.file.display());
    }
    let pass = passphrase(a.passphrase_file.as_deref(), true)?;
    eprintln!("Taking an encrypted backup of the swarm state...");
    let (bytes, headers) = request_backup(client, &pass).await?;
    drop(pass);
    if to_stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)
            .context("writing the backup to stdout")?;
        out.flush().context("writing the backup to stdout")?;
    } else {
        write_private(&a.file, &bytes)?;
    }
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_owned()
    };
    let shown = if to_stdout {
        "stdout".to_owned()
    } else {
        a.file.display().to_string()
    };
    eprintln!(
        "Backup written to {shown} ({} bytes): {} secrets, {} services, {} tasks, {} nodes, \
         {} users, {} grants of cluster {} at store version {}.",
        bytes.len(),
        h("Lockbox-Backup-Secrets"),
        h("Lockbox-Backup-Services"),
        h("Lockbox-Backup-Tasks"),
        h("Lockbox-Backup-Nodes"),
        h("Lockbox-Backup-Users"),
        h("Lockbox-Backup-Grants"),
        h("Lockbox-Backup-Cluster"),
        h("Lockbox-Backup-Version"),
    );
    if h("Lockbox-Backup-Autolock") == "true" {
        eprintln!(
            "The swarm has autolock on: `lockbox swarm restore` protects the restored node with \
             an unlock key again (the current one if you give it, else a new one)."
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sends the backup request: the passphrase in a JSON body built in a buffer that is wiped
/// when sent. Returns the backup's bytes and the response headers.
async fn request_backup(
    client: &Client,
    pass: &str,
) -> anyhow::Result<(bytes::Bytes, http::HeaderMap)> {
    // Sized for the worst escaping, so the buffer never reallocates (leaving copies behind).
    let mut body = Zeroizing::new(Vec::with_capacity(pass.len() * 6 + 32));
    body.extend_from_slice(br#"{"Passphrase":"#);
    serde_json::to_writer(&mut *body, pass).context("encoding the request")?;
    body.push(b'}');
    let req = http::Request::builder()
        .method(Method::POST)
        .uri(format!(
            "/v{}/lockbox/v1/swarm/backup",
            lockbox_client::API_VERSION
        ))
        .header(http::header::HOST, "lockbox")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(bytes::Bytes::from_owner(body)))
        .context("building the request")?;
    let resp = client.send_request(req).await?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| client.transport_error(e))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        bail!("Error response from daemon: {message}");
    }
    Ok((bytes, headers))
}

/// Writes `bytes` to `path`: a new 0600 file beside it, fsynced, renamed over it, and the
/// directory fsynced. A failure leaves `path` as it was.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?
        .to_string_lossy()
        .into_owned();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{name}.tmp-{suffix}"));
    let result = (|| -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("chmod {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        drop(f);
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn time_text(t: lockbox_types::Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0))
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "?".into())
}

/// `swarm restore FILE`.
pub(crate) async fn restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let data_dir = a.data_dir.clone().unwrap_or_else(crate::paths::data_dir);
    // Refuse a busy or occupied directory before asking for anything.
    lockbox_core::check_restore_target(&data_dir, a.force)?;
    let meta = std::fs::metadata(&a.file)
        .with_context(|| format!("reading the backup {}", a.file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", a.file.display());
    }
    let file = std::fs::read(&a.file)
        .with_context(|| format!("reading the backup {}", a.file.display()))?;
    let pass = passphrase(a.passphrase_file.as_deref(), false)?;
    eprintln!("Decrypting {}...", a.file.display());
    let opened =
        tokio::task::spawn_blocking(move || lockbox_core::open_backup(&file, pass.as_bytes()))
            .await
            .context("decrypting the backup")??;
    let s = opened.summary().clone();
    eprintln!(
        "Backup of cluster {} taken on node {} at {} (store version {}): {} secrets, {} \
         services, {} tasks, {} networks, {} nodes, {} users, {} grants.",
        s.cluster_id,
        s.node_id,
        time_text(s.taken_at),
        s.version,
        s.secrets,
        s.services,
        s.tasks,
        s.networks,
        s.nodes,
        s.users,
        s.grants
    );
    let unlock_key = if !s.autolock {
        None
    } else if let Some(path) = &a.unlock_key_file {
        Some(first_line(path, "unlock key")?)
    } else if std::io::stdin().is_terminal() {
        let k = read_hidden(
            "The swarm has autolock on. Unlock key for the restored node (empty: issue a new one): ",
        )?;
        (!k.trim().is_empty()).then_some(k)
    } else {
        None
    };
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let opts = lockbox_core::RestoreOptions {
        data_dir: data_dir.clone(),
        force: a.force,
        hostname,
        unlock_key,
    };
    let report = tokio::task::spawn_blocking(move || lockbox_core::restore(opened, opts))
        .await
        .context("restoring")??;
    if report.replaced {
        eprintln!(
            "The store that was in {} was erased and replaced.",
            data_dir.display()
        );
    }
    eprintln!(
        "Restored into {}: node {} is the only manager of cluster {}.",
        data_dir.display(),
        report.node_id,
        report.cluster_id
    );
    if !report.dropped_managers.is_empty() {
        eprintln!(
            "Warning: the backed-up swarm had other managers ({}); they are no longer members \
             of this cluster. Remove them with `docker node rm --force` and join managers anew.",
            report.dropped_managers.join(", ")
        );
    }
    eprintln!(
        "Start the daemon on it:  lockbox daemon --data-dir {}",
        data_dir.display()
    );
    if report.autolock {
        eprintln!(
            "The restored node is autolocked: after starting the daemon, run `lockbox swarm \
             unlock` with its unlock key."
        );
        if let Some(key) = &report.new_unlock_key {
            println!(
                "To unlock the restored manager, run the `lockbox swarm unlock` command and \
                 provide the following key:\n\n    {}\n\nPlease remember to store this key in a \
                 password manager, since without it you will not be able to start the manager.",
                key.as_str()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_stripped() {
        for (input, want) in [
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            ("pw", "pw"),
            ("pw \n\n", "pw \n"),
            ("", ""),
        ] {
            let mut s = input.to_owned();
            strip_newline(&mut s);
            assert_eq!(s, want, "{input:?}");
        }
    }

    #[test]
    fn the_first_line_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "correct horse \r\nsecond line\n").unwrap();
        assert_eq!(
            first_line(&f, "passphrase").unwrap().as_str(),
            "correct horse "
        );
        std::fs::write(&f, "").unwrap();
        assert_eq!(first_line(&f, "passphrase").unwrap().as_str(), "");
    }

    #[test]
    fn private_writes_replace_the_file_atomically() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("b.lbx");
        write_private(&f, b"one").unwrap();
        write_private(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let mode = std::fs::metadata(&f).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(write_private(&dir.path().join("missing/b.lbx"), b"x").is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
