//! `os-release(5)`: the distribution an image is built on.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
    pub name: Option<String>,
    pub version_codename: Option<String>,
    pub id_like: Option<String>,
}

impl OsRelease {
    /// The `distro` purl qualifier: `ID-VERSION_ID` (`debian-12`), or the ID
    /// alone when there is no version (testing, sid).
    pub fn distro_qualifier(&self) -> Option<String> {
        let id = self.id.as_deref()?;
        Some(match self.version_id.as_deref() {
            Some(v) => format!("{id}-{v}"),
            None => id.to_owned(),
        })
    }
}

/// Parses `KEY=value` lines; values may be quoted with shell-style escapes.
/// Unknown keys and malformed lines are ignored, as the format asks.
pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw.trim());
        if value.is_empty() {
            continue;
        }
        let slot = match key.trim() {
            "ID" => &mut os.id,
            "VERSION_ID" => &mut os.version_id,
            "PRETTY_NAME" => &mut os.pretty_name,
            "NAME" => &mut os.name,
            "VERSION_CODENAME" => &mut os.version_codename,
            "ID_LIKE" => &mut os.id_like,
            _ => continue,
        };
        *slot = Some(value);
    }
    os
}

fn unquote(raw: &str) -> String {
    let quote = match raw.chars().next() {
        Some(q @ ('"' | '\'')) if raw.len() >= 2 && raw.ends_with(q) => q,
        _ => return raw.to_owned(),
    };
    let inner = &raw[1..raw.len() - 1];
    if quote == '\'' {
        return inner.to_owned();
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_and_alpine() {
        let os = parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        );
        assert_eq!(os.distro_qualifier().as_deref(), Some("debian-12"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let os = parse("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n# comment\ngarbage\n");
        assert_eq!(os.distro_qualifier().as_deref(), Some("alpine-3.19.1"));
        let os = parse("ID='debian'\nPRETTY_NAME=\"a \\\"quoted\\\" name\"\n");
        assert_eq!(os.distro_qualifier().as_deref(), Some("debian"));
        assert_eq!(os.pretty_name.as_deref(), Some("a \"quoted\" name"));
        assert_eq!(parse("").distro_qualifier(), None);
    }
}
