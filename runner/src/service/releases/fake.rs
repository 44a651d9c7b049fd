//! A scripted [`ReleaseEngine`] for service tests: environments in memory,
//! images refused or broken by name, every call recorded. It keeps the
//! real engine's gates (live in the previous environment), so the
//! service's rules are tested against the same order of checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use async_trait::async_trait;
use pipeline::release::state::{Event, EventKind, Release};
use pipeline::release::{Approval, EnvironmentView};
use sha2::Digest;

use super::engine::{
    Built, CheckRow, Checked, Deployed, EngineError, EnvRule, Progress, ReleaseEngine,
};

#[derive(Debug, Default)]
struct State {
    live: BTreeMap<String, String>,
    history: BTreeMap<String, Vec<Event>>,
    calls: Vec<String>,
}

#[derive(Debug)]
pub struct FakeEngine {
    rules: Vec<EnvRule>,
    /// Images whose verification fails (by substring).
    unsigned: Vec<String>,
    /// Images whose deploy fails and is rolled back (by substring).
    broken: Vec<String>,
    state: Mutex<State>,
}

impl FakeEngine {
    /// `dev` (automatic from `main`), `demo` (1 approval) and `prod` (2),
    /// approved by `release-manager`s: the shipped policy's shape.
    pub fn standard() -> FakeEngine {
        let rule = |name: &str, approvals, auto: bool| EnvRule {
            name: name.into(),
            approvals,
            approver_role: (!auto).then(|| "release-manager".into()),
            automatic_branches: auto.then(|| vec!["main".into()]),
        };
        FakeEngine {
            rules: vec![
                rule("dev", 0, true),
                rule("demo", 1, false),
                rule("prod", 2, false),
            ],
            unsigned: Vec::new(),
            broken: Vec::new(),
            state: Mutex::default(),
        }
    }

    /// Images containing `s` fail their signature check.
    pub fn unsigned(mut self, s: &str) -> Self {
        self.unsigned.push(s.into());
        self
    }

    /// Images containing `s` fail their deploy (rolled back).
    pub fn broken(mut self, s: &str) -> Self {
        self.broken.push(s.into());
        self
    }

    /// Makes `image` live in `environment`, as if deployed earlier.
    pub fn set_live(&self, environment: &str, image: &str) {
        self.state
            .lock()
            .expect("fake engine lock")
            .live
            .insert(environment.into(), image.into());
    }

    pub fn live(&self, environment: &str) -> Option<String> {
        self.state
            .lock()
            .expect("fake engine lock")
            .live
            .get(environment)
            .cloned()
    }

    /// Every call so far (`check prod IMAGE`, `promote ...`, `build ...`).
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().expect("fake engine lock").calls.clone()
    }

    fn record(&self, call: String) {
        self.state
            .lock()
            .expect("fake engine lock")
            .calls
            .push(call);
    }

    fn gates(&self, image: &str, environment: &str) -> Result<Vec<CheckRow>, EngineError> {
        let Some(pos) = self.rules.iter().position(|r| r.name == environment) else {
            return Err(EngineError::Refused {
                code: "unknown_environment",
                message: format!("no environment {environment:?}"),
            });
        };
        if !image.contains("@sha256:") {
            return Err(EngineError::Refused {
                code: "not_pinned",
                message: format!("{image} names a tag; give REPO@sha256:..."),
            });
        }
        if pos > 0 {
            let previous = &self.rules[pos - 1].name;
            if self.live(previous).as_deref() != Some(image) {
                return Err(EngineError::Refused {
                    code: "not_live_in_previous",
                    message: format!("{image} is not live in {previous}"),
                });
            }
        }
        let signed = !self.unsigned.iter().any(|u| image.contains(u.as_str()));
        let checks = vec![
            CheckRow {
                check: "signature".into(),
                ok: signed,
                detail: if signed {
                    "1 signature valid with key fake".into()
                } else {
                    "no signature verifies with the environment's keys".into()
                },
            },
            CheckRow {
                check: "scan".into(),
                ok: true,
                detail: "0 failing".into(),
            },
        ];
        if signed {
            Ok(checks)
        } else {
            Err(EngineError::Rejected {
                message: format!("{image} was refused for {environment}: signature failed"),
                checks,
            })
        }
    }

    fn event(&self, environment: &str, kind: EventKind, image: &str, by: &str) {
        let live_after = self.live(environment);
        self.state
            .lock()
            .expect("fake engine lock")
            .history
            .entry(environment.into())
            .or_default()
            .push(Event {
                at: pipeline::clock::now_rfc3339(),
                kind,
                image: image.into(),
                digest: digest_of(image),
                commit: Some("0".repeat(40)),
                requested_by: Some(by.into()),
                approved_by: Vec::new(),
                reason: None,
                live_after,
            });
    }
}

fn digest_of(image: &str) -> String {
    image
        .split_once('@')
        .map(|(_, d)| d.to_owned())
        .unwrap_or_default()
}

#[async_trait]
impl ReleaseEngine for FakeEngine {
    fn rules(&self) -> &[EnvRule] {
        &self.rules
    }

    async fn check(
        &self,
        image: &str,
        environment: &str,
        _requested_by: &str,
    ) -> Result<Checked, EngineError> {
        self.record(format!("check {environment} {image}"));
        let checks = self.gates(image, environment)?;
        Ok(Checked {
            checks,
            commit: Some("0".repeat(40)),
        })
    }

    async fn promote(
        &self,
        image: &str,
        environment: &str,
        requested_by: &str,
        approvals: Vec<Approval>,
        progress: std::sync::Arc<Progress>,
    ) -> Result<Deployed, EngineError> {
        self.record(format!(
            "promote {environment} {image} approvals={}",
            approvals
                .iter()
                .map(|a| a.approver.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
        let checks = self.gates(image, environment)?;
        progress(&format!("deploying {image} to {environment}"));
        if self.broken.iter().any(|b| image.contains(b.as_str())) {
            self.event(environment, EventKind::RolledBack, image, requested_by);
            return Err(EngineError::RolledBack {
                message: format!(
                    "{image} failed its health check; the previous image serves again"
                ),
            });
        }
        let previous = self.live(environment);
        self.set_live(environment, image);
        self.event(environment, EventKind::Deployed, image, requested_by);
        Ok(Deployed {
            checks,
            commit: Some("0".repeat(40)),
            previous,
            reconciled: None,
        })
    }

    async fn reconcile(&self, environment: &str) -> Result<Option<String>, EngineError> {
        self.record(format!("reconcile {environment}"));
        Ok(self.live(environment))
    }

    async fn environments(&self, history: usize) -> Result<Vec<EnvironmentView>, EngineError> {
        let s = self.state.lock().expect("fake engine lock");
        Ok(self
            .rules
            .iter()
            .map(|r| {
                let events = s.history.get(&r.name).cloned().unwrap_or_default();
                let skip = events.len().saturating_sub(history);
                EnvironmentView {
                    name: r.name.clone(),
                    target: format!("fake target of {}", r.name),
                    automatic: r.automatic_branches.is_some(),
                    approvals: r.approvals,
                    approver_role: r.approver_role.clone(),
                    soak_in_previous: "0s".into(),
                    live: s.live.get(&r.name).map(|image| Release {
                        image: image.clone(),
                        digest: digest_of(image),
                        commit: Some("0".repeat(40)),
                        source: None,
                        since: "2026-01-01T00:00:00Z".into(),
                        since_unix: 1_767_225_600,
                        sbom: None,
                        scan: None,
                    }),
                    pending: None,
                    history: events[skip..].to_vec(),
                }
            })
            .collect())
    }

    async fn build(
        &self,
        _repository: &Path,
        _source: &str,
        commit: &str,
        progress: std::sync::Arc<Progress>,
    ) -> Result<Built, EngineError> {
        self.record(format!("build {commit}"));
        progress(&format!("building {commit}"));
        let digest = format!(
            "sha256:{}",
            sha2::Sha256::digest(commit.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Ok(Built {
            image: format!("registry.test/app@{digest}"),
            digest,
            commit: commit.to_owned(),
        })
    }
}
