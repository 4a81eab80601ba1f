//! Rotation schedules: the `rotation-due` label (a date, `2026-02-21`, or a time,
//! `2026-02-21T10:00:00Z`), the interval that renews it (`lockbox.rotate-every`), and durations
//! such as `90d`, `12h`, `1h30m`, `2w`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, UtcOffset};

/// When the secret should be rotated next (the seeds' label).
pub(crate) const ROTATION_DUE_LABEL: &str = "rotation-due";
/// The interval that sets [`ROTATION_DUE_LABEL`] on each new version.
pub(crate) const ROTATE_EVERY_LABEL: &str = "lockbox.rotate-every";

/// A duration as given (`90d`) and its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interval {
    pub(crate) text: String,
    pub(crate) duration: Duration,
}

/// Parses `90d`, `12h`, `1h30m`, `2w`, `45s`, `500ms`, or `0` (units: ms, s, m, h, d, w).
pub(crate) fn parse_interval(s: &str) -> anyhow::Result<Interval> {
    let bad = || anyhow::anyhow!("invalid duration {s:?} (examples: 90d, 12h, 1h30m, 30s)");
    let t = s.trim();
    if t == "0" {
        return Ok(Interval {
            text: t.to_owned(),
            duration: Duration::ZERO,
        });
    }
    let mut rest = t;
    let mut total: u128 = 0;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let ms: u128 = match &rest[..unit] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit..];
        total = total.saturating_add(n.saturating_mul(ms));
    }
    let ms = u64::try_from(total).map_err(|_| bad())?;
    if ms > 100 * 365 * 86_400_000 {
        bail!("duration {s:?} is too long");
    }
    Ok(Interval {
        text: t.to_owned(),
        duration: Duration::from_millis(ms),
    })
}

/// The `rotation-due` value `interval` after `now`: a date when the interval is whole days
/// (as `date -u -d "+90 days" +%Y-%m-%d` wrote it), otherwise a UTC time to the second.
pub(crate) fn due_after(now: OffsetDateTime, interval: &Interval) -> String {
    let due = now + interval.duration;
    if interval.duration.as_millis().is_multiple_of(86_400_000) && !interval.duration.is_zero() {
        due.date().to_string()
    } else {
        format_time(due)
    }
}

/// A UTC time to the second, RFC 3339.
pub(crate) fn format_time(t: OffsetDateTime) -> String {
    let t = t
        .to_offset(UtcOffset::UTC)
        .replace_nanosecond(0)
        .unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

/// Parses a `rotation-due` value: `YYYY-MM-DD` (due at 00:00 UTC that day) or RFC 3339.
pub(crate) fn parse_due(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|d| d.midnight().assume_utc())
}

/// The labels `--rotate-every` sets.
pub(crate) fn schedule_labels(interval: &Interval, now: OffsetDateTime) -> [(String, String); 2] {
    [
        (ROTATE_EVERY_LABEL.to_owned(), interval.text.clone()),
        (ROTATION_DUE_LABEL.to_owned(), due_after(now, interval)),
    ]
}

/// Whether labels say the rotation is overdue at `now` (`None`: no or unreadable due date).
pub(crate) fn overdue(labels: &BTreeMap<String, String>, now: OffsetDateTime) -> Option<bool> {
    labels
        .get(ROTATION_DUE_LABEL)
        .and_then(|d| parse_due(d))
        .map(|due| due <= now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn intervals() {
        let d = |s: &str| parse_interval(s).map(|i| i.duration.as_secs());
        assert_eq!(d("90d").ok(), Some(90 * 86_400));
        assert_eq!(d("1h30m").ok(), Some(5400));
        assert_eq!(d("2w").ok(), Some(14 * 86_400));
        assert_eq!(d("0").ok(), Some(0));
        assert_eq!(d("0s").ok(), Some(0));
        assert_eq!(
            parse_interval("1500ms").unwrap().duration,
            Duration::from_millis(1500)
        );
        for bad in ["", "d", "5", "5y", "-1d", "1.5h", "3 d"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn due_dates() {
        let now = datetime!(2026-01-01 10:30:15.25 UTC);
        assert_eq!(
            due_after(now, &parse_interval("90d").unwrap()),
            "2026-04-01"
        );
        assert_eq!(
            due_after(now, &parse_interval("2h").unwrap()),
            "2026-01-01T12:30:15Z"
        );
        assert_eq!(
            parse_due("2026-04-01"),
            Some(datetime!(2026-04-01 0:00 UTC))
        );
        assert_eq!(
            parse_due("2026-01-01T12:30:15Z"),
            Some(datetime!(2026-01-01 12:30:15 UTC))
        );
        assert_eq!(parse_due("soon"), None);
        let mut l = BTreeMap::new();
        assert_eq!(overdue(&l, now), None);
        l.insert(ROTATION_DUE_LABEL.to_owned(), "2025-01-14".to_owned());
        assert_eq!(overdue(&l, now), Some(true));
        l.insert(ROTATION_DUE_LABEL.to_owned(), "2026-01-02".to_owned());
        assert_eq!(overdue(&l, now), Some(false));
    }
}
