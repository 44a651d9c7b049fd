//! Package URLs, parsed just enough to decide whether a purl written in a
//! policy or a VEX document names a package Grype reported.
//!
//! The written purl is a pattern: type, namespace and name must be equal;
//! version, qualifiers and subpath only count when the pattern has them. So
//! `pkg:deb/debian/openssl@3.0.11-1~deb12u2` matches Grype's
//! `pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12`,
//! and `pkg:deb/debian/openssl` matches every version. This is how OpenVEX
//! tools compare purls.

use std::collections::BTreeMap;
use std::fmt;

/// A parsed, percent-decoded, normalized purl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purl {
    pub kind: String,
    pub namespace: Vec<String>,
    pub name: String,
    pub version: Option<String>,
    pub qualifiers: BTreeMap<String, String>,
    pub subpath: Option<String>,
    /// As written, for messages.
    raw: String,
}

impl Purl {
    /// Parses `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS#SUBPATH`. The
    /// error says what is wrong, for messages that quote the field.
    pub fn parse(s: &str) -> Result<Purl, String> {
        let rest = s
            .get(..4)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkg:"))
            .map(|_| &s[4..])
            .ok_or_else(|| format!("{s:?} is not a package URL: it must start with `pkg:`"))?;
        // The spec tolerates `pkg://type/...`.
        let rest = rest.trim_start_matches('/');
        let (rest, subpath) = match rest.split_once('#') {
            Some((r, sp)) => (r, Some(decode(sp.trim_matches('/'))?)),
            None => (rest, None),
        };
        let (rest, qualifiers) = match rest.split_once('?') {
            Some((r, q)) => (r, parse_qualifiers(q)?),
            None => (rest, BTreeMap::new()),
        };
        let rest = rest.trim_end_matches('/');
        // `@` separates the version only after the last `/`: an npm scope
        // written unencoded (`@actions/core`) is not a version.
        let last_slash = rest.rfind('/').unwrap_or(0);
        let (path, version) = match rest[last_slash..].rfind('@') {
            Some(at) => {
                let at = last_slash + at;
                let v = decode(&rest[at + 1..])?;
                (&rest[..at], (!v.is_empty()).then_some(v))
            }
            None => (rest, None),
        };
        let mut segments: Vec<&str> = path.split('/').filter(|seg| !seg.is_empty()).collect();
        if segments.len() < 2 {
            return Err(format!(
                "{s:?} is not a package URL: it needs a type and a name, as in pkg:deb/debian/openssl@3.0.11"
            ));
        }
        let kind = segments.remove(0).to_ascii_lowercase();
        if !kind
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-'))
        {
            return Err(format!(
                "{s:?} is not a package URL: type {kind:?} has invalid characters"
            ));
        }
        let name_raw = segments.pop().unwrap_or_default();
        let name = normalize_name(&kind, &decode(name_raw)?);
        let namespace = segments
            .into_iter()
            .map(|seg| decode(seg).map(|d| normalize_namespace(&kind, &d)))
            .collect::<Result<Vec<_>, _>>()?;
        let version = version.map(|v| {
            if kind == "oci" {
                v.to_ascii_lowercase()
            } else {
                v
            }
        });
        Ok(Purl {
            kind,
            namespace,
            name,
            version,
            qualifiers,
            subpath,
            raw: s.to_owned(),
        })
    }

    /// Whether `self`, read as a pattern, names `candidate`.
    pub fn matches(&self, candidate: &Purl) -> bool {
        self.kind == candidate.kind
            && self.namespace == candidate.namespace
            && self.name == candidate.name
            && self
                .version
                .as_ref()
                .is_none_or(|v| candidate.version.as_ref() == Some(v))
            && self
                .qualifiers
                .iter()
                .all(|(k, v)| candidate.qualifiers.get(k) == Some(v))
            && self
                .subpath
                .as_ref()
                .is_none_or(|sp| candidate.subpath.as_ref() == Some(sp))
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Purl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

fn parse_qualifiers(q: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("qualifier {pair:?} has no `=`"))?;
        let v = decode(v)?;
        // An empty value means the qualifier is absent (purl spec).
        if !v.is_empty() {
            out.insert(k.to_ascii_lowercase(), v);
        }
    }
    Ok(out)
}

/// Percent-decoding; the result must be UTF-8.
fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?} has a bad percent-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} does not decode to UTF-8"))
}

/// Types whose names the purl spec declares case-insensitive, and PyPI's
/// PEP 503 normalization, so `pkg:pypi/PyYAML` names `pkg:pypi/pyyaml`.
fn normalize_name(kind: &str, name: &str) -> String {
    match kind {
        "pypi" => name.to_ascii_lowercase().replace(['_', '.'], "-"),
        "deb" | "apk" | "npm" | "github" | "bitbucket" | "oci" => name.to_ascii_lowercase(),
        _ => name.to_owned(),
    }
}

fn normalize_namespace(kind: &str, ns: &str) -> String {
    match kind {
        "deb" | "apk" | "npm" | "github" | "bitbucket" | "rpm" | "alpm" => ns.to_ascii_lowercase(),
        _ => ns.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Purl {
        Purl::parse(s).unwrap()
    }

    #[test]
    fn parses_the_forms_syft_writes() {
        let deb =
            p("pkg:deb/debian/libpam-runtime@1.1.8-3.6?arch=all&distro=debian-12&upstream=pam");
        assert_eq!(
            (deb.kind.as_str(), deb.name.as_str()),
            ("deb", "libpam-runtime")
        );
        assert_eq!(deb.namespace, ["debian"]);
        assert_eq!(deb.version.as_deref(), Some("1.1.8-3.6"));
        assert_eq!(
            deb.qualifiers.get("distro").map(String::as_str),
            Some("debian-12")
        );

        let npm = p("pkg:npm/%40actions/core@1.6.0");
        assert_eq!(npm.namespace, ["@actions"]);
        assert_eq!(
            (npm.name.as_str(), npm.version.as_deref()),
            ("core", Some("1.6.0"))
        );
        // Unencoded scope, no version: the `@` is not a version separator.
        let scope = p("pkg:npm/@actions/core");
        assert_eq!(
            (scope.namespace[0].as_str(), scope.version),
            ("@actions", None)
        );

        let oci = p("pkg:oci/debian@sha256%3A124C7D?repository_url=index.docker.io/library");
        assert_eq!(oci.version.as_deref(), Some("sha256:124c7d"));
        assert_eq!(
            p("pkg:golang/github.com/a/b@v1.2.3#sub/dir")
                .subpath
                .as_deref(),
            Some("sub/dir")
        );
    }

    #[test]
    fn a_pattern_without_version_or_qualifiers_matches_any() {
        let found = p("pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12");
        assert!(p("pkg:deb/debian/openssl").matches(&found));
        assert!(p("pkg:deb/debian/openssl@3.0.11-1~deb12u2").matches(&found));
        assert!(p("pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-12").matches(&found));
        assert!(!p("pkg:deb/debian/openssl@3.0.11-1~deb12u2?distro=debian-11").matches(&found));
        assert!(!p("pkg:deb/debian/openssl@3.0.12").matches(&found));
        assert!(!p("pkg:deb/ubuntu/openssl").matches(&found));
        assert!(!p("pkg:apk/debian/openssl").matches(&found));
        // The pattern is the one that may be less specific, not the finding.
        assert!(!found.matches(&p("pkg:deb/debian/openssl")));
    }

    #[test]
    fn names_compare_as_the_spec_says_per_type() {
        assert!(p("pkg:pypi/PyYAML_Env@1.0").matches(&p("pkg:pypi/pyyaml-env@1.0")));
        assert!(p("pkg:npm/%40Acme/Widgets").matches(&p("pkg:npm/%40acme/widgets@1.0.0")));
        assert!(!p("pkg:golang/github.com/A/b").matches(&p("pkg:golang/github.com/a/b@v1")));
    }

    #[test]
    fn malformed_purls_are_rejected_with_the_reason() {
        for (bad, why) in [
            ("deb/debian/openssl", "must start with `pkg:`"),
            ("pkg:openssl", "needs a type and a name"),
            ("pkg:deb/debian/openssl@1%zz", "bad percent-escape"),
            ("pkg:deb/debian/x?arch", "has no `=`"),
            ("pkg:d$b/x/y", "invalid characters"),
        ] {
            let err = Purl::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
