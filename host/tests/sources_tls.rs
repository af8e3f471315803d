//! The `http` source over TLS, with a bearer token, with Basic credentials and with client
//! certificates, driven by a real client (curl) on 127.0.0.1.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::tls::TestCa;
use common::*;

/// curl's answer: (HTTP status, body); status 0 when no HTTP exchange happened (TLS refused).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

fn config(dir: &Path, api: u16, port: u16, source_extra: &str) -> String {
    format!(
        "data_dir = \"{data}\"\n[api]\naddress = \"127.0.0.1:{api}\"\n\
         [sources.intake]\ntype = \"http\"\naddress = \"127.0.0.1:{port}\"\npath = \"/flows\"\n{source_extra}\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"intake\"]\npath = \"{out}\"\n",
        data = dir.join("data").display(),
        out = dir.join("out.jsonl").display(),
    )
}

#[test]
fn https_with_a_bearer_token_refuses_what_lacks_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    let (crt, key) = ca.write_server(dir.path());
    let (api, port) = (free_port(), free_port());
    let extra = format!(
        "auth.token = \"${{INTAKE_TOKEN}}\"\ntls.crt_file = \"{}\"\ntls.key_file = \"{}\"",
        crt.display(),
        key.display()
    );
    let ft = Flowtag::start_with_env(
        dir.path(),
        &config(dir.path(), api, port, &extra),
        api,
        &[("INTAKE_TOKEN", "t0k-\"x")],
    );
    let url = format!("https://127.0.0.1:{port}/flows");
    let ca = ca_file.display().to_string();
    let body = "{\"a\":1}\n{\"a\":2}\n";

    let (status, answer) = curl(&["--cacert", &ca, "-H", "Authorization: Bearer t0k-\"x", "--data-binary", body, &url]);
    assert_eq!((status, answer.trim()), (200, "{\"accepted\":2}"));
    assert_eq!(curl(&["--cacert", &ca, "--data-binary", body, &url]).0, 401, "no token");
    assert_eq!(curl(&["--cacert", &ca, "-H", "Authorization: Bearer nope", "--data-binary", body, &url]).0, 401);
    // Without the CA curl does not trust the certificate; plain HTTP gets no HTTP answer.
    assert_eq!(curl(&["--data-binary", body, &url]).0, 0);
    assert_eq!(curl(&["--data-binary", body, &format!("http://127.0.0.1:{port}/flows")]).0, 0);
    wait_until(Duration::from_secs(10), "the two records", || read_jsonl(&dir.path().join("out.jsonl")).len() == 2);
    assert!(ft.terminate().success());
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")).len(), 2, "refused requests added nothing");
}

#[test]
fn basic_credentials_from_a_file_and_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    let (crt, key) = ca.write_server(dir.path());
    let (client_crt, client_key) = ca.write_client(dir.path(), "exporter");
    std::fs::write(dir.path().join("password"), "s3cr3t\n").unwrap();
    let (api, port) = (free_port(), free_port());
    let extra = format!(
        "auth.user = \"exporter\"\nauth.password_file = \"{}\"\ntls.crt_file = \"{}\"\ntls.key_file = \"{}\"\ntls.client_ca_file = \"{}\"",
        dir.path().join("password").display(),
        crt.display(),
        key.display(),
        ca_file.display()
    );
    let ft = Flowtag::start(dir.path(), &config(dir.path(), api, port, &extra), api);
    let url = format!("https://127.0.0.1:{port}/flows");
    let (ca, cc, ck) =
        (ca_file.display().to_string(), client_crt.display().to_string(), client_key.display().to_string());
    let body = "{\"b\":1}\n";
    // No client certificate: the handshake is refused.
    assert_eq!(curl(&["--cacert", &ca, "-u", "exporter:s3cr3t", "--data-binary", body, &url]).0, 0);
    let with_cert = ["--cacert", ca.as_str(), "--cert", cc.as_str(), "--key", ck.as_str()];
    let wrong: Vec<&str> =
        with_cert.iter().copied().chain(["-u", "exporter:wrong", "--data-binary", body, &url]).collect();
    assert_eq!(curl(&wrong).0, 401);
    let right: Vec<&str> =
        with_cert.iter().copied().chain(["-u", "exporter:s3cr3t", "--data-binary", body, &url]).collect();
    assert_eq!(curl(&right).0, 200);
    wait_until(Duration::from_secs(10), "the record", || read_jsonl(&dir.path().join("out.jsonl")).len() == 1);
    assert!(ft.terminate().success());
}

#[test]
fn the_tcp_source_over_tls_takes_lines_from_openssl_and_nothing_in_the_clear() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = ca.write_ca(dir.path());
    let (crt, key) = ca.write_server(dir.path());
    let (api, port) = (free_port(), free_port());
    let cfg = format!(
        "data_dir = \"{data}\"\n[api]\naddress = \"127.0.0.1:{api}\"\n\
         [sources.collector]\ntype = \"tcp\"\naddress = \"127.0.0.1:{port}\"\ntls.crt_file = \"{crt}\"\ntls.key_file = \"{key}\"\n\
         [sinks.out]\ntype = \"file\"\ninputs = [\"collector\"]\npath = \"{out}\"\n",
        data = dir.path().join("data").display(),
        crt = crt.display(),
        key = key.display(),
        out = dir.path().join("out.jsonl").display(),
    );
    let ft = Flowtag::start(dir.path(), &cfg, api);
    // In the clear: the handshake fails and the line is not read.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _ = s.write_all(b"{\"clear\":1}\n");
    }
    // openssl s_client, verifying the server against the test CA.
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-verify_return_error", "-connect", &format!("127.0.0.1:{port}"), "-CAfile"])
        .arg(&ca_file)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"{\"tls\":1}\n{\"tls\":2}\n").unwrap();
        wait_until(Duration::from_secs(10), "two records over TLS", || {
            read_jsonl(&dir.path().join("out.jsonl")).len() >= 2
        });
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(ft.terminate().success());
    let lines = read_jsonl(&dir.path().join("out.jsonl"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.get("tls").is_some()), "a clear-text line got in: {lines:?}");
}
