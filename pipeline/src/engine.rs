//! The Docker engine, reached through `DOCKER_HOST` or the local socket.
//!
//! [`connect`], [`describe`] and [`is_not_found`] are a stable interface:
//! the runner reuses them rather than keeping its own copy, so their
//! signatures change only together with it (a test below pins them).

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The interface the runner builds on: a change here is a change there.
    #[test]
    fn the_shared_interface_keeps_its_shape() {
        let _: fn(&BollardError) -> String = describe;
        let _: fn(&BollardError) -> bool = is_not_found;
        let _connect = connect;
        let not_found = BollardError::DockerResponseServerError {
            status_code: 404,
            message: "no such image: x".into(),
        };
        assert!(is_not_found(&not_found));
        assert_eq!(describe(&not_found), "no such image: x (HTTP 404)");
        let e: EngineUnreachable = EngineUnreachable {
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "cannot reach the Docker engine: m");
    }
}
