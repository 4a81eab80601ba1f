//! Separate hosts on one machine: a network namespace per node, each with a veth pair to a
//! bridge in a hub namespace, addressed in the loopback range (127.77.0.0/16, with
//! `route_localnet` so those addresses travel over the veth and nothing reaches a real
//! network). Everything is removed on drop. Needs root and `ip`.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespaces cannot be made here, if they cannot.
pub fn unavailable() -> Option<String> {
    if !super::is_root() {
        return Some("needs root (network namespaces)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is not installed".into()),
    }
}

/// A hub bridge and a namespace per node.
pub struct Net {
    tag: String,
    hub: String,
    nodes: Vec<String>,
}

impl Net {
    /// `n` nodes, addressed 127.77.0.11, .12, ...
    pub fn new(n: usize) -> Result<Net, String> {
        let tag = format!(
            "{:x}{:x}",
            std::process::id() % 0xffff,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("lbx{tag}h");
        ip(&["netns", "add", &hub])?;
        let mut net = Net {
            tag: tag.clone(),
            hub: hub.clone(),
            nodes: Vec::new(),
        };
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("lbx{tag}n{i}");
            ip(&["netns", "add", &ns])?;
            net.nodes.push(ns.clone());
            let (outer, inner) = (format!("lb{tag}v{i}"), format!("lb{tag}e{i}"));
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &outer, "netns", &hub])?;
            ip(&["link", "set", &inner, "netns", &ns])?;
            ip(&["-n", &ns, "link", "set", &inner, "name", "eth0"])?;
            ip(&["-n", &hub, "link", "set", &outer, "name", &format!("v{i}")])?;
            ip(&["-n", &hub, "link", "set", &format!("v{i}"), "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &format!("v{i}"), "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            // 127.0.0.0/8 is all local by default: keep only 127.0.0.1 on lo, so the node's
            // 127.77.x address is a real interface address and others are reached over eth0.
            ip(&[
                "-n",
                &ns,
                "route",
                "del",
                "local",
                "127.0.0.0/8",
                "dev",
                "lo",
                "table",
                "local",
            ])?;
            for conf in ["all", "eth0"] {
                let key = format!("net.ipv4.conf.{conf}.route_localnet=1");
                let st = Command::new("ip")
                    .args(["netns", "exec", &ns, "sysctl", "-qw", &key])
                    .status()
                    .map_err(|e| e.to_string())?;
                if !st.success() {
                    return Err(format!("sysctl {key} in {ns} failed"));
                }
            }
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/16", net.ip(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> String {
        format!("127.77.0.{}", 11 + i)
    }

    /// Node `i`'s cluster address (port 2377).
    pub fn addr(&self, i: usize) -> String {
        format!("{}:2377", self.ip(i))
    }

    /// Cuts node `i` off the others (its veth end on the bridge goes down).
    pub fn cut(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "down"])
    }

    /// Reconnects node `i`.
    pub fn heal(&self, i: usize) -> Result<(), String> {
        ip(&["-n", &self.hub, "link", "set", &format!("v{i}"), "up"])
    }

    /// Starts capturing everything on the bridge to `pcap` with tshark (the caller stops it
    /// with [`stop_capture`]).
    pub fn capture(&self, pcap: &std::path::Path) -> Result<Child, String> {
        let child = Command::new("ip")
            .args([
                "netns", "exec", &self.hub, "tshark", "-q", "-i", "br0", "-w",
            ])
            .arg(pcap)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("tshark: {e}"))?;
        // tshark needs a moment before it captures.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(pcap).map(|m| m.len()).unwrap_or(0) == 0 {
            if std::time::Instant::now() > deadline {
                return Err("tshark did not start capturing within 10 s".into());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Ok(child)
    }
}

/// Stops a capture started by [`Net::capture`] (SIGINT, so tshark flushes the file).
pub fn stop_capture(mut child: Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
    }
    let _ = child.wait();
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain(std::iter::once(&self.hub)) {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = &self.tag;
    }
}
