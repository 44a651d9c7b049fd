//! Package URLs: [`Purl::parse`] (policies, VEX, Grype) on any text, and
//! the round trip build ([`purl::canonical`]) → parse → equal fields.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pipeline::purl::{self, Purl};

#[derive(Debug, Arbitrary)]
enum Input {
    Text(String),
    Build {
        kind: u8,
        namespace: Vec<String>,
        name: String,
        version: String,
        qualifiers: Vec<(u8, String)>,
    },
}

const KINDS: [&str; 6] = ["deb", "apk", "pypi", "npm", "cargo", "golang"];
const KEYS: [&str; 4] = ["arch", "distro", "upstream", "epoch"];

fuzz_target!(|input: Input| match input {
    Input::Text(s) => {
        if let Ok(p) = Purl::parse(&s) {
            // A purl matches itself, and its canonical text reads back the same.
            assert!(p.matches(&p), "{s:?} does not match itself");
            let ns: Vec<&str> = p.namespace.iter().map(String::as_str).collect();
            let q: Vec<(&str, String)> = p
                .qualifiers
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            if p.subpath.is_none()
                && let Ok(text) = purl::canonical(
                    &p.kind,
                    &ns,
                    &p.name,
                    p.version.as_deref().unwrap_or(""),
                    &q,
                )
            {
                let again = Purl::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
                assert!(p.matches(&again) && again.matches(&p), "{s:?} → {text:?}");
            }
        }
    }
    Input::Build {
        kind,
        namespace,
        name,
        version,
        qualifiers,
    } => {
        let kind = KINDS[usize::from(kind) % KINDS.len()];
        let ns: Vec<&str> = namespace.iter().take(3).map(String::as_str).collect();
        let mut q: Vec<(&str, String)> = qualifiers
            .into_iter()
            .take(4)
            .map(|(k, v)| (KEYS[usize::from(k) % KEYS.len()], v))
            .collect();
        q.sort_by(|a, b| a.0.cmp(b.0));
        q.dedup_by(|a, b| a.0 == b.0);
        let Ok(text) = purl::canonical(kind, &ns, &name, &version, &q) else {
            return;
        };
        let p = Purl::parse(&text).unwrap_or_else(|e| {
            panic!(
                "canonical({kind}, {ns:?}, {name:?}, {version:?}) = {text:?} does not parse: {e}"
            )
        });
        assert_eq!(p.kind, kind);
        assert_eq!(p.version.as_deref().unwrap_or(""), version, "{text:?}");
        for (k, v) in q.iter().filter(|(_, v)| !v.is_empty()) {
            assert_eq!(p.qualifiers.get(*k), Some(v), "{text:?}");
        }
        // Names are normalised per type (pypi lower-cases, `_` → `-`), so
        // compare through a second round: canonical text is a fixed point.
        let ns2: Vec<&str> = p.namespace.iter().map(String::as_str).collect();
        let q2: Vec<(&str, String)> = p
            .qualifiers
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let text2 = purl::canonical(&p.kind, &ns2, &p.name, &version, &q2)
            .unwrap_or_else(|e| panic!("{text:?} parsed but does not rebuild: {e}"));
        let p2 = Purl::parse(&text2).expect("a rebuilt purl parses");
        assert_eq!(
            (
                &p2.kind,
                &p2.namespace,
                &p2.name,
                &p2.version,
                &p2.qualifiers
            ),
            (&p.kind, &p.namespace, &p.name, &p.version, &p.qualifiers),
            "{text:?} → {text2:?}"
        );
    }
});
