//! OCI and Docker v2 manifests, image indexes, image configs, and choosing
//! a platform from an index. These are third-party formats that grow new
//! fields, so unknown fields are accepted.

use std::collections::BTreeMap;

use serde::Deserialize;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// A manifest, index, config or platform that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("invalid platform {given:?}: expected OS/ARCH or OS/ARCH/VARIANT, such as linux/amd64")]
    Platform { given: String },
    #[error("not a manifest: {0}")]
    NotAManifest(#[source] serde_json::Error),
    #[error(
        "schemaVersion {0:?} is not supported (only 2: Docker v2 schema 1 manifests are obsolete)"
    )]
    SchemaVersion(Option<u32>),
    #[error("an image manifest without config or layers")]
    Incomplete,
    #[error("not an image config: {0}")]
    NotAConfig(#[source] serde_json::Error),
}

/// What the registry client asks for.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    pub platform: Option<Platform>,
    /// Annotations (signatures keep theirs here).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The machine this runs on, in OCI terms (`linux/amd64`).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_owned(),
            os: "linux".to_owned(),
            variant: None,
        }
    }

    /// `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Platform, ManifestError> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(Platform {
                    os: (*os).to_owned(),
                    architecture: (*arch).to_owned(),
                    variant: Some((*variant).to_owned()),
                })
            }
            _ => Err(ManifestError::Platform {
                given: s.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest or an index: which one is told by the media type, or by the
/// fields present when the type is missing.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnyManifest {
    pub schema_version: Option<u32>,
    pub media_type: Option<String>,
    pub config: Option<Descriptor>,
    pub layers: Option<Vec<Descriptor>>,
    pub manifests: Option<Vec<Descriptor>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Index(Vec<Descriptor>),
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

/// Parses a manifest or an index.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed, ManifestError> {
    let m: AnyManifest = serde_json::from_slice(bytes).map_err(ManifestError::NotAManifest)?;
    if m.schema_version != Some(2) {
        return Err(ManifestError::SchemaVersion(m.schema_version));
    }
    let media_type = m
        .media_type
        .as_deref()
        .or(content_type)
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    let is_index = media_type == OCI_INDEX
        || media_type == DOCKER_LIST
        || (m.manifests.is_some() && m.config.is_none());
    if is_index {
        return Ok(Parsed::Index(m.manifests.unwrap_or_default()));
    }
    match (m.config, m.layers) {
        (Some(config), Some(layers)) => Ok(Parsed::Image { config, layers }),
        _ => Err(ManifestError::Incomplete),
    }
}

/// The index entry for `want` (an exact variant match first, then any
/// variant of the architecture); attestation entries (`unknown/unknown`)
/// never match.
pub fn select<'a>(entries: &'a [Descriptor], want: &Platform) -> Option<&'a Descriptor> {
    let matches = |d: &&Descriptor, exact: bool| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == want.os
                && p.architecture == want.architecture
                && (!exact || want.variant.is_none() || p.variant == want.variant)
        })
    };
    entries
        .iter()
        .find(|d| matches(d, true))
        .or_else(|| entries.iter().find(|d| matches(d, false)))
}

/// The parts of an image config the SBOM uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    pub created: Option<String>,
    pub architecture: Option<String>,
    pub os: Option<String>,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    pub rootfs: Option<RootFsConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "Labels", default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFsConfig {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig, ManifestError> {
    serde_json::from_slice(bytes).map_err(ManifestError::NotAConfig)
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    /// Anything else: sniffed from the first bytes.
    Unknown,
}

pub fn layer_compression(media_type: &str) -> Compression {
    if media_type.ends_with("+gzip") || media_type.ends_with(".tar.gzip") {
        Compression::Gzip
    } else if media_type.ends_with("+zstd") {
        Compression::Zstd
    } else if media_type.ends_with(".tar") || media_type.ends_with("diff.tar") {
        Compression::None
    } else {
        Compression::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(str::to_owned),
            }),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn platform_selection() {
        let entries = vec![
            desc("arm", Some("v6"), "a"),
            desc("arm", Some("v7"), "b"),
            desc("amd64", None, "c"),
            Descriptor {
                platform: Some(Platform {
                    architecture: "unknown".into(),
                    os: "unknown".into(),
                    variant: None,
                }),
                ..desc("x", None, "att")
            },
        ];
        let p = |s| Platform::parse(s).unwrap();
        assert_eq!(select(&entries, &p("linux/amd64")).unwrap().digest, "c");
        assert_eq!(select(&entries, &p("linux/arm/v7")).unwrap().digest, "b");
        assert_eq!(select(&entries, &p("linux/arm")).unwrap().digest, "a");
        assert!(select(&entries, &p("linux/s390x")).is_none());
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn manifests_and_indexes() {
        let m = br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"x","digest":"sha256:c","size":1},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:l","size":2}]}"#;
        match parse(m, None).unwrap() {
            Parsed::Image { config, layers } => {
                assert_eq!(config.digest, "sha256:c");
                assert_eq!(layer_compression(&layers[0].media_type), Compression::Gzip);
            }
            other => panic!("{other:?}"),
        }
        let i = br#"{"schemaVersion":2,"manifests":[{"digest":"sha256:a","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#;
        assert!(matches!(parse(i, Some(OCI_INDEX)).unwrap(), Parsed::Index(v) if v.len() == 1));
        assert!(
            parse(br#"{"schemaVersion":1}"#, None)
                .unwrap_err()
                .to_string()
                .contains("schemaVersion")
        );
        assert!(parse(b"[]", None).is_err());
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar"),
            Compression::None
        );
        assert_eq!(
            layer_compression("application/vnd.oci.image.layer.v1.tar+zstd"),
            Compression::Zstd
        );
    }
}
