//! What HEC's answers to `/services/collector/event` mean for a request.
//!
//! HEC answers with an HTTP status and a JSON body `{"text": ..., "code": N}` (Splunk's "Format
//! events for HTTP Event Collector" and "Troubleshoot HTTP Event Collector" list the codes).

use crate::net::client::Answer;
use crate::sinks::{classify, SendError};

/// The outcome of one events request.
#[derive(Debug)]
pub enum Outcome {
    /// Accepted; with indexer acknowledgements on, the id to poll for.
    Accepted {
        ack_id: Option<u64>,
    },
    /// The channel is unknown or missing: open a new one, then send again.
    NewChannel(String),
    Failed(SendError),
}

/// Map an answer: 200 with code 0 (or no code) accepts; 401/403 (the token) and 5xx, 429 are
/// retried; 400 with code 10 or 11 asks for a new channel; 400 with code 14 means
/// acknowledgements are off for the token; other 4xx refuse the events.
pub fn outcome(answer: &Answer) -> Outcome {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(&answer.body).ok();
    let code = parsed.as_ref().and_then(|v| v["code"].as_i64());
    let status = answer.status;
    match (status, code) {
        (200, Some(0)) | (200, None) => {
            Outcome::Accepted { ack_id: parsed.as_ref().and_then(|v| v["ackId"].as_u64()) }
        }
        (401 | 403, _) => {
            Outcome::Failed(SendError::Retry(format!("HEC token refused (HTTP {status}): {}", answer.snippet())))
        }
        (400, Some(10 | 11)) => Outcome::NewChannel(format!("HEC channel refused: {}", answer.snippet())),
        (400, Some(14)) => Outcome::Failed(SendError::Retry(format!(
            "HEC has indexer acknowledgement disabled for this token: {} (set acknowledgements.enabled = false, or enable it in Splunk)",
            answer.snippet()
        ))),
        _ => match classify(answer) {
            Ok(()) => Outcome::Accepted { ack_id: parsed.as_ref().and_then(|v| v["ackId"].as_u64()) },
            Err(e) => Outcome::Failed(e),
        },
    }
}

/// Map the health endpoint's answer, as Splunk documents `services/collector/health/1.0`:
/// 200 healthy; 400 the token is invalid; 503 HEC's queues are full.
pub fn health(answer: &Answer) -> Result<(), String> {
    match answer.status {
        200 => Ok(()),
        400 | 401 | 403 => Err(format!("HEC refused the token (HTTP {}): {}", answer.status, answer.snippet())),
        503 => Err(format!("HEC is unhealthy, its queues are full (HTTP 503): {}", answer.snippet())),
        status => Err(format!("HEC health endpoint answered HTTP {status}: {}", answer.snippet())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn answer(status: u16, body: &str) -> Answer {
        Answer { status, headers: Default::default(), body: Bytes::copy_from_slice(body.as_bytes()) }
    }

    #[test]
    fn each_documented_answer_maps_to_its_outcome() {
        assert!(matches!(
            outcome(&answer(200, r#"{"text":"Success","code":0,"ackId":7}"#)),
            Outcome::Accepted { ack_id: Some(7) }
        ));
        assert!(matches!(outcome(&answer(200, r#"{"text":"Success","code":0}"#)), Outcome::Accepted { ack_id: None }));
        assert!(matches!(outcome(&answer(200, "")), Outcome::Accepted { ack_id: None }));
        assert!(matches!(
            outcome(&answer(401, r#"{"text":"Invalid token","code":4}"#)),
            Outcome::Failed(SendError::Retry(_))
        ));
        assert!(matches!(outcome(&answer(403, r#"{"code":1}"#)), Outcome::Failed(SendError::Retry(_))));
        assert!(matches!(
            outcome(&answer(400, r#"{"text":"Data channel is missing","code":10}"#)),
            Outcome::NewChannel(_)
        ));
        assert!(matches!(
            outcome(&answer(400, r#"{"text":"Invalid data channel","code":11}"#)),
            Outcome::NewChannel(_)
        ));
        match outcome(&answer(400, r#"{"text":"ACK is disabled","code":14}"#)) {
            Outcome::Failed(SendError::Retry(m)) => assert!(m.contains("acknowledgements.enabled = false"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            outcome(&answer(400, r#"{"text":"Invalid data format","code":6}"#)),
            Outcome::Failed(SendError::Reject(_))
        ));
        assert!(matches!(
            outcome(&answer(503, r#"{"text":"Server is busy","code":9}"#)),
            Outcome::Failed(SendError::Retry(_))
        ));
        assert!(matches!(outcome(&answer(429, "")), Outcome::Failed(SendError::Retry(_))));
    }

    #[test]
    fn health_answers_say_what_is_wrong() {
        assert_eq!(health(&answer(200, r#"{"text":"HEC is healthy","code":17}"#)), Ok(()));
        assert!(health(&answer(400, r#"{"text":"Invalid HEC token","code":4}"#)).unwrap_err().contains("token"));
        assert!(health(&answer(503, r#"{"text":"HEC is unhealthy, queues are full","code":18}"#))
            .unwrap_err()
            .contains("queues are full"));
        assert!(health(&answer(404, "")).unwrap_err().contains("HTTP 404"));
    }
}
