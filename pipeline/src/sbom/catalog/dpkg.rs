//! Debian packages: `var/lib/dpkg/status`, distroless `status.d/*` files,
//! and licences from `usr/share/doc/PKG/copyright`.

use super::{Ecosystem, Ending, MAX_WARNINGS_PER_FILE, Record};

/// `Status:` states (its third word) in which the package's files are on
/// disk. `config-files` and `not-installed` entries are leftovers of removed
/// packages: `dpkg -l` shows them as `rc`/`pn`, and they are not reported.
const PRESENT_STATES: &[&str] = &[
    "installed",
    "half-installed",
    "unpacked",
    "half-configured",
    "triggers-awaited",
    "triggers-pending",
];

/// One paragraph of a deb822 file: fields in order, continuation lines
/// joined with newlines.
pub(crate) type Stanza = Vec<(String, String)>;

/// Splits deb822 text into paragraphs. Lines that are neither `Field: value`
/// nor continuations are reported and skipped.
pub(crate) fn stanzas(text: &str, warnings: &mut Vec<String>) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut current: Stanza = Vec::new();
    let mut reported = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = current.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((key, value)) if !key.is_empty() && !key.contains(' ') => {
                current.push((key.to_owned(), value.trim().to_owned()));
            }
            _ => {
                if reported < MAX_WARNINGS_PER_FILE {
                    warnings.push(format!(
                        "line {}: not a `Field: value` line; ignored",
                        n + 1
                    ));
                }
                reported += 1;
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    if reported > MAX_WARNINGS_PER_FILE {
        warnings.push(format!(
            "{} more malformed lines",
            reported - MAX_WARNINGS_PER_FILE
        ));
    }
    out
}

/// When the archive cut the file short inside its last paragraph, that
/// paragraph's last value (a version, say) may be cut too: it is dropped,
/// with a warning naming the package.
pub(crate) fn drop_cut_paragraph<T>(
    text: &str,
    ending: Ending,
    paragraphs: &mut Vec<T>,
    warnings: &mut Vec<String>,
) {
    let ends_between_paragraphs = text.is_empty() || text.ends_with("\n\n");
    if ending == Ending::Cut && !ends_between_paragraphs && paragraphs.pop().is_some() {
        warnings.push(
            "the file is cut short (truncated) inside its last entry, which is ignored".into(),
        );
    }
}

pub(crate) fn field<'a>(stanza: &'a Stanza, key: &str) -> Option<&'a str> {
    stanza
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v.as_str())
}

/// Packages of a status file (or of one distroless `status.d` file). A
/// paragraph ends at a blank line or at the end of the file: a last stanza
/// without a final newline is a package like the others (dpkg and Syft
/// read it; Syft's own fixtures have such files).
pub fn parse_status(text: &str, ending: Ending, warnings: &mut Vec<String>) -> Vec<Record> {
    let mut paragraphs = stanzas(text, warnings);
    drop_cut_paragraph(text, ending, &mut paragraphs, warnings);
    paragraphs
        .iter()
        .filter_map(|stanza| record(stanza, warnings))
        .collect()
}

fn record(stanza: &Stanza, warnings: &mut Vec<String>) -> Option<Record> {
    let name = field(stanza, "Package").unwrap_or("").trim();
    if name.is_empty() {
        return None;
    }
    if let Some(status) = field(stanza, "Status") {
        let state = status.split_whitespace().nth(2).unwrap_or("");
        if !PRESENT_STATES.contains(&state) {
            return None;
        }
    }
    // Entries without a version are selections of packages that are not
    // installed (`dpkg --set-selections` leftovers).
    let version = field(stanza, "Version").unwrap_or("").trim();
    if version.is_empty() {
        return None;
    }
    if name.contains(char::is_whitespace) || version.contains(char::is_whitespace) {
        warnings.push(format!(
            "package {name:?} version {version:?}: names and versions have no spaces; entry ignored"
        ));
        return None;
    }
    let mut rec = Record::new(Ecosystem::Deb, name, version);
    rec.arch = field(stanza, "Architecture")
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    if let Some(source) = field(stanza, "Source") {
        let (src, src_version) = parse_source(source);
        let src_version = src_version.filter(|v| *v != version);
        if !src.is_empty() && (src != name || src_version.is_some()) {
            rec.source = Some(src.to_owned());
            rec.source_version = src_version.map(str::to_owned);
        }
    }
    Some(rec)
}

/// `Source: name` or `Source: name (version)`.
fn parse_source(value: &str) -> (&str, Option<&str>) {
    let value = value.trim();
    match value.split_once('(') {
        Some((name, rest)) => {
            let version = rest.trim_end().trim_end_matches(')').trim();
            (name.trim(), (!version.is_empty()).then_some(version))
        }
        None => (value, None),
    }
}

/// Licences of a Debian copyright file: the `License:` fields of a
/// machine-readable (DEP-5) file, else the `/usr/share/common-licenses/X`
/// files a free-form one points to.
pub fn copyright_licenses(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut ignored = Vec::new();
    let paragraphs = stanzas(text, &mut ignored);
    let machine_readable = paragraphs
        .first()
        .is_some_and(|p| field(p, "Format").is_some());
    if machine_readable {
        for p in &paragraphs {
            if let Some(value) = field(p, "License") {
                let first_line = value.lines().next().unwrap_or("");
                for part in split_license_names(first_line) {
                    found.push(part);
                }
            }
        }
    } else {
        let marker = "/usr/share/common-licenses/";
        let mut rest = text;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+' | '_'))
                .collect();
            let name = name.trim_end_matches('.');
            if !name.is_empty() {
                found.push(name.to_owned());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// `GPL-2+ or Artistic, BSD-3-clause` → its names.
fn split_license_names(value: &str) -> Vec<String> {
    value
        .replace(',', " ")
        .split_whitespace()
        .filter(|w| !matches!(w.to_ascii_lowercase().as_str(), "or" | "and" | "with"))
        .filter(|w| w.len() <= 64)
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Record>, Vec<String>) {
        parse_ending(text, Ending::Complete)
    }

    fn parse_ending(text: &str, ending: Ending) -> (Vec<Record>, Vec<String>) {
        let mut w = Vec::new();
        let r = parse_status(text, ending, &mut w);
        (r, w)
    }

    #[test]
    fn installed_packages_with_source_and_arch() {
        let (r, w) = parse(
            "Package: libpam-runtime\nStatus: install ok installed\nArchitecture: all\nSource: pam\nVersion: 1.5.2-6+deb12u1\nDescription: x\n more\n .\n end\n\n\
             Package: bash\nStatus: install ok installed\nArchitecture: amd64\nVersion: 5.2.15-2+b2\nSource: bash (5.2.15-2)\n\n\
             Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2024a-0+deb12u1\nSource: tzdata\n",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "libpam-runtime");
        assert_eq!(r[0].source.as_deref(), Some("pam"));
        assert_eq!(r[0].source_version, None);
        assert_eq!(r[0].arch.as_deref(), Some("all"));
        assert_eq!(r[1].source.as_deref(), Some("bash"));
        assert_eq!(r[1].source_version.as_deref(), Some("5.2.15-2"));
        assert_eq!(r[2].source, None, "same name, no version: no upstream");
    }

    #[test]
    fn empty_names_missing_versions_and_removed_packages_are_dropped() {
        let (r, w) = parse(
            "Package:\n\nPackage: no-version\n\n\
             Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n\
             Package: purged\nStatus: purge ok not-installed\n\n\
             Package: kept\nStatus: install ok unpacked\nVersion: 2.0\n",
        );
        assert!(w.is_empty(), "{w:?}");
        let names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["kept"]);
    }

    #[test]
    fn distroless_stanzas_have_no_status() {
        let (r, _) = parse(
            "Package: libsqlite3-0\nSource: sqlite3\nVersion: 3.34.1-3\nArchitecture: arm64\nMulti-Arch: same\n",
        );
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].source.as_deref(), Some("sqlite3"));
    }

    #[test]
    fn corrupt_and_truncated_files_give_warnings_and_partial_results() {
        let (r, w) = parse(
            "Pakij: apt\nStratus: installed\nInsterface to the settings\n\nPackage: ok\nVersion: 1\n",
        );
        assert_eq!(r.len(), 1);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("line 3"));
        let (r, w) = parse_ending(
            "Package: a\nVersion: 1.0\n\nPackage: b\nVersion: 2.",
            Ending::Cut,
        );
        assert_eq!(r.len(), 1, "an entry the archive cut is not trusted");
        assert!(w[0].contains("truncated"));
        let (r, w) = parse_ending("Package: a\nVersion: 1.0\n\n", Ending::Cut);
        assert_eq!((r.len(), w.len()), (1, 0), "cut between entries");
        let garbage = "x\n".repeat(100);
        let (r, w) = parse(&garbage);
        assert!(r.is_empty());
        assert_eq!(w.len(), MAX_WARNINGS_PER_FILE + 1);
    }

    #[test]
    fn the_end_of_the_file_ends_the_last_stanza() {
        // Syft's dpkg fixtures end so; dpkg reads the last package.
        let (r, w) = parse(
            "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: last\nStatus: install ok installed\nVersion: 2.0-1+b1",
        );
        assert!(w.is_empty(), "{w:?}");
        let names: Vec<_> = r
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_str()))
            .collect();
        assert_eq!(names, [("a", "1.0"), ("last", "2.0-1+b1")]);
        // A distroless status.d file of one stanza, no final newline.
        let (r, w) = parse("Package: libssl3\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(r[0].arch.as_deref(), Some("amd64"));
    }

    #[test]
    fn machine_readable_copyright() {
        let text = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\nUpstream-Name: x\n\n\
                    Files: *\nCopyright: someone\nLicense: GPL-2+ or Artistic\n long text\n\n\
                    Files: debian/*\nLicense: BSD-3-clause, MIT\n\nLicense: GPL-2+\n text\n";
        assert_eq!(
            copyright_licenses(text),
            ["Artistic", "BSD-3-clause", "GPL-2+", "MIT"]
        );
    }

    #[test]
    fn free_form_copyright_points_to_common_licenses() {
        let text = "This is free software.\nSee /usr/share/common-licenses/GPL-3.\nAlso /usr/share/common-licenses/LGPL-2.1 here.\n";
        assert_eq!(copyright_licenses(text), ["GPL-3", "LGPL-2.1"]);
        assert!(copyright_licenses("no licence here").is_empty());
    }
}
