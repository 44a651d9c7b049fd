//! Serving connections: our own accept loop over hyper's HTTP/1 connection,
//! for plain TCP and TLS alike, so that every connection is bounded in time
//! and number (axum::serve bounds neither):
//!
//! - a request's line and headers must arrive within `header_read_timeout`
//!   of its first byte;
//! - its body within `body_read_timeout` of its headers (408 otherwise);
//! - a connection with no request in progress is closed after
//!   `idle_timeout`, and so is one whose client stops reading a response for
//!   that long;
//! - at most `max_connections` connections, `max_connections_per_address`
//!   from one address; others are closed as soon as they are accepted;
//! - a TLS handshake must finish within 10 s, off the accept path.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;
use tracing::{debug, warn};

use super::config::HttpConfig;
use super::metrics::Metrics;

/// Longest a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's address, for both plain and TLS connections.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Serves `app` on `listener` until `stop` turns true; then stops accepting,
/// lets requests in progress finish (each connection closes after its
/// current response) and returns when every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    http: HttpConfig,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let counts = Arc::new(Counts::default());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (tcp, addr) = tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors, most likely: let some close.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Some(slot) = Counts::admit(&counts, addr.ip(), &http) else {
            metrics.connections_refused.inc();
            debug!(client = %addr, "connection refused: over the connection caps");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            app: app.clone(),
            addr,
            http,
            stop: stop.clone(),
            _slot: slot,
            _done: done_tx.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.run(tcp).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => conn.run(stream).await,
                        Ok(Err(e)) => debug!(client = %addr, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(client = %addr, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    drop(done_tx);
    // Every connection holds a sender: all are gone when recv sees none.
    let _ = done_rx.recv().await;
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Open connections, in total and per address.
#[derive(Debug, Default)]
struct Counts {
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in [`Counts`], given back when dropped.
#[derive(Debug)]
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Counts {
    fn admit(counts: &Arc<Counts>, ip: IpAddr, http: &HttpConfig) -> Option<Slot> {
        let mut map = counts.per_address.lock().expect("connection counts lock");
        let total: usize = map.values().sum();
        let mine = map.get(&ip).copied().unwrap_or(0);
        if total >= http.max_connections || mine >= http.max_connections_per_address {
            return None;
        }
        *map.entry(ip).or_default() += 1;
        Some(Slot {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .per_address
            .lock()
            .expect("connection counts lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

struct Connection {
    app: Router,
    addr: SocketAddr,
    http: HttpConfig,
    stop: watch::Receiver<bool>,
    _slot: Slot,
    _done: tokio::sync::mpsc::Sender<()>,
}

/// Why the watchdog closed a connection.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Headers,
    Idle,
    Stalled,
}

impl Connection {
    async fn run<IO>(mut self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Mutex::new(Activity::new()));
        let io = Watched {
            inner: io,
            activity: Arc::clone(&activity),
        };
        let (app, addr, act) = (self.app.clone(), self.addr, Arc::clone(&activity));
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(ClientAddr(addr)));
            let guard = InFlight::start(&act);
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await?;
                // The request is in progress until its response body is done.
                Ok::<_, std::convert::Infallible>(resp.map(|b| {
                    Body::new(Tracked {
                        inner: b,
                        _guard: guard,
                    })
                }))
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service);
        let mut conn = std::pin::pin!(conn);
        let http = self.http;
        let watchdog = watch_connection(&activity, &http);
        tokio::pin!(watchdog);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    debug!(client = %self.addr, error = %e, "connection ended with an error");
                }
            }
            why = &mut watchdog => {
                debug!(client = %self.addr, reason = ?why, "connection closed by the server");
            }
            () = stopped(&mut self.stop) => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = &mut watchdog => {}
                }
            }
        }
    }
}

/// What a connection is doing, as its IO and its requests report it.
#[derive(Debug)]
struct Activity {
    /// Requests whose response is not yet fully written.
    in_flight: usize,
    /// The last time bytes moved either way, or a request ended.
    last: Instant,
    /// When the first byte of a request not yet dispatched arrived.
    head_started: Option<Instant>,
    /// Since when a write has been waiting for the client to read.
    write_blocked: Option<Instant>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            in_flight: 0,
            last: Instant::now(),
            head_started: None,
            write_blocked: None,
        }
    }

    /// Whether the connection should be closed now, and why.
    fn verdict(&self, now: Instant, http: &HttpConfig) -> Option<Closed> {
        if self.in_flight == 0 {
            if let Some(t) = self.head_started {
                if now.duration_since(t) >= http.header_read_timeout {
                    return Some(Closed::Headers);
                }
            } else if now.duration_since(self.last) >= http.idle_timeout {
                return Some(Closed::Idle);
            }
        }
        match self.write_blocked {
            Some(t) if now.duration_since(t) >= http.idle_timeout => Some(Closed::Stalled),
            _ => None,
        }
    }
}

async fn watch_connection(activity: &Arc<Mutex<Activity>>, http: &HttpConfig) -> Closed {
    let tick = http
        .header_read_timeout
        .min(http.idle_timeout)
        .div_f64(4.0)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(tick).await;
        let verdict = activity
            .lock()
            .expect("activity lock")
            .verdict(Instant::now(), http);
        if let Some(why) = verdict {
            return why;
        }
    }
}

/// Counts a request in progress while alive.
struct InFlight(Arc<Mutex<Activity>>);

impl InFlight {
    fn start(activity: &Arc<Mutex<Activity>>) -> InFlight {
        let mut a = activity.lock().expect("activity lock");
        a.in_flight += 1;
        a.head_started = None;
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut a = self.0.lock().expect("activity lock");
        a.in_flight = a.in_flight.saturating_sub(1);
        a.last = Instant::now();
    }
}

/// A response body that keeps its request counted until it is done.
struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connection's IO, reporting reads and stalled writes to [`Activity`].
struct Watched<IO> {
    inner: IO,
    activity: Arc<Mutex<Activity>>,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let now = Instant::now();
            let mut a = self.activity.lock().expect("activity lock");
            a.last = now;
            if a.in_flight == 0 && a.head_started.is_none() {
                a.head_started = Some(now);
            }
        }
        r
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.flushed(r.is_pending());
        r
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<IO> Watched<IO> {
    /// Bytes written count as activity; a write the client does not take
    /// starts the stall clock.
    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        let now = Instant::now();
        let mut a = self.activity.lock().expect("activity lock");
        match r {
            Poll::Pending => {
                a.write_blocked.get_or_insert(now);
            }
            Poll::Ready(Ok(n)) if *n > 0 => {
                a.write_blocked = None;
                a.last = now;
            }
            Poll::Ready(_) => a.write_blocked = None,
        }
    }

    /// A flush moves no new bytes (hyper flushes whenever it is polled,
    /// idle or not): it only ends or starts a stall.
    fn flushed(&self, blocked: bool) {
        let now = Instant::now();
        let mut a = self.activity.lock().expect("activity lock");
        if blocked {
            a.write_blocked.get_or_insert(now);
        } else {
            a.write_blocked = None;
        }
    }
}

/// The request body must arrive by its deadline; past it, reading fails
/// with [`BodyTimeout`] (which the API answers with 408).
#[derive(Debug)]
pub struct TimedBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

/// A request body that did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} ms", .0.as_millis())]
pub struct BodyTimeout(pub Duration);

impl TimedBody {
    pub fn new(inner: Body, limit: Duration) -> TimedBody {
        TimedBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
        }
    }
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: puts the body read timeout on every request.
pub async fn time_bodies(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: Request<Body>,
    next: axum::middleware::Next,
) -> Response<Body> {
    let req = req.map(|b| Body::new(TimedBody::new(b, limit)));
    next.run(req).await
}

/// Whether a body error (as an extractor reports it) was a [`BodyTimeout`].
pub fn is_body_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTimeout>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http() -> HttpConfig {
        HttpConfig {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_connections: 3,
            max_connections_per_address: 2,
        }
    }

    #[test]
    fn connections_are_capped_per_address_and_in_total() {
        let counts = Arc::new(Counts::default());
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        let a1 = Counts::admit(&counts, a, &http()).unwrap();
        let _a2 = Counts::admit(&counts, a, &http()).unwrap();
        assert!(Counts::admit(&counts, a, &http()).is_none(), "per address");
        let _b1 = Counts::admit(&counts, b, &http()).unwrap();
        assert!(Counts::admit(&counts, c, &http()).is_none(), "in total");
        drop(a1);
        assert!(
            Counts::admit(&counts, c, &http()).is_some(),
            "a closed one frees its slot"
        );
    }

    #[test]
    fn the_watchdog_judges_headers_idleness_and_stalls() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut a = Activity::new();
        a.last = t0;
        assert!(a.verdict(s(29), &http()).is_none());
        assert!(matches!(a.verdict(s(30), &http()), Some(Closed::Idle)));
        a.head_started = Some(s(1));
        assert!(matches!(a.verdict(s(11), &http()), Some(Closed::Headers)));
        // A request in progress is never idle, however long it waits...
        a.in_flight = 1;
        assert!(a.verdict(s(100), &http()).is_none());
        // ...unless its client stops reading the response.
        a.write_blocked = Some(s(50));
        assert!(matches!(a.verdict(s(80), &http()), Some(Closed::Stalled)));
    }
}
