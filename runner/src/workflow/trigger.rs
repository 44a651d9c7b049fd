//! `on.push`: which pushes run a workflow.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::filter::Filter;

/// The filters of `on.push`; all `None` runs on every push of a branch or
/// tag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTrigger {
    pub branches: Option<Filter>,
    pub branches_ignore: Option<Filter>,
    pub tags: Option<Filter>,
    pub paths: Option<Filter>,
}

/// At most this many changed files are matched against `paths`: past it
/// the changes count as unknown and the push runs (GitHub stops at 300
/// files; matching stays cheap on untrusted lists).
pub const MAX_CHANGED_PATHS: usize = 3000;

/// A push, as planning needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    /// `refs/heads/main`, `refs/tags/v1.0`.
    pub git_ref: String,
    /// The pushed commit (`after`).
    pub sha: String,
    /// `owner/name`.
    pub repository: String,
    /// Files changed by the push; `None` when unknown (a new branch, a
    /// forced push, too many commits or files): then path filters let the
    /// push run, as GitHub does when it cannot compute the diff.
    pub changed_paths: Option<Vec<String>>,
}

/// Why a push does not run a workflow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The ref is neither `refs/heads/…` nor `refs/tags/…`.
    NotBranchOrTag(String),
    /// `on.push` filters only tags, and this is a branch (or the reverse).
    OtherRefKind {
        kind: &'static str,
        filtered: &'static str,
    },
    /// Not selected by `branches` or `tags`.
    NotSelected {
        kind: &'static str,
        key: &'static str,
        name: String,
    },
    /// Selected by `branches-ignore`.
    Ignored { name: String },
    /// No changed file is selected by `paths`.
    NoPathSelected,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skip::NotBranchOrTag(r) => write!(f, "`{r}` is neither a branch nor a tag"),
            Skip::OtherRefKind { kind, filtered } => {
                write!(
                    f,
                    "on.push filters only {filtered}, so pushes of {kind} do not run it"
                )
            }
            Skip::NotSelected { kind, key, name } => {
                write!(f, "{kind} `{name}` is not selected by on.push.{key}")
            }
            Skip::Ignored { name } => {
                write!(f, "branch `{name}` is selected by on.push.branches-ignore")
            }
            Skip::NoPathSelected => write!(f, "no changed file is selected by on.push.paths"),
        }
    }
}

impl PushTrigger {
    /// GitHub's rules: with only branch filters, tag pushes do not run (and
    /// the reverse); `paths` needs one changed file selected and is not
    /// evaluated for tags.
    pub fn check(&self, push: &Push) -> Result<(), Skip> {
        let branch_filtered = self.branches.is_some() || self.branches_ignore.is_some();
        let tag_filtered = self.tags.is_some();
        if let Some(branch) = push.git_ref.strip_prefix("refs/heads/") {
            if tag_filtered && !branch_filtered {
                return Err(Skip::OtherRefKind {
                    kind: "branches",
                    filtered: "tags",
                });
            }
            if let Some(f) = &self.branches
                && !f.selects(branch)
            {
                return Err(Skip::NotSelected {
                    kind: "branch",
                    key: "branches",
                    name: branch.into(),
                });
            }
            if let Some(f) = &self.branches_ignore
                && f.selects(branch)
            {
                return Err(Skip::Ignored {
                    name: branch.into(),
                });
            }
            self.check_paths(push)
        } else if let Some(tag) = push.git_ref.strip_prefix("refs/tags/") {
            if branch_filtered && !tag_filtered {
                return Err(Skip::OtherRefKind {
                    kind: "tags",
                    filtered: "branches",
                });
            }
            match &self.tags {
                Some(f) if !f.selects(tag) => Err(Skip::NotSelected {
                    kind: "tag",
                    key: "tags",
                    name: tag.into(),
                }),
                _ => Ok(()),
            }
        } else {
            Err(Skip::NotBranchOrTag(push.git_ref.clone()))
        }
    }

    fn check_paths(&self, push: &Push) -> Result<(), Skip> {
        match (&self.paths, &push.changed_paths) {
            (Some(f), Some(changed))
                if changed.len() <= MAX_CHANGED_PATHS && !changed.iter().any(|p| f.selects(p)) =>
            {
                Err(Skip::NoPathSelected)
            }
            _ => Ok(()),
        }
    }
}

/// `main` for `refs/heads/main`, `v1` for `refs/tags/v1`: `github.ref_name`.
pub fn ref_name(git_ref: &str) -> &str {
    git_ref
        .strip_prefix("refs/heads/")
        .or_else(|| git_ref.strip_prefix("refs/tags/"))
        .unwrap_or(git_ref)
}

#[cfg(test)]
mod tests {
    use super::super::filter::Pattern;
    use super::*;

    fn f(patterns: &[&str]) -> Option<Filter> {
        Some(Filter::new(
            patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
        ))
    }

    fn push(git_ref: &str, changed: Option<&[&str]>) -> Push {
        Push {
            git_ref: git_ref.into(),
            sha: "a".repeat(40),
            repository: "acme/app".into(),
            changed_paths: changed.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn no_filter_runs_every_branch_and_tag() {
        let t = PushTrigger::default();
        assert!(t.check(&push("refs/heads/anything", None)).is_ok());
        assert!(t.check(&push("refs/tags/v1", None)).is_ok());
        assert!(matches!(
            t.check(&push("refs/notes/x", None)),
            Err(Skip::NotBranchOrTag(_))
        ));
    }

    #[test]
    fn branch_filters_select_branches_and_leave_out_tags() {
        let t = PushTrigger {
            branches: f(&["main", "releases/**", "!releases/**-alpha"]),
            ..Default::default()
        };
        assert!(t.check(&push("refs/heads/main", None)).is_ok());
        assert!(t.check(&push("refs/heads/releases/1.2", None)).is_ok());
        let e = t
            .check(&push("refs/heads/releases/2-alpha", None))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "branch `releases/2-alpha` is not selected by on.push.branches"
        );
        let e = t.check(&push("refs/tags/v1", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "on.push filters only branches, so pushes of tags do not run it"
        );
    }

    #[test]
    fn branches_ignore_skips_what_it_selects() {
        let t = PushTrigger {
            branches_ignore: f(&["dependabot/**"]),
            ..Default::default()
        };
        assert!(t.check(&push("refs/heads/main", None)).is_ok());
        assert_eq!(
            t.check(&push("refs/heads/dependabot/npm/x", None)),
            Err(Skip::Ignored {
                name: "dependabot/npm/x".into()
            })
        );
    }

    #[test]
    fn tag_filters_select_tags_and_leave_out_branches() {
        let t = PushTrigger {
            tags: f(&["v[0-9]+.*"]),
            ..Default::default()
        };
        assert!(t.check(&push("refs/tags/v1.2", None)).is_ok());
        let e = t.check(&push("refs/tags/nightly", None)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tag `nightly` is not selected by on.push.tags"
        );
        assert!(matches!(
            t.check(&push("refs/heads/main", None)),
            Err(Skip::OtherRefKind { .. })
        ));
        let both = PushTrigger {
            branches: f(&["main"]),
            tags: f(&["v*"]),
            ..Default::default()
        };
        assert!(both.check(&push("refs/heads/main", None)).is_ok());
        assert!(both.check(&push("refs/tags/v2", None)).is_ok());
        assert!(both.check(&push("refs/heads/dev", None)).is_err());
    }

    #[test]
    fn paths_need_one_selected_file_and_skip_tags() {
        let t = PushTrigger {
            paths: f(&["src/**", "!src/**/*.md"]),
            ..Default::default()
        };
        assert!(
            t.check(&push("refs/heads/main", Some(&["README.md", "src/a.rs"])))
                .is_ok()
        );
        assert_eq!(
            t.check(&push(
                "refs/heads/main",
                Some(&["README.md", "src/doc/x.md"])
            )),
            Err(Skip::NoPathSelected)
        );
        assert_eq!(
            t.check(&push("refs/heads/main", Some(&[]))),
            Err(Skip::NoPathSelected)
        );
        // Unknown changes run, as on GitHub when it has no diff.
        assert!(t.check(&push("refs/heads/main", None)).is_ok());
        let many: Vec<&str> = vec!["README.md"; MAX_CHANGED_PATHS + 1];
        assert!(
            t.check(&push("refs/heads/main", Some(&many))).is_ok(),
            "too many files count as unknown"
        );
        // Path filters are not evaluated for tags.
        assert!(t.check(&push("refs/tags/v1", Some(&["README.md"]))).is_ok());
    }

    #[test]
    fn ref_names_drop_the_prefix() {
        assert_eq!(ref_name("refs/heads/feature/x"), "feature/x");
        assert_eq!(ref_name("refs/tags/v1"), "v1");
        assert_eq!(ref_name("HEAD"), "HEAD");
    }
}
