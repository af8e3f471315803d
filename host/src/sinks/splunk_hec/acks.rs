//! Indexer acknowledgements: polling `POST /services/collector/ack?channel=<channel>` with
//! `{"acks": [id]}` until Splunk answers `{"acks": {"<id>": true}}`, or the timeout passes.

use std::time::Instant;

use crate::net::client::{self, HttpClient};
use crate::sinks::SendError;

use super::config::HecConfig;
use super::Requests;

/// Wait until `ack_id` on `channel` is indexed. `Err(Retry)` when it is not within
/// `acknowledgements.timeout`: the request is sent again, as Splunk's documentation advises.
pub async fn wait_for(
    client: &HttpClient,
    requests: &Requests,
    cfg: &HecConfig,
    channel: &str,
    ack_id: u64,
) -> Result<(), SendError> {
    let started = Instant::now();
    let url = requests.url(&format!("/services/collector/ack?channel={channel}"));
    loop {
        tokio::time::sleep(cfg.acknowledgements.query_interval.0).await;
        let body = format!("{{\"acks\":[{ack_id}]}}").into_bytes();
        let req = requests.post(&url, channel, body, None)?;
        match client::send(client, req, cfg.request.timeout.0).await {
            Ok(answer) if answer.status == 200 => {
                if acknowledged(&answer.body, ack_id)? {
                    return Ok(());
                }
            }
            Ok(answer) => tracing::warn!(status = answer.status, answer = %answer.snippet(), "HEC ack poll failed"),
            Err(e) => tracing::warn!(error = %e, "HEC ack poll failed"),
        }
        if started.elapsed() >= cfg.acknowledgements.timeout.0 {
            return Err(SendError::Retry(format!(
                "Splunk did not acknowledge ackId {ack_id} within {}; sending the events again",
                cfg.acknowledgements.timeout
            )));
        }
    }
}

/// Whether an ack answer reports `ack_id` as indexed.
fn acknowledged(body: &[u8], ack_id: u64) -> Result<bool, SendError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| SendError::Retry(format!("ack answer is not JSON: {e}")))?;
    Ok(v["acks"][ack_id.to_string()].as_bool() == Some(true))
}

#[cfg(test)]
mod tests {
    use super::acknowledged;

    #[test]
    fn an_id_is_acknowledged_only_when_reported_true() {
        assert!(acknowledged(br#"{"acks":{"3":true,"4":false}}"#, 3).unwrap());
        assert!(!acknowledged(br#"{"acks":{"3":true,"4":false}}"#, 4).unwrap());
        assert!(!acknowledged(br#"{"acks":{}}"#, 5).unwrap());
        assert!(acknowledged(b"not json", 1).is_err());
    }
}
