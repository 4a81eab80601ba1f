//! `get_secret` against the real process environment: the test binary runs itself again with
//! the variables set (setting them in-process would need `unsafe`).

use std::process::Command;

const CHILD: &str = "LOCKBOX_SECRETS_TEST_CHILD";

#[test]
fn reads_the_real_environment() {
    if std::env::var_os(CHILD).is_some() {
        // In the child: the variables below were set by the parent.
        let s = lockbox_secrets::get_secret("TEST_DB_PASSWORD").expect("secret");
        assert_eq!(s.expose(), "a-value-of-more-than-16-chars");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        let e = lockbox_secrets::get_secret("TEST_MISSING").unwrap_err();
        assert!(e.to_string().contains("/run/secrets/test_missing"), "{e}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "a-value-of-more-than-16-chars\n").unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "reads_the_real_environment", "--nocapture"])
        .env(CHILD, "1")
        .env("TEST_DB_PASSWORD_FILE", &file)
        .env("TEST_DB_PASSWORD", "the-environment-loses-to-the-file")
        .env_remove("TEST_MISSING")
        .env_remove("TEST_MISSING_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}
