//! Prometheus metrics, in the text exposition format.

use std::collections::BTreeMap;
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
        let mut out = Exposition::default();
        out.single(
            "gauge",
            "runner_queue_depth",
            "Runs waiting to start.",
            queued as u64,
        );
        out.single(
            "gauge",
            "runner_runs_running",
            "Runs executing now.",
            running as u64,
        );

        out.header(
            "counter",
            "runner_runs_total",
            "Runs that reached a verdict, by status and language.",
        );
        for ((status, lang), n) in self.runs.lock().expect("metrics lock").iter() {
            out.sample(
                "runner_runs_total",
                &format!("status=\"{status}\",language=\"{}\"", escape(lang)),
                *n,
            );
        }

        let name = "runner_run_duration_seconds";
        out.header("histogram", name, "Time from start to verdict of a run.");
        for (lang, h) in self.durations.lock().expect("metrics lock").iter() {
            let lang = escape(lang);
            for (i, b) in BUCKETS.iter().enumerate() {
                out.sample(
                    &format!("{name}_bucket"),
                    &format!("language=\"{lang}\",le=\"{b}\""),
                    h.counts[i],
                );
            }
            out.sample(
                &format!("{name}_bucket"),
                &format!("language=\"{lang}\",le=\"+Inf\""),
                h.count,
            );
            out.line(&format!("{name}_sum{{language=\"{lang}\"}} {}", h.sum));
            out.sample(
                &format!("{name}_count"),
                &format!("language=\"{lang}\""),
                h.count,
            );
        }

        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut counters = vec![
            (
                "runner_containers_created_total",
                "Sandbox containers created.",
                load(&sandbox.containers_created),
            ),
            (
                "runner_container_create_failures_total",
                "Sandbox containers the engine failed to create.",
                load(&sandbox.create_failures),
            ),
            (
                "runner_container_remove_failures_total",
                "Sandbox containers the engine failed to remove.",
                load(&sandbox.remove_failures),
            ),
            (
                "runner_auth_failures_total",
                "Requests refused for a missing or invalid API key.",
                load(&self.auth_failures),
            ),
            (
                "runner_lockouts_total",
                "Clients locked out after repeated failed authentications.",
                load(&self.lockouts),
            ),
            (
                "runner_rate_limited_total",
                "Requests refused by a rate limit.",
                load(&self.rate_limited),
            ),
            (
                "runner_queue_full_total",
                "Submissions refused because the queue was full.",
                load(&self.queue_full),
            ),
        ];
        if let Some(pool) = pool {
            out.header(
                "gauge",
                "runner_pool_ready",
                "Warm sandbox containers ready, by language and stage.",
            );
            for (key, n) in pool.ready() {
                out.sample(
                    "runner_pool_ready",
                    &format!("pool=\"{}\"", escape(&key)),
                    n as u64,
                );
            }
            let s = &pool.stats;
            counters.extend([
                (
                    "runner_pool_hits_total",
                    "Stages that started in a warm container.",
                    load(&s.hits),
                ),
                (
                    "runner_pool_misses_total",
                    "Stages under default limits that found their pool empty (cold start).",
                    load(&s.misses),
                ),
                (
                    "runner_pool_created_total",
                    "Warm containers prepared.",
                    load(&s.created),
                ),
                (
                    "runner_pool_expired_total",
                    "Warm containers replaced after their idle lifetime.",
                    load(&s.expired),
                ),
                (
                    "runner_pool_create_failures_total",
                    "Warm containers the engine failed to prepare.",
                    load(&s.create_failures),
                ),
            ]);
        }
        for (name, help, v) in counters {
            out.single("counter", name, help, v);
        }

        out.header(
            "counter",
            "runner_http_responses_total",
            "HTTP responses by status code.",
        );
        for (code, n) in self.responses.lock().expect("metrics lock").iter() {
            out.sample(
                "runner_http_responses_total",
                &format!("code=\"{code}\""),
                *n,
            );
        }
        out.text
    }
}

/// The text exposition format, line by line.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn line(&mut self, l: &str) {
        self.text.push_str(l);
        self.text.push('\n');
    }

    fn header(&mut self, kind: &str, name: &str, help: &str) {
        self.line(&format!("# HELP {name} {help}\n# TYPE {name} {kind}"));
    }

    fn sample(&mut self, name: &str, labels: &str, v: u64) {
        self.line(&format!("{name}{{{labels}}} {v}"));
    }

    fn single(&mut self, kind: &str, name: &str, help: &str, v: u64) {
        self.header(kind, name, help);
        self.line(&format!("{name} {v}"));
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
