//! `.dockerignore` patterns ([`Dockerignore::parse`], `is_excluded`), as
//! the build context walk applies them to a repository's paths.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use pipeline::build::dockerignore::Dockerignore;

#[derive(Debug, Arbitrary)]
struct Input {
    patterns: String,
    paths: Vec<String>,
}

fuzz_target!(|input: Input| {
    let d = Dockerignore::parse(&input.patterns);
    let _ = d.has_exceptions();
    for p in input.paths.iter().take(8) {
        let excluded = d.is_excluded(p);
        // Slashes are separators, not names: `a//b/` is `a/b`.
        let tidy: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
        assert_eq!(excluded, d.is_excluded(&tidy.join("/")), "{p:?}");
    }
});
