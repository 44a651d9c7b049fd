//! The gate: each Grype match becomes a [`Finding`] with a status and the
//! reason for it. The order of precedence is VEX (evidence the finding does
//! not apply), then the policy's ignore rules (a waiver), then the severity
//! threshold.

use serde_json::Value;
use time::{Date, OffsetDateTime};

use super::policy::{IgnoreRule, ScanPolicy};
use super::report::{Descriptor, GrypeReport, Match};
use super::severity::{FixState, Severity};
use super::vex::{VexDocument, VexStatement, VexStatus};
use crate::purl::Purl;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// At or above `fail_on`, and nothing waives it: the gate fails.
    Failing,
    /// Below `fail_on`, or without a fix under `only_fixed`.
    Passing,
    /// Waived by an unexpired ignore rule.
    Ignored,
    /// A VEX statement says `not_affected` or `fixed`.
    Suppressed,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Failing,
        Status::Passing,
        Status::Ignored,
        Status::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Failing => "failing",
            Status::Passing => "passing",
            Status::Ignored => "ignored",
            Status::Suppressed => "suppressed",
        }
    }
}

/// Why a finding has its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    AtOrAboveThreshold,
    BelowThreshold,
    /// `only_fixed`, and Grype knows no fixed version.
    NoFixAvailable,
    /// The policy's `ignore[rule]`.
    IgnoreRule {
        rule: usize,
        reason: String,
        expires: Date,
    },
    /// The statement in [`Finding::vex`].
    Vex,
}

/// The VEX statement that decided about a finding, cited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexCitation {
    /// The document's `@id`.
    pub document: String,
    /// Where the document was read from.
    pub origin: String,
    /// Index in the document's `statements`.
    pub statement: usize,
    pub statement_id: Option<String>,
    pub status: VexStatus,
    pub justification: Option<String>,
    pub impact_statement: Option<String>,
    pub action_statement: Option<String>,
    /// The `@id` of the product that covered the package.
    pub product: String,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub id: String,
    /// Grype's related vulnerabilities (e.g. the CVE of a GHSA).
    pub related: Vec<String>,
    pub severity: Severity,
    pub package: String,
    pub version: String,
    pub kind: String,
    pub purl: String,
    /// The first location Grype gives for the package.
    pub location: Option<String>,
    pub fix_state: FixState,
    pub fix_versions: Vec<String>,
    pub data_source: String,
    pub urls: Vec<String>,
    pub description: String,
    pub status: Status,
    pub reason: Reason,
    /// The VEX statement that applies, when one does: it suppressed the
    /// finding when its status is `not_affected` or `fixed`.
    pub vex: Option<VexCitation>,
    /// Expired ignore rules that would otherwise have matched.
    pub expired_rules: Vec<usize>,
    /// Grype's own ignore rules, when Grype listed the match as ignored.
    /// They do not waive it: only the policy does.
    pub grype_ignore_rules: Option<Vec<Value>>,
}

/// How an ignore rule fared.
#[derive(Debug, Clone)]
pub struct RuleOutcome {
    pub rule: IgnoreRule,
    pub expired: bool,
    /// Findings it waived; for an expired rule, findings it would have.
    pub matched: usize,
}

/// A VEX document that took part, for the outputs.
#[derive(Debug, Clone)]
pub struct VexSource {
    pub origin: String,
    pub id: String,
    pub statements: usize,
}

/// The result of [`evaluate`]. Findings are sorted by severity (highest
/// first), then vulnerability id, package name, version.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The policy as it was named (for messages).
    pub policy: String,
    /// The policy's file, when it was read from one.
    pub policy_path: Option<std::path::PathBuf>,
    pub fail_on: Severity,
    pub only_fixed: bool,
    /// The day ignore-rule expiry was judged against.
    pub today: Date,
    pub findings: Vec<Finding>,
    pub rules: Vec<RuleOutcome>,
    pub vex_documents: Vec<VexSource>,
    /// The digests image products in VEX documents were compared with.
    pub image_digests: Vec<String>,
    pub grype: Descriptor,
    pub source: Option<Value>,
    pub distro: Option<Value>,
}

impl Evaluation {
    /// No finding is failing.
    pub fn passed(&self) -> bool {
        !self.findings.iter().any(|f| f.status == Status::Failing)
    }

    pub fn count(&self, status: Status) -> usize {
        self.findings.iter().filter(|f| f.status == status).count()
    }

    pub fn count_of(&self, status: Status, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.status == status && f.severity == severity)
            .count()
    }

    pub fn expired_rules(&self) -> impl Iterator<Item = &RuleOutcome> {
        self.rules.iter().filter(|r| r.expired)
    }

    /// One line: `2 critical, 1 high failing; 3 ignored; 1 suppressed by VEX`.
    pub fn summary(&self) -> String {
        let failing: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .filter_map(|&sev| {
                let n = self.count_of(Status::Failing, sev);
                (n > 0).then(|| format!("{n} {}", sev.key()))
            })
            .collect();
        let mut parts = vec![if failing.is_empty() {
            format!("nothing failing at or above {}", self.fail_on.key())
        } else {
            format!("{} failing", failing.join(", "))
        }];
        let ignored = self.count(Status::Ignored);
        if ignored > 0 {
            parts.push(format!("{ignored} ignored"));
        }
        let suppressed = self.count(Status::Suppressed);
        if suppressed > 0 {
            parts.push(format!("{suppressed} suppressed by VEX"));
        }
        let expired = self.expired_rules().count();
        if expired > 0 {
            let s = if expired == 1 { "" } else { "s" };
            parts.push(format!("{expired} expired ignore rule{s}"));
        }
        parts.join("; ")
    }
}

/// Applies `policy` (and `extra_vex`, e.g. from `--vex`) to `report`, with
/// ignore-rule expiry judged on `today`. Image products in VEX documents
/// are compared with the digests Grype recorded for the scanned image.
pub fn evaluate(
    report: &GrypeReport,
    policy: &ScanPolicy,
    extra_vex: &[VexDocument],
    today: Date,
) -> Evaluation {
    evaluate_for_image(report, policy, extra_vex, today, &[])
}

/// [`evaluate`], with more digests the scanned image is known by (the
/// manifest digest when the report came from an SBOM, e.g.
/// `--image-digest`).
pub fn evaluate_for_image(
    report: &GrypeReport,
    policy: &ScanPolicy,
    extra_vex: &[VexDocument],
    today: Date,
    image_digests: &[String],
) -> Evaluation {
    let mut digests = report.image_digests();
    for d in image_digests {
        let d = d.to_ascii_lowercase();
        if !digests.contains(&d) {
            digests.push(d);
        }
    }
    let documents: Vec<&VexDocument> = policy.vex.iter().chain(extra_vex).collect();
    let mut rules: Vec<RuleOutcome> = policy
        .ignore
        .iter()
        .map(|r| RuleOutcome {
            rule: r.clone(),
            expired: r.is_expired(today),
            matched: 0,
        })
        .collect();

    let mut findings: Vec<Finding> = report
        .all_matches()
        .map(|(m, grype_ignored)| {
            let mut f = judge(m, policy, &documents, &digests, &mut rules);
            f.grype_ignore_rules = grype_ignored.map(|im| im.applied_ignore_rules.clone());
            f
        })
        .collect();
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.id.cmp(&b.id))
            .then_with(|| a.package.cmp(&b.package))
            .then_with(|| a.version.cmp(&b.version))
            .then_with(|| a.purl.cmp(&b.purl))
            .then_with(|| a.location.cmp(&b.location))
    });

    Evaluation {
        policy: policy.origin.clone(),
        policy_path: policy.path.clone(),
        fail_on: policy.fail_on,
        only_fixed: policy.only_fixed,
        today,
        findings,
        rules,
        vex_documents: documents
            .iter()
            .map(|d| VexSource {
                origin: d.origin.clone(),
                id: d.id.clone(),
                statements: d.statements.len(),
            })
            .collect(),
        image_digests: digests,
        grype: report.descriptor.clone().unwrap_or_default(),
        source: report.source.clone(),
        distro: report.distro.clone(),
    }
}

fn judge(
    m: &Match,
    policy: &ScanPolicy,
    documents: &[&VexDocument],
    digests: &[String],
    rules: &mut [RuleOutcome],
) -> Finding {
    let v = &m.vulnerability;
    let mut related: Vec<String> = Vec::new();
    for r in &m.related_vulnerabilities {
        if !r.id.eq_ignore_ascii_case(&v.id) && !related.contains(&r.id) {
            related.push(r.id.clone());
        }
    }
    let ids: Vec<&str> = std::iter::once(v.id.as_str())
        .chain(related.iter().map(String::as_str))
        .collect();
    // A purl Grype wrote that does not parse cannot match a purl matcher;
    // the finding is still judged by everything else.
    let purl = Purl::parse(&m.artifact.purl).ok();

    let vex = effective_statement(documents, &ids, purl.as_ref(), digests);
    let suppressed = vex.as_ref().is_some_and(|c| c.status.suppresses());
    // Evidence beats waivers: a suppressed finding does not count against
    // (or for) any ignore rule.
    let (waived_by, expired_rules) = if suppressed {
        (None, Vec::new())
    } else {
        apply_rules(rules, m, &ids, purl.as_ref())
    };
    let (status, reason) = if suppressed {
        (Status::Suppressed, Reason::Vex)
    } else if let Some(rule) = waived_by {
        (Status::Ignored, rule)
    } else {
        threshold(v, policy)
    };

    Finding {
        id: v.id.clone(),
        related,
        severity: v.severity,
        package: m.artifact.name.clone(),
        version: m.artifact.version.clone(),
        kind: m.artifact.kind.clone(),
        purl: m.artifact.purl.clone(),
        location: m
            .artifact
            .locations
            .iter()
            .map(|l| l.path.clone())
            .find(|p| !p.is_empty()),
        fix_state: v.fix.state,
        fix_versions: v.fix.versions.clone(),
        data_source: v.data_source.clone(),
        urls: v.urls.clone(),
        description: v.description.clone(),
        status,
        reason,
        vex,
        expired_rules,
        grype_ignore_rules: None,
    }
}

/// The first unexpired rule that matches, as the reason of the waiver, and
/// the expired rules that would have; each rule counts what it matched.
fn apply_rules(
    rules: &mut [RuleOutcome],
    m: &Match,
    ids: &[&str],
    purl: Option<&Purl>,
) -> (Option<Reason>, Vec<usize>) {
    let mut expired = Vec::new();
    let mut waived_by = None;
    for outcome in rules.iter_mut() {
        if !outcome.rule.matches(m, ids, purl) {
            continue;
        }
        if outcome.expired {
            outcome.matched += 1;
            expired.push(outcome.rule.index);
        } else if waived_by.is_none() {
            outcome.matched += 1;
            waived_by = Some(Reason::IgnoreRule {
                rule: outcome.rule.index,
                reason: outcome.rule.reason.clone(),
                expires: outcome.rule.expires,
            });
        }
    }
    (waived_by, expired)
}

/// Status by severity alone: failing at or above `fail_on`, unless
/// `only_fixed` and no fix is known.
fn threshold(v: &super::report::Vulnerability, policy: &ScanPolicy) -> (Status, Reason) {
    if v.severity < policy.fail_on {
        (Status::Passing, Reason::BelowThreshold)
    } else if policy.only_fixed && v.fix.state != FixState::Fixed {
        (Status::Passing, Reason::NoFixAvailable)
    } else {
        (Status::Failing, Reason::AtOrAboveThreshold)
    }
}

/// The latest statement that applies (see [`super::vex`]); ties go to the
/// later document, then the later statement.
fn effective_statement(
    documents: &[&VexDocument],
    ids: &[&str],
    purl: Option<&Purl>,
    digests: &[String],
) -> Option<VexCitation> {
    type Key = (Option<OffsetDateTime>, usize, usize);
    let mut best: Option<(Key, &VexDocument, &VexStatement, String)> = None;
    for (di, doc) in documents.iter().enumerate() {
        for s in &doc.statements {
            if !s.names_any(ids) {
                continue;
            }
            let Some(product) = s.product_for(purl, digests) else {
                continue;
            };
            let key = (s.timestamp, di, s.index);
            if best.as_ref().is_none_or(|(k, ..)| key >= *k) {
                best = Some((key, doc, s, product.id.clone()));
            }
        }
    }
    best.map(|(_, doc, s, product)| VexCitation {
        document: doc.id.clone(),
        origin: doc.origin.clone(),
        statement: s.index,
        statement_id: s.id.clone(),
        status: s.status,
        justification: s.justification.clone(),
        impact_statement: s.impact_statement.clone(),
        action_statement: s.action_statement.clone(),
        product,
    })
}
