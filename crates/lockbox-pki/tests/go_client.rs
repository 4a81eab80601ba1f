//! Stock clients accept our certificates: the docker CLI (Go's crypto/tls)
//! and curl (OpenSSL) talk to a tiny HTTP/1.1 server behind
//! [`server_config`], using a bundle from [`write_bundle`]. A client that is
//! not installed is skipped with a message (`scripts/test` installs both).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use lockbox_pki::{Ca, Revocations, acceptor, peer_identity, server_config, write_bundle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

const DAY: Duration = Duration::from_secs(86_400);

/// Answers `/_ping` and `/version` like a Docker Engine speaking API 1.47,
/// naming the client certificate's CN in the version.
async fn serve_http<S>(mut tls: S, client_cn: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let mut words = head.split_whitespace();
        let method = words.next().unwrap_or("").to_owned();
        let path = words.next().unwrap_or("").to_owned();
        eprintln!("server: {method} {path} from CN={client_cn}");
        let path = path.split('?').next().unwrap_or("");
        let (status, content_type, body) = if path.ends_with("/_ping") {
            ("200 OK", "text/plain; charset=utf-8", "OK".to_owned())
        } else if path.ends_with("/version") {
            (
                "200 OK",
                "application/json",
                format!(
                    r#"{{"Platform":{{"Name":"lockbox"}},"Version":"test-{client_cn}","ApiVersion":"1.47","MinAPIVersion":"1.24","GitCommit":"0000000","GoVersion":"none","Os":"linux","Arch":"amd64","KernelVersion":"","BuildTime":"2026-01-01T00:00:00.000000000+00:00"}}"#
                ),
            )
        } else {
            (
                "404 Not Found",
                "application/json",
                r#"{"message":"page not found"}"#.to_owned(),
            )
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nApi-Version: 1.47\r\nDocker-Experimental: false\r\nOstype: linux\r\n\
             Server: lockbox-pki-test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            response.push_str(&body);
        }
        if tls.write_all(response.as_bytes()).await.is_err() {
            return;
        }
        let _ = tls.flush().await;
    }
}

async fn run(program: &str, args: &[&str], cert_path: Option<&Path>, config_dir: &Path) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env("DOCKER_CONFIG", config_dir)
        .kill_on_drop(true);
    match cert_path {
        Some(dir) => cmd.env("DOCKER_CERT_PATH", dir),
        None => cmd.env_remove("DOCKER_CERT_PATH"),
    };
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("finished in time")
        .expect("runs");
    eprintln!(
        "$ {program} {}\n--- exit: {}\n--- stdout:\n{}--- stderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_go_and_openssl_clients_accept_our_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = Ca::generate("go-check").unwrap();
    let server = ca
        .issue_server(
            "managernode0000000000000",
            &["localhost".to_owned()],
            &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(Ipv6Addr::LOCALHOST),
            ],
            30 * DAY,
        )
        .unwrap();
    let alice = ca.issue_client("alice", 30 * DAY).unwrap();
    let good = tmp.path().join("alice");
    write_bundle(&good, ca.cert_pem(), &alice, false).unwrap();

    // A bundle that trusts our CA but holds a certificate of another CA.
    let other = Ca::generate("go-check").unwrap();
    let mallory = other.issue_client("mallory", 30 * DAY).unwrap();
    let bad = tmp.path().join("mallory");
    write_bundle(&bad, ca.cert_pem(), &mallory, false).unwrap();

    // A revoked certificate of our CA.
    let revoked_user = ca.issue_client("revoked", 30 * DAY).unwrap();
    let revoked = tmp.path().join("revoked");
    write_bundle(&revoked, ca.cert_pem(), &revoked_user, false).unwrap();
    let revocations = Revocations::new();
    revocations.revoke(&revoked_user.serial);

    let config = server_config(ca.cert_pem(), &server, revocations).unwrap();
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = acceptor(config);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
                        let version = tls.get_ref().1.protocol_version();
                        let cn = peer_identity(&tls)
                            .map(|i| i.common_name)
                            .unwrap_or_default();
                        eprintln!(
                            "server: handshake ok, {version:?}, ALPN {:?}, client CN={cn}",
                            alpn.as_deref().map(String::from_utf8_lossy)
                        );
                        serve_http(tls, cn).await;
                    }
                    Err(e) => eprintln!("server: handshake refused: {e}"),
                }
            });
        }
    });

    let config_dir = tmp.path().join("docker-config");
    std::fs::create_dir(&config_dir).unwrap();
    let host = format!("tcp://127.0.0.1:{port}");
    let docker = "/usr/local/bin/docker";
    let mut ran = 0;

    if Path::new(docker).exists() {
        ran += 1;
        // DOCKER_CERT_PATH layout.
        let out = run(
            docker,
            &["--tlsverify", "-H", &host, "version"],
            Some(&good),
            &config_dir,
        )
        .await;
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("test-alice"), "server section missing");
        assert!(stdout.contains("1.47"));

        // Explicit flags, by host name.
        let ca_pem = good.join("ca.pem");
        let cert_pem = good.join("cert.pem");
        let key_pem = good.join("key.pem");
        let localhost = format!("tcp://localhost:{port}");
        let out = run(
            docker,
            &[
                "--tlsverify",
                "--tlscacert",
                ca_pem.to_str().unwrap(),
                "--tlscert",
                cert_pem.to_str().unwrap(),
                "--tlskey",
                key_pem.to_str().unwrap(),
                "-H",
                &localhost,
                "version",
                "--format",
                "{{.Server.Version}} {{.Server.APIVersion}}",
            ],
            None,
            &config_dir,
        )
        .await;
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "test-alice 1.47"
        );

        for refused in [&bad, &revoked] {
            let out = run(
                docker,
                &["--tlsverify", "-H", &host, "version"],
                Some(refused),
                &config_dir,
            )
            .await;
            assert!(!out.status.success());
            assert!(!String::from_utf8_lossy(&out.stdout).contains("test-"));
        }
    } else {
        eprintln!("no {docker}; skipping the docker CLI");
    }

    if Path::new("/usr/bin/curl").exists() {
        ran += 1;
        let url = format!("https://127.0.0.1:{port}/_ping");
        let args = |dir: &Path| -> Vec<String> {
            vec![
                "-sS".into(),
                "--http1.1".into(),
                "--cacert".into(),
                dir.join("ca.pem").display().to_string(),
                "--cert".into(),
                dir.join("cert.pem").display().to_string(),
                "--key".into(),
                dir.join("key.pem").display().to_string(),
                url.clone(),
            ]
        };
        let good_args = args(&good);
        let good_args: Vec<&str> = good_args.iter().map(String::as_str).collect();
        let out = run("/usr/bin/curl", &good_args, None, &config_dir).await;
        assert!(out.status.success());
        assert_eq!(out.stdout, b"OK");
        let bad_args = args(&bad);
        let bad_args: Vec<&str> = bad_args.iter().map(String::as_str).collect();
        let out = run("/usr/bin/curl", &bad_args, None, &config_dir).await;
        assert!(!out.status.success() || out.stdout != b"OK");
    } else {
        eprintln!("no curl; skipping curl");
    }
    if ran == 0 {
        eprintln!("SKIP: neither the docker CLI nor curl is installed");
    }
}
