//! The inventory as a CycloneDX 1.5 JSON document, byte for byte the same
//! for the same input: components sorted, serial number derived from the
//! content, timestamp from `SOURCE_DATE_EPOCH` or the image's creation time
//! (never the clock).
//!
//! Property names: Syft's where they mean the same (`syft:package:foundBy`,
//! `syft:package:type`, `syft:location:N:path`, `syft:location:N:layerID`),
//! `pipeline:*` for the rest (see the README).

use std::collections::BTreeMap;

use cyclonedx_bom::external_models::date_time::DateTime;
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::uri::Purl;
use cyclonedx_bom::models::bom::{Bom, SpecVersion, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::metadata::Metadata;
use cyclonedx_bom::models::property::{Properties, Property};
use cyclonedx_bom::models::tool::Tools;
use cyclonedx_bom::validation::Validate;
use sha2::{Digest as _, Sha256};

use super::catalog::{Inventory, Location, OsRelease, Package, license};
use super::warning::Warning;

// The OCI labels whose values go into the SBOM's metadata.
use crate::labels::{REVISION as REVISION_LABEL, SOURCE as SOURCE_LABEL};

/// What was described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// As the user named it (an image reference, or a directory).
    pub name: String,
    pub image: Option<ImageMeta>,
}

/// What an image says about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageMeta {
    /// The image id: the digest of its config.
    pub id: String,
    /// The registry manifest's digest, when known.
    pub manifest_digest: Option<String>,
    /// `REPO@sha256:...` references the image is known by, sorted.
    pub repo_digests: Vec<String>,
    /// The config's `created`, RFC 3339.
    pub created: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Uncompressed layer digests (diff ids), bottom first.
    pub layers: Vec<String>,
    pub os: Option<String>,
    pub architecture: Option<String>,
}

/// The SBOM's timestamp: `SOURCE_DATE_EPOCH` when given, else the image's
/// creation time, else none.
pub fn timestamp(
    source_date_epoch: Option<i64>,
    image: Option<&ImageMeta>,
    warnings: &mut Vec<Warning>,
) -> Option<DateTime> {
    if let Some(epoch) = source_date_epoch {
        return time::OffsetDateTime::from_unix_timestamp(epoch)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .and_then(|s| DateTime::try_from(s).ok());
    }
    let created = image.and_then(|i| i.created.clone())?;
    match DateTime::try_from(created.clone()) {
        Ok(t) => Some(t),
        Err(_) => {
            warnings.push(Warning {
                path: None,
                message: format!(
                    "the image's creation time {created:?} is not RFC 3339; the SBOM has no timestamp"
                ),
            });
            None
        }
    }
}

fn prop(name: &str, value: &str) -> Property {
    Property::new(name, value)
}

fn location_props(props: &mut Vec<Property>, locations: &[Location]) {
    for (i, l) in locations.iter().enumerate() {
        props.push(prop(
            &format!("syft:location:{i}:path"),
            &format!("/{}", l.path),
        ));
        if let Some(layer) = &l.layer {
            props.push(prop(&format!("syft:location:{i}:layerID"), layer));
        }
    }
}

fn os_component(os: &OsRelease, location: &Location) -> Component {
    let name = os.id.as_deref().unwrap_or("unknown");
    let version = os.version_id.as_deref().unwrap_or("");
    let mut c = Component::new(
        Classification::OperatingSystem,
        name,
        version,
        Some(format!("os:{name}@{version}")),
    );
    if version.is_empty() {
        c.version = None;
    }
    c.description = os.pretty_name.as_deref().map(NormalizedString::new);
    let mut props = vec![prop("syft:package:type", "os")];
    if let Some(codename) = &os.version_codename {
        props.push(prop("syft:distro:versionCodename", codename));
    }
    if let Some(like) = &os.id_like {
        props.push(prop("syft:distro:idLike", like));
    }
    location_props(&mut props, std::slice::from_ref(location));
    c.properties = Some(Properties(props));
    c
}

fn package_component(p: &Package) -> Component {
    let mut c = Component::new(
        Classification::Library,
        &p.name,
        &p.version,
        Some(p.purl.clone()),
    );
    c.purl = p.purl.parse::<Purl>().ok();
    c.licenses = license::to_cyclonedx(&p.licenses);
    let mut props = vec![
        prop("syft:package:foundBy", p.ecosystem.cataloger()),
        prop("syft:package:type", p.ecosystem.package_type()),
    ];
    location_props(&mut props, &p.locations);
    c.properties = Some(Properties(props));
    c
}

fn subject_component(subject: &Subject) -> Component {
    let Some(image) = &subject.image else {
        return Component::new(
            Classification::File,
            &subject.name,
            "",
            Some(format!("dir:{}", subject.name)),
        )
        .without_version();
    };
    let mut c = Component::new(
        Classification::Container,
        &subject.name,
        &image.id,
        Some(format!("image:{}", image.id)),
    );
    let mut props = vec![prop("pipeline:image:id", &image.id)];
    if let Some(d) = &image.manifest_digest {
        props.push(prop("pipeline:image:manifestDigest", d));
    }
    for r in &image.repo_digests {
        props.push(prop("pipeline:image:repoDigest", r));
    }
    if let Some(rev) = image.labels.get(REVISION_LABEL) {
        props.push(prop("pipeline:image:revision", rev));
    }
    if let Some(src) = image.labels.get(SOURCE_LABEL) {
        props.push(prop("pipeline:image:source", src));
    }
    if let Some(created) = &image.created {
        props.push(prop("pipeline:image:created", created));
    }
    if let (Some(os), Some(arch)) = (&image.os, &image.architecture) {
        props.push(prop("pipeline:image:platform", &format!("{os}/{arch}")));
    }
    for (i, layer) in image.layers.iter().enumerate() {
        props.push(prop(&format!("pipeline:image:layer:{i}"), layer));
    }
    c.properties = Some(Properties(props));
    c
}

trait WithoutVersion {
    fn without_version(self) -> Self;
}

impl WithoutVersion for Component {
    fn without_version(mut self) -> Self {
        self.version = None;
        self
    }
}

/// Renders the document. Components that fail the spec's validation (which
/// odd metadata could cause) are left out with a warning rather than making
/// the whole document invalid.
pub fn render(
    inventory: &Inventory,
    subject: &Subject,
    source_date_epoch: Option<i64>,
) -> Result<(Vec<u8>, Vec<Warning>), RenderError> {
    let mut warnings = inventory.warnings.clone();
    let mut components = Vec::new();
    if let Some((os, loc)) = &inventory.distro {
        components.push(os_component(os, loc));
    }
    for p in &inventory.packages {
        let c = package_component(p);
        if c.validate_version(SpecVersion::V1_5).passed() {
            components.push(c);
        } else {
            warnings.push(Warning {
                path: p.locations.first().map(|l| l.path.clone()),
                message: format!(
                    "package {:?} {:?} ({}) does not make a valid CycloneDX component; left out",
                    p.name, p.version, p.purl
                ),
            });
        }
    }
    let timestamp = timestamp(source_date_epoch, subject.image.as_ref(), &mut warnings);
    let tool = Component::new(
        Classification::Application,
        "pipeline",
        env!("CARGO_PKG_VERSION"),
        None,
    );
    let mut bom_props: Vec<Property> = warnings
        .iter()
        .map(|w| prop("pipeline:warning", &w.to_string()))
        .collect();
    bom_props.push(prop("pipeline:files", &inventory.files.to_string()));
    let mut bom = Bom {
        version: 1,
        serial_number: None,
        metadata: Some(Metadata {
            timestamp,
            tools: Some(Tools::Object {
                services: None,
                components: Some(Components(vec![tool])),
            }),
            component: Some(subject_component(subject)),
            ..Metadata::default()
        }),
        components: Some(Components(components)),
        properties: Some(Properties(bom_props)),
        spec_version: SpecVersion::V1_5,
        ..Bom::default()
    };
    bom.serial_number = None;
    // The serial number names this content: a hash of the document without it.
    let unnamed = to_json(bom.clone())?;
    let h = Sha256::digest(&unnamed);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8: custom
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let hex = crate::digest::hex(&b);
    let uuid = format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    bom.serial_number =
        Some(UrnUuid::new(uuid).map_err(|e| RenderError::SerialNumber(format!("{e:?}")))?);
    let result = bom.validate_version(SpecVersion::V1_5);
    if !result.passed() {
        return Err(RenderError::Invalid(format!("{result:?}")));
    }
    Ok((to_json(bom)?, warnings))
}

/// An SBOM that cannot be written: a bug of ours, never of the input (bad
/// components are left out with a warning before this could happen).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write the SBOM as JSON: {0}")]
    Json(#[from] cyclonedx_bom::errors::JsonWriteError),
    #[error("the serial number is not a urn:uuid: {0}")]
    SerialNumber(String),
    #[error("the SBOM does not validate against CycloneDX 1.5: {0}")]
    Invalid(String),
}

fn to_json(bom: Bom) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    bom.output_as_json_v1_5(&mut out)?;
    out.push(b'\n');
    Ok(out)
}
