//! Grype's severity scale and fix states, parsed the same way from reports
//! (Grype's spelling, `High`) and from policies (`high`).

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Ordered as Grype ranks them: `Unknown` is the lowest, below `Negligible`,
/// so only `fail_on: unknown` fails on findings of unknown severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Unknown,
    Negligible,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Lowest first.
    pub const ALL: [Severity; 6] = [
        Severity::Unknown,
        Severity::Negligible,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// Case-insensitive: Grype writes `High`, policies `high`.
    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL
            .into_iter()
            .find(|sev| sev.as_str().eq_ignore_ascii_case(s.trim()))
    }

    /// Grype's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "Unknown",
            Severity::Negligible => "Negligible",
            Severity::Low => "Low",
            Severity::Medium => "Medium",
            Severity::High => "High",
            Severity::Critical => "Critical",
        }
    }

    /// The policy's and the JSON report's spelling.
    pub fn key(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Negligible => "negligible",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// For error messages: `unknown, negligible, low, medium, high, critical`.
    pub fn choices() -> String {
        Severity::ALL.map(Severity::key).join(", ")
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Severity::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown severity {s:?}; Grype's severities are Unknown, Negligible, Low, Medium, High, Critical"
            ))
        })
    }
}

/// Whether a fixed version exists (`vulnerability.fix.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FixState {
    Fixed,
    NotFixed,
    WontFix,
    /// Also what Grype's empty string means.
    #[default]
    Unknown,
}

impl FixState {
    pub const ALL: [FixState; 4] = [
        FixState::Fixed,
        FixState::NotFixed,
        FixState::WontFix,
        FixState::Unknown,
    ];

    /// Grype's spellings, case-insensitively. The empty string is not
    /// accepted here: callers that allow it (reports) map it themselves.
    pub fn parse(s: &str) -> Option<FixState> {
        FixState::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s.trim()))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FixState::Fixed => "fixed",
            FixState::NotFixed => "not-fixed",
            FixState::WontFix => "wont-fix",
            FixState::Unknown => "unknown",
        }
    }

    pub fn choices() -> String {
        FixState::ALL.map(FixState::as_str).join(", ")
    }
}

impl fmt::Display for FixState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for FixState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        if s.trim().is_empty() {
            return Ok(FixState::Unknown);
        }
        FixState::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown fix state {s:?}; Grype's fix states are {} (or empty)",
                FixState::choices()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_rank_as_grype_ranks_them() {
        let parsed: Vec<Severity> = ["unknown", "Negligible", "LOW", "medium", "High", "critical"]
            .iter()
            .map(|s| Severity::parse(s).unwrap())
            .collect();
        assert_eq!(parsed, Severity::ALL);
        assert!(parsed.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(Severity::parse("severe"), None);
        assert_eq!(Severity::parse(""), None);
    }

    #[test]
    fn fix_states_parse_and_empty_means_unknown() {
        let states: Vec<FixState> = [
            "\"fixed\"",
            "\"not-fixed\"",
            "\"wont-fix\"",
            "\"unknown\"",
            "\"\"",
            "null",
        ]
        .iter()
        .map(|s| serde_json::from_str(s).unwrap())
        .collect();
        assert_eq!(
            states,
            [
                FixState::Fixed,
                FixState::NotFixed,
                FixState::WontFix,
                FixState::Unknown,
                FixState::Unknown,
                FixState::Unknown
            ]
        );
        let err = serde_json::from_str::<FixState>("\"patched\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown fix state \"patched\""),
            "{err}"
        );
    }
}
