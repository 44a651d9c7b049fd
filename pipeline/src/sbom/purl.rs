//! Package URLs as Syft writes them, so scanners that key on purls (Grype)
//! match: `pkg:deb/debian/NAME@VERSION?arch=..&distro=debian-12&upstream=..`,
//! `pkg:apk/alpine/..`, `pkg:pypi/NORMALIZED@..`, `pkg:npm/%40scope/name@..`,
//! `pkg:cargo/..`, `pkg:golang/MODULE/PATH@..`. Qualifiers are sorted by key.

use super::catalog::{Ecosystem, OsRelease, Record, python};

/// Characters kept as they are in path segments (name, namespace,
/// version): RFC 3986 unreserved, plus `+` and `:` that Debian versions
/// hold and Syft leaves unescaped.
fn keep_in_segment(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b':')
}

/// Qualifier values are query-escaped: only unreserved characters stay.
fn keep_in_qualifier(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn escape(s: &str, keep: fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS` from raw parts.
pub fn build(
    kind: &str,
    namespace: &[&str],
    name: &str,
    version: &str,
    qualifiers: &[(&str, String)],
) -> String {
    let mut s = format!("pkg:{kind}/");
    for part in namespace {
        s.push_str(&escape(part, keep_in_segment));
        s.push('/');
    }
    s.push_str(&escape(name, keep_in_segment));
    if !version.is_empty() {
        s.push('@');
        s.push_str(&escape(version, keep_in_segment));
    }
    let mut q: Vec<&(&str, String)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort_by_key(|(k, _)| *k);
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&escape(v, keep_in_qualifier));
    }
    s
}

/// The purl of a package found in an image whose distribution is `distro`.
pub fn for_record(rec: &Record, distro: Option<&OsRelease>) -> String {
    let distro_id = distro.and_then(|d| d.id.as_deref());
    let distro_q = distro
        .and_then(OsRelease::distro_qualifier)
        .unwrap_or_default();
    let upstream = match (&rec.source, &rec.source_version) {
        (Some(s), Some(v)) => format!("{s}@{v}"),
        (Some(s), None) => s.clone(),
        (None, Some(v)) => format!("{}@{v}", rec.name),
        (None, None) => String::new(),
    };
    let arch = rec.arch.clone().unwrap_or_default();
    match rec.ecosystem {
        Ecosystem::Deb => build(
            "deb",
            &[distro_id.unwrap_or("debian")],
            &rec.name,
            &rec.version,
            &[("arch", arch), ("distro", distro_q), ("upstream", upstream)],
        ),
        Ecosystem::Apk => build(
            "apk",
            &[distro_id.unwrap_or("alpine")],
            &rec.name,
            &rec.version,
            &[("arch", arch), ("distro", distro_q), ("upstream", upstream)],
        ),
        Ecosystem::Python => build(
            "pypi",
            &[],
            &python::normalize_name(&rec.name),
            &rec.version,
            &[],
        ),
        Ecosystem::Npm => match rec.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                build("npm", &[scope], name, &rec.version, &[])
            }
            _ => build("npm", &[], &rec.name, &rec.version, &[]),
        },
        Ecosystem::Cargo => build("cargo", &[], &rec.name, &rec.version, &[]),
        Ecosystem::Go => {
            let parts: Vec<&str> = rec.name.split('/').filter(|p| !p.is_empty()).collect();
            match parts.split_last() {
                Some((name, namespace)) => build("golang", namespace, name, &rec.version, &[]),
                None => build("golang", &[], &rec.name, &rec.version, &[]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::catalog::osrelease;

    fn rec(eco: Ecosystem, name: &str, version: &str) -> Record {
        Record::new(eco, name, version)
    }

    #[test]
    fn syft_forms() {
        let debian = osrelease::parse("ID=debian\nVERSION_ID=\"12\"\n");
        let mut r = rec(Ecosystem::Deb, "libpam-runtime", "1.5.2-6+deb12u1");
        r.arch = Some("all".into());
        r.source = Some("pam".into());
        assert_eq!(
            for_record(&r, Some(&debian)),
            "pkg:deb/debian/libpam-runtime@1.5.2-6+deb12u1?arch=all&distro=debian-12&upstream=pam"
        );
        let mut r = rec(Ecosystem::Deb, "libgcc-s1", "12.2.0-14");
        r.arch = Some("amd64".into());
        r.source = Some("gcc-12".into());
        r.source_version = Some("12.2.0-14+b1".into());
        assert_eq!(
            for_record(&r, Some(&debian)),
            "pkg:deb/debian/libgcc-s1@12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12%4012.2.0-14%2Bb1"
        );
        let mut r = rec(Ecosystem::Deb, "login", "1:4.13+dfsg1-1+b1");
        r.arch = Some("amd64".into());
        r.source = Some("shadow".into());
        r.source_version = Some("1:4.13+dfsg1-1".into());
        assert_eq!(
            for_record(&r, None),
            "pkg:deb/debian/login@1:4.13+dfsg1-1+b1?arch=amd64&upstream=shadow%401%3A4.13%2Bdfsg1-1"
        );
        let alpine = osrelease::parse("ID=alpine\nVERSION_ID=3.19.1\n");
        let mut r = rec(Ecosystem::Apk, "busybox-binsh", "1.36.1-r15");
        r.arch = Some("x86_64".into());
        r.source = Some("busybox".into());
        assert_eq!(
            for_record(&r, Some(&alpine)),
            "pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Python, "Typing_Extensions", "4.12.2"), None),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Npm, "@actions/core", "1.6.0"), None),
            "pkg:npm/%40actions/core@1.6.0"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Npm, "left-pad", "1.3.0"), None),
            "pkg:npm/left-pad@1.3.0"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Cargo, "argh", "0.1.12"), None),
            "pkg:cargo/argh@0.1.12"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Go, "github.com/pkg/errors", "v0.9.1"), None),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
        assert_eq!(
            for_record(&rec(Ecosystem::Go, "stdlib", "1.21.5"), None),
            "pkg:golang/stdlib@1.21.5"
        );
    }

    #[test]
    fn odd_characters_are_escaped() {
        assert_eq!(
            build(
                "generic",
                &["a b"],
                "n?#",
                "1/2",
                &[("z", "x y".into()), ("a", "&=".into())]
            ),
            "pkg:generic/a%20b/n%3F%23@1%2F2?a=%26%3D&z=x%20y"
        );
    }
}
