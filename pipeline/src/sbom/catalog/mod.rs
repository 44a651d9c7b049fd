//! Catalogers: which files describe installed software, what they say, and
//! how it becomes a list of packages.
//!
//! Files are parsed when their layer streams past ([`capture`]), keeping only
//! what was extracted; a later layer that replaces or deletes the file
//! replaces or drops that too. [`assemble`] turns what the final file system
//! holds into packages once all layers are applied.

use std::io::{self, Read};

pub mod apk;
pub mod binary;
pub mod dpkg;
pub mod license;
pub mod npm;
pub mod osrelease;
pub mod python;

mod assemble;

pub use assemble::{Inventory, Location, Package, assemble};
pub use osrelease::OsRelease;

/// Files a cataloger reads, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    OsRelease,
    DpkgStatus,
    DpkgCopyright,
    ApkInstalled,
    PythonMetadata,
    NpmPackage,
}

impl Want {
    /// The most bytes read from one such file; a larger one is skipped with
    /// a warning, so a hostile image cannot make memory grow.
    pub fn cap(self) -> u64 {
        match self {
            Want::OsRelease => 64 << 10,
            Want::DpkgStatus | Want::ApkInstalled => 64 << 20,
            Want::DpkgCopyright => 1 << 20,
            Want::PythonMetadata | Want::NpmPackage => 4 << 20,
        }
    }
}

/// Control files distroless images keep next to the package stanzas in
/// `var/lib/dpkg/status.d/`: not stanzas.
const DPKG_CONTROL_SUFFIXES: &[&str] = &[
    ".md5sums",
    ".preinst",
    ".postinst",
    ".prerm",
    ".postrm",
    ".conffiles",
    ".list",
    ".triggers",
    ".shlibs",
    ".symbols",
    ".templates",
    ".config",
];

/// Which cataloger, if any, wants the regular file at `path`.
pub fn classify(path: &str) -> Option<Want> {
    match path {
        "etc/os-release" | "usr/lib/os-release" => return Some(Want::OsRelease),
        "var/lib/dpkg/status" => return Some(Want::DpkgStatus),
        "lib/apk/db/installed" => return Some(Want::ApkInstalled),
        _ => {}
    }
    if let Some(name) = path.strip_prefix("var/lib/dpkg/status.d/") {
        let control = DPKG_CONTROL_SUFFIXES.iter().any(|s| name.ends_with(s));
        return (!name.contains('/') && !name.is_empty() && !control).then_some(Want::DpkgStatus);
    }
    if let Some(rest) = path.strip_prefix("usr/share/doc/") {
        return rest
            .strip_suffix("/copyright")
            .filter(|pkg| !pkg.contains('/'))
            .map(|_| Want::DpkgCopyright);
    }
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    if (name == "METADATA" && dir.ends_with(".dist-info"))
        || (name == "PKG-INFO" && dir.ends_with(".egg-info"))
        || name.ends_with(".egg-info")
    {
        return Some(Want::PythonMetadata);
    }
    if name == "package.json" && npm::is_package_dir(dir) {
        return Some(Want::NpmPackage);
    }
    None
}

/// An installed package as one metadata file states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub arch: Option<String>,
    /// The source package (dpkg `Source:`, apk origin) when it differs from
    /// the name or carries its own version.
    pub source: Option<String>,
    pub source_version: Option<String>,
    /// Licences as the metadata states them (SPDX ids, expressions, or
    /// free-form names).
    pub licenses: Vec<String>,
}

impl Record {
    pub fn new(ecosystem: Ecosystem, name: &str, version: &str) -> Record {
        Record {
            ecosystem,
            name: name.to_owned(),
            version: version.to_owned(),
            arch: None,
            source: None,
            source_version: None,
            licenses: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    Deb,
    Apk,
    Python,
    Npm,
    Cargo,
    Go,
}

impl Ecosystem {
    /// Package type as Syft names it (`syft:package:type`).
    pub fn package_type(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Cargo => "rust-crate",
            Ecosystem::Go => "go-module",
        }
    }

    /// The cataloger that found it (`syft:package:foundBy`).
    pub fn cataloger(self) -> &'static str {
        match self {
            Ecosystem::Deb => "dpkg-db-cataloger",
            Ecosystem::Apk => "apk-db-cataloger",
            Ecosystem::Python => "python-installed-package-cataloger",
            Ecosystem::Npm => "javascript-package-cataloger",
            Ecosystem::Cargo => "cargo-auditable-binary-cataloger",
            Ecosystem::Go => "go-module-binary-cataloger",
        }
    }
}

/// What a file yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    OsRelease(OsRelease),
    Packages(Vec<Record>),
    /// Licences from a Debian copyright file.
    Licenses(Vec<String>),
    Nothing,
}

/// What a file yielded, and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub found: Found,
    pub warnings: Vec<String>,
}

impl Captured {
    pub fn problem(message: String) -> Captured {
        Captured {
            found: Found::Nothing,
            warnings: vec![message],
        }
    }
}

/// Reads and parses the regular file at `path` if a cataloger wants it.
/// Executables are scanned for embedded build information. Errors are I/O
/// errors of `content` (the stream itself broke); bad content is a warning.
pub fn capture(
    path: &str,
    size: u64,
    executable: bool,
    content: &mut dyn Read,
) -> io::Result<Option<Captured>> {
    let Some(want) = classify(path) else {
        if executable && size >= binary::MIN_SIZE {
            return binary::scan(content, size);
        }
        return Ok(None);
    };
    let cap = want.cap();
    if size > cap {
        return Ok(Some(Captured::problem(format!(
            "{size} bytes, more than the {cap} bytes read from such a file; skipped"
        ))));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    content.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Ok(Some(Captured::problem(format!(
            "more than the {cap} bytes read from such a file; skipped"
        ))));
    }
    let ending = if (bytes.len() as u64) < size {
        Ending::Cut
    } else {
        Ending::Complete
    };
    let mut captured = parse_file(want, path, &bytes, ending);
    if ending == Ending::Cut {
        captured.warnings.push(format!(
            "the archive ends inside this file ({} of {size} bytes); what was read is used",
            bytes.len()
        ));
    }
    Ok(Some(captured))
}

/// How a file's content ends. The end of a complete file ends its last
/// paragraph or header, newline or not (dpkg, apk and Syft read it so);
/// only a file the archive cut short (fewer bytes than its header said)
/// can end in the middle of an entry, whose last line is then not trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    Cut,
}

/// Parses a wanted file's complete content.
pub fn parse(want: Want, path: &str, bytes: &[u8]) -> Captured {
    parse_file(want, path, bytes, Ending::Complete)
}

/// Parses a wanted file's content, complete or cut short.
pub fn parse_file(want: Want, path: &str, bytes: &[u8], ending: Ending) -> Captured {
    let mut warnings = Vec::new();
    let text = decode(bytes, &mut warnings);
    let found = match want {
        Want::OsRelease => Found::OsRelease(osrelease::parse(&text)),
        Want::DpkgStatus => Found::Packages(dpkg::parse_status(&text, ending, &mut warnings)),
        Want::DpkgCopyright => Found::Licenses(dpkg::copyright_licenses(&text)),
        Want::ApkInstalled => Found::Packages(apk::parse_installed(&text, ending, &mut warnings)),
        Want::PythonMetadata => Found::Packages(
            python::parse_metadata(&text, ending, &mut warnings)
                .into_iter()
                .collect(),
        ),
        Want::NpmPackage => Found::Packages(
            npm::parse_package_json(path, &text, &mut warnings)
                .into_iter()
                .collect(),
        ),
    };
    Captured {
        found,
        warnings: bounded(warnings),
    }
}

/// At most this many warnings per file: a corrupt file is one problem, not
/// thousands (a hostile status file could otherwise add one per stanza, and
/// each is kept in memory and written into the SBOM).
pub const MAX_WARNINGS_PER_FILE: usize = 20;

/// Keeps the first [`MAX_WARNINGS_PER_FILE`] warnings and counts the rest.
pub(crate) fn bounded(mut warnings: Vec<String>) -> Vec<String> {
    if warnings.len() > MAX_WARNINGS_PER_FILE {
        let more = warnings.len() - MAX_WARNINGS_PER_FILE;
        warnings.truncate(MAX_WARNINGS_PER_FILE);
        warnings.push(format!("{more} more warnings about this file"));
    }
    warnings
}

/// UTF-8 text, with invalid bytes replaced and a warning.
fn decode(bytes: &[u8], warnings: &mut Vec<String>) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(e) => {
            warnings.push(format!(
                "not valid UTF-8 (first bad byte at offset {}); invalid bytes replaced",
                e.valid_up_to()
            ));
            String::from_utf8_lossy(bytes).into_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `dpkg_status` fuzz target: every stanza with a space in
    /// its version added a warning, without bound.
    #[test]
    fn warnings_per_file_are_bounded() {
        let status = "Package: a\nVersion: 1 2\n\n".repeat(5000);
        let c = parse(Want::DpkgStatus, "var/lib/dpkg/status", status.as_bytes());
        assert_eq!(c.warnings.len(), MAX_WARNINGS_PER_FILE + 1);
        assert_eq!(
            c.warnings[MAX_WARNINGS_PER_FILE],
            "4980 more warnings about this file"
        );
        let apk = "P:a\n\n".repeat(5000);
        let c = parse(Want::ApkInstalled, "lib/apk/db/installed", apk.as_bytes());
        assert_eq!(c.warnings.len(), MAX_WARNINGS_PER_FILE + 1);
    }

    #[test]
    fn classification_by_path() {
        let cases = [
            ("etc/os-release", Some(Want::OsRelease)),
            ("usr/lib/os-release", Some(Want::OsRelease)),
            ("var/lib/dpkg/status", Some(Want::DpkgStatus)),
            ("var/lib/dpkg/status-old", None),
            ("var/lib/dpkg/status.d/libc6", Some(Want::DpkgStatus)),
            ("var/lib/dpkg/status.d/libc6.md5sums", None),
            ("var/lib/dpkg/status.d/sub/x", None),
            ("usr/share/doc/bash/copyright", Some(Want::DpkgCopyright)),
            ("usr/share/doc/bash/examples/copyright", None),
            ("lib/apk/db/installed", Some(Want::ApkInstalled)),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(Want::PythonMetadata),
            ),
            ("x/foo.egg-info/PKG-INFO", Some(Want::PythonMetadata)),
            ("x/foo-1.0.egg-info", Some(Want::PythonMetadata)),
            ("x/METADATA", None),
            ("app/node_modules/a/package.json", Some(Want::NpmPackage)),
            ("app/node_modules/@s/a/package.json", Some(Want::NpmPackage)),
            (
                "app/node_modules/a/node_modules/b/package.json",
                Some(Want::NpmPackage),
            ),
            ("app/node_modules/a/lib/package.json", None),
            ("app/package.json", None),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), want, "{path}");
        }
    }

    #[test]
    fn oversized_files_are_skipped_with_a_warning() {
        let big = vec![b'a'; (Want::OsRelease.cap() + 1) as usize];
        let c = capture("etc/os-release", big.len() as u64, false, &mut &big[..])
            .unwrap()
            .unwrap();
        assert_eq!(c.found, Found::Nothing);
        assert!(c.warnings[0].contains("skipped"));
        // A header that lies about the size is caught too.
        let c = capture("etc/os-release", 10, false, &mut &big[..])
            .unwrap()
            .unwrap();
        assert_eq!(c.found, Found::Nothing);
    }

    #[test]
    fn only_a_file_the_archive_cut_loses_its_last_entry() {
        let status = b"Package: a\nVersion: 1\n\nPackage: b\nVersion: 2.0";
        let names = |c: Captured| match c.found {
            Found::Packages(p) => p.into_iter().map(|r| r.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        // Complete, without a final newline: both packages.
        let whole = capture(
            "var/lib/dpkg/status",
            status.len() as u64,
            false,
            &mut &status[..],
        )
        .unwrap()
        .unwrap();
        assert!(whole.warnings.is_empty(), "{:?}", whole.warnings);
        assert_eq!(names(whole), ["a", "b"]);
        // The header said more bytes than came: the last entry may be cut.
        let cut = capture("var/lib/dpkg/status", 100, false, &mut &status[..])
            .unwrap()
            .unwrap();
        assert!(
            cut.warnings.iter().any(|w| w.contains("truncated")),
            "{:?}",
            cut.warnings
        );
        assert!(
            cut.warnings
                .iter()
                .any(|w| w.contains("archive ends inside"))
        );
        assert_eq!(names(cut), ["a"]);
    }

    #[test]
    fn bad_utf8_is_a_warning_not_an_error() {
        let c = parse(
            Want::OsRelease,
            "etc/os-release",
            b"ID=deb\xffian\nVERSION_ID=12\n",
        );
        assert!(c.warnings[0].contains("UTF-8"));
        match c.found {
            Found::OsRelease(os) => assert_eq!(os.version_id.as_deref(), Some("12")),
            other => panic!("{other:?}"),
        }
    }
}
