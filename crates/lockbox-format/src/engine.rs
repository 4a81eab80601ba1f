//! Go `text/template` as the docker CLI uses it, on top of `gotmpl`.
//!
//! `gotmpl` has no Go structs, methods or types, so this module adds what
//! docker's output depends on:
//!
//! * a side table (`Registry`) keyed by the address of the `Arc` inside a
//!   `gotmpl::Value` (which survives the clones made while executing), that
//!   remembers for a value: its original JSON (so `{{json .Spec}}` keeps the
//!   server's key order), how docker would marshal it (`{{json .}}` on a
//!   formatter context), its "methods" (`{{.Label "k"}}`), how Go prints it,
//!   and whether it is a Go `map[string]string` (`index` of a missing key
//!   gives "");
//! * a rewrite of the parse tree that turns a method call written as a field
//!   with arguments (`.Label "k"`, `"k" | .Label`) into a call of an internal
//!   function taking the receiver, and that ends every printing action with
//!   an internal function printing registered values as Go would (structs
//!   like `swarm.Version` print `16`, nil pointers `<nil>`);
//! * docker's template functions (`json`, `join`, `split`, ...) and the
//!   table-header variants;
//! * Go-like error messages (`template: :1:2: executing "" at <.Foo>: ...`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, Number, Parser, PipeNode, SmolStr};
use gotmpl::{FuncMap, MissingKey, Template, TemplateError, Value, ValueFunc};
use serde_json::Value as Json;

use crate::gojson;
use crate::gotime;

/// Name of the internal function that method calls are rewritten to.
const METHOD_FN: &str = "__lockbox_method";
/// Internal function appended to every printing action (`{{x}}` runs as
/// `{{x | __lockbox_print}}`): values that Go prints differently from
/// gotmpl's map printing (structs) get their Go text.
const PRINT_FN: &str = "__lockbox_print";
/// Name under which the main (rewritten) tree is stored in the template.
const MAIN: &str = "\u{0}lockbox-main";
/// Marker that starts an error message produced by one of our functions.
const ERR_MARK: char = '\u{1}';

/// Go's predefined template functions (all provided by gotmpl).
const GO_BUILTINS: &[&str] = &[
    "and", "or", "not", "len", "index", "slice", "print", "printf", "println", "html", "js",
    "urlquery", "call", "eq", "ne", "lt", "le", "gt", "ge",
];

// ---------------------------------------------------------------------------
// Registry

/// A method of an emulated Go value: `arity` arguments, returns a value or a
/// Go-like error message.
pub(crate) type MethodFn = Arc<dyn Fn(&[Value]) -> Result<Value, String> + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) arity: usize,
    pub(crate) call: MethodFn,
}

#[derive(Clone)]
enum JsonForm {
    /// The original JSON value, printed in its own key order.
    Original(Json),
    /// Exactly these bytes (already encoded).
    Raw(String),
}

#[derive(Clone, Default)]
struct Entry {
    json: Option<JsonForm>,
    methods: Option<Arc<BTreeMap<String, Method>>>,
    string_map: bool,
    /// How Go prints the value in an action (`{{.Version}}` is a struct
    /// with a `String` method: `16`).
    print: Option<String>,
}

#[derive(Default)]
pub(crate) struct Registry {
    entries: HashMap<usize, Entry>,
}

fn ptr_key(v: &Value) -> Option<usize> {
    match v {
        Value::Map(m) => Some(Arc::as_ptr(m) as *const () as usize),
        Value::List(l) => Some(Arc::as_ptr(l) as *const () as usize),
        Value::String(s) => Some(Arc::as_ptr(s) as *const () as usize),
        _ => None,
    }
}

impl Registry {
    fn get(&self, v: &Value) -> Option<&Entry> {
        ptr_key(v).and_then(|k| self.entries.get(&k))
    }

    fn entry(&mut self, v: &Value) -> Option<&mut Entry> {
        ptr_key(v).map(|k| self.entries.entry(k).or_default())
    }

    /// Register how `{{json v}}` prints `v` (exact bytes).
    pub(crate) fn set_raw_json(&mut self, v: &Value, json: String) {
        if let Some(e) = self.entry(v) {
            e.json = Some(JsonForm::Raw(json));
        }
    }

    /// Register the methods of `v` (a formatter context).
    pub(crate) fn set_methods(&mut self, v: &Value, methods: BTreeMap<String, Method>) {
        if let Some(e) = self.entry(v) {
            e.methods = Some(Arc::new(methods));
        }
    }

    pub(crate) fn set_original(&mut self, v: &Value, json: &Json) {
        if let Some(e) = self.entry(v) {
            e.json = Some(JsonForm::Original(json.clone()));
        }
    }

    pub(crate) fn set_print(&mut self, v: &Value, print: String) {
        if let Some(e) = self.entry(v) {
            e.print = Some(print);
        }
    }

    /// Move the entry of `old` to `new` (a rebuilt copy of it).
    fn rekey(&mut self, old: &Value, new: &Value) {
        if let (Some(o), Some(n)) = (ptr_key(old), ptr_key(new))
            && let Some(e) = self.entries.remove(&o)
        {
            self.entries.insert(n, e);
        }
    }

    fn set_string_map(&mut self, v: &Value) {
        if let Some(e) = self.entry(v) {
            e.string_map = true;
        }
    }
}

// ---------------------------------------------------------------------------
// JSON -> Value

/// How JSON from the Engine API is presented to a template.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum View {
    /// Like Go's `map[string]interface{}` decoding (docker's raw fallback and
    /// plain data): strings stay strings.
    Raw,
    /// Like the typed Go structs of the API (docker's first attempt for
    /// `inspect --format`): `CreatedAt`/`UpdatedAt` print as Go's
    /// `time.Time` does, `Labels`/`Options` are `map[string]string`.
    Typed,
}

pub(crate) fn convert(v: &Json, view: View, reg: &mut Registry) -> Value {
    convert_inner(v, view, reg, None)
}

fn convert_inner(v: &Json, view: View, reg: &mut Registry, key: Option<&str>) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::Uint(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => {
            if view == View::Typed
                && matches!(key, Some("CreatedAt" | "UpdatedAt"))
                && let Ok(t) = gotime::parse_time(s)
            {
                let val = Value::String(gotime::go_time_string(Some(t)).into());
                reg.set_original(&val, v);
                return val;
            }
            Value::String(Arc::from(s.as_str()))
        }
        Json::Array(items) => {
            let list: Vec<Value> = items
                .iter()
                .map(|i| convert_inner(i, view, reg, None))
                .collect();
            let val = Value::List(list.into());
            reg.set_original(&val, v);
            val
        }
        Json::Object(m) => {
            let map: BTreeMap<Arc<str>, Value> = m
                .iter()
                .map(|(k, i)| (Arc::from(k.as_str()), convert_inner(i, view, reg, Some(k))))
                .collect();
            let val = Value::Map(Arc::new(map));
            reg.set_original(&val, v);
            // `swarm.Version` (in every swarm object's `Meta`) prints via
            // its `String()` method: the index.
            if view == View::Typed
                && key == Some("Version")
                && m.len() == 1
                && let Some(index) = m.get("Index").filter(|i| i.is_number())
            {
                reg.set_print(&val, index.to_string());
            }
            if view == View::Typed
                && matches!(key, Some("Labels" | "Options"))
                && m.values().all(Json::is_string)
            {
                reg.set_string_map(&val);
            }
            val
        }
    }
}

/// A Go zero value that JSON-encodes as `null`: an empty map (nil pointer
/// or nil map: false in `if`, accessing a field fails) or an empty list
/// (nil slice).
fn go_nil(reg: &mut Registry, list: bool) -> Value {
    let v = if list {
        Value::List(Vec::new().into())
    } else {
        Value::Map(Arc::new(BTreeMap::new()))
    };
    reg.set_raw_json(&v, "null".to_string());
    v
}

/// A copy of map `v` with `edit` applied, keeping its registry entry.
fn edit_map(
    v: &Value,
    reg: &mut Registry,
    edit: impl FnOnce(&mut BTreeMap<Arc<str>, Value>, &mut Registry),
) -> Option<Value> {
    let Value::Map(m) = v else { return None };
    let mut map = (**m).clone();
    edit(&mut map, reg);
    let new = Value::Map(Arc::new(map));
    reg.rekey(v, &new);
    Some(new)
}

/// The typed view of a secret: Go's `swarm.Secret` has the fields the
/// server omits (`omitempty`) as zero values: `Spec.Data` (nil slice),
/// `Spec.Driver`, `Spec.Templating` (nil pointers), `Spec.Labels` (nil map).
pub(crate) fn with_secret_zero_fields(root: Value, reg: &mut Registry) -> Value {
    let Some(spec) = root.field("Spec").cloned() else {
        return root;
    };
    let Some(new_spec) = edit_map(&spec, reg, |m, reg| {
        for (key, list) in [("Data", true), ("Driver", false), ("Templating", false)] {
            if !m.contains_key(key) {
                let v = go_nil(reg, list);
                reg.set_print(&v, if list { "[]" } else { "<nil>" }.to_string());
                m.insert(Arc::from(key), v);
            }
        }
        if !m.contains_key("Labels") {
            let labels = go_nil(reg, false);
            reg.set_string_map(&labels);
            m.insert(Arc::from("Labels"), labels);
        }
    }) else {
        return root;
    };
    // Go's `%v` of `swarm.SecretSpec{Annotations{Name, Labels}, Data,
    // Driver, Templating}` (a non-nil pointer would print as an address).
    let go_print = |v: Option<&Value>, reg: &Registry| match v {
        Some(v) => reg
            .get(v)
            .and_then(|e| e.print.clone())
            .unwrap_or_else(|| v.to_string()),
        None => "<nil>".to_string(),
    };
    let spec_print = format!(
        "{{{{{} {}}} {} {} {}}}",
        go_print(new_spec.field("Name"), reg),
        go_print(new_spec.field("Labels"), reg),
        go_print(new_spec.field("Data"), reg),
        go_print(new_spec.field("Driver"), reg),
        go_print(new_spec.field("Templating"), reg),
    );
    reg.set_print(&new_spec, spec_print.clone());
    // `swarm.Version` has `String()`: the index.
    if let Some(version) = root.field("Version")
        && let Some(index) = version.field("Index")
    {
        let index = index.to_string();
        reg.set_print(version, index);
    }
    let version_print = go_print(root.field("Version"), reg);
    let root_print = format!(
        "{{{} {{{} {} {}}} {}}}",
        go_print(root.field("ID"), reg),
        version_print,
        go_print(root.field("CreatedAt"), reg),
        go_print(root.field("UpdatedAt"), reg),
        spec_print,
    );
    let new_root = edit_map(&root, reg, |m, _| {
        m.insert(Arc::from("Spec"), new_spec);
    })
    .unwrap_or(root);
    reg.set_print(&new_root, root_print);
    new_root
}

/// A flat string map (a formatter context or a header map) as a template
/// value.
pub(crate) fn string_map_value(fields: &[(String, String)]) -> Value {
    let map: BTreeMap<Arc<str>, Value> = fields
        .iter()
        .map(|(k, v)| (Arc::from(k.as_str()), Value::String(Arc::from(v.as_str()))))
        .collect();
    Value::Map(Arc::new(map))
}

// ---------------------------------------------------------------------------
// Go type names and printing helpers

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Nil => "<nil>",
        Value::Bool(_) => "bool",
        Value::Int(_) => "int",
        Value::Uint(_) => "uint64",
        Value::Float(_) => "float64",
        Value::String(_) => "string",
        Value::List(_) => "[]interface {}",
        Value::Map(_) => "map[string]interface {}",
        Value::Function(_) => "func",
    }
}

/// An error raised by one of our functions, located by `Compiled` like Go
/// does: `kind` is `arg:<type>` (argument `idx` is not a `<type>`; Go
/// reports it at the argument), `count` (wrong number of arguments; at the
/// function name), `call` ("error calling"; at the command), or for methods
/// `marg:<type>`, `mcount`, `method` (at the field).
fn func_err(kind: &str, name: &str, idx: usize, msg: &str) -> TemplateError {
    TemplateError::Exec(format!("{ERR_MARK}{kind}\u{1}{name}\u{1}{idx}\u{1}{msg}"))
}

fn want_args(name: &str, args: &[Value], n: usize) -> gotmpl::Result<()> {
    if args.len() != n {
        return Err(func_err(
            "count",
            name,
            0,
            &format!(
                "wrong number of args for {name}: want {n} got {}",
                args.len()
            ),
        ));
    }
    Ok(())
}

fn arg_str<'a>(name: &str, args: &'a [Value], i: usize) -> gotmpl::Result<&'a str> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Nil) | None => Err(func_err(
            "arg:string",
            name,
            i,
            "invalid value; expected string",
        )),
        Some(other) => Err(func_err(
            "arg:string",
            name,
            i,
            &format!(
                "wrong type for value; expected string; got {}",
                go_type(other)
            ),
        )),
    }
}

fn arg_int(name: &str, args: &[Value], i: usize) -> gotmpl::Result<i64> {
    match args.get(i) {
        Some(Value::Int(n)) => Ok(*n),
        Some(Value::Uint(n)) if i64::try_from(*n).is_ok() => Ok(i64::try_from(*n).unwrap_or(0)),
        Some(Value::Nil) | None => Err(func_err("arg:int", name, i, "invalid value; expected int")),
        Some(other) => Err(func_err(
            "arg:int",
            name,
            i,
            &format!("wrong type for value; expected int; got {}", go_type(other)),
        )),
    }
}

fn string_list(items: Vec<String>) -> Value {
    Value::List(items.into_iter().map(|s| Value::String(s.into())).collect())
}

/// Go's `strings.Title`: upper-case (title-case) the first letter of each
/// word; words are separated by anything but letters, digits and `_`
/// (non-ASCII: by white space only).
fn go_title(s: &str) -> String {
    fn is_separator(c: char) -> bool {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else if c.is_alphanumeric() {
            false
        } else {
            c.is_whitespace()
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut prev = ' ';
    for c in s.chars() {
        if is_separator(prev) {
            out.push_str(&map_single(c, true));
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Go maps case rune by rune (`unicode.ToUpper`); Rust's full mappings may
/// expand a char (ß -> SS): keep those chars as they are.
fn map_single(c: char, upper: bool) -> String {
    let mapped: Vec<char> = if upper {
        c.to_uppercase().collect()
    } else {
        c.to_lowercase().collect()
    };
    if mapped.len() == 1 {
        mapped.into_iter().collect()
    } else {
        c.to_string()
    }
}

fn go_upper(s: &str) -> String {
    s.chars().map(|c| map_single(c, true)).collect()
}

fn go_lower(s: &str) -> String {
    s.chars().map(|c| map_single(c, false)).collect()
}

/// Go's `strings.Split`.
fn go_split(s: &str, sep: &str) -> Vec<String> {
    if sep.is_empty() {
        return s.chars().map(String::from).collect();
    }
    s.split(sep).map(String::from).collect()
}

/// `fmt.Sprint` of one value.
fn go_sprint(v: &Value) -> String {
    v.to_string()
}

/// Encode any template value as Go's `json.Encoder` (HTML escaping off)
/// would: registered values as they were received or marshalled, other maps
/// with sorted keys.
fn encode_json(v: &Value, reg: &Registry, out: &mut String) -> Result<(), String> {
    if let Some(e) = reg.get(v) {
        match &e.json {
            Some(JsonForm::Original(j)) => {
                gojson::write_compact(out, j, false);
                return Ok(());
            }
            Some(JsonForm::Raw(s)) => {
                out.push_str(s);
                return Ok(());
            }
            None => {}
        }
    }
    match v {
        Value::Nil => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(n) => out.push_str(&n.to_string()),
        Value::Uint(n) => out.push_str(&n.to_string()),
        Value::Float(f) => match gojson::format_float(*f) {
            Some(s) => out.push_str(&s),
            None => return Err(format!("json: unsupported value: {f}")),
        },
        Value::String(s) => gojson::write_string(out, s, false),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                encode_json(item, reg, out)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gojson::write_string(out, k, false);
                out.push(':');
                encode_json(item, reg, out)?;
            }
            out.push('}');
        }
        Value::Function(_) => return Err("json: unsupported type: func()".to_string()),
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Function maps

fn insert(
    m: &mut FuncMap,
    name: &str,
    f: impl Fn(&[Value]) -> gotmpl::Result<Value> + Send + Sync + 'static,
) {
    let f: ValueFunc = Arc::new(f);
    m.insert(name.to_string(), f);
}

/// docker's `templates.basicFunctions` (docker/cli master: `join` also takes
/// non-string slices and maps) plus our internal method dispatcher and a
/// Go-typed `index`.
pub(crate) fn basic_funcs(reg: &Arc<Registry>) -> FuncMap {
    let mut m = FuncMap::new();
    let r = Arc::clone(reg);
    insert(&mut m, "json", move |args| {
        want_args("json", args, 1)?;
        let mut out = String::new();
        encode_json(&args[0], &r, &mut out).map_err(|e| func_err("call", "json", 0, &e))?;
        Ok(Value::String(out.into()))
    });
    insert(&mut m, "split", |args| {
        want_args("split", args, 2)?;
        let s = arg_str("split", args, 0)?;
        let sep = arg_str("split", args, 1)?;
        Ok(string_list(go_split(s, sep)))
    });
    // docker 28.x: `strings.Join`, i.e. a []string only (docker/cli master
    // also joins other slices and map values).
    insert(&mut m, "join", |args| {
        want_args("join", args, 2)?;
        let items = match &args[0] {
            Value::List(items) if items.iter().all(|i| matches!(i, Value::String(_))) => items,
            Value::Nil => {
                return Err(func_err(
                    "arg:[]string",
                    "join",
                    0,
                    "invalid value; expected []string",
                ));
            }
            other => {
                return Err(func_err(
                    "arg:[]string",
                    "join",
                    0,
                    &format!(
                        "wrong type for value; expected []string; got {}",
                        go_type(other)
                    ),
                ));
            }
        };
        let sep = arg_str("join", args, 1)?;
        Ok(Value::String(
            items
                .iter()
                .map(go_sprint)
                .collect::<Vec<_>>()
                .join(sep)
                .into(),
        ))
    });
    insert(&mut m, "title", |args| {
        want_args("title", args, 1)?;
        Ok(Value::String(go_title(arg_str("title", args, 0)?).into()))
    });
    insert(&mut m, "lower", |args| {
        want_args("lower", args, 1)?;
        Ok(Value::String(go_lower(arg_str("lower", args, 0)?).into()))
    });
    insert(&mut m, "upper", |args| {
        want_args("upper", args, 1)?;
        Ok(Value::String(go_upper(arg_str("upper", args, 0)?).into()))
    });
    insert(&mut m, "pad", |args| {
        want_args("pad", args, 3)?;
        let s = arg_str("pad", args, 0)?;
        let pre = arg_int("pad", args, 1)?;
        let post = arg_int("pad", args, 2)?;
        if s.is_empty() {
            return Ok(Value::String("".into()));
        }
        let (Ok(pre), Ok(post)) = (usize::try_from(pre), usize::try_from(post)) else {
            return Err(func_err(
                "call",
                "pad",
                0,
                "error calling pad: strings: negative Repeat count",
            ));
        };
        Ok(Value::String(
            format!("{}{s}{}", " ".repeat(pre), " ".repeat(post)).into(),
        ))
    });
    insert(&mut m, "truncate", |args| {
        want_args("truncate", args, 2)?;
        let s = arg_str("truncate", args, 0)?;
        let n = arg_int("truncate", args, 1)?;
        let Ok(n) = usize::try_from(n) else {
            return Err(func_err(
                "call",
                "truncate",
                0,
                &format!("error calling truncate: runtime error: slice bounds out of range [:{n}]"),
            ));
        };
        if s.len() < n {
            return Ok(Value::String(s.into()));
        }
        // Go cuts bytes; keep valid UTF-8 by cutting at the char boundary
        // at or before `n`.
        let mut end = n;
        while end > 0 && !s.is_char_boundary(end) {
            end -= 1;
        }
        Ok(Value::String(s[..end].into()))
    });
    let r = Arc::clone(reg);
    insert(&mut m, "index", move |args| {
        if args.len() < 2 {
            return Err(func_err(
                "call",
                "index",
                0,
                &format!(
                    "wrong number of args for index: want at least 1 got {}",
                    args.len()
                ),
            ));
        }
        let mut val = args[0].clone();
        for idx in &args[1..] {
            let string_map = r.get(&val).is_some_and(|e| e.string_map);
            val = match (&val, idx) {
                (Value::Map(map), Value::String(k)) if string_map && !map.contains_key(k) => {
                    Value::String("".into())
                }
                (Value::Nil, _) => {
                    return Err(func_err(
                        "call",
                        "index",
                        0,
                        "error calling index: index of untyped nil",
                    ));
                }
                _ => val.index(idx).map_err(|e| {
                    let msg = match e {
                        TemplateError::Exec(s) => s,
                        other => other.to_string(),
                    };
                    func_err("call", "index", 0, &format!("error calling index: {msg}"))
                })?,
            };
        }
        Ok(val)
    });
    insert_method_dispatch(&mut m, reg);
    let r = Arc::clone(reg);
    insert(&mut m, PRINT_FN, move |args| {
        let v = args.last().cloned().unwrap_or(Value::Nil);
        Ok(match r.get(&v).and_then(|e| e.print.clone()) {
            Some(p) => Value::String(p.into()),
            None => v,
        })
    });
    m
}

/// docker's `templates.HeaderFunctions`: the functions that would change a
/// header text return their (string) argument unchanged; `pad` and Go's
/// builtins are kept.
pub(crate) fn header_funcs(reg: &Arc<Registry>) -> FuncMap {
    let mut m = basic_funcs(reg);
    for (name, n) in [
        ("json", 1usize),
        ("split", 2),
        ("join", 2),
        ("title", 1),
        ("lower", 1),
        ("upper", 1),
        ("truncate", 2),
    ] {
        insert(&mut m, name, move |args| {
            want_args(name, args, n)?;
            let s = arg_str(name, args, 0)?;
            if name == "truncate" {
                arg_int(name, args, 1)?;
            } else if n == 2 {
                arg_str(name, args, 1)?;
            }
            Ok(Value::String(s.into()))
        });
    }
    m
}

fn insert_method_dispatch(m: &mut FuncMap, reg: &Arc<Registry>) {
    let r = Arc::clone(reg);
    insert(m, METHOD_FN, move |args| {
        // args: receiver, method name, arguments...
        let (Some(recv), Some(Value::String(name))) = (args.first(), args.get(1)) else {
            return Err(TemplateError::Exec("internal method call".into()));
        };
        let rest = &args[2..];
        let name: &str = name;
        if let Some(methods) = r.get(recv).and_then(|e| e.methods.as_ref()) {
            if let Some(meth) = methods.get(name) {
                if meth.arity != rest.len() {
                    return Err(func_err(
                        "mcount",
                        name,
                        0,
                        &format!(
                            "wrong number of args for {name}: want {} got {}",
                            meth.arity,
                            rest.len()
                        ),
                    ));
                }
                // All our methods take strings (`Label(name string)`).
                if let Some((i, bad)) = rest
                    .iter()
                    .enumerate()
                    .find(|(_, a)| !matches!(a, Value::String(_)))
                {
                    return Err(func_err(
                        "marg:string",
                        name,
                        i,
                        &format!(
                            "wrong type for value; expected string; got {}",
                            go_type(bad)
                        ),
                    ));
                }
                return (meth.call)(rest).map_err(|e| func_err("method", name, 0, &e));
            }
            if recv.field(name).is_some() {
                return Err(func_err(
                    "mcount",
                    name,
                    0,
                    &format!("wrong number of args for {name}: want 0 got {}", rest.len()),
                ));
            }
            return Err(TemplateError::MissingKey {
                key: name.to_string(),
            });
        }
        match recv {
            Value::Map(_) => Err(func_err(
                "method",
                name,
                0,
                &format!("{name} is not a method but has arguments"),
            )),
            Value::Nil => Err(func_err(
                "method",
                name,
                0,
                &format!("nil pointer evaluating interface {{}}.{name}"),
            )),
            other => Err(func_err(
                "method",
                name,
                0,
                &format!("can't evaluate field {name} in type {}", go_type(other)),
            )),
        }
    });
}

// ---------------------------------------------------------------------------
// Parse tree walking

fn visit_list<'a>(list: &'a ListNode, f: &mut impl FnMut(&'a PipeNode)) {
    for n in &list.nodes {
        visit_node(n, f);
    }
}

fn visit_node<'a>(n: &'a Node, f: &mut impl FnMut(&'a PipeNode)) {
    match n {
        Node::List(l) => visit_list(l, f),
        Node::Action(a) => visit_pipe(&a.pipe, f),
        Node::If(b) | Node::Range(b) | Node::With(b) => {
            visit_pipe(&b.pipe, f);
            visit_list(&b.body, f);
            if let Some(e) = &b.else_body {
                visit_list(e, f);
            }
        }
        Node::Template(t) => {
            if let Some(p) = &t.pipe {
                visit_pipe(p, f);
            }
        }
        Node::Define(d) => visit_list(&d.body, f),
        Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
    }
}

fn visit_pipe<'a>(p: &'a PipeNode, f: &mut impl FnMut(&'a PipeNode)) {
    f(p);
    for cmd in &p.commands {
        for arg in &cmd.args {
            visit_expr(arg, f);
        }
    }
}

fn visit_expr<'a>(e: &'a Expr, f: &mut impl FnMut(&'a PipeNode)) {
    match e {
        Expr::Pipe(_, p) => visit_pipe(p, f),
        Expr::Chain(_, inner, _) => visit_expr(inner, f),
        _ => {}
    }
}

fn rewrite_list(list: &mut ListNode) {
    for n in &mut list.nodes {
        rewrite_node(n);
    }
}

fn rewrite_node(n: &mut Node) {
    match n {
        Node::List(l) => rewrite_list(l),
        Node::Action(a) => {
            rewrite_pipe(&mut a.pipe);
            if a.pipe.decl.is_empty() {
                let pos = a.pipe.pos;
                a.pipe.commands.push(CommandNode {
                    pos,
                    args: vec![Expr::Identifier(pos, SmolStr::new(PRINT_FN))],
                });
            }
        }
        Node::If(b) | Node::Range(b) | Node::With(b) => {
            rewrite_pipe(&mut b.pipe);
            rewrite_list(&mut b.body);
            if let Some(e) = &mut b.else_body {
                rewrite_list(e);
            }
        }
        Node::Template(t) => {
            if let Some(p) = &mut t.pipe {
                rewrite_pipe(p);
            }
        }
        Node::Define(d) => rewrite_list(&mut d.body),
        Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
    }
}

fn rewrite_expr(e: &mut Expr) {
    match e {
        Expr::Pipe(_, p) => rewrite_pipe(p),
        Expr::Chain(_, inner, _) => rewrite_expr(inner),
        _ => {}
    }
}

/// A field in command position that gets arguments (explicit or piped) is a
/// method call: `.A.Label "k"` becomes `__lockbox_method .A "Label" "k"`.
fn rewrite_pipe(p: &mut PipeNode) {
    for (ci, cmd) in p.commands.iter_mut().enumerate() {
        for arg in cmd.args.iter_mut() {
            rewrite_expr(arg);
        }
        let has_args = cmd.args.len() > 1 || ci > 0;
        if !has_args {
            continue;
        }
        let Some(first) = cmd.args.first() else {
            continue;
        };
        let split = match first {
            Expr::Field(pos, fields) if !fields.is_empty() => {
                let (last, init) = split_last(fields);
                let recv = if init.is_empty() {
                    Expr::Dot(*pos)
                } else {
                    Expr::Field(*pos, init)
                };
                Some((*pos, recv, last))
            }
            Expr::Variable(pos, name, fields) if !fields.is_empty() => {
                let (last, init) = split_last(fields);
                Some((*pos, Expr::Variable(*pos, name.clone(), init), last))
            }
            Expr::Chain(pos, inner, fields) if !fields.is_empty() => {
                let (last, init) = split_last(fields);
                let recv = if init.is_empty() {
                    (**inner).clone()
                } else {
                    Expr::Chain(*pos, inner.clone(), init)
                };
                Some((*pos, recv, last))
            }
            _ => None,
        };
        if let Some((pos, recv, last)) = split {
            let mut args = vec![
                Expr::Identifier(pos, SmolStr::new(METHOD_FN)),
                recv,
                Expr::String(pos, Arc::from(last.as_str())),
            ];
            args.extend(cmd.args.drain(1..));
            cmd.args = args;
        }
    }
}

fn split_last(fields: &[SmolStr]) -> (SmolStr, Vec<SmolStr>) {
    let n = fields.len();
    (fields[n - 1].clone(), fields[..n - 1].to_vec())
}

// ---------------------------------------------------------------------------
// Go-style rendering of nodes for error messages

fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn fields_str(fields: &[SmolStr]) -> String {
    fields.iter().map(|f| format!(".{f}")).collect()
}

fn expr_str(e: &Expr) -> String {
    match e {
        Expr::Dot(_) => ".".into(),
        Expr::Field(_, f) => fields_str(f),
        Expr::Variable(_, name, f) => format!("{name}{}", fields_str(f)),
        Expr::Identifier(_, name) => name.to_string(),
        Expr::String(_, s) => go_quote(s),
        Expr::Number(_, n) => match n {
            Number::Int(i) => i.to_string(),
            Number::Uint(u) => u.to_string(),
            Number::Float(f) => f.to_string(),
        },
        Expr::Bool(_, b) => b.to_string(),
        Expr::Nil(_) => "nil".into(),
        Expr::Pipe(_, p) => format!("({})", pipe_str(p)),
        Expr::Chain(_, inner, f) => format!("{}{}", expr_str(inner), fields_str(f)),
    }
}

fn cmd_str(c: &CommandNode) -> String {
    // Undo our method rewrite for display.
    if let (Some(Expr::Identifier(_, n)), Some(recv), Some(Expr::String(_, name))) =
        (c.args.first(), c.args.get(1), c.args.get(2))
        && n.as_str() == METHOD_FN
    {
        let recv = match recv {
            Expr::Dot(_) => String::new(),
            other => expr_str(other),
        };
        let mut parts = vec![format!("{recv}.{name}")];
        parts.extend(c.args[3..].iter().map(expr_str));
        return parts.join(" ");
    }
    c.args.iter().map(expr_str).collect::<Vec<_>>().join(" ")
}

fn pipe_str(p: &PipeNode) -> String {
    let mut s = String::new();
    if !p.decl.is_empty() {
        s.push_str(
            &p.decl
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.push_str(if p.is_assign { " = " } else { " := " });
    }
    s.push_str(
        &p.commands
            .iter()
            .map(cmd_str)
            .collect::<Vec<_>>()
            .join(" | "),
    );
    s
}

/// Go's `ErrorContext` location: 0-based byte column in the line.
fn location(src: &str, offset: usize) -> (usize, usize) {
    let before = src.get(..offset).unwrap_or(src);
    let line = 1 + before.matches('\n').count();
    let col = match before.rfind('\n') {
        Some(nl) => offset - nl - 1,
        None => offset,
    };
    (line, col)
}

/// The node text in error messages (docker 28's Go prints it whole:
/// `at <.Spec.TaskTemplate.ContainerSpec.Nope>`).
fn short_context(s: &str) -> String {
    s.to_string()
}

// ---------------------------------------------------------------------------
// Compiled templates

/// How a missing field is reported.
#[derive(Clone, Debug)]
pub(crate) enum MissingStyle {
    /// Plain data (Go map, `missingkey=default`): prints `<no value>`.
    NoValue,
    /// Go map with `missingkey=error`: `map has no entry for key "Foo"`.
    MapError,
    /// A Go struct (formatter context): `can't evaluate field Foo in type T`.
    Struct(String),
}

pub(crate) struct Compiled {
    tmpl: Template,
    tree: ListNode,
    src: String,
    style: MissingStyle,
    methods: Vec<(String, usize)>,
}

/// Failure of a template: the Go-like message, and the output written
/// before the failure (Go writes as it goes).
pub(crate) struct ExecFailure {
    pub(crate) message: String,
    pub(crate) partial: String,
    /// The key, when a map lookup failed (`missingkey=error`).
    pub(crate) missing_key: Option<String>,
}

fn parse_error_message(e: &TemplateError) -> String {
    match e {
        TemplateError::Parse { line, message, .. } | TemplateError::Lex { line, message, .. } => {
            format!("template: :{line}: {message}")
        }
        other => format!("template: {other}"),
    }
}

fn check_functions(tree: &ListNode, funcs: &FuncMap) -> Result<(), String> {
    let mut missing: Option<(usize, String)> = None;
    let mut check = |p: &PipeNode| {
        for cmd in &p.commands {
            for arg in &cmd.args {
                let ident = match arg {
                    Expr::Identifier(pos, name) => Some((pos, name)),
                    Expr::Chain(_, inner, _) => match inner.as_ref() {
                        Expr::Identifier(pos, name) => Some((pos, name)),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some((pos, name)) = ident
                    && !funcs.contains_key(name.as_str())
                    && !GO_BUILTINS.contains(&name.as_str())
                    && missing.is_none()
                {
                    missing = Some((pos.line, name.to_string()));
                }
            }
        }
    };
    visit_list(tree, &mut check);
    match missing {
        Some((line, name)) => Err(format!("template: :{line}: function {name:?} not defined")),
        None => Ok(()),
    }
}

/// Parse `src` like `template.New("").Funcs(funcs).Parse(src)`.
pub(crate) fn compile(src: &str, funcs: FuncMap, style: MissingStyle) -> Result<Compiled, String> {
    let parser = Parser::new(src, "{{", "}}").map_err(|e| parse_error_message(&e))?;
    let (mut tree, mut defines) = parser.parse().map_err(|e| parse_error_message(&e))?;
    check_functions(&tree, &funcs)?;
    for d in &defines {
        check_functions(&d.body, &funcs)?;
    }
    rewrite_list(&mut tree);
    let mut tmpl = Template::new("").funcs(funcs).missing_key(match style {
        MissingStyle::NoValue => MissingKey::Invalid,
        MissingStyle::MapError | MissingStyle::Struct(_) => MissingKey::Error,
    });
    for d in &mut defines {
        rewrite_list(&mut d.body);
        tmpl = tmpl.add_parse_tree(d.name.as_str(), d.body.clone());
    }
    tmpl = tmpl.add_parse_tree(MAIN, tree.clone());
    // The definitions are part of the searched tree for error positions.
    let mut all = tree;
    for d in defines {
        all.nodes.push(Node::List(d.body));
    }
    Ok(Compiled {
        tmpl,
        tree: all,
        src: src.to_string(),
        style,
        methods: Vec::new(),
    })
}

impl Compiled {
    /// Declare the methods (name, arity) of the contexts this template runs
    /// on, for Go's "wrong number of args" error when one is used as a field.
    pub(crate) fn with_methods(mut self, methods: &[(&str, usize)]) -> Self {
        self.methods = methods
            .iter()
            .map(|(m, a)| ((*m).to_string(), *a))
            .collect();
        self
    }

    pub(crate) fn execute(&self, data: &Value) -> Result<String, ExecFailure> {
        let mut out = String::new();
        match self.tmpl.execute_template_fmt(&mut out, MAIN, data) {
            Ok(()) => Ok(out),
            Err(e) => {
                let missing_key = match &e {
                    TemplateError::MissingKey { key } => Some(key.clone()),
                    _ => None,
                };
                Err(ExecFailure {
                    message: self.exec_message(e, data),
                    partial: out,
                    missing_key,
                })
            }
        }
    }

    fn at(&self, offset: usize, node: &str, msg: &str) -> String {
        let (line, col) = location(&self.src, offset);
        format!(
            "template: :{line}:{col}: executing \"\" at <{}>: {msg}",
            short_context(node)
        )
    }

    /// Where Go reports an error about a field chain `.key...`: the whole
    /// chain, located like Go's parser does it.
    fn locate_field(&self, key: &str) -> Option<(usize, String)> {
        let mut pipes: Vec<&PipeNode> = Vec::new();
        visit_list(&self.tree, &mut |p| pipes.push(p));
        for cmd in pipes.iter().flat_map(|p| p.commands.iter()) {
            if let Some((name, field)) = original_method(cmd)
                && name == key
            {
                return Some(node_loc(&field));
            }
            for arg in &cmd.args {
                let fields = match arg {
                    Expr::Field(_, f) | Expr::Variable(_, _, f) | Expr::Chain(_, _, f) => f,
                    _ => continue,
                };
                if fields.iter().any(|f| f.as_str() == key) {
                    return Some(node_loc(arg));
                }
            }
        }
        None
    }

    /// First command calling function (or method) `name`.
    fn find_call(&self, name: &str, method: bool) -> Option<&CommandNode> {
        let mut pipes: Vec<&PipeNode> = Vec::new();
        visit_list(&self.tree, &mut |p| pipes.push(p));
        pipes
            .into_iter()
            .flat_map(|p| p.commands.iter())
            .find(|cmd| match original_method(cmd) {
                Some((m, _)) => method && m == name,
                None => {
                    !method
                        && matches!(cmd.args.first(), Some(Expr::Identifier(_, n)) if n.as_str() == name)
                }
            })
    }

    fn unlocated(msg: &str) -> String {
        format!("template: : executing \"\": {msg}")
    }

    /// Whether the field chain that looked up `key` reads it from a
    /// `Labels`/`Options` map (a Go `map[string]string`, where a missing key
    /// is `<no value>`, not an error).
    pub(crate) fn key_read_from_string_map(&self, key: &str) -> bool {
        let mut pipes: Vec<&PipeNode> = Vec::new();
        visit_list(&self.tree, &mut |p| pipes.push(p));
        pipes
            .iter()
            .flat_map(|p| p.commands.iter())
            .flat_map(|c| c.args.iter())
            .any(|arg| {
                let fields = match arg {
                    Expr::Field(_, f) | Expr::Variable(_, _, f) | Expr::Chain(_, _, f) => f,
                    _ => return false,
                };
                fields
                    .windows(2)
                    .any(|w| matches!(w[0].as_str(), "Labels" | "Options") && w[1].as_str() == key)
            })
    }

    /// Go prints the value a `range` cannot iterate over; gotmpl only its
    /// type. Find the first top-level `range` over a field of dot that is
    /// not iterable.
    fn range_failure(&self, data: &Value) -> Option<String> {
        fn find<'a>(list: &'a ListNode, out: &mut Vec<&'a PipeNode>) {
            for n in &list.nodes {
                match n {
                    Node::List(l) => find(l, out),
                    Node::If(b) => {
                        find(&b.body, out);
                        if let Some(e) = &b.else_body {
                            find(e, out);
                        }
                    }
                    Node::Range(b) => out.push(&b.pipe),
                    _ => {}
                }
            }
        }
        let mut ranges = Vec::new();
        find(&self.tree, &mut ranges);
        for pipe in ranges {
            let Some(Expr::Field(_, fields)) = pipe.commands.last().and_then(|c| c.args.first())
            else {
                continue;
            };
            let mut v = data.clone();
            for f in fields {
                match v.field(f) {
                    Some(x) => v = x.clone(),
                    None => break,
                }
            }
            if matches!(v, Value::String(_) | Value::Bool(_) | Value::Float(_)) {
                let arg = pipe.commands.last().and_then(|c| c.args.first())?;
                let (off, text) = node_loc(arg);
                return Some(self.at(off, &text, &format!("range can't iterate over {v}")));
            }
        }
        None
    }

    fn exec_message(&self, e: TemplateError, data: &Value) -> String {
        match e {
            TemplateError::MissingKey { key } => {
                let msg = match &self.style {
                    MissingStyle::Struct(t) => match self.methods.iter().find(|(m, _)| *m == key) {
                        Some((_, arity)) => {
                            format!("wrong number of args for {key}: want {arity} got 0")
                        }
                        None => format!("can't evaluate field {key} in type {t}"),
                    },
                    _ => format!("map has no entry for key {key:?}"),
                };
                match self.locate_field(&key) {
                    Some((off, node)) => self.at(off, &node, &msg),
                    None => Self::unlocated(&msg),
                }
            }
            TemplateError::Exec(s) if s.starts_with(ERR_MARK) => self.func_message(&s),
            TemplateError::Exec(s) => {
                // gotmpl: "can't evaluate field X in type T"
                let located = s
                    .strip_prefix("can't evaluate field ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|key| self.locate_field(key));
                match located {
                    Some((off, node)) => self.at(off, &node, &s),
                    None => Self::unlocated(&s),
                }
            }
            TemplateError::ArgCount {
                name,
                expected,
                got,
            } => Self::unlocated(&format!(
                "wrong number of args for {name}: want {expected} got {got}"
            )),
            TemplateError::NotIterable(s) => self
                .range_failure(data)
                .unwrap_or_else(|| Self::unlocated(&format!("range can't iterate over {s}"))),
            other => Self::unlocated(&other.to_string()),
        }
    }

    /// Message for an error raised by one of our functions (see `func_err`).
    fn func_message(&self, s: &str) -> String {
        let mut parts = s[ERR_MARK.len_utf8()..].splitn(4, '\u{1}');
        let kind = parts.next().unwrap_or("");
        let name = parts.next().unwrap_or("");
        let idx: usize = parts.next().and_then(|i| i.parse().ok()).unwrap_or(0);
        let msg = parts.next().unwrap_or("");
        let (kind, want) = kind.split_once(':').unwrap_or((kind, ""));
        let is_method = kind.starts_with('m');
        let Some(cmd) = self.find_call(name, is_method) else {
            return Self::unlocated(msg);
        };
        match kind {
            "arg" | "marg" => {
                let base = if is_method { 3 } else { 1 };
                match cmd.args.get(base + idx) {
                    Some(arg) => {
                        let (off, text) = node_loc(arg);
                        let msg = literal_mismatch(arg, want, &text)
                            .unwrap_or_else(|| self.json_number(arg, msg));
                        self.at(off, &text, &msg)
                    }
                    // The piped value: Go reports it at the command.
                    None => self.at(cmd.pos.offset, &cmd_str(cmd), msg),
                }
            }
            "count" => {
                let off = cmd.args.first().map_or(cmd.pos.offset, |a| a.pos().offset);
                self.at(off, name, msg)
            }
            "mcount" | "method" => match original_method(cmd) {
                Some((_, field)) => {
                    let (off, text) = node_loc(&field);
                    self.at(off, &text, msg)
                }
                None => Self::unlocated(msg),
            },
            _ => {
                let off = cmd.args.first().map_or(cmd.pos.offset, |a| a.pos().offset);
                self.at(off, &cmd_str(cmd), msg)
            }
        }
    }

    /// In docker's raw fallback numbers are `json.Number`s.
    fn json_number(&self, arg: &Expr, msg: &str) -> String {
        let from_data = matches!(arg, Expr::Field(..) | Expr::Variable(..) | Expr::Chain(..));
        if matches!(self.style, MissingStyle::MapError) && from_data {
            for t in ["got int", "got uint64", "got float64"] {
                if let Some(head) = msg.strip_suffix(t) {
                    return format!("{head}got json.Number");
                }
            }
        }
        msg.to_string()
    }
}

/// Go checks constant arguments itself: `expected integer; found "x"`.
fn literal_mismatch(arg: &Expr, want: &str, text: &str) -> Option<String> {
    if !matches!(arg, Expr::String(..) | Expr::Number(..) | Expr::Bool(..)) {
        return None;
    }
    match want {
        "string" => Some(format!("expected string; found {text}")),
        "int" => Some(format!("expected integer; found {text}")),
        "" => None,
        other => Some(format!("can't handle {text} for arg of type {other}")),
    }
}

/// Undo the method-call rewrite: (method name, original field expression).
fn original_method(cmd: &CommandNode) -> Option<(String, Expr)> {
    let (Some(Expr::Identifier(_, f)), Some(recv), Some(Expr::String(pos, name))) =
        (cmd.args.first(), cmd.args.get(1), cmd.args.get(2))
    else {
        return None;
    };
    if f.as_str() != METHOD_FN {
        return None;
    }
    let seg = SmolStr::new(name.as_ref());
    let field = match recv {
        Expr::Dot(_) => Expr::Field(*pos, vec![seg]),
        Expr::Field(p, fs) => Expr::Field(*p, fs.iter().cloned().chain([seg]).collect()),
        Expr::Variable(p, n, fs) => {
            Expr::Variable(*p, n.clone(), fs.iter().cloned().chain([seg]).collect())
        }
        Expr::Chain(p, inner, fs) => {
            Expr::Chain(*p, inner.clone(), fs.iter().cloned().chain([seg]).collect())
        }
        other => Expr::Chain(*pos, Box::new(other.clone()), vec![seg]),
    };
    Some((name.to_string(), field))
}

/// Go's position and text of a node in error messages. A field chain is
/// positioned at its second token (Go's parser builds the chain there).
fn node_loc(e: &Expr) -> (usize, String) {
    let text = expr_str(e);
    let start = e.pos().offset;
    let off = match e {
        Expr::Field(_, f) if f.len() >= 2 => start + 1 + f[0].len(),
        Expr::Variable(_, n, f) if !f.is_empty() => start + n.len(),
        _ => start,
    };
    (off, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, data: &Json, view: View, style: MissingStyle) -> Result<String, String> {
        let mut reg = Registry::default();
        let v = convert(data, view, &mut reg);
        let reg = Arc::new(reg);
        let c = compile(src, basic_funcs(&reg), style)?;
        c.execute(&v).map_err(|e| e.message)
    }

    fn raw(src: &str, data: &Json) -> Result<String, String> {
        run(src, data, View::Raw, MissingStyle::NoValue)
    }

    #[test]
    fn funcs() {
        let d = json!({"Name": "fmt-B", "L": {"b": "2", "a": "1"}, "N": [1, "x"]});
        assert_eq!(
            raw(
                r#"{{json (split .Name "-")}} {{split .Name "-"}} {{join (split .Name "-") "+"}}"#,
                &d
            ),
            Ok(r#"["fmt","B"] [fmt B] fmt+B"#.into())
        );
        assert_eq!(
            raw(
                r#"{{lower .Name}} {{upper .Name}} {{title "hello wORLD foo-bar"}}"#,
                &d
            ),
            Ok("fmt-b FMT-B Hello WORLD Foo-Bar".into())
        );
        assert_eq!(
            raw(
                r#"[{{pad "" 1 1}}] [{{pad "x" 0 3}}] {{truncate "abc" 5}} {{truncate "abcdef" 3}}"#,
                &d
            ),
            Ok("[] [x   ] abc abc".into())
        );
        assert_eq!(
            raw(r#"{{join .L ","}}"#, &d),
            Err("template: :1:7: executing \"\" at <.L>: wrong type for value; expected []string; got map[string]interface {}".into())
        );
        assert_eq!(
            raw(r#"{{println "a" 1}}x{{println}}y"#, &d),
            Ok("a 1\nx\ny".into())
        );
        assert_eq!(raw(r#"{{json .L}}"#, &d), Ok(r#"{"b":"2","a":"1"}"#.into()));
        assert_eq!(raw(r#"{{.Missing}}"#, &d), Ok("<no value>".into()));
        assert_eq!(raw("{{truncate \"h\u{e9}llo\" 2}}", &d), Ok("h".into()));
    }

    #[test]
    fn go_like_errors() {
        let d = json!({"Spec": {"Labels": {"a": "b"}}});
        assert_eq!(
            run("{{.Foo}}", &d, View::Raw, MissingStyle::MapError),
            Err(
                "template: :1:2: executing \"\" at <.Foo>: map has no entry for key \"Foo\"".into()
            )
        );
        assert_eq!(
            run("{{.Spec.Foo}}", &d, View::Raw, MissingStyle::MapError),
            Err(
                "template: :1:7: executing \"\" at <.Spec.Foo>: map has no entry for key \"Foo\""
                    .into()
            )
        );
        assert_eq!(
            run("x\n {{upper .Spec.Labels}}", &d, View::Raw, MissingStyle::MapError),
            Err("template: :2:14: executing \"\" at <.Spec.Labels>: wrong type for value; expected string; got map[string]interface {}".into())
        );
        assert_eq!(
            raw("{{.Name", &d),
            Err("template: :1: unclosed action".into())
        );
        assert_eq!(
            raw("{{nope 1}}", &d),
            Err("template: :1: function \"nope\" not defined".into())
        );
        assert_eq!(
            run("{{.ID}}{{.Foo}}", &json!({"ID": "x"}), View::Raw, MissingStyle::Struct("*secret.secretContext".into())),
            Err("template: :1:9: executing \"\" at <.Foo>: can't evaluate field Foo in type *secret.secretContext".into())
        );
    }

    #[test]
    fn typed_view() {
        let d =
            json!({"CreatedAt": "2026-11-23T10:59:55.093350179Z", "Spec": {"Labels": {"a": "b"}}});
        let t = |s| run(s, &d, View::Typed, MissingStyle::MapError);
        assert_eq!(
            t("{{.CreatedAt}}"),
            Ok("2026-11-23 10:59:55.093350179 +0000 UTC".into())
        );
        assert_eq!(
            t("{{json .CreatedAt}}"),
            Ok("\"2026-11-23T10:59:55.093350179Z\"".into())
        );
        assert_eq!(t(r#"[{{index .Spec.Labels "zz"}}]"#), Ok("[]".into()));
        assert_eq!(t(r#"{{index .Spec.Labels "a"}}"#), Ok("b".into()));
    }

    #[test]
    fn methods() {
        let mut reg = Registry::default();
        let row = string_map_value(&[("Name".into(), "x".into())]);
        let mut ms = BTreeMap::new();
        let call: MethodFn =
            Arc::new(|a: &[Value]| Ok(Value::String(format!("L[{}]", a[0]).into())));
        ms.insert("Label".to_string(), Method { arity: 1, call });
        reg.set_methods(&row, ms);
        let reg = Arc::new(reg);
        let style = MissingStyle::Struct("*secret.secretContext".into());
        let go = |s: &str| {
            compile(s, basic_funcs(&reg), style.clone())
                .and_then(|c| c.execute(&row).map_err(|e| e.message))
        };
        assert_eq!(
            go(
                r#"{{.Name}} {{.Label "k"}} {{"p" | .Label}} {{with $x := .}}{{$x.Label "v"}}{{end}}"#
            ),
            Ok("x L[k] L[p] L[v]".into())
        );
        assert_eq!(go(r#"{{(.Label "k") | printf "%s!"}}"#), Ok("L[k]!".into()));
        assert_eq!(
            go(r#"{{.Label "a" "b"}}"#),
            Err("template: :1:2: executing \"\" at <.Label>: wrong number of args for Label: want 1 got 2".into())
        );
    }
}
