//! Whose problem an error is. Every library error says it once, here, so
//! each front end maps errors one way: the CLI to exit codes
//! (`pipeline --help`), the service to HTTP statuses.

/// Who can fix a failure, and so how it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// A wrong input or argument, a missing file, refused credentials: the
    /// user fixes it by changing what they gave (CLI exit 2).
    Usage,
    /// The machine or a service failed: Docker, the registry, Grype,
    /// the disk (exit 3).
    Infra,
    /// The image's own build failed, a Dockerfile step (exit 4).
    BuildFailed,
    /// The scan fails the policy (exit 5).
    PolicyFailed,
    /// Grype is not installed (exit 6).
    GrypeMissing,
    /// The image was refused: a check a promotion needs failed (signature,
    /// attestation, scan, provenance) (exit 7).
    Rejected,
    /// The new image failed its deploy and the previous one serves again
    /// (exit 8).
    RolledBack,
    /// The new image failed and so did restoring the previous one: the
    /// environment needs a person (exit 9).
    Degraded,
}

/// An error that knows whose problem it is.
pub trait Classify {
    fn blame(&self) -> Blame;
}

/// Errors that are always the user's to fix.
macro_rules! usage_errors {
    ($($t:ty),* $(,)?) => {
        $(impl Classify for $t {
            fn blame(&self) -> Blame {
                Blame::Usage
            }
        })*
    };
}

usage_errors!(
    crate::credentials::CredentialsError,
    crate::reference::ReferenceError,
    crate::reference::NotPinned,
    crate::cosign::keys::KeyError,
    crate::output::OutputError,
    crate::cosign::predicate::PredicateError,
);

impl Classify for crate::engine::EngineUnreachable {
    fn blame(&self) -> Blame {
        Blame::Infra
    }
}

/// Errors with an `is_usage` of their own: usage or infrastructure.
macro_rules! usage_or_infra {
    ($($t:ty),* $(,)?) => {
        $(impl Classify for $t {
            fn blame(&self) -> Blame {
                if self.is_usage() {
                    Blame::Usage
                } else {
                    Blame::Infra
                }
            }
        })*
    };
}

usage_or_infra!(
    crate::registry::RegistryError,
    crate::push::PushError,
    crate::sbom::SbomError,
);

impl Classify for crate::scan::ScanError {
    fn blame(&self) -> Blame {
        if self.is_grype_not_found() {
            Blame::GrypeMissing
        } else if self.is_usage() {
            Blame::Usage
        } else {
            Blame::Infra
        }
    }
}

impl Classify for crate::build::BuildError {
    fn blame(&self) -> Blame {
        self.kind()
    }
}
