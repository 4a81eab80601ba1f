//! Black-box test support for the `lockbox` binary.
//!
//! * [`Daemon`] spawns `lockbox daemon` on a private unix socket and data dir, waits until
//!   `GET /_ping` answers, and kills it on drop.
//! * [`Endpoint`] + [`http_request`] are a tiny HTTP/1.1 client (unix socket or TCP) that shows
//!   the raw status, headers and body, so tests can check wire details the Go client hides.
//! * [`run_docker`] runs the stock `docker` CLI against an endpoint with a clean environment.
//! * `cases`, `normalize` and `runner` implement the declarative conformance cases under
//!   `tests/cases/` (see `tests/cases/README.md`).
#![allow(dead_code, unreachable_pub)]

pub mod cases;
pub mod cluster;
pub mod engine;
pub mod netns;
pub mod normalize;
pub mod runner;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// The stock docker CLI the conformance cases drive. Override with `LOCKBOX_DOCKER_BIN`.
pub fn docker_bin() -> PathBuf {
    std::env::var_os("LOCKBOX_DOCKER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/local/bin/docker"))
}

/// `Some(reason)` when the docker CLI cannot be used, so callers can skip with a clear message.
pub fn docker_unavailable() -> Option<String> {
    let bin = docker_bin();
    match Command::new(&bin)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "{} --version exited with {}",
            bin.display(),
            o.status
        )),
        Err(e) => Some(format!("cannot run {}: {e}", bin.display())),
    }
}

/// True when running as root (some daemon features, e.g. mlock or chown, may need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Print a skip notice in a form that stands out in `cargo test` output.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

// ---------------------------------------------------------------------------------------------
// Endpoints and the raw HTTP client
// ---------------------------------------------------------------------------------------------

/// Where a Docker-API server listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

impl Endpoint {
    /// Parse `unix:///path` or `tcp://host:port` (the `DOCKER_HOST` syntax).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        if let Some(p) = url.strip_prefix("unix://") {
            Ok(Endpoint::Unix(PathBuf::from(p)))
        } else if let Some(a) = url.strip_prefix("tcp://") {
            Ok(Endpoint::Tcp(a.trim_end_matches('/').to_string()))
        } else {
            Err(format!(
                "unsupported endpoint {url:?}: use unix:///path or tcp://host:port"
            ))
        }
    }

    /// The value to put in `DOCKER_HOST` (or pass to `-H`).
    pub fn url(&self) -> String {
        match self {
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// A raw HTTP response. Header names keep the server's spelling; look them up with [`header`].
///
/// [`header`]: HttpResponse::header
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// First value of a header, matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_str(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

fn connect(ep: &Endpoint) -> io::Result<Box<dyn Stream>> {
    match ep {
        Endpoint::Unix(p) => {
            let s = UnixStream::connect(p)?;
            s.set_read_timeout(Some(HTTP_TIMEOUT))?;
            s.set_write_timeout(Some(HTTP_TIMEOUT))?;
            Ok(Box::new(s))
        }
        Endpoint::Tcp(a) => {
            let s = TcpStream::connect(a.as_str())?;
            s.set_read_timeout(Some(HTTP_TIMEOUT))?;
            s.set_write_timeout(Some(HTTP_TIMEOUT))?;
            Ok(Box::new(s))
        }
    }
}

/// Send one HTTP/1.1 request (`Connection: close`) and read the whole response.
///
/// `headers` are sent as given (add `Content-Type` there). When `body` is `Some`, a
/// `Content-Length` is sent (also for an empty body); a bodiless `POST` gets `Content-Length: 0`
/// like curl and the Go client send.
pub fn http_request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    let mut s = connect(ep)?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: lockbox-conformance\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => req.push_str(&format!("Content-Length: {}\r\n", b.len())),
        None if method.eq_ignore_ascii_case("POST") => req.push_str("Content-Length: 0\r\n"),
        None => {}
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    if let Some(b) = body {
        s.write_all(b)?;
    }
    s.flush()?;
    let mut raw = Vec::new();
    // A server may reset after answering (e.g. it refused the body); keep what was read.
    if let Err(e) = s.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e);
    }
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_response(raw: &[u8], head: bool) -> io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            bad(format!(
                "no end of headers in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head_text = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let _version = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let rest = &raw[end + 4..];
    let resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head || status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(resp);
    }
    let chunked = resp
        .header("Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = resp
        .header("Content-Length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse { body, ..resp })
}

fn dechunk(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk size"))?;
        let size_text = String::from_utf8_lossy(&data[..nl]);
        let size_text = size_text.split(';').next().unwrap_or("").trim().to_string();
        let size = usize::from_str_radix(&size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
        data = &data[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err(bad("truncated chunk"));
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size..];
        if data.starts_with(b"\r\n") {
            data = &data[2..];
        }
    }
}

/// Wait until `GET /_ping` answers 200, or `deadline` passes. `alive` is polled between tries
/// so a daemon that died is reported at once.
pub fn wait_for_ping(
    ep: &Endpoint,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        alive()?;
        match http_request(ep, "GET", "/_ping", &[], None) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last = format!("status {} body {:?}", r.status, r.body_str()),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GET /_ping on {} did not answer 200 within {timeout:?}: {last}",
                ep.url()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// Running processes with stdin and a timeout
// ---------------------------------------------------------------------------------------------

/// Run `cmd` feeding `stdin` (or an empty stdin), capture stdout/stderr, kill it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {shown}: {e}"));
    let mut sin = child.stdin.take().expect("stdin");
    let data = stdin.map(|d| d.to_vec()).unwrap_or_default();
    let writer = std::thread::spawn(move || {
        // The process may exit without reading everything (e.g. a usage error): ignore EPIPE.
        let _ = sin.write_all(&data);
        drop(sin);
    });
    let mut sout = child.stdout.take().expect("stdout");
    let mut serr = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = sout.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = serr.read_to_end(&mut v);
        v
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let st = child.wait().expect("wait");
                let _ = writer.join();
                let stdout = out_t.join().unwrap_or_default();
                let mut stderr = err_t.join().unwrap_or_default();
                stderr.extend_from_slice(
                    format!("\n[harness: killed after {timeout:?}: {shown}]\n").as_bytes(),
                );
                return Output {
                    status: st,
                    stdout,
                    stderr,
                };
            }
        }
    };
    let _ = writer.join();
    Output {
        status,
        stdout: out_t.join().unwrap_or_default(),
        stderr: err_t.join().unwrap_or_default(),
    }
}

/// Run the docker CLI against `ep`: `DOCKER_HOST` set, `DOCKER_CONFIG` pointing at
/// `config_dir`, every other `DOCKER_*` variable removed. `cwd` is the working directory.
pub fn run_docker(
    ep: &Endpoint,
    config_dir: &Path,
    cwd: &Path,
    args: &[String],
    stdin: Option<&[u8]>,
) -> Output {
    let mut cmd = Command::new(docker_bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("DOCKER_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("DOCKER_HOST", ep.url())
        .env("DOCKER_CONFIG", config_dir)
        .current_dir(cwd)
        .args(args);
    run_with_timeout(cmd, stdin, Duration::from_secs(60))
}

// ---------------------------------------------------------------------------------------------
// The lockbox daemon under test
// ---------------------------------------------------------------------------------------------

/// How long [`Daemon::start`] waits for `GET /_ping`.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

pub fn lockbox_bin() -> &'static str {
    env!("CARGO_BIN_EXE_lockbox")
}

/// A `lockbox daemon` on a private socket and data dir, killed (SIGKILL) on drop.
///
/// Layout of the temp dir: `data/` (the `--data-dir`), `lockbox.sock`, `daemon.log` (stderr and
/// stdout of every run, appended), `docker-config/` (the `DOCKER_CONFIG` for [`Daemon::docker`]).
pub struct Daemon {
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
    child: Option<Child>,
    /// Run inside this network namespace (`ip netns exec`), as a separate host.
    netns: Option<String>,
}

impl Daemon {
    /// Start with the default arguments. Panics (with the daemon's log) if it does not come up.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Start with extra daemon arguments, e.g. `&["--no-auto-init"]`.
    pub fn start_with(extra: &[&str]) -> Daemon {
        Daemon::try_start_with(extra).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A daemon on its unix socket and on a free loopback port (with `extra`, e.g.
    /// `--tlsverify`); returns it and its `127.0.0.1:PORT`.
    pub fn start_on_loopback_tcp(extra: &[&str]) -> (Daemon, String) {
        let mut last = String::new();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap_or_else(|e| panic!("no free port: {e}"));
            let addr = format!("127.0.0.1:{port}");
            let host = format!("tcp://{addr}");
            let mut args = vec!["-H", host.as_str()];
            args.extend_from_slice(extra);
            match Daemon::try_start_with(&args) {
                Ok(d) => return (d, addr),
                // Another process took the port between the probe and the daemon's bind.
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port: {last}");
    }

    pub fn try_start_with(extra: &[&str]) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("lockbox-test-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        std::fs::create_dir_all(dir.path().join("docker-config")).map_err(|e| e.to_string())?;
        let mut d = Daemon {
            dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            netns: None,
        };
        d.spawn()?;
        Ok(d)
    }

    /// Like [`Daemon::try_start_with`], the daemon running in network namespace `netns`
    /// (its unix socket stays reachable from here).
    pub fn try_start_in(netns: &str, extra: &[&str]) -> Result<Daemon, String> {
        let dir = tempfile::Builder::new()
            .prefix("lockbox-test-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        std::fs::create_dir_all(dir.path().join("docker-config")).map_err(|e| e.to_string())?;
        let mut d = Daemon {
            dir,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            netns: Some(netns.to_owned()),
        };
        d.spawn()?;
        Ok(d)
    }

    /// The command line (after the binary) used to start the daemon.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            "daemon".to_string(),
            "--data-dir".to_string(),
            self.data_dir().display().to_string(),
            "-H".to_string(),
            self.host(),
        ];
        a.extend(self.extra_args.iter().cloned());
        a
    }

    fn spawn(&mut self) -> Result<(), String> {
        let _ = std::fs::remove_file(self.socket());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open daemon log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = match &self.netns {
            // `ip netns exec` execs the binary: the child's pid is the daemon's.
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, lockbox_bin()]);
                c
            }
            None => Command::new(lockbox_bin()),
        };
        let child = cmd
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log2))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", lockbox_bin()))?;
        self.child = Some(child);
        let ep = self.endpoint();
        let child = self.child.as_mut().expect("child");
        let res = wait_for_ping(&ep, START_TIMEOUT, || match child.try_wait() {
            Ok(Some(st)) => Err(format!("lockbox daemon exited early with {st}")),
            Ok(None) => Ok(()),
            Err(e) => Err(format!("wait: {e}")),
        });
        if let Err(e) = res {
            self.kill9();
            return Err(format!(
                "lockbox daemon did not start ({e})\ncommand: {} {}\n--- daemon log ---\n{}",
                lockbox_bin(),
                self.args().join(" "),
                self.log()
            ));
        }
        Ok(())
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("lockbox.sock")
    }

    /// `unix:///.../lockbox.sock`
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::Unix(self.socket())
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The temp dir holding everything of this daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// Everything the daemon wrote to stdout/stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Run the stock docker CLI against this daemon.
    pub fn docker(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        run_docker(
            &self.endpoint(),
            &self.dir.path().join("docker-config"),
            self.dir.path(),
            &args,
            stdin,
        )
    }

    /// Run the lockbox CLI as `lockbox -H unix://... ARGS`.
    pub fn lockbox(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(lockbox_bin());
        cmd.arg("-H")
            .arg(self.host())
            .args(args)
            .current_dir(self.dir.path());
        run_with_timeout(cmd, stdin, Duration::from_secs(60))
    }

    /// One raw HTTP request; `content_type` is sent as `Content-Type` when given.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        content_type: Option<&str>,
    ) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let headers: Vec<(String, String)> = content_type
            .map(|ct| vec![("Content-Type".to_string(), ct.to_string())])
            .unwrap_or_default();
        let r = http_request(&self.endpoint(), method, path, &headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n--- daemon log ---\n{}", self.log()));
        (r.status, r.headers, r.body)
    }

    /// Like [`Daemon::http`] but returning the full response or the I/O error.
    pub fn try_http(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&[u8]>,
    ) -> io::Result<HttpResponse> {
        http_request(&self.endpoint(), method, path, headers, body)
    }

    /// SIGKILL the daemon and reap it (no-op if not running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM the daemon and wait (≤ 20 s, then SIGKILL) for it; returns its exit status.
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("daemon is not running");
        if let Some(pid) = rustix::process::Pid::from_raw(c.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return st;
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let st = c.wait().expect("wait");
                panic!(
                    "lockbox daemon ignored SIGTERM for 20 s (killed: {st})\n--- daemon log ---\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop (SIGTERM) if running, then start again on the same data dir and socket.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn try_restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            let _ = self.sigterm();
        }
        self.spawn()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
