//! `lockbox swarm init|update|unlock|unlock-key|join-token|leave|rotate-key`; `backup` and
//! `restore` are in `swarm_backup.rs`.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use http::Method;
use lockbox_client::Client;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::cli::SwarmCmd;

pub(crate) async fn run(client: &Client, cmd: SwarmCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SwarmCmd::Init {
            autolock,
            advertise_addr,
            listen_addr,
            force_new_cluster,
        } => {
            init(
                client,
                autolock,
                advertise_addr,
                listen_addr,
                force_new_cluster,
            )
            .await
        }
        SwarmCmd::Join {
            token,
            advertise_addr,
            listen_addr,
            availability,
            remote,
        } => {
            join(
                client,
                token,
                advertise_addr,
                listen_addr,
                availability,
                remote,
            )
            .await
        }
        SwarmCmd::Update { autolock } => update(client, autolock).await,
        SwarmCmd::Unlock => unlock(client).await,
        SwarmCmd::UnlockKey { rotate, quiet } => unlock_key(client, rotate, quiet).await,
        SwarmCmd::JoinToken {
            rotate,
            quiet,
            role,
        } => join_token(client, rotate, quiet, &role).await,
        SwarmCmd::Leave { force } => leave(client, force).await,
        SwarmCmd::RotateKey => rotate_key(client).await,
        SwarmCmd::Backup(a) => super::swarm_backup::backup(client, a).await,
        SwarmCmd::Restore(a) => super::swarm_backup::restore(a).await,
    }
}

fn print_unlock_key(key: &str) {
    println!(
        "To unlock a swarm manager after it restarts, run the `lockbox swarm unlock`\n\
         command and provide the following key:\n\n    {key}\n\n\
         Please remember to store this key in a password manager, since without it you\n\
         will not be able to restart the manager."
    );
}

async fn join(
    client: &Client,
    token: String,
    advertise: Option<String>,
    listen: String,
    availability: String,
    remote: String,
) -> anyhow::Result<ExitCode> {
    let token = Zeroizing::new(token);
    // The token is a credential, not a secret value; it is only sent to the local daemon.
    let body = json!({
        "ListenAddr": listen,
        "AdvertiseAddr": advertise.unwrap_or_default(),
        "RemoteAddrs": [remote],
        "JoinToken": token.as_str(),
        "Availability": availability,
    });
    eprintln!("joining the swarm at {remote} ...");
    client
        .request(Method::POST, "/swarm/join", Some(&body))
        .await?;
    println!("This node joined a swarm.");
    Ok(ExitCode::SUCCESS)
}

async fn init(
    client: &Client,
    autolock: bool,
    advertise: Option<String>,
    listen: String,
    force_new_cluster: bool,
) -> anyhow::Result<ExitCode> {
    let body = json!({
        "ListenAddr": listen,
        "AdvertiseAddr": advertise.unwrap_or_default(),
        "ForceNewCluster": force_new_cluster,
        "Spec": { "EncryptionConfig": { "AutoLockManagers": autolock } },
        "AutoLockManagers": autolock,
    });
    let id = client
        .request(Method::POST, "/swarm/init", Some(&body))
        .await?
        .json()?;
    let id = id.as_str().unwrap_or_default().to_owned();
    let node = client.get(&format!("/nodes/{id}")).await?;
    let swarm = client.get("/swarm").await?;
    let addr = node
        .pointer("/ManagerStatus/Addr")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let token = swarm
        .pointer("/JoinTokens/Worker")
        .and_then(Value::as_str)
        .unwrap_or_default();
    println!("Swarm initialized: current node ({id}) is now a manager.\n");
    println!(
        "To add a worker to this swarm, run the following command:\n\n    lockbox swarm join --token {token} {addr}\n"
    );
    println!(
        "To add a manager to this swarm, run 'lockbox swarm join-token manager' and follow the instructions.\n"
    );
    if autolock {
        let key = client.get("/swarm/unlockkey").await?;
        let key = Zeroizing::new(
            key.get("UnlockKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        print_unlock_key(&key);
    }
    Ok(ExitCode::SUCCESS)
}

async fn update(client: &Client, autolock: Option<bool>) -> anyhow::Result<ExitCode> {
    let swarm = client.get("/swarm").await?;
    let version = swarm
        .pointer("/Version/Index")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut spec = swarm.get("Spec").cloned().unwrap_or_else(|| json!({}));
    let was = spec
        .pointer("/EncryptionConfig/AutoLockManagers")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(a) = autolock
        && let Some(o) = spec.as_object_mut()
    {
        o.insert("EncryptionConfig".into(), json!({ "AutoLockManagers": a }));
    }
    let path = format!(
        "/swarm/update?version={version}&rotateWorkerToken=false&rotateManagerToken=false&rotateManagerUnlockKey=false"
    );
    client.request(Method::POST, &path, Some(&spec)).await?;
    eprintln!("Swarm updated.");
    if autolock == Some(true) && !was {
        let key = client.get("/swarm/unlockkey").await?;
        let key = Zeroizing::new(
            key.get("UnlockKey")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        );
        print_unlock_key(&key);
    }
    Ok(ExitCode::SUCCESS)
}

async fn unlock(client: &Client) -> anyhow::Result<ExitCode> {
    let info = client.get("/info").await?;
    match info
        .pointer("/Swarm/LocalNodeState")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "inactive" => bail!("Error: This node is not part of a swarm"),
        "locked" => {}
        _ => bail!("Error: swarm is not locked"),
    }
    let stdin = std::io::stdin();
    let line = if stdin.is_terminal() {
        super::swarm_backup::read_hidden("Enter unlock key: ")?
    } else {
        let mut line = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the unlock key")?;
        line
    };
    let key = Zeroizing::new(line.trim().to_owned());
    let mut body = json!({ "UnlockKey": key.as_str() });
    let r = client
        .request(Method::POST, "/swarm/unlock", Some(&body))
        .await;
    if let Some(Value::String(s)) = body.get_mut("UnlockKey") {
        zeroize::Zeroize::zeroize(s);
    }
    r?;
    Ok(ExitCode::SUCCESS)
}

async fn unlock_key(client: &Client, rotate: bool, quiet: bool) -> anyhow::Result<ExitCode> {
    if rotate {
        let swarm = client.get("/swarm").await?;
        if !swarm
            .pointer("/Spec/EncryptionConfig/AutoLockManagers")
            .and_then(Value::as_bool)
            .unwrap_or(false)
        {
            bail!("cannot rotate because autolock is not turned on");
        }
        let version = swarm
            .pointer("/Version/Index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let spec = swarm.get("Spec").cloned().unwrap_or_else(|| json!({}));
        let path = format!(
            "/swarm/update?version={version}&rotateWorkerToken=false&rotateManagerToken=false&rotateManagerUnlockKey=true"
        );
        client.request(Method::POST, &path, Some(&spec)).await?;
        if !quiet {
            println!("Successfully rotated manager unlock key.\n");
        }
    }
    let key = client.get("/swarm/unlockkey").await?;
    let key = Zeroizing::new(
        key.get("UnlockKey")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    );
    if key.is_empty() {
        bail!("no unlock key is set");
    }
    if quiet {
        println!("{}", key.as_str());
    } else {
        print_unlock_key(&key);
    }
    Ok(ExitCode::SUCCESS)
}

async fn join_token(
    client: &Client,
    rotate: bool,
    quiet: bool,
    role: &str,
) -> anyhow::Result<ExitCode> {
    let (worker, manager) = match role {
        "worker" => (true, false),
        "manager" => (false, true),
        _ => bail!("unknown role {role}"),
    };
    if rotate {
        let swarm = client.get("/swarm").await?;
        let version = swarm
            .pointer("/Version/Index")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let spec = swarm.get("Spec").cloned().unwrap_or_else(|| json!({}));
        let path = format!(
            "/swarm/update?version={version}&rotateWorkerToken={worker}&rotateManagerToken={manager}&rotateManagerUnlockKey=false"
        );
        client.request(Method::POST, &path, Some(&spec)).await?;
        if !quiet {
            println!("Successfully rotated {role} join token.\n");
        }
    }
    let swarm = client.get("/swarm").await?;
    let token = if worker {
        "/JoinTokens/Worker"
    } else {
        "/JoinTokens/Manager"
    };
    let token = swarm
        .pointer(token)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if quiet {
        println!("{token}");
        return Ok(ExitCode::SUCCESS);
    }
    let info = client.get("/info").await?;
    let id = info
        .pointer("/Swarm/NodeID")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let node = client.get(&format!("/nodes/{id}")).await?;
    let addr = node
        .pointer("/ManagerStatus/Addr")
        .and_then(Value::as_str)
        .unwrap_or_default();
    println!(
        "To add a {role} to this swarm, run the following command:\n\n    lockbox swarm join --token {token} {addr}\n"
    );
    Ok(ExitCode::SUCCESS)
}

async fn leave(client: &Client, force: bool) -> anyhow::Result<ExitCode> {
    let path = if force {
        "/swarm/leave?force=1"
    } else {
        "/swarm/leave"
    };
    client.request(Method::POST, path, None).await?;
    println!("Node left the swarm.");
    Ok(ExitCode::SUCCESS)
}

async fn rotate_key(client: &Client) -> anyhow::Result<ExitCode> {
    eprintln!("Rotating the data encryption key and re-encrypting the store...");
    let r = client
        .request(Method::POST, "/lockbox/v1/swarm/rotate-key", None)
        .await?
        .json()?;
    println!(
        "Data encryption key rotated: key {} now seals the store ({} records re-encrypted).",
        r.get("KeyID").and_then(Value::as_u64).unwrap_or(0),
        r.get("Resealed").and_then(Value::as_u64).unwrap_or(0)
    );
    Ok(ExitCode::SUCCESS)
}
