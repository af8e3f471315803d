//! `flowtag`: a log shipper for network flows that tags anomalous ones on the node.
//!
//! ```text
//! flowtag run --config flowtag.toml        run the pipeline
//! flowtag validate --config flowtag.toml   check a config and exit
//! flowtag score --model BUNDLE [FILE]      tag a file's records, JSON lines to stdout
//! flowtag model inspect|verify BUNDLE      look at or check a model bundle
//! ```

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use flowtag_host::config::{Config, LogFormat};
use flowtag_host::decode::Decoding;
use flowtag_host::health::Health;
use flowtag_host::transforms::anomaly::{Reasons, Runtime};
use flowtag_host::{api, gen, metrics, model, score, topology, transforms};

#[derive(Parser)]
#[command(
    name = "flowtag",
    version,
    about = "Tags anomalous network flows at the edge, before the logs reach the SIEM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline of a config file until SIGTERM (SIGHUP reloads the config).
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// How long draining may take at shutdown or reload.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        drain_timeout: Duration,
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
        #[arg(long, value_enum, default_value_t = RuntimeArg::Native)]
        runtime: RuntimeArg,
        /// The WASM module, for --runtime wasm.
        #[arg(long)]
        plugin: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = ReasonsArg::Anomalous)]
        reasons: ReasonsArg,
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
    /// Look at a model bundle, or run every check a node runs before it serves one.
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Write synthetic flows with labelled attacks (scans, floods, brute force) to stdout.
    Gen {
        #[arg(long, value_enum)]
        schema: gen::Schema,
        #[arg(long)]
        count: u64,
        /// Records per second (default: as fast as possible).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, value_enum, default_value_t = gen::Format::Csv)]
        format: gen::Format,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of flows that are attacks.
        #[arg(long, default_value_t = 0.1)]
        attack_share: f64,
    },
}

#[derive(Subcommand)]
enum ModelAction {
    /// Print a bundle's manifest summary (model, features, threshold, metrics) as JSON.
    Inspect { bundle: PathBuf },
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

#[derive(Clone, Copy, ValueEnum)]
enum RuntimeArg {
    Native,
    Wasm,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReasonsArg {
    Anomalous,
    All,
    None,
}

/// `flowtag validate`: the file (syntax, keys, wiring), then unless `no_environment` what it
/// names: every model bundle loaded and its canaries run, every WASM module compiled.
fn validate(path: &std::path::Path, no_environment: bool) -> i32 {
    let c = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    if !no_environment {
        for (id, t) in &c.transforms {
            let transforms::TransformConfig::Anomaly(cfg) = t;
            if let Some(up) = &cfg.updates {
                if let Err(e) = model::public_key(id, up) {
                    eprintln!("{}: {e}", path.display());
                    return 2;
                }
            }
            match model::load_configured(id, cfg, &c.data_dir.join("wasm-cache")) {
                Ok((loader, _, runtime)) => {
                    println!(
                        "transforms.{id}: model {} loaded, canaries pass ({})",
                        runtime.model_id(),
                        loader.describe()
                    )
                }
                Err(e) => {
                    eprintln!("{}: {e}", path.display());
                    return 2;
                }
            }
        }
    }
    println!(
        "{}: ok ({} sources, {} transforms, {} sinks)",
        path.display(),
        c.sources.len(),
        c.transforms.len(),
        c.sinks.len()
    );
    0
}

fn parse_format(s: &str) -> Result<Decoding, String> {
    s.parse()
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Validate { config, no_environment } => {
            init_logging(LogFormat::Text, "warn");
            validate(&config, no_environment)
        }
        Command::Score { model, format, runtime, plugin, reasons, key, batch, data_dir, file } => {
            // Warnings (a stale module cache, a recompile) go to stderr; RUST_LOG can ask for more.
            init_logging(LogFormat::Text, "warn");
            score::run(score::ScoreArgs {
                model,
                format,
                runtime: match runtime {
                    RuntimeArg::Native => Runtime::Native,
                    RuntimeArg::Wasm => Runtime::Wasm,
                },
                plugin,
                reasons: match reasons {
                    ReasonsArg::Anomalous => Reasons::Anomalous,
                    ReasonsArg::All => Reasons::All,
                    ReasonsArg::None => Reasons::None,
                },
                key,
                batch: batch.max(1),
                input: file,
                data_dir,
            })
        }
        Command::Run { config, drain_timeout } => run(config, drain_timeout),
        Command::Model { action } => {
            init_logging(LogFormat::Text, "warn");
            match action {
                ModelAction::Inspect { bundle } => model::cli::inspect(&bundle),
                ModelAction::Verify { bundle, public_key, plugin, data_dir } => {
                    model::cli::verify(&bundle, public_key.as_deref(), plugin, &data_dir)
                }
            }
        }
        Command::Gen { schema, count, rate, format, seed, attack_share } => {
            gen::run(gen::GenArgs { schema, count, rate, format, seed, attack_share })
        }
    };
    std::process::exit(code);
}

fn run(path: PathBuf, drain: Duration) -> i32 {
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    init_logging(cfg.log.format, &cfg.log.level);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let health = Health::default();
        let api_stop = topology::Shutdown::new(Duration::from_secs(1));
        let api = if cfg.api.enabled {
            match api::start(cfg.api.address, health.clone(), api_stop.clone()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!("{e}");
                    return 2;
                }
            }
        } else {
            None
        };
        let mut running = match topology::start(&cfg, health.clone(), drain).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("{e}");
                return 2;
            }
        };
        tracing::info!(config = %path.display(), "flowtag is running");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).expect("SIGHUP handler");
        let mut current = cfg;
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: draining"); break; }
                _ = running.sources_finished() => { tracing::info!("every source has finished: draining"); break; }
                _ = hup.recv() => {
                    match Config::load(&path) {
                        Err(e) => tracing::error!("reload refused, the running config stays: {e}"),
                        Ok(new) => {
                            if new.api.address != current.api.address || new.data_dir != current.data_dir {
                                tracing::warn!("api.address and data_dir changes take effect at the next restart");
                            }
                            tracing::info!("SIGHUP: draining the running pipeline, then starting the new config");
                            running.stop().await;
                            health.reset();
                            match topology::start(&new, health.clone(), drain).await {
                                Ok(r) => { running = r; current = new; tracing::info!("config reloaded"); }
                                Err(e) => {
                                    tracing::error!("the new config failed to start ({e}); starting the previous one again");
                                    match topology::start(&current, health.clone(), drain).await {
                                        Ok(r) => running = r,
                                        Err(e) => { tracing::error!("the previous config failed too: {e}"); return 1; }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        running.stop().await;
        metrics::global().up.set(0);
        api_stop.trigger();
        if let Some(api) = api {
            let _ = api.await;
        }
        tracing::info!("stopped");
        0
    })
}
