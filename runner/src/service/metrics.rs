//! Prometheus metrics through `prometheus-client`, in the Prometheus text
//! format (0.0.4). The service's own counters live here; the sandbox's and
//! the warm pool's (atomics owned by the sandbox) are read at each scrape.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text::encode;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::BackendStats;
use crate::backend::docker::pool::WarmPool;

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the run duration histogram.
const BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    status: String,
    language: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LanguageLabel {
    language: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    pool: String,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug)]
pub struct Metrics {
    runs: Family<RunLabels, Counter>,
    durations: Family<LanguageLabel, Histogram, fn() -> Histogram>,
    responses: Family<CodeLabel, Counter>,
    pub auth_failures: Counter,
    pub lockouts: Counter,
    pub rate_limited: Counter,
    pub queue_full: Counter,
    pub connections_refused: Counter,
    pub runs_swept: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            runs: Family::default(),
            durations: Family::new_with_constructor(histogram),
            responses: Family::default(),
            auth_failures: Counter::default(),
            lockouts: Counter::default(),
            rate_limited: Counter::default(),
            queue_full: Counter::default(),
            connections_refused: Counter::default(),
            runs_swept: Counter::default(),
        }
    }
}

impl Metrics {
    /// A run ended with `status` after `seconds` (queue time excluded).
    pub fn run_finished(&self, language: &str, status: &str, seconds: f64) {
        self.runs
            .get_or_create(&RunLabels {
                status: status.to_owned(),
                language: language.to_owned(),
            })
            .inc();
        self.durations
            .get_or_create(&LanguageLabel {
                language: language.to_owned(),
            })
            .observe(seconds);
    }

    pub fn response(&self, status: u16) {
        self.responses
            .get_or_create(&CodeLabel { code: status })
            .inc();
    }

    /// The exposition, with the queue's and the sandbox's values as they
    /// are now.
    pub fn render(
        &self,
        queued: usize,
        running: usize,
        sandbox: &BackendStats,
        pool: Option<&WarmPool>,
    ) -> String {
        let mut reg = Registry::with_prefix("runner");
        self.register_service(&mut reg, queued, running);
        register_sandbox(&mut reg, sandbox);
        if let Some(pool) = pool {
            register_pool(&mut reg, pool);
        }
        let mut out = String::new();
        encode(&mut out, &reg).expect("writing to a String cannot fail");
        out
    }

    fn register_service(&self, reg: &mut Registry, queued: usize, running: usize) {
        reg.register(
            "queue_depth",
            "Runs waiting to start",
            ConstGauge::new(queued as i64),
        );
        reg.register(
            "runs_running",
            "Runs executing now",
            ConstGauge::new(running as i64),
        );
        reg.register(
            "runs",
            "Runs that reached a verdict, by status and language",
            self.runs.clone(),
        );
        reg.register(
            "run_duration_seconds",
            "Time from start to verdict of a run",
            self.durations.clone(),
        );
        let counters: [(&str, &str, &Counter); 6] = [
            (
                "auth_failures",
                "Requests refused for a missing or invalid API key",
                &self.auth_failures,
            ),
            (
                "lockouts",
                "Clients locked out after repeated failed authentications",
                &self.lockouts,
            ),
            (
                "rate_limited",
                "Requests refused by a rate limit",
                &self.rate_limited,
            ),
            (
                "queue_full",
                "Submissions refused because the queue was full",
                &self.queue_full,
            ),
            (
                "connections_refused",
                "Connections closed at once for being over the connection caps",
                &self.connections_refused,
            ),
            (
                "runs_swept",
                "Ended runs deleted by retention",
                &self.runs_swept,
            ),
        ];
        for (name, help, c) in counters {
            reg.register(name, help, c.clone());
        }
        reg.register(
            "http_responses",
            "HTTP responses by status code",
            self.responses.clone(),
        );
    }
}

fn load(c: &AtomicU64) -> ConstCounter {
    ConstCounter::new(c.load(Ordering::Relaxed))
}

fn register_sandbox(reg: &mut Registry, s: &BackendStats) {
    reg.register(
        "containers_created",
        "Sandboxes (containers, pods) created",
        load(&s.sandboxes_started),
    );
    reg.register(
        "container_create_failures",
        "Sandboxes the backend failed to create",
        load(&s.start_failures),
    );
    reg.register(
        "container_remove_failures",
        "Sandboxes the backend failed to remove",
        load(&s.remove_failures),
    );
}

fn register_pool(reg: &mut Registry, pool: &WarmPool) {
    let ready = Family::<PoolLabel, Gauge>::default();
    for (key, n) in pool.ready() {
        ready.get_or_create(&PoolLabel { pool: key }).set(n as i64);
    }
    reg.register(
        "pool_ready",
        "Warm sandbox containers ready, by language and stage",
        ready,
    );
    let s = &pool.stats;
    let counters: [(&str, &str, &AtomicU64); 5] = [
        (
            "pool_hits",
            "Stages that started in a warm container",
            &s.hits,
        ),
        (
            "pool_misses",
            "Stages under default limits that found their pool empty (cold start)",
            &s.misses,
        ),
        ("pool_created", "Warm containers prepared", &s.created),
        (
            "pool_expired",
            "Warm containers replaced after their idle lifetime",
            &s.expired,
        ),
        (
            "pool_create_failures",
            "Warm containers the engine failed to prepare",
            &s.create_failures,
        ),
    ];
    for (name, help, v) in counters {
        reg.register(name, help, load(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.run_finished("python", "ok", 0.3);
        m.run_finished("python", "ok", 3.0);
        m.response(200);
        m.auth_failures.inc();
        let text = m.render(4, 1, &BackendStats::default(), None);
        assert!(text.contains("runner_queue_depth 4"), "{text}");
        assert!(
            text.contains("runner_runs_total{status=\"ok\",language=\"python\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("runner_run_duration_seconds_bucket{le=\"0.5\",language=\"python\"} 1")
                || text.contains(
                    "runner_run_duration_seconds_bucket{language=\"python\",le=\"0.5\"} 1"
                ),
            "{text}"
        );
        assert!(text.contains("le=\"+Inf\""), "{text}");
        assert!(
            text.contains("runner_container_create_failures_total 0"),
            "{text}"
        );
        assert!(text.contains("runner_auth_failures_total 1"), "{text}");
        assert!(
            text.contains("runner_http_responses_total{code=\"200\"} 1"),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                line.split(' ').count(),
                2,
                "sample lines are `name value`: {line}"
            );
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.run_finished("we\"ird\nname", "ok", 1.0);
        let text = m.render(0, 0, &BackendStats::default(), None);
        assert!(text.contains(r#"language="we\"ird\nname""#), "{text}");
    }
}
