//! `lockbox audit ls|export|verify|check-value`: the daemon's hash-chained audit trail
//! (`/lockbox/v1/audit`, see `docs/access.md`), and offline verification of its files.

mod stream;
mod when;

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine as _;
use clap::{Args, Subcommand};
use http::Method;
use lockbox_client::Client;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use zeroize::{Zeroize as _, Zeroizing};

use super::access::{ellipsis, get, send};
use super::secret::query_escape;
use stream::BodyStream;
use when::{parse_when, rfc3339};

/// `lockbox audit`.
#[derive(Debug, Subcommand)]
pub(crate) enum AuditCmd {
    /// List audit records
    #[command(alias = "list")]
    Ls {
        #[command(flatten)]
        filter: RecordFilter,
        /// Format output: 'json' (each record as stored, one per line) or a Go template
        #[arg(long)]
        format: Option<String>,
    },
    /// Write audit records as stored (JSON lines, hash chain included) to STDOUT or a file
    Export {
        /// Write to this file (mode 0600) instead of STDOUT
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: RecordFilter,
    },
    /// Verify the hash chain of the audit trail
    Verify {
        /// Verify the trail files in DIR directly instead of asking the daemon
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Tell whether a value is the one an audit record fingerprinted (exit 1 if not)
    CheckValue {
        /// Sequence number of the record
        seq: u64,
        /// File to read the value from, or - for STDIN
        #[arg(value_name = "FILE|-")]
        file: String,
    },
}

/// Which records `ls` and `export` ask for.
#[derive(Debug, Default, Args)]
pub(crate) struct RecordFilter {
    /// Only records about this secret (name or ID)
    #[arg(long, value_name = "SECRET")]
    secret: Option<String>,
    /// Only records of this user (the actor)
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Only this action; a trailing * matches a prefix (e.g. secret.*)
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only records since this time: RFC 3339, a date (2026-11-23) or a duration ago (10m, 2h,
    /// 1h30m, 7d)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only records until this time (same forms as --since)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// At most this many records
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// Also the records written when a change begins (before it is made; each is followed by
    /// the record of its outcome). `export` always includes them
    #[arg(long)]
    begin: bool,
}

impl RecordFilter {
    /// `/lockbox/v1/audit?...` for these filters; times relative to `now`.
    fn path(&self, now: OffsetDateTime) -> anyhow::Result<String> {
        let mut q: Vec<String> = Vec::new();
        for (key, value) in [
            ("secret", &self.secret),
            ("user", &self.user),
            ("action", &self.action),
        ] {
            if let Some(v) = value {
                q.push(format!("{key}={}", query_escape(v)));
            }
        }
        for (key, value) in [("since", &self.since), ("until", &self.until)] {
            if let Some(v) = value {
                let t = parse_when(v, now).with_context(|| format!("invalid --{key}"))?;
                q.push(format!("{key}={}", query_escape(&rfc3339(t)?)));
            }
        }
        if let Some(n) = self.limit {
            q.push(format!("limit={n}"));
        }
        if self.begin {
            q.push("begin=true".to_owned());
        }
        Ok(if q.is_empty() {
            "/lockbox/v1/audit".to_owned()
        } else {
            format!("/lockbox/v1/audit?{}", q.join("&"))
        })
    }
}

pub(crate) async fn run(client: &Client, cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCmd::Ls { filter, format } => ls(client, &filter, format.as_deref()).await,
        AuditCmd::Export { output, filter } => export(client, &filter, output.as_deref()).await,
        AuditCmd::Verify { dir } => verify(client, dir.as_deref()).await,
        AuditCmd::CheckValue { seq, file } => check_value(client, seq, &file).await,
    }
}

const LS_FORMAT: &str =
    "table {{.Seq}}\t{{.Time}}\t{{.Actor}}\t{{.Action}}\t{{.Objects}}\t{{.Outcome}}";
const LS_HEADERS: &[(&str, &str)] = &[
    ("Seq", "SEQ"),
    ("Time", "TIME"),
    ("Actor", "ACTOR"),
    ("Source", "SOURCE"),
    ("Action", "ACTION"),
    ("Objects", "OBJECTS"),
    ("Outcome", "OUTCOME"),
    ("Status", "STATUS"),
    ("Error", "ERROR"),
];
/// Width of the `OBJECTS` and `OUTCOME` columns.
const OBJECTS_WIDTH: usize = 40;
const OUTCOME_WIDTH: usize = 40;

/// How `ls` prints.
enum LsOutput<'a> {
    /// A table: every record is needed for the column widths.
    Table(&'a str),
    /// The stored lines as received.
    Json,
    /// A template run on each record as it arrives.
    Template(&'a str),
}

impl LsOutput<'_> {
    fn of(format: Option<&str>) -> LsOutput<'_> {
        match format {
            None | Some("" | "table") => LsOutput::Table(LS_FORMAT),
            Some("json") => LsOutput::Json,
            Some(f) if f.starts_with("table") => LsOutput::Table(f),
            Some(f) => LsOutput::Template(f),
        }
    }
}

async fn ls(
    client: &Client,
    filter: &RecordFilter,
    format: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let path = filter.path(OffsetDateTime::now_utc())?;
    let output = LsOutput::of(format);
    let mut body = BodyStream::get(client, &path).await?;
    let mut rows = Vec::new();
    let mut out = std::io::stdout().lock();
    while let Some(line) = body.line().await? {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let text = match &output {
            LsOutput::Json => {
                let mut l = line;
                l.push(b'\n');
                l
            }
            LsOutput::Table(_) | LsOutput::Template(_) => {
                let record: Value = serde_json::from_slice(&line)
                    .context("unexpected response from daemon: an audit record is not JSON")?;
                let row = record_row(&record);
                if let LsOutput::Template(f) = &output {
                    table_text(f, &[row])?.into_bytes()
                } else {
                    rows.push(row);
                    continue;
                }
            }
        };
        if !write_stdout(&mut out, &text)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if let LsOutput::Table(f) = &output {
        write_stdout(&mut out, table_text(f, &rows)?.as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to STDOUT; `false` if the reader went away (`| head`), which ends the command quietly.
fn write_stdout(out: &mut impl std::io::Write, data: &[u8]) -> anyhow::Result<bool> {
    match out.write_all(data).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to STDOUT"),
    }
}

fn table_text(format: &str, rows: &[Value]) -> anyhow::Result<String> {
    let headers: Map<String, Value> = LS_HEADERS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    Ok(lockbox_format::table(format, &headers, rows)?)
}

/// The formatter context of a record: its stored fields (`.seq`, `.actor`, `.details`, ...,
/// `method` and `path` always present) and the columns (`.Seq`, `.Time`, `.Actor`, `.Source`,
/// `.Action`, `.Objects`, `.Outcome`, `.Status`, `.Error`).
fn record_row(r: &Value) -> Value {
    let mut row = r.as_object().cloned().unwrap_or_default();
    for key in ["method", "path"] {
        if row.get(key).is_none_or(Value::is_null) {
            row.insert(key.to_owned(), json!(""));
        }
    }
    let s = |key: &str| r.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    let seq = r.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let status = r.pointer("/outcome/status").and_then(Value::as_u64);
    let error = r
        .pointer("/outcome/error")
        .and_then(Value::as_str)
        .unwrap_or("");
    let objects: Vec<Value> = r
        .get("objects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    row.insert("Seq".into(), json!(seq.to_string()));
    row.insert("Time".into(), json!(short_time(&s("time"))));
    row.insert("Actor".into(), json!(s("actor")));
    row.insert("Source".into(), json!(s("source")));
    row.insert("Action".into(), json!(s("action")));
    row.insert(
        "Objects".into(),
        json!(objects_text(&objects, OBJECTS_WIDTH)),
    );
    row.insert("Outcome".into(), json!(outcome_text(status, error)));
    row.insert(
        "Status".into(),
        json!(status.map(|s| s.to_string()).unwrap_or_default()),
    );
    row.insert("Error".into(), json!(error));
    Value::Object(row)
}

/// A stored time (nine fractional digits) to the second, in UTC: `2026-11-23T10:00:00Z`.
fn short_time(t: &str) -> String {
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    lockbox_format::parse_time(t)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(f).ok())
        .unwrap_or_else(|| t.to_owned())
}

/// `kind:name` of each object (the short ID when it has no name), comma separated, cut to about
/// `width` characters with a count of what was left out: `secret:db,service:web,+3 more`.
fn objects_text(objects: &[Value], width: usize) -> String {
    let parts: Vec<String> = objects
        .iter()
        .map(|o| {
            let field = |k: &str| o.get(k).and_then(Value::as_str).unwrap_or("");
            let name = match field("name") {
                "" => lockbox_format::truncate_id(field("id")),
                n => n.to_owned(),
            };
            match (field("kind"), name.as_str()) {
                (k, "") => k.to_owned(),
                ("", n) => n.to_owned(),
                (k, n) => format!("{k}:{n}"),
            }
        })
        .collect();
    let Some(first) = parts.first() else {
        return String::new();
    };
    let more = |left: usize| {
        if left == 0 {
            String::new()
        } else {
            format!(",+{left} more")
        }
    };
    let len = |s: &str| s.chars().count();
    let reserve = len(&more(parts.len() - 1));
    let mut out = ellipsis(first, width.saturating_sub(reserve).max(8));
    let mut shown = 1;
    for p in &parts[1..] {
        let left = parts.len() - shown - 1;
        if len(&out) + 1 + len(p) + len(&more(left)) > width {
            break;
        }
        out.push(',');
        out.push_str(p);
        shown += 1;
    }
    out.push_str(&more(parts.len() - shown));
    out
}

/// The status, or the error with its status.
fn outcome_text(status: Option<u64>, error: &str) -> String {
    match (status, error) {
        (Some(s), e) if !e.is_empty() && s != 0 => ellipsis(&format!("{s} {e}"), OUTCOME_WIDTH),
        (_, e) if !e.is_empty() => ellipsis(&format!("error: {e}"), OUTCOME_WIDTH),
        (Some(0) | None, _) => "ok".to_owned(),
        (Some(s), _) => s.to_string(),
    }
}

async fn export(
    client: &Client,
    filter: &RecordFilter,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    // The export is the trail as stored: every record, so that it can be re-verified.
    let mut path = filter.path(OffsetDateTime::now_utc())?;
    if !filter.begin {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("begin=true");
    }
    let mut body = BodyStream::get(client, &path).await?;
    match output {
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = body.chunk().await? {
                if !write_stdout(&mut out, &chunk)? {
                    break;
                }
            }
        }
        Some(file) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(file)
                .with_context(|| format!("cannot create {}", file.display()))?;
            // An existing file keeps its mode on open: the trail is not for everyone.
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", file.display()))?;
            while let Some(chunk) = body.chunk().await? {
                f.write_all(&chunk)
                    .with_context(|| format!("cannot write {}", file.display()))?;
            }
            f.sync_all()
                .with_context(|| format!("cannot write {}", file.display()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What `verify` found, through the daemon or from the files.
#[derive(Debug, PartialEq, Eq)]
struct Verified {
    ok: bool,
    records: u64,
    files: u64,
    retired: u64,
    /// File, line, seq, reason.
    first_bad: Option<(String, u64, u64, String)>,
}

impl Verified {
    /// The daemon's `GET /lockbox/v1/audit/verify` answer.
    fn from_api(v: &Value) -> Verified {
        let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let first_bad = v.get("FirstBad").filter(|b| b.is_object()).map(|b| {
            (
                b.get("File")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                b.get("Line").and_then(Value::as_u64).unwrap_or(0),
                b.get("Seq").and_then(Value::as_u64).unwrap_or(0),
                b.get("Reason")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
            )
        });
        Verified {
            ok: v.get("Ok").and_then(Value::as_bool).unwrap_or(false) && first_bad.is_none(),
            records: n("Records"),
            files: n("Files"),
            retired: n("Retired"),
            first_bad,
        }
    }

    fn from_report(r: &lockbox_audit::VerifyReport) -> Verified {
        // The seq as the daemon reports it: the one found on the line, else the one expected.
        let first_bad = r.first_bad.as_ref().map(|b| {
            let seq = b.found_seq.unwrap_or(b.expected_seq);
            (b.file.clone(), b.line, seq, b.reason.clone())
        });
        Verified {
            ok: r.ok && first_bad.is_none(),
            records: r.records,
            files: r.files as u64,
            retired: r.retired,
            first_bad,
        }
    }

    /// The result line (STDOUT) and the exit code.
    fn text(&self) -> (String, ExitCode) {
        if self.ok {
            return (
                format!(
                    "OK: {} records in {} files verified\n",
                    self.records, self.files
                ),
                ExitCode::SUCCESS,
            );
        }
        let line = match &self.first_bad {
            Some((file, line, seq, reason)) => {
                format!("FAILED: first bad record: file {file} line {line} (seq {seq}): {reason}\n")
            }
            None => "FAILED: the audit trail did not verify\n".to_owned(),
        };
        (line, ExitCode::from(1))
    }
}

async fn verify(client: &Client, dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let result = match dir {
        Some(d) => {
            if !d.is_dir() {
                anyhow::bail!("{} is not a directory", d.display());
            }
            let report = lockbox_audit::verify(d, None)
                .with_context(|| format!("cannot verify the audit trail in {}", d.display()))?;
            Verified::from_report(&report)
        }
        None => Verified::from_api(&get(client, "/lockbox/v1/audit/verify").await?),
    };
    let (text, code) = result.text();
    print!("{text}");
    if result.retired > 0 {
        eprintln!(
            "({} earlier records were removed by retention, as recorded in the trail)",
            result.retired
        );
    }
    if let Some(d) = dir
        && result.files == 0
    {
        eprintln!(
            "warning: {} holds no audit trail files (audit-*.jsonl)",
            d.display()
        );
    } else if dir.is_some() && result.ok {
        eprintln!(
            "(offline verification cannot tell whether records were cut from the end; \
             `lockbox audit verify` through the daemon can)"
        );
    }
    Ok(code)
}

async fn check_value(client: &Client, seq: u64, file: &str) -> anyhow::Result<ExitCode> {
    let value = super::secret::read_value(file)?;
    let mut encoded = Zeroizing::new(String::with_capacity(value.len().div_ceil(3) * 4));
    base64::engine::general_purpose::STANDARD.encode_string(&*value, &mut encoded);
    drop(value);
    let mut body = json!({ "Seq": seq });
    if let Some(obj) = body.as_object_mut() {
        obj.insert("Data".into(), Value::String(std::mem::take(&mut *encoded)));
    }
    let result = send(
        client,
        Method::POST,
        "/lockbox/v1/audit/check-value",
        Some(&body),
    )
    .await;
    if let Some(Value::String(s)) = body.get_mut("Data") {
        s.zeroize();
    }
    let answer = result?.json()?;
    match answer.get("Match").and_then(Value::as_bool) {
        Some(true) => {
            println!("match");
            Ok(ExitCode::SUCCESS)
        }
        Some(false) => {
            println!("no match");
            Ok(ExitCode::from(1))
        }
        None => anyhow::bail!("unexpected response from daemon: no Match in {answer}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(subcommand)]
        cmd: AuditCmd,
    }

    fn parse(args: &[&str]) -> Result<AuditCmd, clap::Error> {
        T::try_parse_from(std::iter::once("audit").chain(args.iter().copied())).map(|t| t.cmd)
    }

    fn record(seq: u64, objects: Value, outcome: Value) -> Value {
        json!({"seq": seq, "time": "2026-11-23T10:00:05.123456789Z", "actor": "alice",
               "source": "unix:uid=1001,pid=77", "action": "secret.create", "method": "POST",
               "path": "/v1.47/secrets/create", "objects": objects, "outcome": outcome,
               "details": {"value_hmac": "hmac-sha256:ab"}, "prev": "00", "hash": "11"})
    }

    #[test]
    fn filters_become_a_query() {
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let path = |args: &[&str]| match parse(args).unwrap() {
            AuditCmd::Ls { filter, .. } | AuditCmd::Export { filter, .. } => filter.path(now),
            other => panic!("{other:?}"),
        };
        assert_eq!(path(&["ls"]).unwrap(), "/lockbox/v1/audit");
        assert_eq!(
            path(&[
                "ls",
                "--secret",
                "db pw",
                "--user",
                "alice",
                "--action",
                "secret.*",
                "--since",
                "2h",
                "--until",
                "2026-11-23",
                "--limit",
                "10"
            ])
            .unwrap(),
            "/lockbox/v1/audit?secret=db%20pw&user=alice&action=secret.%2A\
             &since=2026-11-23T10%3A00%3A00Z&until=2026-11-23T00%3A00%3A00Z&limit=10"
        );
        assert_eq!(
            path(&["export", "--since", "2026-11-23T11:00:00+01:00"]).unwrap(),
            "/lockbox/v1/audit?since=2026-11-23T10%3A00%3A00Z"
        );
        let e = path(&["ls", "--since", "soon"]).unwrap_err();
        assert_eq!(e.to_string(), "invalid --since");
        assert!(parse(&["ls", "--limit", "-1"]).is_err());
    }

    #[test]
    fn check_value_never_takes_the_value_as_an_argument() {
        match parse(&["check-value", "12", "-"]).unwrap() {
            AuditCmd::CheckValue { seq, file } => assert_eq!((seq, file.as_str()), (12, "-")),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["check-value", "12"]).is_err());
        assert!(parse(&["check-value", "x", "f"]).is_err());
        assert!(parse(&["check-value", "1", "f", "extra"]).is_err());
    }

    #[test]
    fn table_of_records() {
        let records = [
            record(
                1,
                json!([{"kind": "secret", "id": "abcdefghijklmnopqrstuvwxy", "name": "db_password"}]),
                json!({"status": 201, "error": null}),
            ),
            record(
                2,
                json!([{"kind": "secret", "id": "abcdefghijklmnopqrstuvwxy", "name": ""}]),
                json!({"status": 403, "error": "permission denied: secret.create on all"}),
            ),
            record(3, json!([]), json!({"status": 0})),
        ];
        let rows: Vec<Value> = records.iter().map(record_row).collect();
        assert_eq!(
            table_text(LS_FORMAT, &rows).unwrap(),
            "SEQ       TIME                   ACTOR     ACTION          OBJECTS               OUTCOME\n\
             1         2026-11-23T10:00:05Z   alice     secret.create   secret:db_password    201\n\
             2         2026-11-23T10:00:05Z   alice     secret.create   secret:abcdefghijkl   403 permission denied: secret.create on…\n\
             3         2026-11-23T10:00:05Z   alice     secret.create                         ok\n"
        );
        assert_eq!(
            table_text(
                "{{.seq}} {{.method}} {{.details.value_hmac}} {{.Status}}",
                &rows[..1]
            )
            .unwrap(),
            "1 POST hmac-sha256:ab 201\n"
        );
        assert_eq!(
            table_text("table {{.Seq}}\t{{.Source}}", &rows[..1]).unwrap(),
            "SEQ       SOURCE\n1         unix:uid=1001,pid=77\n"
        );
        // Optional stored fields are there (empty) for templates.
        let mut bare = records[0].clone();
        bare.as_object_mut().unwrap().remove("method");
        assert_eq!(
            table_text("[{{.method}}]", &[record_row(&bare)]).unwrap(),
            "[]\n"
        );
    }

    #[test]
    fn objects_column() {
        let obj = |k: &str, n: &str| json!({"kind": k, "id": "x", "name": n});
        assert_eq!(objects_text(&[], 40), "");
        assert_eq!(
            objects_text(&[obj("secret", "db"), obj("service", "web")], 40),
            "secret:db,service:web"
        );
        let many: Vec<Value> = (0..6).map(|i| obj("secret", &format!("s{i}"))).collect();
        assert_eq!(
            objects_text(&many, 40),
            "secret:s0,secret:s1,secret:s2,+3 more"
        );
        let long = [obj("secret", &"n".repeat(60)), obj("service", "web")];
        let text = objects_text(&long, 40);
        assert!(text.ends_with("…,+1 more"), "{text}");
        assert!(text.chars().count() <= 40, "{text}");
        assert_eq!(objects_text(&[json!({"kind": "swarm"})], 40), "swarm");
    }

    #[test]
    fn outcome_column() {
        assert_eq!(outcome_text(Some(200), ""), "200");
        assert_eq!(outcome_text(Some(0), ""), "ok");
        assert_eq!(
            outcome_text(Some(404), "no such secret"),
            "404 no such secret"
        );
        assert_eq!(outcome_text(Some(0), "disk full"), "error: disk full");
    }

    #[test]
    fn verify_results() {
        let ok = Verified::from_api(&json!({"Ok": true, "Records": 12, "Files": 2, "Retired": 0,
                                            "FirstBad": null}));
        assert_eq!(ok.text().0, "OK: 12 records in 2 files verified\n");
        assert_eq!(ok.text().1, ExitCode::SUCCESS);
        let bad = Verified::from_api(&json!({"Ok": false, "Records": 4, "Files": 1, "Retired": 0,
            "FirstBad": {"File": "audit-00000000000000000001.jsonl", "Line": 5, "Seq": 5,
                         "Reason": "hash mismatch"}}));
        assert_eq!(
            bad.text().0,
            "FAILED: first bad record: file audit-00000000000000000001.jsonl line 5 (seq 5): hash mismatch\n"
        );
        assert_eq!(bad.text().1, ExitCode::from(1));
    }

    #[test]
    fn verify_files_offline() {
        let dir = tempfile::tempdir().unwrap();
        let report = lockbox_audit::verify(dir.path(), None).unwrap();
        let v = Verified::from_report(&report);
        assert!(v.ok, "{v:?}");
        assert_eq!(v.text().0, "OK: 0 records in 0 files verified\n");
    }
}
