//! The health check the deployer runs against a new container before it
//! takes traffic: `GET <health_path>` over HTTP/1.0, the status line only.
//! Done from the host, so any image works (no curl needed inside it).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a health check got no status code. The deployer reports it as the
/// check's last answer, so each says what happened at which step.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no answer within {} ms", .timeout.as_millis())]
    Timeout { timeout: Duration },
    #[error("cannot connect: {source}")]
    Connect { source: std::io::Error },
    #[error("cannot send the request: {source}")]
    Send { source: std::io::Error },
    #[error("cannot read the answer: {source}")]
    Read { source: std::io::Error },
    #[error("the connection closed without an answer")]
    Closed,
    #[error("not an HTTP answer: {line:?}")]
    NotHttp { line: String },
}

/// The status code `GET path` answers with, or why there is none.
pub async fn http_status(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<u16, ProbeError> {
    match tokio::time::timeout(timeout, get(addr, path)).await {
        Ok(result) => result,
        Err(_) => Err(ProbeError::Timeout { timeout }),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<u16, ProbeError> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { source })?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: pipeline-deploy\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|source| ProbeError::Send { source })?;
    // The status line fits in the first few bytes; read up to 1 KiB.
    let mut buf = vec![0u8; 1024];
    let mut len = 0;
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        let n = stream
            .read(&mut buf[len..])
            .await
            .map_err(|source| ProbeError::Read { source })?;
        if n == 0 {
            break;
        }
        len += n;
    }
    status_code(&buf[..len])
}

/// The code of an HTTP status line (`HTTP/1.1 200 OK`).
pub fn status_code(answer: &[u8]) -> Result<u16, ProbeError> {
    let line = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    match (
        words.next(),
        words.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ if answer.is_empty() => Err(ProbeError::Closed),
        _ => Err(ProbeError::NotHttp {
            line: line.trim().to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(status_code(b"HTTP/1.0 404 Not Found\r\nx").unwrap(), 404);
        assert!(status_code(b"").unwrap_err().to_string().contains("closed"));
        assert!(
            status_code(b"SSH-2.0-OpenSSH\r\n")
                .unwrap_err()
                .to_string()
                .contains("not an HTTP")
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let e = http_status(addr, "/health", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cannot connect"), "{e}");
    }
}
