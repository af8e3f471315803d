//! The `flowtag` command line: one file per subcommand, and here the arguments and dispatch.
//!
//! ```text
//! flowtag run --config flowtag.toml        run the pipeline
//! flowtag validate --config flowtag.toml   check a config and exit
//! flowtag score --model BUNDLE [FILE]      tag a file's records, JSON lines to stdout
//! flowtag model inspect|verify BUNDLE      look at or check a model bundle
//! flowtag gen --schema unsw --count N      synthetic flows for demos and load tests
//! flowtag top --api 127.0.0.1:9598         events in/out per component of a running flowtag
//! flowtag tap OUTPUT --api 127.0.0.1:9598  the events leaving a component, as they pass
//! ```

pub mod generate;
pub mod model;
pub mod run;
pub mod score;
pub mod top;
pub mod validate;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::LogFormat;
use crate::decode::Decoding;
use crate::transforms::anomaly::Runtime;
use flowtag_plugin::ReasonsMode;

#[derive(Parser)]
#[command(
    name = "flowtag",
    version,
    about = "Tags anomalous network flows at the edge, before the logs reach the SIEM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the pipeline of a config file until SIGTERM (SIGHUP reloads the config).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// How long a stop (SIGTERM) may take: sinks that still cannot deliver give up at three
        /// quarters of it, leaving their events unconfirmed (a file source reads them again
        /// after the restart), and at the limit flowtag exits whatever is left. Also how long
        /// a reload (SIGHUP) may drain. Like Vector's `--graceful-shutdown-limit-secs`.
        #[arg(long, alias = "drain-timeout", default_value = "60s", value_parser = humantime::parse_duration)]
        graceful_shutdown_limit: Duration,
        /// Wait for the sinks as long as they take at a stop.
        #[arg(long, conflicts_with = "graceful_shutdown_limit")]
        no_graceful_shutdown_limit: bool,
        /// Reload when the config file changes (as a ConfigMap update swaps it), as SIGHUP does.
        #[arg(long)]
        watch_config: bool,
    },
    /// Check a config file: syntax, keys, wiring, files it names.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
        /// Check the file only: do not load the models and WASM modules it names.
        #[arg(long)]
        no_environment: bool,
    },
    /// Tag the records of a file or standard input; JSON lines to standard output, in order.
    Score {
        /// A model bundle directory or .tar.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "json", value_parser = parse_format)]
        format: Decoding,
        #[arg(long, value_enum, default_value_t = Runtime::Native)]
        runtime: Runtime,
        /// The WASM module, for --runtime wasm.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Which records carry reasons: anomalous, all or none.
        #[arg(long, default_value = "anomalous")]
        reasons: ReasonsMode,
        /// The member the tags go under.
        #[arg(long, default_value = "anomaly")]
        key: String,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Where the compiled WASM module is cached.
        #[arg(long, default_value = ".flowtag")]
        data_dir: PathBuf,
        /// Input file (default: standard input).
        file: Option<PathBuf>,
    },
    /// Decode the lines of a file or standard input with a source's decoder; JSON lines to
    /// standard output (a line that cannot be decoded as `{"message", "decode_error"}`).
    Decode {
        #[arg(long, value_parser = parse_format)]
        format: Decoding,
        /// Input file (default: standard input).
        file: Option<PathBuf>,
    },
    /// Events in and out, errors, discards and buffers per component of a running flowtag,
    /// refreshed (like `vector top`), from its API's /metrics.
    Top {
        /// The API's address (`[api] address` of the running flowtag).
        #[arg(long, default_value = "127.0.0.1:9598")]
        api: String,
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: Duration,
        /// Print one table after one interval and exit.
        #[arg(long)]
        once: bool,
    },
    /// The events leaving a component's output (`ID` or `ID.NAME`) of a running flowtag, as
    /// they pass, one JSON line each (like `vector tap`), until interrupted or `--limit`.
    Tap {
        output: String,
        #[arg(long, default_value = "127.0.0.1:9598")]
        api: String,
        /// Stop after this many events (default: keep going).
        #[arg(long)]
        limit: Option<u64>,
        /// Keep 1 event in N.
        #[arg(long, default_value_t = 1)]
        every: u64,
        /// A file holding the API token (else FLOWTAG_API_TOKEN, if set).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Look at a model bundle, or run every check a node runs before it serves one.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Write synthetic flows with labelled attacks (scans, floods, brute force) to stdout.
    Gen {
        #[arg(long, value_enum)]
        schema: generate::Schema,
        #[arg(long)]
        count: u64,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, value_enum, default_value_t = generate::Format::Csv)]
        format: generate::Format,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of flows that are attacks.
        #[arg(long, default_value_t = 0.1)]
        attack_share: f64,
    },
}

#[derive(Subcommand)]
pub enum ModelAction {
    /// Print a bundle's manifest summary (model, features, threshold, metrics) as JSON.
    Inspect { bundle: PathBuf },
    /// Print the model input each record of FILE (default: standard input) becomes: one JSON
    /// line per record, `{"nonzero": [[column, value], ...]}` or `{"error": "why"}`.
    Features { bundle: PathBuf, file: Option<PathBuf> },
    /// sha256, signature (with --public-key), load and canaries (natively, and under WASM with
    /// --plugin); exit code 1 with the reason when a check fails.
    Verify {
        bundle: PathBuf,
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Also check the bundle under this WASM module.
        #[arg(long)]
        plugin: Option<PathBuf>,
        /// Where the compiled WASM module is cached.
        #[arg(long, default_value = ".flowtag")]
        data_dir: PathBuf,
    },
}

fn parse_format(s: &str) -> Result<Decoding, String> {
    s.parse()
}

/// Logs to standard error, as text or JSON lines. Text is coloured only on a terminal, and
/// never when `NO_COLOR` is set (a Kubernetes log, a CI artifact or a pipe gets plain text).
pub fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(colour(std::io::stderr().is_terminal())).init(),
    }
}

/// Whether text logs are coloured: on a terminal, unless `NO_COLOR` is set to anything
/// non-empty (no-color.org).
fn colour(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Run the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate { config, no_environment } => {
            init_logging(LogFormat::Text, "warn");
            validate::run(&config, no_environment)
        }
        Command::Score { model, format, runtime, plugin, reasons, key, batch, data_dir, file } => {
            // Warnings (a stale module cache, a recompile) go to stderr; RUST_LOG can ask for more.
            init_logging(LogFormat::Text, "warn");
            score::run(score::ScoreArgs {
                model,
                format,
                runtime,
                plugin,
                reasons,
                key,
                batch: batch.max(1),
                input: file,
                data_dir,
            })
        }
        Command::Run { config, graceful_shutdown_limit, no_graceful_shutdown_limit, watch_config } => {
            run::run(config, (!no_graceful_shutdown_limit).then_some(graceful_shutdown_limit), watch_config)
        }
        Command::Top { api, interval, once } => top::top(&api, interval, once),
        Command::Tap { output, api, limit, every, token_file } => tap(&output, &api, limit, every, token_file),
        Command::Model { action } => {
            init_logging(LogFormat::Text, "warn");
            match action {
                ModelAction::Inspect { bundle } => model::inspect(&bundle),
                ModelAction::Features { bundle, file } => model::features(&bundle, file.as_deref()),
                ModelAction::Verify { bundle, public_key, plugin, data_dir } => {
                    model::verify(&bundle, public_key.as_deref(), plugin, &data_dir)
                }
            }
        }
        Command::Decode { format, file } => score::decode(format, file.as_deref()),
        Command::Gen { schema, count, rate, format, seed, attack_share } => {
            generate::run(generate::GenArgs { schema, count, rate, format, seed, attack_share })
        }
    };
    code
}

/// `flowtag tap`: rounds of `GET /tap` (up to 1,000 events or 5 s each), printed as they come.
fn tap(output: &str, api: &str, limit: Option<u64>, every: u64, token_file: Option<PathBuf>) -> i32 {
    let token = match (token_file, std::env::var("FLOWTAG_API_TOKEN").ok()) {
        (Some(f), _) => match std::fs::read_to_string(&f) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                eprintln!("flowtag tap: --token-file {}: {e}", f.display());
                return 2;
            }
        },
        (None, env) => env.filter(|t| !t.is_empty()),
    };
    let mut left = limit.unwrap_or(u64::MAX);
    let output_q: String = output
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    while left > 0 {
        let n = left.min(1000);
        let path = format!("/tap?output={output_q}&limit={n}&seconds=5&every={}", every.max(1));
        match top::get(api, &path, token.as_deref(), Duration::from_secs(15)) {
            Ok(body) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                for line in body.lines() {
                    if writeln!(out, "{line}").is_err() {
                        return 0; // stdout closed (| head)
                    }
                    left -= 1;
                }
                let _ = out.flush();
            }
            Err(e) => {
                eprintln!("flowtag tap: {e}");
                return 1;
            }
        }
    }
    0
}
