//! `flowtag top --api 127.0.0.1:9598`: events in and out, errors, discards and buffered events
//! per component of a running flowtag, with rates, refreshed in the terminal (like `vector
//! top`). It reads the API's `/metrics`, so it works wherever the API is reachable.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// The figures of one component.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Row {
    pub kind: String,
    pub ty: String,
    pub received: f64,
    pub sent: f64,
    pub errors: f64,
    pub discarded: f64,
    pub buffered: f64,
}

/// Rows by component id, from the Prometheus text of `/metrics`.
pub fn rows(metrics: &str) -> BTreeMap<String, Row> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for line in metrics.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let label = |key: &str| -> Option<String> {
            labels.split("\",").find_map(|kv| {
                let (k, v) = kv.split_once("=\"")?;
                (k.trim_start_matches(',') == key).then(|| v.trim_end_matches('"').to_string())
            })
        };
        let Some(id) = label("component_id") else { continue };
        let row = rows.entry(id).or_default();
        if let Some(kind) = label("component_kind") {
            row.kind = kind;
        }
        if let Some(ty) = label("component_type") {
            row.ty = ty;
        }
        match name {
            "flowtag_component_received_events_total" => row.received += value,
            "flowtag_component_sent_events_total" => row.sent += value,
            "flowtag_component_errors_total" => row.errors += value,
            "flowtag_component_discarded_events_total" => row.discarded += value,
            "flowtag_buffer_events" => row.buffered += value,
            _ => {}
        }
    }
    rows.retain(|_, r| !r.kind.is_empty());
    rows
}

/// The table: every component, with per-second rates against `before` taken `dt` earlier.
pub fn table(now: &BTreeMap<String, Row>, before: &BTreeMap<String, Row>, dt: Duration) -> String {
    let secs = dt.as_secs_f64().max(1e-9);
    let mut out = format!(
        "{:<20} {:<10} {:<12} {:>12} {:>10} {:>12} {:>10} {:>8} {:>10} {:>9}\n",
        "ID", "KIND", "TYPE", "IN", "IN/s", "OUT", "OUT/s", "ERRORS", "DISCARDED", "BUFFERED"
    );
    for (id, r) in now {
        let b = before.get(id).cloned().unwrap_or_default();
        out += &format!(
            "{:<20} {:<10} {:<12} {:>12} {:>10.0} {:>12} {:>10.0} {:>8} {:>10} {:>9}\n",
            id,
            r.kind,
            r.ty,
            r.received,
            (r.received - b.received).max(0.0) / secs,
            r.sent,
            (r.sent - b.sent).max(0.0) / secs,
            r.errors,
            r.discarded,
            r.buffered
        );
    }
    out
}

/// `GET /metrics` from `api` (`host:port`).
fn fetch(api: &str) -> Result<String, String> {
    get(api, "/metrics", None, Duration::from_secs(10))
}

/// `GET path` from the API at `api` (`host:port`), with the API token if given; the body of a
/// 200 answer (at most 64 MiB), else an error with the status line and the answer.
pub fn get(api: &str, path: &str, token: Option<&str>, timeout: Duration) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect(api).map_err(|e| format!("{api}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {api}\r\n{auth}\r\n").map_err(|e| format!("{api}: {e}"))?;
    let mut raw = Vec::new();
    s.take(64 << 20).read_to_end(&mut raw).map_err(|e| format!("{api}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| format!("{api}: not an HTTP answer"))?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!("{api}{path}: {}: {}", head.lines().next().unwrap_or(""), body.trim()));
    }
    Ok(body.to_string())
}

/// Refresh every `interval` until interrupted, or print one table after one interval (`once`).
pub fn top(api: &str, interval: Duration, once: bool) -> i32 {
    let mut before = match fetch(api) {
        Ok(m) => rows(&m),
        Err(e) => {
            eprintln!("flowtag top: {e}");
            return 1;
        }
    };
    let mut at = Instant::now();
    let terminal = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(interval);
        let now = match fetch(api) {
            Ok(m) => rows(&m),
            Err(e) => {
                eprintln!("flowtag top: {e}");
                return 1;
            }
        };
        let text = table(&now, &before, at.elapsed());
        if terminal && !once {
            // Clear the screen and go home, then the table.
            print!("\x1b[2J\x1b[H{text}");
        } else {
            println!("{text}");
        }
        let _ = std::io::stdout().flush();
        if once {
            return 0;
        }
        before = now;
        at = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP flowtag_component_received_events_total Events in.
flowtag_component_received_events_total{component_id="flows",component_kind="source",component_type="file"} 1000
flowtag_component_sent_events_total{component_id="flows",component_kind="source",component_type="file"} 990
flowtag_component_discarded_events_total{component_id="pick",component_kind="transform",component_type="sample",reason="sampled"} 7
flowtag_component_errors_total{component_id="flows",component_kind="source",component_type="file",error_type="decode"} 2
flowtag_component_errors_total{component_id="flows",component_kind="source",component_type="file",error_type="io"} 1
flowtag_buffer_events{component_id="pick"} 12
flowtag_up 1
"#;

    #[test]
    fn metrics_become_rows_and_rates() {
        let now = rows(METRICS);
        assert_eq!(now["flows"].received, 1000.0);
        assert_eq!(now["flows"].errors, 3.0);
        assert_eq!(now["pick"].discarded, 7.0);
        assert_eq!(now["pick"].buffered, 12.0);
        assert_eq!(now["pick"].ty, "sample");
        let mut before = now.clone();
        before.get_mut("flows").unwrap().received = 500.0;
        let t = table(&now, &before, Duration::from_secs(2));
        let flows = t.lines().find(|l| l.starts_with("flows")).unwrap();
        assert!(flows.contains(" 250 "), "{flows}");
    }
}
