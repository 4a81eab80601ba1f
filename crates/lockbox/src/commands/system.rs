//! `lockbox version` and `lockbox info`.

use std::process::ExitCode;

use lockbox_client::Client;
use serde_json::Value;

fn s<'a>(v: &'a Value, p: &str) -> &'a str {
    v.pointer(p).and_then(Value::as_str).unwrap_or("")
}

pub(crate) async fn version(client: &Client, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let server = client.get("/version").await;
    let client_info = serde_json::json!({
        "Version": env!("CARGO_PKG_VERSION"),
        "ApiVersion": lockbox_client::API_VERSION,
        "Os": "linux",
        "Arch": std::env::consts::ARCH,
    });
    if let Some(f) = format {
        let data = serde_json::json!({ "Client": client_info, "Server": server.as_ref().ok() });
        let out = if f == "json" {
            format!("{data}\n")
        } else {
            lockbox_format::render(f, &data)? + "\n"
        };
        print!("{out}");
        server?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Client:");
    println!(" Version:           {}", env!("CARGO_PKG_VERSION"));
    println!(" API version:       {}", lockbox_client::API_VERSION);
    println!(" OS/Arch:           linux/{}", std::env::consts::ARCH);
    let server = server?;
    println!();
    println!("Server: {}", s(&server, "/Platform/Name"));
    println!(" Engine:");
    println!("  Version:          {}", s(&server, "/Version"));
    println!(
        "  API version:      {} (minimum version {})",
        s(&server, "/ApiVersion"),
        s(&server, "/MinAPIVersion")
    );
    println!(
        "  OS/Arch:          {}/{}",
        s(&server, "/Os"),
        s(&server, "/Arch")
    );
    println!("  Kernel version:   {}", s(&server, "/KernelVersion"));
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn info(client: &Client, format: Option<&str>) -> anyhow::Result<ExitCode> {
    let info = client.get("/info").await?;
    if let Some(f) = format {
        let out = if f == "json" {
            format!("{info}\n")
        } else {
            lockbox_format::render(f, &info)? + "\n"
        };
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Server:");
    println!(" Server Version: {}", s(&info, "/ServerVersion"));
    let state = s(&info, "/Swarm/LocalNodeState");
    println!(" Swarm: {state}");
    if state == "active" {
        println!("  NodeID: {}", s(&info, "/Swarm/NodeID"));
        println!(
            "  Is Manager: {}",
            info.pointer("/Swarm/ControlAvailable")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        );
        println!("  ClusterID: {}", s(&info, "/Swarm/Cluster/ID"));
        println!(
            "  Managers: {}",
            info.pointer("/Swarm/Managers")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        );
        println!(
            "  Nodes: {}",
            info.pointer("/Swarm/Nodes")
                .and_then(Value::as_u64)
                .unwrap_or(0)
        );
        let autolock = info
            .pointer("/Swarm/Cluster/Spec/EncryptionConfig/AutoLockManagers")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        println!("  Autolock Managers: {autolock}");
        println!("  Node Address: {}", s(&info, "/Swarm/NodeAddr"));
    }
    println!(" Kernel Version: {}", s(&info, "/KernelVersion"));
    println!(" Operating System: {}", s(&info, "/OperatingSystem"));
    println!(" OSType: {}", s(&info, "/OSType"));
    println!(" Architecture: {}", s(&info, "/Architecture"));
    println!(
        " CPUs: {}",
        info.get("NCPU").and_then(Value::as_u64).unwrap_or(0)
    );
    println!(
        " Total Memory: {} MiB",
        info.get("MemTotal").and_then(Value::as_u64).unwrap_or(0) / (1024 * 1024)
    );
    println!(" Name: {}", s(&info, "/Name"));
    println!(" Data Root: {}", s(&info, "/DockerRootDir"));
    Ok(ExitCode::SUCCESS)
}
