//! `handoff serve`: the HTTP entry. Webhook triggers from the loaded
//! pipelines (signature checked, each MQL event one execution), health
//! probes, and a read-only view of recent executions. Handlers parse,
//! authenticate and hand over; limits are layers.

mod webhooks;

use crate::capabilities::Clock;
use crate::connectors::Secret;
use crate::pipeline::{ExecutionRecord, Executor, PreparedPipeline};
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
/// Executions kept in memory for `GET /api/executions`.
pub const RECENT_EXECUTIONS: usize = 10_000;

/// What the server needs.
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub pipelines: Vec<PreparedPipeline>,
    pub executor: Executor,
    /// HubSpot app secret: verifies webhook signatures.
    pub hubspot_app_secret: Option<Secret>,
    /// Slack signing secret: verifies interactivity callbacks.
    pub slack_signing_secret: Option<Secret>,
    /// The URL HubSpot calls us at (`https://handoff.acme.com`), for v2/v3
    /// signatures; the request's Host header when unset.
    pub public_url: Option<String>,
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
    hubspot_app_secret: Option<Secret>,
    #[allow(dead_code)]
    slack_signing_secret: Option<Secret>,
    public_url: Option<String>,
    finished: Mutex<VecDeque<Finished>>,
    in_flight: std::sync::atomic::AtomicUsize,
    clock: Arc<dyn Clock>,
}

impl AppState {
    fn record(&self, finished: Finished) {
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
}

impl Server {
    /// Binds and serves.
    ///
    /// # Errors
    ///
    /// When the address cannot be bound.
    pub async fn start(config: ServerConfig) -> Result<Server> {
        let clock = config.executor.capabilities().clock.clone();
        let state = Arc::new(AppState {
            pipelines: config.pipelines.into_iter().map(Arc::new).collect(),
            executor: config.executor,
            hubspot_app_secret: config.hubspot_app_secret,
            slack_signing_secret: config.slack_signing_secret,
            public_url: config.public_url,
            finished: Mutex::new(VecDeque::new()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            clock,
        });
        let listener =
            tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let addr = listener.local_addr()?;
        let app = router(state.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "server stopped");
            }
        });
        Ok(Server { addr, state, task })
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

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/api/executions", get(executions));
    for pipeline in &state.pipelines {
        if let crate::pipeline::Trigger::Webhook { path, .. } = &pipeline.pipeline.trigger {
            app = app.route(path, post(webhooks::receive));
        }
    }
    app.layer(DefaultBodyLimit::max(BODY_LIMIT)).with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let names: Vec<&str> = state.pipelines.iter().map(|p| p.pipeline.name.as_str()).collect();
    Json(json!({"status": "ready", "pipelines": names}))
}

async fn executions(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let list = state.finished.lock().unwrap_or_else(|p| p.into_inner());
    Json(json!(list.iter().collect::<Vec<_>>()))
}
