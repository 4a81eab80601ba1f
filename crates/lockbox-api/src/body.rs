//! Reading request bodies and query strings as dockerd does, and writing JSON responses.
//!
//! Go's `encoding/json` matches field names case-insensitively and ignores unknown fields, so
//! bodies are parsed into a `serde_json::Value` and read with [`field`], which prefers an
//! exact key and falls back to a case-insensitive match.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

/// Largest request body accepted. Docker caps a secret at 500 KiB, about 683 KiB in base64.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// A JSON response: exact `application/json`, compact, newline-terminated.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    json_sized(status, value, 128)
}

/// [`json`] with a guess of the body's size, so large lists are not copied over and over as
/// the buffer grows.
pub(crate) fn json_sized<T: Serialize>(status: StatusCode, value: &T, size: usize) -> Response {
    let mut buf = Vec::with_capacity(size);
    match serde_json::to_writer(&mut buf, value).map(|()| buf) {
        Ok(body) => {
            let mut body = escape_line_separators(body);
            body.push(b'\n');
            let mut resp = (status, body).into_response();
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Go's encoder writes U+2028 and U+2029 as `\u2028` and `\u2029` (they end lines in
/// JavaScript); serde_json writes them raw. They can only occur inside strings, so a byte
/// replacement is exact.
fn escape_line_separators(body: Vec<u8>) -> Vec<u8> {
    const LS: &[u8] = "\u{2028}".as_bytes();
    const PS: &[u8] = "\u{2029}".as_bytes();
    // Both start with 0xE2, which is rare in JSON: look for that byte first (fast), then
    // for the sequences.
    let has_separator = body
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == 0xE2)
        .any(|(i, _)| matches!(body.get(i..i + 3), Some(w) if w == LS || w == PS));
    if !has_separator {
        return body;
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    let mut i = 0;
    while i < body.len() {
        match body.get(i..i + 3) {
            Some(w) if w == LS => {
                out.extend_from_slice(b"\\u2028");
                i += 3;
            }
            Some(w) if w == PS => {
                out.extend_from_slice(b"\\u2029");
                i += 3;
            }
            _ => {
                out.push(body[i]);
                i += 1;
            }
        }
    }
    out
}

/// A JSON array in chunks of about 64 KiB, for [`json_chunks_response`]: a list of tens of
/// thousands of objects then needs no body-sized buffer (one allocation that big, grown by
/// doubling, which malloc keeps afterwards). The chunks are made at once, for items borrowed
/// under a lock (the state's) that must not wait for a slow client: only the JSON is held
/// meanwhile, not a copy of the items. The bytes are those [`json`] writes for the same items.
pub(crate) fn json_array_chunks<T, I, F>(items: I, write: F) -> std::io::Result<Vec<bytes::Bytes>>
where
    I: IntoIterator<Item = T>,
    F: Fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
{
    array_chunks(items, write).collect()
}

/// The response for [`json_array_chunks`].
pub(crate) fn json_chunks_response<C>(status: StatusCode, chunks: C) -> Response
where
    C: IntoIterator<Item = std::io::Result<bytes::Bytes>>,
    C::IntoIter: Send + 'static,
{
    // A list that fits in one chunk goes out with a Content-Length, as Go's server sends a
    // small body; only longer lists are chunked.
    let mut chunks = chunks.into_iter().peekable();
    let first_chunk = chunks.next();
    let body = match (first_chunk, chunks.peek().is_none()) {
        (Some(Ok(only)), true) => Body::from(only),
        (Some(first), _) => {
            Body::from_stream(futures::stream::iter(std::iter::once(first).chain(chunks)))
        }
        (None, _) => Body::from("[]\n"),
    };
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// The chunks of a JSON array of `items`, about 64 KiB each, each item whole in one chunk.
fn array_chunks<T, I, F>(items: I, write: F) -> impl Iterator<Item = std::io::Result<bytes::Bytes>>
where
    I: IntoIterator<Item = T>,
    F: Fn(&T, &mut Vec<u8>) -> serde_json::Result<()>,
{
    const CHUNK: usize = 64 * 1024;
    let mut items = items.into_iter().peekable();
    let mut first = true;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::with_capacity(CHUNK + 1024);
        if first {
            buf.push(b'[');
        }
        while buf.len() < CHUNK {
            let Some(item) = items.next() else { break };
            if !first {
                buf.push(b',');
            }
            first = false;
            if let Err(e) = write(&item, &mut buf) {
                done = true;
                return Some(Err(std::io::Error::other(e)));
            }
        }
        if items.peek().is_none() {
            if first {
                // An empty list: `[` was written above.
                first = false;
            }
            buf.extend_from_slice(b"]\n");
            done = true;
        }
        // Objects are whole within a chunk, so the escape sees every separator whole.
        Some(Ok(bytes::Bytes::from(escape_line_separators(buf))))
    })
}

/// An empty response with `status`.
pub(crate) fn empty(status: StatusCode) -> Response {
    (status, Body::empty()).into_response()
}

/// Bodies up to this size are read to the end even when refused, so the client gets the
/// answer instead of a broken pipe.
const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

async fn collect_limited(body: Body) -> ApiResult<zeroize::Zeroizing<Vec<u8>>> {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            total = total.saturating_add(data.len());
            if total <= MAX_BODY {
                buf.extend_from_slice(&data);
            } else if total > DRAIN_LIMIT {
                break;
            }
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::bad_request(format!(
            "request body too large: the limit is {MAX_BODY} bytes"
        )));
    }
    Ok(buf)
}

/// Checks `Content-Type` as dockerd's `CheckForJSON`: a request with a body must say
/// `application/json` (parameters allowed).
fn check_content_type(headers: &HeaderMap, has_body: bool) -> ApiResult<()> {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.is_empty() && !has_body {
        return Ok(());
    }
    let media = ct.split(';').next().unwrap_or("").trim();
    if media.is_empty() {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: no media type"
        )));
    }
    if !media.contains('/') {
        return Err(ApiError::bad_request(format!(
            "malformed Content-Type header ({ct}): mime: expected slash after first token"
        )));
    }
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::bad_request(format!(
            "unsupported Content-Type header ({ct}): must be 'application/json'"
        )));
    }
    Ok(())
}

/// Reads a JSON body as dockerd's `ReadJSON`: checks the content type, takes an empty body as
/// `null` (the zero value), reports syntax errors in Go's words, and refuses trailing content
/// and bodies over [`MAX_BODY`].
pub(crate) async fn read_json(headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    let bytes = collect_limited(body).await?;
    check_content_type(headers, !bytes.is_empty())?;
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    // The body may carry a secret value: `bytes` is wiped when dropped.
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request(
            "invalid JSON: got EOF while reading request body",
        ));
    }
    let end = crate::gojson::check(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
    if bytes[end..].iter().any(|b| !b.is_ascii_whitespace()) {
        return Err(ApiError::bad_request("unexpected content after JSON"));
    }
    serde_json::from_slice(&bytes[..end])
        .map_err(|e| ApiError::bad_request(format!("invalid JSON: {}", go_json_error(&e))))
}

fn go_json_error(e: &serde_json::Error) -> String {
    if e.is_eof() {
        return "unexpected EOF".into();
    }
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// The object of a body, or an empty one for `null`.
pub(crate) fn object<'a>(v: &'a Value, what: &str) -> ApiResult<Option<&'a Map<String, Value>>> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => Ok(Some(m)),
        other => Err(ApiError::bad_request(format!(
            "invalid JSON: json: cannot unmarshal {} into Go value of type {what}",
            go_type(other)
        ))),
    }
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A field by name: exact key first, then a case-insensitive match, as Go's decoder does.
pub(crate) fn field<'a>(obj: Option<&'a Map<String, Value>>, name: &str) -> Option<&'a Value> {
    let obj = obj?;
    obj.get(name)
        .or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn type_error(v: &Value, field_path: &str, go_ty: &str) -> ApiError {
    ApiError::bad_request(format!(
        "invalid JSON: json: cannot unmarshal {} into Go struct field {field_path} of type {go_ty}",
        go_type(v)
    ))
}

/// A string field ("" when absent).
pub(crate) fn string(
    obj: Option<&Map<String, Value>>,
    name: &str,
    path: &str,
) -> ApiResult<String> {
    match field(obj, name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(type_error(v, path, "string")),
    }
}

/// A bool field (false when absent).
pub(crate) fn boolean(obj: Option<&Map<String, Value>>, name: &str, path: &str) -> ApiResult<bool> {
    match field(obj, name) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(type_error(v, path, "bool")),
    }
}

/// An integer field.
pub(crate) fn int(
    obj: Option<&Map<String, Value>>,
    name: &str,
    path: &str,
) -> ApiResult<Option<i64>> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| type_error(&Value::Number(n.clone()), path, "int64")),
        Some(v) => Err(type_error(v, path, "int64")),
    }
}

/// A nested object field.
pub(crate) fn sub<'a>(
    obj: Option<&'a Map<String, Value>>,
    name: &str,
    path: &str,
) -> ApiResult<Option<&'a Map<String, Value>>> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(v) => Err(type_error(v, path, "object")),
    }
}

/// A `map[string]string` field.
pub(crate) fn string_map(
    obj: Option<&Map<String, Value>>,
    name: &str,
    path: &str,
) -> ApiResult<BTreeMap<String, String>> {
    match field(obj, name) {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(type_error(other, path, "string")),
            })
            .collect(),
        Some(v) => Err(type_error(v, path, "map[string]string")),
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool_strict(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// dockerd's `httputils.BoolValue`: anything but "", "0", "no", "false", "none" is true.
pub(crate) fn bool_value(s: Option<&String>) -> bool {
    match s {
        None => false,
        Some(s) => !matches!(
            s.trim().to_ascii_lowercase().as_str(),
            "" | "0" | "no" | "false" | "none"
        ),
    }
}

#[cfg(test)]
mod stream_tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn bytes_of(resp: Response) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn streamed_arrays_match_the_buffered_ones() {
        for n in [0usize, 1, 2, 5000] {
            let items: Vec<String> = (0..n).map(|i| format!("item {i} \u{2028}")).collect();
            let buffered = bytes_of(json(StatusCode::OK, &items)).await;
            let chunks = json_array_chunks(&items, |s, out| serde_json::to_writer(out, s)).unwrap();
            // Chunks of about 64 KiB (more where separators were escaped).
            assert!(chunks.iter().all(|c| c.len() < 2 * 64 * 1024));
            assert_eq!(chunks.len() > 1, n == 5000);
            let streamed = bytes_of(json_chunks_response(
                StatusCode::OK,
                chunks.into_iter().map(Ok),
            ))
            .await;
            assert_eq!(
                String::from_utf8(streamed).unwrap(),
                String::from_utf8(buffered).unwrap()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_is_case_insensitive_and_prefers_exact() {
        let v: Value = serde_json::json!({"name": "a", "Labels": {"x": "y"}});
        let o = object(&v, "x").unwrap();
        assert_eq!(field(o, "Name"), Some(&Value::String("a".into())));
        let v: Value = serde_json::json!({"name": "a", "Name": "b"});
        assert_eq!(
            field(object(&v, "x").unwrap(), "Name"),
            Some(&Value::String("b".into()))
        );
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool_strict("True"), Some(true));
        assert_eq!(parse_bool_strict("yes"), None);
        assert!(bool_value(Some(&"1".to_string())));
        assert!(bool_value(Some(&"True".to_string())));
        assert!(!bool_value(Some(&"False".to_string())));
        assert!(!bool_value(Some(&"none".to_string())));
        assert!(!bool_value(None));
    }
}
