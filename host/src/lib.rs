//! The flowtag host: a node log shipper that tags anomalous network flows. The `flowtag` binary
//! (`main.rs`) is its command line; the library is the pipeline, so benchmarks and tools can
//! drive the same code.
//!
//! Layers point down: `config` is read into `topology`, which starts `sources` (with
//! `decode`), `transforms` (the tag filter, native or WASM, and its `model` manager) and
//! `sinks`, wired by bounded channels that carry `event`s with their acknowledgements;
//! `api`, `metrics` and `health` watch them. The plugin crate below does the tagging.

pub mod alerts;
pub mod api;
pub mod config;
pub mod decode;
pub mod event;
pub mod forward;
pub mod gen;
pub mod health;
pub mod http_server;
pub mod metrics;
pub mod model;
pub mod score;
pub mod sinks;
pub mod sources;
pub mod topology;
pub mod transforms;

#[cfg(test)]
mod datasets;
