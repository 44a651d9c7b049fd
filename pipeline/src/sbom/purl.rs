//! Which package URL each package gets: Syft's forms, so scanners that key
//! on purls (Grype) match: `pkg:deb/debian/NAME@VERSION?arch=..&distro=debian-12&upstream=..`,
//! `pkg:apk/alpine/..`, `pkg:pypi/NORMALIZED@..`, `pkg:npm/%40scope/name@..`,
//! `pkg:cargo/..`, `pkg:golang/MODULE/PATH@..`. The text is the purl
//! specification's canonical form ([`crate::purl::canonical`]; why `+` is
//! written `%2B` is explained there).

use super::catalog::{Ecosystem, OsRelease, Record, python};
use crate::purl::{PurlError, canonical};

/// The purl of a package found in an image whose distribution is `distro`.
pub fn for_record(rec: &Record, distro: Option<&OsRelease>) -> Result<String, PurlError> {
    // An empty `ID=` names no distribution: the default namespace applies.
    let distro_id = distro
        .and_then(|d| d.id.as_deref())
        .filter(|id| !id.is_empty());
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
    let os_qualifiers = [("arch", arch), ("distro", distro_q), ("upstream", upstream)];
    match rec.ecosystem {
        Ecosystem::Deb => canonical(
            "deb",
            &[distro_id.unwrap_or("debian")],
            &rec.name,
            &rec.version,
            &os_qualifiers,
        ),
        Ecosystem::Apk => canonical(
            "apk",
            &[distro_id.unwrap_or("alpine")],
            &rec.name,
            &rec.version,
            &os_qualifiers,
        ),
        Ecosystem::Python => canonical(
            "pypi",
            &[],
            &python::normalize_name(&rec.name),
            &rec.version,
            &[],
        ),
        Ecosystem::Npm => match rec.name.split_once('/') {
            Some((scope, name)) if scope.starts_with('@') => {
                canonical("npm", &[scope], name, &rec.version, &[])
            }
            _ => canonical("npm", &[], &rec.name, &rec.version, &[]),
        },
        Ecosystem::Cargo => canonical("cargo", &[], &rec.name, &rec.version, &[]),
        Ecosystem::Go => {
            let parts: Vec<&str> = rec.name.split('/').filter(|p| !p.is_empty()).collect();
            match parts.split_last() {
                Some((name, namespace)) => canonical("golang", namespace, name, &rec.version, &[]),
                None => canonical("golang", &[], &rec.name, &rec.version, &[]),
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

    fn purl(r: &Record, distro: Option<&OsRelease>) -> String {
        for_record(r, distro).unwrap()
    }

    #[test]
    fn syft_forms_in_canonical_text() {
        let debian = osrelease::parse("ID=debian\nVERSION_ID=\"12\"\n");
        let mut r = rec(Ecosystem::Deb, "libpam-runtime", "1.5.2-6+deb12u1");
        r.arch = Some("all".into());
        r.source = Some("pam".into());
        // `+` percent-encoded (the purl specification), where Syft writes
        // `1.5.2-6+deb12u1`: see crate::purl.
        assert_eq!(
            purl(&r, Some(&debian)),
            "pkg:deb/debian/libpam-runtime@1.5.2-6%2Bdeb12u1?arch=all&distro=debian-12&upstream=pam"
        );
        let mut r = rec(Ecosystem::Deb, "libgcc-s1", "12.2.0-14");
        r.arch = Some("amd64".into());
        r.source = Some("gcc-12".into());
        r.source_version = Some("12.2.0-14+b1".into());
        assert_eq!(
            purl(&r, Some(&debian)),
            "pkg:deb/debian/libgcc-s1@12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12%4012.2.0-14%2Bb1"
        );
        let mut r = rec(Ecosystem::Deb, "login", "1:4.13+dfsg1-1+b1");
        r.arch = Some("amd64".into());
        r.source = Some("shadow".into());
        r.source_version = Some("1:4.13+dfsg1-1".into());
        assert_eq!(
            purl(&r, None),
            "pkg:deb/debian/login@1:4.13%2Bdfsg1-1%2Bb1?arch=amd64&upstream=shadow%401:4.13%2Bdfsg1-1"
        );
        let alpine = osrelease::parse("ID=alpine\nVERSION_ID=3.19.1\n");
        let mut r = rec(Ecosystem::Apk, "busybox-binsh", "1.36.1-r15");
        r.arch = Some("x86_64".into());
        r.source = Some("busybox".into());
        assert_eq!(
            purl(&r, Some(&alpine)),
            "pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Python, "Typing_Extensions", "4.12.2"), None),
            "pkg:pypi/typing-extensions@4.12.2"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Python, "torch", "2.3.0+cpu"), None),
            "pkg:pypi/torch@2.3.0%2Bcpu"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Npm, "@actions/core", "1.6.0"), None),
            "pkg:npm/%40actions/core@1.6.0"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Npm, "left-pad", "1.3.0"), None),
            "pkg:npm/left-pad@1.3.0"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Cargo, "argh", "0.1.12"), None),
            "pkg:cargo/argh@0.1.12"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Go, "github.com/pkg/errors", "v0.9.1"), None),
            "pkg:golang/github.com/pkg/errors@v0.9.1"
        );
        assert_eq!(
            purl(&rec(Ecosystem::Go, "stdlib", "1.21.5"), None),
            "pkg:golang/stdlib@1.21.5"
        );
    }

    #[test]
    fn every_purl_reads_back_to_the_package() {
        let debian = osrelease::parse("ID=debian\nVERSION_ID=\"12\"\n");
        let mut r = rec(Ecosystem::Deb, "login", "1:4.13+dfsg1-1+b1");
        r.source = Some("shadow".into());
        r.source_version = Some("1:4.13+dfsg1-1".into());
        let text = purl(&r, Some(&debian));
        // Another implementation of the specification reads what we wrote.
        let parsed: packageurl::PackageUrl = text.parse().unwrap();
        assert_eq!(parsed.version(), Some("1:4.13+dfsg1-1+b1"));
        assert_eq!(
            parsed.qualifiers().get("upstream").map(|v| v.as_ref()),
            Some("shadow@1:4.13+dfsg1-1")
        );
        // So does the CycloneDX crate's purl type, which the SBOM uses.
        assert!(
            text.parse::<cyclonedx_bom::external_models::uri::Purl>()
                .is_ok()
        );
    }
}
