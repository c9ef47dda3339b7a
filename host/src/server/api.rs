//! `/api/*`: leads and their timelines, recent executions, retries of
//! failed leads, and the sweep on demand. Behind the API token rule: a
//! bearer token when one is configured (required beyond loopback).

use super::{AppState, sweep, worker};
use crate::lead::LeadState;
use crate::pipeline::History;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// The `/api` routes.
pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/executions", get(executions))
        .route("/api/executions/timings", get(timings))
        .route("/api/leads", get(leads))
        .route("/api/leads/{id}", get(lead))
        .route("/api/leads/{id}/retry", post(retry_lead))
        .route("/api/retry-failed", post(retry_failed))
        .route("/api/sweep", post(sweep_now))
        .route("/api/roster", get(roster))
        .route("/api/rejections", get(rejections))
        .route("/api/metrics", get(metrics))
        .route("/api/shadow", get(shadow))
        .route("/api/openapi.json", get(openapi))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_token))
        .layer(axum::middleware::from_fn_with_state(state.clone(), per_client_limit))
        .layer(axum::middleware::from_fn_with_state(state, super::origin::same_origin_only))
}

/// Every error the server answers with (4xx and 5xx), as JSON.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiError {
    /// A code a program can match (`unauthorized`, `not_found`,
    /// `rate_limited`, `bad_query`, ...).
    pub error: String,
    /// What went wrong and what to do, in words.
    pub detail: String,
}

/// An error answer: `{"error": code, "detail": ...}`.
pub(super) fn refuse(status: StatusCode, error: &str, detail: impl Into<String>) -> Response {
    (status, Json(ApiError { error: error.to_string(), detail: detail.into() })).into_response()
}

/// A query string, its errors answered as [`ApiError`]s (`bad_query`)
/// instead of axum's plain-text rejections.
pub(super) struct ApiQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(ApiQuery(query)),
            Err(e) => Err(refuse(StatusCode::BAD_REQUEST, "bad_query", e.body_text())),
        }
    }
}

/// The lead one lead route names, with [`ApiError`] rejections.
pub(super) struct LeadId(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for LeadId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Response> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(LeadId(id)),
            Err(e) => Err(refuse(StatusCode::BAD_REQUEST, "bad_path", e.body_text())),
        }
    }
}

/// `GET /api/leads/{id}`: the lead, its timeline and its timers.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LeadDetail {
    /// The lead and its timeline.
    #[serde(flatten)]
    pub lead: crate::lead::LeadRecord,
    /// Timers set about it (its SLA steps, its re-evaluation), by due time.
    pub timers: Vec<crate::ledger::TimerRecord>,
    /// What shadow pipelines would have decided for it, beside what was.
    pub shadow: Vec<crate::ledger::ShadowDecision>,
}

/// What a retry started.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Retried {
    /// The events run again (none when nothing had failed, or a retry of
    /// them already runs).
    pub retried: Vec<String>,
}

/// What the sweep started.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Swept {
    /// Events started for MQLs no webhook had delivered.
    pub started: Vec<String>,
}

/// One page of `GET /api/executions`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecutionsPage {
    /// Newest first.
    pub executions: Vec<ExecutionEntry>,
    /// The `before` of the next (older) page, or null on the last.
    pub next: Option<u64>,
}

/// One execution in a page.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExecutionEntry {
    /// Its place in this server's list (larger is newer).
    pub seq: u64,
    /// The execution.
    pub execution: super::Finished,
}

/// One execution's timings, as `GET /api/executions/timings` lists them.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Timing {
    /// The event that started it.
    pub event_id: String,
    /// Whether it failed.
    pub failed: bool,
    /// Receipt of the event to the end of the execution, µs.
    pub total_us: u64,
    /// Receipt to the hand-off to a person, µs.
    pub notified_us: Option<u64>,
    /// Each node run: `[node, duration_us]`.
    pub nodes: Vec<(String, u64)>,
}

fn ledger_unavailable(e: &anyhow::Error) -> Response {
    refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
}

/// `/api/*` answers each client address at most `api_per_second` (twice
/// that in a burst): a script gone wrong cannot starve the dashboard or
/// the webhooks of the ledger's time.
async fn per_client_limit(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let client = request.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    if let Some(client) = client
        && let Err(wait_s) = state.per_client.take(client, state.limits.api_per_second)
    {
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("over {} requests per second to /api from {client}", state.limits.api_per_second),
        );
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, wait_s.max(1).into());
        return response;
    }
    next.run(request).await
}

/// `/api/*` requires the configured bearer token, compared in constant time.
async fn require_token(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
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
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized", "send Authorization: Bearer <api token>");
        }
    }
    next.run(request).await
}

/// `GET /api/leads?state=&limit=`.
#[derive(serde::Deserialize, JsonSchema)]
pub(super) struct LeadQuery {
    /// Only leads in this state (a well-known one, or one a served
    /// pipeline declares).
    #[schemars(length(min = 1))]
    state: Option<String>,
    /// At most this many (default 100), most recently changed first.
    #[schemars(range(max = 10_000))]
    limit: Option<usize>,
}

/// The state called `name`, if any lead can be in it: a well-known state,
/// one a served pipeline declares, or one a lead in the ledger shows.
async fn known_state(state: &AppState, name: &str) -> anyhow::Result<Option<LeadState>> {
    if let Some(known) = LeadState::well_known(name) {
        return Ok(Some(known));
    }
    if let Some(declared) = state.pipelines.iter().flat_map(|p| p.lead_states()).find(|s| s.as_str() == name) {
        return Ok(Some(declared));
    }
    Ok(state.ledger.lead_states().await?.into_iter().map(|(s, _)| s).find(|s| s.as_str() == name))
}

async fn leads(State(state): State<Arc<AppState>>, ApiQuery(query): ApiQuery<LeadQuery>) -> Response {
    let filter = match query.state.as_deref() {
        None => None,
        Some(name) => match known_state(&state, name).await {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                return refuse(StatusCode::BAD_REQUEST, "unknown_state", format!("'{name}' is not a lead state"));
            }
            Err(e) => return ledger_unavailable(&e),
        },
    };
    let limit = query.limit.unwrap_or(100);
    if limit > 10_000 {
        return refuse(StatusCode::BAD_REQUEST, "bad_query", "limit is at most 10000");
    }
    match state.ledger.leads(filter.as_ref(), limit).await {
        Ok(list) => Json(list).into_response(),
        Err(e) => ledger_unavailable(&e),
    }
}

/// `GET /api/shadow?pipeline=&lead=&limit=`.
#[derive(Debug, serde::Deserialize, JsonSchema)]
pub(super) struct ShadowQuery {
    /// Only this shadow pipeline's decisions.
    #[schemars(length(min = 1))]
    pipeline: Option<String>,
    /// Only decisions about this lead (its HubSpot contact id).
    #[schemars(length(min = 1))]
    lead: Option<String>,
    /// At most this many (default 1000), newest first.
    #[schemars(range(min = 1, max = 10_000))]
    limit: Option<usize>,
}

/// Shadow pipelines' decisions beside the live ones, with how often each
/// disagrees.
async fn shadow(State(state): State<Arc<AppState>>, ApiQuery(query): ApiQuery<ShadowQuery>) -> Response {
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return refuse(StatusCode::BAD_REQUEST, "bad_query", "limit is from 1 to 10000");
    }
    if query.pipeline.as_deref() == Some("") || query.lead.as_deref() == Some("") {
        return refuse(StatusCode::BAD_REQUEST, "bad_query", "pipeline and lead, when given, are not empty");
    }
    match crate::reports::shadow_report(&*state.ledger, query.pipeline.as_deref(), query.lead.as_deref(), limit).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => ledger_unavailable(&e),
    }
}

/// `?from=&to=` of a report: dates, timestamps or milliseconds.
#[derive(Debug, serde::Deserialize, JsonSchema)]
pub(super) struct PeriodQuery {
    /// From (inclusive): `2026-11-01`, an RFC 3339 time, or milliseconds.
    #[schemars(length(min = 1))]
    from: Option<String>,
    /// To (exclusive), in the same forms.
    #[schemars(length(min = 1))]
    to: Option<String>,
}

/// `?from=&to=&by=` of the health metrics.
#[derive(Debug, serde::Deserialize, JsonSchema)]
pub(super) struct MetricsQuery {
    /// From (inclusive): `2026-11-01`, an RFC 3339 time, or milliseconds.
    #[schemars(length(min = 1))]
    from: Option<String>,
    /// To (exclusive), in the same forms.
    #[schemars(length(min = 1))]
    to: Option<String>,
    /// Group by `team`, `rep`, `source` or `campaign`.
    #[schemars(with = "Option<crate::reports::GroupBy>")]
    by: Option<String>,
}

/// Handoff health for a period (default: the last 7 days): the five
/// metrics overall and by team, rep, source or campaign, each with its
/// leads.
async fn metrics(State(state): State<Arc<AppState>>, ApiQuery(query): ApiQuery<MetricsQuery>) -> Response {
    let now = state.clock.now_ms();
    let parse = |value: Option<&str>, default: i64| value.map_or(Ok(default), crate::reports::parse_time);
    let (from, to) = match (parse(query.from.as_deref(), now - 7 * 86_400_000), parse(query.to.as_deref(), now + 1)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return refuse(StatusCode::BAD_REQUEST, "bad_period", e),
    };
    let by = match query.by.as_deref().map(str::parse::<crate::reports::GroupBy>).transpose() {
        Ok(by) => by,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "bad_grouping", e),
    };
    match crate::reports::metrics(&*state.ledger, from, to, now, by, crate::reports::MetricRules::default()).await {
        Ok(metrics) => Json(metrics).into_response(),
        Err(e) => ledger_unavailable(&e),
    }
}

/// Rejections in a period (default: the last 30 days) by reason, source,
/// campaign and rep, and what became of each lead.
async fn rejections(State(state): State<Arc<AppState>>, ApiQuery(query): ApiQuery<PeriodQuery>) -> Response {
    let now = state.clock.now_ms();
    let parse = |value: Option<&str>, default: i64| value.map_or(Ok(default), crate::reports::parse_time);
    let (from, to) = match (parse(query.from.as_deref(), now - 30 * 86_400_000), parse(query.to.as_deref(), now + 1)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return refuse(StatusCode::BAD_REQUEST, "bad_period", e),
    };
    match crate::reports::rejections(&*state.ledger, from, to).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => ledger_unavailable(&e),
    }
}

async fn lead(State(state): State<Arc<AppState>>, LeadId(id): LeadId) -> Response {
    match state.ledger.lead(&id).await {
        Ok(Some(lead)) => {
            let timers = match state.ledger.lead_timers(&id).await {
                Ok(timers) => timers,
                Err(e) => return ledger_unavailable(&e),
            };
            let shadow = match state.ledger.shadow_decisions(Some(&id), None, 100).await {
                Ok(shadow) => shadow,
                Err(e) => return ledger_unavailable(&e),
            };
            Json(LeadDetail { lead, timers, shadow }).into_response()
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "not_found", format!("no lead {id}")),
        Err(e) => ledger_unavailable(&e),
    }
}

/// Runs a lead's failed events again, under their execution ids: effects
/// that succeeded before are replayed, the rest done now.
async fn retry(state: &Arc<AppState>, lead: Option<&str>) -> Response {
    let events = match state.ledger.failed_events(lead).await {
        Ok(events) => events,
        Err(e) => return ledger_unavailable(&e),
    };
    let mut started = Vec::new();
    for event in events {
        let Some(pipeline) = state.pipeline(&event.pipeline) else {
            continue;
        };
        // Only one retry of an event runs, however often retry is asked for.
        match state.ledger.claim_failed(&event.source, &event.event_id).await {
            Ok(true) => {
                started.push(event.event_id.clone());
                let history = History::Resumed { since_ms: event.received_at };
                worker::start(state.clone(), pipeline, event, history, Instant::now());
            }
            Ok(false) => {}
            Err(e) => tracing::error!(error = %e, event = %event.event_id, "cannot claim a failed event for retry"),
        }
    }
    Json(Retried { retried: started }).into_response()
}

async fn retry_lead(State(state): State<Arc<AppState>>, LeadId(id): LeadId) -> Response {
    retry(&state, Some(&id)).await
}

async fn retry_failed(State(state): State<Arc<AppState>>) -> Response {
    retry(&state, None).await
}

async fn sweep_now(State(state): State<Arc<AppState>>) -> Response {
    let Some(hubspot) = state.sweep.clone() else {
        return refuse(StatusCode::NOT_FOUND, "no_sweep", "HubSpot is not configured");
    };
    match sweep::sweep_once(&state, &hubspot).await {
        Ok(started) => Json(Swept { started }).into_response(),
        Err(e) => refuse(StatusCode::BAD_GATEWAY, "sweep_failed", e.to_string()),
    }
}

/// Recent executions' timings only (`event_id`, `failed`, `total_us`,
/// `notified_us`, and each node run's `[node, duration_us]`): what a load
/// test reads.
async fn timings(State(state): State<Arc<AppState>>) -> Json<Vec<Timing>> {
    let list = state.timings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Json(list.iter().cloned().collect())
}

/// `GET /api/openapi.json`: this server's routes, as an OpenAPI 3.1
/// document (its webhook paths those of the pipelines it serves).
async fn openapi(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    Json(super::openapi::document(&super::openapi::webhooks_of(&state.pipelines)))
}

/// Most bytes one page of `/api/executions` holds.
const EXECUTIONS_PAGE_BYTES: usize = 4 * 1024 * 1024;

/// `GET /api/executions?before=&limit=`.
#[derive(serde::Deserialize, JsonSchema)]
pub(super) struct ExecutionsQuery {
    /// Executions older than this `seq` (the `next` of the page before).
    before: Option<u64>,
    /// At most this many (default 100, at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    limit: Option<usize>,
}

/// Recent executions, newest first, a page at a time: at most `limit`
/// (default 100) and [`EXECUTIONS_PAGE_BYTES`] of JSON; `next` is the
/// `before` of the page after, or null.
async fn executions(State(state): State<Arc<AppState>>, ApiQuery(query): ApiQuery<ExecutionsQuery>) -> Response {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return refuse(StatusCode::BAD_REQUEST, "bad_query", "limit is from 1 to 1000");
    }
    let mut page = String::from("[");
    let mut count = 0;
    let mut next = None;
    {
        let recent = state.finished.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let oldest = recent.next.saturating_sub(recent.list.len() as u64);
        for (index, (_, finished)) in recent.list.iter().enumerate().rev() {
            let seq = oldest + index as u64;
            if query.before.is_some_and(|before| seq >= before) {
                continue;
            }
            let text = serde_json::to_string(&json!({"seq": seq, "execution": finished})).unwrap_or_default();
            if count == limit || (count > 0 && page.len() + text.len() > EXECUTIONS_PAGE_BYTES) {
                next = Some(seq + 1);
                break;
            }
            if count > 0 {
                page.push(',');
            }
            page.push_str(&text);
            count += 1;
        }
    }
    page.push(']');
    let next = next.map_or_else(|| "null".to_string(), |n| n.to_string());
    ([(axum::http::header::CONTENT_TYPE, "application/json")], format!(r#"{{"executions":{page},"next":{next}}}"#))
        .into_response()
}

/// The roster as routing sees it now: each team's reps, whether each can
/// take a lead this minute and why not (paused reps among them).
async fn roster(State(state): State<Arc<AppState>>) -> Response {
    let Some(roster) = state.executor.capabilities().roster.clone() else {
        return refuse(StatusCode::NOT_FOUND, "no_roster", "no roster is configured");
    };
    match roster_view(&*roster, &*state.ledger, state.clock.now_ms()).await {
        Ok(view) => Json(view).into_response(),
        Err(e) => ledger_unavailable(&e),
    }
}

/// The roster as routing sees it at one moment.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RosterView {
    /// When (host clock, ms).
    pub at: i64,
    /// Each team and its reps.
    pub teams: Vec<TeamView>,
    /// Reps the SLA ladder paused.
    pub paused: Vec<crate::ledger::PausedRep>,
}

/// One team in a [`RosterView`].
#[derive(Debug, Serialize, JsonSchema)]
pub struct TeamView {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its manager's CRM user id.
    pub manager_id: Option<String>,
    /// Its reps, in round-robin order.
    pub reps: Vec<RepView>,
}

/// One rep in a [`TeamView`], and whether they can take a lead now.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RepView {
    /// CRM user id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Working hours in their time zone.
    pub working_hours: String,
    /// Round-robin weight.
    pub weight: u32,
    /// Most new leads a day (0: no limit).
    pub daily_capacity: u32,
    /// Active in the CRM and the roster.
    pub active: bool,
    /// Can take a lead now.
    pub available: bool,
    /// Why not, when not.
    pub why_not: Option<String>,
    /// Paused by the SLA ladder, since when and why.
    pub paused: Option<crate::ledger::PausedRep>,
}

/// The roster view `/api/roster` and `handoff roster` show.
///
/// # Errors
///
/// When the roster or the ledger cannot be read.
pub async fn roster_view(
    roster: &dyn crate::capabilities::Roster,
    ledger: &dyn crate::ledger::Ledger,
    now: i64,
) -> anyhow::Result<RosterView> {
    let fail = |e: crate::capabilities::CapabilityError| anyhow::anyhow!("the roster: {e:?}");
    let paused = ledger.paused_reps().await?;
    let mut teams = Vec::new();
    for team in roster.teams().await.map_err(fail)? {
        let mut reps = Vec::new();
        for id in &team.members {
            let Some(rep) = roster.get_rep(id).await.map_err(fail)? else { continue };
            let availability = roster.availability_at(id, now).await.map_err(fail)?;
            reps.push(RepView {
                paused: paused.iter().find(|p| &p.rep_id == id).cloned(),
                id: rep.id,
                name: rep.name,
                email: rep.email,
                time_zone: rep.time_zone,
                working_hours: rep.working_hours,
                weight: rep.weight,
                daily_capacity: rep.daily_capacity,
                active: rep.active,
                available: availability.available,
                why_not: availability.reason,
            });
        }
        teams.push(TeamView { id: team.id, name: team.name, manager_id: team.manager_id, reps });
    }
    Ok(RosterView { at: now, teams, paused })
}
