//! HTTP/1.1 and HTTP/2 connections of the API and admin listeners: the same request-head limits on both protocols,
//! refused with a `metav1.Status`, and timeouts that close slow and idle connections.
//!
//! Limits, checked by [`limits`] before authentication or routing (identical on HTTP/1.1 and HTTP/2):
//!
//! | what | limit | answer |
//! |---|---|---|
//! | request target (path and query) | [`MAX_URI_BYTES`] | 414 |
//! | header fields, `Host` not counted (HTTP/2 carries it as `:authority`) | [`MAX_HEADER_FIELDS`] | 431 |
//! | header section: name + value + 32 bytes per field (HTTP/2's accounting) | [`MAX_HEADER_BYTES`] | 431 |
//! | declared request body (`Content-Length`) | [`MAX_BODY_BYTES`] | 413 |
//!
//! hyper's own limits sit above these ([`TRANSPORT_HEAD_BYTES`], [`TRANSPORT_MAX_HEADERS`]) so that ours answer
//! first. A request head past hyper's HTTP/1 limits (a target over 65 534 bytes, a head over
//! [`TRANSPORT_HEAD_BYTES`]) or one that does not parse is answered by hyper itself with an empty 414/431/400;
//! [`Http1ErrorBodies`] gives those answers a Status body. On HTTP/2 the transport refuses what it cannot hold
//! before any handler sees it: a header list past [`TRANSPORT_HEAD_BYTES`] gets a bodiless 431, a target over
//! 65 534 bytes a stream reset. Those are the only refusals without a Status.
//!
//! Timeouts ([`HttpSettings`]): HTTP/1.1 request heads must arrive within `header_read_timeout`, which also closes a
//! kept-alive connection waiting that long for its next request. Every connection is closed once no request has
//! been in flight for `idle_timeout` (`header_read_timeout` before its first request, which bounds HTTP/2 clients
//! that trickle a header block). HTTP/2 connections are pinged every `keep_alive_interval` and closed when a ping
//! is not answered within `keep_alive_timeout`.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::apiserver::status;

/// Longest request target (path and query) accepted, in bytes. Below the 65 534 bytes the `http` crate can hold
/// at all, so that HTTP/2 requests near that size still get a Status; room for a 50 KB selector.
pub const MAX_URI_BYTES: usize = 60 * 1024;
/// Most header fields accepted in one request, `Host` not counted.
pub const MAX_HEADER_FIELDS: usize = 96;
/// Largest header section accepted: the sum of name + value + 32 bytes over every field.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest request body a request may declare. The API is read-only and never reads bodies.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;
/// hyper's HTTP/1 read buffer and the HTTP/2 `SETTINGS_MAX_HEADER_LIST_SIZE`: room for the largest request head
/// the limits above accept, so that they, not the transport, refuse a request.
pub const TRANSPORT_HEAD_BYTES: usize = 128 * 1024;
/// hyper's HTTP/1 header count limit, above [`MAX_HEADER_FIELDS`].
pub const TRANSPORT_MAX_HEADERS: usize = 512;
/// How long open connections get to finish their requests after shutdown is signalled: well inside Kubernetes'
/// default 30 s grace period.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Connection timeouts of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// HTTP/1.1: how long a request head (or the next one on a kept-alive connection) may take to arrive; any
    /// protocol: how long a new connection may take to deliver its first request.
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// HTTP/2: how often the peer is pinged.
    pub keep_alive_interval: Duration,
    /// HTTP/2: how long a ping may go unanswered before the connection is closed; also how long a connection being
    /// closed for idleness gets to wind down.
    pub keep_alive_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            keep_alive_interval: Duration::from_secs(30),
            keep_alive_timeout: Duration::from_secs(10),
        }
    }
}

/// `router` behind the request limits of this module, each refusal a `metav1.Status`.
pub fn limits(router: Router) -> Router {
    router.layer(middleware::from_fn(enforce_limits))
}

async fn enforce_limits(request: Request, next: Next) -> Response {
    match refusal(&request) {
        Some(response) => response,
        None => next.run(request).await,
    }
}

fn refusal(request: &Request) -> Option<Response> {
    let uri_bytes = request.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        return Some(too_long_uri());
    }
    let headers = request.headers();
    let fields = headers.iter().filter(|(name, _)| *name != header::HOST).count();
    if fields > MAX_HEADER_FIELDS {
        let message = format!("the request has {fields} header fields; at most {MAX_HEADER_FIELDS} are accepted");
        return Some(too_large_headers(&message));
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        let message = format!(
            "the request's header fields take {bytes} bytes (name + value + 32 per field); at most \
             {MAX_HEADER_BYTES} are accepted"
        );
        return Some(too_large_headers(&message));
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        let message = format!("the request body is larger than {MAX_BODY_BYTES} bytes");
        return Some(status::failure(
            StatusCode::PAYLOAD_TOO_LARGE,
            status::reason_for(StatusCode::PAYLOAD_TOO_LARGE),
            &message,
            None,
        ));
    }
    None
}

fn too_long_uri() -> Response {
    let code = StatusCode::URI_TOO_LONG;
    status::failure(code, status::reason_for(code), &uri_message(), None)
}

fn uri_message() -> String {
    format!("the request URI is longer than {MAX_URI_BYTES} bytes")
}

fn too_large_headers(message: &str) -> Response {
    let code = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    status::failure(code, status::reason_for(code), message, None)
}

/// The connection builder both listeners use: the transport limits and timers of this module.
fn builder(settings: &HttpSettings) -> ConnBuilder<TokioExecutor> {
    let mut builder = ConnBuilder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(TRANSPORT_MAX_HEADERS)
        .max_buf_size(TRANSPORT_HEAD_BYTES)
        // One contiguous write per response head, which Http1ErrorBodies relies on.
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(TRANSPORT_HEAD_BYTES as u32)
        .keep_alive_interval(settings.keep_alive_interval)
        .keep_alive_timeout(settings.keep_alive_timeout);
    builder
}

/// Requests in flight on one connection, and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last became idle, and whether it has served a request.
    idle_since: Mutex<(Instant, bool)>,
}

/// Marks a request in flight until dropped.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), true);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new((Instant::now(), false)),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// Completes once no request has been in flight for the allowed time.
    async fn idle(&self, settings: &HttpSettings) {
        loop {
            let (since, served) = *self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            let allowed = if served {
                settings.idle_timeout
            } else {
                settings.header_read_timeout
            };
            if self.in_flight.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(allowed).await;
                continue;
            }
            let deadline = since + allowed;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// Serves `router` on one connection until the peer leaves, the connection idles out, or `shutdown` fires (then it
/// is closed gracefully). Every request carries a clone of `extension`.
pub(crate) async fn serve_connection<I, T>(
    io: I,
    router: Router,
    extension: T,
    settings: &HttpSettings,
    mut shutdown: watch::Receiver<()>,
    remote_addr: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    let activity = Activity::new();
    let tracked = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(extension.clone());
        let busy = tracked.begin();
        let response = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = response.await;
            drop(busy);
            response
        }
    });
    let builder = builder(settings);
    let mut connection = pin!(builder.serve_connection_with_upgrades(TokioIo::new(Http1ErrorBodies::new(io)), service));
    let mut closing: Option<Pin<Box<tokio::time::Sleep>>> = None;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    debug!(%error, %remote_addr, "connection ended with an error");
                }
                return;
            }
            _ = shutdown.changed(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                // The server's drain timeout bounds this.
                closing = Some(Box::pin(tokio::time::sleep(Duration::MAX / 4)));
            }
            () = activity.idle(settings), if closing.is_none() => {
                debug!(%remote_addr, "closing an idle connection");
                connection.as_mut().graceful_shutdown();
                closing = Some(Box::pin(tokio::time::sleep(settings.keep_alive_timeout)));
            }
            () = async { closing.as_mut().expect("guarded").await }, if closing.is_some() => {
                debug!(%remote_addr, "connection did not close in time; dropping it");
                return;
            }
        }
    }
}

/// Accepts connections until `shutdown` completes, handing each to `spawn` with a receiver that fires on shutdown;
/// then waits up to [`DRAIN_TIMEOUT`] for the spawned connections to end.
pub(crate) async fn accept_until<F>(
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    mut spawn: F,
) -> io::Result<()>
where
    F: FnMut(TcpStream, SocketAddr, watch::Receiver<()>),
{
    let (stop, stopping) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    let result = loop {
        let (tcp, remote_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Running out of file descriptors is transient; don't spin on it.
                Err(error) if is_transient(&error) => {
                    warn!(%error, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => break Err(error),
            },
            () = &mut shutdown => break Ok(()),
        };
        spawn(tcp, remote_addr, stopping.clone());
    };
    drop(stopping);
    let _ = stop.send(());
    if tokio::time::timeout(DRAIN_TIMEOUT, stop.closed()).await.is_err() {
        warn!("connections still open after the drain timeout; closing them");
    }
    result
}

fn is_transient(error: &io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || error.raw_os_error() == Some(24)
}

/// Serves `router` over plain HTTP (HTTP/1.1, or HTTP/2 with prior knowledge) with the timeouts of `settings`,
/// until `shutdown` completes; then drains open connections.
pub async fn serve_plain(
    listener: TcpListener,
    router: Router,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    info!(addr = ?listener.local_addr().ok(), "HTTP server listening");
    let settings = Arc::new(settings);
    accept_until(listener, shutdown, |tcp, remote_addr, stopping| {
        let router = router.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            serve_connection(tcp, router, (), &settings, stopping, remote_addr).await;
        });
    })
    .await
}

/// Gives hyper's own HTTP/1 error answers (an empty 400, 414 or 431 for a request head that does not parse or
/// exceeds its limits) a `metav1.Status` body.
///
/// hyper writes such an answer as a bare head (`Content-Length: 0`, no `Content-Type`) and then closes the
/// connection; the router never answers that way. A write that is exactly such a head is replaced by the same
/// status with a Status body and `Connection: close`. Everything else passes through untouched.
pub struct Http1ErrorBodies<I> {
    inner: I,
    /// A replacement being written: bytes, how many are written, and the length of the write it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<I> Http1ErrorBodies<I> {
    /// Wraps a connection's I/O.
    pub fn new(inner: I) -> Self {
        Self { inner, pending: None }
    }
}

/// The replacement for `head` if it is one of hyper's bodiless error answers.
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| head.strip_prefix(b"HTTP/1.0 "))?;
    let code: u16 = std::str::from_utf8(rest.get(..3)?).ok()?.parse().ok()?;
    if !(400..500).contains(&code) || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?;
    let lower = text.to_ascii_lowercase();
    // A bare head only: one header section, no body.
    if lower.matches("\r\n\r\n").count() != 1
        || !lower.contains("\r\ncontent-length: 0\r\n")
        || lower.contains("\r\ncontent-type:")
    {
        return None;
    }
    let code = StatusCode::from_u16(code).ok()?;
    let message = match code {
        StatusCode::URI_TOO_LONG => "the request URI is longer than 65534 bytes".to_owned(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => format!(
            "the request head is larger than {TRANSPORT_HEAD_BYTES} bytes or has more than \
             {TRANSPORT_MAX_HEADERS} header fields"
        ),
        _ => "the request is not valid HTTP/1.1".to_owned(),
    };
    let body = status::body(code, status::reason_for(code), &message, None);
    let mut out = String::with_capacity(text.len() + body.len() + 64);
    for line in text.trim_end_matches("\r\n").split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if name != "content-length" && name != "connection" {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<I: AsyncRead + Unpin> AsyncRead for Http1ErrorBodies<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Http1ErrorBodies<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none() {
            match replacement(buf) {
                Some(bytes) => this.pending = Some((bytes, 0, buf.len())),
                None => return Pin::new(&mut this.inner).poll_write(cx, buf),
            }
        }
        // A write that returned Pending is retried with the same bytes: finish the replacement instead.
        let Some((bytes, written, stands_for)) = this.pending.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match ready!(Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => *written += n,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        let stands_for = *stands_for;
        this.pending = None;
        Poll::Ready(Ok(stands_for))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_error_heads_get_a_status_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(replacement(head).expect("rewritten")).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(
            out.contains("\r\ndate: x\r\n") && out.contains("\r\nconnection: close\r\n"),
            "{out}"
        );
        let (_, body) = out.split_once("\r\n\r\n").unwrap();
        let status: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["code"], 431);
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())), "{out}");
    }

    #[test]
    fn other_writes_pass_through() {
        let json = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert!(replacement(json).is_none());
        let head_only = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(head_only).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"{\"kind\":\"Status\"}").is_none());
    }
}
