//! SLSA v1 provenance for an image `pipeline` built: the builder, the commit,
//! the build's parameters, and the materials it read.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// The build type URI of `pipeline build`.
pub const BUILD_TYPE: &str = "urn:x-pipeline:build-type:docker-build:v1";

#[derive(Debug, Clone, Default)]
pub struct BuildFacts {
    /// Who ran the build: a CI job URL, or `pipeline@<host>`.
    pub builder_id: String,
    /// The git remote (credentials stripped) or the repository path.
    pub source: String,
    pub commit: String,
    pub dirty: bool,
    pub context: String,
    pub dockerfile: String,
    pub build_args: BTreeMap<String, String>,
    pub image: String,
    /// Base images, by reference and digest where known.
    pub base_images: Vec<(String, Option<String>)>,
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
}

/// The predicate (`https://slsa.dev/provenance/v1`).
pub fn predicate(f: &BuildFacts) -> Value {
    let mut deps = vec![json!({
        "uri": format!("git+{}@{}", f.source, f.commit),
        "digest": { "gitCommit": f.commit },
    })];
    for (reference, digest) in &f.base_images {
        let mut d = json!({ "uri": format!("docker://{reference}") });
        if let Some(digest) = digest {
            let (alg, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
            d["digest"] = json!({ alg: hex });
        }
        deps.push(d);
    }
    json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "source": f.source,
                "revision": f.commit,
                "context": f.context,
                "dockerfile": f.dockerfile,
                "buildArgs": f.build_args,
                "image": f.image,
            },
            "internalParameters": { "dirty": f.dirty },
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": { "id": f.builder_id, "version": { "pipeline": env!("CARGO_PKG_VERSION") } },
            "metadata": {
                "invocationId": f.invocation_id,
                "startedOn": f.started_on,
                "finishedOn": f.finished_on,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provenance_names_the_commit_and_materials() {
        let p = predicate(&BuildFacts {
            builder_id: "https://ci.example/run/1".into(),
            source: "https://git.example/app".into(),
            commit: "abc123".into(),
            image: "r/app".into(),
            base_images: vec![("debian:bookworm-slim".into(), Some("sha256:ff".into()))],
            ..Default::default()
        });
        assert_eq!(p["buildDefinition"]["buildType"], BUILD_TYPE);
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][0]["digest"]["gitCommit"],
            "abc123"
        );
        assert_eq!(
            p["buildDefinition"]["resolvedDependencies"][1]["digest"]["sha256"],
            "ff"
        );
        assert_eq!(p["runDetails"]["builder"]["id"], "https://ci.example/run/1");
    }
}
