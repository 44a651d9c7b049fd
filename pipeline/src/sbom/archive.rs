//! `docker save` archives: the legacy layout (`manifest.json`,
//! `<id>/layer.tar`, `<id>.json`) and the OCI layout newer Docker writes
//! (`index.json`, `blobs/sha256/...`, often with a `manifest.json` too).
//!
//! The archive is a seekable file: an index of its members is made first
//! (`manifest.json` usually comes last), then each layer is read in place,
//! once, in order.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};

use serde::Deserialize;

use super::cyclonedx::ImageMeta;
use super::layer;
use super::rootfs::RootFs;
use crate::digest::sha256_digest;
use crate::registry::manifest::{self, Parsed, Platform};

const JSON_CAP: u64 = 16 << 20;
/// Nested indexes are followed this deep at most.
const MAX_INDEX_DEPTH: usize = 4;

/// An archive that is not a readable image.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Io(#[source] std::io::Error),
    #[error("not a readable tar archive: {0}")]
    NotTar(#[source] std::io::Error),
    #[error("the tar archive is malformed or truncated: {0}")]
    Malformed(#[source] std::io::Error),
    #[error("{name} is listed but not in the archive")]
    Missing { name: String },
    #[error("cannot read {name}: {source}")]
    Member {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} is larger than {limit} bytes")]
    TooLarge { name: String, limit: u64 },
    #[error("{digest:?} is not a digest")]
    NotADigest { digest: String },
    #[error("manifest.json is not Docker's format: {0}")]
    SaveManifest(#[source] serde_json::Error),
    #[error("manifest.json lists no image")]
    NoImage,
    #[error("neither manifest.json nor index.json is in it: not a `docker save` or OCI archive")]
    NotAnImageArchive,
    #[error("{member}: {source}")]
    Manifest {
        member: String,
        source: manifest::ManifestError,
    },
    #[error("no image for {platform} in the archive")]
    NoPlatform { platform: Platform },
    #[error("indexes nested more than {MAX_INDEX_DEPTH} deep")]
    TooDeep,
}

/// One image of `manifest.json` (Docker's format; unknown fields such as
/// `LayerSources` are accepted as Docker adds them).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SaveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// An image read from an archive.
#[derive(Debug)]
pub struct ArchiveImage {
    pub fs: RootFs,
    pub meta: ImageMeta,
    pub repo_tags: Vec<String>,
}

struct Members {
    file: File,
    index: HashMap<String, (u64, u64)>,
}

impl Members {
    fn open(file: File) -> Result<Members, ArchiveError> {
        let mut index = HashMap::new();
        (&file).seek(SeekFrom::Start(0)).map_err(ArchiveError::Io)?;
        {
            let mut archive = tar::Archive::new(&file);
            let entries = archive.entries_with_seek().map_err(ArchiveError::NotTar)?;
            for entry in entries {
                let entry = entry.map_err(ArchiveError::Malformed)?;
                if entry.header().entry_type() != tar::EntryType::Regular {
                    continue;
                }
                let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
                let name = name.trim_start_matches("./").to_owned();
                index.insert(name, (entry.raw_file_position(), entry.size()));
            }
        }
        Ok(Members { file, index })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn reader(&self, name: &str) -> Result<impl Read + '_, ArchiveError> {
        let (offset, size) = *self.index.get(name).ok_or_else(|| ArchiveError::Missing {
            name: name.to_owned(),
        })?;
        let mut f = &self.file;
        f.seek(SeekFrom::Start(offset))
            .map_err(|source| ArchiveError::Member {
                name: name.to_owned(),
                source,
            })?;
        Ok(f.take(size))
    }

    fn read(&self, name: &str) -> Result<Vec<u8>, ArchiveError> {
        let mut bytes = Vec::new();
        self.reader(name)?
            .take(JSON_CAP + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ArchiveError::Member {
                name: name.to_owned(),
                source,
            })?;
        if bytes.len() as u64 > JSON_CAP {
            return Err(ArchiveError::TooLarge {
                name: name.to_owned(),
                limit: JSON_CAP,
            });
        }
        Ok(bytes)
    }
}

fn blob_path(digest: &str) -> Result<String, ArchiveError> {
    match digest.split_once(':') {
        Some((alg, hex))
            if !alg.is_empty()
                && !hex.is_empty()
                && alg.chars().all(|c| c.is_ascii_alphanumeric())
                && hex.chars().all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok(format!("blobs/{alg}/{hex}"))
        }
        _ => Err(ArchiveError::NotADigest {
            digest: digest.to_owned(),
        }),
    }
}

/// Config path and layer paths of the image to read.
fn locate(
    members: &Members,
    platform: &Platform,
    warnings: &mut Vec<String>,
) -> Result<(String, Vec<String>, Vec<String>), ArchiveError> {
    if members.has("manifest.json") {
        let list: Vec<SaveManifest> = serde_json::from_slice(&members.read("manifest.json")?)
            .map_err(ArchiveError::SaveManifest)?;
        let count = list.len();
        let first = list.into_iter().next().ok_or(ArchiveError::NoImage)?;
        if count > 1 {
            warnings.push(format!(
                "the archive holds {count} images; only the first ({}) is described",
                first
                    .repo_tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .map_or(first.config.as_str(), String::as_str)
            ));
        }
        return Ok((
            first.config,
            first.layers,
            first.repo_tags.unwrap_or_default(),
        ));
    }
    if !members.has("index.json") {
        return Err(ArchiveError::NotAnImageArchive);
    }
    let mut bytes = members.read("index.json")?;
    for _ in 0..MAX_INDEX_DEPTH {
        match manifest::parse(&bytes, Some(manifest::OCI_INDEX)).map_err(|source| {
            ArchiveError::Manifest {
                member: "index.json".to_owned(),
                source,
            }
        })? {
            Parsed::Index(entries) => {
                let chosen = if entries.len() == 1 {
                    &entries[0]
                } else {
                    manifest::select(&entries, platform).ok_or_else(|| {
                        ArchiveError::NoPlatform {
                            platform: platform.clone(),
                        }
                    })?
                };
                bytes = members.read(&blob_path(&chosen.digest)?)?;
            }
            Parsed::Image { config, layers } => {
                let layers = layers
                    .iter()
                    .map(|l| blob_path(&l.digest))
                    .collect::<Result<Vec<_>, _>>()?;
                return Ok((blob_path(&config.digest)?, layers, Vec::new()));
            }
        }
    }
    Err(ArchiveError::TooDeep)
}

/// Reads the image in `file`; `label` names it in messages.
pub fn read(file: File, platform: &Platform) -> Result<ArchiveImage, ArchiveError> {
    let members = Members::open(file)?;
    let mut warnings = Vec::new();
    let (config_path, layer_paths, repo_tags) = locate(&members, platform, &mut warnings)?;
    let config_bytes = members.read(&config_path)?;
    let config =
        manifest::parse_config(&config_bytes).map_err(|source| ArchiveError::Manifest {
            member: config_path.clone(),
            source,
        })?;
    let diff_ids = config
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    if diff_ids.len() != layer_paths.len() {
        warnings.push(format!(
            "the config lists {} layers, the manifest {}",
            diff_ids.len(),
            layer_paths.len()
        ));
    }
    let mut fs = RootFs::new();
    for w in warnings {
        fs.warnings.push(None, w);
    }
    for (i, path) in layer_paths.iter().enumerate() {
        let label = format!("layer {i} ({})", diff_ids.get(i).unwrap_or(path));
        let reader = BufReader::with_capacity(256 << 10, members.reader(path)?);
        match layer::decompressed(reader) {
            Ok(r) => fs.apply_tar(r, u32::try_from(i).unwrap_or(u32::MAX), &label, true),
            Err(e) => fs.warnings.push(None, format!("{label}: {e}")),
        }
    }
    let layers = if diff_ids.len() == layer_paths.len() {
        diff_ids
    } else {
        layer_paths
    };
    Ok(ArchiveImage {
        fs,
        meta: ImageMeta {
            id: sha256_digest(&config_bytes),
            manifest_digest: None,
            repo_digests: Vec::new(),
            created: config.created.clone(),
            labels: config.config.and_then(|c| c.labels).unwrap_or_default(),
            layers,
            os: config.os,
            architecture: config.architecture,
        },
        repo_tags,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sbom::rootfs::LayerBuilder;
    use std::io::Write;

    /// A `docker save` archive in the legacy layout (manifest.json last, as
    /// Docker writes it) or the OCI layout (index.json only).
    pub(crate) fn save_archive(layers: &[Vec<u8>], labels: &str, oci: bool) -> Vec<u8> {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256_digest(l)).collect();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","created":"2024-01-02T03:04:05Z","config":{{"Labels":{labels}}},"rootfs":{{"type":"layers","diff_ids":{}}}}}"#,
            serde_json::to_string(&diff_ids).unwrap()
        );
        let config_digest = sha256_digest(config.as_bytes());
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        };
        if oci {
            let mut layer_descs = Vec::new();
            for l in layers {
                // OCI layouts may hold gzip layers.
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(l).unwrap();
                let gz = gz.finish().unwrap();
                let d = sha256_digest(&gz);
                add(&blob_path(&d).unwrap(), &gz);
                layer_descs.push(format!(
                    r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{d}","size":{}}}"#,
                    gz.len()
                ));
            }
            add(&blob_path(&config_digest).unwrap(), config.as_bytes());
            let m = format!(
                r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
                config.len(),
                layer_descs.join(",")
            );
            let md = sha256_digest(m.as_bytes());
            add(&blob_path(&md).unwrap(), m.as_bytes());
            add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
            add(
                "index.json",
                format!(
                    r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{md}","size":{}}}]}}"#,
                    m.len()
                )
                .as_bytes(),
            );
        } else {
            let mut paths = Vec::new();
            for (i, l) in layers.iter().enumerate() {
                let p = format!("{i:064x}/layer.tar");
                add(&p, l);
                paths.push(p);
            }
            let cfg_name = format!("{}.json", &config_digest[7..]);
            add(&cfg_name, config.as_bytes());
            add(
                "manifest.json",
                format!(
                    r#"[{{"Config":"{cfg_name}","RepoTags":["app:1"],"Layers":{}}}]"#,
                    serde_json::to_string(&paths).unwrap()
                )
                .as_bytes(),
            );
        }
        b.into_inner().unwrap()
    }

    fn read_bytes(bytes: &[u8]) -> Result<ArchiveImage, ArchiveError> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        read(f, &Platform::host())
    }

    #[test]
    fn legacy_and_oci_layouts_give_the_same_file_system() {
        let layers = vec![
            LayerBuilder::new()
                .file("etc/os-release", b"ID=debian\nVERSION_ID=12\n")
                .file("gone", b"x")
                .build(),
            LayerBuilder::new()
                .file(".wh.gone", b"")
                .file("new", b"y")
                .build(),
        ];
        let labels = r#"{"org.opencontainers.image.revision":"abc"}"#;
        let legacy = read_bytes(&save_archive(&layers, labels, false)).unwrap();
        let oci = read_bytes(&save_archive(&layers, labels, true)).unwrap();
        for img in [&legacy, &oci] {
            let paths: Vec<&str> = img.fs.iter().map(|(p, _)| p).collect();
            assert_eq!(paths, ["etc/os-release", "new"]);
            assert_eq!(img.meta.labels["org.opencontainers.image.revision"], "abc");
            assert_eq!(img.meta.layers[1], sha256_digest(&layers[1]));
            assert!(img.fs.warnings.is_empty(), "{:?}", img.fs.warnings);
        }
        assert_eq!(legacy.meta, oci.meta);
        assert_eq!(legacy.repo_tags, ["app:1"]);
    }

    #[test]
    fn not_an_image_archive() {
        let e = read_bytes(&LayerBuilder::new().file("a", b"b").build())
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither manifest.json nor index.json"), "{e}");
        let e = read_bytes(b"garbage that is not a tar file at all, long enough to matter")
            .unwrap_err()
            .to_string();
        assert!(!e.is_empty());
    }
}
