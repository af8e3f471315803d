//! The `stdin` source: records from standard input, until it closes.
//!
//! When standard input ends and every other source has finished, flowtag drains and exits, so
//! `cat flows.csv | flowtag run --config tag.toml` works as a one-shot pipeline.

use std::io::{BufRead, Read};

use serde::Deserialize;

use super::{decode_lines, SourceContext};
use crate::decode::{Decoder, Decoding};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    #[serde(default)]
    pub decoding: Decoding,
    /// Extra names for the fields of JSON access logs (`decoding = "json_access"`).
    #[serde(default)]
    pub access_fields: std::sync::Arc<crate::decode::AccessFields>,
}

impl crate::component::ComponentConfig for StdinConfig {
    const TYPE: &'static str = "stdin";
    const DEAD_LETTER: bool = true;
}

impl super::SourceType for StdinConfig {
    async fn start(self, ctx: SourceContext) -> Result<super::Started, String> {
        Ok(super::Started::Thread(spawn(self, ctx)))
    }
}

pub fn spawn(cfg: StdinConfig, ctx: SourceContext) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut decoder = Decoder::new(cfg.decoding)
                .with_json_check(ctx.check_json)
                .with_access_fields(cfg.access_fields.clone());
            let stdin = std::io::stdin();
            let mut input = std::io::BufReader::with_capacity(256 * 1024, stdin.lock());
            let mut chunk = Vec::with_capacity(256 * 1024);
            ctx.health.ready(&ctx.id);
            while !ctx.shutdown.is_stopping() {
                chunk.clear();
                // Take whole lines: what is buffered, then up to the next newline.
                let buffered = match input.fill_buf() {
                    Ok([]) => break,
                    Ok(b) => b.len(),
                    Err(e) => {
                        tracing::error!(error = %e, "reading stdin failed");
                        break;
                    }
                };
                let _ = (&mut input).take(buffered as u64).read_to_end(&mut chunk);
                if chunk.last() != Some(&b'\n') && input.read_until(b'\n', &mut chunk).is_err() {
                    break;
                }
                let (events, bad) = decode_lines(&mut decoder, &chunk, &ctx.metrics);
                if events.is_empty() {
                    continue;
                }
                ctx.metrics.received(events.len(), chunk.len());
                let n = events.len();
                if ctx.outlets(events, &bad).into_iter().any(|(out, events)| out.blocking_send(events).is_err()) {
                    break;
                }
                ctx.metrics.sent(n);
            }
        })
        .expect("spawn the stdin thread")
}
