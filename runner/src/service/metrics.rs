//! Prometheus metrics, in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sandbox::SandboxStats;
use crate::sandbox::pool::WarmPool;

/// Upper bounds (seconds) of the run duration histogram.
const BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
pub struct Metrics {
    runs: Mutex<BTreeMap<(String, String), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    pub auth_failures: AtomicU64,
    pub lockouts: AtomicU64,
    pub rate_limited: AtomicU64,
    pub queue_full: AtomicU64,
}

impl Metrics {
    /// A run ended with `status` after `seconds` (queue time excluded).
    pub fn run_finished(&self, language: &str, status: &str, seconds: f64) {
        *self
            .runs
            .lock()
            .expect("metrics lock")
            .entry((status.to_owned(), language.to_owned()))
            .or_default() += 1;
        let mut d = self.durations.lock().expect("metrics lock");
        let h = d.entry(language.to_owned()).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += seconds;
    }

    pub fn response(&self, status: u16) {
        *self
            .responses
            .lock()
            .expect("metrics lock")
            .entry(status)
            .or_default() += 1;
    }

    pub fn render(
        &self,
        queued: usize,
        running: usize,
        sandbox: &SandboxStats,
        pool: Option<&WarmPool>,
    ) -> String {
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            "runner_queue_depth",
            "Runs waiting to start.",
            queued as u64,
        );
        gauge("runner_runs_running", "Runs executing now.", running as u64);

        let _ = writeln!(
            out,
            "# HELP runner_runs_total Runs that reached a verdict, by status and language.\n# TYPE runner_runs_total counter"
        );
        for ((status, lang), n) in self.runs.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "runner_runs_total{{status=\"{status}\",language=\"{}\"}} {n}",
                escape(lang)
            );
        }

        let _ = writeln!(
            out,
            "# HELP runner_run_duration_seconds Time from start to verdict of a run.\n# TYPE runner_run_duration_seconds histogram"
        );
        for (lang, h) in self.durations.lock().expect("metrics lock").iter() {
            let lang = escape(lang);
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "runner_run_duration_seconds_bucket{{language=\"{lang}\",le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "runner_run_duration_seconds_bucket{{language=\"{lang}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "runner_run_duration_seconds_sum{{language=\"{lang}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "runner_run_duration_seconds_count{{language=\"{lang}\"}} {}",
                h.count
            );
        }

        let mut counter = |name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            "runner_containers_created_total",
            "Sandbox containers created.",
            sandbox.containers_created.load(Ordering::Relaxed),
        );
        counter(
            "runner_container_create_failures_total",
            "Sandbox containers the engine failed to create.",
            sandbox.create_failures.load(Ordering::Relaxed),
        );
        counter(
            "runner_container_remove_failures_total",
            "Sandbox containers the engine failed to remove.",
            sandbox.remove_failures.load(Ordering::Relaxed),
        );
        counter(
            "runner_auth_failures_total",
            "Requests refused for a missing or invalid API key.",
            self.auth_failures.load(Ordering::Relaxed),
        );
        counter(
            "runner_lockouts_total",
            "Clients locked out after repeated failed authentications.",
            self.lockouts.load(Ordering::Relaxed),
        );
        counter(
            "runner_rate_limited_total",
            "Requests refused by a rate limit.",
            self.rate_limited.load(Ordering::Relaxed),
        );
        counter(
            "runner_queue_full_total",
            "Submissions refused because the queue was full.",
            self.queue_full.load(Ordering::Relaxed),
        );

        if let Some(pool) = pool {
            let _ = writeln!(
                out,
                "# HELP runner_pool_ready Warm sandbox containers ready, by language and stage.\n# TYPE runner_pool_ready gauge"
            );
            for (key, n) in pool.ready() {
                let _ = writeln!(out, "runner_pool_ready{{pool=\"{}\"}} {n}", escape(&key));
            }
            let s = &pool.stats;
            let mut counter = |name: &str, help: &str, v: u64| {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
                );
            };
            counter(
                "runner_pool_hits_total",
                "Stages that started in a warm container.",
                s.hits.load(Ordering::Relaxed),
            );
            counter(
                "runner_pool_misses_total",
                "Stages under default limits that found their pool empty (cold start).",
                s.misses.load(Ordering::Relaxed),
            );
            counter(
                "runner_pool_created_total",
                "Warm containers prepared.",
                s.created.load(Ordering::Relaxed),
            );
            counter(
                "runner_pool_expired_total",
                "Warm containers replaced after their idle lifetime.",
                s.expired.load(Ordering::Relaxed),
            );
            counter(
                "runner_pool_create_failures_total",
                "Warm containers the engine failed to prepare.",
                s.create_failures.load(Ordering::Relaxed),
            );
        }

        let _ = writeln!(
            out,
            "# HELP runner_http_responses_total HTTP responses by status code.\n# TYPE runner_http_responses_total counter"
        );
        for (code, n) in self.responses.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "runner_http_responses_total{{code=\"{code}\"}} {n}");
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        let text = m.render(4, 1, &SandboxStats::default(), None);
        assert!(text.contains("runner_queue_depth 4"));
        assert!(text.contains("runner_runs_total{status=\"ok\",language=\"python\"} 2"));
        assert!(
            text.contains("runner_run_duration_seconds_bucket{language=\"python\",le=\"0.5\"} 1")
        );
        assert!(
            text.contains("runner_run_duration_seconds_bucket{language=\"python\",le=\"+Inf\"} 2")
        );
        assert!(text.contains("runner_container_create_failures_total 0"));
        assert!(text.contains("runner_http_responses_total{code=\"200\"} 1"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert_eq!(
                line.split(' ').count(),
                2,
                "sample lines are `name value`: {line}"
            );
        }
    }
}
