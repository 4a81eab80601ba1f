//! `docker secret ls` and `docker secret inspect` (docker/cli
//! `cli/command/secret/formatter.go`).

use std::collections::BTreeMap;
use std::sync::Arc;

use gotmpl::Value;
use serde_json::Value as Json;
use time::OffsetDateTime;

use crate::engine::{self, MissingStyle, Registry};
use crate::formatter::{self, Contexts};
use crate::{FormatError, TEMPLATE_ERROR, gotime, natural};

const DEFAULT_TABLE_FORMAT: &str =
    "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}";
const DEFAULT_QUIET_FORMAT: &str = "{{.ID}}";
const PRETTY_KEY: &str = "pretty";
const PRETTY_TEMPLATE: &str = "ID:              {{.ID}}
Name:              {{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Driver:            {{.Driver}}
Created at:        {{.CreatedAt}}
Updated at:        {{.UpdatedAt}}";

/// Go type of `docker secret ls` rows, named in template errors.
const SECRET_CONTEXT: &str = "*secret.secretContext";

/// `secret.NewFormat`.
fn new_format(source: &str, quiet: bool) -> &str {
    match source {
        PRETTY_KEY => PRETTY_TEMPLATE,
        formatter::TABLE_KEY if quiet => DEFAULT_QUIET_FORMAT,
        formatter::TABLE_KEY => DEFAULT_TABLE_FORMAT,
        other => other,
    }
}

fn str_at<'a>(v: &'a Json, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

fn name_of(secret: &Json) -> &str {
    str_at(secret, &["Spec", "Name"]).unwrap_or("")
}

fn labels_of(secret: &Json) -> Option<BTreeMap<String, String>> {
    let labels = secret.get("Spec")?.get("Labels")?.as_object()?;
    Some(
        labels
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

fn time_of(secret: &Json, key: &str) -> Option<OffsetDateTime> {
    str_at(secret, &[key]).and_then(|s| gotime::parse_time(s).ok())
}

/// `docker secret ls` output for `secrets` (objects as `GET /secrets`
/// returns them; any order: rows are sorted by name in natural order).
///
/// `format` is docker's `--format`: `None`/`""`/`"table"` is the default
/// table `ID NAME DRIVER CREATED UPDATED`, `"json"` prints `{{json .}}` per
/// row, `"table <tmpl>"` a custom table, `"pretty"` the inspect pretty
/// template, anything else a Go template run per row. `quiet` (`-q`) prints
/// only IDs, but only when the format is the default table (as docker:
/// `-q --format '{{.Name}}'` prints names).
///
/// Row fields: `.ID`, `.Name`, `.Driver` (`Spec.Driver.Name` or ""),
/// `.CreatedAt`/`.UpdatedAt` ("5 minutes ago", relative to `now`),
/// `.Labels` (`k=v` sorted, joined with `,`), `.Label "k"`.
pub fn secret_list(
    secrets: &[Json],
    format: Option<&str>,
    quiet: bool,
    now: OffsetDateTime,
) -> Result<String, FormatError> {
    let source = match format {
        None | Some("") => formatter::TABLE_KEY,
        Some(f) => f,
    };
    let format = new_format(source, quiet);

    let mut sorted: Vec<&Json> = secrets.iter().collect();
    sorted.sort_by(|a, b| natural::natural_cmp(name_of(a), name_of(b)));

    let mut reg = Registry::default();
    let header = formatter::header_value(
        &[
            ("ID".into(), "ID".into()),
            ("Name".into(), "NAME".into()),
            ("Driver".into(), "DRIVER".into()),
            ("CreatedAt".into(), "CREATED".into()),
            ("UpdatedAt".into(), "UPDATED".into()),
            ("Labels".into(), "LABELS".into()),
        ],
        &mut reg,
    );
    let mut rows = Vec::with_capacity(sorted.len());
    for secret in sorted {
        let labels = labels_of(secret);
        let joined = labels
            .as_ref()
            .map(|l| {
                // slices.Sort of "k=v" strings (docker/cli master; 28.x
                // joins in Go's random map order).
                let mut kv: Vec<String> = l.iter().map(|(k, v)| format!("{k}={v}")).collect();
                kv.sort();
                kv.join(",")
            })
            .unwrap_or_default();
        let fields: Vec<(String, String)> = vec![
            ("ID".into(), str_at(secret, &["ID"]).unwrap_or("").into()),
            ("Name".into(), name_of(secret).into()),
            (
                "Driver".into(),
                str_at(secret, &["Spec", "Driver", "Name"])
                    .unwrap_or("")
                    .into(),
            ),
            (
                "CreatedAt".into(),
                gotime::ago(time_of(secret, "CreatedAt"), now),
            ),
            (
                "UpdatedAt".into(),
                gotime::ago(time_of(secret, "UpdatedAt"), now),
            ),
            ("Labels".into(), joined),
        ];
        let value = engine::string_map_value(&fields);
        let json_fields: Vec<(String, Json)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(v.clone())))
            .collect();
        reg.set_raw_json(&value, formatter::marshal_context(&json_fields));
        let mut methods = BTreeMap::new();
        methods.insert(
            "Label".to_string(),
            formatter::lookup_method(labels.unwrap_or_default()),
        );
        reg.set_methods(&value, methods);
        rows.push(value);
    }
    formatter::write(
        format,
        Contexts {
            header,
            rows,
            registry: reg,
            type_name: SECRET_CONTEXT.to_string(),
            methods: &[("Label", 1)],
        },
    )
}

/// docker's `formatter.PrettyPrint` of a `time.Time`: `capitalizeFirst` of
/// `time.String()`, which lower-cases everything after the first byte
/// (`... +0000 utc`).
fn pretty_time(t: Option<OffsetDateTime>) -> String {
    let s = gotime::go_time_string(t);
    let mut chars = s.chars();
    match (chars.next(), s.len()) {
        (None, _) => s,
        (Some(_), 1) => s.to_lowercase(),
        (Some(first), _) => format!("{}{}", first.to_uppercase(), chars.as_str().to_lowercase()),
    }
}

/// `docker secret inspect --pretty` output for `secrets`, in the given
/// order.
pub fn secret_inspect_pretty(secrets: &[Json]) -> Result<String, FormatError> {
    let mut reg = Registry::default();
    let mut contexts = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let labels = match labels_of(secret) {
            Some(l) => Value::Map(Arc::new(
                l.into_iter()
                    .map(|(k, v)| (Arc::from(k.as_str()), Value::String(v.into())))
                    .collect(),
            )),
            None => Value::Nil,
        };
        let mut map: BTreeMap<Arc<str>, Value> = BTreeMap::new();
        let mut put = |k: &str, v: Value| {
            map.insert(Arc::from(k), v);
        };
        put(
            "ID",
            Value::String(str_at(secret, &["ID"]).unwrap_or("").into()),
        );
        put("Name", Value::String(name_of(secret).into()));
        put("Labels", labels);
        put(
            "Driver",
            Value::String(
                str_at(secret, &["Spec", "Driver", "Name"])
                    .unwrap_or("")
                    .into(),
            ),
        );
        put(
            "CreatedAt",
            Value::String(pretty_time(time_of(secret, "CreatedAt")).into()),
        );
        put(
            "UpdatedAt",
            Value::String(pretty_time(time_of(secret, "UpdatedAt")).into()),
        );
        contexts.push(Value::Map(Arc::new(map)));
    }
    let reg = Arc::new(std::mem::take(&mut reg));
    let compiled = engine::compile(
        PRETTY_TEMPLATE,
        engine::basic_funcs(&reg),
        MissingStyle::Struct("*secret.secretInspectContext".into()),
    )
    .map_err(|e| FormatError::Parse(format!("{TEMPLATE_ERROR}{e}")))?;
    let mut out = String::new();
    for c in &contexts {
        let s = compiled
            .execute(c)
            .map_err(|e| FormatError::Exec(format!("{TEMPLATE_ERROR}{}", e.message)))?;
        out.push_str(&s);
        out.push('\n');
    }
    Ok(out)
}

/// `docker secret inspect [--pretty] [--format F]` for the fetched
/// `secrets`: `pretty` (or format `"pretty"`) gives
/// [`secret_inspect_pretty`], a format starting with `pretty` plus more is
/// refused like docker does, anything else is [`crate::inspect`] with the
/// typed view knowing Go's `swarm.Secret` (fields the server omits exist as
/// zero values: `{{if .Spec.Driver}}` is false, `{{json .Spec.Data}}` is
/// `null`; printed whole they show as `map[]`/`[]` where Go prints
/// `<nil>`/`[]`).
pub fn secret_inspect(
    secrets: &[Json],
    format: Option<&str>,
    pretty: bool,
) -> Result<String, FormatError> {
    let f = if pretty {
        PRETTY_KEY
    } else {
        format.unwrap_or("")
    };
    if f == PRETTY_KEY {
        return secret_inspect_pretty(secrets);
    }
    if f.starts_with(PRETTY_KEY) {
        return Err(FormatError::Usage(
            "cannot supply extra formatting options to the pretty template".into(),
        ));
    }
    let (out, errors) = crate::inspect_impl(secrets, Some(f), true);
    match errors
        .into_iter()
        .reduce(|a, b| FormatError::Exec(format!("{a}\n{b}")))
    {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Like [`secret_inspect`], but returns docker's stdout even when some
/// secrets fail, with the errors (see [`crate::inspect_with_errors`]).
pub fn secret_inspect_with_errors(
    secrets: &[Json],
    format: Option<&str>,
    pretty: bool,
) -> (String, Vec<FormatError>) {
    let f = if pretty {
        PRETTY_KEY
    } else {
        format.unwrap_or("")
    };
    if f.starts_with(PRETTY_KEY) {
        return match secret_inspect(secrets, format, pretty) {
            Ok(out) => (out, Vec::new()),
            Err(e) => (String::new(), vec![e]),
        };
    }
    crate::inspect_impl(secrets, Some(f), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn now() -> OffsetDateTime {
        gotime::parse_time("2026-11-23T11:05:00Z").unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn secrets() -> Vec<Json> {
        vec![
            json!({"ID": "id10", "Version": {"Index": 3}, "CreatedAt": "2026-11-23T11:00:00Z", "UpdatedAt": "2026-11-23T11:04:00Z", "Spec": {"Name": "s-10", "Labels": {"b": "2", "a": "1"}}}),
            json!({"ID": "id2", "Version": {"Index": 4}, "CreatedAt": "2026-11-21T11:00:00Z", "UpdatedAt": "2026-11-23T11:04:59.5Z", "Spec": {"Name": "s-2", "Labels": {}, "Driver": {"Name": "vault"}}}),
        ]
    }

    #[test]
    fn default_table_sorted_naturally() {
        let out = secret_list(&secrets(), None, false, now());
        assert_eq!(
            out,
            Ok("ID        NAME      DRIVER    CREATED         UPDATED\n\
                id2       s-2       vault     2 days ago      Less than a second ago\n\
                id10      s-10                5 minutes ago   About a minute ago\n"
                .into())
        );
    }

    #[test]
    fn quiet_and_formats() {
        let s = secrets();
        assert_eq!(secret_list(&s, None, true, now()), Ok("id2\nid10\n".into()));
        assert_eq!(
            secret_list(&s, Some("table"), true, now()),
            Ok("id2\nid10\n".into())
        );
        assert_eq!(
            secret_list(&s, Some("{{.Name}}"), true, now()),
            Ok("s-2\ns-10\n".into())
        );
        assert_eq!(
            secret_list(
                &s,
                Some(r#"{{.Labels}}|{{.Label "a"}}|{{.Label "zz"}}"#),
                false,
                now()
            ),
            Ok("||\na=1,b=2|1|\n".into())
        );
        assert_eq!(
            secret_list(&s, Some("{{.Label}}"), false, now()),
            Err(FormatError::Exec("template parsing error: template: :1:2: executing \"\" at <.Label>: wrong number of args for Label: want 1 got 0".into()))
        );
        assert_eq!(
            secret_list(&[], Some("{{.Name}}"), false, now()),
            Ok(String::new())
        );
        assert_eq!(
            secret_list(&[], None, false, now()),
            Ok("ID        NAME      DRIVER    CREATED   UPDATED\n".into())
        );
    }

    #[test]
    fn pretty() {
        let out = secret_inspect_pretty(&secrets()[..1]);
        assert_eq!(
            out,
            Ok("ID:              id10\nName:              s-10\nLabels:\n - a=1\n - b=2\nDriver:            \nCreated at:        2026-11-23 11:00:00 +0000 utc\nUpdated at:        2026-11-23 11:04:00 +0000 utc\n".into())
        );
        assert_eq!(
            secret_inspect(&secrets()[..1], Some("prettyx"), false),
            Err(FormatError::Usage(
                "cannot supply extra formatting options to the pretty template".into()
            ))
        );
    }
}
