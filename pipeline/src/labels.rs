//! The OCI annotation keys `pipeline build` puts on images as labels, and
//! `pipeline sbom` reads back into the SBOM: one definition for both ends.
//! (<https://github.com/opencontainers/image-spec/blob/main/annotations.md>)

/// The commit SHA the image was built from.
pub const REVISION: &str = "org.opencontainers.image.revision";
/// Where that commit lives: the repository URL (credentials removed).
pub const SOURCE: &str = "org.opencontainers.image.source";
/// When the image was built (RFC 3339).
pub const CREATED: &str = "org.opencontainers.image.created";
