//! The HTTP(S) client of the `http` and `splunk_hec` sinks (hyper, rustls with the system's
//! root certificates, plus an optional CA file).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

use super::SendError;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) to trust, e.g. Splunk's own CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// `false` accepts any certificate: for tests against self-signed endpoints only.
    #[serde(default = "crate::config::yes")]
    pub verify_certificate: bool,
}

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A rustls client config: the system's roots plus `tls.ca_file`, or (tests only) any certificate.
pub fn tls_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    Ok(if tls.verify_certificate {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = &tls.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("tls.ca_file: {}: {e}", path.display()))?;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                let cert = cert.map_err(|e| format!("tls.ca_file: {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| format!("tls.ca_file: {}: {e}", path.display()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))).with_no_client_auth()
    })
}

pub fn build(tls: &TlsConfig) -> Result<HttpClient, String> {
    let config = tls_config(tls)?;
    let https =
        hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().build();
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(30)).build(https))
}

/// Send a request; `Ok((status, body))` for any answer, `Err(Retry)` when there was none.
pub async fn send(
    client: &HttpClient,
    req: Request<Full<Bytes>>,
    timeout: Duration,
) -> Result<(u16, Bytes), SendError> {
    let uri = req.uri().clone();
    let fut = async {
        let resp = client.request(req).await.map_err(|e| SendError::Retry(format!("{uri}: {e}")))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| SendError::Retry(format!("{uri}: reading the answer: {e}")))?;
        Ok((status, body.to_bytes()))
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| SendError::Retry(format!("{uri}: no answer within {timeout:?}")))?
}

/// How an HTTP status is handled: 2xx delivered; 408, 429 and 5xx retried; other 4xx refused.
pub fn classify(status: u16, body: &Bytes) -> Result<(), SendError> {
    let text = || String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(SendError::Retry(format!("HTTP {status}: {}", text()))),
        _ => Err(SendError::Reject(format!("HTTP {status}: {}", text()))),
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4), flate2::Compression::fast());
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
