//! Prometheus metrics, served by `GET /metrics` in the text exposition
//! format (version 0.0.4).
//!
//! Counters and the attempt latency histogram are process-wide atomics,
//! bumped where things happen: [`events_accepted`] (ingest), [`attempt`]
//! (dispatch, once per recorded attempt), [`deliveries_skipped`] (ingest and
//! replay, for webhooks that are inactive), [`plugin_call`] (plugin host),
//! [`source_accepted`] / [`source_refused`] (the sources route) and
//! [`reload`] (config reload). Queue depth and breaker state are not tracked
//! here at all: they are read at scrape time from where they are true — the
//! store's pending deliveries (at most once a second: `api` caches them)
//! and the registry's breakers — and handed to [`render`], so they can
//! never drift.
//!
//! Written by hand rather than through a metrics crate: the scrape-time
//! families (per-webhook gauges that must disappear with their webhook) fit a
//! collector better than a registry of long-lived series, and the format is
//! a few lines. The output is checked by the reference parser
//! (`prometheus_client` from PyPI) in `tests/admin.rs`.
//!
//! Labels carry webhook ids, plugin names and fixed words only — never a
//! URL, header or secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The statuses an attempt can leave a delivery in (`history::Status`).
const STATUSES: [&str; 5] = ["succeeded", "failed", "retrying", "skipped", "paused"];

/// Upper bounds of the latency buckets, in milliseconds (`+Inf` follows).
/// Attempts are bounded by `timeout_ms` ≤ 30 s, plus formatting time.
const BUCKETS_MS: [u64; 14] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 15_000, 30_000, 60_000,
];

struct Histogram {
    /// Non-cumulative: `buckets[i]` counts observations in (bound[i-1], bound[i]];
    /// the last slot counts those above every bound.
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    count: AtomicU64,
    sum_ms: AtomicU64,
}

impl Histogram {
    fn observe(&self, ms: u64) {
        let i = BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(BUCKETS_MS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default, Clone, Copy)]
struct PluginCounts {
    calls: u64,
    failures: u64,
}

struct Metrics {
    events_accepted: AtomicU64,
    attempts: [AtomicU64; STATUSES.len()],
    latency: Histogram,
    plugins: Mutex<BTreeMap<String, PluginCounts>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    last_reload_ok: AtomicBool,
    sources: Mutex<BTreeMap<String, SourceCounts>>,
}

/// Per source: events accepted, bodies refused by error code.
#[derive(Default, Clone)]
struct SourceCounts {
    accepted: u64,
    refused: BTreeMap<&'static str, u64>,
}

static METRICS: Metrics = Metrics {
    events_accepted: AtomicU64::new(0),
    attempts: [const { AtomicU64::new(0) }; STATUSES.len()],
    latency: Histogram {
        buckets: [const { AtomicU64::new(0) }; BUCKETS_MS.len() + 1],
        count: AtomicU64::new(0),
        sum_ms: AtomicU64::new(0),
    },
    plugins: Mutex::new(BTreeMap::new()),
    reloads_ok: AtomicU64::new(0),
    reloads_failed: AtomicU64::new(0),
    last_reload_ok: AtomicBool::new(true),
    sources: Mutex::new(BTreeMap::new()),
};

/// Store queries made for the queue-depth gauges (see `api`: at most one
/// per second however many scrapes come in).
static QUEUE_DEPTH_QUERIES: AtomicU64 = AtomicU64::new(0);

/// The queue depth was read from the store once more.
pub fn queue_depth_query() {
    QUEUE_DEPTH_QUERIES.fetch_add(1, Ordering::Relaxed);
}

/// Statements sent to a shared store (each one round trip to the database).
static STORE_ROUND_TRIPS: AtomicU64 = AtomicU64::new(0);

/// One round trip to a shared store's database.
pub fn store_round_trip() {
    STORE_ROUND_TRIPS.fetch_add(1, Ordering::Relaxed);
}

/// `n` new events were accepted (stored; duplicates of a known id excluded).
pub fn events_accepted(n: u64) {
    METRICS.events_accepted.fetch_add(n, Ordering::Relaxed);
}

/// One attempt was recorded with `status` (`succeeded`, `failed`,
/// `retrying`, `skipped`, `paused`) after `duration_ms`. Skipped and
/// paused attempts sent nothing, so they stay out of the latency histogram.
pub fn attempt(status: &str, duration_ms: u64) {
    if let Some(i) = STATUSES.iter().position(|s| *s == status) {
        METRICS.attempts[i].fetch_add(1, Ordering::Relaxed);
    }
    if status != "skipped" && status != "paused" {
        METRICS.latency.observe(duration_ms);
    }
}

/// `n` deliveries were recorded as skipped without reaching dispatch
/// (their webhook was inactive when the event was accepted or replayed).
pub fn deliveries_skipped(n: u64) {
    METRICS.attempts[3].fetch_add(n, Ordering::Relaxed);
}

/// One call into a plugin (format, build or classify); `ok` is false when it
/// trapped, timed out, ran out of memory or returned an error or bad output.
pub fn plugin_call(plugin: &str, ok: bool) {
    let mut map = match METRICS.plugins.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    let c = match map.get_mut(plugin) {
        Some(c) => c,
        None => map.entry(plugin.to_owned()).or_default(),
    };
    c.calls += 1;
    if !ok {
        c.failures += 1;
    }
}

fn with_source(source: &str, f: impl FnOnce(&mut SourceCounts)) {
    let mut map = match METRICS.sources.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    match map.get_mut(source) {
        Some(c) => f(c),
        None => f(map.entry(source.to_owned()).or_default()),
    }
}

/// `n` new events from a body posted to a configured source were stored
/// (a repeated id is not counted again).
pub fn source_accepted(source: &str, n: u64) {
    with_source(source, |c| c.accepted += n);
}

/// A body posted to a configured source was refused with `code` (its
/// JSON error code); nothing was stored.
pub fn source_refused(source: &str, code: &'static str) {
    with_source(source, |c| *c.refused.entry(code).or_default() += 1);
}

/// A configuration reload was applied (`true`) or refused (`false`).
pub fn reload(ok: bool) {
    if ok {
        METRICS.reloads_ok.fetch_add(1, Ordering::Relaxed);
    } else {
        METRICS.reloads_failed.fetch_add(1, Ordering::Relaxed);
    }
    METRICS.last_reload_ok.store(ok, Ordering::Relaxed);
}

/// Deliveries of one webhook that are not final yet, read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub webhook_id: String,
    /// Waiting for an attempt (due now or retrying later).
    pub pending: u64,
    /// Of those, due now.
    pub due: u64,
}

/// Breaker state of one configured webhook, read from the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerState {
    pub webhook_id: String,
    pub active: bool,
    pub failure_count: u32,
}

/// The whole exposition: the counters above plus the scrape-time state.
pub fn render(queue: &[QueueDepth], breakers: &[BreakerState]) -> String {
    let m = &METRICS;
    let mut out = String::with_capacity(4096);
    let o = &mut out;

    family(
        o,
        "relay_events_accepted_total",
        "counter",
        "Events accepted and stored (a repeated idempotency key is not counted again).",
    );
    sample(
        o,
        "relay_events_accepted_total",
        &[],
        load(&m.events_accepted),
    );

    family(
        o,
        "relay_delivery_attempts_total",
        "counter",
        "Delivery attempts recorded, by the status they left the delivery in.",
    );
    for (i, s) in STATUSES.iter().enumerate() {
        sample(
            o,
            "relay_delivery_attempts_total",
            &[("status", s)],
            load(&m.attempts[i]),
        );
    }

    family(
        o,
        "relay_delivery_attempt_duration_seconds",
        "histogram",
        "Time one attempt took: format, sign, send and wait for the response.",
    );
    let mut cumulative = 0;
    for (i, bound) in BUCKETS_MS.iter().enumerate() {
        cumulative += load(&m.latency.buckets[i]);
        let le = seconds(*bound);
        sample(
            o,
            "relay_delivery_attempt_duration_seconds_bucket",
            &[("le", &le)],
            cumulative,
        );
    }
    cumulative += load(&m.latency.buckets[BUCKETS_MS.len()]);
    sample(
        o,
        "relay_delivery_attempt_duration_seconds_bucket",
        &[("le", "+Inf")],
        cumulative,
    );
    let _ = writeln!(
        o,
        "relay_delivery_attempt_duration_seconds_sum {}",
        seconds(load(&m.latency.sum_ms))
    );
    // The count is the +Inf bucket, so the two always agree in one scrape.
    sample(
        o,
        "relay_delivery_attempt_duration_seconds_count",
        &[],
        cumulative,
    );

    family(
        o,
        "relay_deliveries_pending",
        "gauge",
        "Deliveries waiting in the store for an attempt (due now or retrying later), by webhook.",
    );
    for q in queue {
        sample(
            o,
            "relay_deliveries_pending",
            &[("webhook", &q.webhook_id)],
            q.pending,
        );
    }
    family(
        o,
        "relay_deliveries_due",
        "gauge",
        "Deliveries whose attempt is due now, by webhook.",
    );
    for q in queue {
        sample(
            o,
            "relay_deliveries_due",
            &[("webhook", &q.webhook_id)],
            q.due,
        );
    }
    family(
        o,
        "relay_queue_depth_queries_total",
        "counter",
        "Store queries made for the two gauges above: they are cached for up to a second, so scrapes never cost more than one query a second.",
    );
    sample(
        o,
        "relay_queue_depth_queries_total",
        &[],
        load(&QUEUE_DEPTH_QUERIES),
    );

    family(
        o,
        "relay_store_round_trips_total",
        "counter",
        "Statements this process sent to a shared (PostgreSQL) store, each one round trip; 0 on SQLite.",
    );
    sample(
        o,
        "relay_store_round_trips_total",
        &[],
        load(&STORE_ROUND_TRIPS),
    );

    family(
        o,
        "relay_webhook_active",
        "gauge",
        "1 while a webhook is active, 0 once its circuit breaker tripped or it was disabled.",
    );
    for b in breakers {
        sample(
            o,
            "relay_webhook_active",
            &[("webhook", &b.webhook_id)],
            u64::from(b.active),
        );
    }
    family(
        o,
        "relay_webhook_consecutive_failures",
        "gauge",
        "Failed deliveries in a row per webhook (the circuit breaker's counter).",
    );
    for b in breakers {
        sample(
            o,
            "relay_webhook_consecutive_failures",
            &[("webhook", &b.webhook_id)],
            u64::from(b.failure_count),
        );
    }

    let plugins: Vec<(String, PluginCounts)> = match m.plugins.lock() {
        Ok(p) => p.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        Err(p) => p
            .into_inner()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
    };
    family(
        o,
        "relay_plugin_calls_total",
        "counter",
        "Calls into plugins, by plugin.",
    );
    for (name, c) in &plugins {
        sample(o, "relay_plugin_calls_total", &[("plugin", name)], c.calls);
    }
    family(
        o,
        "relay_plugin_failures_total",
        "counter",
        "Plugin calls that failed (trap, timeout, memory limit, error or invalid output), by plugin.",
    );
    for (name, c) in &plugins {
        sample(
            o,
            "relay_plugin_failures_total",
            &[("plugin", name)],
            c.failures,
        );
    }

    let sources: Vec<(String, SourceCounts)> = match m.sources.lock() {
        Ok(p) => p.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Err(p) => p
            .into_inner()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    family(
        o,
        "relay_source_events_accepted_total",
        "counter",
        "Events stored from bodies posted to a source (POST /api/v1/sources/{name}), by source; a repeated id is not counted again.",
    );
    for (name, c) in &sources {
        sample(
            o,
            "relay_source_events_accepted_total",
            &[("source", name)],
            c.accepted,
        );
    }
    family(
        o,
        "relay_source_bodies_refused_total",
        "counter",
        "Bodies a source refused (nothing stored), by source and error code.",
    );
    for (name, c) in &sources {
        for (code, n) in &c.refused {
            sample(
                o,
                "relay_source_bodies_refused_total",
                &[("source", name), ("code", code)],
                *n,
            );
        }
    }

    family(
        o,
        "relay_config_reloads_total",
        "counter",
        "relay.yaml reloads, by result: ok (applied) or failed (refused; the running configuration was kept).",
    );
    sample(
        o,
        "relay_config_reloads_total",
        &[("result", "ok")],
        load(&m.reloads_ok),
    );
    sample(
        o,
        "relay_config_reloads_total",
        &[("result", "failed")],
        load(&m.reloads_failed),
    );
    family(
        o,
        "relay_config_last_reload_successful",
        "gauge",
        "1 when the last reload attempt (or the start) applied its file, 0 when it was refused.",
    );
    sample(
        o,
        "relay_config_last_reload_successful",
        &[],
        u64::from(m.last_reload_ok.load(Ordering::Relaxed)),
    );
    render_incidents(o);
    out
}

/// Incidents and escalation (DESIGN §19): the open count is the store's,
/// refreshed by the escalation task at every look (at most 1 s old).
static INCIDENTS_OPEN: AtomicU64 = AtomicU64::new(0);
static INCIDENTS_OPENED: AtomicU64 = AtomicU64::new(0);
static INCIDENTS_RESOLVED: AtomicU64 = AtomicU64::new(0);
static ESCALATION_STEPS: AtomicU64 = AtomicU64::new(0);

/// The store counted `n` incidents not resolved.
pub fn set_incidents_open(n: u64) {
    INCIDENTS_OPEN.store(n, Ordering::Relaxed);
}

/// Ingest opened an incident.
pub fn incident_opened() {
    INCIDENTS_OPENED.fetch_add(1, Ordering::Relaxed);
}

/// Ingest resolved an incident.
pub fn incident_resolved() {
    INCIDENTS_RESOLVED.fetch_add(1, Ordering::Relaxed);
}

/// The escalation task stored one step of a chain.
pub fn escalation_step() {
    ESCALATION_STEPS.fetch_add(1, Ordering::Relaxed);
}

fn render_incidents(o: &mut String) {
    for (name, kind, help, value) in [
        (
            "relay_incidents_open",
            "gauge",
            "Incidents not resolved (open or acknowledged), as the store counts them.",
            &INCIDENTS_OPEN,
        ),
        (
            "relay_incidents_opened_total",
            "counter",
            "Incidents this process opened.",
            &INCIDENTS_OPENED,
        ),
        (
            "relay_incidents_resolved_total",
            "counter",
            "Incidents this process resolved (a resolving event).",
            &INCIDENTS_RESOLVED,
        ),
        (
            "relay_escalation_steps_total",
            "counter",
            "Escalation steps this process ran (each stored with its deliveries).",
            &ESCALATION_STEPS,
        ),
    ] {
        family(o, name, kind, help);
        sample(o, name, &[], load(value));
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Milliseconds as decimal seconds, exactly (no float rounding).
fn seconds(ms: u64) -> String {
    let (s, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        format!("{s}")
    } else {
        format!("{s}.{frac:03}").trim_end_matches('0').to_owned()
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(5), "0.005");
        assert_eq!(seconds(250), "0.25");
        assert_eq!(seconds(1000), "1");
        assert_eq!(seconds(2500), "2.5");
        assert_eq!(seconds(0), "0");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        sample(&mut out, "m", &[("webhook", "a\"b\\c\nd")], 1);
        assert_eq!(out, "m{webhook=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        attempt("succeeded", 3);
        attempt("failed", 700);
        attempt("retrying", 120_000);
        attempt("skipped", 0);
        let text = render(
            &[QueueDepth {
                webhook_id: "w".into(),
                pending: 2,
                due: 1,
            }],
            &[BreakerState {
                webhook_id: "w".into(),
                active: false,
                failure_count: 4,
            }],
        );
        let value = |prefix: &str| -> u64 {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{prefix} missing in\n{text}"))
        };
        let bucket_5ms = value("relay_delivery_attempt_duration_seconds_bucket{le=\"0.005\"}");
        let bucket_1s = value("relay_delivery_attempt_duration_seconds_bucket{le=\"1\"}");
        let inf = value("relay_delivery_attempt_duration_seconds_bucket{le=\"+Inf\"}");
        let count = value("relay_delivery_attempt_duration_seconds_count");
        assert!(bucket_5ms >= 1 && bucket_1s > bucket_5ms && inf > bucket_1s);
        assert_eq!(inf, count);
        assert_eq!(value("relay_deliveries_pending{webhook=\"w\"}"), 2);
        assert_eq!(value("relay_webhook_active{webhook=\"w\"}"), 0);
        assert_eq!(
            value("relay_webhook_consecutive_failures{webhook=\"w\"}"),
            4
        );
    }
}
