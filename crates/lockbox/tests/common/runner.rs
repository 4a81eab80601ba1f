//! Runs `.cases` files against a fresh lockbox daemon per case, or against an existing Docker
//! endpoint (`LOCKBOX_TEST_TARGET`), compares with the captured expectations and reports readable
//! diffs; in capture mode (`LOCKBOX_CAPTURE=1`, target mode only) writes the expectations back.
//!
//! Environment:
//! * `LOCKBOX_TEST_TARGET=unix:///path|tcp://host:port`: run against that endpoint instead of
//!   spawning lockbox. Cases tagged `isolated` run only with `LOCKBOX_TEST_TARGET_PRIVATE=1`
//!   (nobody else uses that daemon); cases tagged `restart` need
//!   `LOCKBOX_TEST_TARGET_RESTART='shell command'` that restarts it.
//! * `LOCKBOX_CAPTURE=1`: record what the target does into the case files.
//! * `LOCKBOX_CASE=substring`: run only matching cases.
//! * `LOCKBOX_EXPECT=reference`: hold lockbox to the raw reference capture, ignoring `modern`
//!   overrides.
//! * `LOCKBOX_TEST_IMAGE`: what `{IMAGE}` expands to against a target (default `busybox:local`,
//!   the image `reference-swarm` imports); against lockbox it is always `host` (services whose
//!   image is `host` run their command as host processes).
//! * `LOCKBOX_UNTIL_TIMEOUT=seconds`: how long a step with `until` conditions is retried
//!   (default 90).

use super::cases::{Case, CaseFile, Expect, Step, StepKind};
use super::normalize::{self, Normalizer, ServerFacts};
use super::{Daemon, Endpoint, http_request, run_docker, wait_for_ping};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

/// Serialises `isolated` cases against a shared target: they take the write side.
static TARGET_LOCK: RwLock<()> = RwLock::new(());

#[derive(Clone, Debug)]
pub enum Mode {
    Lockbox,
    Target {
        ep: Endpoint,
        private: bool,
        restart: Option<String>,
        capture: bool,
    },
}

pub fn mode() -> Mode {
    match std::env::var("LOCKBOX_TEST_TARGET") {
        Ok(t) if !t.is_empty() => Mode::Target {
            ep: Endpoint::parse(&t).unwrap_or_else(|e| panic!("LOCKBOX_TEST_TARGET: {e}")),
            private: std::env::var("LOCKBOX_TEST_TARGET_PRIVATE").is_ok_and(|v| v == "1"),
            restart: std::env::var("LOCKBOX_TEST_TARGET_RESTART")
                .ok()
                .filter(|s| !s.is_empty()),
            capture: std::env::var("LOCKBOX_CAPTURE").is_ok_and(|v| v == "1"),
        },
        _ => {
            if std::env::var("LOCKBOX_CAPTURE").is_ok_and(|v| v == "1") {
                panic!(
                    "LOCKBOX_CAPTURE=1 needs LOCKBOX_TEST_TARGET (capture only from a real Docker)"
                );
            }
            Mode::Lockbox
        }
    }
}

pub fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cases")
}

/// The image `{IMAGE}` names in this mode (see the module docs).
pub fn test_image(mode: &Mode) -> String {
    match mode {
        // The docker CLI tags the reserved image it cannot resolve on a registry: `host:latest`.
        Mode::Lockbox => "host:latest".to_string(),
        Mode::Target { .. } => std::env::var("LOCKBOX_TEST_IMAGE")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "busybox:local".to_string()),
    }
}

fn until_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("LOCKBOX_UNTIL_TIMEOUT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(90),
    )
}

/// Keep the lines containing one of `pats` (all lines when `pats` is empty), then collapse runs
/// of identical lines when `uniq`.
fn filter_lines(s: &str, pats: &[String], uniq: bool) -> String {
    let mut out = String::new();
    let mut last: Option<&str> = None;
    for line in s.split_inclusive('\n') {
        if !pats.is_empty() && !pats.iter().any(|p| line.contains(p.as_str())) {
            continue;
        }
        if uniq && last == Some(line) {
            continue;
        }
        out.push_str(line);
        last = Some(line);
    }
    out
}

/// A response body as text: UTF-8, with each byte that is not part of valid UTF-8 shown as
/// `<0xNN>` (the length bytes of stdcopy frames in log streams), so nothing is lost.
pub fn body_text(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for x in chunk.invalid() {
            let _ = write!(out, "<0x{x:02x}>");
        }
    }
    out
}

/// Read `/version`, `/info` (and `/_ping` as a fallback for the API version).
pub fn server_facts(ep: &Endpoint) -> ServerFacts {
    let mut f = ServerFacts::default();
    let get = |p: &str| -> Option<serde_json::Value> {
        let r = http_request(ep, "GET", p, &[], None).ok()?;
        (r.status == 200)
            .then(|| serde_json::from_slice(&r.body).ok())
            .flatten()
    };
    if let Some(v) = get("/version") {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        f.version = s("Version");
        f.api_version = s("ApiVersion");
        f.min_api_version = s("MinAPIVersion");
    }
    if f.api_version.is_none()
        && let Ok(r) = http_request(ep, "GET", "/_ping", &[], None)
    {
        f.api_version = r.header("Api-Version").map(str::to_string);
    }
    if let Some(v) = get("/info") {
        f.hostname = v.get("Name").and_then(|x| x.as_str()).map(str::to_string);
    }
    f
}

fn percent_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// Line diff (LCS) with `-` for expected-only and `+` for actual-only lines.
pub fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split_inclusive('\n').collect();
    let b: Vec<&str> = actual.split_inclusive('\n').collect();
    // Make invisible differences visible: control characters, U+2028/U+2029, trailing blanks.
    let show = |l: &str| -> String {
        let (body, nl) = match l.strip_suffix('\n') {
            Some(b) => (b, ""),
            None => (l, "⏎(no newline at end)"),
        };
        let mut t = visible(body);
        if t.ends_with(' ') || t.ends_with('\t') {
            t.push('⟧');
        }
        t + nl
    };
    if a.len() * b.len() > 4_000_000 {
        return format!("--- expected ---\n{expected}\n--- actual ---\n{actual}\n");
    }
    let (n, m) = (a.len(), b.len());
    let mut l = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            l[i][j] = if a[i] == b[j] {
                l[i + 1][j + 1] + 1
            } else {
                l[i + 1][j].max(l[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    // A run of removed lines followed by added lines: point at the first differing character of
    // the first pair (long JSON lines are otherwise hard to compare by eye).
    let mut removed: Vec<&str> = Vec::new();
    let mut hinted = false;
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            let _ = writeln!(out, "      {}", show(a[i]));
            i += 1;
            j += 1;
            removed.clear();
            hinted = false;
        } else if i < n && (j == m || l[i + 1][j] >= l[i][j + 1]) {
            let _ = writeln!(out, "    - {}", show(a[i]));
            removed.push(a[i]);
            i += 1;
        } else {
            let _ = writeln!(out, "    + {}", show(b[j]));
            if let (Some(exp), false) = (removed.first(), hinted) {
                out.push_str(&first_difference(exp, b[j]));
                hinted = true;
            }
            j += 1;
        }
    }
    if out.len() > 20_000 {
        out.truncate(20_000);
        out.push_str("    … (diff truncated)\n");
    }
    out
}

/// Escape control characters and U+2028/U+2029 so invisible differences show.
fn visible(s: &str) -> String {
    s.chars()
        .map(|c| {
            if (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// `    ! first difference at char N: expected «…», got «…»` for two single lines.
fn first_difference(exp: &str, act: &str) -> String {
    let e: Vec<char> = exp.trim_end_matches('\n').chars().collect();
    let a: Vec<char> = act.trim_end_matches('\n').chars().collect();
    let k = e.iter().zip(&a).take_while(|(x, y)| x == y).count();
    if e.len() < 40 && a.len() < 40 {
        return String::new();
    }
    let window = |v: &[char]| -> String {
        let from = k.saturating_sub(15);
        let to = (k + 25).min(v.len());
        let mut s = visible(&v[from..to].iter().collect::<String>());
        if from > 0 {
            s.insert(0, '…');
        }
        if to < v.len() {
            s.push('…');
        }
        s
    };
    format!(
        "    ! first difference at char {}: expected «{}», got «{}»\n",
        k + 1,
        window(&e),
        window(&a)
    )
}

fn trunc(s: &str) -> String {
    if s.len() > 2000 {
        let mut e = 2000;
        while !s.is_char_boundary(e) {
            e -= 1;
        }
        format!("{}… ({} bytes)", &s[..e], s.len())
    } else {
        s.to_string()
    }
}

/// The expectation a step is held to in this mode.
fn effective(step: &Step, lockbox: bool) -> Expect {
    let mut e = step.expect.clone();
    let use_modern = lockbox && std::env::var("LOCKBOX_EXPECT").map_or(true, |v| v != "reference");
    if use_modern {
        let m = &step.modern;
        if m.exit.is_some() {
            e.exit = m.exit;
        }
        if m.stdout.is_some() {
            e.stdout = m.stdout.clone();
        }
        if m.stderr.is_some() {
            e.stderr = m.stderr.clone();
        }
        if m.status.is_some() {
            e.status = m.status;
        }
        if m.body.is_some() {
            e.body = m.body.clone();
        }
        for (k, v) in &m.headers {
            match e
                .headers
                .iter_mut()
                .find(|(x, _)| x.eq_ignore_ascii_case(k))
            {
                Some(slot) => slot.1 = v.clone(),
                None => e.headers.push((k.clone(), v.clone())),
            }
        }
    }
    e
}

fn compare(exp: &Expect, act: &Expect) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(x) = exp.exit
        && act.exit != Some(x)
    {
        problems.push(format!(
            "  exit code: expected {x}, got {}\n",
            act.exit.map_or("none".into(), |v| v.to_string())
        ));
    }
    if let Some(x) = exp.status
        && act.status != Some(x)
    {
        problems.push(format!(
            "  HTTP status: expected {x}, got {}\n",
            act.status.map_or("none".into(), |v| v.to_string())
        ));
    }
    for (field, e, a) in [
        ("stdout", &exp.stdout, &act.stdout),
        ("stderr", &exp.stderr, &act.stderr),
        ("body", &exp.body, &act.body),
    ] {
        if let Some(e) = e {
            let a = a.clone().unwrap_or_default();
            if *e != a {
                problems.push(format!(
                    "  {field} differs (- expected, + actual):\n{}",
                    diff(e, &a)
                ));
            }
        }
    }
    for (k, v) in &exp.headers {
        let got = act
            .headers
            .iter()
            .find(|(x, _)| x.eq_ignore_ascii_case(k))
            .and_then(|(_, v)| v.clone());
        if *v != got {
            let show = |o: &Option<String>| {
                o.as_ref()
                    .map_or("<absent>".to_string(), |s| format!("{s:?}"))
            };
            problems.push(format!(
                "  header {k}: expected {}, got {}\n",
                show(v),
                show(&got)
            ));
        }
    }
    problems
}

struct CaseRun {
    ep: Endpoint,
    daemon: Option<Daemon>,
    restart: Option<String>,
    scratch: tempfile::TempDir,
    norm: Normalizer,
    /// The last HTTP body after `drop`/`sort-by`, before normalisation (for `until`).
    raw_view: Option<String>,
}

impl CaseRun {
    fn restart(&mut self) -> Result<(), String> {
        if let Some(d) = self.daemon.as_mut() {
            return d.try_restart();
        }
        let cmd = self
            .restart
            .clone()
            .ok_or("no restart command (LOCKBOX_TEST_TARGET_RESTART)")?;
        let st = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .status()
            .map_err(|e| format!("restart command {cmd:?}: {e}"))?;
        if !st.success() {
            return Err(format!("restart command {cmd:?} failed: {st}"));
        }
        wait_for_ping(&self.ep, Duration::from_secs(60), || Ok(()))
    }

    fn run_step(&mut self, step: &Step) -> Result<Expect, String> {
        let mut act = Expect::default();
        for (name, v) in &step.files {
            let data = self.norm.substitute(&v.eval())?;
            std::fs::write(self.scratch.path().join(name), data)
                .map_err(|e| format!("write {name}: {e}"))?;
        }
        let stdin = match &step.stdin {
            Some(v) => Some(self.norm.substitute(&v.eval())?),
            None => None,
        };
        match &step.kind {
            StepKind::Restart => {
                self.restart()?;
                // The server may now report different facts (e.g. after an upgrade): keep IDs.
            }
            StepKind::Docker(args) => {
                let args: Vec<String> = args
                    .iter()
                    .map(|a| self.norm.substitute(a))
                    .collect::<Result<_, _>>()?;
                let cfg = self.scratch.path().join(".docker-config");
                let _ = std::fs::create_dir_all(&cfg);
                let out = run_docker(
                    &self.ep,
                    &cfg,
                    self.scratch.path(),
                    &args,
                    stdin.as_deref().map(str::as_bytes),
                );
                act.exit = Some(out.status.code().unwrap_or(-1));
                act.stdout = Some(
                    self.norm
                        .normalize(&String::from_utf8_lossy(&out.stdout), true),
                );
                act.stderr = Some(
                    self.norm
                        .normalize(&String::from_utf8_lossy(&out.stderr), true),
                );
                if !step.lines_with.is_empty() || step.uniq {
                    let pats: Vec<String> = step.lines_with.iter().map(|v| v.eval()).collect();
                    for o in [&mut act.stdout, &mut act.stderr] {
                        if let Some(t) = o.as_mut() {
                            *t = filter_lines(t, &pats, step.uniq);
                        }
                    }
                }
            }
            StepKind::Http { method, path } => {
                let mut path = self.norm.substitute(path)?;
                for (i, (k, v)) in step.query.iter().enumerate() {
                    let v = self.norm.substitute(&v.eval())?;
                    path.push(if i == 0 && !path.contains('?') {
                        '?'
                    } else {
                        '&'
                    });
                    path.push_str(&format!("{}={}", percent_encode(k), percent_encode(&v)));
                }
                let mut headers = step.req_headers.clone();
                if let Some(ct) = &step.content_type {
                    headers.push(("Content-Type".into(), ct.clone()));
                }
                let body = match &step.body {
                    Some(b) => Some(self.norm.substitute(&b.eval())?),
                    None => None,
                };
                match http_request(
                    &self.ep,
                    method,
                    &path,
                    &headers,
                    body.as_deref().map(str::as_bytes),
                ) {
                    Ok(r) => {
                        act.status = Some(r.status);
                        for h in &step.check_headers {
                            let v = r.header(h).map(|v| self.norm.normalize(v, false));
                            act.headers.push((h.clone(), v));
                        }
                        let mut b = body_text(&r.body);
                        if !step.drop.is_empty() {
                            b = normalize::json_drop(&b, &step.drop);
                        }
                        if let Some(p) = &step.sort_by {
                            b = normalize::sort_array_by(&b, p);
                        }
                        self.raw_view = Some(b.clone());
                        if let Some(d) = step.json_keys {
                            b = normalize::json_keys(&b, d);
                        }
                        if !step.select.is_empty() {
                            b = normalize::json_select(&b, &step.select);
                        }
                        act.body = Some(self.norm.normalize(&b, false));
                    }
                    Err(e) => {
                        act.status = Some(0);
                        act.body = Some(format!("<transport error: {e}>"));
                        for h in &step.check_headers {
                            act.headers.push((h.clone(), None));
                        }
                    }
                }
            }
        }
        Ok(act)
    }

    /// Whether every `until` condition of `step` holds for `act` (and the raw body view).
    fn until_met(&mut self, step: &Step, act: &Expect) -> Result<Option<String>, String> {
        for (at, v) in &step.until {
            let want = self.norm.substitute(&v.eval())?;
            let ok = match at.as_str() {
                "stdout" | "stderr" | "body" => {
                    let got = match at.as_str() {
                        "stdout" => &act.stdout,
                        "stderr" => &act.stderr,
                        _ => &act.body,
                    };
                    got.as_deref().unwrap_or("").contains(&want)
                }
                path => {
                    let got = self
                        .raw_view
                        .as_deref()
                        .and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok())
                        .and_then(|v| normalize::json_lookup(&v, path))
                        .map(|x| serde_json::to_string(&x).expect("json"));
                    got.as_deref() == Some(want.as_str())
                }
            };
            if !ok {
                return Ok(Some(format!("until {at} {want}")));
            }
        }
        Ok(None)
    }

    /// Run a step; with `until` conditions, re-run it (every 250 ms) until they hold. Attempts
    /// that do not count leave no trace in the normaliser, so placeholder numbers only depend on
    /// the run that is compared. Returns the result and, on timeout, the unmet condition.
    fn run_step_until(&mut self, step: &Step) -> Result<(Expect, Option<String>), String> {
        if step.until.is_empty() {
            return self.run_step(step).map(|a| (a, None));
        }
        let deadline = std::time::Instant::now() + until_timeout();
        loop {
            let saved = self.norm.clone();
            self.raw_view = None;
            let act = self.run_step(step)?;
            match self.until_met(step, &act)? {
                None => return Ok((act, None)),
                Some(unmet) if std::time::Instant::now() >= deadline => {
                    return Ok((act, Some(unmet)));
                }
                Some(_) => {
                    self.norm = saved;
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }
}

/// Outcome of one case.
struct Outcome {
    report: Option<String>,
    captured: Option<Vec<Option<Expect>>>,
    skipped: Option<String>,
}

fn run_case(file: &Path, case: &Case, mode: &Mode, docker_missing: &Option<String>) -> Outcome {
    let uses_docker = case
        .steps
        .iter()
        .any(|s| matches!(s.kind, StepKind::Docker(_)));
    let skip = |why: String| Outcome {
        report: None,
        captured: None,
        skipped: Some(why),
    };
    if uses_docker && let Some(why) = docker_missing {
        return skip(format!("needs the docker CLI: {why}"));
    }
    let (lockbox, capture) = match mode {
        Mode::Lockbox => (true, false),
        Mode::Target {
            private,
            restart,
            capture,
            ..
        } => {
            if case.has_tag("isolated") && !private {
                return skip("tagged isolated: needs a daemon of its own (set LOCKBOX_TEST_TARGET_PRIVATE=1 if the target is private)".into());
            }
            if case.has_tag("restart") && restart.is_none() {
                return skip("tagged restart: needs LOCKBOX_TEST_TARGET_RESTART".into());
            }
            (false, *capture)
        }
    };
    let _guard_r;
    let _guard_w;
    if !lockbox {
        if case.has_tag("isolated") {
            _guard_w = Some(TARGET_LOCK.write().unwrap_or_else(|e| e.into_inner()));
        } else {
            _guard_r = Some(TARGET_LOCK.read().unwrap_or_else(|e| e.into_inner()));
        }
    }
    let mut report = String::new();
    let fname = file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        report,
        "━━━ case {} ({}:{}) ━━━",
        case.name, fname, case.line
    );
    let (ep, daemon, restart) = match mode {
        Mode::Lockbox => {
            let args: Vec<&str> = case.daemon_args.iter().map(String::as_str).collect();
            match Daemon::try_start_with(&args) {
                Ok(d) => (d.endpoint(), Some(d), None),
                Err(e) => {
                    let _ = writeln!(report, "  daemon did not start: {e}");
                    return Outcome {
                        report: Some(report),
                        captured: None,
                        skipped: None,
                    };
                }
            }
        }
        Mode::Target { ep, restart, .. } => (ep.clone(), None, restart.clone()),
    };
    let facts = server_facts(&ep);
    let scratch = tempfile::Builder::new()
        .prefix("lockbox-case-")
        .tempdir()
        .expect("tempdir");
    let mut norm = Normalizer::new(facts);
    norm.set_dir(&scratch.path().display().to_string());
    norm.set_image(&test_image(mode));
    let mut run = CaseRun {
        ep,
        daemon,
        restart,
        scratch,
        norm,
        raw_view: None,
    };
    let mut failed = false;
    let mut captured = Vec::new();
    for (i, step) in case.steps.iter().enumerate() {
        let head = format!("  step {} (line {}): {}\n", i + 1, step.line, step.title);
        match run.run_step_until(step) {
            Err(e) => {
                failed = true;
                let _ = writeln!(report, "{head}  could not run: {e}");
                captured.push(None);
                if capture {
                    break;
                }
            }
            Ok((act, unmet)) => {
                if let Some(u) = unmet {
                    failed = true;
                    let _ = writeln!(
                        report,
                        "{head}  condition `{u}` not met within {:?} (the last run is compared)",
                        until_timeout()
                    );
                }
                if capture {
                    if !step.expect.is_empty() {
                        let changes = compare(&step.expect, &act);
                        if !changes.is_empty() {
                            eprintln!(
                                "capture: {} {}: changed\n{}",
                                case.name,
                                step.title,
                                changes.concat()
                            );
                        }
                    }
                    captured.push(Some(act));
                    continue;
                }
                let exp = effective(step, lockbox);
                if exp.is_empty() && !matches!(step.kind, StepKind::Restart) {
                    failed = true;
                    let _ = writeln!(
                        report,
                        "{head}  no expectation captured yet: run scripts/capture-reference"
                    );
                    continue;
                }
                let problems = compare(&exp, &act);
                if !problems.is_empty() {
                    failed = true;
                    report.push_str(&head);
                    for p in problems {
                        report.push_str(&p);
                    }
                    if let (Some(b), None) = (&act.body, &exp.body) {
                        let _ = writeln!(report, "  (actual body: {})", trunc(b));
                    }
                }
            }
        }
    }
    // Safety net on a real Docker: remove any service (named lbxt-…) and then any secret this
    // case saw and did not remove itself. Services go first: a secret in use cannot be removed.
    if !lockbox {
        for (n, id) in run.norm.ids().iter().enumerate() {
            let ours = http_request(&run.ep, "GET", &format!("/services/{id}"), &[], None)
                .ok()
                .filter(|r| r.status == 200)
                .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                .and_then(|v| {
                    v.pointer("/Spec/Name")
                        .and_then(|x| x.as_str())
                        .map(|n| n.starts_with("lbxt-"))
                })
                .unwrap_or(false);
            if ours
                && let Ok(r) =
                    http_request(&run.ep, "DELETE", &format!("/services/{id}"), &[], None)
                && r.status == 200
            {
                let msg = format!(
                    "  case left service <ID{}> behind (removed by the harness): add a cleanup step\n",
                    n + 1
                );
                eprintln!("{}: {}", case.name, msg.trim());
                if capture {
                    failed = true;
                    report.push_str(&msg);
                }
            }
        }
        for (n, id) in run.norm.ids().iter().enumerate() {
            if let Ok(r) = http_request(&run.ep, "DELETE", &format!("/secrets/{id}"), &[], None)
                && r.status == 204
            {
                let msg = format!(
                    "  case left secret <ID{}> behind (removed by the harness): add a cleanup step\n",
                    n + 1
                );
                eprintln!("{}: {}", case.name, msg.trim());
                if capture {
                    failed = true;
                    report.push_str(&msg);
                }
            }
        }
    }
    if failed && let Some(d) = &run.daemon {
        let log = d.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        let _ = writeln!(
            report,
            "  --- lockbox daemon log (last {} lines) ---",
            tail.len()
        );
        for l in tail.iter().rev() {
            let _ = writeln!(report, "  | {l}");
        }
    }
    Outcome {
        report: failed.then_some(report),
        captured: capture.then_some(captured),
        skipped: None,
    }
}

/// Run every case of `tests/cases/<stem>.cases`; panic with a report naming each failing case
/// and step. In capture mode, write the captured expectations back into the file.
pub fn run_case_file(stem: &str) {
    let path = cases_dir().join(format!("{stem}.cases"));
    let file = CaseFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mode = mode();
    let filter = std::env::var("LOCKBOX_CASE").ok().filter(|s| !s.is_empty());
    let docker_missing = super::docker_unavailable();
    let target_name = match &mode {
        Mode::Lockbox => "a fresh lockbox daemon per case".to_string(),
        Mode::Target { ep, capture, .. } => {
            format!("{}{}", ep.url(), if *capture { " (capturing)" } else { "" })
        }
    };
    let mut reports = Vec::new();
    let mut captured_all: Vec<Vec<Option<Expect>>> = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for case in &file.cases {
        if filter
            .as_ref()
            .is_some_and(|f| !case.name.contains(f.as_str()))
        {
            captured_all.push(Vec::new());
            continue;
        }
        let out = run_case(&path, case, &mode, &docker_missing);
        if let Some(why) = &out.skipped {
            skipped += 1;
            eprintln!("SKIPPED case {} ({stem}.cases): {why}", case.name);
        } else {
            ran += 1;
        }
        if let Some(r) = out.report {
            reports.push(r);
        }
        captured_all.push(out.captured.unwrap_or_default());
    }
    if matches!(mode, Mode::Target { capture: true, .. }) {
        let text = file.render(&captured_all);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        eprintln!("captured {ran} cases into {}", path.display());
    }
    eprintln!(
        "{stem}.cases against {target_name}: {ran} ran, {} failed, {skipped} skipped",
        reports.len()
    );
    if !reports.is_empty() {
        panic!(
            "\n{} of {ran} cases in {} failed against {target_name}:\n\n{}",
            reports.len(),
            path.display(),
            reports.join("\n")
        );
    }
}

/// Every `*.cases` file stem in the cases dir, sorted.
pub fn case_file_stems() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("cases dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".cases"))
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_invalid_bytes() {
        assert_eq!(
            body_text(b"\x01\x00\xa2ok\xff\n"),
            "\u{1}\u{0}<0xa2>ok<0xff>\n"
        );
        assert_eq!(body_text("é".as_bytes()), "é");
    }

    #[test]
    fn lines_with_and_uniq() {
        let s = "id\nwait 5\nprogress 1\nprogress 1\nwait 4\nprogress 1\ndone id\n";
        let pats = vec!["id".to_string(), "progress".to_string()];
        assert_eq!(filter_lines(s, &pats, true), "id\nprogress 1\ndone id\n");
        assert_eq!(filter_lines("a\na\nb", &[], true), "a\nb");
        assert_eq!(filter_lines("a\na\n", &[], false), "a\na\n");
    }
}
