//! Installed Python distributions: `*.dist-info/METADATA`,
//! `*.egg-info/PKG-INFO` and single-file `*.egg-info` (core metadata, an
//! e-mail style header).

use super::{Ecosystem, Ending, Record};

/// Trove classifiers whose licence has one SPDX identifier.
const CLASSIFIER_SPDX: &[(&str, &str)] = &[
    ("MIT License", "MIT"),
    ("MIT No Attribution License (MIT-0)", "MIT-0"),
    ("ISC License (ISCL)", "ISC"),
    ("Mozilla Public License 2.0 (MPL 2.0)", "MPL-2.0"),
    ("GNU General Public License v2 (GPLv2)", "GPL-2.0-only"),
    ("GNU General Public License v3 (GPLv3)", "GPL-3.0-only"),
    (
        "GNU General Public License v2 or later (GPLv2+)",
        "GPL-2.0-or-later",
    ),
    (
        "GNU General Public License v3 or later (GPLv3+)",
        "GPL-3.0-or-later",
    ),
    (
        "GNU Lesser General Public License v2 (LGPLv2)",
        "LGPL-2.0-only",
    ),
    (
        "GNU Lesser General Public License v3 (LGPLv3)",
        "LGPL-3.0-only",
    ),
    (
        "GNU Lesser General Public License v2 or later (LGPLv2+)",
        "LGPL-2.0-or-later",
    ),
    (
        "GNU Lesser General Public License v3 or later (LGPLv3+)",
        "LGPL-3.0-or-later",
    ),
    ("Python Software Foundation License", "PSF-2.0"),
    ("The Unlicense (Unlicense)", "Unlicense"),
    ("Apache Software License 2.0", "Apache-2.0"),
    ("Boost Software License 1.0 (BSL-1.0)", "BSL-1.0"),
];

/// PEP 503 normalization: lowercase, runs of `-`, `_` and `.` become `-`.
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.push(c.to_ascii_lowercase());
            in_run = false;
        }
    }
    out
}

/// The distribution a metadata file describes. The headers end at a blank
/// line or at the end of the file; when the archive cut the file short
/// inside the headers, the last header line may be cut and is ignored.
pub fn parse_metadata(text: &str, ending: Ending, warnings: &mut Vec<String>) -> Option<Record> {
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut headers_ended = false;
    for line in text.lines() {
        if line.is_empty() {
            headers_ended = true;
            break; // the body (long description) follows
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    if ending == Ending::Cut && !headers_ended && fields.pop().is_some() {
        warnings.push(
            "the file is cut short (truncated) inside its headers; the last one is ignored".into(),
        );
    }
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let (Some(name), Some(version)) = (get("name"), get("version")) else {
        warnings.push("no Name or no Version field; not a package".into());
        return None;
    };
    if name.contains(char::is_whitespace) || version.contains(char::is_whitespace) {
        warnings.push(format!(
            "name {name:?} or version {version:?} contains spaces; ignored"
        ));
        return None;
    }
    let mut rec = Record::new(Ecosystem::Python, name, version);
    if let Some(expr) = get("license-expression") {
        rec.licenses.push(expr.to_owned());
    } else if let Some(l) = get("license").filter(|l| is_license_name(l)) {
        rec.licenses.push(l.to_owned());
    } else {
        for (k, v) in &fields {
            if k != "classifier" {
                continue;
            }
            let Some(rest) = v.strip_prefix("License ::") else {
                continue;
            };
            let last = rest.rsplit("::").next().unwrap_or("").trim();
            if last.is_empty() || last == "OSI Approved" {
                continue;
            }
            let spdx = CLASSIFIER_SPDX
                .iter()
                .find(|(c, _)| *c == last)
                .map_or(last, |(_, id)| id);
            rec.licenses.push(spdx.to_owned());
        }
    }
    rec.licenses.sort();
    rec.licenses.dedup();
    Some(rec)
}

/// `License:` often holds a whole licence text; only a short one-line value
/// names a licence.
fn is_license_name(value: &str) -> bool {
    !value.contains('\n') && value.len() <= 80 && !value.eq_ignore_ascii_case("UNKNOWN")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Record>, Vec<String>) {
        let mut w = Vec::new();
        (parse_metadata(text, Ending::Complete, &mut w), w)
    }

    #[test]
    fn names_are_normalized_per_pep_503() {
        assert_eq!(normalize_name("Typing_Extensions"), "typing-extensions");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
        assert_eq!(normalize_name("a-_.b"), "a-b");
    }

    #[test]
    fn licence_sources_in_order_of_preference() {
        let (r, _) = parse(
            "Metadata-Version: 2.4\nName: a\nVersion: 1\nLicense-Expression: MIT OR Apache-2.0\nLicense: BSD\n",
        );
        assert_eq!(r.unwrap().licenses, ["MIT OR Apache-2.0"]);
        let (r, _) = parse(
            "Name: b\nVersion: 2\nLicense: BSD-3-Clause\nClassifier: License :: OSI Approved :: MIT License\n",
        );
        assert_eq!(r.unwrap().licenses, ["BSD-3-Clause"]);
        let (r, _) = parse(
            "Name: c\nVersion: 3\nLicense: Copyright (c) someone\n        Permission is hereby granted...\nClassifier: License :: OSI Approved :: MIT License\nClassifier: License :: OSI Approved :: BSD License\nClassifier: Programming Language :: Python\n\nLicense: not a header\n",
        );
        assert_eq!(r.unwrap().licenses, ["BSD License", "MIT"]);
        let (r, _) = parse("Name: d\nVersion: 4\nLicense: UNKNOWN\n");
        assert!(r.unwrap().licenses.is_empty());
    }

    #[test]
    fn the_end_of_the_file_ends_the_headers() {
        let (r, w) = parse("Metadata-Version: 2.1\nName: last\nVersion: 1.0+local");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(r.unwrap().version, "1.0+local");
        let mut w = Vec::new();
        let cut = parse_metadata("Name: x\nVersion: 1.0\nSummary: cu", Ending::Cut, &mut w);
        assert_eq!(cut.unwrap().version, "1.0", "only the cut line is dropped");
        assert!(w[0].contains("truncated"), "{w:?}");
    }

    #[test]
    fn incomplete_metadata_is_a_warning() {
        let (r, w) = parse("Metadata-Version: 2.1\nName: x\n");
        assert!(r.is_none());
        assert_eq!(w.len(), 1);
        let (r, w) = parse("");
        assert!(r.is_none());
        assert_eq!(w.len(), 1);
    }
}
