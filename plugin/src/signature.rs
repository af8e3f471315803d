//! Ed25519 signatures over `manifest.json`, which pins the model through `model_sha256`.
//!
//! Keys are what `flowtag-export keygen` (or `openssl genpkey -algorithm ed25519`) writes: a
//! PEM `PUBLIC KEY` (SubjectPublicKeyInfo). A bare base64 32-byte key is accepted too.
//! `manifest.sig` holds the 64-byte signature in base64.

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::bundle::Bundle;
use crate::error::BundleError;

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey);

fn b64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(compact).ok()
}

impl PublicKey {
    /// Parse a PEM public key, or a base64 raw key.
    pub fn parse(text: &str) -> Result<PublicKey, String> {
        let body: String = if text.contains("-----BEGIN") {
            if !text.contains("-----BEGIN PUBLIC KEY-----") {
                return Err("expected a PEM `PUBLIC KEY` (Ed25519 SubjectPublicKeyInfo)".into());
            }
            text.lines().filter(|l| !l.starts_with("-----")).collect()
        } else {
            text.to_string()
        };
        let der = b64(&body).ok_or("the key is not valid base64")?;
        let raw: [u8; 32] = match der.len() {
            44 if der[..12] == SPKI_PREFIX => der[12..].try_into().expect("32 bytes"),
            32 => der[..].try_into().expect("32 bytes"),
            n => return Err(format!("not an Ed25519 public key ({n} bytes of key data)")),
        };
        VerifyingKey::from_bytes(&raw).map(PublicKey).map_err(|e| format!("invalid Ed25519 key: {e}"))
    }
}

impl Bundle {
    /// Check `manifest.sig` against `key`: an unsigned or wrongly signed bundle is refused.
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), BundleError> {
        let sig = self.signature.as_ref().ok_or_else(|| BundleError::Signature {
            problem: "missing: the bundle is unsigned and a public key is configured".into(),
        })?;
        let text =
            std::str::from_utf8(sig).map_err(|_| BundleError::Signature { problem: "not base64 text".into() })?;
        let bytes = b64(text).ok_or_else(|| BundleError::Signature { problem: "not valid base64".into() })?;
        let sig = Signature::from_slice(&bytes).map_err(|_| BundleError::Signature {
            problem: format!("expected 64 signature bytes, got {}", bytes.len()),
        })?;
        key.0.verify(&self.manifest_bytes, &sig).map_err(|_| BundleError::Signature {
            problem:
                "does not match manifest.json for the configured public key (tampered, or signed with another key)"
                    .into(),
        })
    }
}
