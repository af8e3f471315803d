//! A test certificate authority: a CA, a server certificate for 127.0.0.1 and localhost, and
//! client certificates, made fresh for each test (rcgen); rustls server configs that present
//! the server certificate, with or without requiring a client certificate from the CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TestCa {
    pub ca_pem: String,
    ca: CertifiedIssuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestCa {
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "flowtag test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let mut server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let key = KeyPair::generate().unwrap();
        let cert = server.signed_by(&key, &ca).unwrap();
        TestCa { ca_pem: ca.pem(), ca, server_cert: cert.der().clone(), server_key: key.serialize_der() }
    }

    /// The CA certificate written to `dir/ca.pem`, for a config's `tls.ca_file`.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    /// The server certificate and key written as `dir/server.crt` and `dir/server.key`, for a
    /// source's `tls.crt_file` and `tls.key_file`.
    pub fn write_server(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (crt, key) = (dir.join("server.crt"), dir.join("server.key"));
        let pem = |label: &str, der: &[u8]| {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
        };
        std::fs::write(&crt, pem("CERTIFICATE", &self.server_cert)).unwrap();
        std::fs::write(&key, pem("PRIVATE KEY", &self.server_key)).unwrap();
        (crt, key)
    }

    /// A client certificate the CA signed, written as `dir/NAME.crt` and `dir/NAME.key`.
    pub fn write_client(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec![format!("{name}.flowtag.test")]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (crt, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&crt, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (crt, key_path)
    }

    /// A server config presenting the certificate for 127.0.0.1.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server(false)
    }

    /// The same, refusing clients without a certificate the CA signed (mutual TLS).
    pub fn server_config_mutual(&self) -> Arc<rustls::ServerConfig> {
        self.server(true)
    }

    fn server(&self, mutual: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        Arc::new(builder.with_single_cert(vec![self.server_cert.clone()], key).unwrap())
    }
}
