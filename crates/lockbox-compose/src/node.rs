//! A YAML document as a tree of nodes that remember where they were written.
//!
//! serde-saphyr parses the text (YAML 1.1 octal `0400`, merge keys `<<`, duplicate keys refused)
//! and, when given a property map, performs Docker-Compose interpolation on every string value
//! (`${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?error}`, `$$`, ...). Mapping keys are
//! never interpolated, as in Compose.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A position in a compose file (1-based; 0 when unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line.
    pub line: u64,
    /// Column.
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where.
    pub pos: Pos,
    /// What.
    pub value: Value,
}

/// A YAML value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i128),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// The key as text.
    pub name: String,
    /// Where.
    pub pos: Pos,
}

impl Value {
    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// A scalar as Go's `fmt.Sprint` prints it (what Compose does with a number or boolean
    /// where it wants a string); `None` for null, lists and mappings.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(go_float(*f)),
            Value::Str(s) => Some(s.clone()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// Go's `%v` of a float64 (`1`, `0.5`, `1e+21`).
fn go_float(f: f64) -> String {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e21 {
        format!("{f:.0}")
    } else if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{f}")
    }
}

fn pos_of(s: &serde_saphyr::Location) -> Pos {
    Pos {
        line: s.line(),
        column: s.column(),
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node {
            pos: pos_of(&s.referenced),
            value: s.value,
        })
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<KeyText>::deserialize(d)?;
        Ok(Key {
            name: s.value.0,
            pos: pos_of(&s.referenced),
        })
    }
}

struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<KeyText, E> {
                Ok(KeyText(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(go_float(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<KeyText, E> {
                Ok(KeyText("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value::Str(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
                Ok(Value::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
                i128::try_from(v)
                    .map(Value::Int)
                    .map_err(|_| E::custom("integer out of range"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Value, D2::Error> {
                Value::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = s.next_element::<Node>()? {
                    v.push(e);
                }
                Ok(Value::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = m.next_entry::<Key, Node>()? {
                    v.push(e);
                }
                Ok(Value::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// How to read a file.
#[derive(Debug, Clone, Default)]
pub struct ParseOptions {
    /// Variables for interpolation; `None` leaves every `${...}` as written.
    pub properties: Option<HashMap<String, String>>,
}

/// Parses YAML text into a [`Node`]. The error is rendered with `source_name` (usually the
/// file's path) as `file:line:column`, with a snippet of the offending lines.
pub fn parse(text: &str, source_name: &str, opts: &ParseOptions) -> Result<Node, String> {
    // Booleans are YAML 1.2's (`true`/`false`), as Compose's YAML library reads them: a key
    // `Y:` or a value `on` stays text. Integers keep YAML 1.1's octal `0400`.
    let mut options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        strict_booleans: true,
    };
    if let Some(p) = &opts.properties {
        options.property_syntax = serde_saphyr::PropertySyntax::DockerCompose;
        options = options.with_properties(p.clone());
    }
    serde_saphyr::from_str_with_options::<Node>(text, options)
        .map_err(|e| render_error(&e, source_name))
}

fn render_error(e: &serde_saphyr::Error, source_name: &str) -> String {
    let body = e.render_with_options(serde_saphyr::render_options! {
        source_name: Some(source_name),
    });
    // The first line repeats the location as "error: line L column C: message"; lead with
    // "FILE:L:C: message" instead, then the snippet.
    let mut lines = body.lines();
    let first = lines.next().unwrap_or_default();
    let message = first
        .strip_prefix("error: ")
        .unwrap_or(first)
        .split_once(": ")
        .filter(|(loc, _)| loc.starts_with("line "))
        .map_or(first, |(_, m)| m);
    let head = match e.location() {
        Some(l) if l.line() > 0 => format!("{source_name}:{}:{}: {message}", l.line(), l.column()),
        _ => format!("{source_name}: {message}"),
    };
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() {
        head
    } else {
        format!("{head}\n{}", rest.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(kv: &[(&str, &str)]) -> ParseOptions {
        ParseOptions {
            properties: Some(
                kv.iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
        }
    }

    fn get<'a>(n: &'a Node, key: &str) -> &'a Node {
        match &n.value {
            Value::Map(m) => m
                .iter()
                .find(|(k, _)| k.name == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no {key}")),
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn octal_interpolation_positions() {
        let y = "a:\n  mode: 0400\n  s: x-${A:-d}-$$B\n  '0o1': ${N}\n";
        let n = parse(y, "f.yml", &props(&[("N", "7")])).unwrap();
        let a = get(&n, "a");
        assert_eq!(get(a, "mode").value, Value::Int(256));
        assert_eq!(get(a, "mode").pos, Pos { line: 2, column: 9 });
        assert_eq!(get(a, "s").value, Value::Str("x-d-$B".into()));
        assert_eq!(get(a, "0o1").value, Value::Str("7".into()));
    }

    #[test]
    fn errors_name_the_file_and_position() {
        let e = parse("a:\n  b: ${X:?set X}\n", "dir/c.yml", &props(&[])).unwrap_err();
        assert!(e.starts_with("dir/c.yml:2:6: "), "{e}");
        assert!(e.contains("set X"), "{e}");
        let e = parse("a: [x\nb: 1\n", "c.yml", &props(&[])).unwrap_err();
        assert!(e.starts_with("c.yml:"), "{e}");
        let e = parse("a: 1\na: 2\n", "c.yml", &props(&[])).unwrap_err();
        assert!(e.starts_with("c.yml:2:1: duplicate mapping key"), "{e}");
    }

    #[test]
    fn no_properties_leaves_references() {
        let n = parse("a: ${X}\n", "f", &ParseOptions::default()).unwrap();
        assert_eq!(get(&n, "a").value, Value::Str("${X}".into()));
    }
}
