//! Small display helpers of docker/cli (`formatter/displayutils.go`,
//! `stringid`, `go-units`) and of Go's `fmt`.

/// `formatter.PrettyPrint` of a string (`capitalizeFirst`): the first byte
/// upper-cased, the rest lower-cased; a single character is lower-cased.
pub fn pretty_print(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), s.len()) {
        (None, _) => String::new(),
        (Some(_), 1) => s.to_lowercase(),
        (Some(first), _) => format!("{}{}", first.to_uppercase(), chars.as_str().to_lowercase()),
    }
}

/// `stringid.TruncateID`: the first 12 characters.
pub fn truncate_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// `formatter.Ellipsis` (every character counted as one column).
pub(crate) fn ellipsis(s: &str, max: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    if max == 0 {
        return String::new();
    }
    if max == 1 {
        return chars.first().map(|c| c.to_string()).unwrap_or_default();
    }
    if chars.len() <= max {
        return s.to_string();
    }
    let mut out: String = chars[..max - 1].iter().collect();
    out.push('…');
    out
}

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)`, i.e. `fmt`'s `%.<prec>g`.
pub(crate) fn fmt_g(v: f64, prec: usize) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let prec = prec.max(1);
    let sci = format!("{:.*e}", prec - 1, v);
    let Some((mant, exp)) = sci.split_once('e') else {
        return sci;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |m: &str| -> String {
        if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            m.to_string()
        }
    };
    if exp < -4 || exp >= prec as i32 {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mant), exp.unsigned_abs())
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim(&format!("{v:.decimals$}"))
    }
}

/// Go's `%v` of a `float64` (shortest representation, `%g` style).
pub(crate) fn fmt_v(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    let exp = v.abs().log10().floor() as i32;
    if (-4..21).contains(&exp) {
        format!("{v}")
    } else {
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let e: i32 = e.parse().unwrap_or(0);
                let sign = if e < 0 { '-' } else { '+' };
                format!("{m}e{sign}{:02}", e.unsigned_abs())
            }
            None => s,
        }
    }
}

/// Go's `%v` of a `float32`.
pub(crate) fn fmt_v32(v: f64) -> String {
    let narrowed = v as f32;
    let shortest: f64 = format!("{narrowed}").parse().unwrap_or(v);
    fmt_v(shortest)
}

/// go-units `BytesSize`: `%.4g` of the size in binary units (`23.54GiB`).
pub fn bytes_size(size: f64) -> String {
    const UNITS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
    let mut size = size;
    let mut i = 0;
    while size >= 1024.0 && i < UNITS.len() - 1 {
        size /= 1024.0;
        i += 1;
    }
    format!("{}{}", fmt_g(size, 4), UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_like_go() {
        assert_eq!(pretty_print("running"), "Running");
        assert_eq!(pretty_print("RUNNING"), "Running");
        assert_eq!(pretty_print("x"), "x");
        assert_eq!(pretty_print(""), "");
        assert_eq!(truncate_id("93gq8mxtw8n8h0sksj7juld5x"), "93gq8mxtw8n8");
        assert_eq!(ellipsis("short", 30), "short");
        assert_eq!(
            ellipsis("starting container failed: no such image", 30),
            "starting container failed: no…"
        );
        assert_eq!(bytes_size(25_275_523_072.0), "23.54GiB");
        assert_eq!(bytes_size(1024.0), "1KiB");
        assert_eq!(bytes_size(1000.0), "1000B");
        assert_eq!(bytes_size(1_572_864.0), "1.5MiB");
        assert_eq!(bytes_size(104_857_600.0), "100MiB");
        assert_eq!(fmt_v(0.5), "0.5");
        assert_eq!(fmt_v(2.0), "2");
        assert_eq!(fmt_v32(0.1f32 as f64), "0.1");
        assert_eq!(fmt_v(1e-5), "1e-05");
    }
}
