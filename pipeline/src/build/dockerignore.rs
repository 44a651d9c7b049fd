//! `.dockerignore` as Docker reads it: one pattern a line, `#` comments,
//! `!` exceptions, `*` and `?` within a path component, `**` across
//! components, `[...]` classes, `\` escapes. A pattern that matches a
//! directory excludes everything under it; the last matching line wins.

#[derive(Debug, Clone, Default)]
pub struct Dockerignore {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    negate: bool,
    parts: Vec<String>,
}

impl Dockerignore {
    pub fn parse(text: &str) -> Dockerignore {
        let mut rules = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (negate, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, line),
            };
            let parts: Vec<String> = pattern
                .split('/')
                .filter(|p| !p.is_empty() && *p != ".")
                .map(str::to_owned)
                .collect();
            if parts.is_empty() {
                continue;
            }
            rules.push(Rule { negate, parts });
        }
        Dockerignore { rules }
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let mut excluded = false;
        for rule in &self.rules {
            // The path itself, or any directory above it.
            let hit = (1..=parts.len()).any(|n| match_parts(&rule.parts, &parts[..n]));
            if hit {
                excluded = !rule.negate;
            }
        }
        excluded
    }

    /// Whether an exception could bring back something under an excluded
    /// directory (then the walk must enter it).
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| r.negate)
    }
}

/// Whether `pattern` (components, `**` for any number of them) matches
/// `path`. Dynamic programming over (pattern, path) positions, one row at a
/// time: trying every split of every `**` by recursion takes exponential
/// time on patterns like `**/**/**/…/x`, and a repository's `.dockerignore`
/// is untrusted.
fn match_parts(pattern: &[String], path: &[&str]) -> bool {
    // below[j]: pattern[i + 1..] matches path[j..]; row[j]: pattern[i..] does.
    let mut below: Vec<bool> = (0..=path.len()).map(|j| j == path.len()).collect();
    let mut row = vec![false; path.len() + 1];
    for part in pattern.iter().rev() {
        if part == "**" {
            let mut any = false;
            for j in (0..=path.len()).rev() {
                any |= below[j];
                row[j] = any;
            }
        } else {
            let glob = Glob::new(part.as_bytes());
            row[path.len()] = false;
            for j in 0..path.len() {
                row[j] = below[j + 1] && glob.matches(path[j].as_bytes());
            }
        }
        std::mem::swap(&mut below, &mut row);
    }
    below[0]
}

/// One character of a component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Star,
    Any,
    Byte(u8),
    /// `[a-z]`, `[^a-z]` (or `[!a-z]`): the class text and whether negated.
    Class(&'a [u8], bool),
}

impl Token<'_> {
    fn matches(&self, c: u8) -> bool {
        match *self {
            Token::Star | Token::Any => true,
            Token::Byte(b) => b == c,
            Token::Class(class, negated) => {
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == b'-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != negated
            }
        }
    }
}

/// `*`, `?`, `[a-z]`/`[^a-z]` and `\x` within one component.
struct Glob<'a>(Vec<Token<'a>>);

impl<'a> Glob<'a> {
    fn new(mut p: &'a [u8]) -> Self {
        let mut tokens = Vec::new();
        while let Some((&c, rest)) = p.split_first() {
            p = rest;
            tokens.push(match c {
                b'*' => Token::Star,
                b'?' => Token::Any,
                b'[' => match rest.iter().position(|&c| c == b']') {
                    // An unclosed `[` is itself.
                    None => Token::Byte(b'['),
                    Some(close) => {
                        p = &rest[close + 1..];
                        match rest[..close].split_first() {
                            Some((b'^' | b'!', class)) => Token::Class(class, true),
                            _ => Token::Class(&rest[..close], false),
                        }
                    }
                },
                b'\\' if !rest.is_empty() => {
                    p = &rest[1..];
                    Token::Byte(rest[0])
                }
                c => Token::Byte(c),
            });
        }
        Glob(tokens)
    }

    /// Greedy matching that backtracks only to the last `*`: linear in the
    /// name for each token, where trying every split at every `*` is
    /// exponential (`*a*a*a*a*a*b` against a long run of `a`).
    fn matches(&self, s: &[u8]) -> bool {
        let t = &self.0;
        let (mut ti, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            match t.get(ti) {
                Some(Token::Star) => {
                    star = Some((ti, si));
                    ti += 1;
                }
                Some(tok) if tok.matches(s[si]) => {
                    ti += 1;
                    si += 1;
                }
                _ => match star {
                    Some((st, ss)) => {
                        ti = st + 1;
                        si = ss + 1;
                        star = Some((st, ss + 1));
                    }
                    None => return false,
                },
            }
        }
        t[ti..].iter().all(|tok| *tok == Token::Star)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(p: &[u8], s: &[u8]) -> bool {
        Glob::new(p).matches(s)
    }

    /// Found reading the matcher for the `dockerignore` fuzz target: both
    /// `*` within a name and `**` across names were matched by trying every
    /// split, exponential in the number of wildcards.
    #[test]
    fn wildcards_match_in_polynomial_time() {
        let name = "a".repeat(200);
        let d = Dockerignore::parse(&format!("{}b\n{}x\n", "*a".repeat(30), "**/".repeat(40)));
        assert!(!d.is_excluded(&name));
        let deep = vec!["a"; 60].join("/");
        assert!(!d.is_excluded(&deep));
        assert!(d.is_excluded(&format!("{deep}/x")));
        let d = Dockerignore::parse(&format!("{}\n", "*a".repeat(30)));
        assert!(d.is_excluded(&name));
    }

    #[test]
    fn glob_classes_escapes_and_brackets() {
        let g = |p: &str, s: &str| Glob::new(p.as_bytes()).matches(s.as_bytes());
        assert!(g("[a-c]x", "bx") && !g("[a-c]x", "dx"));
        assert!(g("[^a-c]x", "dx") && !g("[!a-c]x", "ax"));
        assert!(g("\\*", "*") && !g("\\*", "a"));
        assert!(g("a[", "a[") && !g("a[", "ab"), "an unclosed [ is itself");
        assert!(g("*.log", ".log") && g("a*b*c", "aXbYbZc") && !g("a*b", "ab/"));
        assert!(g("?", "x") && !g("?", "") && g("*", ""));
        assert!(!g("[]", "a"), "an empty class matches nothing");
    }

    #[test]
    fn docker_semantics() {
        let d = Dockerignore::parse(
            "# comment\n*.log\n/target\nnode_modules\n**/*.tmp\ndocs/**/secret\n!keep.log\nbuild/\n!build/out\n",
        );
        assert!(d.is_excluded("a.log"));
        assert!(!d.is_excluded("keep.log"));
        assert!(!d.is_excluded("dir/a.log"), "* does not cross /");
        assert!(d.is_excluded("target"));
        assert!(d.is_excluded("target/debug/x"), "under an excluded dir");
        assert!(d.is_excluded("node_modules/a/package.json"));
        assert!(!d.is_excluded("src/node_modules"), "patterns are anchored");
        assert!(d.is_excluded("x.tmp"));
        assert!(d.is_excluded("a/b/c/x.tmp"));
        assert!(d.is_excluded("docs/secret"));
        assert!(d.is_excluded("docs/a/b/secret"));
        assert!(d.is_excluded("build/tmp"));
        assert!(!d.is_excluded("build/out"));
        assert!(!d.is_excluded("build/out/bin"));
        assert!(!d.is_excluded("src/main.rs"));
        assert!(d.has_exceptions());
    }

    #[test]
    fn globs() {
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"[a-c]x", b"bx"));
        assert!(!glob(b"[^a-c]x", b"bx"));
        assert!(glob(b"\\*", b"*"));
        assert!(!glob(b"\\*", b"a"));
        assert!(glob(b"*.rs", b"main.rs"));
        assert!(!glob(b"*.rs", b"main.rsx"));
    }
}
