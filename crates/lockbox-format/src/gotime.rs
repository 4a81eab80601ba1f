//! Time helpers matching Go (`time.Time.String`, `time.Duration` float
//! accessors) and `github.com/docker/go-units` `HumanDuration`.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::FormatError;

const NS_PER_SEC: i64 = 1_000_000_000;
const NS_PER_MIN: i64 = 60 * NS_PER_SEC;
const NS_PER_HOUR: i64 = 60 * NS_PER_MIN;

/// Go's `time.Duration` is an `int64` of nanoseconds; longer durations
/// saturate (as `time.Time.Sub` does).
pub(crate) fn go_nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn go_seconds(d: i64) -> f64 {
    (d / NS_PER_SEC) as f64 + (d % NS_PER_SEC) as f64 / 1e9
}

fn go_minutes(d: i64) -> f64 {
    (d / NS_PER_MIN) as f64 + (d % NS_PER_MIN) as f64 / (60.0 * 1e9)
}

fn go_hours(d: i64) -> f64 {
    (d / NS_PER_HOUR) as f64 + (d % NS_PER_HOUR) as f64 / (60.0 * 60.0 * 1e9)
}

/// go-units v0.5.0 `HumanDuration`.
pub fn human_duration(d: Duration) -> String {
    let d = go_nanos(d);
    let seconds = go_seconds(d) as i64;
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = go_minutes(d) as i64;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (go_hours(d) + 0.5) as i64;
    if hours == 1 {
        "About an hour".to_string()
    } else if hours < 48 {
        format!("{hours} hours")
    } else if hours < 24 * 7 * 2 {
        format!("{} days", hours / 24)
    } else if hours < 24 * 30 * 2 {
        format!("{} weeks", hours / 24 / 7)
    } else if hours < 24 * 365 * 2 {
        format!("{} months", hours / 24 / 30)
    } else {
        format!("{} years", (go_hours(d) as i64) / 24 / 365)
    }
}

/// Parse an RFC 3339 timestamp as the Engine API sends it.
pub fn parse_time(s: &str) -> Result<OffsetDateTime, FormatError> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| FormatError::Time(format!("parsing time {s:?}: {e}")))
}

/// `now - then` as Go's `time.Time.Sub` would give it to `HumanDuration`:
/// negative durations become zero ("Less than a second"), a missing time is
/// Go's zero time, i.e. a saturated (292 years) duration.
pub(crate) fn since(then: Option<OffsetDateTime>, now: OffsetDateTime) -> Duration {
    match then {
        None => Duration::from_nanos(i64::MAX as u64),
        Some(t) => {
            let d = now - t;
            if d.is_negative() {
                Duration::ZERO
            } else {
                Duration::try_from(d).unwrap_or(Duration::ZERO)
            }
        }
    }
}

/// `docker`'s "X ago" column text.
pub(crate) fn ago(then: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    format!("{} ago", human_duration(since(then, now)))
}

/// Go's `time.Time.String()` for a time decoded from JSON:
/// `2006-01-02 15:04:05.999999999 -0700 MST` (UTC prints `+0000 UTC`; other
/// fixed offsets have no zone name, so Go repeats the numeric offset).
/// `None` is Go's zero time.
pub(crate) fn go_time_string(t: Option<OffsetDateTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01 00:00:00 +0000 UTC".to_string();
    };
    let mut s = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let off = t.offset();
    let total = off.whole_seconds();
    let sign = if total < 0 { '-' } else { '+' };
    let abs = total.unsigned_abs();
    let numeric = format!("{sign}{:02}{:02}", abs / 3600, (abs % 3600) / 60);
    if total == 0 {
        s.push_str(" +0000 UTC");
    } else {
        s.push(' ');
        s.push_str(&numeric);
        s.push(' ');
        s.push_str(&numeric);
    }
    s
}

/// Go's `time.Time.Format(time.RFC3339Nano)` (what `MarshalJSON` writes):
/// `2006-01-02T15:04:05.999999999Z07:00`.
pub(crate) fn rfc3339_nano(t: OffsetDateTime) -> String {
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    let total = t.offset().whole_seconds();
    if total == 0 {
        s.push('Z');
    } else {
        let sign = if total < 0 { '-' } else { '+' };
        let abs = total.unsigned_abs();
        s.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, (abs % 3600) / 60));
    }
    s
}

/// Go's `time.Duration.String()` (`1h2m3.5s`, `500ms`, `0s`).
pub fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < 1_000_000_000 {
        // Sub-second: one unit with a fraction.
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("\u{b5}s", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        out.push_str(&frac(u, div));
        out.push_str(unit);
    } else {
        let hours = u / 3_600_000_000_000;
        let rem = u % 3_600_000_000_000;
        let minutes = rem / 60_000_000_000;
        let rem = rem % 60_000_000_000;
        if hours > 0 {
            out.push_str(&format!("{hours}h"));
        }
        if hours > 0 || minutes > 0 {
            out.push_str(&format!("{minutes}m"));
        }
        out.push_str(&frac(rem, 1_000_000_000));
        out.push('s');
    }
    if neg {
        out.insert(0, '-');
    }
    out
}

/// `v / div` with the fraction's trailing zeros removed.
fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rest = v % div;
    if rest == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rest:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Go's `time.ParseDuration` (`"1h30m"`, `"-1.5s"`, `"300ms"`), in
/// nanoseconds; the error is Go's message (`time: invalid duration "x"`).
pub fn parse_go_duration(s: &str) -> Result<i64, String> {
    let orig = s;
    let quoted = || format!("{orig:?}");
    let invalid = || format!("time: invalid duration {}", quoted());
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let b = rest.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = b.iter().take_while(|c| c.is_ascii_digit()).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(r) = rest.strip_prefix('.') {
            let n = r.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &r[..n];
            rest = &r[n..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .bytes()
            .take_while(|c| *c != b'.' && !c.is_ascii_digit())
            .count();
        if unit_len == 0 {
            return Err(format!("time: missing unit in duration {}", quoted()));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {unit:?} in duration {}",
                    quoted()
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        let mut v = whole.checked_mul(scale).ok_or_else(invalid)?;
        if !frac_part.is_empty() {
            let digits = frac_part.len().min(30) as u32;
            let f: u128 = frac_part[..digits as usize]
                .parse()
                .map_err(|_| invalid())?;
            v += f * scale / 10u128.pow(digits);
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
    }
    let t = total as i128;
    Ok(if neg { -t } else { t } as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hd(secs: u64) -> String {
        human_duration(Duration::from_secs(secs))
    }

    #[test]
    fn human_duration_boundaries() {
        assert_eq!(human_duration(Duration::ZERO), "Less than a second");
        assert_eq!(
            human_duration(Duration::from_millis(999)),
            "Less than a second"
        );
        assert_eq!(hd(1), "1 second");
        assert_eq!(human_duration(Duration::from_millis(1999)), "1 second");
        assert_eq!(hd(2), "2 seconds");
        assert_eq!(hd(59), "59 seconds");
        assert_eq!(hd(60), "About a minute");
        assert_eq!(hd(119), "About a minute");
        assert_eq!(hd(120), "2 minutes");
        assert_eq!(hd(3599), "59 minutes");
        assert_eq!(hd(3600), "About an hour");
        // hours are rounded: 1h29m59s is still "About an hour".
        assert_eq!(hd(3600 + 29 * 60 + 59), "About an hour");
        assert_eq!(hd(3600 + 30 * 60), "2 hours");
        assert_eq!(hd(47 * 3600 + 29 * 60), "47 hours");
        assert_eq!(hd(47 * 3600 + 30 * 60), "2 days");
        assert_eq!(hd(13 * 86400 + 23 * 3600 + 29 * 60), "13 days");
        assert_eq!(hd(14 * 86400), "2 weeks");
        assert_eq!(hd(59 * 86400), "8 weeks");
        assert_eq!(hd(60 * 86400), "2 months");
        assert_eq!(hd(729 * 86400), "24 months");
        assert_eq!(hd(730 * 86400), "2 years");
        assert_eq!(hd(3 * 365 * 86400), "3 years");
        assert_eq!(human_duration(Duration::MAX), "292 years");
    }

    #[test]
    fn go_time_strings() {
        let t = parse_time("2026-11-23T10:59:55.093350179Z").ok();
        assert_eq!(go_time_string(t), "2026-11-23 10:59:55.093350179 +0000 UTC");
        let t = parse_time("2026-11-23T10:59:55.1Z").ok();
        assert_eq!(go_time_string(t), "2026-11-23 10:59:55.1 +0000 UTC");
        let t = parse_time("2026-01-02T03:04:05Z").ok();
        assert_eq!(go_time_string(t), "2026-01-02 03:04:05 +0000 UTC");
        let t = parse_time("2026-01-02T03:04:05+01:30").ok();
        assert_eq!(go_time_string(t), "2026-01-02 03:04:05 +0130 +0130");
        assert_eq!(go_time_string(None), "0001-01-01 00:00:00 +0000 UTC");
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn ago_handles_future_and_missing() {
        let now = parse_time("2026-11-23T11:00:00Z").ok();
        let Some(now) = now else {
            panic!("bad fixture time")
        };
        let later = parse_time("2026-11-23T11:00:05Z").ok();
        assert_eq!(ago(later, now), "Less than a second ago");
        assert_eq!(ago(None, now), "292 years ago");
        let earlier = parse_time("2026-11-23T10:55:00Z").ok();
        assert_eq!(ago(earlier, now), "5 minutes ago");
    }

    /// A straightforward model of the Go code, using exact integer math.
    fn model(d: Duration) -> String {
        let ns = go_nanos(d) as i128;
        let secs = ns / 1_000_000_000;
        if secs < 1 {
            return "Less than a second".into();
        }
        if secs == 1 {
            return "1 second".into();
        }
        if secs < 60 {
            return format!("{secs} seconds");
        }
        let mins = secs / 60;
        if mins == 1 {
            return "About a minute".into();
        }
        if mins < 60 {
            return format!("{mins} minutes");
        }
        // int(h + 0.5) == round half up.
        let hours = (ns + 1_800_000_000_000) / 3_600_000_000_000;
        if hours == 1 {
            "About an hour".into()
        } else if hours < 48 {
            format!("{hours} hours")
        } else if hours < 336 {
            format!("{} days", hours / 24)
        } else if hours < 1440 {
            format!("{} weeks", hours / 24 / 7)
        } else if hours < 17520 {
            format!("{} months", hours / 24 / 30)
        } else {
            format!("{} years", ns / 3_600_000_000_000 / 24 / 365)
        }
    }

    proptest! {
        // Away from float rounding edges the Go float arithmetic and exact
        // integer arithmetic agree; whole seconds are far from those edges.
        #[test]
        fn matches_integer_model(secs in 0u64..(400 * 365 * 86400)) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(human_duration(d), model(d));
        }

        #[test]
        fn monotone_categories(a in 0u64..(10 * 365 * 86400), b in 0u64..(10 * 365 * 86400)) {
            fn rank(s: &str) -> u8 {
                if s.starts_with("Less") { 0 }
                else if s.ends_with("second") || s.ends_with("seconds") { 1 }
                else if s.contains("minute") { 2 }
                else if s.contains("hour") { 3 }
                else if s.ends_with("days") { 4 }
                else if s.ends_with("weeks") { 5 }
                else if s.ends_with("months") { 6 }
                else { 7 }
            }
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(rank(&hd(lo)) <= rank(&hd(hi)));
        }
    }
}
