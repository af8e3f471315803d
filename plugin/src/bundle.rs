//! Model bundles: `model.onnx`, `manifest.json` and an optional `manifest.sig`, from a
//! directory, a `.tar`, or bytes already in memory.
//!
//! Parsing works on bytes only. [`Bundle::read_path`] is the one place the plugin touches the
//! file system, for callers that have a path (the CLI, the host, and the WASM filter under Fluent
//! Bit, which reads `flowtag-bundle/` relative to its working directory).

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::manifest::Manifest;

pub const MODEL: &str = "model.onnx";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.sig";

/// A bundle whose manifest parsed and whose model matches `model_sha256`.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub model_bytes: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

impl Bundle {
    /// From the three files' contents.
    pub fn from_parts(
        manifest_bytes: Vec<u8>,
        model_bytes: Vec<u8>,
        signature: Option<Vec<u8>>,
    ) -> Result<Bundle, BundleError> {
        let manifest = Manifest::parse(&manifest_bytes)?;
        let actual = sha256_hex(&model_bytes);
        if !actual.eq_ignore_ascii_case(&manifest.model_sha256) {
            return Err(BundleError::Sha256 { expected: manifest.model_sha256.clone(), actual });
        }
        Ok(Bundle { manifest, manifest_bytes, model_bytes, signature })
    }

    /// From the bytes of an uncompressed tar holding the files at its root (or under one
    /// directory).
    pub fn from_tar(bytes: &[u8]) -> Result<Bundle, BundleError> {
        let (mut manifest, mut model, mut signature) = (None, None, None);
        let mut archive = tar::Archive::new(bytes);
        let entries = archive.entries().map_err(|e| BundleError::Tar { problem: e.to_string() })?;
        for entry in entries {
            let mut entry = entry.map_err(|e| BundleError::Tar { problem: e.to_string() })?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().map_err(|e| BundleError::Tar { problem: e.to_string() })?;
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            let target = match name.as_str() {
                MANIFEST => &mut manifest,
                MODEL => &mut model,
                SIGNATURE => &mut signature,
                _ => continue,
            };
            // The size in the header is the sender's word: never reserve more than the tar holds.
            if entry.size() > bytes.len() as u64 {
                return Err(BundleError::Tar {
                    problem: format!(
                        "{name}: its header claims {} bytes, the whole tar is {}",
                        entry.size(),
                        bytes.len()
                    ),
                });
            }
            let mut data = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut data).map_err(|e| BundleError::Tar { problem: format!("{name}: {e}") })?;
            *target = Some(data);
        }
        Bundle::from_parts(
            manifest.ok_or(BundleError::MissingFile { file: MANIFEST })?,
            model.ok_or(BundleError::MissingFile { file: MODEL })?,
            signature,
        )
    }

    /// From a bundle directory or a `.tar` file.
    pub fn read_path(path: &Path) -> Result<Bundle, BundleError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| BundleError::Read { path: p.display().to_string(), problem: e.to_string() })
        };
        if path.is_dir() {
            let file = |name: &'static str| {
                let p = path.join(name);
                if p.exists() {
                    read(&p).map(Some)
                } else {
                    Ok(None)
                }
            };
            Bundle::from_parts(
                file(MANIFEST)?.ok_or(BundleError::MissingFile { file: MANIFEST })?,
                file(MODEL)?.ok_or(BundleError::MissingFile { file: MODEL })?,
                file(SIGNATURE)?,
            )
        } else {
            Bundle::from_tar(&read(path)?)
        }
    }

    /// The bundle as an uncompressed tar (what the WASM filter's `flowtag_load` takes).
    pub fn to_tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, data).expect("writing a tar to memory cannot fail");
        };
        add(MANIFEST, &self.manifest_bytes);
        add(MODEL, &self.model_bytes);
        if let Some(sig) = &self.signature {
            add(SIGNATURE, sig);
        }
        builder.into_inner().expect("writing a tar to memory cannot fail")
    }

    pub fn model_sha256(&self) -> &str {
        &self.manifest.model_sha256
    }

    /// `name@version`, as tags name the model.
    pub fn id(&self) -> String {
        format!("{}@{}", self.manifest.name, self.manifest.version)
    }
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
