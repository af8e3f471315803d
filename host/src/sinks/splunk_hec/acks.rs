//! Indexer acknowledgements, tracked by their own task.
//!
//! Each accepted request's `ackId` is registered with the [`Tracker`], which hands back the
//! receiver the sink's driver waits on; many requests can await their acknowledgement at once.
//! Every `acknowledgements.query_interval` the task asks Splunk about all pending ids of a
//! channel in one request (`POST /services/collector/ack?channel=<channel>`, `{"acks": [ids]}`)
//! and resolves each id Splunk reports `true` (Splunk forgets an id once it reported it). An id
//! not acknowledged within `acknowledgements.timeout` resolves as a retry: only that request is
//! sent again, as Splunk's documentation advises, so duplicates are bounded by what was in flight
//! when an acknowledgement was lost. The task ends with the sink.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::Requests;
use crate::net::client::{self, HttpClient};
use crate::sinks::SendError;

/// Ids asked about in one poll at most.
const IDS_PER_POLL: usize = 1000;

type Waiting = BTreeMap<(String, u64), (Instant, oneshot::Sender<Result<(), SendError>>)>;

/// The pending acknowledgements of one sink.
pub struct Tracker {
    waiting: Arc<Mutex<Waiting>>,
}

/// What the polling task needs.
pub struct Poll {
    pub client: HttpClient,
    pub requests: Arc<Requests>,
    pub interval: Duration,
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub sink: String,
}

impl Tracker {
    /// A tracker and its polling task (on the current tokio runtime).
    pub fn start(poll: Poll) -> Tracker {
        let waiting: Arc<Mutex<Waiting>> = Arc::default();
        tokio::spawn(run(Arc::downgrade(&waiting), poll));
        Tracker { waiting }
    }

    /// Wait for `ack_id` on `channel`.
    pub fn register(&self, channel: &str, ack_id: u64) -> oneshot::Receiver<Result<(), SendError>> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("acks lock").insert((channel.to_string(), ack_id), (Instant::now(), tx));
        rx
    }

    /// Requests awaiting their acknowledgement.
    pub fn len(&self) -> usize {
        self.waiting.lock().expect("acks lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn run(waiting: Weak<Mutex<Waiting>>, poll: Poll) {
    loop {
        tokio::time::sleep(poll.interval).await;
        let Some(waiting) = waiting.upgrade() else { return };
        // Timed out: resolved as a retry (the receiver may be gone: the sink stopped).
        let mut by_channel: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        {
            let mut w = waiting.lock().expect("acks lock");
            let expired: Vec<(String, u64)> =
                w.iter().filter(|(_, (at, _))| at.elapsed() >= poll.timeout).map(|(k, _)| k.clone()).collect();
            for key in expired {
                if let Some((_, tx)) = w.remove(&key) {
                    let _ = tx.send(Err(SendError::Retry(format!(
                        "Splunk did not acknowledge ackId {} within {:?}; sending the events again",
                        key.1, poll.timeout
                    ))));
                }
            }
            for (channel, id) in w.keys() {
                by_channel.entry(channel.clone()).or_default().push(*id);
            }
        }
        for (channel, ids) in by_channel {
            for chunk in ids.chunks(IDS_PER_POLL) {
                match ask(&poll, &channel, chunk).await {
                    Ok(done) => {
                        let mut w = waiting.lock().expect("acks lock");
                        for id in done {
                            if let Some((_, tx)) = w.remove(&(channel.clone(), id)) {
                                let _ = tx.send(Ok(()));
                            }
                        }
                    }
                    Err(e) => tracing::warn!(sink = %poll.sink, error = %e, "HEC ack poll failed"),
                }
            }
        }
    }
}

/// Which of `ids` Splunk reports indexed.
async fn ask(poll: &Poll, channel: &str, ids: &[u64]) -> Result<Vec<u64>, String> {
    let url = poll.requests.url(&format!("/services/collector/ack?channel={channel}"));
    let body = serde_json::to_vec(&serde_json::json!({ "acks": ids })).expect("JSON");
    let req = poll.requests.post(&url, channel, body, None).map_err(|e| format!("{e:?}"))?;
    let answer = client::send(&poll.client, req, poll.request_timeout).await.map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP {}: {}", answer.status, answer.snippet()));
    }
    acknowledged(&answer.body, ids)
}

/// The ids an ack answer (`{"acks": {"<id>": true, ...}}`) reports as indexed.
fn acknowledged(body: &[u8], ids: &[u64]) -> Result<Vec<u64>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("ack answer is not JSON: {e}"))?;
    let acks = v["acks"].as_object().ok_or("ack answer has no `acks` object")?;
    Ok(ids.iter().copied().filter(|id| acks.get(&id.to_string()).and_then(|b| b.as_bool()) == Some(true)).collect())
}

#[cfg(test)]
mod tests {
    use super::acknowledged;

    #[test]
    fn an_id_is_acknowledged_only_when_reported_true() {
        assert_eq!(acknowledged(br#"{"acks":{"3":true,"4":false}}"#, &[3, 4, 5]).unwrap(), vec![3]);
        assert!(acknowledged(br#"{"acks":{}}"#, &[5]).unwrap().is_empty());
        assert!(acknowledged(b"not json", &[1]).is_err());
        assert!(acknowledged(br#"{"text":"x"}"#, &[1]).is_err());
    }
}
