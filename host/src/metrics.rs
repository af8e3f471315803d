//! Prometheus metrics, named in Vector's style with a `flowtag_` prefix and labelled by
//! component. One registry for the process, so counters survive config reloads.

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub received: IntCounterVec,
    pub received_bytes: IntCounterVec,
    pub sent: IntCounterVec,
    pub errors: IntCounterVec,
    pub discarded: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub anomalies: IntCounterVec,
    pub top_reasons: IntCounterVec,
    pub scored: IntCounterVec,
    pub score: HistogramVec,
    pub inference: HistogramVec,
    pub model_info: GaugeVec,
    pub model_version: GaugeVec,
    pub model_offered_version: GaugeVec,
    pub model_reloads: IntCounterVec,
    pub model_last_check: GaugeVec,
    pub calibration_state: GaugeVec,
    pub score_drift_psi: GaugeVec,
    pub buffer_events: IntGaugeVec,
    pub buffer_bytes: IntGaugeVec,
    pub disk_buffer_bytes: IntGaugeVec,
    pub disk_buffer_events: IntGaugeVec,
    pub sink_retries: IntCounterVec,
    pub alerts_sent: IntCounterVec,
    pub alerts_suppressed: IntCounterVec,
    pub up: IntGauge,
}

const COMPONENT: [&str; 3] = ["component_id", "component_kind", "component_type"];

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn with(base: &[&'static str], extra: &'static str) -> Vec<&'static str> {
    base.iter().copied().chain([extra]).collect()
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let score = HistogramVec::new(
            HistogramOpts::new("flowtag_anomaly_score", "Calibrated anomaly scores of tagged records (0..1).")
                .buckets(vec![0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 1.0]),
            &["component_id", "model"],
        )
        .expect("valid metric");
        r.register(Box::new(score.clone())).expect("registered once");
        let inference = HistogramVec::new(
            HistogramOpts::new("flowtag_inference_seconds", "Time to tag one batch (featurize, score, tag).")
                .buckets(exponential_buckets(0.000_05, 2.0, 16).expect("valid buckets")),
            &["component_id"],
        )
        .expect("valid metric");
        r.register(Box::new(inference.clone())).expect("registered once");
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            r.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let model_info = gauge(
            "flowtag_model_info",
            "The model a tag transform serves (value 1).",
            &["component_id", "name", "version", "sha256"],
        );
        let model_version = gauge(
            "flowtag_model_version",
            "The served model's version as a number (bundles with numeric versions, as MLflow's).",
            &["component_id"],
        );
        let model_offered_version = gauge(
            "flowtag_model_offered_version",
            "The version the update source last offered (taken or not), as a number.",
            &["component_id"],
        );
        let model_last_check = gauge(
            "flowtag_model_last_check_timestamp_seconds",
            "When the transform last checked for a new model bundle.",
            &["component_id"],
        );
        let calibration_state = gauge(
            "flowtag_anomaly_calibration_state",
            "Where a tag transform's calibration stands: 0 the bundle's, 1 warming up, 2 this node's own.",
            &["component_id"],
        );
        let score_drift_psi = gauge(
            "flowtag_anomaly_score_drift_psi",
            "Population stability index of the transform's recent raw scores against the bundle's calibration (deciles).",
            &["component_id"],
        );
        let buffer_events = IntGaugeVec::new(
            Opts::new("flowtag_buffer_events", "Events waiting in a component's input buffer."),
            &["component_id"],
        )
        .expect("valid metric");
        r.register(Box::new(buffer_events.clone())).expect("registered once");
        let buffer_bytes = IntGaugeVec::new(
            Opts::new("flowtag_buffer_bytes", "Bytes of the events waiting in a component's input buffer."),
            &["component_id"],
        )
        .expect("valid metric");
        r.register(Box::new(buffer_bytes.clone())).expect("registered once");
        let disk_buffer_bytes = IntGaugeVec::new(
            Opts::new("flowtag_disk_buffer_bytes", "Bytes a sink's disk buffer holds on disk."),
            &["component_id"],
        )
        .expect("valid metric");
        r.register(Box::new(disk_buffer_bytes.clone())).expect("registered once");
        let disk_buffer_events = IntGaugeVec::new(
            Opts::new(
                "flowtag_disk_buffer_events",
                "Events in a sink's disk buffer that its far end has not confirmed.",
            ),
            &["component_id"],
        )
        .expect("valid metric");
        r.register(Box::new(disk_buffer_events.clone())).expect("registered once");
        let up = IntGauge::new("flowtag_up", "1 while the pipeline is running.").expect("valid metric");
        r.register(Box::new(up.clone())).expect("registered once");
        Metrics {
            received: counter(
                &r,
                "flowtag_component_received_events_total",
                "Events a component received.",
                &COMPONENT,
            ),
            received_bytes: counter(
                &r,
                "flowtag_component_received_bytes_total",
                "Bytes of the events a component received.",
                &COMPONENT,
            ),
            sent: counter(
                &r,
                "flowtag_component_sent_events_total",
                "Events a component sent on (sinks: delivered).",
                &COMPONENT,
            ),
            errors: counter(&r, "flowtag_component_errors_total", "Errors, by type.", &with(&COMPONENT, "error_type")),
            discarded: counter(
                &r,
                "flowtag_component_discarded_events_total",
                "Events dropped on purpose, by reason.",
                &with(&COMPONENT, "reason"),
            ),
            dead_letters: counter(
                &r,
                "flowtag_component_dead_letter_events_total",
                "Events sent to the component's dead_letter output, by cause (decode, unscored, refused).",
                &with(&COMPONENT, "cause"),
            ),
            anomalies: counter(&r, "flowtag_anomalies_total", "Records tagged anomalous.", &["component_id", "model"]),
            top_reasons: counter(
                &r,
                "flowtag_anomaly_top_reason_total",
                "Anomalous records by the feature that drove their score most (their first reason).",
                &["component_id", "model", "feature"],
            ),
            scored: counter(
                &r,
                "flowtag_scored_events_total",
                "Records scored (anomalous or normal).",
                &["component_id", "model"],
            ),
            score,
            inference,
            model_info,
            model_version,
            model_offered_version,
            model_reloads: counter(
                &r,
                "flowtag_model_reloads_total",
                "Model bundle updates, by result (ok, refused).",
                &["component_id", "result"],
            ),
            model_last_check,
            calibration_state,
            score_drift_psi,
            buffer_events,
            buffer_bytes,
            disk_buffer_bytes,
            disk_buffer_events,
            sink_retries: counter(
                &r,
                "flowtag_sink_retries_total",
                "Requests a sink sent again after a failure.",
                &["component_id"],
            ),
            alerts_sent: counter(
                &r,
                "flowtag_alerts_sent_total",
                "Alerts delivered, by alert and destination.",
                &["component_id", "destination"],
            ),
            alerts_suppressed: counter(
                &r,
                "flowtag_alerts_suppressed_total",
                "Alert evaluations held back (cooldown, budget, queue_full), and alerts given up after retries (failed).",
                &["component_id", "reason"],
            ),
            up,
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        out
    }
}

pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// The standard counters of one component, resolved once.
#[derive(Clone)]
pub struct ComponentMetrics {
    pub id: String,
    kind: &'static str,
    ty: &'static str,
    received: IntCounter,
    received_bytes: IntCounter,
    sent: IntCounter,
}

impl ComponentMetrics {
    pub fn new(id: &str, kind: &'static str, ty: &'static str) -> ComponentMetrics {
        let m = global();
        let l = [id, kind, ty];
        ComponentMetrics {
            id: id.to_string(),
            kind,
            ty,
            received: m.received.with_label_values(&l),
            received_bytes: m.received_bytes.with_label_values(&l),
            sent: m.sent.with_label_values(&l),
        }
    }

    pub fn received(&self, events: usize, bytes: usize) {
        self.received.inc_by(events as u64);
        self.received_bytes.inc_by(bytes as u64);
    }

    pub fn sent(&self, events: usize) {
        self.sent.inc_by(events as u64);
    }

    pub fn error(&self, error_type: &str, n: usize) {
        global().errors.with_label_values(&[&self.id, self.kind, self.ty, error_type]).inc_by(n as u64);
    }

    /// `n` events sent to `ID.dead_letter`, for `cause`.
    pub fn dead_letters(&self, cause: &str, n: usize) {
        if n > 0 {
            global().dead_letters.with_label_values(&[&self.id, self.kind, self.ty, cause]).inc_by(n as u64);
        }
    }

    pub fn discarded(&self, reason: &str, n: usize) {
        global().discarded.with_label_values(&[&self.id, self.kind, self.ty, reason]).inc_by(n as u64);
    }
}
