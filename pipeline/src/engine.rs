//! The Docker engine, reached through `DOCKER_HOST` or the local socket.

use bollard::Docker;
use bollard::errors::Error as BollardError;

/// Engine requests time out after this long (bollard's default of two
/// minutes is too short for builds and pushes of large images).
const REQUEST_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, thiserror::Error)]
#[error("cannot reach the Docker engine: {message}")]
pub struct EngineUnreachable {
    pub message: String,
}

/// Connects and settles the API version with the daemon (older daemons,
/// such as Debian's 20.10, refuse newer API versions).
pub async fn connect() -> Result<Docker, EngineUnreachable> {
    let fail = |e: BollardError| EngineUnreachable {
        message: describe(&e),
    };
    let client = Docker::connect_with_defaults()
        .map_err(fail)?
        .with_timeout(std::time::Duration::from_secs(REQUEST_TIMEOUT_SECS));
    client.negotiate_version().await.map_err(fail)
}

/// A readable one-line description of a bollard error.
pub fn describe(e: &BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        BollardError::IOError { err } => {
            format!("{err} (is the Docker daemon running, and may this user use its socket?)")
        }
        other => other.to_string(),
    }
}

pub fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}
