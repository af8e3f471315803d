//! Model pushes against the real binary under continuous load: a watched directory (with a
//! half-written bundle that must not be picked up, a tampered one, a restart without the source,
//! a rollback over the API) and an HTTP source with ETags and Ed25519 signatures, under the
//! WASM runtime. Every record in comes out once, tagged by exactly one model version, and the
//! versions follow the swaps in order.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::*;
use ed25519_dalek::{Signer, SigningKey};

/// The shipped portable bundle with its version set to `version` (and optionally a flipped
/// model byte), written to `dir`.
fn bundle_version(dir: &Path, version: &str, tamper: bool) -> PathBuf {
    let src = repo().join("models/flows-portable");
    std::fs::create_dir_all(dir).unwrap();
    let manifest = std::fs::read_to_string(src.join("manifest.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    doc["version"] = serde_json::Value::String(version.into());
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let mut model = std::fs::read(src.join("model.onnx")).unwrap();
    if tamper {
        let n = model.len() / 2;
        model[n] ^= 0x55;
    }
    std::fs::write(dir.join("model.onnx"), model).unwrap();
    dir.to_path_buf()
}

fn sign(dir: &Path, key: &SigningKey) {
    let sig = key.sign(&std::fs::read(dir.join("manifest.json")).unwrap());
    std::fs::write(dir.join("manifest.sig"), base64::engine::general_purpose::STANDARD.encode(sig.to_bytes())).unwrap();
}

fn public_pem(key: &SigningKey) -> String {
    let mut der = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    der.extend_from_slice(key.verifying_key().as_bytes());
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(der)
    )
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for name in ["manifest.json", "model.onnx", "manifest.sig"] {
        if dir.join(name).exists() {
            b.append_path_with_name(dir.join(name), name).unwrap();
        }
    }
    b.into_inner().unwrap()
}

/// Appends flow records with a `seq` to `path` until stopped (about 2,000 a second).
struct Load {
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(path: &Path) -> Load {
        let (stop, written) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let (s, w, path) = (stop.clone(), written.clone(), path.to_path_buf());
        let thread = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
            let mut i = 0usize;
            while !s.load(Ordering::SeqCst) && i < 400_000 {
                let mut chunk = String::new();
                for _ in 0..100 {
                    chunk.push_str(&format!(
                        "{{\"seq\":{i},\"dur\":{:.3},\"proto\":\"{}\",\"service\":\"{}\",\"spkts\":{},\"dpkts\":{},\"sbytes\":{},\"dbytes\":{}}}\n",
                        (i % 89) as f64 / 10.0,
                        ["tcp", "udp"][i % 2],
                        ["-", "dns", "http"][i % 3],
                        2 + i % 30,
                        1 + i % 20,
                        100 + 37 * (i % 1000),
                        50 + 91 * (i % 700),
                    ));
                    i += 1;
                }
                f.write_all(chunk.as_bytes()).unwrap();
                w.store(i, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Load { stop, written, thread: Some(thread) }
    }

    fn stop(&mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.written.load(Ordering::SeqCst)
    }
}

fn config(dir: &Path, api: u16, model: &Path, runtime: &str, updates: &str) -> String {
    format!(
        r#"
{head}
poll_interval = "50ms"
[transforms.tag]
type = "anomaly"
inputs = ["flows"]
model = "{model}"
{runtime}
batch.max_events = 128
[transforms.tag.updates]
interval = "200ms"
{updates}
[sinks.out]
type = "file"
inputs = ["tag"]
path = "{out}"
"#,
        head = file_source_head(&dir.join("data"), api, &dir.join("flows.jsonl")),
        model = model.display(),
        out = dir.join("out.jsonl").display(),
    )
}

fn serving(ft: &Flowtag, version: &str) -> bool {
    ft.metrics().sum("flowtag_model_info", &[("component_id", "tag"), ("version", version)]) == 1.0
}

fn reloads(ft: &Flowtag, result: &str) -> f64 {
    ft.metrics().sum("flowtag_model_reloads_total", &[("result", result)])
}

/// Every record once; the model of each, in `seq` order.
fn models_in_order(out: &Path, written: usize) -> Vec<String> {
    let lines = read_jsonl(out);
    let mut by_seq: HashMap<i64, String> = HashMap::new();
    for l in &lines {
        let seq = l["seq"].as_i64().expect("seq");
        let model = l["anomaly"]["model"].as_str().expect("every record names its model").to_string();
        assert_ne!(l["anomaly"]["verdict"], "unscored", "{l}");
        if let Some(before) = by_seq.insert(seq, model.clone()) {
            assert_eq!(before, model, "record {seq} came out twice with different models");
        }
    }
    assert_eq!(by_seq.len(), written, "every record in comes out");
    (0..written as i64).map(|s| by_seq[&s].clone()).collect()
}

/// The distinct models in the order they served (consecutive runs collapsed).
fn runs(models: &[String]) -> Vec<String> {
    let mut r: Vec<String> = Vec::new();
    for m in models {
        if r.last() != Some(m) {
            r.push(m.clone());
        }
    }
    r
}

#[test]
fn directory_updates_half_written_tampered_restart_and_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = bundle_version(&dir.path().join("v1"), "1", false);
    let push = dir.path().join("push");
    let api = free_port();
    let cfg = config(dir.path(), api, &v1, "", &format!("source = \"dir\"\npath = \"{}\"", push.display()));
    // POST /model/rollback changes what the node serves: it takes the API token.
    let token_file = dir.path().join("api-token");
    std::fs::write(&token_file, "first-token\n").unwrap();
    let cfg = cfg.replacen(
        &format!("address = \"127.0.0.1:{api}\"\n"),
        &format!("address = \"127.0.0.1:{api}\"\ntoken_file = \"{}\"\n", token_file.display()),
        1,
    );
    assert!(cfg.contains("token_file"));
    let mut load = Load::start(&dir.path().join("flows.jsonl"));
    let mut ft = Flowtag::start(dir.path(), &cfg, api);
    ft.wait_ready();
    assert!(serving(&ft, "1"));

    // Half-written: the manifest of v2 is there, its model not yet; then a truncated model.
    let v2 = bundle_version(&dir.path().join("v2"), "2", false);
    std::fs::create_dir_all(&push).unwrap();
    std::fs::copy(v2.join("manifest.json"), push.join("manifest.json")).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let model = std::fs::read(v2.join("model.onnx")).unwrap();
    std::fs::write(push.join("model.onnx"), &model[..model.len() / 3]).unwrap();
    std::thread::sleep(Duration::from_millis(150));
    assert!(serving(&ft, "1"), "a half-written bundle must not be picked up");
    assert_eq!(reloads(&ft, "ok"), 0.0);
    // Complete: picked up within a few intervals.
    std::fs::write(push.join("model.onnx"), &model).unwrap();
    wait_until(Duration::from_secs(10), "v2 to serve", || serving(&ft, "2"));
    assert_eq!(reloads(&ft, "ok"), 1.0);

    // Tampered v3 (the model no longer matches the manifest's sha256): refused, v2 kept.
    let v3 = bundle_version(&dir.path().join("v3"), "3", true);
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(v3.join(f), push.join(f)).unwrap();
    }
    wait_until(Duration::from_secs(10), "v3 to be refused", || reloads(&ft, "refused") >= 1.0);
    assert!(serving(&ft, "2") && !serving(&ft, "3"));
    assert!(ft.log().contains("sha256"), "the refusal names the reason:\n{}", ft.log());

    // The valid, signed-as-before v1 pushed again (a stale or replayed push): a downgrade, refused.
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(v1.join(f), push.join(f)).unwrap();
    }
    wait_until(Duration::from_secs(10), "v1 to be refused", || reloads(&ft, "refused") >= 2.0);
    assert!(serving(&ft, "2") && !serving(&ft, "1"));
    assert!(ft.log().contains("older than the live flows-portable@2"), "{}", ft.log());

    // A newer v4 without canary rows: the node cannot check it, refused.
    let v4 = bundle_version(&dir.path().join("v4"), "4", false);
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(v4.join("manifest.json")).unwrap()).unwrap();
    doc["canaries"] = serde_json::json!([]);
    std::fs::write(v4.join("manifest.json"), serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(v4.join(f), push.join(f)).unwrap();
    }
    wait_until(Duration::from_secs(10), "v4 to be refused", || reloads(&ft, "refused") >= 3.0);
    assert!(serving(&ft, "2") && !serving(&ft, "4"));
    assert!(ft.log().contains("flows-portable@4 has no canary rows"), "{}", ft.log());

    // Restart without the source: the kept v2 serves, not the configured v1.
    assert!(ft.terminate().success());
    std::fs::remove_dir_all(&push).unwrap();
    let mut ft = Flowtag::start(dir.path(), &cfg, api);
    ft.wait_ready();
    assert!(serving(&ft, "2"), "{}", ft.log());

    // Rollback over the API: refused without the token or with a wrong one; the Secret
    // rotated, the old token is refused and the new one taken; then v1 serves again, and v2 is
    // not taken again from the source.
    assert_eq!(http_post(api, "/model/rollback", &[], b"").unwrap().0, 401);
    assert_eq!(http_post(api, "/model/rollback", &[("Authorization", "Bearer nope")], b"").unwrap().0, 401);
    std::fs::write(&token_file, "second-token").unwrap();
    assert_eq!(http_post(api, "/model/rollback", &[("Authorization", "Bearer first-token")], b"").unwrap().0, 401);
    assert!(serving(&ft, "2"), "a refused rollback changed nothing");
    let auth = [("Authorization", "Bearer second-token")];
    let (status, body) = http_post(api, "/model/rollback", &auth, b"").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("flows-portable@2 -> flows-portable@1"), "{body}");
    assert!(serving(&ft, "1") && !serving(&ft, "2"));
    std::fs::create_dir_all(&push).unwrap();
    for f in ["model.onnx", "manifest.json"] {
        std::fs::copy(v2.join(f), push.join(f)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(800));
    assert!(serving(&ft, "1"), "a bundle rolled back from is not taken again");
    assert_eq!(http_post(api, "/model/rollback?transform=nope", &auth, b"").unwrap().0, 404);
    assert_eq!(common::http_get(api, "/health").unwrap().0, 200, "GET stays open for probes");

    let written = load.stop();
    wait_until(Duration::from_secs(20), "every record out", || {
        read_jsonl(&dir.path().join("out.jsonl")).len() >= written
    });
    assert!(ft.terminate().success());
    let models = models_in_order(&dir.path().join("out.jsonl"), written);
    assert_eq!(
        runs(&models),
        ["flows-portable@1", "flows-portable@2", "flows-portable@1"],
        "versions follow the swaps in order"
    );

    // A config pin: kept are v1 (current) and v2 (previous); pinned to 2, a restart serves v2
    // without any source; pinned to a version not kept, the configured model serves.
    std::fs::remove_dir_all(&push).unwrap();
    let pinned = cfg.replace("source = \"dir\"", "pin = \"2\"\nsource = \"dir\"");
    let mut ft = Flowtag::start(dir.path(), &pinned, api);
    ft.wait_ready();
    assert!(serving(&ft, "2"), "{}", ft.log());
    assert!(ft.terminate().success());
    let mut ft = Flowtag::start(dir.path(), &cfg.replace("source = \"dir\"", "pin = \"9\"\nsource = \"dir\""), api);
    ft.wait_ready();
    assert!(serving(&ft, "1"));
    assert!(ft.log().contains("pinned version not kept yet"), "{}", ft.log());
    assert!(ft.terminate().success());
}

/// A bundle server: `GET /bundle.tar` with a strong ETag; `If-None-Match` with the current tag
/// gets 304. `None` as the body answers 503.
struct BundleServer {
    port: u16,
    body: Arc<Mutex<Option<Vec<u8>>>>,
    hits: Arc<Mutex<Vec<(Option<String>, u16)>>>,
}

impl BundleServer {
    fn start() -> BundleServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let body: Arc<Mutex<Option<Vec<u8>>>> = Arc::new(Mutex::new(None));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (b, h) = (body.clone(), hits.clone());
        listener.set_nonblocking(false).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(10_000) {
                let Ok(mut stream) = stream else { continue };
                stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut inm = None;
                let mut line = String::new();
                let mut first = true;
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let l = line.trim_end().to_string();
                    line.clear();
                    if l.is_empty() {
                        break;
                    }
                    if first {
                        assert!(l.starts_with("GET /bundle.tar "), "{l}");
                        first = false;
                    }
                    if let Some((k, v)) = l.split_once(':') {
                        if k.eq_ignore_ascii_case("if-none-match") {
                            inm = Some(v.trim().to_string());
                        }
                    }
                }
                let current = b.lock().unwrap().clone();
                let (status, etag, payload) = match current {
                    None => (503, String::new(), Vec::new()),
                    Some(data) => {
                        let etag = format!(
                            "\"{:x}\"",
                            data.iter().fold(0u64, |a, &x| a.wrapping_mul(31).wrapping_add(x as u64))
                        );
                        if inm.as_deref() == Some(etag.as_str()) {
                            (304, etag, Vec::new())
                        } else {
                            (200, etag, data)
                        }
                    }
                };
                h.lock().unwrap().push((inm, status));
                let head = format!(
                    "HTTP/1.1 {status} X\r\nETag: {etag}\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    payload.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|_| stream.write_all(&payload));
                let _ = stream.read(&mut [0u8; 1]);
            }
        });
        BundleServer { port, body, hits }
    }

    fn serve(&self, data: Option<Vec<u8>>) {
        *self.body.lock().unwrap() = data;
    }
}

#[test]
fn http_updates_with_etags_and_signatures_under_wasm() {
    let wasm = repo().join("target/flowtag_filter.wasm");
    assert!(wasm.exists(), "{} is missing: build it with `make wasm`", wasm.display());
    let dir = tempfile::tempdir().unwrap();
    // Seed the compiled-module cache (compiling takes seconds; not what this test is about).
    let cache = repo().join("target/test-wasm-cache");
    let seeded = Command::new(flowtag())
        .args(["model", "verify"])
        .arg(repo().join("models/flows-portable"))
        .arg("--plugin")
        .arg(&wasm)
        .arg("--data-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(seeded.status.success(), "{}", String::from_utf8_lossy(&seeded.stderr));
    std::fs::create_dir_all(dir.path().join("data/wasm-cache")).unwrap();
    for e in std::fs::read_dir(cache.join("wasm-cache")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join("data/wasm-cache").join(e.file_name())).unwrap();
    }

    let key = SigningKey::from_bytes(&[7u8; 32]);
    let other = SigningKey::from_bytes(&[9u8; 32]);
    std::fs::write(dir.path().join("models.pub"), public_pem(&key)).unwrap();
    let v1 = bundle_version(&dir.path().join("v1"), "1", false);
    let v2 = bundle_version(&dir.path().join("v2"), "2", false);
    sign(&v2, &key);
    let v3 = bundle_version(&dir.path().join("v3"), "3", false);
    sign(&v3, &other);
    let v4 = bundle_version(&dir.path().join("v4"), "4", false);

    let server = BundleServer::start();
    server.serve(None);
    let api = free_port();
    let updates = format!(
        "source = \"http\"\nurl = \"http://127.0.0.1:{}/bundle.tar\"\npublic_key = \"{}\"",
        server.port,
        dir.path().join("models.pub").display()
    );
    let runtime = format!("runtime = \"wasm\"\nplugin = \"{}\"", wasm.display());
    let cfg = config(dir.path(), api, &v1, &runtime, &updates);
    let mut load = Load::start(&dir.path().join("flows.jsonl"));
    let mut ft = Flowtag::start(dir.path(), &cfg, api);
    ft.wait_ready();
    assert!(serving(&ft, "1"));
    // The server is down (503): counted as an error, v1 kept.
    wait_until(Duration::from_secs(10), "a failed check", || reloads(&ft, "error") >= 1.0);
    assert!(serving(&ft, "1"));

    server.serve(Some(tar_of(&v2)));
    wait_until(Duration::from_secs(20), "v2 to serve", || serving(&ft, "2"));
    // Then the same ETag is answered 304 and nothing is downloaded again.
    let before = server.hits.lock().unwrap().len();
    wait_until(Duration::from_secs(10), "more checks", || server.hits.lock().unwrap().len() >= before + 3);
    assert!(server.hits.lock().unwrap()[before..].iter().all(|(inm, s)| inm.is_some() && *s == 304));
    assert_eq!(reloads(&ft, "ok"), 1.0);

    // Signed by another key, then unsigned: both refused, v2 kept.
    server.serve(Some(tar_of(&v3)));
    wait_until(Duration::from_secs(10), "v3 refused", || reloads(&ft, "refused") >= 1.0);
    server.serve(Some(tar_of(&v4)));
    wait_until(Duration::from_secs(10), "v4 refused", || reloads(&ft, "refused") >= 2.0);
    assert!(serving(&ft, "2"));
    let log = ft.log();
    assert!(log.contains("another key") && log.contains("unsigned"), "{log}");

    let written = load.stop();
    wait_until(Duration::from_secs(30), "every record out", || {
        read_jsonl(&dir.path().join("out.jsonl")).len() >= written
    });
    assert!(ft.terminate().success());
    let models = models_in_order(&dir.path().join("out.jsonl"), written);
    assert_eq!(runs(&models), ["flows-portable@1", "flows-portable@2"]);
}

#[test]
fn bad_updates_config_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = repo().join("models/flows-portable");
    let check = |updates: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config(dir.path(), 1, &v1, "", updates)).unwrap();
        let out = Command::new(flowtag()).args(["validate", "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success(), "{updates}");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    assert!(check("source = \"dir\"").contains("transforms.tag.updates.path"));
    assert!(check("source = \"mlflow\"\nuri = \"http://127.0.0.1:5000\"").contains("transforms.tag.updates.model_name"));
    assert!(check("source = \"http\"\nurl = \"ftp://x/b.tar\"").contains("transforms.tag.updates.url"));
    assert!(check("source = \"ftp\"").contains("unknown variant `ftp`, expected one of `dir`, `http`, `mlflow`"));
    std::fs::write(dir.path().join("bad.pub"), "not a key").unwrap();
    let bad_key =
        format!("source = \"dir\"\npath = \"/tmp\"\npublic_key = \"{}\"", dir.path().join("bad.pub").display());
    assert!(check(&bad_key).contains("transforms.tag.updates.public_key"));
}
