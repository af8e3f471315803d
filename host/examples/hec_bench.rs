//! How fast one `splunk_hec` sink delivers, in events per second confirmed, into a strict HEC
//! peer over HTTPS (a test CA, as in the tests) that acknowledges after 1 s, after 5 s, and as a
//! token with acknowledgement off. The sink runs in-process with the host's own driver, fed as
//! fast as it takes events; an event counts once Splunk's acknowledgement for it arrived (or,
//! acks off, once HEC accepted it). Prints a markdown table. Figures, not assertions.
//!
//!     cargo run --release -p flowtag-host --example hec_bench -- [--seconds 20]
//!
//! Records are `flowtag gen --schema unsw --format json` flows (about 700 bytes). The peer runs
//! on the same 2 cores as the sink, so the figures include its cost.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use flowtag_host::cli::generate::{self as gen, Format, GenArgs, Schema};
use flowtag_host::event::{BatchAck, Event, Notifier};
use flowtag_host::fanout::{self, Output};
use flowtag_host::shutdown::Shutdown;
use flowtag_host::sinks::{SinkConfig, SinkStart};

/// The peer: acknowledges each id `delay` after it issued it (or issues none).
struct Peer {
    delay: Option<Duration>,
    events: AtomicU64,
    issued: Mutex<HashMap<(String, u64), Instant>>,
    next: Mutex<HashMap<String, u64>>,
}

fn answer(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder().status(status).body(Full::new(Bytes::from(body))).unwrap()
}

async fn handle(peer: Arc<Peer>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let channel = req.headers().get("x-splunk-request-channel").and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorized = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some("Splunk bench-token");
    let path = req.uri().path().to_string();
    if path == "/services/collector/health/1.0" {
        return Ok(answer(200, r#"{"text":"HEC is healthy","code":17}"#.into()));
    }
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let (Some(channel), true) = (channel, authorized) else {
        return Ok(answer(401, r#"{"text":"Token is required","code":2}"#.into()));
    };
    if path == "/services/collector/ack" {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let mut acks = serde_json::Map::new();
        let mut issued = peer.issued.lock().unwrap();
        for id in v["acks"].as_array().into_iter().flatten().filter_map(|i| i.as_u64()) {
            let key = (channel.clone(), id);
            let done = issued.get(&key).is_some_and(|at| at.elapsed() >= peer.delay.unwrap_or_default());
            if done {
                issued.remove(&key);
            }
            acks.insert(id.to_string(), done.into());
        }
        return Ok(answer(200, serde_json::json!({ "acks": acks }).to_string()));
    }
    let n = memchr::memmem::find_iter(&body, b"{\"event\":").count() as u64;
    peer.events.fetch_add(n, Ordering::Relaxed);
    let Some(_) = peer.delay else {
        return Ok(answer(200, r#"{"text":"Success","code":0}"#.into()));
    };
    let id = {
        let mut next = peer.next.lock().unwrap();
        let n = next.entry(channel.clone()).or_default();
        *n += 1;
        *n - 1
    };
    peer.issued.lock().unwrap().insert((channel, id), Instant::now());
    Ok(answer(200, format!(r#"{{"text":"Success","code":0,"ackId":{id}}}"#)))
}

/// An HTTPS HEC peer on 127.0.0.1; returns its port and the CA file that signed it.
async fn start_peer(peer: Arc<Peer>, dir: &std::path::Path) -> (u16, std::path::PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "flowtag bench CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, peer) = (acceptor.clone(), peer.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req| handle(peer.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
            });
        }
    });
    (port, ca_file)
}

/// Events per second confirmed by one sink over `seconds`, and what the peer received.
async fn run(records: &[Bytes], delay: Option<Duration>, seconds: f64) -> (f64, u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    let peer =
        Arc::new(Peer { delay, events: AtomicU64::new(0), issued: Default::default(), next: Default::default() });
    let (port, ca_file) = start_peer(peer.clone(), dir.path()).await;
    let cfg: SinkConfig = toml::from_str(&format!(
        "type = \"splunk_hec\"\ninputs = [\"x\"]\nendpoint = \"https://127.0.0.1:{port}\"\ntoken = \"bench-token\"\n\
         acknowledgements.enabled = {}\nacknowledgements.query_interval = \"200ms\"\ntls.ca_file = {:?}\n",
        delay.is_some(),
        ca_file.display().to_string()
    ))
    .unwrap();
    let (target, inbox) = fanout::inbox("bench", 8);
    let shutdown = Shutdown::new(Duration::from_secs(30));
    let health = flowtag_host::health::Health::default();
    let sink = cfg
        .start(SinkStart {
            id: "bench".into(),
            index: 0,
            n_sinks: 1,
            inbox,
            dead_letters: None,
            shutdown,
            health,
            data_dir: dir.path().to_path_buf(),
        })
        .unwrap();
    let out = Output::new(vec![target], vec![]);
    let confirmed = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let counter = confirmed.clone();
    tokio::spawn(async move {
        while let Some((n, done)) = rx.recv().await {
            let _: flowtag_host::event::Completion = done;
            counter.fetch_add(n, Ordering::Relaxed);
        }
    });
    let start = Instant::now();
    let mut batch_id = 0u64;
    let mut offset = 0;
    while start.elapsed().as_secs_f64() < seconds {
        const BATCH: usize = 500;
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let ack = BatchAck::new(batch_id, BATCH, &[(0, 1)], 1, &[], Notifier::Tokio(done_tx));
        let events: Vec<Event> =
            (0..BATCH).map(|i| Event::with_ack(records[(offset + i) % records.len()].clone(), &ack)).collect();
        offset += BATCH;
        batch_id += 1;
        let tx = tx.clone();
        tokio::spawn(async move {
            if let Some(c) = done_rx.recv().await {
                let _ = tx.send((BATCH as u64, c));
            }
        });
        if out.send(events).await.is_err() {
            break;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = confirmed.load(Ordering::Relaxed) as f64 / elapsed;
    drop(out);
    sink.abort();
    (rate, confirmed.load(Ordering::Relaxed), peer.events.load(Ordering::Relaxed))
}

fn main() {
    let mut seconds = 20.0;
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--seconds") {
        seconds = args[i + 1].parse().expect("--seconds N");
    }
    let mut text = Vec::new();
    gen::write(
        &GenArgs { schema: Schema::Unsw, count: 20_000, rate: None, format: Format::Json, seed: 7, attack_share: 0.1 },
        &mut text,
    )
    .unwrap();
    let records: Vec<Bytes> =
        text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(Bytes::copy_from_slice).collect();
    let bytes = records.iter().map(|r| r.len()).sum::<usize>() / records.len();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    println!("| acknowledgements | events/s confirmed | confirmed | received by the peer |");
    println!("|---|---|---|---|");
    for (label, delay) in
        [("after 1 s", Some(Duration::from_secs(1))), ("after 5 s", Some(Duration::from_secs(5))), ("off", None)]
    {
        let (rate, confirmed, received) = rt.block_on(run(&records, delay, seconds));
        println!("| {label} | {rate:.0} | {confirmed} | {received} |");
    }
    println!("\n{} s per run, records of {bytes} B, HTTPS, no compression, HEC defaults (2,000 events or 1 MiB per request, 100 requests awaiting acks)", seconds);
}
