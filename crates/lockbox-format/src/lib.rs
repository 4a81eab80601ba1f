//! lockbox-format: the output of `lockbox` commands, byte for byte as the
//! stock `docker` CLI (28.x) prints it for the same Engine API data.
//!
//! * [`render`]: Go `text/template` with docker's template functions.
//! * [`inspect`] / [`inspect_with_errors`]: `docker * inspect` (indented JSON,
//!   `--format json`, or a template run once per value).
//! * [`secret_list`]: `docker secret ls` (table, `-q`, `--format`).
//! * [`secret_inspect`] / [`secret_inspect_pretty`]: `docker secret inspect`.
//! * [`service_list`], [`service_inspect_with_errors`] (`--pretty` too),
//!   [`task_list`] (`service ps`, `node ps`), [`node_list`],
//!   [`node_inspect_with_errors`]: the service and node commands;
//!   [`service_spec_go`] / [`node_spec_go`]: a spec as docker re-encodes it
//!   for `POST …/update`; [`ProgressDisplay`] / [`ProgressState`]: the
//!   convergence progress of `service create|update|scale|rollback`
//!   (fixtures: `tests/fixtures/service/`, `tests/service_golden.rs`).
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

mod display;
mod engine;
mod formatter;
mod gojson;
mod gostruct;
mod gotime;
mod natural;
mod node;
mod progress;
mod reference;
mod secret;
mod service;
mod task;

pub use display::{bytes_size, pretty_print, truncate_id};
pub use gotime::{go_duration, human_duration, parse_go_duration, parse_time};
pub use natural::{natural_cmp, natural_less};
pub use node::{node_inspect_with_errors, node_list, node_pretty};
pub use progress::{ProgressDisplay, ProgressEvent, ProgressState};
pub use reference::{image_display, image_with_tag};
pub use secret::{secret_inspect, secret_inspect_pretty, secret_inspect_with_errors, secret_list};
pub use service::{service_inspect_with_errors, service_list, service_pretty};
pub use task::{TaskNames, task_list};

/// A service spec (`ServiceSpec` JSON, e.g. `Spec` of `GET /services/{id}`)
/// as the docker CLI re-encodes it after decoding it into its Go type: the
/// body docker sends to `POST /services/{id}/update` (fields in Go order,
/// unknown ones dropped, map keys sorted).
pub fn service_spec_go(spec: &Json) -> Json {
    gostruct::encode(&gostruct::SERVICE_SPEC, Some(spec))
}

/// `v` encoded as Go's `encoding/json` does (compact; `escape_html` as
/// `json.Marshal` / an `Encoder` by default, `false` as the daemon and the
/// `json` template function).
pub fn go_json(v: &Json, escape_html: bool) -> String {
    let mut out = String::new();
    gojson::write_compact(&mut out, v, escape_html);
    out
}

/// A node spec as the docker CLI re-encodes it (the body of
/// `POST /nodes/{id}/update`).
pub fn node_spec_go(spec: &Json) -> Json {
    gostruct::encode(&gostruct::NODE_SPEC, Some(spec))
}

/// A task as the docker CLI's `swarm.Task` holds it, every field present
/// (zero values for what the server left out).
pub fn task_go(task: &Json) -> Json {
    gostruct::view(&gostruct::TASK, Some(task))
}

/// A service as the docker CLI's `swarm.Service` holds it, every field
/// present (zero values for what the server left out).
pub fn service_go(service: &Json) -> Json {
    gostruct::view(&gostruct::SERVICE, Some(service))
}

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

/// `inspect` of values docker decodes into Go types and passes to the
/// inspector without their raw bytes (`service inspect`, `node inspect`):
/// JSON is `json.MarshalIndent` of `json_values` (HTML escaped); a template
/// runs on `views` (the typed values with every field) only, without
/// docker's raw-JSON fallback, and a missing field is reported against the
/// Go type: `types` maps a dotted field path (`""` the value itself,
/// `"Spec.Mode"`) to the Go type there (`*T` for a pointer, which may be
/// nil: field access then fails with "nil pointer evaluating").
pub(crate) fn inspect_typed(
    json_values: &[Json],
    views: &[Json],
    format: &str,
    types: &[(String, String)],
) -> (String, Vec<FormatError>) {
    let type_name = types
        .iter()
        .find(|(p, _)| p.is_empty())
        .map_or("", |(_, t)| t.as_str());
    if format.is_empty() || format == "json" {
        if json_values.is_empty() {
            return ("[]\n".to_string(), Vec::new());
        }
        let array = Json::Array(json_values.to_vec());
        let mut out = String::new();
        if format.is_empty() {
            gojson::write_indented_as(&mut out, &array, "    ", 0, true);
        } else {
            gojson::write_compact(&mut out, &array, true);
        }
        out.push('\n');
        return (out, Vec::new());
    }
    if let Err(e) = engine::compile(
        format,
        engine::basic_funcs(&Arc::new(Registry::default())),
        MissingStyle::NoValue,
    ) {
        return (
            String::new(),
            vec![FormatError::Parse(format!("{TEMPLATE_ERROR}{e}"))],
        );
    }
    let mut out = String::new();
    let mut errors = Vec::new();
    for (view, encoded) in views.iter().zip(json_values) {
        // A key missing from a Go `map[string]string` prints `<no value>`
        // (gotmpl has one missing-key mode): run again with such keys
        // present as falsy values printing `<no value>`.
        let mut extra: Vec<String> = Vec::new();
        let result = loop {
            match execute_typed(format, view, encoded, type_name, types, &extra) {
                Err((e, _))
                    if e.missing_key.as_ref().is_some_and(|k| !extra.contains(k))
                        && e.string_map_key =>
                {
                    extra.extend(e.missing_key);
                }
                other => break other,
            }
        };
        match result {
            Ok(s) => {
                out.push_str(&s);
                out.push('\n');
            }
            Err((e, nils)) => errors.push(FormatError::Exec(format!(
                "{TEMPLATE_ERROR}{}",
                retype_error(&e.message, type_name, types, &nils)
            ))),
        }
    }
    if out.is_empty() {
        out.push('\n');
    }
    (out, errors)
}

/// A failed typed run: the failure, whether the missing key was read from
/// a string map.
struct TypedFailure {
    message: String,
    missing_key: Option<String>,
    string_map_key: bool,
}

/// Runs `format` on one typed value: nil struct pointers (the `types`
/// paths that are `null`) become empty maps that print `<nil>`, encode as
/// `null` and fail on field access like Go; `extra` keys are added to the
/// `Labels`/`Options` maps as falsy values printing `<no value>`.
fn execute_typed(
    format: &str,
    view: &Json,
    encoded: &Json,
    type_name: &str,
    types: &[(String, String)],
    extra: &[String],
) -> Result<String, (TypedFailure, Vec<String>)> {
    let mut v = view.clone();
    let mut nils = Vec::new();
    for (path, _) in types
        .iter()
        .filter(|(p, t)| !p.is_empty() && t.starts_with('*'))
    {
        let pointer = format!("/{}", path.replace('.', "/"));
        if let Some(slot) = v.pointer_mut(&pointer).filter(|x| x.is_null()) {
            *slot = Json::Object(serde_json::Map::new());
            nils.push(path.clone());
        }
    }
    let mut added: Vec<String> = Vec::new();
    if !extra.is_empty() {
        add_label_keys(&mut v, "", extra, &mut added);
    }
    let mut reg = Registry::default();
    let value = engine::convert(&v, View::Typed, &mut reg);
    register_encoded(&value, encoded, &mut reg);
    let at = |path: &str| -> Option<&gotmpl::Value> {
        let mut cur = Some(&value);
        for part in path.split('\u{0}').filter(|p| !p.is_empty()) {
            cur = cur.and_then(|c| c.field(part));
        }
        cur
    };
    let mut marks: Vec<(gotmpl::Value, &str, &str)> = Vec::new();
    for path in &nils {
        if let Some(x) = at(&path.replace('.', "\u{0}")) {
            marks.push((x.clone(), "null", "<nil>"));
        }
    }
    for path in &added {
        if let Some(x) = at(path) {
            marks.push((x.clone(), "null", "<no value>"));
        }
    }
    for (x, json, print) in &marks {
        reg.set_raw_json(x, (*json).to_string());
        reg.set_print(x, (*print).to_string());
    }
    let reg = Arc::new(reg);
    let compiled = engine::compile(
        format,
        engine::basic_funcs(&reg),
        MissingStyle::Struct(type_name.to_string()),
    )
    .map_err(|e| {
        (
            TypedFailure {
                message: e,
                missing_key: None,
                string_map_key: false,
            },
            nils.clone(),
        )
    })?;
    compiled.execute(&value).map_err(|e| {
        let string_map_key = e
            .missing_key
            .as_deref()
            .is_some_and(|k| compiled.key_read_from_string_map(k));
        (
            TypedFailure {
                message: e.message,
                missing_key: e.missing_key,
                string_map_key,
            },
            nils,
        )
    })
}

/// Adds `keys` (as empty objects) to every object of strings under a
/// `Labels` or `Options` key; records their paths (parts joined by NUL).
fn add_label_keys(v: &mut Json, path: &str, keys: &[String], added: &mut Vec<String>) {
    match v {
        Json::Object(m) => {
            for (k, child) in m.iter_mut() {
                let child_path = format!("{path}\u{0}{k}");
                if matches!(k.as_str(), "Labels" | "Options")
                    && let Json::Object(labels) = child
                    && labels.values().all(Json::is_string)
                {
                    for key in keys {
                        if !labels.contains_key(key) {
                            labels.insert(key.clone(), Json::Object(serde_json::Map::new()));
                            added.push(format!("{child_path}\u{0}{key}"));
                        }
                    }
                    continue;
                }
                add_label_keys(child, &child_path, keys, added);
            }
        }
        Json::Array(items) => {
            for item in items.iter_mut() {
                add_label_keys(item, path, keys, added);
            }
        }
        _ => {}
    }
}

/// `{{json .X}}` of a typed value prints what Go marshals (`omitempty`
/// fields left out), not the view with every field.
fn register_encoded(v: &gotmpl::Value, encoded: &Json, reg: &mut Registry) {
    match (v, encoded) {
        (gotmpl::Value::Map(m), Json::Object(o)) => {
            reg.set_original(v, encoded);
            for (k, child) in m.iter() {
                if let Some(e) = o.get(k.as_ref()) {
                    register_encoded(child, e, reg);
                }
            }
        }
        (gotmpl::Value::List(l), Json::Array(a)) => {
            reg.set_original(v, encoded);
            for (child, e) in l.iter().zip(a) {
                register_encoded(child, e, reg);
            }
        }
        _ => {}
    }
}

/// Name the Go type that lacks the field in a "can't evaluate field"
/// error: the type at the field chain's parent path.
fn retype_error(msg: &str, type_name: &str, types: &[(String, String)], nils: &[String]) -> String {
    let marker = format!(" in type {type_name}");
    let Some(start) = msg.find(" at <.") else {
        return msg.to_string();
    };
    let Some(end) = msg[start..].find(">: can't evaluate field ") else {
        return msg.to_string();
    };
    let chain = &msg[start + 6..start + end];
    if chain.ends_with("...") || !msg.ends_with(&marker) {
        return msg.to_string();
    }
    let field_start = start + end + ">: can't evaluate field ".len();
    let field = msg[field_start..].split(' ').next().unwrap_or_default();
    let parts: Vec<&str> = chain.split('.').collect();
    let Some(pos) = parts.iter().rposition(|p| *p == field) else {
        return msg.to_string();
    };
    let parent = parts[..pos].join(".");
    if nils.contains(&parent)
        && let Some((_, t)) = types.iter().find(|(p, _)| *p == parent)
    {
        let head = &msg[..field_start - "can't evaluate field ".len()];
        return format!("{head}nil pointer evaluating {t}.{field}");
    }
    match types.iter().find(|(p, _)| *p == parent) {
        Some((_, t)) => format!(
            "{}{}",
            &msg[..msg.len() - marker.len()],
            format_args!(" in type {t}")
        ),
        None => msg.to_string(),
    }
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
