//! Tests across modules: appending, rotation, retention, failure, tampering,
//! queries.

// Options and filters are built the way callers outside the crate must build
// `#[non_exhaustive]` structs: from `Default` and then field by field.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::segment::{ANCHOR_FILE, segment_name};
use crate::*;

const ACTIONS: [&str; 4] = ["secret.create", "secret.inspect", "swarm.unlock", "http"];

fn base_time() -> OffsetDateTime {
    datetime!(2025-01-01 00:00 UTC)
}

fn rec(i: u64) -> Record {
    Record {
        time: base_time() + time::Duration::seconds(i as i64),
        actor: format!("user{}", i % 3),
        source: format!("unix:uid={},pid={}", 1000 + i % 3, i),
        action: ACTIONS[(i % 4) as usize].into(),
        method: i.is_multiple_of(2).then(|| "POST".into()),
        path: i.is_multiple_of(2).then(|| format!("/v1.47/secrets/{i}")),
        objects: vec![ObjectRef {
            kind: "secret".into(),
            id: format!("id{i:04}abc"),
            name: format!("name{i}"),
        }],
        outcome: Outcome {
            status: if i.is_multiple_of(5) { 404 } else { 200 },
            error: i.is_multiple_of(5).then(|| "not found".into()),
        },
        details: BTreeMap::from([("n".into(), i.to_string())]),
    }
}

fn tiny(max_segment_bytes: u64) -> Options {
    let mut o = Options::default();
    o.max_segment_bytes = max_segment_bytes;
    o
}

/// Appends records 1..=n one after another, closes the log and returns its
/// head.
async fn build(dir: &Path, n: u64, options: Options) -> (u64, [u8; 32]) {
    let log = AuditLog::open(dir, options).expect("open");
    for i in 1..=n {
        assert_eq!(log.append(rec(i)).await.expect("append"), i);
    }
    let head = log.head();
    log.close().await;
    head
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    names.sort();
    names
}

fn read_lines(path: &Path) -> Vec<Vec<u8>> {
    let data = fs::read(path).expect("read");
    data.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    fs::write(path, lines.concat()).expect("write");
}

#[track_caller]
fn assert_bad(report: &VerifyReport, file: &str, line: u64, expected: u64, found: Option<u64>) {
    assert!(!report.ok, "verify passed: {report:?}");
    let bad = report.first_bad.as_ref().expect("first_bad");
    assert_eq!(
        (bad.file.as_str(), bad.line, bad.expected_seq, bad.found_seq),
        (file, line, expected, found),
        "{bad:?}"
    );
}

#[track_caller]
fn assert_ok(report: &VerifyReport, records: u64) {
    assert!(report.ok, "{report:?}");
    assert_eq!(report.first_bad, None);
    assert_eq!(report.records, records, "{report:?}");
}

#[track_caller]
fn assert_reason(report: &VerifyReport, needle: &str) {
    let reason = &report.first_bad.as_ref().expect("first_bad").reason;
    assert!(
        reason.contains(needle),
        "{reason:?} does not mention {needle:?}"
    );
}

fn seg1(dir: &Path) -> PathBuf {
    dir.join(segment_name(1))
}

// ---------------------------------------------------------------- appending

#[tokio::test]
async fn append_reopen_resume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    assert_eq!(log.head(), (0, GENESIS));
    for i in 1..=3 {
        assert_eq!(log.append(rec(i)).await.expect("append"), i);
    }
    let head = log.head();
    assert_eq!(head.0, 3);
    log.close().await;

    let log = AuditLog::open(dir.path(), Options::default()).expect("reopen");
    assert_eq!(log.head(), head);
    assert_eq!(log.append(rec(4)).await.expect("append"), 4);
    let head = log.head();
    log.close().await;

    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 4);
    let got: Vec<StoredRecord> = query(dir.path(), &Filter::default())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(got.len(), 4);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.record, rec(i as u64 + 1));
    }
    assert_eq!(got[3].hash, hex::encode(head.1));
    assert_eq!(got[1].prev, got[0].hash);
    assert_eq!(got[0].prev, "0".repeat(64));
}

#[tokio::test]
async fn files_are_private() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("audit");
    build(&dir, 1, Options::default()).await;
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&seg1(&dir)), 0o600);
    assert_eq!(mode(&dir.join("audit.lock")), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_32_tasks() {
    const TASKS: u64 = 32;
    const TOTAL: u64 = 2000;
    // Baseline: one appender, so one fdatasync per record.
    let base = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(base.path(), Options::default()).expect("open");
    let started = Instant::now();
    for i in 0..100 {
        log.append(rec(i)).await.expect("append");
    }
    let per_sync = started.elapsed() / 100;
    log.close().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let log = log.clone();
        tasks.spawn(async move {
            let mut seqs = Vec::new();
            for i in (t..TOTAL).step_by(TASKS as usize) {
                seqs.push(log.append(rec(i)).await.expect("append"));
            }
            seqs
        });
    }
    let mut seqs: Vec<u64> = tasks.join_all().await.into_iter().flatten().collect();
    let elapsed = started.elapsed();
    let total = TOTAL;
    let commits = log.commits();
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=total).collect::<Vec<_>>(),
        "seqs unique and contiguous"
    );
    let head = log.head();
    assert_eq!(head.0, total);
    log.close().await;
    eprintln!(
        "group commit: {total} appends from {TASKS} tasks in {elapsed:?} \
         ({:.0}/s) with {commits} fdatasyncs ({:.1} records each); \
         one appender alone: {per_sync:?} per record (≈{:?} for {total})",
        total as f64 / elapsed.as_secs_f64(),
        total as f64 / commits as f64,
        per_sync * total as u32
    );
    // One fsync per record would mean `total` commits; group commit must do
    // far fewer. With 32 appenders waiting, every batch but the first holds
    // several records.
    assert!(
        commits * 4 <= total,
        "{commits} commits for {total} records"
    );
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), total);
}

#[tokio::test]
async fn odd_strings_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    let mut odd = rec(1);
    let long: String =
        "line one\nline \"two\"\r\n\ttab \\ back\u{0}nul \u{2028} é 日本 🔑 ".repeat(500);
    odd.actor = long.clone();
    odd.path = Some(format!("/x?q={long}"));
    odd.outcome.error = Some(long.clone());
    odd.objects[0].name = "\"},\"prev\":\"".into();
    odd.details.insert(
        "prev".into(),
        format!("{}\",\"hash\":\"{}\"}}\n", "0".repeat(64), "f".repeat(64)),
    );
    odd.details.insert("multi\nline key".into(), long.clone());
    assert_eq!(log.append(odd.clone()).await.expect("append"), 1);
    assert_eq!(log.append(rec(2)).await.expect("append"), 2);
    let head = log.head();
    log.close().await;

    let lines = read_lines(&seg1(dir.path()));
    assert_eq!(lines.len(), 2, "no raw newline inside a line");
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 2);
    let got: Vec<StoredRecord> = query(dir.path(), &Filter::default())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(got[0].record, odd);
    let exported: Vec<String> = export(dir.path(), &Filter::default())
        .expect("export")
        .collect::<Result<_, _>>()
        .expect("lines");
    assert_eq!(exported.concat().into_bytes(), lines.concat());
}

#[tokio::test]
async fn invalid_time_is_refused_before_queueing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    let mut r = rec(1);
    // Year 10000 in UTC: not expressible in RFC 3339.
    r.time = datetime!(9999-12-31 23:00 -05:00);
    assert!(matches!(
        log.append(r).await,
        Err(AuditError::InvalidRecord(_))
    ));
    assert_eq!(log.append(rec(1)).await.expect("append"), 1);
    log.close().await;
}

#[tokio::test]
async fn second_open_is_locked_until_close() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    assert!(matches!(
        AuditLog::open(dir.path(), Options::default()),
        Err(AuditError::Locked { .. })
    ));
    log.close().await;
    assert!(matches!(log.append(rec(1)).await, Err(AuditError::Closed)));
    log.close().await; // twice is fine
    let log = AuditLog::open(dir.path(), Options::default()).expect("reopen");
    log.close().await;
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = Options::default();
    o.max_segments = Some(0);
    assert!(matches!(
        AuditLog::open(dir.path(), o),
        Err(AuditError::InvalidOptions(_))
    ));
    assert!(matches!(
        AuditLog::open(dir.path(), tiny(0)),
        Err(AuditError::InvalidOptions(_))
    ));
}

// ------------------------------------------------------ rotation, retention

#[tokio::test]
async fn rotation_chains_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = 1200;
    let head = build(dir.path(), 40, tiny(max)).await;
    let files = segment_files(dir.path());
    assert!(files.len() >= 10, "{files:?}");
    let mut next = 1;
    for name in &files {
        assert_eq!(*name, segment_name(next), "file named after its first seq");
        let len = fs::metadata(dir.path().join(name)).expect("stat").len();
        assert!(len <= max, "{name} is {len} bytes");
        next += read_lines(&dir.path().join(name)).len() as u64;
    }
    assert_eq!(next, 41);
    let report = verify(dir.path(), Some(head)).expect("verify");
    assert_ok(&report, 40);
    assert_eq!(report.files, files.len());

    // A reopen continues in the last segment or a new one, still chained.
    let log = AuditLog::open(dir.path(), tiny(max)).expect("reopen");
    for i in 41..=45 {
        assert_eq!(log.append(rec(i)).await.expect("append"), i);
    }
    let head = log.head();
    log.close().await;
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 45);
}

#[tokio::test]
async fn record_larger_than_a_segment_gets_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 5, tiny(10)).await;
    assert_eq!(segment_files(dir.path()).len(), 5);
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 5);
}

#[tokio::test]
async fn retention_keeps_anchor_and_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = tiny(1200);
    o.max_segments = Some(3);
    let head = build(dir.path(), 40, o.clone()).await;
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    let anchor: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join(ANCHOR_FILE)).expect("anchor"))
            .expect("json");
    let first_kept = anchor["seq"].as_u64().expect("seq");
    assert_eq!(files[0], segment_name(first_kept));
    assert_eq!(anchor["removed_through"].as_u64(), Some(first_kept - 1));
    let first_line = &read_lines(&dir.path().join(&files[0]))[0];
    let first: StoredRecord = serde_json::from_slice(first_line).expect("record");
    assert_eq!(anchor["prev"].as_str(), Some(first.prev.as_str()));

    let report = verify(dir.path(), Some(head)).expect("verify");
    assert_ok(&report, 40 - (first_kept - 1));
    assert_eq!(report.retired, first_kept - 1);
    assert_eq!(report.files, 3);
    // A head older than the retired records cannot be checked; it is not an
    // error.
    assert_ok(
        &verify(dir.path(), Some((1, [9; 32]))).expect("verify"),
        40 - (first_kept - 1),
    );

    // Query skips nothing that is kept.
    assert_eq!(
        query(dir.path(), &Filter::default())
            .expect("query")
            .count() as u64,
        40 - (first_kept - 1)
    );

    // Reopen and keep appending: still three segments, still verifies.
    let log = AuditLog::open(dir.path(), o).expect("reopen");
    for i in 41..=60 {
        log.append(rec(i)).await.expect("append");
    }
    let head = log.head();
    log.close().await;
    assert_eq!(segment_files(dir.path()).len(), 3);
    let report = verify(dir.path(), Some(head)).expect("verify");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.records + report.retired, 60);

    // Deleting the anchor makes the missing records visible.
    fs::remove_file(dir.path().join(ANCHOR_FILE)).expect("rm");
    let files = segment_files(dir.path());
    let first = files[0]
        .trim_start_matches("audit-")
        .trim_end_matches(".jsonl")
        .parse::<u64>()
        .expect("seq");
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &files[0],
        1,
        1,
        Some(first),
    );
}

#[tokio::test]
async fn interrupted_retention_is_finished_and_ignored_meanwhile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 20, tiny(1200)).await;
    let files = segment_files(dir.path());
    // Simulate a crash after the anchor was written but before any deletion.
    let kept = &files[files.len() - 2];
    let first: StoredRecord =
        serde_json::from_slice(&read_lines(&dir.path().join(kept))[0]).expect("record");
    fs::write(
        dir.path().join(ANCHOR_FILE),
        format!(
            "{{\"seq\":{},\"prev\":\"{}\",\"removed_through\":{}}}\n",
            first.seq,
            first.prev,
            first.seq - 1
        ),
    )
    .expect("anchor");
    let report = verify(dir.path(), Some(head)).expect("verify");
    assert_ok(&report, 20 - (first.seq - 1));
    assert_eq!(report.files, 2);
    let mut o = tiny(1200);
    o.max_segments = Some(5);
    AuditLog::open(dir.path(), o).expect("open").close().await;
    assert_eq!(segment_files(dir.path()).len(), 2);
    assert_ok(
        &verify(dir.path(), Some(head)).expect("verify"),
        20 - (first.seq - 1),
    );
}

// ------------------------------------------------- crash and write failure

#[tokio::test]
async fn partial_last_line_is_truncated_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 5, Options::default()).await;
    let path = seg1(dir.path());
    let good_len = fs::metadata(&path).expect("stat").len();
    let mut data = fs::read(&path).expect("read");
    data.extend_from_slice(b"{\"seq\":6,\"time\":\"2025-");
    fs::write(&path, &data).expect("write");

    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &segment_name(1),
        6,
        6,
        None,
    );
    let log = AuditLog::open(dir.path(), Options::default()).expect("open repairs");
    assert_eq!(fs::metadata(&path).expect("stat").len(), good_len);
    assert_eq!(log.head(), head);
    assert_eq!(log.append(rec(6)).await.expect("append"), 6);
    let head = log.head();
    log.close().await;
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 6);
}

#[tokio::test]
async fn file_of_one_partial_line_is_emptied_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(seg1(dir.path()), b"{\"seq\":1,\"ti").expect("write");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    assert_eq!(log.head(), (0, GENESIS));
    assert_eq!(log.append(rec(1)).await.expect("append"), 1);
    log.close().await;
    assert_ok(&verify(dir.path(), None).expect("verify"), 1);
}

#[tokio::test]
async fn empty_segment_after_rotation_crash_is_resumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 3, Options::default()).await;
    // A crash right after creating the next segment.
    fs::write(dir.path().join(segment_name(4)), b"").expect("write");
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 3);
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    assert_eq!(log.head(), head);
    assert_eq!(log.append(rec(4)).await.expect("append"), 4);
    let head = log.head();
    log.close().await;
    assert_eq!(read_lines(&dir.path().join(segment_name(4))).len(), 1);
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 4);

    // An empty segment whose name does not follow the last record is refused.
    fs::write(dir.path().join(segment_name(9)), b"").expect("write");
    assert!(matches!(
        AuditLog::open(dir.path(), Options::default()),
        Err(AuditError::Corrupt { .. })
    ));
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &segment_name(9),
        1,
        5,
        None,
    );
}

#[tokio::test]
async fn unreadable_last_line_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 2, Options::default()).await;
    let mut data = fs::read(seg1(dir.path())).expect("read");
    data.extend_from_slice(b"garbage\n");
    fs::write(seg1(dir.path()), data).expect("write");
    assert!(matches!(
        AuditLog::open(dir.path(), Options::default()),
        Err(AuditError::Corrupt { .. })
    ));
}

#[tokio::test]
async fn bad_middle_record_is_not_repaired_and_appending_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 5, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    let at = lines[2]
        .windows(5)
        .position(|w| w == b"user0")
        .expect("actor");
    lines[2][at + 4] = b'9';
    write_lines(&path, &lines);
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    assert_eq!(log.append(rec(6)).await.expect("append"), 6);
    log.close().await;
    assert_eq!(read_lines(&path)[2], lines[2], "not repaired");
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &segment_name(1),
        3,
        3,
        Some(3),
    );
}

#[tokio::test]
async fn failed_sync_rolls_back_and_the_chain_continues() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    log.append(rec(1)).await.expect("append");
    let head = log.head();
    let len = fs::metadata(seg1(dir.path())).expect("stat").len();

    log.inject(|f| f.fail_sync = 1);
    let err = log.append(rec(2)).await.expect_err("sync fails");
    assert!(matches!(err, AuditError::Write { .. }), "{err}");
    assert_eq!(
        fs::metadata(seg1(dir.path())).expect("stat").len(),
        len,
        "rolled back"
    );
    assert_eq!(log.head(), head, "head unchanged");

    // The whole batch fails: queue several appends behind a failing sync.
    log.inject(|f| f.fail_sync = 1);
    let results = futures_join(&log, 2..=9).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert!(failed >= 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(AuditError::Write { .. }))),
        "{results:?}"
    );

    // Later appends succeed and chain to the last durable record.
    let seq = log.append(rec(10)).await.expect("append");
    let head = log.head();
    assert_eq!(head.0, seq);
    log.close().await;
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), seq);
}

/// Appends records `range` concurrently; returns the results.
async fn futures_join(
    log: &AuditLog,
    range: std::ops::RangeInclusive<u64>,
) -> Vec<Result<u64, AuditError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in range {
        let log = log.clone();
        tasks.spawn(async move { log.append(rec(i)).await });
    }
    tasks.join_all().await
}

#[tokio::test]
async fn failed_rollback_fails_the_log_until_reopened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    log.append(rec(1)).await.expect("append");
    log.inject(|f| {
        f.fail_sync = 1;
        f.fail_rollback = true;
    });
    assert!(matches!(
        log.append(rec(2)).await,
        Err(AuditError::Write { .. })
    ));
    let err = log.append(rec(3)).await.expect_err("failed log");
    assert!(matches!(err, AuditError::Failed { .. }), "{err}");
    assert_eq!(log.head().0, 1);
    log.close().await;

    // The unsynced bytes of record 2 are still in the file (the rollback
    // "failed"); reopening takes the state from disk and the chain is intact.
    let log = AuditLog::open(dir.path(), Options::default()).expect("reopen");
    let seq = log.append(rec(3)).await.expect("append");
    assert_eq!(seq, 3);
    let head = log.head();
    log.close().await;
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 3);
}

// -------------------------------------------------------------- tampering

#[tokio::test]
async fn tamper_flip_byte_in_middle_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 10, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    // Change one byte inside a string: the JSON stays valid.
    let at = lines[4]
        .windows(6)
        .position(|w| w == b"\"name5")
        .expect("name");
    lines[4][at + 5] = b'6';
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 5, 5, Some(5));
    assert!(
        report
            .first_bad
            .as_ref()
            .is_some_and(|b| b.reason.contains("hash mismatch"))
    );
    assert_eq!(report.records, 4);
}

#[tokio::test]
async fn tamper_whitespace_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 4, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    // Equivalent JSON, different bytes.
    lines[1] = String::from_utf8(lines[1].clone())
        .expect("utf-8")
        .replacen("\"actor\":", "\"actor\": ", 1)
        .into_bytes();
    write_lines(&path, &lines);
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &segment_name(1),
        2,
        2,
        Some(2),
    );
}

#[tokio::test]
async fn tamper_delete_middle_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 10, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines.remove(4);
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 5, 5, Some(6));
    assert_reason(&report, "records missing");
}

#[tokio::test]
async fn tamper_swap_two_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 10, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines.swap(3, 6);
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 4, 4, Some(7));
    assert_reason(&report, "records missing");

    // Swapping back-to-back lines: the later record comes first.
    let mut lines = read_lines(&path);
    lines.swap(3, 6);
    lines.swap(7, 8);
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 8, 8, Some(9));

    // A line repeated: seq goes backwards.
    let mut lines = read_lines(&path);
    lines.swap(7, 8);
    let dup = lines[5].clone();
    lines.insert(6, dup);
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 7, 7, Some(6));
    assert_reason(&report, "out of order or repeated");
}

#[tokio::test]
async fn tamper_renumbered_line_is_caught_by_prev() {
    // Delete line 5 and renumber the rest with recomputed hashes of their own
    // bytes: the chain still breaks at line 5 because prev no longer links.
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 6, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines.remove(4);
    let moved = String::from_utf8(lines[4].clone())
        .expect("utf-8")
        .replacen("{\"seq\":6,", "{\"seq\":5,", 1)
        .into_bytes();
    lines[4] = moved;
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 5, 5, Some(5));
    assert_reason(&report, "prev is not the hash of the previous record");
}

#[tokio::test]
async fn tamper_delete_last_line_needs_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 10, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines.pop();
    write_lines(&path, &lines);
    // Without the head, a shorter trail looks fine...
    assert_ok(&verify(dir.path(), None).expect("verify"), 9);
    // ...with it, the missing tail is reported where record 10 should be.
    let report = verify(dir.path(), Some(head)).expect("verify");
    assert_bad(&report, &segment_name(1), 10, 10, None);
    assert_eq!(report.records, 9);
}

#[tokio::test]
async fn tamper_rewritten_tail_needs_the_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let head = build(dir.path(), 5, Options::default()).await;
    // Rewrite record 5 and recompute its hash: the chain is self-consistent.
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    let old = crate::record::split_line(&lines[4][..lines[4].len() - 1])
        .expect("split")
        .prev;
    let mut r = rec(5);
    r.actor = "nobody".into();
    let body = crate::record::encode_body(&r).expect("encode");
    lines[4] = crate::record::encode_line(5, &old, &body).0;
    write_lines(&path, &lines);
    assert_ok(&verify(dir.path(), None).expect("verify"), 5);
    assert_bad(
        &verify(dir.path(), Some(head)).expect("verify"),
        &segment_name(1),
        5,
        5,
        Some(5),
    );
    // A head from earlier (seq 3) still matches: the damage is after it.
    let third: StoredRecord = serde_json::from_slice(&lines[2]).expect("record");
    let h3 = crate::record::decode_hash(third.hash.as_bytes()).expect("hash");
    assert_ok(&verify(dir.path(), Some((3, h3))).expect("verify"), 5);
}

#[tokio::test]
async fn tamper_truncate_mid_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 10, Options::default()).await;
    let path = seg1(dir.path());
    let data = fs::read(&path).expect("read");
    let lines = read_lines(&path);
    let cut = data.len() - lines[9].len() / 2;
    fs::write(&path, &data[..cut]).expect("write");
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 10, 10, None);
    assert!(
        report
            .first_bad
            .as_ref()
            .is_some_and(|b| b.reason.contains("truncated"))
    );
}

#[tokio::test]
async fn tamper_invalid_json_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 4, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines[2] = b"not json at all\n".to_vec();
    write_lines(&path, &lines);
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &segment_name(1),
        3,
        3,
        None,
    );

    // Valid suffix, broken JSON before it.
    let mut lines = read_lines(&path);
    lines[2] = lines[1].clone();
    lines[2][0] = b'[';
    write_lines(&path, &lines);
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &segment_name(1), 3, 3, None);
    assert!(
        report
            .first_bad
            .as_ref()
            .is_some_and(|b| b.reason.contains("JSON"))
    );
}

#[tokio::test]
async fn tamper_delete_middle_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 30, tiny(1200)).await;
    let files = segment_files(dir.path());
    assert!(files.len() >= 4);
    let seq_of = |name: &str| name[6..26].parse::<u64>().expect("seq");
    fs::remove_file(dir.path().join(&files[1])).expect("rm");
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(
        &report,
        &files[2],
        1,
        seq_of(&files[1]),
        Some(seq_of(&files[2])),
    );
}

#[tokio::test]
async fn tamper_reorder_segments_by_renaming() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 30, tiny(1200)).await;
    let files = segment_files(dir.path());
    assert!(files.len() >= 4);
    let seq_of = |name: &str| name[6..26].parse::<u64>().expect("seq");
    let (a, b) = (dir.path().join(&files[1]), dir.path().join(&files[2]));
    let tmp = dir.path().join("x");
    fs::rename(&a, &tmp).expect("mv");
    fs::rename(&b, &a).expect("mv");
    fs::rename(&tmp, &b).expect("mv");
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(
        &report,
        &files[1],
        1,
        seq_of(&files[1]),
        Some(seq_of(&files[2])),
    );
}

#[tokio::test]
async fn tamper_segment_renamed_to_a_wrong_seq() {
    // Contents intact, only the name lies about the first seq.
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 30, tiny(1200)).await;
    let files = segment_files(dir.path());
    let seq_of = |name: &str| name[6..26].parse::<u64>().expect("seq");
    let wrong = segment_name(seq_of(&files[1]) + 1);
    fs::rename(dir.path().join(&files[1]), dir.path().join(&wrong)).expect("mv");
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(
        &report,
        &wrong,
        1,
        seq_of(&files[1]),
        Some(seq_of(&files[1])),
    );
    assert_reason(&report, "file name says");
}

#[tokio::test]
async fn tamper_swapped_segment_contents_keep_names() {
    // Segment 2's content replaced by a copy of segment 1 (same length chain
    // elsewhere): caught at its first line.
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 30, tiny(1200)).await;
    let files = segment_files(dir.path());
    let seq_of = |name: &str| name[6..26].parse::<u64>().expect("seq");
    fs::copy(dir.path().join(&files[0]), dir.path().join(&files[1])).expect("cp");
    let report = verify(dir.path(), None).expect("verify");
    assert_bad(&report, &files[1], 1, seq_of(&files[1]), Some(1));
}

#[tokio::test]
async fn tamper_first_segment_removed_without_anchor() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 10, tiny(1200)).await;
    let files = segment_files(dir.path());
    fs::remove_file(dir.path().join(&files[0])).expect("rm");
    let first = files[1][6..26].parse::<u64>().expect("seq");
    assert_bad(
        &verify(dir.path(), None).expect("verify"),
        &files[1],
        1,
        1,
        Some(first),
    );
}

#[tokio::test]
async fn empty_trail_and_heads() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_ok(&verify(dir.path(), None).expect("verify"), 0);
    let log = AuditLog::open(dir.path(), Options::default()).expect("open");
    let head = log.head();
    log.close().await;
    assert_ok(&verify(dir.path(), Some(head)).expect("verify"), 0);
    assert_bad(
        &verify(dir.path(), Some((0, [1; 32]))).expect("verify"),
        &segment_name(1),
        1,
        1,
        None,
    );
    assert_bad(
        &verify(dir.path(), Some((2, [1; 32]))).expect("verify"),
        &segment_name(1),
        1,
        1,
        None,
    );
    assert!(verify(&dir.path().join("missing"), None).is_err());
}

// ----------------------------------------------------------------- queries

#[tokio::test]
async fn query_filters() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 40, tiny(1500)).await;
    let seqs = |f: &Filter| -> Vec<u64> {
        query(dir.path(), f)
            .expect("query")
            .map(|r| r.expect("record").seq)
            .collect()
    };
    let all: Vec<u64> = (1..=40).collect();
    assert_eq!(seqs(&Filter::default()), all);

    let mut f = Filter::default();
    f.actor = Some("user1".into());
    assert_eq!(
        seqs(&f),
        all.iter()
            .copied()
            .filter(|i| i % 3 == 1)
            .collect::<Vec<_>>()
    );

    let mut f = Filter::default();
    f.action = Some("secret.*".into());
    assert_eq!(
        seqs(&f),
        all.iter()
            .copied()
            .filter(|i| i % 4 < 2)
            .collect::<Vec<_>>()
    );
    f.action = Some("secret.inspect".into());
    assert_eq!(
        seqs(&f),
        all.iter()
            .copied()
            .filter(|i| i % 4 == 1)
            .collect::<Vec<_>>()
    );
    f.action = Some("secret.".into());
    assert_eq!(seqs(&f), Vec::<u64>::new(), "exact without '*'");

    let mut f = Filter::default();
    f.since = Some(base_time() + time::Duration::seconds(10));
    f.until = Some(base_time() + time::Duration::seconds(15));
    assert_eq!(seqs(&f), vec![10, 11, 12, 13, 14]);

    let mut f = Filter::default();
    f.object = Some("name7".into());
    assert_eq!(seqs(&f), vec![7]);
    f.object = Some("id0007abc".into());
    assert_eq!(seqs(&f), vec![7]);
    f.object = Some("id001".into()); // ID prefix
    assert_eq!(seqs(&f), (10..=19).collect::<Vec<_>>());
    f.object = Some("name1".into()); // names match exactly only
    assert_eq!(seqs(&f), vec![1]);

    let mut f = Filter::default();
    f.without_detail = Some(("n".into(), "7".into()));
    assert_eq!(
        seqs(&f),
        all.iter().copied().filter(|&i| i != 7).collect::<Vec<_>>()
    );
    f.limit = Some(8); // counts the records yielded, not those left out
    assert_eq!(seqs(&f), vec![1, 2, 3, 4, 5, 6, 8, 9]);

    let mut f = Filter::default();
    f.from_seq = Some(33);
    assert_eq!(seqs(&f), (33..=40).collect::<Vec<_>>());
    f.limit = Some(3);
    assert_eq!(seqs(&f), vec![33, 34, 35]);
    f.actor = Some("user2".into());
    assert_eq!(seqs(&f), vec![35, 38]);

    // Export yields the stored bytes; a from_seq export is a chain fragment.
    let mut f = Filter::default();
    f.from_seq = Some(20);
    let exported: String = export(dir.path(), &f)
        .expect("export")
        .collect::<Result<_, _>>()
        .expect("lines");
    let mut stored = Vec::new();
    for name in segment_files(dir.path()) {
        stored.extend(read_lines(&dir.path().join(name)));
    }
    assert_eq!(exported.as_bytes(), stored[19..].concat());
    let recs: Vec<StoredRecord> = exported
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    for w in recs.windows(2) {
        assert_eq!(w[1].prev, w[0].hash);
    }
}

#[tokio::test]
async fn query_reports_bad_lines_and_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    build(dir.path(), 4, Options::default()).await;
    let path = seg1(dir.path());
    let mut lines = read_lines(&path);
    lines[1] = b"{oops\n".to_vec();
    lines.push(b"{\"seq\":5,\"partial".to_vec());
    write_lines(&path, &lines);
    let got: Vec<Result<StoredRecord, AuditError>> = query(dir.path(), &Filter::default())
        .expect("query")
        .collect();
    assert_eq!(got.len(), 4, "partial last line is not yielded");
    assert!(
        matches!(&got[1], Err(AuditError::Malformed { line: 2, .. })),
        "{:?}",
        got[1]
    );
    assert_eq!(got[3].as_ref().map(|r| r.seq).ok(), Some(4));
}

// ---------------------------------------------------------------- proptest

mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn arb_string() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec![
                'a', 'z', ' ', '"', '\\', '\n', '\u{1}', 'é', '🔑', '{', ':',
            ]),
            0..12,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        (
            0i64..4_000_000_000,
            0u32..1_000_000_000,
            arb_string(),
            arb_string(),
            prop::option::of(arb_string()),
            prop::collection::btree_map(arb_string(), arb_string(), 0..3),
            any::<u16>(),
        )
            .prop_map(
                |(secs, nanos, actor, action, path, details, status)| Record {
                    time: OffsetDateTime::from_unix_timestamp(secs).expect("in range")
                        + time::Duration::nanoseconds(i64::from(nanos)),
                    actor,
                    source: "internal".into(),
                    action,
                    method: None,
                    path,
                    objects: Vec::new(),
                    outcome: Outcome {
                        status,
                        error: None,
                    },
                    details,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_single_byte_corruption_is_caught_at_or_before_its_line(
            records in prop::collection::vec(arb_record(), 1..25),
            max_segment in prop::sample::select(vec![300u64, 1000, 1 << 20]),
            offset in any::<prop::sample::Index>(),
            xor in 1u8..=255,
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let n = records.len() as u64;
            let head = rt.block_on(async {
                let log = AuditLog::open(dir.path(), tiny(max_segment)).expect("open");
                let mut tasks = tokio::task::JoinSet::new();
                for r in records {
                    let log = log.clone();
                    tasks.spawn(async move { log.append(r).await.expect("append") });
                }
                tasks.join_all().await;
                let head = log.head();
                log.close().await;
                head
            });
            prop_assert_eq!(head.0, n);
            prop_assert!(verify(dir.path(), Some(head)).expect("verify").ok);

            // Pick a byte across all segments and change it.
            let files = segment_files(dir.path());
            let sizes: Vec<usize> = files
                .iter()
                .map(|f| fs::metadata(dir.path().join(f)).expect("stat").len() as usize)
                .collect();
            let mut pos = offset.index(sizes.iter().sum());
            let mut file_idx = 0;
            while pos >= sizes[file_idx] {
                pos -= sizes[file_idx];
                file_idx += 1;
            }
            let path = dir.path().join(&files[file_idx]);
            let mut data = fs::read(&path).expect("read");
            let line = data[..pos].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            data[pos] ^= xor;
            fs::write(&path, &data).expect("write");

            let report = verify(dir.path(), Some(head)).expect("verify");
            prop_assert!(!report.ok, "corruption at {}:{} not caught", files[file_idx], line);
            let bad = report.first_bad.expect("first_bad");
            let bad_idx = files.iter().position(|f| *f == bad.file).expect("known file");
            prop_assert!(
                (bad_idx, bad.line) <= (file_idx, line),
                "reported {}:{} after the corruption at {}:{}",
                bad.file, bad.line, files[file_idx], line
            );
        }
    }
}
