//! `handoff serve`: the HTTP entry. Webhook triggers from the loaded
//! pipelines (signature checked, each MQL event one execution), health
//! probes, and a read-only view of recent executions. Handlers parse,
//! authenticate and hand over; limits are layers.

mod sweep;
mod webhooks;

pub use sweep::FIRST_LOOKBACK_MS;

use crate::capabilities::Clock;
use crate::connectors::Secret;
use crate::connectors::hubspot::HubSpot;
use crate::pipeline::{ExecutionRecord, Executor, PreparedPipeline};
use crate::store::{LeadState, Store, WaitPolicy};
use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest webhook body accepted (HubSpot sends at most 100 events).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Executions kept in memory, in full, for `GET /api/executions`.
pub const RECENT_EXECUTIONS: usize = 1_000;
/// Executions whose timings are kept for `GET /api/executions/timings`.
pub const RECENT_TIMINGS: usize = 100_000;

/// What the server needs.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub pipelines: Vec<PreparedPipeline>,
    pub executor: Executor,
    /// The ledger: events are stored here before they are acknowledged.
    pub store: Arc<dyn Store>,
    /// HubSpot app secret: verifies webhook signatures.
    pub hubspot_app_secret: Option<Secret>,
    /// Slack signing secret: verifies interactivity callbacks.
    pub slack_signing_secret: Option<Secret>,
    /// The URL HubSpot calls us at (`https://handoff.acme.com`), for v2/v3
    /// signatures; the request's Host header when unset.
    pub public_url: Option<String>,
    /// Slack channel told when a lead fails after its retries.
    pub ops_channel: Option<String>,
    /// HubSpot client for the reconciliation sweep, and how often it runs.
    pub sweep: Option<(HubSpot, std::time::Duration)>,
    /// Bearer token `/api/*` requires; without one, `/api` is for a
    /// loopback listener only.
    pub api_token: Option<Secret>,
    /// How leads wait while a provider is down.
    pub waiting: WaitPolicy,
}

/// How often the server looks for due work: events to resume after a
/// crash, waiting events whose time has come, events whose owner's lease
/// expired.
pub const CLAIM_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A running execution.
struct Run {
    /// (source, event id).
    event: (String, String),
    stop: Option<tokio::task::AbortHandle>,
}

/// One finished execution, as `GET /api/executions` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    /// The HubSpot event that started it.
    pub event_id: String,
    /// Microseconds from webhook receipt to the end of the execution.
    pub total_us: u64,
    /// Microseconds from webhook receipt to the end of the `notify` run,
    /// when one ran.
    pub notified_us: Option<u64>,
    pub record: ExecutionRecord,
}

/// Shared state of the server.
pub struct AppState {
    pipelines: Vec<Arc<PreparedPipeline>>,
    executor: Executor,
    store: Arc<dyn Store>,
    hubspot_app_secret: Option<Secret>,
    #[allow(dead_code)]
    slack_signing_secret: Option<Secret>,
    public_url: Option<String>,
    ops_channel: Option<String>,
    sweep: Option<HubSpot>,
    api_token: Option<Secret>,
    finished: Mutex<VecDeque<Finished>>,
    timings: Mutex<VecDeque<serde_json::Value>>,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Execution ids running now, with their events (source, event id) and
    /// a handle to stop them: an execution never runs twice at once, these
    /// are the claims whose leases are renewed, and a run whose claim was
    /// lost is stopped.
    running: Mutex<std::collections::HashMap<String, Run>>,
    clock: Arc<dyn Clock>,
    waiting: WaitPolicy,
    /// Set when the server stops accepting: no new work is claimed.
    stopping: std::sync::atomic::AtomicBool,
}

impl AppState {
    fn record(&self, finished: Finished) {
        {
            let mut timings = self.timings.lock().unwrap_or_else(|p| p.into_inner());
            if timings.len() >= RECENT_TIMINGS {
                timings.pop_front();
            }
            timings.push_back(json!({
                "event_id": finished.event_id, "failed": finished.record.error.is_some(),
                "total_us": finished.total_us, "notified_us": finished.notified_us,
                "nodes": finished.record.runs.iter().map(|r| json!([r.node, r.duration_us])).collect::<Vec<_>>(),
            }));
        }
        let mut list = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if list.len() >= RECENT_EXECUTIONS {
            list.pop_front();
        }
        list.push_back(finished);
    }
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    /// Binds and serves.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn start(config: ServerConfig) -> Result<Server> {
        anyhow::ensure!(
            config.api_token.is_some() || config.listen.ip().is_loopback(),
            "listening on {} would expose /api (lead data, retries) without a token; set HANDOFF_API_TOKEN",
            config.listen
        );
        let clock = config.executor.capabilities().clock.clone();
        let state = Arc::new(AppState {
            pipelines: config.pipelines.into_iter().map(Arc::new).collect(),
            executor: config.executor,
            store: config.store,
            hubspot_app_secret: config.hubspot_app_secret,
            slack_signing_secret: config.slack_signing_secret,
            public_url: config.public_url,
            ops_channel: config.ops_channel,
            sweep: config.sweep.as_ref().map(|(h, _)| h.clone()),
            api_token: config.api_token.clone(),
            finished: Mutex::new(VecDeque::new()),
            timings: Mutex::new(VecDeque::new()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            running: Mutex::new(std::collections::HashMap::new()),
            clock,
            waiting: config.waiting,
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        // Events stored before a crash or restart but never finished run
        // now; waiting events when their time comes; another instance's
        // events when its lease expires.
        let resumed = claim_and_start(&state).await.context("claiming unfinished events")?;
        if resumed > 0 {
            tracing::info!(count = resumed, "resuming events received before the last stop");
        }
        tokio::spawn(own_work(state.clone()));
        if let Some((hubspot, every)) = config.sweep {
            let state = state.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = sweep::sweep_once(&state, &hubspot).await {
                        tracing::warn!(error = %e, "reconciliation sweep failed; the next one covers the gap");
                    }
                }
            });
        }
        Ok(Server { addr, state, task, stop: Some(stop) })
    }

    /// Stops accepting requests (requests being answered finish). Running
    /// executions go on; events not yet finished stay in the ledger and run
    /// at the next start.
    pub fn stop_accepting(&mut self) {
        self.state.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until every ledger write handed over so far is committed (at
    /// shutdown, after `settle`).
    ///
    /// # Errors
    ///
    /// When the ledger cannot commit.
    pub async fn flush(&self) -> Result<()> {
        self.state.store.flush().await
    }

    /// Executions finished so far (most recent last).
    pub fn finished(&self) -> Vec<Finished> {
        self.state.finished.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Executions still running.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until nothing is in flight (or `timeout` passes).
    pub async fn settle(&self, timeout: std::time::Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.in_flight() > 0 {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }
}

/// Keeps this instance's claims alive and claims the work that is due.
/// Once the server stops accepting it claims nothing new, but renews what
/// still runs until the last execution ends.
async fn own_work(state: Arc<AppState>) {
    use std::sync::atomic::Ordering;
    let renew_every = state.store.instance().lease / 3;
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(CLAIM_EVERY).await;
        let stopping = state.stopping.load(Ordering::SeqCst);
        if stopping && state.in_flight.load(Ordering::SeqCst) == 0 {
            return;
        }
        if renewed.elapsed() >= renew_every {
            let running: Vec<(String, String)> =
                state.running.lock().unwrap_or_else(|p| p.into_inner()).values().map(|r| r.event.clone()).collect();
            match state.store.renew_leases(&running).await {
                Ok(lost) => {
                    renewed = Instant::now();
                    stop_lost(&state, &lost);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot renew leases; other instances may take this one's work over")
                }
            }
        }
        if !stopping && let Err(e) = claim_and_start(&state).await {
            tracing::warn!(error = %e, "cannot claim due work; trying again");
        }
    }
}

/// Stops the runs of events another instance took over (this one stalled
/// past its lease): the new owner runs them, and the journal's intents
/// cover whatever this run was in the middle of.
fn stop_lost(state: &AppState, lost: &[(String, String)]) {
    if lost.is_empty() {
        return;
    }
    let running = state.running.lock().unwrap_or_else(|p| p.into_inner());
    for run in running.values().filter(|r| lost.contains(&r.event)) {
        tracing::warn!(event = %run.event.1, "another instance took this event over; stopping its run here");
        if let Some(stop) = &run.stop {
            stop.abort();
        }
    }
}

/// Claims the work that is due and starts it; returns how many started.
async fn claim_and_start(state: &Arc<AppState>) -> Result<usize> {
    let events = state.store.claim_due(256).await?;
    let count = events.len();
    for event in events {
        match state.pipelines.iter().find(|p| p.pipeline.name == event.pipeline).cloned() {
            Some(pipeline) => webhooks::start(state.clone(), pipeline, event, Instant::now()),
            None => {
                tracing::error!(pipeline = %event.pipeline, event = %event.event_id, "an unfinished event's pipeline is no longer served; marking it failed");
                if let Err(e) = state.store.finish_event(&event.source, &event.event_id, "", true).await {
                    tracing::error!(error = %e, event = %event.event_id, "cannot mark the event failed");
                }
            }
        }
    }
    Ok(count)
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/api/executions", get(executions))
        .route("/api/executions/timings", get(timings))
        .route("/api/leads", get(leads))
        .route("/api/leads/{id}", get(lead))
        .route("/api/leads/{id}/retry", post(retry_lead))
        .route("/api/retry-failed", post(retry_failed))
        .route("/api/sweep", post(sweep_now))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token));
    let mut app = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .merge(api);
    for pipeline in &state.pipelines {
        if let crate::pipeline::Trigger::Webhook { path, .. } = &pipeline.pipeline.trigger {
            app = app.route(path, post(webhooks::receive));
        }
    }
    app.layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
}

/// `/api/*` requires the configured bearer token, compared in constant time.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &state.api_token {
        let given = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let expected = token.expose().as_bytes();
        let ok = given.is_some_and(|g| {
            g.len() == expected.len() && g.bytes().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
        });
        if !ok {
            return (
                axum::http::StatusCode::UNAUTHORIZED,
                Json(json!({"error": "unauthorized", "detail": "send Authorization: Bearer <api token>"})),
            )
                .into_response();
        }
    }
    next.run(request).await
}

async fn ready(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let names: Vec<&str> = state.pipelines.iter().map(|p| p.pipeline.name.as_str()).collect();
    Json(json!({"status": "ready", "pipelines": names}))
}

#[derive(serde::Deserialize)]
struct LeadQuery {
    state: Option<String>,
    limit: Option<usize>,
}

async fn leads(
    State(state): State<Arc<AppState>>,
    axum::extract::Query(query): axum::extract::Query<LeadQuery>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let filter = match query.state.as_deref().map(|s| (s, LeadState::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((text, None)) => {
            return (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({"error": "unknown_state", "detail": format!("'{text}' is not a lead state")})),
            )
                .into_response();
        }
    };
    match state.store.leads(filter, query.limit.unwrap_or(100)).await {
        Ok(list) => Json(json!(list)).into_response(),
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "store_unavailable", "detail": e.to_string()})),
        )
            .into_response(),
    }
}

async fn lead(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.lead(&id).await {
        Ok(Some(lead)) => Json(json!(lead)).into_response(),
        Ok(None) => {
            (axum::http::StatusCode::NOT_FOUND, Json(json!({"error": "not_found", "detail": format!("no lead {id}")})))
                .into_response()
        }
        Err(e) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "store_unavailable", "detail": e.to_string()})),
        )
            .into_response(),
    }
}

/// Runs a lead's failed events again, under their execution ids: effects
/// that succeeded before are replayed, the rest done now.
async fn retry(state: &Arc<AppState>, lead: Option<&str>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let events = match state.store.failed_events(lead).await {
        Ok(events) => events,
        Err(e) => {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "store_unavailable", "detail": e.to_string()})),
            )
                .into_response();
        }
    };
    let mut started = Vec::new();
    for event in events {
        let Some(pipeline) = state.pipelines.iter().find(|p| p.pipeline.name == event.pipeline).cloned() else {
            continue;
        };
        // Only one retry of an event runs, however often retry is asked for.
        match state.store.claim_failed(&event.source, &event.event_id).await {
            Ok(true) => {
                started.push(event.event_id.clone());
                webhooks::start(state.clone(), pipeline, event, Instant::now());
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, event = %event.event_id, "cannot claim a failed event for retry"),
        }
    }
    Json(json!({"retried": started})).into_response()
}

async fn retry_lead(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    retry(&state, Some(&id)).await
}

async fn retry_failed(State(state): State<Arc<AppState>>) -> axum::response::Response {
    retry(&state, None).await
}

async fn sweep_now(State(state): State<Arc<AppState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(hubspot) = state.sweep.clone() else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            Json(json!({"error": "no_sweep", "detail": "HubSpot is not configured"})),
        )
            .into_response();
    };
    match sweep::sweep_once(&state, &hubspot).await {
        Ok(started) => Json(json!({"started": started})).into_response(),
        Err(e) => {
            (axum::http::StatusCode::BAD_GATEWAY, Json(json!({"error": "sweep_failed", "detail": e.to_string()})))
                .into_response()
        }
    }
}

/// Recent executions' timings only (`event_id`, `failed`, `total_us`,
/// `notified_us`, and each node run's `[node, duration_us]`): what a load
/// test reads.
async fn timings(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list = state.timings.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!(list.iter().collect::<Vec<_>>()))
}

async fn executions(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list = state.finished.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!(list.iter().collect::<Vec<_>>()))
}
