//! docker/cli `cli/command/formatter`: `Context.Write` (the `table`
//! directive, header row, Go tabwriter alignment) for formatter contexts.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use gotmpl::Value;
use serde_json::Value as Json;

use crate::engine::{self, Method, MethodFn, MissingStyle, Registry, View};
use crate::{FormatError, TEMPLATE_ERROR, gojson};

pub(crate) const TABLE_KEY: &str = "table";
pub(crate) const JSON_KEY: &str = "json";

/// `formatter.Context.preFormat`: strip `table`, map `json`, trim spaces and
/// turn the two-character sequences `\t` and `\n` into tab and newline.
pub(crate) fn pre_format(format: &str) -> (bool, String) {
    let is_table = format.starts_with(TABLE_KEY);
    let f = if is_table {
        &format[TABLE_KEY.len()..]
    } else if format == JSON_KEY {
        "{{json .}}"
    } else {
        format
    };
    let f = f.trim_matches(' ');
    (is_table, f.replace("\\t", "\t").replace("\\n", "\n"))
}

/// `formatter.SubHeaderContext.Label`: the last dotted part, with `-` and
/// `_` as spaces.
pub(crate) fn header_label(name: &str) -> String {
    name.rsplit('.')
        .next()
        .unwrap_or(name)
        .replace(['-', '_'], " ")
}

/// The header context: a Go `map[string]string` with a `Label` method.
pub(crate) fn header_value(headers: &[(String, String)], reg: &mut Registry) -> Value {
    let v = engine::string_map_value(headers);
    let call: MethodFn = Arc::new(|args: &[Value]| match args.first() {
        Some(Value::String(s)) => Ok(Value::String(header_label(s).into())),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
        None => Err("wrong number of args for Label: want 1 got 0".into()),
    });
    let mut methods = BTreeMap::new();
    methods.insert("Label".to_string(), Method { arity: 1, call });
    reg.set_methods(&v, methods);
    v
}

/// A method taking one string and looking it up in `table` ("" if absent),
/// like docker's `Label(name string) string`.
pub(crate) fn lookup_method(table: BTreeMap<String, String>) -> Method {
    let call: MethodFn = Arc::new(move |args: &[Value]| match args.first() {
        Some(Value::String(k)) => Ok(Value::String(
            table
                .get(k.as_ref())
                .map(String::as_str)
                .unwrap_or("")
                .into(),
        )),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
        None => Err("wrong number of args: want 1 got 0".into()),
    });
    Method { arity: 1, call }
}

/// Go's `json.Marshal` of a `map[string]any` (sorted keys, HTML escaped):
/// what docker's `formatter.MarshalJSON` gives for a context.
pub(crate) fn marshal_context(fields: &[(String, Json)]) -> String {
    let mut sorted: Vec<&(String, Json)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("{");
    for (i, (k, v)) in sorted.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        gojson::write_string(&mut out, k, true);
        out.push(':');
        gojson::write_compact(&mut out, v, true);
    }
    out.push('}');
    out
}

/// Everything `Context.Write` needs, with values already registered.
pub(crate) struct Contexts<'a> {
    pub(crate) header: Value,
    pub(crate) rows: Vec<Value>,
    pub(crate) registry: Registry,
    pub(crate) type_name: String,
    pub(crate) methods: &'a [(&'a str, usize)],
}

/// `formatter.Context.Write` followed by `postFormat`.
pub(crate) fn write(format: &str, ctx: Contexts<'_>) -> Result<String, FormatError> {
    let (is_table, final_format) = pre_format(format);
    let reg = Arc::new(ctx.registry);
    let compiled = engine::compile(
        &final_format,
        engine::basic_funcs(&reg),
        MissingStyle::Struct(ctx.type_name),
    )
    .map_err(|e| FormatError::Parse(format!("{TEMPLATE_ERROR}{e}")))?
    .with_methods(ctx.methods);
    let mut body = String::new();
    for row in &ctx.rows {
        let s = compiled
            .execute(row)
            .map_err(|e| FormatError::Exec(format!("{TEMPLATE_ERROR}{}", e.message)))?;
        body.push_str(&s);
        body.push('\n');
    }
    if !is_table {
        return Ok(body);
    }
    // The header: errors are ignored, what was written so far is kept.
    let header = match engine::compile(
        &final_format,
        engine::header_funcs(&reg),
        MissingStyle::NoValue,
    ) {
        Ok(h) => match h.execute(&ctx.header) {
            Ok(s) => s,
            Err(e) => e.partial,
        },
        Err(_) => String::new(),
    };
    tabwrite(&format!("{header}\n{body}"))
}

/// Go's `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`. The tabwriter crate
/// computes `max(cell, minwidth) + padding` where Go computes
/// `max(cell + padding, minwidth)`: minwidth 7 + padding 3 is Go's 10/3.
pub(crate) fn tabwrite(text: &str) -> Result<String, FormatError> {
    let mut tw = tabwriter::TabWriter::new(Vec::new()).minwidth(7).padding(3);
    let io_err = |e: std::io::Error| FormatError::Exec(format!("tabwriter: {e}"));
    // Go also ends a cell at '\v' and a line at '\f' (which forces a
    // flush and is written as '\n').
    let text = text.replace('\u{b}', "\t");
    let mut sections = text.split('\u{c}').peekable();
    while let Some(section) = sections.next() {
        tw.write_all(section.as_bytes()).map_err(io_err)?;
        if sections.peek().is_some() {
            tw.write_all(b"\n").map_err(io_err)?;
            tw.flush().map_err(io_err)?;
        }
    }
    tw.flush().map_err(io_err)?;
    let bytes = tw
        .into_inner()
        .map_err(|e| FormatError::Exec(format!("tabwriter: {e}")))?;
    String::from_utf8(bytes).map_err(|e| FormatError::Exec(format!("tabwriter: {e}")))
}

/// [`crate::table`]: contexts given as JSON objects.
pub(crate) fn write_json_contexts(
    format: &str,
    headers: &serde_json::Map<String, Json>,
    rows: &[Json],
) -> Result<String, FormatError> {
    let mut reg = Registry::default();
    let header_fields: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect();
    let header = header_value(&header_fields, &mut reg);
    let mut type_name: Option<String> = None;
    // Go contexts of one type share their methods: every row gets all the
    // methods declared by any row.
    let mut method_names: Vec<String> = Vec::new();
    for row in rows {
        if let Some(Json::Object(ms)) = row.get("$methods") {
            for name in ms.keys() {
                if !method_names.contains(name) {
                    method_names.push(name.clone());
                }
            }
        }
    }
    let mut values = Vec::with_capacity(rows.len());
    for row in rows {
        let Json::Object(obj) = row else {
            values.push(engine::convert(row, View::Raw, &mut reg));
            continue;
        };
        let mut fields = serde_json::Map::new();
        let mut methods = BTreeMap::new();
        for (k, v) in obj {
            match (k.as_str(), v) {
                ("$methods", Json::Object(ms)) => {
                    for (name, table) in ms {
                        let table: BTreeMap<String, String> = match table {
                            Json::Object(t) => t
                                .iter()
                                .map(|(a, r)| {
                                    let r = match r {
                                        Json::String(s) => s.clone(),
                                        other => other.to_string(),
                                    };
                                    (a.clone(), r)
                                })
                                .collect(),
                            _ => BTreeMap::new(),
                        };
                        methods.insert(name.clone(), lookup_method(table));
                    }
                }
                ("$type", Json::String(t)) => type_name = Some(t.clone()),
                _ => {
                    fields.insert(k.clone(), v.clone());
                }
            }
        }
        let fields_json = Json::Object(fields);
        let value = engine::convert(&fields_json, View::Raw, &mut reg);
        let pairs: Vec<(String, Json)> = match &fields_json {
            Json::Object(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            _ => Vec::new(),
        };
        reg.set_raw_json(&value, marshal_context(&pairs));
        for name in &method_names {
            if !methods.contains_key(name) {
                methods.insert(name.clone(), lookup_method(BTreeMap::new()));
            }
        }
        if !methods.is_empty() {
            reg.set_methods(&value, methods);
        }
        values.push(value);
    }
    let method_decls: Vec<(&str, usize)> = method_names.iter().map(|m| (m.as_str(), 1)).collect();
    write(
        format,
        Contexts {
            header,
            rows: values,
            registry: reg,
            type_name: type_name.unwrap_or_else(|| "*formatter.Context".to_string()),
            methods: &method_decls,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table;
    use serde_json::json;

    #[test]
    fn pre_format_cases() {
        assert_eq!(
            pre_format("table {{.ID}}\\t{{.Name}}"),
            (true, "{{.ID}}\t{{.Name}}".into())
        );
        assert_eq!(pre_format("json"), (false, "{{json .}}".into()));
        assert_eq!(pre_format("  {{.ID}}\\n "), (false, "{{.ID}}\n".into()));
        assert_eq!(pre_format("tablex"), (true, "x".into()));
    }

    #[test]
    fn header_labels() {
        assert_eq!(header_label("com.docker.stack-name"), "stack name");
        assert_eq!(header_label("env"), "env");
        assert_eq!(header_label("a_b"), "a b");
    }

    #[test]
    fn tabwriter_matches_go() {
        // Go: cell width = max(len + 3, 10); last cell unpadded; a line with
        // fewer cells ends the column block.
        let s = tabwrite("ID\tNAME\nabcdefghijk\tx\nz\n").unwrap_or_default();
        assert_eq!(s, "ID            NAME\nabcdefghijk   x\nz\n");
        let s = tabwrite("a\tb\t|\nc\t|\n").unwrap_or_default();
        assert_eq!(s, "a         b         |\nc         |\n");
        let s = tabwrite("\n").unwrap_or_default();
        assert_eq!(s, "\n");
        // '\f' ends the line and the column block, '\v' ends a cell.
        let s = tabwrite("a\tb\u{c}ccccccccccc\td\n").unwrap_or_default();
        assert_eq!(s, "a         b\nccccccccccc   d\n");
        let s = tabwrite("a\u{b}b\n").unwrap_or_default();
        assert_eq!(s, "a         b\n");
    }

    #[test]
    fn generic_table() {
        let mut headers = serde_json::Map::new();
        headers.insert("ID".into(), json!("ID"));
        headers.insert("Name".into(), json!("NAME"));
        headers.insert("Replicas".into(), json!("REPLICAS"));
        let rows = vec![
            json!({"ID": "abc", "Name": "web", "Replicas": "1/1", "$methods": {"Label": {"tier": "front"}}}),
            json!({"ID": "defghijklmnop", "Name": "db<1>", "Replicas": "0/1"}),
        ];
        let out = table(
            "table {{.ID}}\t{{.Name}}\t{{.Label \"tier\"}}",
            &headers,
            &rows,
        );
        assert_eq!(
            out,
            Ok("ID              NAME      tier\nabc             web       front\ndefghijklmnop   db<1>     \n".into())
        );
        let out = table("json", &headers, &rows[1..]);
        assert_eq!(
            out,
            Ok(
                "{\"ID\":\"defghijklmnop\",\"Name\":\"db\\u003c1\\u003e\",\"Replicas\":\"0/1\"}\n"
                    .into()
            )
        );
        let out = table("{{.Nope}}", &headers, &rows[1..]);
        assert_eq!(
            out,
            Err(FormatError::Exec("template parsing error: template: :1:2: executing \"\" at <.Nope>: can't evaluate field Nope in type *formatter.Context".into()))
        );
        let out = table("table {{.Name}}", &headers, &[]);
        assert_eq!(out, Ok("NAME\n".into()));
    }
}
