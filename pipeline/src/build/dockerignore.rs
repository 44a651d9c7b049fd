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

fn match_parts(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|i| match_parts(rest, &path[i..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, path_rest)) => {
                glob(first.as_bytes(), name.as_bytes()) && match_parts(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*`, `?`, `[a-z]`/`[^a-z]` and `\x` within one component.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob(rest, &s[1..]),
        Some((b'[', rest)) => {
            let Some(close) = rest.iter().position(|&c| c == b']') else {
                return s.first() == Some(&b'[') && glob(rest, &s[1..]);
            };
            let Some((&c, s_rest)) = s.split_first() else {
                return false;
            };
            let (negated, class) = match rest[..close].split_first() {
                Some((b'^' | b'!', cls)) => (true, cls),
                _ => (false, &rest[..close]),
            };
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
            hit != negated && glob(&rest[close + 1..], s_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            s.first() == Some(&rest[0]) && glob(&rest[1..], &s[1..])
        }
        Some((&c, rest)) => s.first() == Some(&c) && glob(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
