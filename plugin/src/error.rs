//! Why a bundle is refused. Every message names the file, the key and what was expected.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum BundleError {
    /// A file of the bundle could not be read.
    Read { path: String, problem: String },
    /// A required file is not in the bundle.
    MissingFile { file: &'static str },
    /// The `.tar` is not a readable tar archive.
    Tar { problem: String },
    /// `manifest.json` breaks a rule of format 1.
    Manifest { key: String, problem: String },
    /// `model.onnx` does not hash to `model_sha256`.
    Sha256 { expected: String, actual: String },
    /// tract could not load or optimise `model.onnx`.
    Model { problem: String },
    /// The model's input width differs from the manifest's feature columns.
    Width { model: usize, manifest: usize },
    /// A named output is not among the model's outputs.
    Output { key: &'static str, name: String, available: Vec<String> },
    /// The signature is missing or does not verify.
    Signature { problem: String },
    /// A canary row did not reproduce its expected score.
    Canary { index: usize, problem: String },
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Read { path, problem } => write!(f, "{path}: cannot read: {problem}"),
            BundleError::MissingFile { file } => write!(f, "bundle has no {file}"),
            BundleError::Tar { problem } => write!(f, "bundle tar: {problem}"),
            BundleError::Manifest { key, problem } => write!(f, "manifest.json: `{key}`: {problem}"),
            BundleError::Sha256 { expected, actual } => write!(
                f,
                "model.onnx: sha256 is {actual}, but manifest.json `model_sha256` expects {expected} (the model was changed or the manifest belongs to another model)"
            ),
            BundleError::Model { problem } => write!(f, "model.onnx: {problem}"),
            BundleError::Width { model, manifest } => write!(
                f,
                "model.onnx takes {model} input columns, but manifest.json `features` make {manifest} (`input.width`)"
            ),
            BundleError::Output { key, name, available } => write!(
                f,
                "manifest.json `{key}`: model.onnx has no output {name:?} (it has {})",
                available.join(", ")
            ),
            BundleError::Signature { problem } => write!(f, "manifest.sig: {problem}"),
            BundleError::Canary { index, problem } => write!(f, "manifest.json `canaries[{index}]`: {problem}"),
        }
    }
}

impl std::error::Error for BundleError {}
