//! Connections: how many the server holds at once and how long a client may
//! take to send a request. A client that stops mid-header or mid-body is cut
//! off, and beyond the cap a new connection is told 503 and closed at once,
//! so slow or idle clients cannot use up the file descriptors the ledger and
//! the providers need.

use super::api::refuse;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// What one server accepts of its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Connections held at once (`--max-connections`); one more is
    /// answered 503 and closed.
    pub max_connections: usize,
    /// Executions running or waiting to run at once (`--max-in-flight`):
    /// beyond it a webhook is answered 503 with Retry-After before anything
    /// is stored, and the provider delivers it again later.
    pub max_in_flight: usize,
    /// Executions that run at once (`--max-running`); the others in flight
    /// wait their turn in the order they came, their events stored. Enough
    /// for every lead waiting on slow providers at the rates a team sees,
    /// few enough that a burst (an import, a backlog after an outage) is
    /// worked through lead by lead instead of all at once: each lead's DM
    /// goes out as soon as its own turn is done, and the plugin instances,
    /// items and records held at once stay bounded.
    pub max_running: usize,
    /// Time from a connection's first byte (or its previous response) to
    /// the end of a request's headers.
    pub header_read: Duration,
    /// Time to receive a request's body once its headers are in.
    pub body_read: Duration,
    /// Requests per second one client address may make to `/api` (twice
    /// as many in a burst); beyond it, 429 with Retry-After.
    pub api_per_second: u32,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            max_in_flight: 10_000,
            max_running: 256,
            header_read: Duration::from_secs(10),
            body_read: Duration::from_secs(30),
            api_per_second: 50,
        }
    }
}

/// Seconds a client refused for load is told to wait (`Retry-After`).
pub const RETRY_AFTER_SECS: u64 = 5;

/// Serves `app` on `listener` within `limits` until `stop` turns true;
/// then connections finish the request they are answering and close.
pub async fn serve(listener: TcpListener, app: Router, limits: ServerLimits, mut stop: watch::Receiver<bool>) {
    let app = app.layer(axum::middleware::from_fn_with_state(limits.body_read, read_body_within));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // The answer to a connection beyond the cap, written before anything is
    // read, so it costs no parsing.
    let busy = bytes::Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {RETRY_AFTER_SECS}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, most often: back off, do not spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            crate::telemetry::TELEMETRY.webhook("503");
            let busy = busy.clone();
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&busy)).await;
            });
            continue;
        };
        let service = TowerToHyperService::new(WithPeer { app: app.clone(), peer });
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).header_read_timeout(limits.header_read);
            let connection = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}

/// The router, with each request told which address it came from
/// (`ConnectInfo`), for the per-client limits.
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl<B> tower_service::Service<axum::http::Request<B>> for WithPeer
where
    Router: tower_service::Service<axum::http::Request<B>>,
{
    type Response = <Router as tower_service::Service<axum::http::Request<B>>>::Response;
    type Error = <Router as tower_service::Service<axum::http::Request<B>>>::Error;
    type Future = <Router as tower_service::Service<axum::http::Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        tower_service::Service::<axum::http::Request<B>>::poll_ready(&mut self.app, cx)
    }

    fn call(&mut self, mut request: axum::http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(axum::extract::ConnectInfo(self.peer));
        self.app.call(request)
    }
}

/// Requests each client address may still make, refilled over time: a
/// token bucket per address, forgotten once full again.
#[derive(Debug, Default)]
pub(super) struct PerClient {
    buckets: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (f64, std::time::Instant)>>,
}

impl PerClient {
    /// Takes one request for `client` at `per_second`; `Err` holds the
    /// seconds until it may ask again.
    pub(super) fn take(&self, client: std::net::IpAddr, per_second: u32) -> Result<(), u64> {
        let rate = f64::from(per_second.max(1));
        let burst = rate * 2.0;
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > 10_000 {
            // Full buckets hold nothing worth keeping.
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / rate).ceil() as u64)
        }
    }
}

/// Returns once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Reads the whole body within `limit` (and [`super::BODY_LIMIT`]) before
/// any handler sees the request: 408 when the client is too slow, 413 when
/// it sends too much.
async fn read_body_within(
    axum::extract::State(limit): axum::extract::State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(limit, axum::body::to_bytes(body, super::BODY_LIMIT)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(_)) => refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is over {} bytes, or was cut off", super::BODY_LIMIT),
        ),
        Err(_) => {
            let mut response = refuse(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} s", limit.as_secs_f64()),
            );
            response.headers_mut().insert(axum::http::header::CONNECTION, "close".parse().expect("a header value"));
            response.into_response()
        }
    }
}
