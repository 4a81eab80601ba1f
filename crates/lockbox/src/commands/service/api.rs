//! Engine API requests at the version the daemon speaks (docker negotiates:
//! the lower of the client's and the server's API version), so that the
//! service and node commands also work against an older dockerd.

use std::collections::BTreeMap;

use http::{Method, StatusCode};
use lockbox_client::{API_VERSION, Client, ClientError, Response};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

/// A client bound to the negotiated API version.
pub(crate) struct Api<'a> {
    client: &'a Client,
    version: String,
}

fn parse_version(v: &str) -> (u64, u64) {
    let mut parts = v.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

impl<'a> Api<'a> {
    /// Negotiates with `GET /version` (unversioned, as docker's `/_ping`).
    pub(crate) async fn new(client: &'a Client) -> Result<Api<'a>, ClientError> {
        let resp = client.raw(Method::GET, "/version", None).await?;
        let server = if resp.status.is_success() {
            resp.json().ok().and_then(|v| {
                v.get("ApiVersion")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
        } else {
            None
        };
        let version = match server {
            Some(s) if parse_version(&s) < parse_version(API_VERSION) => s,
            _ => API_VERSION.to_owned(),
        };
        Ok(Api { client, version })
    }

    /// Whether the negotiated version is at least `v`.
    pub(crate) fn at_least(&self, v: &str) -> bool {
        parse_version(&self.version) >= parse_version(v)
    }

    /// Sends a request to `/v{version}{path}`; non-2xx answers become
    /// [`ClientError::Daemon`] with the daemon's message.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Response, ClientError> {
        let resp = self
            .client
            .raw(method, &format!("/v{}{path}", self.version), body)
            .await?;
        if resp.status.is_success() {
            return Ok(resp);
        }
        let message = serde_json::from_slice::<Value>(&resp.body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&resp.body).trim().to_owned());
        Err(ClientError::Daemon {
            status: resp.status,
            message,
        })
    }

    /// `GET` and decode JSON.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, None).await?.json()
    }

    /// `POST` with `body` encoded as the docker client encodes it (Go's
    /// `json.Encoder`: HTML-escaped, a final newline), byte for byte.
    pub(crate) async fn post_go_json(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<Value, ClientError> {
        let bytes = lockbox_format::go_json(body, true) + "\n";
        let mut stream = self.open("POST", path, Some(bytes.into_bytes())).await?;
        let status = stream.status;
        let data = stream.read_all().await?;
        check(status, &data)?;
        if data.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&data).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET` whose body is read as it arrives (`logs --follow`).
    pub(crate) async fn get_stream(&self, path: &str) -> Result<BodyStream, ClientError> {
        let mut stream = self.open("GET", path, None).await?;
        if !stream.status.is_success() {
            let data = stream.read_all().await?;
            check(stream.status, &data)?;
        }
        Ok(stream)
    }

    async fn open(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<BodyStream, ClientError> {
        let path = format!("/v{}{path}", self.version);
        // Plain or TLS (`--tlsverify`), as the client is set up.
        let io: Box<dyn Io> = Box::new(self.client.connect().await?);
        BodyStream::request(self.client, io, method, &path, body).await
    }
}

fn check(status: StatusCode, data: &[u8]) -> Result<(), ClientError> {
    if status.is_success() {
        return Ok(());
    }
    let message = serde_json::from_slice::<Value>(data)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(data).trim().to_owned());
    Err(ClientError::Daemon { status, message })
}

trait Io: AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

fn http_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}

/// A response whose body is read incrementally (HTTP/1.1 over one
/// connection, `Connection: close`; chunked or sized bodies).
pub(crate) struct BodyStream {
    pub(crate) status: StatusCode,
    reader: BufReader<Box<dyn Io>>,
    chunked: bool,
    /// Bytes left in the current chunk, or of a sized body.
    remaining: Option<u64>,
    done: bool,
}

impl BodyStream {
    async fn request(
        client: &Client,
        io: Box<dyn Io>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<BodyStream, ClientError> {
        let mut reader = BufReader::new(io);
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: lockbox\r\nConnection: close\r\n"
        );
        if let Some(b) = &body {
            head.push_str(&format!(
                "Content-Length: {}\r\nContent-Type: application/json\r\n",
                b.len()
            ));
        } else if method == "POST" {
            head.push_str("Content-Length: 0\r\n");
        }
        head.push_str("\r\n");
        let io = reader.get_mut();
        io.write_all(head.as_bytes())
            .await
            .map_err(|e| client.transport_error(e))?;
        if let Some(b) = &body {
            io.write_all(b)
                .await
                .map_err(|e| client.transport_error(e))?;
        }
        io.flush().await.map_err(|e| client.transport_error(e))?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .await
            .map_err(|e| client.transport_error(e))?;
        let code = line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| http_err(format!("bad status line {line:?}")))?;
        let mut chunked = false;
        let mut length = None;
        loop {
            line.clear();
            let n = reader.read_line(&mut line).await.map_err(http_err)?;
            let l = line.trim_end();
            if n == 0 || l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                    chunked = true;
                } else if k == "content-length" {
                    length = v.parse::<u64>().ok();
                }
            }
        }
        let bodyless =
            method == "HEAD" || code == StatusCode::NO_CONTENT || code == StatusCode::NOT_MODIFIED;
        Ok(BodyStream {
            status: code,
            reader,
            chunked,
            remaining: if chunked { Some(0) } else { length },
            done: bodyless,
        })
    }

    /// The next piece of the body (`None` at its end).
    pub(crate) async fn next(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        if self.done {
            return Ok(None);
        }
        if self.chunked && self.remaining == Some(0) {
            let mut line = String::new();
            loop {
                line.clear();
                let n = self.reader.read_line(&mut line).await.map_err(http_err)?;
                if n == 0 {
                    self.done = true;
                    return Ok(None);
                }
                if !line.trim().is_empty() {
                    break;
                }
            }
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| http_err(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                self.done = true;
                return Ok(None);
            }
            self.remaining = Some(size);
        }
        let want = match self.remaining {
            Some(0) => {
                self.done = true;
                return Ok(None);
            }
            Some(n) => n.min(64 * 1024) as usize,
            None => 64 * 1024,
        };
        let mut buf = vec![0u8; want];
        let n = self.reader.read(&mut buf).await.map_err(http_err)?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        buf.truncate(n);
        if let Some(r) = self.remaining.as_mut() {
            *r -= n as u64;
        }
        Ok(Some(buf))
    }

    /// The whole (rest of the) body.
    pub(crate) async fn read_all(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut out = Vec::new();
        while let Some(b) = self.next().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

/// Whether `e` is the daemon's "not found".
pub(crate) fn is_not_found(e: &ClientError) -> bool {
    matches!(e, ClientError::Daemon { status, .. } if *status == StatusCode::NOT_FOUND)
}

/// Go's `url.QueryEscape`.
pub(crate) fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Go's `url.PathEscape` (for IDs and names in paths).
pub(crate) fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+=:@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// docker's `filters.Args`: name to the set of values.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filters(pub(crate) BTreeMap<String, BTreeMap<String, bool>>);

impl Filters {
    /// Parses `-f name=value` flags as docker's `FilterOpt` does.
    pub(crate) fn parse(flags: &[String]) -> Result<Filters, String> {
        let mut f = Filters::default();
        for v in flags {
            if v.is_empty() {
                continue;
            }
            let Some((name, val)) = v.split_once('=') else {
                return Err("bad format of filter (expected name=value)".into());
            };
            f.add(&name.trim().to_lowercase(), val.trim());
        }
        Ok(f)
    }

    pub(crate) fn add(&mut self, name: &str, value: &str) {
        self.0
            .entry(name.to_owned())
            .or_default()
            .insert(value.to_owned(), true);
    }

    pub(crate) fn values(&self, name: &str) -> Vec<String> {
        self.0
            .get(name)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn remove(&mut self, name: &str, value: &str) {
        if let Some(m) = self.0.get_mut(name) {
            m.remove(value);
            if m.is_empty() {
                self.0.remove(name);
            }
        }
    }

    /// `filters=<json>` (empty when there is no filter).
    pub(crate) fn query(&self) -> String {
        if self.0.is_empty() {
            return String::new();
        }
        let json = serde_json::to_string(&self.0).unwrap_or_default();
        format!("filters={}", query_escape(&json))
    }
}

/// `path?query` with the non-empty query parts in order (docker's
/// `url.Values.Encode` sorts them by key; pass them sorted).
pub(crate) fn with_query(path: &str, parts: &[String]) -> String {
    let parts: Vec<&String> = parts.iter().filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        path.to_owned()
    } else {
        let joined: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        format!("{path}?{}", joined.join("&"))
    }
}
