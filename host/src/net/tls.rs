//! TLS settings: for outbound connections (HTTPS, SMTP STARTTLS, the forward protocol) rustls
//! with the system's root certificates plus an optional CA file and client certificate; for
//! listeners a certificate and optionally the CA whose client certificates they require.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;

/// `tls` of a component that connects out. Certificates are verified unless a config says
/// `verify_certificate = false`, also when the table is absent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Extra CA certificates (PEM) to trust, e.g. Splunk's own CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// `false` accepts any certificate: for tests against self-signed endpoints only.
    #[serde(default = "crate::config::yes")]
    pub verify_certificate: bool,
    /// A client certificate (PEM, with its chain) and its private key (PEM), for a far end that
    /// requires mutual TLS. Both or neither.
    pub crt_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { ca_file: None, verify_certificate: true, crt_file: None, key_file: None }
    }
}

/// A rustls client config: the system's roots plus `tls.ca_file`, or (tests only) any certificate.
pub fn client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let identity = client_identity(tls)?;
    let with_identity =
        |b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>| match &identity {
            Some((certs, key)) => b
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| format!("tls.key_file: does not match tls.crt_file: {e}")),
            None => Ok(b.with_no_client_auth()),
        };
    if !tls.verify_certificate {
        return with_identity(builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAny(provider))));
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = &tls.ca_file {
        add_roots(&mut roots, "tls.ca_file", path)?;
    }
    with_identity(builder.with_root_certificates(roots))
}

/// A byte stream, plain or TLS, for protocols spoken over TCP (SMTP, the forward protocol).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

/// The client side of TLS over a connected `stream` to `address` (`host:port`), checking the
/// certificate names `host` (unless the config said not to verify).
pub async fn connect<S: Stream>(
    connector: &tokio_rustls::TlsConnector,
    address: &str,
    stream: S,
) -> Result<tokio_rustls::client::TlsStream<S>, String> {
    let host = address.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']'])).unwrap_or(address).to_string();
    let name = ServerName::try_from(host).map_err(|e| format!("{address}: not a TLS server name: {e}"))?;
    connector.connect(name, stream).await.map_err(|e| format!("TLS with {address}: {}", super::explain(&e)))
}

/// A connector trusting what `tls` says.
pub fn connector(tls: &TlsConfig) -> Result<tokio_rustls::TlsConnector, String> {
    Ok(tokio_rustls::TlsConnector::from(Arc::new(client_config(tls)?)))
}

/// The PEM certificates of `path` (the config's `key`) added to `roots`.
fn add_roots(roots: &mut rustls::RootCertStore, key: &str, path: &Path) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{key}: {}: {e}", path.display());
    let pem = std::fs::read(path).map_err(|e| err(&e))?;
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.map_err(|e| err(&e))?).map_err(|e| err(&e))?;
    }
    Ok(())
}

type Identity = (Vec<CertificateDer<'static>>, rustls::pki_types::PrivateKeyDer<'static>);

/// The client certificate chain and key of `tls.crt_file` / `tls.key_file`, if set.
fn client_identity(tls: &TlsConfig) -> Result<Option<Identity>, String> {
    match (&tls.crt_file, &tls.key_file) {
        (None, None) => Ok(None),
        (Some(crt), Some(key)) => read_identity(crt, key).map(Some),
        (Some(_), None) => Err("tls.key_file: required with tls.crt_file".into()),
        (None, Some(_)) => Err("tls.crt_file: required with tls.key_file".into()),
    }
}

/// A certificate chain (`tls.crt_file`) and its private key (`tls.key_file`), PEM.
fn read_identity(crt: &Path, key: &Path) -> Result<Identity, String> {
    let pem = std::fs::read(crt).map_err(|e| format!("tls.crt_file: {}: {e}", crt.display()))?;
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt_file: {}: {e}", crt.display()))?;
    if certs.is_empty() {
        return Err(format!("tls.crt_file: {}: no PEM certificate in it", crt.display()));
    }
    let pem = std::fs::read(key).map_err(|e| format!("tls.key_file: {}: {e}", key.display()))?;
    let key = rustls_pemfile::private_key(&mut &pem[..])
        .map_err(|e| format!("tls.key_file: {}: {e}", key.display()))?
        .ok_or_else(|| format!("tls.key_file: {}: no PEM private key in it", key.display()))?;
    Ok((certs, key))
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

/// `tls` of a component that listens: its certificate and key, and optionally the CA whose
/// client certificates it requires (mutual TLS).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    pub crt_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// Require a client certificate signed by this CA (PEM).
    pub client_ca_file: Option<std::path::PathBuf>,
}

impl ServerTlsConfig {
    /// The acceptor, or why not (errors name the key under `tls.`).
    pub fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (certs, key) = read_identity(&self.crt_file, &self.key_file)?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = rustls::RootCertStore::empty();
                add_roots(&mut roots, "tls.client_ca_file", path)?;
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| format!("tls.client_ca_file: {}: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(certs, key)
            .map_err(|e| format!("tls.key_file: does not match tls.crt_file: {e}"))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_verified_by_default() {
        assert!(TlsConfig::default().verify_certificate);
        let empty: TlsConfig = toml::from_str("").unwrap();
        assert!(empty.verify_certificate);
    }
}
