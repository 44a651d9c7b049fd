//! `runner serve` over TLS: a real server process with a certificate made
//! by openssl, a real rustls client, and HSTS on the responses.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::server::Server;
use test_support::{TempDir, require_docker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;

/// A self-signed certificate for 127.0.0.1 in `dir`, and a server using it
/// with `extra` configuration.
fn tls_server(dir: &TempDir, extra: &str) -> (Server, std::path::PathBuf) {
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed (.ci/setup installs it)");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let server = Server::start(
        dir.path(),
        &format!(
            "{extra}[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    (server, cert)
}

async fn connect(
    server: &Server,
    cert: &std::path::Path,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    connector.connect(name, tcp).await.expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_over_tls_with_hsts() {
    require_docker!();
    let dir = TempDir::new("svc-tls");
    let (server, cert) = tls_server(&dir, "");
    let mut tls = connect(&server, &cert).await;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&out).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(12),
        plain.read_to_end(&mut buf),
    )
    .await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
}

/// Issue 9, finding 10, over TLS: a connection that completed its handshake
/// but sends nothing, or half its headers, is closed; so is one that never
/// completes its handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_requests_are_closed_over_tls_too() {
    require_docker!();
    let dir = TempDir::new("svc-tls-slow");
    let (server, cert) = tls_server(
        &dir,
        "[http]\nheader_read_timeout_ms = 1000\nidle_timeout_secs = 1\n",
    );
    let limit = std::time::Duration::from_secs(8);
    for sent in [&b""[..], b"GET /healthz HTTP/1.1\r\nHost: x\r\n"] {
        let mut tls = connect(&server, &cert).await;
        tls.write_all(sent).await.unwrap();
        let t0 = std::time::Instant::now();
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(limit, tls.read_to_end(&mut buf)).await;
        assert!(
            closed.is_ok() && t0.elapsed() < std::time::Duration::from_secs(4),
            "{:?} still open after {:?}",
            String::from_utf8_lossy(sent),
            t0.elapsed()
        );
    }
    // No handshake at all: closed after the handshake timeout (10 s).
    let mut silent = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        silent.read_to_end(&mut buf),
    )
    .await;
    assert!(closed.is_ok(), "a silent client is never closed");
}
