//! `registry:REF`: the image pulled straight from a registry, no daemon.
//! Each layer streams once from the network through a digest check and the
//! decompressor into the file system view; nothing is stored.

use std::io::BufReader;

use super::SbomError;
use super::cyclonedx::ImageMeta;
use super::layer;
use super::rootfs::RootFs;
use crate::reference::Reference;
use crate::registry::manifest::{self, Compression, Descriptor, Parsed, Platform};
use crate::registry::{CONFIG_CAP, Client, RegistryError};

const MAX_INDEX_DEPTH: usize = 4;

pub fn read(
    reference: &Reference,
    client: &Client,
    platform: &Platform,
) -> Result<(RootFs, ImageMeta), SbomError> {
    let (config, layers, digest) = image_manifest(reference, client, platform)?;
    let config_bytes = client.blob_bytes(&config.digest, CONFIG_CAP, "the image config")?;
    let cfg =
        manifest::parse_config(&config_bytes).map_err(|m| client.invalid("the image config", m))?;
    let diff_ids = cfg
        .rootfs
        .as_ref()
        .map(|r| r.diff_ids.clone())
        .unwrap_or_default();
    let mut fs = RootFs::new();
    if diff_ids.len() != layers.len() {
        fs.warnings.push(
            None,
            format!(
                "the config lists {} layers, the manifest {}",
                diff_ids.len(),
                layers.len()
            ),
        );
    }
    for (i, desc) in layers.iter().enumerate() {
        let label = diff_ids.get(i).map_or_else(
            || format!("layer {i} ({})", desc.digest),
            |d| format!("layer {i} ({d})"),
        );
        apply_layer(reference, client, &mut fs, i, desc, &label)?;
    }
    let layer_ids = if diff_ids.len() == layers.len() {
        diff_ids
    } else {
        layers.iter().map(|l| l.digest.clone()).collect()
    };
    let meta = ImageMeta {
        id: config.digest.clone(),
        manifest_digest: Some(digest.clone()),
        repo_digests: vec![format!("{}@{digest}", reference.name())],
        created: cfg.created,
        labels: cfg.config.and_then(|c| c.labels).unwrap_or_default(),
        layers: layer_ids,
        os: cfg.os,
        architecture: cfg.architecture,
    };
    Ok((fs, meta))
}

/// The image manifest `reference` leads to (through indexes, picking
/// `platform`): its config, its layers, and its digest.
fn image_manifest(
    reference: &Reference,
    client: &Client,
    platform: &Platform,
) -> Result<(Descriptor, Vec<Descriptor>, String), SbomError> {
    let (mut bytes, mut content_type, mut digest) = client.manifest(reference.tag_or_digest())?;
    for depth in 1.. {
        let parsed = manifest::parse(&bytes, content_type.as_deref())
            .map_err(|m| client.invalid(&format!("manifest {digest}"), m))?;
        let entries = match parsed {
            Parsed::Image { config, layers } => return Ok((config, layers, digest)),
            Parsed::Index(_) if depth > MAX_INDEX_DEPTH => break,
            Parsed::Index(entries) => entries,
        };
        let chosen = manifest::select(&entries, platform).ok_or_else(|| {
            let have: Vec<String> = entries
                .iter()
                .filter_map(|e| e.platform.as_ref().map(ToString::to_string))
                .collect();
            SbomError::Input {
                input: format!("registry:{reference}"),
                message: format!(
                    "no image for {platform} in the index (it has: {}); pass --platform",
                    have.join(", ")
                ),
            }
        })?;
        (bytes, content_type, digest) = client.manifest(&chosen.digest)?;
    }
    Err(client
        .invalid(&format!("index {digest}"), "indexes nested too deep")
        .into())
}

/// Streams layer `i` once from the registry, through its digest check and
/// the decompressor, into `fs`.
fn apply_layer(
    reference: &Reference,
    client: &Client,
    fs: &mut RootFs,
    i: usize,
    desc: &Descriptor,
    label: &str,
) -> Result<(), SbomError> {
    let what = format!("layer {i} ({})", desc.digest);
    let mut hashing = client.blob_reader(&desc.digest, &what)?;
    if desc.media_type.contains("foreign") {
        fs.warnings.push(
            None,
            format!("{label}: a foreign (non-distributable) layer; not read"),
        );
        return Ok(());
    }
    if manifest::layer_compression(&desc.media_type) == Compression::Zstd {
        fs.warnings.push(
            None,
            format!("{label}: zstd-compressed, which is not supported; its files are not listed"),
        );
    } else {
        let buffered = BufReader::with_capacity(256 << 10, &mut hashing);
        match layer::decompressed(buffered) {
            Ok(r) => fs.apply_tar(r, u32::try_from(i).unwrap_or(u32::MAX), label, true),
            Err(e) => fs.warnings.push(None, format!("{label}: {e}")),
        }
    }
    // The rest (tar padding, trailing gzip members) counts towards the
    // digest, so it is read too.
    let (actual, _) = hashing.finish().map_err(|e| RegistryError::Unreachable {
        url: format!("{}/{}", client.host(), reference.repository),
        message: format!("reading {what}: {e}"),
    })?;
    if actual != desc.digest {
        return Err(client.mismatch(&what, &desc.digest, &actual).into());
    }
    Ok(())
}
