//! A `GET` whose body is read as it arrives (the audit trail can be large), to an unversioned
//! lockbox path. `lockbox_client::Client::raw` buffers whole bodies, so this uses
//! [`Client::send_request`] (plain, or TLS when the client is set up for it) and reads the body
//! itself.

use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use lockbox_client::{Client, ClientError};

use crate::commands::access::daemon_error;

/// The body of a successful answer.
pub(super) struct BodyStream {
    body: Incoming,
    /// For turning transport failures (also TLS alerts on the first read) into errors.
    client: Client,
    /// Bytes received but not yet returned as a line.
    pending: Vec<u8>,
}

impl BodyStream {
    /// `GET path`; a non-2xx answer is [`ClientError::Daemon`] with the daemon's message.
    pub(super) async fn get(client: &Client, path: &str) -> Result<BodyStream, ClientError> {
        let req = http::Request::builder()
            .method(Method::GET)
            .uri(path)
            .header(http::header::HOST, "lockbox")
            .body(Empty::<Bytes>::new())
            .map_err(http_err)?;
        let resp = client.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body();
        if !status.is_success() {
            let data = body
                .collect()
                .await
                .map_err(|e| client.transport_error(e))?
                .to_bytes();
            return Err(daemon_error(status, &data));
        }
        Ok(BodyStream {
            body,
            client: client.clone(),
            pending: Vec::new(),
        })
    }

    /// The next piece of the body as received, `None` at its end.
    pub(super) async fn chunk(&mut self) -> Result<Option<Bytes>, ClientError> {
        while let Some(frame) = self.body.frame().await {
            if let Ok(data) = frame
                .map_err(|e| self.client.transport_error(e))?
                .into_data()
                && !data.is_empty()
            {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }

    /// The next line without its `\n` (a last line without one too), `None` at the end.
    pub(super) async fn line(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        loop {
            if let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                return Ok(Some(line));
            }
            match self.chunk().await? {
                Some(data) => self.pending.extend_from_slice(&data),
                None if self.pending.is_empty() => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.pending))),
            }
        }
    }
}

fn http_err(e: impl std::fmt::Display) -> ClientError {
    ClientError::Http(e.to_string())
}
