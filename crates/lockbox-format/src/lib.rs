//! lockbox-format: the output of `lockbox` commands, byte for byte as the
//! stock `docker` CLI (28.x) prints it for the same Engine API data.
//!
//! * [`render`]: Go `text/template` with docker's template functions.
//! * [`inspect`] / [`inspect_with_errors`]: `docker * inspect` (indented JSON,
//!   `--format json`, or a template run once per value).
//! * [`secret_list`]: `docker secret ls` (table, `-q`, `--format`).
//! * [`secret_inspect`] / [`secret_inspect_pretty`]: `docker secret inspect`.
//! * [`table`]: docker's formatter "table" logic for other list commands.
//! * [`human_duration`], [`parse_time`], [`natural_less`]: helpers.
//!
//! Error messages ([`FormatError`]'s `Display`) are what docker prints on
//! stderr for the same failure, e.g.
//! `template parsing error: template: :1:2: executing "" at <.Foo>: can't evaluate field Foo in type *secret.secretContext`.
//!
//! Golden tests (`tests/golden.rs`) replay outputs captured from docker
//! 28.2.2 (`tests/fixtures/capture.py`). Known differences from docker are
//! listed in the documentation of each function ("Differences").

#![forbid(unsafe_code)]

mod engine;
mod formatter;
mod gojson;
mod gotime;
mod natural;
mod secret;

pub use gotime::{human_duration, parse_time};
pub use natural::{natural_cmp, natural_less};
pub use secret::{secret_inspect, secret_inspect_pretty, secret_inspect_with_errors, secret_list};

use std::sync::Arc;

use serde_json::Value as Json;

use engine::{MissingStyle, Registry, View};

/// Errors of this crate. `Display` gives docker's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The format could not be parsed as a Go template.
    #[error("{0}")]
    Parse(String),
    /// The template failed while running on the data.
    #[error("{0}")]
    Exec(String),
    /// A timestamp was not RFC 3339.
    #[error("{0}")]
    Time(String),
    /// A format that docker refuses before running anything (for example
    /// `cannot supply extra formatting options to the pretty template`).
    #[error("{0}")]
    Usage(String),
}

/// Prefix docker adds to template errors.
pub(crate) const TEMPLATE_ERROR: &str = "template parsing error: ";

/// Go `text/template` as the docker CLI uses it (`templates.Parse`), with
/// docker's functions `json`, `join`, `split`, `upper`, `lower`, `title`,
/// `truncate`, `pad` and Go's builtins (`println`, `printf`, `index`, ...).
///
/// `data` is presented like Go's `map[string]interface{}` decoding of the
/// JSON: a missing key prints `<no value>`; `{{json .X}}` prints objects in
/// their own key order. Errors are Go's messages without docker's
/// `template parsing error: ` prefix.
pub fn render(template: &str, data: &Json) -> Result<String, FormatError> {
    let mut reg = Registry::default();
    let value = engine::convert(data, View::Raw, &mut reg);
    let reg = Arc::new(reg);
    let compiled = engine::compile(template, engine::basic_funcs(&reg), MissingStyle::NoValue)
        .map_err(FormatError::Parse)?;
    compiled
        .execute(&value)
        .map_err(|e| FormatError::Exec(e.message))
}

/// `docker inspect`-style output of `values` (objects as the Engine API
/// returns them).
///
/// * no format (or `""`): the values as a JSON array indented with 4 spaces
///   (Go's `json.Indent`), keys in the order received, then `"\n"`; `[]\n`
///   for no values;
/// * `"json"`: the same array compact on one line;
/// * otherwise a Go template rendered once per value, each followed by
///   `"\n"` (a single `"\n"` if nothing rendered), as docker's
///   `TemplateInspector`: first against the "typed" view of the value
///   (`{{.CreatedAt}}` prints Go's `2026-11-23 10:59:55.09335 +0000 UTC`,
///   `index` of a missing label gives ""), and if that fails against the raw
///   JSON with `missingkey=error`.
///
/// Any failure is an error; use [`inspect_with_errors`] to also get what
/// docker still prints on stdout in that case.
///
/// Differences (Go has typed structs, gotmpl only maps): a struct printed
/// whole (`{{.Spec}}`) prints as a map (`map[Labels:map[] Name:x]`;
/// [`secret_inspect`] knows `swarm.Secret` and prints it like Go);
/// fields the server omitted do not exist (Go has zero values; again
/// [`secret_inspect`] adds them for secrets); methods of Go's `time.Time`
/// (`{{.CreatedAt.Format "2006"}}`, `.Year`) are not available.
pub fn inspect(values: &[Json], format: Option<&str>) -> Result<String, FormatError> {
    let (out, errors) = inspect_with_errors(values, format);
    match errors.into_iter().reduce(|a, b| match (a, b) {
        (FormatError::Exec(a), b) => FormatError::Exec(format!("{a}\n{b}")),
        (a, _) => a,
    }) {
        Some(err) => Err(err),
        None => Ok(out),
    }
}

/// Like [`inspect`], but returns docker's stdout even when some values
/// fail, with the errors (joined with `"\n"` they are docker's stderr).
/// A template that does not parse gives an empty stdout and one
/// [`FormatError::Parse`].
pub fn inspect_with_errors(values: &[Json], format: Option<&str>) -> (String, Vec<FormatError>) {
    inspect_impl(values, format, false)
}

/// What the typed view knows about the values.
pub(crate) fn inspect_impl(
    values: &[Json],
    format: Option<&str>,
    secrets: bool,
) -> (String, Vec<FormatError>) {
    let format = format.unwrap_or("");
    if format.is_empty() || format == "json" {
        if values.is_empty() {
            return ("[]\n".to_string(), Vec::new());
        }
        let array = Json::Array(values.to_vec());
        let mut out = String::new();
        if format.is_empty() {
            gojson::write_indented(&mut out, &array, "    ", 0);
        } else {
            gojson::write_compact(&mut out, &array, false);
        }
        out.push('\n');
        return (out, Vec::new());
    }

    let mut reg = Registry::default();
    let views: Vec<(gotmpl::Value, gotmpl::Value)> = values
        .iter()
        .map(|v| {
            let typed = engine::convert(v, View::Typed, &mut reg);
            let typed = if secrets {
                engine::with_secret_zero_fields(typed, &mut reg)
            } else {
                typed
            };
            (typed, engine::convert(v, View::Raw, &mut reg))
        })
        .collect();
    let reg = Arc::new(reg);
    let compiled = match engine::compile(format, engine::basic_funcs(&reg), MissingStyle::MapError)
    {
        Ok(c) => c,
        Err(e) => {
            return (
                String::new(),
                vec![FormatError::Parse(format!("{TEMPLATE_ERROR}{e}"))],
            );
        }
    };
    // Go's typed structs hold labels in `map[string]string`s, where a
    // missing key prints `<no value>`; gotmpl has one missing-key mode.
    let lenient = engine::compile(format, engine::basic_funcs(&reg), MissingStyle::NoValue).ok();
    let mut out = String::new();
    let mut errors = Vec::new();
    for (typed, raw) in &views {
        let result = compiled
            .execute(typed)
            .or_else(|e| match (&e.missing_key, &lenient) {
                (Some(k), Some(l)) if compiled.key_read_from_string_map(k) => l.execute(typed),
                _ => Err(e),
            })
            .or_else(|_| compiled.execute(raw));
        match result {
            Ok(s) => {
                out.push_str(&s);
                out.push('\n');
            }
            Err(e) => errors.push(FormatError::Exec(format!("{TEMPLATE_ERROR}{}", e.message))),
        }
    }
    if out.is_empty() {
        out.push('\n');
    }
    (out, errors)
}

/// docker's formatter output for list commands (`service ls`, `node ls`,
/// ...): `format` is a Go template, `table <template>` (a header row, then
/// one row per context, aligned like Go's `tabwriter.NewWriter(out, 10, 1,
/// 3, ' ', 0)`; `\t` and `\n` written as two characters are replaced by tab
/// and newline) or `json` (`{{json .}}`).
///
/// `headers` maps a field name (`"ID"`, `"CreatedAt"`) to its header text
/// (`"CREATED"`); the header row is the template run against this map with
/// docker's header functions (`upper` etc. leave the text alone, `pad` pads;
/// `{{.Label "x"}}` gives `x`; errors are ignored like docker does).
///
/// Each row is a JSON object holding the already computed field values
/// (docker's formatter context methods). Two optional keys are not fields:
/// `"$methods"`: `{"Label": {"k": "v"}}` makes `{{.Label "k"}}` return `v`
/// ("" for other arguments); `"$type"`: the Go type named in "can't
/// evaluate field" errors (default `*formatter.Context`). `{{json .}}` on a
/// row prints its fields with sorted keys and HTML escaping, like docker's
/// `formatter.MarshalJSON`.
pub fn table(
    format: &str,
    headers: &serde_json::Map<String, Json>,
    rows: &[Json],
) -> Result<String, FormatError> {
    formatter::write_json_contexts(format, headers, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn render_plain_data() {
        let data = json!({"B": 1, "A": {"z": "<1>", "a": [1.5, true, null]}});
        assert_eq!(
            render("{{json .}} {{.A.z}} {{.Missing}}", &data),
            Ok(r#"{"B":1,"A":{"z":"<1>","a":[1.5,true,null]}} <1> <no value>"#.into())
        );
        assert_eq!(
            render("{{.A", &data),
            Err(FormatError::Parse("template: :1: unclosed action".into()))
        );
    }

    #[test]
    fn inspect_edge_cases() {
        assert_eq!(inspect(&[], None), Ok("[]\n".into()));
        assert_eq!(inspect(&[], Some("json")), Ok("[]\n".into()));
        assert_eq!(inspect(&[], Some("{{.ID}}")), Ok("\n".into()));
        let v = [json!({"ID": "x", "Version": {"Index": 3}})];
        assert_eq!(
            inspect(&v, None),
            Ok("[\n    {\n        \"ID\": \"x\",\n        \"Version\": {\n            \"Index\": 3\n        }\n    }\n]\n".into())
        );
        assert_eq!(
            inspect(&v, Some("{{.Version}} {{.Version.Index}}")),
            Ok("3 3\n".into())
        );
        assert_eq!(
            inspect(&v, Some("{{.Nope")),
            Err(FormatError::Parse(
                "template parsing error: template: :1: unclosed action".into()
            ))
        );
    }
}
