//! GitHub's filter patterns for branches, tags and paths:
//!
//! - `*` matches any characters except `/`, `**` any characters including
//!   `/`, and `**/` any number of whole directories (none included);
//! - `?` makes the character (or `[class]`) before it optional, `+` repeats
//!   it one or more times;
//! - `[abc]`, `[0-9a-z]` match one character from the class;
//! - `\` makes the next character literal;
//! - `!` at the start of a pattern excludes what it matches: in a list, the
//!   last pattern that matches a name decides, so order matters.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bounds on filters, so matching stays cheap on untrusted input.
pub const MAX_PATTERN_CHARS: usize = 1024;
pub const MAX_PATTERNS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset})")]
pub struct PatternError {
    /// In characters from the start of the pattern.
    pub offset: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    Class(Vec<(char, char)>),
    /// `*`
    Star,
    /// `**`
    DeepStar,
    /// `**/` at the start or after `/`: `(.*/)?`
    Dirs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quant {
    One,
    Optional,
    OneOrMore,
}

/// One compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    negated: bool,
    atoms: Vec<(Atom, Quant)>,
}

impl Pattern {
    pub fn parse(source: &str) -> Result<Pattern, PatternError> {
        let err = |offset, message: String| PatternError { offset, message };
        if source.chars().count() > MAX_PATTERN_CHARS {
            return Err(err(
                0,
                format!("the pattern is longer than {MAX_PATTERN_CHARS} characters"),
            ));
        }
        let chars: Vec<char> = source.chars().collect();
        let negated = chars.first() == Some(&'!');
        let mut i = usize::from(negated);
        if i == chars.len() {
            return Err(err(0, "the pattern is empty".into()));
        }
        let mut atoms: Vec<(Atom, Quant)> = Vec::new();
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\\' => {
                    let Some(n) = chars.get(i + 1) else {
                        return Err(err(
                            i,
                            "`\\` at the end of the pattern escapes nothing".into(),
                        ));
                    };
                    atoms.push((Atom::Char(*n), Quant::One));
                    i += 2;
                }
                '*' if chars.get(i + 1) == Some(&'*') => {
                    let at_dir_start = i == usize::from(negated) || chars[i - 1] == '/';
                    if at_dir_start && chars.get(i + 2) == Some(&'/') {
                        atoms.push((Atom::Dirs, Quant::One));
                        i += 3;
                    } else {
                        atoms.push((Atom::DeepStar, Quant::One));
                        i += 2;
                    }
                }
                '*' => {
                    atoms.push((Atom::Star, Quant::One));
                    i += 1;
                }
                '?' | '+' => {
                    match atoms.last_mut() {
                        Some((Atom::Char(_) | Atom::Class(_), q @ Quant::One)) => {
                            *q = if c == '?' {
                                Quant::Optional
                            } else {
                                Quant::OneOrMore
                            };
                        }
                        _ => {
                            return Err(err(
                                i,
                                format!(
                                    "`{c}` applies to the character before it, and there is none here: escape it as `\\{c}` to match it literally"
                                ),
                            ));
                        }
                    }
                    i += 1;
                }
                '[' => {
                    let (class, end) = class(&chars, i)?;
                    atoms.push((Atom::Class(class), Quant::One));
                    i = end;
                }
                c => {
                    atoms.push((Atom::Char(c), Quant::One));
                    i += 1;
                }
            }
        }
        Ok(Pattern {
            source: source.to_owned(),
            negated,
            atoms,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// Whether the pattern (ignoring its `!`) matches all of `name`.
    pub fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        let n = text.len();
        // next[s]: whether atoms[t+1..] match text[s..]; filled backwards.
        let mut next: Vec<bool> = (0..=n).map(|s| s == n).collect();
        let mut cur = vec![false; n + 1];
        for (atom, quant) in self.atoms.iter().rev() {
            let mut dirs_tail = false;
            for s in (0..=n).rev() {
                let one = s < n && atom_matches(atom, text[s]);
                cur[s] = match (atom, quant) {
                    (Atom::Star, _) => next[s] || (s < n && text[s] != '/' && cur[s + 1]),
                    (Atom::DeepStar, _) => next[s] || (s < n && cur[s + 1]),
                    (Atom::Dirs, _) => {
                        // Some k > s with text[k-1] == '/' and next[k].
                        dirs_tail = dirs_tail || (s < n && text[s] == '/' && next[s + 1]);
                        next[s] || dirs_tail
                    }
                    (_, Quant::One) => one && next[s + 1],
                    (_, Quant::Optional) => next[s] || (one && next[s + 1]),
                    (_, Quant::OneOrMore) => one && (next[s + 1] || cur[s + 1]),
                };
            }
            std::mem::swap(&mut next, &mut cur);
        }
        next[0]
    }
}

fn atom_matches(atom: &Atom, c: char) -> bool {
    match atom {
        Atom::Char(x) => *x == c,
        Atom::Class(ranges) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)),
        Atom::Star | Atom::DeepStar | Atom::Dirs => true,
    }
}

/// `[…]` starting at `start`: characters and ranges of letters or digits.
fn class(chars: &[char], start: usize) -> Result<(Vec<(char, char)>, usize), PatternError> {
    let mut out = Vec::new();
    let mut i = start + 1;
    loop {
        match chars.get(i) {
            None => {
                return Err(PatternError {
                    offset: start,
                    message: "this `[` has no closing `]`: close the class, or escape it as `\\[`"
                        .into(),
                });
            }
            Some(']') if !out.is_empty() => return Ok((out, i + 1)),
            Some(']') => {
                return Err(PatternError {
                    offset: start,
                    message: "`[]` is empty: list characters like `[abc]` or ranges like `[0-9]`"
                        .into(),
                });
            }
            Some(&lo)
                if chars.get(i + 1) == Some(&'-')
                    && chars.get(i + 2).is_some_and(|c| *c != ']') =>
            {
                let hi = chars[i + 2];
                let same_kind = (lo.is_ascii_lowercase() && hi.is_ascii_lowercase())
                    || (lo.is_ascii_uppercase() && hi.is_ascii_uppercase())
                    || (lo.is_ascii_digit() && hi.is_ascii_digit());
                if !same_kind || lo > hi {
                    return Err(PatternError {
                        offset: i,
                        message: format!(
                            "`{lo}-{hi}` is not a range: ranges go within a-z, A-Z or 0-9, low to high"
                        ),
                    });
                }
                out.push((lo, hi));
                i += 3;
            }
            Some(&c) => {
                out.push((c, c));
                i += 1;
            }
        }
    }
}

/// An ordered list of patterns, as in `branches:` or `paths:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    patterns: Vec<Pattern>,
}

impl Filter {
    pub fn new(patterns: Vec<Pattern>) -> Self {
        Filter { patterns }
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `name` is selected: the last pattern that matches it decides
    /// (a `!` pattern excludes); a name no pattern matches is not selected.
    pub fn selects(&self, name: &str) -> bool {
        self.patterns
            .iter()
            .rev()
            .find(|p| p.matches(name))
            .is_some_and(|p| !p.negated)
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.patterns.iter().map(|p| &p.source))
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(d)?;
        list.iter()
            .map(|p| Pattern::parse(p).map_err(|e| serde::de::Error::custom(e.message)))
            .collect::<Result<_, _>>()
            .map(Filter::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(name)
    }

    fn filter(patterns: &[&str]) -> Filter {
        Filter::new(
            patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
        )
    }

    /// The examples of GitHub's "filter pattern cheat sheet", for refs.
    #[test]
    fn github_ref_examples() {
        for (p, yes, no) in [
            (
                "feature/*",
                &["feature/my-branch", "feature/your-branch"][..],
                &["feature/a/b", "feature"][..],
            ),
            (
                "feature/**",
                &[
                    "feature/beta-a/my-branch",
                    "feature/your-branch",
                    "feature/mona/the/octocat",
                ],
                &["features/x"],
            ),
            ("main", &["main"], &["main2", "xmain"]),
            (
                "releases/mona-the-octocat",
                &["releases/mona-the-octocat"],
                &["releases/mona"],
            ),
            ("*", &["main", "releases"], &["releases/x"]),
            ("**", &["all/the/branches", "every/tag"], &[]),
            (
                "*feature",
                &["mona-feature", "feature", "ver-10-feature"],
                &["feature-x"],
            ),
            ("v2*", &["v2", "v2.0", "v2.9"], &["v3"]),
            (
                "v[12].[0-9]+.[0-9]+",
                &["v1.10.1", "v2.0.0"],
                &["v3.0.0", "v1.x.0", "v1.0"],
            ),
        ] {
            for name in yes {
                assert!(m(p, name), "{p} should match {name}");
            }
            for name in no {
                assert!(!m(p, name), "{p} should not match {name}");
            }
        }
    }

    /// The examples of GitHub's cheat sheet, for paths.
    #[test]
    fn github_path_examples() {
        for (p, yes, no) in [
            ("*", &["README.md", "server.rb"][..], &["docs/x.md"][..]),
            (
                "*.jsx?",
                &["page.js", "page.jsx"],
                &["page.jsxx", "a/page.js"],
            ),
            ("**", &["all/the/files.md"], &[]),
            ("*.js", &["app.js", "index.js"], &["js/index.js"]),
            (
                "**.js",
                &["index.js", "js/index.js", "src/js/app.js"],
                &["index.jsx"],
            ),
            (
                "docs/*",
                &["docs/README.md", "docs/file.txt"],
                &["docs/a/b.md"],
            ),
            (
                "docs/**",
                &["docs/README.md", "docs/mona/octocat.txt"],
                &["doc/x"],
            ),
            (
                "docs/**/*.md",
                &[
                    "docs/README.md",
                    "docs/mona/hello-world.md",
                    "docs/a/markdown/file.md",
                ],
                &["docs/x.txt", "README.md"],
            ),
            (
                "**/docs/**",
                &[
                    "docs/hello.md",
                    "dir/docs/my-file.txt",
                    "space/docs/plan/space.doc",
                ],
                &["mydocs/x"],
            ),
            (
                "**/README.md",
                &["README.md", "js/README.md"],
                &["README.md.bak", "xREADME.md"],
            ),
            (
                "**/*src/**",
                &["a/src/app.js", "my-src/code/js/app.js"],
                &["src.js"],
            ),
            (
                "**/*-post.md",
                &["my-post.md", "path/their-post.md"],
                &["post.md"],
            ),
            (
                "**/migrate-*.sql",
                &[
                    "migrate-10909.sql",
                    "db/migrate-v1.0.sql",
                    "db/sept/migrate-v1.sql",
                ],
                &["db/migrate.sql"],
            ),
        ] {
            for name in yes {
                assert!(m(p, name), "{p} should match {name}");
            }
            for name in no {
                assert!(!m(p, name), "{p} should not match {name}");
            }
        }
    }

    #[test]
    fn negation_and_order_decide() {
        let f = filter(&["*.md", "!README.md"]);
        assert!(f.selects("hello.md"));
        assert!(!f.selects("README.md"));
        assert!(!f.selects("docs/hello.md"));
        let f = filter(&["*.md", "!README.md", "README*"]);
        assert!(f.selects("hello.md") && f.selects("README.md") && f.selects("README.doc"));
        let f = filter(&["releases/**", "!releases/**-alpha"]);
        assert!(f.selects("releases/10"));
        assert!(!f.selects("releases/10-alpha"));
        assert!(!f.selects("main"));
    }

    #[test]
    fn escapes_and_errors() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("v1\\.0\\+", "v1.0+"));
        assert!(
            Pattern::parse("*?")
                .unwrap_err()
                .message
                .contains("character before it")
        );
        assert!(
            Pattern::parse("[abc")
                .unwrap_err()
                .message
                .contains("no closing")
        );
        assert!(Pattern::parse("[]").unwrap_err().message.contains("empty"));
        assert!(
            Pattern::parse("[a-9]")
                .unwrap_err()
                .message
                .contains("not a range")
        );
        assert!(Pattern::parse("!").unwrap_err().message.contains("empty"));
        assert!(Pattern::parse("!**/x").unwrap().matches("a/x"));
    }

    #[test]
    fn long_names_match_in_linear_passes() {
        let name = "a/".repeat(2000) + "b";
        assert!(m("**/*/**/*/**/b", &name));
        assert!(!m("**/*/**/*/**/c", &name));
    }
}
