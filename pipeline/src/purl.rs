//! Package URLs, in one place: the canonical text the SBOM writes
//! ([`canonical`]) and the parsed, normalized form the scan gate matches
//! policy and VEX purls with ([`Purl`]). Encoding and decoding are the
//! `packageurl` crate's, which follows the purl specification and runs its
//! conformance suite; what is ours is which purl each package gets
//! (`crate::sbom::purl`) and how a written purl, read as a pattern,
//! matches a found one.
//!
//! # The `+` in versions
//!
//! Versions such as Debian's `1.5.2-6+deb12u1` are written `%2B`:
//! `pkg:deb/debian/libpam-runtime@1.5.2-6%2Bdeb12u1`. Syft leaves `+` as it
//! is (Go's path escaping keeps it); the purl specification does not: its
//! canonical form keeps only letters, digits, `.-_~`, the separators where
//! they separate, and `:`, and percent-encodes everything else. We emit the
//! specification's form because
//! - a canonical purl has one spelling, so tools that compare purl text
//!   agree with every conforming writer (Syft is the odd one out);
//! - a bare `+` reads as a space under form decoding (Java's URLDecoder,
//!   PHP's urldecode, Go's QueryUnescape), which would turn the version
//!   into `1.5.2-6 deb12u1`: `%2B` cannot be misread;
//! - the consumers that matter decode before comparing, so nothing is
//!   lost: Grype reads purls with packageurl-go (and takes versions from
//!   the component's `version` field), Dependency-Track and vexctl parse
//!   them with their spec libraries, and our own gate compares decoded
//!   components, so a policy or VEX purl written with `+` or `%2B` matches
//!   either.
//!
//! `:` (Debian epochs, `1:4.13`) stays unencoded everywhere, qualifiers
//! included, as the specification requires.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use packageurl::PackageUrl;

/// A purl that cannot be read or written, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{purl:?} is not a package URL: {reason}")]
pub struct PurlError {
    pub purl: String,
    pub reason: String,
}

/// The canonical purl of a package: `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`,
/// qualifiers with an empty value left out and the rest sorted by key.
pub fn canonical(
    kind: &str,
    namespace: &[&str],
    name: &str,
    version: &str,
    qualifiers: &[(&str, String)],
) -> Result<String, PurlError> {
    let fail = |e: packageurl::Error| {
        let mut path: Vec<&str> = namespace.to_vec();
        path.push(name);
        PurlError {
            purl: format!("pkg:{kind}/{}@{version}", path.join("/")),
            reason: e.to_string(),
        }
    };
    // The purl crate writes a version's `/` unescaped and reads it back as
    // a path separator: the purl would name another package (found by the
    // `purl` fuzz target's build → parse round trip).
    if version.contains('/') {
        let mut path: Vec<&str> = namespace.to_vec();
        path.push(name);
        return Err(PurlError {
            purl: format!("pkg:{kind}/{}@{version}", path.join("/")),
            reason: "the version contains `/`, which does not read back from a package URL".into(),
        });
    }
    // The crate reads empty, `.` and `..` namespace segments as nothing:
    // `pkg:golang/./x` would read back as another package (found by the
    // `purl` fuzz target's smoke run).
    if let Some(seg) = namespace
        .iter()
        .find(|seg| seg.is_empty() || **seg == "." || **seg == ".." || seg.contains('/'))
    {
        let mut path: Vec<&str> = namespace.to_vec();
        path.push(name);
        return Err(PurlError {
            purl: format!("pkg:{kind}/{}@{version}", path.join("/")),
            reason: format!(
                "namespace segment {seg:?} is empty, `.`, `..` or holds `/`, which does not read back from a package URL"
            ),
        });
    }
    let mut purl = PackageUrl::new(kind, name).map_err(fail)?;
    if !namespace.is_empty() {
        purl.with_namespace(namespace.join("/")).map_err(fail)?;
    }
    if !version.is_empty() {
        purl.with_version(version).map_err(fail)?;
    }
    for (k, v) in qualifiers.iter().filter(|(_, v)| !v.is_empty()) {
        purl.add_qualifier(*k, v.as_str()).map_err(fail)?;
    }
    purl.validate().map_err(fail)?;
    Ok(purl.to_string())
}

/// A parsed, percent-decoded, normalized purl, used as a pattern: type,
/// namespace and name must be equal; version, qualifiers and subpath only
/// count when the pattern has them. So
/// `pkg:deb/debian/openssl@3.0.11-1~deb12u2` matches Grype's
/// `pkg:deb/debian/openssl@3.0.11-1~deb12u2?arch=amd64&distro=debian-12`,
/// and `pkg:deb/debian/openssl` matches every version. This is how OpenVEX
/// tools compare purls.
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
    /// Parses `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS#SUBPATH`.
    pub fn parse(s: &str) -> Result<Purl, PurlError> {
        let fail = |reason: String| PurlError {
            purl: s.to_owned(),
            reason,
        };
        let rest = s
            .get(..4)
            .filter(|scheme| scheme.eq_ignore_ascii_case("pkg:"))
            .map(|_| &s[4..])
            .ok_or_else(|| fail("it must start with `pkg:`".into()))?;
        // The crate decodes `%zz` as the three characters it is; a policy
        // typo must not silently match nothing.
        check_escapes(rest)
            .map_err(|at| fail(format!("it has a bad percent-escape at byte {at}")))?;
        let parsed = PackageUrl::from_str(&format!("pkg:{rest}")).map_err(|e| {
            fail(match e {
                packageurl::Error::MissingType | packageurl::Error::MissingName => {
                    format!("{e}: it needs a type and a name, as in pkg:deb/debian/openssl@3.0.11")
                }
                packageurl::Error::InvalidType(t) => {
                    format!("type {t:?} has invalid characters")
                }
                other => other.to_string(),
            })
        })?;
        let kind = parsed.ty().to_owned();
        let namespace = parsed
            .namespace()
            .map(|ns| {
                // `pkg:golang/./x` has namespace `""` in the crate's reading
                // (it drops `.` segments): that is no namespace.
                ns.split('/')
                    .filter(|seg| !seg.is_empty())
                    .map(|seg| normalize_namespace(&kind, seg))
                    .collect()
            })
            .unwrap_or_default();
        let name = normalize_name(&kind, parsed.name());
        let version = parsed.version().filter(|v| !v.is_empty()).map(|v| {
            if kind == "oci" {
                v.to_ascii_lowercase()
            } else {
                v.to_owned()
            }
        });
        let qualifiers = parsed
            .qualifiers()
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(Purl {
            namespace,
            name,
            version,
            qualifiers,
            subpath: parsed.subpath().map(str::to_owned),
            raw: s.to_owned(),
            kind,
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

/// Every `%` starts an escape of two hex digits; `Err` is the offset of
/// one that does not.
fn check_escapes(s: &str) -> Result<(), usize> {
    let bytes = s.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !bytes
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        {
            return Err(i);
        }
    }
    Ok(())
}

/// Beyond the crate's per-type lowercasing: PyPI's full PEP 503
/// normalization (`.` too), so `pkg:pypi/zope.interface` names
/// `pkg:pypi/zope-interface`.
fn normalize_name(kind: &str, name: &str) -> String {
    match kind {
        "pypi" => name.to_ascii_lowercase().replace(['_', '.'], "-"),
        "deb" | "apk" | "npm" | "github" | "bitbucket" | "oci" => name.to_ascii_lowercase(),
        _ => name.to_owned(),
    }
}

/// npm scopes are lowercase like npm names (`@Acme` names `@acme`).
fn normalize_namespace(kind: &str, ns: &str) -> String {
    match kind {
        "deb" | "apk" | "npm" | "github" | "bitbucket" | "rpm" | "alpm" => ns.to_ascii_lowercase(),
        _ => ns.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `purl` fuzz smoke: a `.` namespace segment wrote
    /// `pkg:golang/./%0A`, which reads back with no namespace, and that
    /// reading rebuilt as `pkg:golang//%0A`.
    #[test]
    fn dot_and_empty_namespace_segments_do_not_round_trip_so_are_refused() {
        for ns in [".", "..", "", "a/b"] {
            let err = canonical("golang", &[ns], "x", "", &[]).unwrap_err();
            assert!(err.reason.contains("namespace segment"), "{ns:?}: {err}");
        }
        let p = Purl::parse("pkg:golang/./%0A").unwrap();
        assert!(p.namespace.is_empty(), "{:?}", p.namespace);
        let again = canonical("golang", &[], &p.name, "", &[]).unwrap();
        assert_eq!(again, "pkg:golang/%0A");
        assert_eq!(Purl::parse(&again).unwrap().namespace, Vec::<String>::new());
        assert!(canonical("golang", &["github.com", "pkg"], "errors", "v1", &[]).is_ok());
    }

    /// Found by the `purl` fuzz target: `pkg:npm/a@1/2` did not read back
    /// as version `1/2`.
    #[test]
    fn versions_with_a_slash_are_refused() {
        let e = canonical("npm", &[], "a", "1.0/2", &[]).unwrap_err();
        assert!(e.reason.contains("`/`"), "{e}");
        let ok = canonical("npm", &[], "a", "1.0-2", &[]).unwrap();
        assert_eq!(Purl::parse(&ok).unwrap().version.as_deref(), Some("1.0-2"));
    }

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
        assert_eq!(p("PKG:cargo/argh@0.1.12").kind, "cargo");
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
        assert!(!p("pkg:maven/org.A/b").matches(&p("pkg:maven/org.a/b@1")));
    }

    #[test]
    fn a_plus_matches_whether_written_plain_or_encoded() {
        let found = p("pkg:deb/debian/libpam-runtime@1.5.2-6%2Bdeb12u1?arch=all");
        assert_eq!(found.version.as_deref(), Some("1.5.2-6+deb12u1"));
        assert!(p("pkg:deb/debian/libpam-runtime@1.5.2-6+deb12u1").matches(&found));
        assert!(p("pkg:deb/debian/libpam-runtime@1.5.2-6%2bdeb12u1").matches(&found));
        let syft = p("pkg:deb/debian/libpam-runtime@1.5.2-6+deb12u1?arch=all");
        assert!(p("pkg:deb/debian/libpam-runtime@1.5.2-6%2Bdeb12u1").matches(&syft));
    }

    #[test]
    fn canonical_text_follows_the_specification() {
        assert_eq!(
            canonical(
                "deb",
                &["debian"],
                "login",
                "1:4.13+dfsg1-1+b1",
                &[
                    ("upstream", "shadow@1:4.13+dfsg1-1".into()),
                    ("arch", "amd64".into()),
                    ("distro", String::new()),
                ]
            )
            .unwrap(),
            "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&upstream=shadow%401:4.13%2Bdfsg1-1"
        );
        assert_eq!(
            canonical("generic", &["a b"], "n?#", "1.0", &[("z", "x y&/".into())]).unwrap(),
            "pkg:generic/a%20b/n%3F%23@1.0?z=x%20y%26%2F"
        );
        assert!(canonical("cargo", &[], "", "1", &[]).is_err());
    }

    #[test]
    fn malformed_purls_are_rejected_with_the_reason() {
        for (bad, why) in [
            ("deb/debian/openssl", "must start with `pkg:`"),
            ("pkg:openssl", "needs a type and a name"),
            ("pkg:deb/debian/openssl@1%zz", "bad percent-escape"),
            ("pkg:d$b/x/y", "invalid characters"),
            ("pkg:pypi/ns/name@1", "no namespace allowed"),
        ] {
            let err = Purl::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("is not a package URL"), "{err}");
        }
    }
}
