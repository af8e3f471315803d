//! The Forward Protocol v1 handshake (`shared_key`): the server sends `HELO` with a nonce, the
//! client answers `PING` with its hostname, a salt and `sha512_hex(salt + hostname + nonce +
//! shared_key)`, and the server answers `PONG` with the result and its own digest of the same
//! form (so the client knows the server holds the key too). User authentication (`username`,
//! `password`) is not used: both are sent empty, as the specification allows.

use rmpv::Value;
use sha2::{Digest, Sha512};

/// `sha512_hex(salt + hostname + nonce + shared_key)`.
pub fn digest(salt: &[u8], hostname: &str, nonce: &[u8], shared_key: &str) -> String {
    let mut h = Sha512::new();
    h.update(salt);
    h.update(hostname.as_bytes());
    h.update(nonce);
    h.update(shared_key.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, v).expect("writing to memory");
    out
}

fn bytes(v: &Value) -> Option<&[u8]> {
    v.as_slice().or_else(|| v.as_str().map(str::as_bytes))
}

/// `["HELO", {"nonce": nonce, "auth": "", "keepalive": true}]`.
pub fn helo(nonce: &[u8]) -> Vec<u8> {
    encode(&Value::Array(vec![
        "HELO".into(),
        Value::Map(vec![
            ("nonce".into(), Value::Binary(nonce.to_vec())),
            ("auth".into(), Value::Binary(Vec::new())),
            ("keepalive".into(), true.into()),
        ]),
    ]))
}

/// The nonce of a `HELO`.
pub fn read_helo(v: &Value) -> Result<Vec<u8>, String> {
    let a = v.as_array().filter(|a| a.len() == 2 && a[0].as_str() == Some("HELO"));
    let options = a.and_then(|a| a[1].as_map()).ok_or_else(|| format!("expected HELO, got {v}"))?;
    let nonce = options.iter().find(|(k, _)| k.as_str() == Some("nonce")).and_then(|(_, v)| bytes(v));
    nonce.map(<[u8]>::to_vec).ok_or_else(|| "HELO without a nonce".into())
}

/// `["PING", hostname, salt, digest, "", ""]`.
pub fn ping(hostname: &str, salt: &[u8], nonce: &[u8], shared_key: &str) -> Vec<u8> {
    encode(&Value::Array(vec![
        "PING".into(),
        hostname.into(),
        Value::Binary(salt.to_vec()),
        digest(salt, hostname, nonce, shared_key).into(),
        "".into(),
        "".into(),
    ]))
}

/// Check a `PING` against the nonce sent: the client's hostname and salt when its digest is
/// right, else why not.
pub fn check_ping(v: &Value, nonce: &[u8], shared_key: &str) -> Result<(String, Vec<u8>), String> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 6 && a[0].as_str() == Some("PING"))
        .ok_or_else(|| "expected PING".to_string())?;
    let hostname = a[1].as_str().ok_or("PING: hostname is not a string")?.to_string();
    let salt = bytes(&a[2]).ok_or("PING: salt is not a string")?.to_vec();
    let given = a[3].as_str().ok_or("PING: digest is not a string")?;
    if !crate::net::same_secret(given, &digest(&salt, &hostname, nonce, shared_key)) {
        return Err(format!("shared_key mismatch (client {hostname:?})"));
    }
    Ok((hostname, salt))
}

/// `["PONG", ok, reason, hostname, digest]` (an empty digest when refused).
pub fn pong(ok: bool, reason: &str, hostname: &str, salt: &[u8], nonce: &[u8], shared_key: &str) -> Vec<u8> {
    let d = if ok { digest(salt, hostname, nonce, shared_key) } else { String::new() };
    encode(&Value::Array(vec!["PONG".into(), ok.into(), reason.into(), hostname.into(), d.into()]))
}

/// Check a `PONG`: accepted, and the server proved it holds the key.
pub fn check_pong(v: &Value, salt: &[u8], nonce: &[u8], shared_key: &str) -> Result<(), String> {
    let a = v
        .as_array()
        .filter(|a| a.len() == 5 && a[0].as_str() == Some("PONG"))
        .ok_or_else(|| format!("expected PONG, got {v}"))?;
    if a[1].as_bool() != Some(true) {
        return Err(format!("the server refused the handshake: {}", a[2].as_str().unwrap_or("no reason given")));
    }
    let hostname = a[3].as_str().unwrap_or("");
    let given = a[4].as_str().unwrap_or("");
    if !crate::net::same_secret(given, &digest(salt, hostname, nonce, shared_key)) {
        return Err(format!("the server {hostname:?} does not hold the shared_key"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Value {
        rmpv::decode::read_value(&mut &b[..]).unwrap()
    }

    #[test]
    fn the_digest_is_sha512_hex_of_salt_hostname_nonce_key() {
        // Python: hashlib.sha512(b"salt" + b"node-1" + b"nonce-123" + b"k3y").hexdigest()
        assert_eq!(
            digest(b"salt", "node-1", b"nonce-123", "k3y"),
            "403cd8c57a8993ac8fc04903f666523f1e163c31672fd15672b266151b4e5c2cb656761f29bf4f0a885254448820ef17eaf159d2d8bd1fc9ae86db3a9e555b53"
        );
    }

    #[test]
    fn a_client_and_a_server_with_the_same_key_agree_and_a_wrong_key_is_refused() {
        let nonce = b"nonce-123";
        let sent = decode(&helo(nonce));
        assert_eq!(read_helo(&sent).unwrap(), nonce);
        let ping_ok = decode(&ping("node-1", b"salt", nonce, "k3y"));
        let (host, salt) = check_ping(&ping_ok, nonce, "k3y").unwrap();
        assert_eq!((host.as_str(), salt.as_slice()), ("node-1", &b"salt"[..]));
        let answer = decode(&pong(true, "", "agg", &salt, nonce, "k3y"));
        check_pong(&answer, &salt, nonce, "k3y").unwrap();
        // The server's digest must be of the key: a server without it is caught.
        assert!(check_pong(&answer, &salt, nonce, "other").is_err());
        let wrong = decode(&ping("node-1", b"salt", nonce, "wrong"));
        assert!(check_ping(&wrong, nonce, "k3y").unwrap_err().contains("shared_key mismatch"));
        let refused = decode(&pong(false, "shared_key mismatch", "", b"", nonce, "k3y"));
        assert!(check_pong(&refused, b"salt", nonce, "k3y").unwrap_err().contains("refused"));
    }
}
