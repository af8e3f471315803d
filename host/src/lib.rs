//! The flowtag host: a node log shipper that tags anomalous network flows. The `flowtag` binary
//! (`main.rs`, with its subcommands in `cli`) is its command line; the library is the pipeline,
//! so benchmarks and tools can drive the same code.
//!
//! Layers point down:
//!
//! ```text
//! cli ─► topology ─► sources, transforms, sinks, alerts, api    (components)
//!                      │ each knows only what is below it:
//!                      ▼
//!        component, fanout, tap, shutdown, event, decode, net, fluent_forward, metrics, health, config
//!                      ▼
//!        flowtag_plugin (the tag filter: no I/O, no async)
//! ```
//!
//! `config` is read into `topology`, which starts `sources` (with `decode`), `transforms` (the
//! tag filter, native or WASM, with its model manager) and `sinks`, wired by bounded channels
//! (`fanout`) that carry `event`s with their acknowledgements; `api`, `metrics` and `health`
//! watch them. No component imports `topology`.

pub mod alerts;
pub mod api;
pub mod buffer;
pub mod cli;
pub mod component;
pub mod config;
pub mod decode;
pub mod event;
pub mod fanout;
pub mod fluent_forward;
pub mod health;
pub mod metrics;
pub mod net;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod tap;
pub mod topology;
pub mod transforms;
