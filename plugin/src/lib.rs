//! flowtag's tag filter: model bundles, the featurizer, the scorer and the tagger.
//!
//! The bottom layer of flowtag: no async, no global state, no I/O beyond reading the bytes it
//! is given (and, in [`Bundle::read_path`], a bundle's own files). The host links it as a
//! library; the same code compiled for `wasm32-wasip1` is the WASM filter.
//!
//! ```no_run
//! use flowtag_plugin::{Bundle, Filter, FilterOptions};
//! let bundle = Bundle::read_path("models/unsw-supervised".as_ref()).unwrap();
//! let mut filter = Filter::new(&bundle, FilterOptions::default()).unwrap();
//! let mut out = Vec::new();
//! let stats = filter.tag_lines(br#"{"dur": 0.1, "proto": "tcp"}"#, &mut out);
//! println!("{} anomalous: {}", stats.anomalous, String::from_utf8_lossy(&out));
//! ```

#[cfg(target_family = "wasm")]
pub mod abi;
pub mod bundle;
pub mod dense;
pub mod error;
pub mod featurize;
pub mod filter;
pub mod forest;
pub mod json;
pub mod manifest;
pub mod onnx;
pub mod scorer;
pub mod signature;
pub mod tagger;
#[cfg(test)]
mod test_rng;
pub mod text;

/// The version of the WASM plugin ABI (the exports in `abi`, see `docs/plugin-abi.md`) this
/// crate builds and the host speaks.
pub const ABI_VERSION: u32 = 1;

pub use bundle::Bundle;
pub use error::BundleError;
pub use filter::{lines, tag_failed, BatchStats, Calibration, Filter, FilterOptions, RecordResult};
pub use signature::PublicKey;
pub use tagger::{ReasonsMode, Verdict};
