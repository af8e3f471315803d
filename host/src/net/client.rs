//! The HTTP(S) client of the `http` and `splunk_hec` sinks, alerts and model updates: hyper
//! over rustls (see [`super::tls`]), one connection pool per component.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use super::tls::{client_config, TlsConfig};
use super::Error;

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client trusting what `tls` says.
pub fn build(tls: &TlsConfig) -> Result<HttpClient, String> {
    let config = client_config(tls)?;
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

/// The far end's answer.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The start of the body, for messages.
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }
}

/// The first 512 bytes of `body` as text.
pub fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned()
}

/// The largest answer [`send`] reads: what sinks, alerts and APIs answer is small.
pub const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Send a request and read the whole answer (at most [`MAX_ANSWER_BYTES`]); `Err` when there
/// was none within `timeout`, with the cause (refused connection, certificate, reset...).
/// Errors name the URL.
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>, timeout: Duration) -> Result<Answer, Error> {
    let uri = req.uri().to_string();
    send_limited(client, req, timeout, &uri, MAX_ANSWER_BYTES).await
}

/// [`send`], with errors naming the request as `shown` (a URL with a secret in it, redacted).
pub async fn send_as(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    shown: &str,
) -> Result<Answer, Error> {
    send_limited(client, req, timeout, shown, MAX_ANSWER_BYTES).await
}

/// [`send_as`], reading at most `max_bytes` of the answer: a longer one is an error, refused as
/// it arrives rather than held.
pub async fn send_limited(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
    shown: &str,
    max_bytes: usize,
) -> Result<Answer, Error> {
    let uri = shown;
    let fut = async {
        let resp = client.request(req).await.map_err(|e| Error::new(uri.to_string(), &e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = http_body_util::Limited::new(resp.into_body(), max_bytes).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                Error::message(uri.to_string(), format!("the answer is larger than {max_bytes} bytes"))
            } else {
                Error::message(format!("{uri}: reading the answer"), super::explain(&*e))
            }
        })?;
        Ok(Answer { status, headers, body: body.to_bytes() })
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| Error::message(uri.to_string(), format!("no answer within {timeout:?}")))?
}

/// How a request body is compressed.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// `body` compressed, and the `content-encoding` to send with it.
    pub fn apply(self, body: Vec<u8>) -> (Vec<u8>, Option<&'static str>) {
        match self {
            Compression::None => (body, None),
            Compression::Gzip => (gzip(&body), Some("gzip")),
        }
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}
