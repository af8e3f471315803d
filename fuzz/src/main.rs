//! `flowtag-fuzz`: time-bounded fuzzing of what reads untrusted bytes, on stable Rust (no
//! nightly toolchain installs here, so no `cargo fuzz`). Each target takes inputs mutated from
//! its seeds (byte insertions, replacements, deletions, duplicated and spliced ranges, tokens
//! its format cares about) and checks a property, not only that nothing panics:
//!
//! | target | what | property |
//! |---|---|---|
//! | `json` | the plugin's JSON scanner | the SIMD fast path and the byte-at-a-time parser agree (verdict, object, members) |
//! | `decode` | the `json`, `csv`, `unsw`, `cicflowmeter`, `zeek` decoders | every line gives at most one record, and every record (malformed ones too) is a JSON object |
//! | `forward` | Fluent forward messages (msgpack) to JSON records | `value_len` measures what rmpv reads; every record written is a JSON object |
//! | `msgpack` | JSON records to msgpack, for the `fluent` sink | what it writes is one msgpack value, read back whole |
//! | `condition` | the condition language, parsed and evaluated | no panic |
//! | `filter` | the tag filter, native, over a batch of records (one per line) | one tagged JSON object and one result per record, whatever the record |
//! | `wasm` | the same through the WASM module's ABI under wasmtime (`target/flowtag_filter.wasm`, built by `scripts/build-wasm.sh`) | the same |
//! | `manifest` | bundle manifests | no panic |
//! | `tar` | bundle tars | no panic |
//! | `netflow` | NetFlow v5/v9 and IPFIX packets (2-byte length, then the packet), through one collector | every record is a JSON object; one error record per malformed packet |
//!
//! ```text
//! flowtag-fuzz [--seconds 10] [--target json,decode,...] [--seed 1] [--crashes DIR]
//! ```
//!
//! Prints executions and crashes per target; a crashing input is written to `--crashes` (and
//! the run fails), so it can become a regression test.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flowtag_host::decode::{Decoder, Decoding, Line};
use flowtag_host::fluent_forward as forward;
use flowtag_host::transforms::anomaly::runtime::wasm::{Limits, Plugin};
use flowtag_host::transforms::anomaly::runtime::{Loader, TagRuntime};
use flowtag_host::transforms::condition::{Condition, Scratch};
use flowtag_plugin::bundle::Bundle;
use flowtag_plugin::manifest::Manifest;
use flowtag_plugin::{FilterOptions, ReasonsMode};

/// A target: its seeds, tokens its format cares about, and the property checked on an input.
struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    tokens: &'static [&'static [u8]],
    check: fn(&[u8]) -> Result<(), String>,
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b":",
    b",",
    b"\\u0000",
    b"\\ud800",
    b"1e999",
    b"-0.0e-1",
    b"null",
    b"true",
    b" ",
    b"\n",
    b"\t",
    b"\xc3\xa9",
    b"\xff",
    b"\x00",
];

fn main() {
    let mut seconds = 10u64;
    let mut only: Option<Vec<String>> = None;
    let mut seed = 1u64;
    let mut crashes = PathBuf::from("target/fuzz-crashes");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--seconds" => seconds = value().parse().unwrap_or_else(|_| usage("--seconds takes a number")),
            "--target" => only = Some(value().split(',').map(str::to_string).collect()),
            "--seed" => seed = value().parse().unwrap_or_else(|_| usage("--seed takes a number")),
            "--crashes" => crashes = PathBuf::from(value()),
            _ => usage(&format!("unknown argument {a}")),
        }
    }
    let targets = targets();
    if let Some(only) = &only {
        for name in only {
            if !targets.iter().any(|t| t.name == name) {
                usage(&format!("no target {name}"));
            }
        }
    }
    // Panics are what we count; their messages would drown the report.
    std::panic::set_hook(Box::new(|_| {}));
    println!("| target | seconds | executions | per second | crashes |");
    println!("|---|---|---|---|---|");
    let mut failed = false;
    for t in targets.iter().filter(|t| only.as_ref().is_none_or(|o| o.iter().any(|n| n == t.name))) {
        let report = run(t, Duration::from_secs(seconds), seed, &crashes);
        failed |= report.crashes > 0;
        println!(
            "| {} | {} | {} | {:.0} | {} |",
            t.name,
            seconds,
            report.execs,
            report.execs as f64 / seconds.max(1) as f64,
            report.crashes
        );
        if let Some((path, why)) = report.first {
            println!("  first crash: {why} (input in {})", path.display());
        }
    }
    if failed {
        std::process::exit(1);
    }
}

fn usage(why: &str) -> ! {
    eprintln!("flowtag-fuzz: {why}\nusage: flowtag-fuzz [--seconds N] [--target a,b] [--seed N] [--crashes DIR]");
    std::process::exit(2);
}

struct Report {
    execs: u64,
    crashes: u64,
    first: Option<(PathBuf, String)>,
}

fn run(t: &Target, limit: Duration, seed: u64, crashes: &Path) -> Report {
    let mut rng =
        Rng(seed ^ t.name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)));
    let mut report = Report { execs: 0, crashes: 0, first: None };
    let start = Instant::now();
    // Seeds as they are first, then mutants.
    let mut queue: Vec<Vec<u8>> = t.seeds.clone();
    while start.elapsed() < limit {
        for _ in 0..64 {
            let input = queue.pop().unwrap_or_else(|| mutate(&mut rng, &t.seeds, t.tokens));
            let outcome = catch_unwind(AssertUnwindSafe(|| (t.check)(&input)));
            report.execs += 1;
            let why = match outcome {
                Ok(Ok(())) => continue,
                Ok(Err(why)) => why,
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    format!("panic: {text}")
                }
            };
            report.crashes += 1;
            let _ = std::fs::create_dir_all(crashes);
            let path = crashes.join(format!("{}-{:016x}.bin", t.name, fnv(&input)));
            let _ = std::fs::write(&path, &input);
            report.first.get_or_insert((path, why));
        }
    }
    report
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// A seed with 1 to 8 mutations.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], tokens: &[&[u8]]) -> Vec<u8> {
    let mut s = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(s.len() + 1);
        match rng.below(8) {
            0 => s.insert(at, rng.next() as u8),
            1 if at < s.len() => s[at] = rng.next() as u8,
            2 if at < s.len() => s[at] ^= 1 << rng.below(8),
            3 if at < s.len() => {
                let end = (at + 1 + rng.below(16)).min(s.len());
                s.drain(at..end);
            }
            4 if at < s.len() => {
                // Duplicate a range (repeated structure: nesting, lines).
                let end = (at + 1 + rng.below(64)).min(s.len());
                let chunk = s[at..end].to_vec();
                let to = rng.below(s.len() + 1);
                s.splice(to..to, chunk);
            }
            5 => {
                // Splice in a range of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(64)).min(other.len());
                    s.splice(at..at, other[a..b].iter().copied());
                }
            }
            6 => s.truncate(at),
            _ => {
                let token = tokens[rng.below(tokens.len())];
                s.splice(at..at, token.iter().copied());
            }
        }
    }
    s
}

fn targets() -> Vec<Target> {
    let records = [
        r#"{"id":1,"dur":0.947725,"proto":"udp","service":"-","spkts":154,"sload":213192.594662,"label":1}"#,
        r#"{"dur": 0.39, "proto": "udp", "sttl": 62, "x": null, "ok": true, "s": "é \" \\ \u0041"}"#,
        r#"{"nested":{"a":[1,2,{"b":[]}]},"esc":"q\"u","anomaly":{"score":0.99,"verdict":"anomalous","reasons":[{"feature":"rate","z":3.4}]}}"#,
        "{}",
    ];
    let json_seeds: Vec<Vec<u8>> = records.iter().map(|r| r.as_bytes().to_vec()).collect();
    let lines = |kind: u8, text: &str| -> Vec<u8> { [&[kind][..], text.as_bytes()].concat() };
    let decode_seeds = vec![
        lines(0, &records.join("\n")),
        lines(1, "id,dur,proto,label\n1,0.5,tcp,0\n2,\"1,5\",udp,1\n\"a \"\"q\"\"\",-,,x\n"),
        lines(2, "59.166.0.0,1390,149.171.126.6,53,udp,CON,0.001055,132,164,31,29,0,0,dns,500473.9375,621800.9375,2,2,0,0,0,0,66,82,0,0,0,0,1421927414,1421927414,0.017,0.013,0,0,0,0,0,0,0,0,0,3,7,1,3,1,1,1,,0\n"),
        lines(3, "Flow ID, Src IP, Src Port, Flow Duration, Label\n1-2-3,192.168.10.5,443,1200,BENIGN\n4,10.0.0.1,80,-1,DoS \u{96} Hulk\n"),
        lines(
            4,
            "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tproto\tduration\tservice\ttunnel_parents\n#types\ttime\tstring\taddr\tport\tenum\tinterval\tstring\tset[string]\n1.5\tCx\t10.0.0.1\t53\tudp\t0.1\t-\t(empty)\n",
        ),
        lines(
            5,
            "127.0.0.1 - - [05/Dec/2026:10:41:07 +0000] \"GET /s?q=%27+or+1 HTTP/1.1\" 200 615 \"-\" \"curl/7.88\"\nwww:443 1.2.3.4 - bob [t] \"\\x16\\x03\" 400 - \"a\\\"b\" \"-\"\n",
        ),
        lines(
            6,
            "{\"remote_addr\":\"1.2.3.4\",\"request\":\"GET /a?b=1 HTTP/1.1\",\"status\":\"200\",\"path\":\"/x\",\"uri\":\"/u\",\"args\":\"a=1\"}\n{\"RequestPath\":\"/p\",\"DownstreamStatus\":404,\"x\":[1,{}]}\n",
        ),
    ];
    vec![
        Target { name: "json", seeds: json_seeds.clone(), tokens: JSON_TOKENS, check: check_json },
        Target {
            name: "decode",
            seeds: decode_seeds,
            tokens: &[
                b",",
                b"\"",
                b"\t",
                b"\n",
                b"\r\n",
                b"#fields\t",
                b"#types\t",
                b"-",
                b"(empty)",
                b"\\x09",
                b"{",
                b"\xef\xbb\xbf",
                b"\x96",
            ],
            check: check_decode,
        },
        Target {
            name: "forward",
            seeds: forward_seeds(),
            tokens: &[
                b"\x92",
                b"\x93",
                b"\x81",
                b"\xa3tag",
                b"\xc0",
                b"\xd7\x00",
                b"\xdd\xff\xff\xff\xff",
                b"\xc6\x00\x00\x00\x10",
                b"\x00",
            ],
            check: check_forward,
        },
        Target { name: "msgpack", seeds: json_seeds.clone(), tokens: JSON_TOKENS, check: check_msgpack },
        Target {
            name: "condition",
            seeds: json_seeds
                .iter()
                .zip([
                    "anomaly.verdict == \"anomalous\"",
                    "proto in [\"tcp\", \"udp\"] && !exists(x)",
                    "anomaly.score >= 0.9 || .\"esc\" != \"q\"",
                    "ok",
                ])
                .map(|(r, c)| [c.as_bytes(), b"\n", r].concat())
                .collect(),
            tokens: &[
                b"==", b"&&", b"||", b"!", b"(", b")", b".", b"\"", b"[", b"]", b"exists(", b"in", b"1e999", b"\n",
            ],
            check: check_condition,
        },
        Target { name: "filter", seeds: vec![batch_seed()], tokens: JSON_TOKENS, check: check_filter },
        Target { name: "wasm", seeds: vec![batch_seed()], tokens: JSON_TOKENS, check: check_wasm },
        Target {
            name: "manifest",
            seeds: vec![fixture("iforest/manifest.json")],
            tokens: JSON_TOKENS,
            check: check_manifest,
        },
        Target {
            name: "tar",
            seeds: vec![bundle_tar("iforest")],
            tokens: &[b"\x00", b"0000777", b"ustar", b"99999999999"],
            check: check_tar,
        },
        Target {
            name: "text",
            seeds: [
                "/shop/item.jsp?id=7%27%20or%201=1--&q=a+b",
                "/%c0%af%u0041/%252e%252e?x=%zz%4&&=&a",
                "\u{1}q=1+union+select&c=%E2%82%AC",
            ]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect(),
            tokens: &[b"%", b"%25", b"%u", b"%c0", b"+", b"&", b"=", b"?", b"/", b"\xff", b"union", b"' or"],
            check: check_text,
        },
        Target {
            name: "netflow",
            seeds: netflow_seeds(),
            tokens: &[
                b"\x00\x09",
                b"\x00\x0a",
                b"\x00\x05",
                b"\xff",
                b"\xff\xff",
                b"\x01\x00",
                b"\x80",
                b"\x00\x00\x72\x79",
            ],
            check: check_netflow,
        },
    ]
}

/// Packets framed by a 2-byte length: v5 with one record; v9 with a template and a record;
/// IPFIX with an options template and record, a template with a variable-length, an
/// enterprise and a reverse field, and two records.
fn netflow_seeds() -> Vec<Vec<u8>> {
    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
    }
    fn framed(packets: &[Vec<u8>]) -> Vec<u8> {
        packets.iter().flat_map(|p| [&(p.len() as u16).to_be_bytes()[..], p].concat()).collect()
    }
    let v5 = hex("0005 0001 0000ea60 6553f100 1dcd6500 00000007 01 02 4064
                  0a000001 0a000101 00000000 0003 0004 00000005 000002bc 0000c350 0000e678
                  04d2 0050 00 1b 06 00 fde9 fdea 18 10 0000");
    let v9 = hex("0009 0002 00002710 6553f100 00000001 00000000
                  0000 0018 0100 0004 0008 0004 000c 0004 0001 0004 0016 0004
                  0100 0014 0a000001 0a000009 00000064 00000fa0");
    let ipfix = hex("000a 0089 6553f100 00000001 00000003
                     0003 0012 01f4 0002 0001 008f 0004 00a0 0008
                     01f4 0010 00000001 0000018bcfe5c800
                     0002 0024 0190 0005 0008 0004 0001 0004 8001 0008 00007279 0052 ffff 804d 0002 00000009
                     0190 0033 0a010101 000005dc 0000000000000063 04 65746830 beef
                               0a020202 00000063 0000000000000001 02 6162 cafe 000000");
    vec![
        framed(&[v5.clone()]),
        framed(&[v9.clone(), v9[..40].to_vec()]),
        framed(&[ipfix.clone()]),
        framed(&[v5, v9, ipfix]),
    ]
}

fn check_netflow(input: &[u8]) -> Result<(), String> {
    use flowtag_host::sources::netflow::decode::{Batch, Collector, Limits};
    let mut collector = Collector::new(Limits::default());
    let mut batch = Batch::default();
    let from = "192.0.2.1:2055".parse().expect("address");
    let now = std::time::Instant::now();
    let mut rest = input;
    let mut packets = 0;
    while rest.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        collector.packet(from, &rest[2..2 + len], now, &mut batch);
        rest = &rest[2 + len..];
        packets += 1;
    }
    for i in 0..batch.len() {
        is_object(batch.record(i).as_bytes())?;
    }
    if batch.bad.len() != collector.report.malformed || batch.bad.len() > packets {
        return Err(format!("{} error records for {} malformed packets", batch.bad.len(), collector.report.malformed));
    }
    if batch.bad.windows(2).any(|w| w[0].0 >= w[1].0) || batch.bad.last().is_some_and(|b| b.0 >= batch.len()) {
        return Err(format!("error record indices out of order or range: {:?}", batch.bad));
    }
    Ok(())
}

fn fixture(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/tests/fixtures").join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fixture bundle as a tar, as updates deliver it.
fn bundle_tar(name: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for file in ["manifest.json", "model.onnx"] {
        let data = fixture(&format!("{name}/{file}"));
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, file, &data[..]).expect("tar in memory");
    }
    b.into_inner().expect("tar in memory")
}

fn forward_seeds() -> Vec<Vec<u8>> {
    use rmpv::Value as V;
    let record =
        V::Map(vec![(V::from("proto"), V::from("udp")), (V::from("dur"), V::from(0.5)), (V::from("n"), V::from(-3))]);
    let time = V::Ext(0, vec![0x65, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02]);
    let entry = V::Array(vec![time.clone(), record.clone()]);
    let mut packed = Vec::new();
    rmpv::encode::write_value(&mut packed, &entry).unwrap();
    rmpv::encode::write_value(
        &mut packed,
        &V::Array(vec![V::Array(vec![time.clone(), V::Map(vec![])]), record.clone()]),
    )
    .unwrap();
    let options = V::Map(vec![(V::from("chunk"), V::from("abc"))]);
    let messages = [
        V::Array(vec![V::from("app.flows"), V::from(1_700_000_000), record.clone(), options.clone()]),
        V::Array(vec![V::from("app.flows"), V::Array(vec![entry.clone(), entry]), options.clone()]),
        V::Array(vec![V::from("app.flows"), V::Binary(packed), options]),
        V::Array(vec![V::from("x"), V::from(1), V::from("not a map")]),
    ];
    messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, m).unwrap();
            out
        })
        .collect()
}

fn check_json(input: &[u8]) -> Result<(), String> {
    flowtag_plugin::json::check_fast_path(input)
}

/// A record must be a JSON object, by serde_json, except where serde_json is stricter than
/// the grammar of RFC 8259: numbers it cannot hold (`1e999`) and lone surrogates (`"\ud800"`),
/// which records may carry through; those must still pass the plugin's scanner.
fn is_object(record: &[u8]) -> Result<(), String> {
    let lax = |e: &serde_json::Error| {
        let e = e.to_string();
        (e.contains("out of range") || e.contains("hex escape") || e.contains("surrogate"))
            && flowtag_plugin::json::scan_utf8_object(record, |_| {}).is_ok()
    };
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(record) {
        Ok(_) => Ok(()),
        Err(e) if lax(&e) => Ok(()),
        Err(e) => Err(format!("not a JSON object ({e}): {:?}", String::from_utf8_lossy(record))),
    }
}

fn check_decode(input: &[u8]) -> Result<(), String> {
    let Some((&kind, text)) = input.split_first() else { return Ok(()) };
    let kind = [
        Decoding::Json,
        Decoding::Csv,
        Decoding::Unsw,
        Decoding::Cicflowmeter,
        Decoding::Zeek,
        Decoding::Combined,
        Decoding::JsonAccess,
    ][usize::from(kind % 7)];
    let mut decoder = Decoder::new(kind);
    let mut out = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let before = out.len();
        match decoder.decode(line, &mut out) {
            Line::Skipped if out.len() != before => return Err("a skipped line wrote bytes".into()),
            Line::Skipped => {}
            Line::Record | Line::Malformed(_) => is_object(&out[before..])?,
        }
    }
    Ok(())
}

fn check_forward(input: &[u8]) -> Result<(), String> {
    let mut cursor = Cursor::new(input);
    while (cursor.position() as usize) < input.len() {
        let at = cursor.position() as usize;
        let measured = forward::value_len(&input[at..]);
        let read = rmpv::decode::read_value(&mut cursor);
        // The source measures a message before rmpv reads it: they must agree on its length.
        match (&read, measured) {
            (Ok(_), Ok(Some(n))) if n == cursor.position() as usize - at => {}
            (Err(rmpv::decode::Error::InvalidMarkerRead(e) | rmpv::decode::Error::InvalidDataRead(e)), Ok(None))
                if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            (Err(rmpv::decode::Error::DepthLimitExceeded), _) => {}
            (Err(_), Err(_)) => {}
            // rmpv reads the reserved byte 0xc1 as nil; the source refuses it, as the spec says
            // it is never used.
            (Ok(_), Err(e)) if e.contains("0xc1") => {}
            (read, measured) => {
                return Err(format!(
                    "rmpv read {read:?} up to {}, value_len says {measured:?}",
                    cursor.position() as usize - at
                ))
            }
        }
        let Ok(value) = read else { return Ok(()) };
        let Ok(message) = forward::parse(value) else { continue };
        for entry in &message.entries {
            let mut out = Vec::new();
            if forward::record_to_json(entry, &message.tag, "fluent_metadata", &mut out).is_ok() {
                is_object(&out)?;
            }
        }
    }
    Ok(())
}

fn check_msgpack(input: &[u8]) -> Result<(), String> {
    if flowtag_plugin::json::scan_object(input, |_| {}).is_err() {
        return Ok(());
    }
    let mut out = Vec::new();
    if forward::msgpack::object(input, &mut out).is_err() {
        return Ok(());
    }
    let mut cursor = Cursor::new(&out[..]);
    rmpv::decode::read_value(&mut cursor)
        .map_err(|e| format!("unreadable msgpack ({e}) from {:?}", String::from_utf8_lossy(input)))?;
    if cursor.position() as usize != out.len() {
        return Err(format!("bytes after the msgpack value, from {:?}", String::from_utf8_lossy(input)));
    }
    Ok(())
}

fn check_condition(input: &[u8]) -> Result<(), String> {
    let (text, record) = match input.iter().position(|&b| b == b'\n') {
        Some(nl) => (&input[..nl], &input[nl + 1..]),
        None => (input, &b"{}"[..]),
    };
    let Ok(text) = std::str::from_utf8(text) else { return Ok(()) };
    if let Ok(c) = text.parse::<Condition>() {
        c.eval(record, &mut Scratch::default());
    }
    Ok(())
}

/// A batch of fixture records, one per line, and a few that are not records at all.
fn batch_seed() -> Vec<u8> {
    let text = String::from_utf8(fixture("records.jsonl")).expect("UTF-8 fixture");
    let mut batch: Vec<&str> = text.lines().take(6).collect();
    batch.extend(["not json", "{\"dur\": \"NaN\", \"proto\": 7}", "[]"]);
    batch.join("\n").into_bytes()
}

thread_local! {
    static NATIVE: std::cell::RefCell<Option<Box<dyn TagRuntime>>> = const { std::cell::RefCell::new(None) };
    static WASM: std::cell::RefCell<Option<Box<dyn TagRuntime>>> = const { std::cell::RefCell::new(None) };
}

fn loader(wasm: bool) -> Loader {
    let options = FilterOptions { key: "anomaly".into(), reasons: ReasonsMode::All, max_reasons: 3 };
    if !wasm {
        return Loader::Native { options };
    }
    let module = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/flowtag_filter.wasm");
    let cache = std::env::temp_dir().join("flowtag-fuzz-wasm-cache");
    let plugin = Plugin::load(&module, &cache).unwrap_or_else(|e| panic!("{e} (build it with scripts/build-wasm.sh)"));
    Loader::Wasm {
        plugin: std::sync::Arc::new(plugin),
        options,
        limits: Limits {
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(10),
            load_timeout: Duration::from_secs(60),
        },
    }
}

/// Tag the input's lines as one batch: every record must come out as one JSON object with one
/// result, whatever it was.
fn tag_lines(
    runtime: &'static std::thread::LocalKey<std::cell::RefCell<Option<Box<dyn TagRuntime>>>>,
    wasm: bool,
    input: &[u8],
) -> Result<(), String> {
    let records: Vec<&[u8]> = input.split(|&b| b == b'\n').filter(|r| !r.trim_ascii().is_empty()).collect();
    if records.is_empty() {
        return Ok(());
    }
    runtime.with_borrow_mut(|rt| {
        let rt = rt.get_or_insert_with(|| {
            let bundle =
                Bundle::read_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin/tests/fixtures/iforest"))
                    .expect("fixture bundle");
            loader(wasm).load(&bundle).expect("fixture bundle loads")
        });
        let (mut out, mut ends) = (Vec::new(), Vec::new());
        rt.tag(&records, &mut out, &mut ends);
        if ends.len() != records.len() || rt.results().len() != records.len() {
            return Err(format!("{} records in, {} out, {} results", records.len(), ends.len(), rt.results().len()));
        }
        let mut start = 0;
        for (&end, r) in ends.iter().zip(rt.results()) {
            let record = &out[start..end];
            is_object(record)?;
            // Where the filter says its tags are, they are: the record's `anomaly` member (where
            // serde_json reads the record: it refuses lone surrogates that JSON allows).
            if let (Some((a, b)), Ok(whole)) = (r.tags, serde_json::from_slice::<serde_json::Value>(record)) {
                let tags: serde_json::Value =
                    serde_json::from_slice(record.get(a as usize..b as usize).ok_or("tags out of the record")?)
                        .map_err(|e| format!("the tags span is not JSON: {e}"))?;
                if whole.get("anomaly") != Some(&tags) {
                    return Err(format!(
                        "the tags span {a}..{b} is not the record's tags: {}",
                        String::from_utf8_lossy(record)
                    ));
                }
            }
            start = end;
        }
        Ok(())
    })
}

fn check_filter(input: &[u8]) -> Result<(), String> {
    tag_lines(&NATIVE, false, input)
}

fn check_wasm(input: &[u8]) -> Result<(), String> {
    tag_lines(&WASM, true, input)
}

/// The text featurizer (URL decoding, tokens, n-grams, keywords) and every reason it can show,
/// on arbitrary bytes; the first byte picks the shape. The block must be finite and its counts
/// whole, and decoding twice must not decode less than once.
fn check_text(input: &[u8]) -> Result<(), String> {
    use flowtag_plugin::manifest::{Hashing, KeywordGroup, TextShape, TextSpec};
    use flowtag_plugin::text::TextReader;
    let (shape, value) = match input.split_first() {
        Some((b, rest)) if b % 2 == 1 => (TextShape::Form, rest),
        Some((_, rest)) => (TextShape::Target, rest),
        None => (TextShape::Target, input),
    };
    let spec = |rounds| TextSpec {
        version: 1,
        max_bytes: 512,
        decode_rounds: rounds,
        shape,
        ngrams: Some(Hashing { n: 3, buckets: 31 }),
        tokens: Some(Hashing { n: 2, buckets: 37 }),
        keywords: vec![KeywordGroup { name: "k".into(), terms: vec!["union".into(), "' or".into(), "%".into()] }],
    };
    let mut once = TextReader::new(&spec(1));
    let mut twice = TextReader::new(&spec(2));
    let (mut a, mut b) = (vec![0f32; once.width()], vec![0f32; twice.width()]);
    once.write(value, &mut a);
    twice.write(value, &mut b);
    if let Some(v) = a.iter().chain(&b).find(|v| !v.is_finite() || **v < 0.0) {
        return Err(format!("a column is {v}"));
    }
    if b[6] < a[6] {
        return Err(format!("two rounds decoded less than one: {} < {}", b[6], a[6]));
    }
    for c in 0..twice.width() {
        if let Some(shown) = twice.explain(value, c, |c| c % 3 == 0) {
            if shown.len() > 3 * 80 {
                return Err(format!("column {c} shows {} bytes", shown.len()));
            }
        }
    }
    Ok(())
}

fn check_manifest(input: &[u8]) -> Result<(), String> {
    let _ = Manifest::parse(input);
    Ok(())
}

fn check_tar(input: &[u8]) -> Result<(), String> {
    let _ = Bundle::from_tar(input);
    Ok(())
}

#[cfg(test)]
mod tests {
    use flowtag_host::sources::netflow::decode::{Batch, Collector, Limits};

    /// The netflow seeds are packets the collector reads whole, so mutations start from depth.
    #[test]
    fn netflow_seeds_decode_to_records() {
        let seeds = super::netflow_seeds();
        let all = seeds.last().expect("seeds");
        let mut collector = Collector::new(Limits::default());
        let mut batch = Batch::default();
        let mut rest = &all[..];
        while rest.len() >= 2 {
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            collector.packet(
                "192.0.2.1:2055".parse().unwrap(),
                &rest[2..2 + len],
                std::time::Instant::now(),
                &mut batch,
            );
            rest = &rest[2 + len..];
        }
        assert!(batch.bad.is_empty(), "{:?}", batch.bad);
        let records: Vec<_> = (0..batch.len()).map(|i| batch.record(i).to_string()).collect();
        assert_eq!(records.len(), 4, "{records:?}");
        assert!(records[0].contains(r#""tcpControlBits":27"#), "v5: {}", records[0]);
        assert!(records[1].contains(r#""octetDeltaCount":100,"flowStartSysUpTime":4000"#), "v9: {}", records[1]);
        assert!(records[2].contains(r#""interfaceName":"eth0","e9_77":"beef""#), "IPFIX: {}", records[2]);
        assert!(records[3].contains(r#""reverseOctetDeltaCount":1"#), "IPFIX: {}", records[3]);
        assert_eq!(collector.report.options_records, 1);
    }
}
