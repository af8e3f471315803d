//! The model a tag transform serves, and the models pushed to it.
//!
//! At start the transform loads its configured bundle (or, with `[transforms.<id>.updates]`, the
//! last pushed bundle kept in `data_dir`, so a restart without network still has it). Every
//! bundle is checked before it serves: the model's sha256 against the manifest, the manifest's
//! Ed25519 signature when a public key is configured, loading in the transform's runtime
//! (native or WASM), and the manifest's canary rows, which must reproduce their expected scores.
//!
//! With updates configured, an updater task polls the source (`fetch`), checks each new
//! candidate the same way, keeps it in `data_dir` (`store`: the current and the previous
//! bundle) and hands the ready runtime to the tagging thread, which swaps it in between two
//! batches: every record is tagged by exactly one model, named in its tag. A refused bundle is
//! logged with its reason and counted; the current model stays. `POST /model/rollback` (or a
//! `pin`) goes back to the previous bundle.

pub mod fetch;
mod store;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc as tmpsc, oneshot};

use super::runtime::{Loader, TagRuntime};
use super::AnomalyConfig;
use crate::metrics;
use crate::shutdown::Shutdown;
use fetch::{Fetched, Fetcher, UpdateSource, UpdatesConfig};
use flowtag_plugin::bundle::sha256_hex;
use flowtag_plugin::{Bundle, PublicKey};
use store::Store;

pub struct ModelManager {
    current: Option<Box<dyn TagRuntime>>,
    describe: String,
    updates: Option<mpsc::Receiver<Box<dyn TagRuntime>>>,
}

impl ModelManager {
    /// Load the transform's model (see the module docs for which one) and, with updates
    /// configured, start the updater. A bundle that fails any check is refused with its reason.
    pub fn start(
        id: &str,
        cfg: &AnomalyConfig,
        data_dir: &Path,
        wasm_cache: &Path,
        shutdown: Shutdown,
        controls: &Controls,
    ) -> Result<ModelManager, String> {
        let Some(up) = &cfg.updates else {
            let (loader, bundle, runtime) = load_configured(id, cfg, wasm_cache)?;
            Live::of(&bundle).publish(id, None);
            return Ok(ModelManager { current: Some(runtime), describe: loader.describe(), updates: None });
        };
        let key = public_key(id, up)?;
        let loader = Loader::new(cfg, wasm_cache).map_err(|e| format!("transforms.{id}.plugin: {e}"))?;
        let fetcher = Fetcher::new(up).map_err(|e| format!("transforms.{id}.updates: {e}"))?;
        let store = Store::open(&data_dir.join("models"))?;
        let (bundle, runtime) = first_model(id, cfg, up, key.as_ref(), &loader, &store)?;
        if store.current_identity().as_deref() != Some(&identity(&bundle)) {
            store.promote(&bundle)?;
        }
        let live = Live::of(&bundle);
        live.publish(id, None);
        let (tx, rx) = mpsc::channel();
        let (ctl_tx, ctl_rx) = tmpsc::channel(4);
        controls.register(id, ctl_tx);
        let describe = loader.describe();
        let updater = Updater {
            id: id.to_string(),
            cfg: up.clone(),
            key,
            loader: Arc::new(loader),
            fetcher,
            store,
            live,
            waiting: None,
            tx,
        };
        tracing::info!(component = %id, source = %up.describe(), interval = %up.interval, "watching for model updates");
        tokio::spawn(updater.run(ctl_rx, shutdown));
        Ok(ModelManager { current: Some(runtime), describe, updates: Some(rx) })
    }

    /// Which runtime serves the models: `native`, or `wasm` with the module.
    pub fn runtime(&self) -> String {
        self.describe.clone()
    }

    /// The runtime to start with.
    pub fn current(&mut self) -> Box<dyn TagRuntime> {
        self.current.take().expect("current() is called once")
    }

    /// The newest verified model that arrived since the last call, if any.
    pub fn take_update(&mut self) -> Option<Box<dyn TagRuntime>> {
        let rx = self.updates.as_ref()?;
        let mut newest = None;
        while let Ok(r) = rx.try_recv() {
            newest = Some(r);
        }
        newest
    }
}

/// Load a transform's model the way it runs: a loader for its runtime (for WASM, the module
/// compiled or taken from `wasm_cache`), the bundle read and checked, and a runtime serving it
/// with its canaries passed. Errors name the config key.
pub fn load_configured(
    id: &str,
    cfg: &AnomalyConfig,
    wasm_cache: &Path,
) -> Result<(Loader, Bundle, Box<dyn TagRuntime>), String> {
    let loader = Loader::new(cfg, wasm_cache).map_err(|e| format!("transforms.{id}.plugin: {e}"))?;
    let bundle =
        Bundle::read_path(&cfg.model).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    let runtime = loader.load(&bundle).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    Ok((loader, bundle, runtime))
}

/// The configured public key, read and parsed; errors name the key.
pub fn public_key(id: &str, up: &UpdatesConfig) -> Result<Option<PublicKey>, String> {
    let Some(path) = &up.public_key else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("transforms.{id}.updates.public_key: {}: {e}", path.display()))?;
    PublicKey::parse(&text)
        .map(Some)
        .map_err(|e| format!("transforms.{id}.updates.public_key: {}: {e}", path.display()))
}

/// A bundle's identity: the sha256 of its manifest, which pins the model by its hash.
fn identity(bundle: &Bundle) -> String {
    sha256_hex(&bundle.manifest_bytes)
}

/// The model to start with. With a pin: the first of (kept current, kept previous, configured)
/// whose version is the pin. Without: the kept current bundle, else the configured one. A kept
/// bundle that no longer passes its checks is skipped with a warning.
fn first_model(
    id: &str,
    cfg: &AnomalyConfig,
    up: &UpdatesConfig,
    key: Option<&PublicKey>,
    loader: &Loader,
    store: &Store,
) -> Result<(Bundle, Box<dyn TagRuntime>), String> {
    for (what, bundle) in [("current", store.current()), ("previous", store.previous())] {
        if what == "previous" && up.pin.is_none() {
            break;
        }
        let bundle = match bundle {
            Ok(Some(b)) => b,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(component = %id, error = %e, "the kept {what} model cannot be read; skipping it");
                continue;
            }
        };
        if up.pin.as_ref().is_some_and(|p| *p != bundle.manifest.version) {
            continue;
        }
        match check(&bundle, key).and_then(|_| loader.load(&bundle)) {
            Ok(runtime) => {
                tracing::info!(component = %id, model = %bundle.id(), "starting with the {what} model kept in data_dir");
                return Ok((bundle, runtime));
            }
            Err(e) => {
                tracing::warn!(component = %id, model = %bundle.id(), error = %e, "the kept {what} model is refused; skipping it")
            }
        }
    }
    let bundle =
        Bundle::read_path(&cfg.model).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    let runtime = loader.load(&bundle).map_err(|e| format!("transforms.{id}.model: {}: {e}", cfg.model.display()))?;
    if let Some(pin) = &up.pin {
        if *pin != bundle.manifest.version {
            tracing::warn!(component = %id, model = %bundle.id(), %pin, "pinned version not kept yet: serving the configured model until the pinned one is fetched");
        }
    }
    Ok((bundle, runtime))
}

/// Signature check (when a key is configured). The sha256 was checked when the bundle parsed;
/// the canaries run when the runtime loads it.
fn check(bundle: &Bundle, key: Option<&PublicKey>) -> Result<(), String> {
    match key {
        Some(k) => bundle.verify_signature(k).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// What is live, for metrics and logs.
#[derive(Clone)]
struct Live {
    name: String,
    version: String,
    created: String,
    sha256: String,
    identity: String,
}

impl Live {
    fn of(b: &Bundle) -> Live {
        let m = &b.manifest;
        Live {
            name: m.name.clone(),
            version: m.version.clone(),
            created: m.created.clone(),
            sha256: m.model_sha256.clone(),
            identity: identity(b),
        }
    }

    /// Whether `b` is an older build of the same model: a lower version (compared as numbers,
    /// part by part, when both are dotted numbers, else as text), or the same version created
    /// earlier. Another model's bundle is never older.
    fn newer_than(&self, b: &Bundle) -> bool {
        let m = &b.manifest;
        if m.name != self.name {
            return false;
        }
        let parts = |v: &str| v.split('.').map(|p| p.parse::<u64>().ok()).collect::<Option<Vec<u64>>>();
        let by_version = match (parts(&self.version), parts(&m.version)) {
            (Some(live), Some(offered)) => live.cmp(&offered),
            _ => self.version.cmp(&m.version),
        };
        by_version.then_with(|| self.created.cmp(&m.created)) == std::cmp::Ordering::Greater
    }

    fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }

    /// `flowtag_model_info` names this model (and no longer `before`).
    fn publish(&self, component: &str, before: Option<&Live>) {
        let info = &metrics::global().model_info;
        if let Some(b) = before {
            let _ = info.remove_label_values(&[component, &b.name, &b.version, &b.sha256]);
        }
        info.with_label_values(&[component, &self.name, &self.version, &self.sha256]).set(1.0);
        if let Ok(v) = self.version.parse::<f64>() {
            metrics::global().model_version.with_label_values(&[component]).set(v);
        }
    }
}

pub enum Command {
    Rollback(oneshot::Sender<Result<String, String>>),
}

/// The updaters' control channels by transform id (for the API).
/// The model controls of the running tag transforms (today: rollback), handed by the pipeline
/// to the API. A transform with `[transforms.<id>.updates]` registers itself when it starts.
#[derive(Clone, Default)]
pub struct Controls(Arc<Mutex<BTreeMap<String, tmpsc::Sender<Command>>>>);

impl Controls {
    fn register(&self, id: &str, tx: tmpsc::Sender<Command>) {
        self.0.lock().expect("controls lock").insert(id.to_string(), tx);
    }

    /// Forget every transform (a new topology registers its own).
    pub fn reset(&self) {
        self.0.lock().expect("controls lock").clear();
    }

    /// Send the transforms (all, or `only` the one named) back to their previous bundle; per
    /// transform the model now serving, or why not.
    pub async fn rollback(&self, only: Option<&str>) -> Result<BTreeMap<String, Result<String, String>>, String> {
        let targets: Vec<(String, tmpsc::Sender<Command>)> = {
            let c = self.0.lock().expect("controls lock");
            c.iter()
                .filter(|(id, _)| only.is_none_or(|o| o == id.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        if targets.is_empty() {
            return Err(match only {
                Some(id) => format!("no tag transform {id:?} with [transforms.{id}.updates]"),
                None => "no tag transform has [transforms.<id>.updates]; rollback needs the kept models".into(),
            });
        }
        let mut out = BTreeMap::new();
        for (id, tx) in targets {
            let (reply, answer) = oneshot::channel();
            let r = match tx.send(Command::Rollback(reply)).await {
                Ok(()) => answer.await.unwrap_or_else(|_| Err("the transform stopped".into())),
                Err(_) => Err("the transform stopped".into()),
            };
            out.insert(id, r);
        }
        Ok(out)
    }
}

struct Updater {
    id: String,
    cfg: UpdatesConfig,
    key: Option<PublicKey>,
    loader: Arc<Loader>,
    fetcher: Fetcher,
    store: Store,
    live: Live,
    /// A directory candidate that failed its checks once: it may still be being written, so it
    /// is refused only if it is still the same at the next check.
    waiting: Option<String>,
    tx: mpsc::Sender<Box<dyn TagRuntime>>,
}

/// What became of a candidate.
enum Outcome {
    Accepted(Bundle, Box<dyn TagRuntime>),
    Same,
    RolledBackFrom,
    NotPinned(String),
    Refused(String),
}

impl Updater {
    async fn run(mut self, mut control: tmpsc::Receiver<Command>, shutdown: Shutdown) {
        let mut tick = tokio::time::interval(self.cfg.interval.0);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.stopped() => break,
                _ = tick.tick() => self.check().await,
                cmd = control.recv() => match cmd {
                    Some(Command::Rollback(reply)) => {
                        let r = self.rollback().await;
                        let _ = reply.send(r);
                    }
                    None => break,
                },
            }
        }
    }

    fn counted(&self, result: &str) {
        metrics::global().model_reloads.with_label_values(&[&self.id, result]).inc();
    }

    async fn check(&mut self) {
        let fetched = self.fetcher.fetch().await;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs_f64();
        metrics::global().model_last_check.with_label_values(&[&self.id]).set(now);
        let candidate = match fetched {
            Ok(Fetched::Unchanged) => return,
            Ok(Fetched::Candidate(c)) => c,
            Err(e) => {
                self.counted("error");
                tracing::warn!(component = %self.id, error = %e, model = %self.live.id(), "model update check failed; keeping the current model");
                return;
            }
        };
        let fingerprint = candidate.fingerprint.clone();
        let origin = candidate.origin.clone();
        let (key, loader, pin) = (self.key.clone(), self.loader.clone(), self.cfg.pin.clone());
        let allow_without_canaries = self.cfg.allow_without_canaries;
        let live = self.live.clone();
        let rolled_back = self.store.rolled_back();
        let component = self.id.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let bundle = match candidate.parse() {
                Ok(b) => b,
                Err(e) => return Outcome::Refused(e.to_string()),
            };
            if let Ok(v) = bundle.manifest.version.parse::<f64>() {
                metrics::global().model_offered_version.with_label_values(&[&component]).set(v);
            }
            let ident = identity(&bundle);
            if ident == live.identity {
                return Outcome::Same;
            }
            if rolled_back.contains(&ident) {
                return Outcome::RolledBackFrom;
            }
            if let Some(p) = pin.as_ref().filter(|p| **p != bundle.manifest.version) {
                return Outcome::NotPinned(format!("{} (pinned to version {p})", bundle.id()));
            }
            // An older bundle (a replayed or stale push) would downgrade every node: only a pin
            // or a rollback goes back.
            if pin.is_none() && live.newer_than(&bundle) {
                return Outcome::Refused(format!(
                    "{} is older than the live {} (a downgrade; pin its version or roll back to take it)",
                    bundle.id(),
                    live.id()
                ));
            }
            // Canaries are how a node checks a pushed model before it serves: a push without
            // them would go live unchecked.
            if bundle.manifest.canaries.is_empty() && !allow_without_canaries {
                return Outcome::Refused(format!(
                    "{} has no canary rows, so this node cannot check it (set allow_without_canaries = true to take such bundles)",
                    bundle.id()
                ));
            }
            match check(&bundle, key.as_ref()).and_then(|_| loader.load(&bundle)) {
                Ok(runtime) => Outcome::Accepted(bundle, runtime),
                Err(e) => Outcome::Refused(format!("{}: {e}", bundle.id())),
            }
        })
        .await
        .unwrap_or_else(|e| Outcome::Refused(format!("checking the bundle failed: {e}")));
        match outcome {
            Outcome::Same => {}
            Outcome::RolledBackFrom => {
                tracing::info!(component = %self.id, %origin, "not taking a model that was rolled back from")
            }
            Outcome::NotPinned(what) => {
                tracing::info!(component = %self.id, %origin, candidate = %what, "not taking a model other than the pinned version")
            }
            Outcome::Refused(reason) => {
                if self.cfg.source == UpdateSource::Dir && self.waiting.as_deref() != Some(&fingerprint) {
                    // Maybe still being written: look again at the next check.
                    tracing::debug!(component = %self.id, %origin, %reason, "bundle not valid (yet); checking again at the next interval");
                    self.waiting = Some(fingerprint);
                    return;
                }
                self.counted("refused");
                tracing::warn!(component = %self.id, %origin, %reason, model = %self.live.id(), "model update refused; keeping the current model");
            }
            Outcome::Accepted(bundle, runtime) => {
                if let Err(e) = self.store.promote(&bundle) {
                    self.counted("error");
                    tracing::warn!(component = %self.id, error = %e, "cannot keep the new model in data_dir; keeping the current model");
                    return;
                }
                self.go_live(bundle, runtime, "ok");
            }
        }
        self.waiting = None;
        self.fetcher.settled(&fingerprint);
    }

    fn go_live(&mut self, bundle: Bundle, runtime: Box<dyn TagRuntime>, result: &str) {
        let next = Live::of(&bundle);
        next.publish(&self.id, Some(&self.live));
        tracing::info!(component = %self.id, from = %self.live.id(), to = %next.id(), sha256 = %next.sha256, "{}", if result == "rollback" { "rolled back; the previous model serves from the next batch" } else { "model update accepted; it serves from the next batch" });
        self.live = next;
        self.counted(result);
        // The tagging thread takes it between two batches; if it is gone, the transform stops.
        let _ = self.tx.send(runtime);
    }

    async fn rollback(&mut self) -> Result<String, String> {
        let previous = self.store.previous()?.ok_or("no previous model is kept for this transform")?;
        let (key, loader) = (self.key.clone(), self.loader.clone());
        let p = previous.clone();
        let runtime = tokio::task::spawn_blocking(move || check(&p, key.as_ref()).and_then(|_| loader.load(&p)))
            .await
            .map_err(|e| format!("loading the previous model failed: {e}"))?
            .map_err(|e| format!("the previous model {} is refused: {e}", previous.id()))?;
        let from = self.live.id();
        self.store.swap(&self.live.identity)?;
        let to = previous.id();
        self.go_live(previous, runtime, "rollback");
        Ok(format!("{from} -> {to}"))
    }
}

#[cfg(test)]
mod downgrade_tests {
    use super::*;

    fn live(name: &str, version: &str, created: &str) -> Live {
        Live {
            name: name.into(),
            version: version.into(),
            created: created.into(),
            sha256: String::new(),
            identity: String::new(),
        }
    }

    fn bundle(name: &str, version: &str, created: &str) -> Bundle {
        let mut b =
            Bundle::read_path(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/flows-portable"))
                .unwrap();
        b.manifest.name = name.into();
        b.manifest.version = version.into();
        b.manifest.created = created.into();
        b
    }

    #[test]
    fn older_builds_of_the_same_model_are_older() {
        let l = live("flows", "10", "2026-12-01T00:00:00Z");
        assert!(l.newer_than(&bundle("flows", "9", "2026-12-02T00:00:00Z")), "9 < 10 as numbers");
        assert!(!l.newer_than(&bundle("flows", "11", "2026-11-01T00:00:00Z")));
        assert!(l.newer_than(&bundle("flows", "10", "2026-11-30T00:00:00Z")), "same version, built earlier");
        assert!(!l.newer_than(&bundle("other", "1", "2020-01-01T00:00:00Z")), "another model is not a downgrade");
        assert!(live("flows", "1.10.0", "").newer_than(&bundle("flows", "1.9.3", "")));
    }
}
