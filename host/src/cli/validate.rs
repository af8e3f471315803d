//! `flowtag validate --config FILE [--no-environment]`: the file (syntax, keys, wiring), then
//! what it names: every model bundle loaded and its canaries run, every WASM module compiled.

use crate::config::Config;
use crate::transforms::anomaly::model;
use crate::transforms::TransformConfig;

/// `flowtag validate`: the file (syntax, keys, wiring), then unless `no_environment` what it
/// names: every model bundle loaded and its canaries run, every WASM module compiled.
pub fn run(path: &std::path::Path, no_environment: bool) -> i32 {
    let c = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    for w in &c.warnings {
        eprintln!("{}: warning: {w}", path.display());
    }
    if !no_environment {
        for (id, t) in &c.transforms {
            let TransformConfig::Anomaly(cfg) = t else { continue };
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
