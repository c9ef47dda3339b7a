//! `handoff serve`: the HTTP entry and the work loop. Three parts, one file
//! each: intake (`intake.rs`: a webhook is verified, parsed and recorded in
//! the ledger before it is acknowledged), the worker (`worker.rs`: claims,
//! leases, running executions and settling their leads), and the API
//! (`api.rs`: leads, executions, retries, the sweep). This file holds the
//! shared state, the routes and the server's lifecycle.

mod alerts;
mod api;
mod dashboard;
mod intake;
mod listener;
mod openapi;
mod origin;
mod sweep;
mod worker;

pub use api::roster_view;
pub use intake::{hubspot_events, hubspot_identity, mql_events, slack_interaction};
pub use listener::{RETRY_AFTER_SECS, ServerLimits};
pub use openapi::shipped_document as openapi_document;
pub use sweep::FIRST_LOOKBACK_MS;
pub use worker::CLAIM_EVERY;

use crate::capabilities::Clock;
use crate::connectors::Secret;
use crate::connectors::hubspot::HubSpot;
use crate::ledger::{Ledger, WaitPolicy};
use crate::pipeline::{Executor, PreparedPipeline};
use crate::record::ExecutionRecord;
use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Largest webhook body accepted (HubSpot sends at most 100 events).
pub const BODY_LIMIT: usize = 1024 * 1024;
/// Executions kept in memory for `GET /api/executions`, at most.
pub const RECENT_EXECUTIONS: usize = 1_000;
/// Bytes of items and logs those executions may hold in all: the oldest go
/// first beyond it.
pub const RECENT_BYTES: usize = 32 * 1024 * 1024;
/// Largest item kept whole in a recent execution; a larger one is kept as
/// its size, hash and first bytes.
pub const RECENT_ITEM_BYTES: usize = 16 * 1024;
/// Log lines kept per node run in a recent execution.
pub const RECENT_LOG_LINES: usize = 100;
/// Executions whose timings are kept for `GET /api/executions/timings`.
pub const RECENT_TIMINGS: usize = 100_000;

/// What the server needs.
pub struct ServerConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The pipelines it serves.
    pub pipelines: Vec<PreparedPipeline>,
    /// Runs them.
    pub executor: Executor,
    /// The ledger: events are stored here before they are acknowledged.
    pub ledger: Arc<dyn Ledger>,
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
    /// How long settled work's journal is kept before the pruner removes it.
    pub retention: std::time::Duration,
    /// Connections, request read times and executions in flight.
    pub limits: ServerLimits,
}

/// The default `--retention`: 30 days.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);
/// How often the pruner runs.
pub const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);
/// Rows the pruner removes per statement, so a pass never holds the
/// writer long.
const PRUNE_BATCH: usize = 2000;

/// One pass of the pruner: batches until one removes less than a batch.
pub async fn prune(state: &AppState, retention: std::time::Duration) -> crate::ledger::Pruned {
    let keep_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let before = state.executor.capabilities().clock.now_ms().saturating_sub(keep_ms);
    let mut all = crate::ledger::Pruned::default();
    loop {
        match state.ledger.prune(before, PRUNE_BATCH).await {
            Ok(pruned) => {
                all += pruned;
                if !pruned.filled(PRUNE_BATCH as u64) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning the ledger failed; the next pass tries again");
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    if all.total() > 0 {
        tracing::info!(
            effects = all.effects,
            timers = all.timers,
            payloads = all.payloads,
            reads = all.reads,
            state = all.state,
            "pruned settled work and expired plugin state"
        );
    }
    all
}

/// One finished execution, as `GET /api/executions` lists it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Finished {
    /// The event that started it.
    pub event_id: String,
    /// Microseconds from the event's receipt to the end of the execution.
    pub total_us: u64,
    /// Microseconds from the event's receipt to the end of the node run
    /// that handed the lead to a person (its first settled step), when one
    /// did.
    pub notified_us: Option<u64>,
    /// The execution.
    pub record: ExecutionRecord,
}

/// Shared state of the server.
pub struct AppState {
    pipelines: Vec<Arc<PreparedPipeline>>,
    /// Shadow pipelines: never routed, claimed or armed; run only beside
    /// their live pipeline, on dry-run capabilities.
    shadows: Vec<Arc<PreparedPipeline>>,
    executor: Executor,
    ledger: Arc<dyn Ledger>,
    hubspot_app_secret: Option<Secret>,
    slack_signing_secret: Option<Secret>,
    public_url: Option<String>,
    ops_channel: Option<String>,
    sweep: Option<HubSpot>,
    api_token: Option<Secret>,
    finished: Mutex<Recent>,
    timings: Mutex<VecDeque<api::Timing>>,
    worker: worker::Worker,
    clock: Arc<dyn Clock>,
    waiting: WaitPolicy,
    /// Connections, read times and executions in flight.
    limits: ServerLimits,
    /// Woken when a lead fails for good: the alerter tells ops.
    alerts: tokio::sync::Notify,
    /// What each client address may still ask of `/api`.
    per_client: listener::PerClient,
}

/// The recent executions kept in memory, bounded in count and in bytes.
#[derive(Default)]
struct Recent {
    list: VecDeque<(usize, Finished)>,
    bytes: usize,
    /// Sequence number of the next one (what `/api/executions` pages by).
    next: u64,
}

impl Recent {
    fn push(&mut self, finished: Finished) {
        let finished = compact(finished);
        let size = record_bytes(&finished.record);
        self.list.push_back((size, finished));
        self.bytes += size;
        self.next += 1;
        while self.list.len() > RECENT_EXECUTIONS || (self.bytes > RECENT_BYTES && self.list.len() > 1) {
            if let Some((size, _)) = self.list.pop_front() {
                self.bytes -= size;
            }
        }
    }
}

/// A finished execution as kept in memory: large items stand in for by
/// their size and hash, logs cut to [`RECENT_LOG_LINES`] a run, and what
/// providers answered left out (JSON trees the byte count did not see; the
/// execution's trace in the ledger keeps them for `simulate` and `replay`).
fn compact(mut finished: Finished) -> Finished {
    for run in &mut finished.record.runs {
        run.reads = Vec::new();
        run.input = run.input.bounded(RECENT_ITEM_BYTES);
        for out in &mut run.outputs {
            out.item = out.item.bounded(RECENT_ITEM_BYTES);
        }
        if run.logs.len() > RECENT_LOG_LINES {
            let dropped = run.logs.len() - RECENT_LOG_LINES;
            run.logs.truncate(RECENT_LOG_LINES);
            run.logs.push(crate::record::LogLine {
                stream: crate::record::LogStream::Warn,
                message: format!("({dropped} more lines in this run, not kept)"),
            });
        }
    }
    for end in &mut finished.record.ends {
        if let crate::record::BranchEnd::Unconnected { item, .. } = end {
            *item = item.bounded(RECENT_ITEM_BYTES);
        }
    }
    finished
}

/// About how many bytes a kept record holds.
fn record_bytes(record: &ExecutionRecord) -> usize {
    let runs: usize = record
        .runs
        .iter()
        .map(|r| {
            r.input.len()
                + r.outputs.iter().map(|o| o.item.len()).sum::<usize>()
                + r.logs.iter().map(|l| l.message.len()).sum::<usize>()
                + 256
        })
        .sum();
    let ends: usize = record
        .ends
        .iter()
        .map(|e| match e {
            crate::record::BranchEnd::Unconnected { item, .. } => item.len(),
            crate::record::BranchEnd::Failed { error, .. } => error.message.len(),
            crate::record::BranchEnd::Incomplete { missing, .. } => missing.len() * 16,
        })
        .sum();
    runs + ends + 512
}

impl AppState {
    fn record(&self, finished: Finished) {
        {
            let mut timings = self.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if timings.len() >= RECENT_TIMINGS {
                timings.pop_front();
            }
            timings.push_back(api::Timing {
                event_id: finished.event_id.clone(),
                failed: finished.record.error.is_some(),
                total_us: finished.total_us,
                notified_us: finished.notified_us,
                nodes: finished.record.runs.iter().map(|r| (r.node.clone(), r.duration_us)).collect(),
            });
        }
        self.finished.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(finished);
    }

    /// The served pipeline called `name`.
    fn pipeline(&self, name: &str) -> Option<Arc<PreparedPipeline>> {
        self.pipelines.iter().find(|p| p.pipeline.name == name).cloned()
    }

    /// The shadow pipelines that run beside `live`.
    fn shadows_of(&self, live: &str) -> Vec<Arc<PreparedPipeline>> {
        self.shadows.iter().filter(|s| s.pipeline.shadows.as_deref() == Some(live)).cloned().collect()
    }

    /// The names of the pipelines this instance serves.
    fn pipeline_names(&self) -> Vec<String> {
        self.pipelines.iter().map(|p| p.pipeline.name.clone()).collect()
    }
}

/// A running server.
pub struct Server {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its shared state.
    pub state: Arc<AppState>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
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
        let (shadows, pipelines): (Vec<_>, Vec<_>) =
            config.pipelines.into_iter().partition(|p| p.pipeline.mode == crate::pipeline::model::Mode::Shadow);
        let state = Arc::new(AppState {
            pipelines: pipelines.into_iter().map(Arc::new).collect(),
            shadows: shadows.into_iter().map(|p| Arc::new(p.tried_once())).collect(),
            executor: config.executor,
            ledger: config.ledger,
            hubspot_app_secret: config.hubspot_app_secret,
            slack_signing_secret: config.slack_signing_secret,
            public_url: config.public_url,
            ops_channel: config.ops_channel,
            sweep: config.sweep.as_ref().map(|(h, _)| h.clone()),
            api_token: config.api_token.clone(),
            finished: Mutex::new(Recent::default()),
            timings: Mutex::new(VecDeque::new()),
            worker: worker::Worker::new(config.limits.max_running),
            clock,
            waiting: config.waiting,
            limits: config.limits,
            alerts: tokio::sync::Notify::new(),
            per_client: listener::PerClient::default(),
        });
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(listener::serve(listener, app, config.limits, stopped));
        worker::run(&state).await?;
        tokio::spawn(alerts::run(state.clone()));
        {
            let state = state.clone();
            let retention = config.retention;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(PRUNE_EVERY).await;
                    prune(&state, retention).await;
                }
            });
        }
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
        Ok(Server { addr, state, task, stop })
    }

    /// Stops accepting requests (requests being answered finish). Running
    /// executions go on; events not yet finished stay in the ledger and run
    /// at the next start.
    pub fn stop_accepting(&mut self) {
        self.state.worker.stop_claiming();
        self.stop.send_replace(true);
    }

    /// Waits until every ledger write handed over so far is committed (at
    /// shutdown, after `settle`).
    ///
    /// # Errors
    ///
    /// When the ledger cannot commit.
    pub async fn flush(&self) -> Result<()> {
        self.state.ledger.flush().await
    }

    /// Executions finished so far (most recent last).
    pub fn finished(&self) -> Vec<Finished> {
        let recent = self.state.finished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        recent.list.iter().map(|(_, f)| f.clone()).collect()
    }

    /// Executions still running.
    pub fn in_flight(&self) -> usize {
        self.state.worker.in_flight()
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

impl Drop for Server {
    fn drop(&mut self) {
        // A dropped server claims and fires nothing more; what runs ends.
        self.state.worker.stop_claiming();
        self.task.abort();
    }
}

/// Routes the server answers itself, which no webhook trigger may take: a
/// path ending in `/` stands for everything under it. Kept beside [`router`]:
/// a route added there belongs here too.
const OWN_ROUTES: &[(&str, &str)] = &[
    ("/", "the dashboard"),
    ("/leads/", "the dashboard's lead pages"),
    ("/healthz", "the health check"),
    ("/readyz", "the readiness check"),
    ("/metrics", "the Prometheus metrics"),
    ("/api", "the API"),
    ("/api/", "the API"),
];

/// What the server itself answers at `path`, if anything: a webhook there
/// would collide with it.
pub fn owned_route(path: &str) -> Option<&'static str> {
    OWN_ROUTES.iter().find_map(|(route, what)| {
        let owned = if route.len() > 1 && route.ends_with('/') { path.starts_with(route) } else { path == *route };
        owned.then_some(*what)
    })
}

fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { Json(Health { status: "ok".into() }) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(prometheus))
        .merge(api::routes(state.clone()))
        .merge(dashboard::routes(state.clone()));
    for pipeline in &state.pipelines {
        if let crate::pipeline::Trigger::Webhook { path, .. } = &pipeline.pipeline.trigger {
            app = app.route(path, post(intake::receive));
        }
    }
    app.layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
}

/// `GET /metrics`: Prometheus exposition (OpenMetrics text).
async fn prometheus(State(state): State<Arc<AppState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let by_state: Vec<(String, u64)> = match state.ledger.lead_states().await {
        Ok(states) => states.into_iter().map(|(s, n)| (s.as_str().to_string(), n)).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count leads by state for /metrics");
            Vec::new()
        }
    };
    match crate::telemetry::TELEMETRY.encode(&by_state) {
        Ok(text) => {
            ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
                .into_response()
        }
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /healthz`: the process answers.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// `GET /readyz`: what this server serves and whether any plugin is paused.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Ready {
    /// `ready`.
    pub status: String,
    /// The pipelines served.
    pub pipelines: Vec<String>,
    /// Plugins their circuit breaker paused (their leads wait).
    pub paused_plugins: Vec<PausedPlugin>,
    /// Executions this server runs now.
    pub executions_in_flight: usize,
}

/// A plugin paused by its circuit breaker.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct PausedPlugin {
    /// The plugin.
    pub plugin: String,
    /// Why.
    pub reason: String,
    /// When it runs again, from now.
    pub resumes_in_ms: u64,
}

async fn ready(State(state): State<Arc<AppState>>) -> Json<Ready> {
    let paused = state
        .executor
        .runtime()
        .paused_plugins()
        .into_iter()
        .map(|(plugin, left, reason)| PausedPlugin {
            plugin,
            reason,
            resumes_in_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
        })
        .collect();
    Json(Ready {
        status: "ready".into(),
        pipelines: state.pipelines.iter().map(|p| p.pipeline.name.clone()).collect(),
        paused_plugins: paused,
        executions_in_flight: state.worker.in_flight(),
    })
}
