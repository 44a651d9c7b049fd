//! The human-readable result: a table of the findings that matter (failing,
//! ignored, suppressed), the expired ignore rules, and the verdict.

use std::fmt::Write as _;

use super::evaluate::{Evaluation, Finding, Reason, Status};
use super::severity::{FixState, Severity};

impl Finding {
    /// Why it has its status, in a few words.
    pub fn why(&self, fail_on: Severity) -> String {
        let mut why = match &self.reason {
            Reason::AtOrAboveThreshold => format!("at or above fail_on {}", fail_on.key()),
            Reason::BelowThreshold => format!("below fail_on {}", fail_on.key()),
            Reason::NoFixAvailable => {
                format!("only_fixed, and the fix state is {}", self.fix_state)
            }
            Reason::IgnoreRule {
                rule,
                reason,
                expires,
            } => {
                format!("ignore[{rule}] (expires {expires}): {reason}")
            }
            Reason::Vex => String::new(),
        };
        if let Some(c) = &self.vex {
            let detail = c
                .justification
                .as_deref()
                .or(c.impact_statement.as_deref())
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            let cite = format!(
                "VEX {}{detail}, {} statements[{}]",
                c.status,
                c.document_name(),
                c.statement
            );
            if why.is_empty() {
                why = cite;
            } else {
                why.push_str(&format!("; {cite}"));
            }
        }
        for rule in &self.expired_rules {
            why.push_str(&format!("; ignore[{rule}] has expired"));
        }
        if self.grype_ignore_rules.is_some() {
            why.push_str("; Grype's own config ignored it, which does not count here");
        }
        why
    }

    /// The fixed versions, or the fix state when there are none.
    pub fn fixed_in(&self) -> String {
        if self.fix_versions.is_empty() {
            match self.fix_state {
                FixState::Fixed | FixState::Unknown => String::new(),
                other => format!("({other})"),
            }
        } else {
            self.fix_versions.join(", ")
        }
    }
}

impl super::evaluate::VexCitation {
    /// The document's `@id`, else where it was read from.
    pub fn document_name(&self) -> &str {
        if self.document.is_empty() {
            &self.origin
        } else {
            &self.document
        }
    }
}

const HEADER: [&str; 7] = [
    "SEVERITY",
    "STATUS",
    "VULNERABILITY",
    "PACKAGE",
    "VERSION",
    "FIXED IN",
    "WHY",
];

impl Evaluation {
    /// The table for standard output, ending with the verdict line.
    pub fn table(&self) -> String {
        let mut out = self.findings_table();
        self.passing_note(&mut out);
        self.expired_section(&mut out);
        let _ = writeln!(
            out,
            "\n{} (policy {}, fail_on {}{}): {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.policy,
            self.fail_on.key(),
            if self.only_fixed { ", only_fixed" } else { "" },
            self.summary()
        );
        out
    }

    /// Failing, ignored and suppressed findings in aligned columns.
    fn findings_table(&self) -> String {
        let rows: Vec<[String; 7]> = self
            .findings
            .iter()
            .filter(|f| f.status != Status::Passing)
            .map(|f| {
                [
                    f.severity.as_str().to_owned(),
                    f.status.as_str().to_owned(),
                    f.id.clone(),
                    f.package.clone(),
                    f.version.clone(),
                    f.fixed_in(),
                    f.why(self.fail_on),
                ]
                .map(|cell| printable(&cell))
            })
            .collect();
        if rows.is_empty() {
            return "No failing, ignored or suppressed findings.\n".to_owned();
        }
        let mut widths = HEADER.map(|h| h.chars().count());
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let mut line = |cells: &[&str]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i + 1 == cells.len() {
                    l.push_str(cell);
                } else {
                    let _ = write!(l, "{cell:<w$}  ", w = widths[i]);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&HEADER);
        for row in &rows {
            line(&row.each_ref().map(String::as_str));
        }
        out
    }

    /// How many passing findings the table leaves out.
    fn passing_note(&self, out: &mut String) {
        let passing = self.count(Status::Passing);
        if passing == 0 {
            return;
        }
        let s = if passing == 1 { "" } else { "s" };
        let only_fixed = if self.only_fixed {
            ", or no fix yet under only_fixed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{passing} passing finding{s} not shown (below fail_on {}{only_fixed}); --json lists every finding.",
            self.fail_on.key()
        );
    }

    fn expired_section(&self, out: &mut String) {
        let expired: Vec<_> = self.expired_rules().collect();
        if expired.is_empty() {
            return;
        }
        out.push_str("\nExpired ignore rules (they no longer apply: renew them with a new date and reason, or remove them):\n");
        for r in expired {
            let n = r.matched;
            let s = if n == 1 { "" } else { "s" };
            let _ = writeln!(
                out,
                "  ignore[{}] {} expired {} (would match {n} finding{s}): {}",
                r.rule.index,
                printable(&r.rule.describe()),
                r.rule.expires,
                printable(&r.rule.reason)
            );
        }
    }
}

/// Report fields come from Grype and its database: control characters
/// (terminal escapes, newlines) would break the table or the terminal.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
