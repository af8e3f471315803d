//! `flowtag run --config FILE`: the pipeline until SIGTERM, with the API beside it. SIGHUP
//! drains the running pipeline and starts the new config (or the old one again if the new one
//! fails).
//!
//! A stop is bounded by the graceful-shutdown limit (default 60 s): sinks give up at three
//! quarters of it, and at the limit, or at a second SIGTERM or Ctrl-C, flowtag exits with
//! code 1 whatever is still running. Nothing confirmed is lost either way: events not yet
//! confirmed are read again after the restart (file sources) or resent by the sender (the
//! `fluent` and `http` sources never acknowledged them).

use std::path::PathBuf;
use std::time::Duration;

use super::init_logging;
use crate::api;
use crate::config::Config;
use crate::health::Health;
use crate::metrics;
use crate::shutdown::Shutdown;
use crate::topology;
use crate::transforms::anomaly::model::Controls;

/// How often `--watch-config` looks at the config file.
const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// The next tick of the config watch, or never without one.
async fn tick(watch: &mut Option<tokio::time::Interval>) {
    match watch {
        Some(w) => {
            w.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Drain the running pipeline and start the config at `path` (`why` names the trigger); a
/// config that does not load leaves the running one, one that fails to start brings the
/// previous one back. `Err` when even that fails.
async fn reload(
    path: &std::path::Path,
    running: &mut topology::Running,
    current: &mut Config,
    health: &Health,
    models: &Controls,
    drain: Duration,
    why: &str,
) -> Result<(), ()> {
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            tracing::error!("{why}: reload refused, the running config stays: {e}");
            return Ok(());
        }
    };
    if new.api.address != current.api.address || new.data_dir != current.data_dir {
        tracing::warn!("api.address and data_dir changes take effect at the next restart");
    }
    tracing::info!("{why}: draining the running pipeline, then starting the new config");
    let old = std::mem::replace(running, topology::Running::idle());
    old.stop().await;
    health.reset();
    models.reset();
    match topology::start(&new, health.clone(), models.clone(), drain).await {
        Ok(r) => {
            *running = r;
            *current = new;
            tracing::info!("config reloaded");
        }
        Err(e) => {
            tracing::error!("the new config failed to start ({e}); starting the previous one again");
            health.reset();
            models.reset();
            match topology::start(current, health.clone(), models.clone(), drain).await {
                Ok(r) => *running = r,
                Err(e) => {
                    tracing::error!("the previous config failed too: {e}");
                    return Err(());
                }
            }
        }
    }
    Ok(())
}

/// Run until SIGTERM; exit code. `limit`: the graceful-shutdown limit (`None`: no limit);
/// `watch`: reload when the config file changes.
pub fn run(path: PathBuf, limit: Option<Duration>, watch: bool) -> i32 {
    // Sinks give up at three quarters of the limit so the rest can finish in the last quarter.
    let drain = limit.map(|l| l * 3 / 4).unwrap_or(Duration::from_secs(100 * 365 * 86_400));
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    init_logging(cfg.log.format, &cfg.log.level);
    for w in &cfg.warnings {
        tracing::warn!(config = %path.display(), "{w}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime");
    let code = rt.block_on(async move {
        let health = Health::default();
        let models = Controls::default();
        let api_stop = Shutdown::new(Duration::from_secs(1));
        let api = if cfg.api.enabled {
            match api::start(&cfg.api, health.clone(), models.clone(), api_stop.clone()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::error!("{e}");
                    return 2;
                }
            }
        } else {
            None
        };
        let mut running = match topology::start(&cfg, health.clone(), models.clone(), drain).await {
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
        // --watch-config: the file's bytes as last loaded, compared every WATCH_INTERVAL (a
        // ConfigMap update swaps a symlink; polling sees it whatever the filesystem).
        let mut seen = std::fs::read(&path).ok();
        let mut watch = watch.then(|| tokio::time::interval(WATCH_INTERVAL));
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: draining"); break; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: draining"); break; }
                _ = running.sources_finished() => { tracing::info!("every source has finished: draining"); break; }
                _ = hup.recv() => {
                    if reload(&path, &mut running, &mut current, &health, &models, drain, "SIGHUP").await.is_err() {
                        return 1;
                    }
                    seen = std::fs::read(&path).ok();
                }
                _ = tick(&mut watch) => {
                    let now = std::fs::read(&path).ok();
                    if now.is_some() && now != seen {
                        seen = now;
                        if reload(&path, &mut running, &mut current, &health, &models, drain, "the config file changed").await.is_err() {
                            return 1;
                        }
                    }
                }
            }
        }
        let limit_passed = async {
            match limit {
                Some(l) => tokio::time::sleep(l).await,
                None => std::future::pending().await,
            }
        };
        let forced = tokio::select! {
            _ = running.stop() => None,
            _ = limit_passed => Some("the graceful-shutdown limit passed"),
            _ = term.recv() => Some("a second SIGTERM"),
            _ = tokio::signal::ctrl_c() => Some("interrupted again"),
        };
        metrics::global().up.set(0);
        if let Some(why) = forced {
            tracing::error!("{why}: exiting now; events not yet confirmed will be read again or resent after the restart");
            return 1;
        }
        api_stop.trigger();
        if let Some(api) = api {
            let _ = api.await;
        }
        tracing::info!("stopped");
        0
    });
    // Threads still blocked (a transform waiting on a full inbox at a forced exit) do not hold
    // the process.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}
