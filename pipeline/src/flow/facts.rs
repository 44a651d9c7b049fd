//! Facts about the build that go into its SLSA provenance: who built it,
//! and from which base images.

use std::collections::BTreeMap;
use std::path::Path;

/// Who ran the build: the GitHub Actions run when there is one, else
/// `pipeline@<host>`.
pub fn builder_id() -> String {
    match (
        std::env::var("GITHUB_SERVER_URL"),
        std::env::var("GITHUB_REPOSITORY"),
        std::env::var("GITHUB_RUN_ID"),
    ) {
        (Ok(s), Ok(r), Ok(id)) => format!("{s}/{r}/actions/runs/{id}"),
        _ => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            format!("pipeline@{}", host.trim())
        }
    }
}

/// Base images named by the Dockerfile's FROM lines, with build arguments
/// and ARG defaults substituted; stage names are not images.
pub fn base_images(dockerfile: &Path, args: &[(String, String)]) -> Vec<String> {
    let text = std::fs::read_to_string(dockerfile).unwrap_or_default();
    let given: BTreeMap<&str, &str> = args.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    let mut stages = Vec::new();
    let mut bases = Vec::new();
    for line in text.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        match words.next().map(str::to_ascii_uppercase).as_deref() {
            Some("ARG") => {
                if let Some(decl) = words.next() {
                    let (k, default) = decl.split_once('=').unwrap_or((decl, ""));
                    let v = given.get(k).copied().unwrap_or(default);
                    vars.insert(k.to_owned(), v.trim_matches('"').to_owned());
                }
            }
            Some("FROM") => {
                if let Some(image) = from_image(words, &vars, &mut stages)
                    && !bases.contains(&image)
                {
                    bases.push(image);
                }
            }
            _ => {}
        }
    }
    bases
}

/// The image of a FROM line (its words after FROM), variables substituted;
/// `None` for `scratch` and earlier stages. A stage name it declares is
/// added to `stages`.
fn from_image<'a>(
    mut words: impl Iterator<Item = &'a str>,
    vars: &BTreeMap<String, String>,
    stages: &mut Vec<String>,
) -> Option<String> {
    let mut image = words.find(|w| !w.starts_with("--"))?.to_owned();
    for (k, v) in vars {
        image = image
            .replace(&format!("${{{k}}}"), v)
            .replace(&format!("${k}"), v);
    }
    let is_earlier_stage = stages.contains(&image.to_ascii_lowercase());
    let rest: Vec<&str> = words.collect();
    if let [as_, name] = rest.as_slice()
        && as_.eq_ignore_ascii_case("as")
    {
        stages.push(name.to_ascii_lowercase());
    }
    (image != "scratch" && !is_earlier_stage).then_some(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_come_from_from_lines() {
        let dir = test_support::TempDir::new("run-bases");
        let f = dir.path().join("Dockerfile");
        std::fs::write(&f, "ARG BASE=runner-sandbox/base:latest\nARG DEBIAN_IMAGE=debian:bookworm-slim\nFROM ${DEBIAN_IMAGE} AS build\nRUN x\nFROM build AS second\nFROM $BASE\nFROM scratch\n").unwrap();
        assert_eq!(
            base_images(&f, &[("BASE".into(), "b:1".into())]),
            ["debian:bookworm-slim", "b:1"]
        );
    }
}
