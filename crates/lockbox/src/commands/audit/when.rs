//! `--since`/`--until` of `lockbox audit`: a time, a date, or a duration before now, turned
//! into RFC 3339 on the client.

use anyhow::bail;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// Parses a `--since`/`--until` value, as docker's `--since`, plus dates:
///
/// * RFC 3339: `2026-11-23T10:00:00Z`, `2026-11-23T11:00:00+01:00`;
/// * a date `2026-11-23` (midnight UTC), or a date and time without offset
///   `2026-11-23T10:00[:00]` (also with a space; UTC);
/// * a Go duration before `now`: `10m`, `2h`, `1h30m`, `90s`, with an optional leading number
///   of days: `7d`, `1d12h`;
/// * Unix seconds: `1763892000` (or `1763892000.5`; `0` is the epoch, as for docker).
pub(crate) fn parse_when(s: &str, now: OffsetDateTime) -> anyhow::Result<OffsetDateTime> {
    let s = s.trim();
    if s.is_empty() {
        bail!("empty time");
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(UtcOffset::UTC));
    }
    if let Ok(d) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
        return Ok(d.midnight().assume_utc());
    }
    let spaced = s.replacen(' ', "T", 1);
    for f in [
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]"),
    ] {
        if let Ok(t) = PrimitiveDateTime::parse(&spaced, f) {
            return Ok(t.assume_utc());
        }
    }
    if let Some(t) = unix_seconds(s) {
        return Ok(t);
    }
    match duration(s) {
        Some(Ok(d)) => now
            .checked_sub(d)
            .ok_or_else(|| anyhow::anyhow!("{s:?} is too far back")),
        Some(Err(e)) => bail!("invalid time {s:?}: {e}"),
        None => bail!(
            "invalid time {s:?}: use RFC 3339 (2026-11-23T10:00:00Z), a date (2026-11-23) \
             or a duration before now (10m, 2h, 1h30m, 7d)"
        ),
    }
}

/// RFC 3339 in UTC, as sent to the daemon.
pub(crate) fn rfc3339(t: OffsetDateTime) -> anyhow::Result<String> {
    Ok(t.to_offset(UtcOffset::UTC).format(&Rfc3339)?)
}

/// `N` or `N.F` seconds since the epoch.
fn unix_seconds(s: &str) -> Option<OffsetDateTime> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let nanos: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()?
        .checked_add(Duration::nanoseconds(nanos))
}

/// A duration (`None` if `s` does not look like one, so the generic message is shown).
fn duration(s: &str) -> Option<Result<Duration, String>> {
    let (days, rest) = match s.split_once('d') {
        Some((n, rest)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(n), rest)
        }
        _ => (None, s),
    };
    let looks_like = |x: &str| {
        x.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
            && x.ends_with(|c: char| c.is_ascii_alphabetic())
    };
    if days.is_none() && !looks_like(rest) {
        return None;
    }
    if days.is_some() && rest.starts_with(['-', '+']) {
        return Some(Err(format!("invalid duration {s:?}")));
    }
    let mut total = Duration::ZERO;
    if let Some(n) = days {
        let n: i64 = match n.parse() {
            Ok(n) => n,
            Err(_) => return Some(Err("too many days".into())),
        };
        match n.checked_mul(86_400) {
            Some(secs) => total = Duration::seconds(secs),
            None => return Some(Err("too many days".into())),
        }
    }
    if !rest.is_empty() {
        match lockbox_format::parse_go_duration(rest) {
            Ok(nanos) => total += Duration::nanoseconds(nanos),
            Err(e) => return Some(Err(e)),
        }
    }
    if total.is_negative() {
        return Some(Err("a duration must not be negative".into()));
    }
    Some(Ok(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn at(s: &str) -> String {
        let now = datetime!(2026-11-23 12:00:00 UTC);
        rfc3339(parse_when(s, now).unwrap()).unwrap()
    }

    #[test]
    fn times_and_dates() {
        assert_eq!(at("2026-11-23T10:00:00Z"), "2026-11-23T10:00:00Z");
        assert_eq!(at("2026-11-23T11:00:00+01:00"), "2026-11-23T10:00:00Z");
        assert_eq!(at("2026-11-23T10:00:00.5Z"), "2026-11-23T10:00:00.5Z");
        assert_eq!(at("2026-11-23"), "2026-11-23T00:00:00Z");
        assert_eq!(at("2026-11-23T10:30"), "2026-11-23T10:30:00Z");
        assert_eq!(at("2026-11-23 10:30:15"), "2026-11-23T10:30:15Z");
        assert_eq!(at("1763892000"), "2025-11-23T10:00:00Z");
        assert_eq!(at("1763892000.25"), "2025-11-23T10:00:00.25Z");
    }

    #[test]
    fn durations_before_now() {
        assert_eq!(at("10m"), "2026-11-23T11:50:00Z");
        assert_eq!(at("2h"), "2026-11-23T10:00:00Z");
        assert_eq!(at("1h30m"), "2026-11-23T10:30:00Z");
        assert_eq!(at("90s"), "2026-11-23T11:58:30Z");
        assert_eq!(at("1.5h"), "2026-11-23T10:30:00Z");
        assert_eq!(at("7d"), "2026-11-16T12:00:00Z");
        assert_eq!(at("1d12h"), "2026-11-22T00:00:00Z");
        // As docker: "0" is Unix time 0, not "now".
        assert_eq!(at("0"), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn bad_values() {
        let now = datetime!(2026-11-23 12:00:00 UTC);
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "10x",
            "-1h",
            "1d-2h",
            "d",
            "1.2.3",
        ] {
            assert!(parse_when(bad, now).is_err(), "{bad:?} parsed");
        }
        assert!(parse_when(" 2h ", now).is_ok());
        let e = parse_when("10x", now).unwrap_err().to_string();
        assert!(e.contains("unknown unit"), "{e}");
        let e = parse_when("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("duration before now"), "{e}");
    }
}
