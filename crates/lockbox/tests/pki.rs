//! The cluster CA seen from outside: `GET /swarm` shows it as `TLSInfo.TrustRoot`, join
//! tokens carry the digest of its certificate (`SWMTKN-1-<digest>-<secret>`, as swarm's), and
//! client bundles trust the same CA.

mod common;

use base64::Engine as _;
use common::Daemon;
use sha2::{Digest, Sha256};

fn base36(bytes: &[u8], width: usize) -> String {
    let mut num = bytes.to_vec();
    let mut digits = Vec::new();
    while num.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in num.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 36) as u8;
            rem = cur % 36;
        }
        digits.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap()
}

fn out(o: &std::process::Output) -> String {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn join_tokens_pin_the_cluster_ca() {
    if let Some(why) = common::docker_unavailable() {
        common::skip("join_tokens_pin_the_cluster_ca", &why);
        return;
    }
    let d = Daemon::start();
    let (status, _, swarm) = d.http("GET", "/v1.47/swarm", None, None);
    assert_eq!(status, 200);
    let swarm: serde_json::Value = serde_json::from_slice(&swarm).unwrap();
    let pem = swarm["TLSInfo"]["TrustRoot"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect();
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .unwrap();
    let digest = base36(&Sha256::digest(&der), 50);
    for role in ["worker", "manager"] {
        let token = out(&d.docker(&["swarm", "join-token", "-q", role], None));
        let parts: Vec<&str> = token.trim().split('-').collect();
        assert_eq!(parts.len(), 4, "{token}");
        assert_eq!(parts[0..2], ["SWMTKN", "1"]);
        assert_eq!(parts[2], digest, "{role} token");
        assert_eq!(parts[3].len(), 25);
    }
    // Rotation changes the secret, not the CA digest.
    let token = out(&d.docker(&["swarm", "join-token", "-q", "--rotate", "worker"], None));
    assert!(token.contains(&digest), "{token}");
    // A client bundle trusts that same CA.
    out(&d.lockbox(&["user", "create", "bob"], None));
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("b");
    out(&d.lockbox(
        &["user", "bundle", "bob", "-o", bundle.to_str().unwrap()],
        None,
    ));
    let ca = std::fs::read_to_string(bundle.join("ca.pem")).unwrap();
    assert_eq!(ca.trim(), pem.trim());
}
