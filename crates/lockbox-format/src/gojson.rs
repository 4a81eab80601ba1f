//! JSON encoding that matches Go's `encoding/json` byte for byte.
//!
//! Docker prints JSON produced by Go: `json.Marshal` (HTML-escaping `<`, `>`
//! and `&`), `json.Encoder` with `SetEscapeHTML(false)` (docker's `json`
//! template function and the daemon's responses) and `json.Indent`. The
//! differences from `serde_json` are in string escaping (`\u2028`, `\u2029`,
//! lowercase `\u00XX` escapes, optional HTML escaping) and float formatting.

use serde_json::Value as Json;

/// Append `s` as a Go JSON string literal.
pub(crate) fn write_string(out: &mut String, s: &str, escape_html: bool) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' if escape_html => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c if (c as u32) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Format a float the way Go's `encoding/json` does (`strconv` 'f' or 'e'
/// format with the shortest representation, exponent without padding).
pub(crate) fn format_float(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust's `{:e}` is the shortest round-trip representation, like
        // Go's `strconv.FormatFloat(f, 'e', -1, 64)` after json's cleanup
        // of the exponent ("e-07" -> "e-7"); Go keeps a '+' sign though.
        let s = format!("{f:e}");
        Some(match s.split_once('e') {
            Some((mant, exp)) if !exp.starts_with('-') => format!("{mant}e+{exp}"),
            _ => s,
        })
    } else {
        // `Display` never uses an exponent and is the shortest round trip.
        Some(format!("{f}"))
    }
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if n.is_i64() || n.is_u64() {
        out.push_str(&n.to_string());
    } else if let Some(s) = n.as_f64().and_then(format_float) {
        out.push_str(&s);
    } else {
        out.push_str(&n.to_string());
    }
}

/// Compact encoding, keys in the order of the value (the workspace enables
/// `preserve_order`, so that is the server's order).
pub(crate) fn write_compact(out: &mut String, v: &Json, escape_html: bool) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => write_number(out, n),
        Json::String(s) => write_string(out, s, escape_html),
        Json::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_compact(out, item, escape_html);
            }
            out.push(']');
        }
        Json::Object(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k, escape_html);
                out.push(':');
                write_compact(out, item, escape_html);
            }
            out.push('}');
        }
    }
}

/// Like `json.Indent(dst, compact, prefix="", indent)`: empty arrays and
/// objects stay `[]`/`{}`, a space follows each colon.
pub(crate) fn write_indented(out: &mut String, v: &Json, indent: &str, depth: usize) {
    write_indented_as(out, v, indent, depth, false);
}

/// Like `json.MarshalIndent(v, "", indent)` of a value whose strings Go
/// escapes (`escape_html`: `<`, `>`, `&` as `\u003c`...).
pub(crate) fn write_indented_as(
    out: &mut String,
    v: &Json,
    indent: &str,
    depth: usize,
    escape_html: bool,
) {
    fn newline(out: &mut String, indent: &str, depth: usize) {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(indent);
        }
    }
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_indented_as(out, item, indent, depth + 1, escape_html);
            }
            newline(out, indent, depth);
            out.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(out, indent, depth + 1);
                write_string(out, k, escape_html);
                out.push_str(": ");
                write_indented_as(out, item, indent, depth + 1, escape_html);
            }
            newline(out, indent, depth);
            out.push('}');
        }
        other => write_compact(out, other, escape_html),
    }
}

#[cfg(test)]
pub(crate) fn to_compact(v: &Json, escape_html: bool) -> String {
    let mut s = String::new();
    write_compact(&mut s, v, escape_html);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_escape_like_go() {
        let mut s = String::new();
        write_string(
            &mut s,
            "a<b>&\"\\\n\t\r\u{1}\u{8}\u{c}\u{7f}\u{2028}é",
            false,
        );
        assert_eq!(
            s,
            r#""a<b>&\"\\\n\t\r\u0001\b\f"#.to_string() + "\u{7f}\\u2028é\""
        );
        let mut h = String::new();
        write_string(&mut h, "<a&b>", true);
        assert_eq!(h, r#""\u003ca\u0026b\u003e""#);
    }

    #[test]
    fn floats_like_go() {
        assert_eq!(format_float(1.5).as_deref(), Some("1.5"));
        assert_eq!(format_float(1.0).as_deref(), Some("1"));
        assert_eq!(format_float(1e21).as_deref(), Some("1e+21"));
        assert_eq!(format_float(1e20).as_deref(), Some("100000000000000000000"));
        assert_eq!(format_float(1e-7).as_deref(), Some("1e-7"));
        assert_eq!(format_float(0.000001).as_deref(), Some("0.000001"));
        assert_eq!(format_float(-2.5e-9).as_deref(), Some("-2.5e-9"));
        assert_eq!(format_float(0.0).as_deref(), Some("0"));
        assert_eq!(format_float(f64::NAN), None);
    }

    #[test]
    fn indent_like_json_indent() {
        let v = json!([{"a": {}, "b": [], "c": [1, {"d": null}]}]);
        let mut s = String::new();
        write_indented(&mut s, &v, "    ", 0);
        assert_eq!(
            s,
            "[\n    {\n        \"a\": {},\n        \"b\": [],\n        \"c\": [\n            1,\n            {\n                \"d\": null\n            }\n        ]\n    }\n]"
        );
        assert_eq!(
            to_compact(&v, false),
            r#"[{"a":{},"b":[],"c":[1,{"d":null}]}]"#
        );
    }
}
