//! Alpine packages: `lib/apk/db/installed`, paragraphs of `K:value` lines.

use super::dpkg::drop_cut_paragraph;
use super::{Ecosystem, Ending, MAX_WARNINGS_PER_FILE, Record};

/// Packages of the apk database. The end of the file ends the last
/// paragraph, final newline or not.
pub fn parse_installed(text: &str, ending: Ending, warnings: &mut Vec<String>) -> Vec<Record> {
    let mut out = Vec::new();
    let mut fields: Vec<(char, &str)> = Vec::new();
    let mut bad = 0;
    let mut paragraphs: Vec<Vec<(char, &str)>> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            if !fields.is_empty() {
                paragraphs.push(std::mem::take(&mut fields));
            }
            continue;
        }
        let mut chars = line.chars();
        match (chars.next(), chars.next()) {
            (Some(key), Some(':')) => fields.push((key, &line[key.len_utf8() + 1..])),
            _ => {
                if bad < MAX_WARNINGS_PER_FILE {
                    warnings.push(format!("line {}: not a `K:value` line; ignored", n + 1));
                }
                bad += 1;
            }
        }
    }
    if !fields.is_empty() {
        paragraphs.push(fields);
    }
    drop_cut_paragraph(text, ending, &mut paragraphs, warnings);
    for p in paragraphs {
        let get = |k: char| {
            p.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let (Some(name), Some(version)) = (get('P'), get('V')) else {
            if get('P').is_some() {
                warnings.push(format!(
                    "package {:?} has no version (V:); ignored",
                    get('P').unwrap_or_default()
                ));
            }
            continue;
        };
        let mut rec = Record::new(Ecosystem::Apk, name, version);
        rec.arch = get('A').map(str::to_owned);
        rec.source = get('o').filter(|o| *o != name).map(str::to_owned);
        if let Some(l) = get('L') {
            rec.licenses.push(l.to_owned());
        }
        out.push(rec);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_with_origin_and_license() {
        let mut w = Vec::new();
        let r = parse_installed(
            "P:bash\nV:5.2.21-r0\nA:x86_64\nL:GPL-3.0-or-later\no:bash\nF:bin\nR:bash\n\n\
             P:busybox-binsh\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\n\
             P:noversion\n\nZ:Q1...\n",
            Ending::Complete,
            &mut w,
        );
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].source, None);
        assert_eq!(r[1].source.as_deref(), Some("busybox"));
        assert_eq!(r[1].licenses, ["GPL-2.0-only"]);
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn truncated_database() {
        let mut w = Vec::new();
        let r = parse_installed("P:a\nV:1\n\nP:b\nV:2.", Ending::Cut, &mut w);
        assert_eq!(r.len(), 1);
        assert!(w[0].contains("truncated"));
    }

    #[test]
    fn the_end_of_the_file_ends_the_last_paragraph() {
        let mut w = Vec::new();
        let r = parse_installed("P:a\nV:1\n\nP:b\nV:2.1-r0", Ending::Complete, &mut w);
        assert!(w.is_empty(), "{w:?}");
        let versions: Vec<_> = r.iter().map(|r| r.version.as_str()).collect();
        assert_eq!(versions, ["1", "2.1-r0"]);
    }
}
