//! `flowtag run --config FILE`: the pipeline until SIGTERM, with the API beside it. SIGHUP
//! drains the running pipeline and starts the new config (or the old one again if the new one
//! fails).

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

/// Run until SIGTERM; exit code.
pub fn run(path: PathBuf, drain: Duration) -> i32 {
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
    rt.block_on(async move {
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
                            models.reset();
                            match topology::start(&new, health.clone(), models.clone(), drain).await {
                                Ok(r) => { running = r; current = new; tracing::info!("config reloaded"); }
                                Err(e) => {
                                    tracing::error!("the new config failed to start ({e}); starting the previous one again");
                                    health.reset();
                                    models.reset();
                                    match topology::start(&current, health.clone(), models.clone(), drain).await {
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
