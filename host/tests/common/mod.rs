//! Test support: run the real `flowtag` binary, talk to it over 127.0.0.1, and play the far
//! end of its sinks with small strict peers. Every wait is bounded.

#![allow(dead_code)]

pub mod tls;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn flowtag() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flowtag"))
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn fixture_bundle(name: &str) -> PathBuf {
    repo().join("plugin/tests/fixtures").join(name)
}

pub fn datasets() -> PathBuf {
    std::env::var_os("FLOWTAG_DATASETS").map(PathBuf::from).unwrap_or_else(|| repo().join("../shared/datasets"))
}

/// A free port on 127.0.0.1.
/// The head of most end-to-end configs: `data_dir`, the API on `api`, and a file source
/// `flows` reading `input`. The caller appends the source's other keys and the rest.
pub fn file_source_head(data: &Path, api: u16, input: &Path) -> String {
    format!(
        "data_dir = \"{}\"\n[api]\naddress = \"127.0.0.1:{api}\"\n[sources.flows]\ntype = \"file\"\ninclude = [\"{}\"]\n",
        data.display(),
        input.display()
    )
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Wait until `cond` holds, at most `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `flowtag run`; killed when dropped.
pub struct Flowtag {
    pub child: Child,
    pub api: u16,
    pub log: PathBuf,
}

impl Flowtag {
    /// Start `flowtag run` with `config` (its `[api] address` must be `127.0.0.1:<api>`).
    pub fn start(dir: &Path, config: &str, api: u16) -> Flowtag {
        Flowtag::start_with_env(dir, config, api, &[])
    }

    pub fn start_with_env(dir: &Path, config: &str, api: u16, env: &[(&str, &str)]) -> Flowtag {
        let mut ft = Flowtag::launch(dir, config, api, env);
        ft.wait_ready();
        ft
    }

    /// Start it and wait only until it serves `/health` (alive, though maybe not ready: a sink
    /// whose far end is failing keeps `/ready` at 503).
    pub fn start_live(dir: &Path, config: &str, api: u16, env: &[(&str, &str)]) -> Flowtag {
        let mut ft = Flowtag::launch(dir, config, api, env);
        ft.wait_for("/health");
        ft
    }

    /// Start it with these `flowtag run` arguments instead of the tests' usual ones, and wait
    /// until it serves `/health`.
    pub fn start_args(dir: &Path, config: &str, api: u16, args: &[&str]) -> Flowtag {
        let mut ft = Flowtag::launch_args(dir, config, api, &[], args);
        ft.wait_for("/health");
        ft
    }

    fn launch(dir: &Path, config: &str, api: u16, env: &[(&str, &str)]) -> Flowtag {
        Flowtag::launch_args(dir, config, api, env, &["--graceful-shutdown-limit", "20s"])
    }

    fn launch_args(dir: &Path, config: &str, api: u16, env: &[(&str, &str)], args: &[&str]) -> Flowtag {
        let path = dir.join("flowtag.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.join(format!("flowtag-{}.log", Instant::now().elapsed().as_nanos() ^ rand_suffix()));
        let mut cmd = Command::new(flowtag());
        cmd.args(["run", "--config"]).arg(&path).args(args);
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Flowtag { child, api, log }
    }

    /// Wait for `/ready`; a process that exits first fails the test with its log.
    pub fn wait_ready(&mut self) {
        self.wait_for("/ready")
    }

    fn wait_for(&mut self, path: &str) {
        wait_until(Duration::from_secs(60), &format!("flowtag {path}"), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("flowtag exited ({status}) before {path} answered 200:\n{}", self.log());
            }
            http_get(self.api, path).map(|(s, _)| s == 200).unwrap_or(false)
        });
    }

    pub fn metrics(&self) -> Metrics {
        Metrics::parse(&http_get(self.api, "/metrics").expect("metrics").1)
    }

    /// `flowtag_component_sent_events_total` of a component (for a sink: what it delivered).
    pub fn sent(&self, component: &str) -> f64 {
        self.metrics().sum("flowtag_component_sent_events_total", &[("component_id", component)])
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "flowtag did not stop after SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc_kill(self.child.id() as i32, sig) };
    }

    /// SIGKILL: no chance to drain.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Flowtag {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u128 {
    std::process::id() as u128 * 7919
        + std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u128
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Parsed Prometheus text.
pub struct Metrics(pub Vec<(String, f64)>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }

    /// Sum of every series of `name` whose labels include all of `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k == name || k.starts_with(&format!("{name}{{")))
            .filter(|(k, _)| labels.iter().all(|(l, v)| k.contains(&format!("{l}=\"{v}\""))))
            .map(|(_, v)| v)
            .sum()
    }
}

/// `GET` over a fresh connection: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// `POST` over a fresh connection: (status, body).
pub fn http_post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut req = format!("POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// One request as a peer sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    /// The body, gunzipped when it says so.
    pub fn decoded_body(&self) -> Vec<u8> {
        if self.header("content-encoding").is_some_and(|v| v.eq_ignore_ascii_case("gzip")) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(&self.body[..]).read_to_end(&mut out).expect("valid gzip");
            out
        } else {
            self.body.clone()
        }
    }
}

/// A small HTTP/1.1 server (keep-alive, Content-Length bodies) on its own threads.
pub struct HttpPeer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl HttpPeer {
    pub fn start(handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> HttpPeer {
        HttpPeer::start_on(0, handler)
    }

    pub fn start_on(port: u16, handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static) -> HttpPeer {
        HttpPeer::start_with(port, None, handler)
    }

    /// The same peer over HTTPS, presenting `tls`'s certificate.
    pub fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpPeer {
        HttpPeer::start_with(0, Some(tls), handler)
    }

    fn start_with(
        port: u16,
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpPeer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        let (stop2, reqs2) = (stop.clone(), requests.clone());
        std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (handler, reqs, stop) = (handler.clone(), reqs2.clone(), stop2.clone());
                        stream.set_nonblocking(false).ok();
                        stream.set_read_timeout(Some(Duration::from_millis(200))).ok();
                        match &tls {
                            None => std::thread::spawn(move || serve(stream, &*handler, &reqs, &stop)),
                            Some(config) => {
                                let conn = rustls::ServerConnection::new(config.clone()).unwrap();
                                let stream = rustls::StreamOwned::new(conn, stream);
                                std::thread::spawn(move || serve(stream, &*handler, &reqs, &stop))
                            }
                        };
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        HttpPeer { port, stop, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    stream: impl Read + Write,
    handler: &dyn Fn(&Request) -> (u16, String),
    reqs: &Mutex<Vec<Request>>,
    stop: &AtomicBool,
) {
    let mut reader = BufReader::new(stream);
    let idle_limit = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::SeqCst) && Instant::now() < idle_limit {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                continue
            }
            Err(_) => return,
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match reader.read(&mut body[got..]) {
                Ok(0) => return,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                    continue
                }
                Err(_) => return,
            }
        }
        let req = Request { method, target, headers, body };
        let (status, answer) = handler(&req);
        reqs.lock().unwrap().push(req);
        let reason = if status < 300 { "OK" } else { "Error" };
        let resp = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        let writer = reader.get_mut();
        if writer.write_all(resp.as_bytes()).and_then(|_| writer.flush()).is_err() {
            return;
        }
    }
}

/// The complete JSON lines of a file (missing file: none). A sink may be in the middle of
/// writing a line while a test polls, so a last line without its newline is not read yet.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}
