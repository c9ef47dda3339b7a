//! `/_sandbox`: fault injection, request log, inspection of what the
//! emulators hold, and acting as a rep would (logging an activity,
//! changing a lead).

use super::EmulatorState;
use super::faults::Fault;
use super::salesforce;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub fn routes() -> Router<Arc<EmulatorState>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({"ok": true})) }))
        .route("/reset", post(reset))
        .route("/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/limits", get(limits).patch(set_limits))
        .route("/requests", get(requests).delete(clear_requests))
        .route("/stats", get(stats))
        .route("/slack/messages", get(slack_messages))
        .route("/hubspot/contacts/{id}", get(hubspot_contact))
        .route("/hubspot/lists", get(hubspot_lists))
        .route("/salesforce/activities", post(log_activity))
        .route("/salesforce/expire-tokens", post(expire_tokens))
        .route("/salesforce/{object}", get(salesforce_records))
        .route("/salesforce/{object}/{id}", patch(salesforce_update))
        .route("/emails", get(emails))
}

async fn reset(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    state.reset();
    Json(json!({"ok": true}))
}

/// The emulated rate limits; `PATCH` changes the ones named (a load test
/// lifts them, a test of backoff tightens them).
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    hubspot_per_ten_seconds: Option<u32>,
    hubspot_search_per_second: Option<u32>,
    salesforce_api_limit: Option<u64>,
    slack_channel_burst: Option<u32>,
}

async fn limits(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    let s = state.settings();
    Json(json!(Limits {
        hubspot_per_ten_seconds: Some(s.hubspot_per_ten_seconds),
        hubspot_search_per_second: Some(s.hubspot_search_per_second),
        salesforce_api_limit: Some(s.salesforce_api_limit),
        slack_channel_burst: Some(s.slack_channel_burst),
    }))
}

async fn set_limits(State(state): State<Arc<EmulatorState>>, Json(patch): Json<Limits>) -> Json<Value> {
    {
        let mut s = state.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.hubspot_per_ten_seconds = patch.hubspot_per_ten_seconds.unwrap_or(s.hubspot_per_ten_seconds);
        s.hubspot_search_per_second = patch.hubspot_search_per_second.unwrap_or(s.hubspot_search_per_second);
        s.salesforce_api_limit = patch.salesforce_api_limit.unwrap_or(s.salesforce_api_limit);
        s.slack_channel_burst = patch.slack_channel_burst.unwrap_or(s.slack_channel_burst);
    }
    limits(State(state)).await
}

async fn list_faults(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    Json(json!(state.world().faults.list()))
}

async fn add_fault(State(state): State<Arc<EmulatorState>>, Json(fault): Json<Fault>) -> Response {
    if !["hubspot", "salesforce", "slack", "anthropic", "smtp", "*"].contains(&fault.provider.as_str()) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": format!("unknown provider '{}'", fault.provider)})))
            .into_response();
    }
    let id = state.world().faults.add(fault);
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn clear_faults(State(state): State<Arc<EmulatorState>>) -> StatusCode {
    state.world().faults.clear();
    StatusCode::NO_CONTENT
}

async fn requests(State(state): State<Arc<EmulatorState>>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let world = state.world();
    let list: Vec<_> = world.requests.iter().filter(|r| q.get("provider").is_none_or(|p| p == r.provider)).collect();
    Json(json!(list))
}

async fn clear_requests(State(state): State<Arc<EmulatorState>>) -> StatusCode {
    state.world().requests.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    let world = state.world();
    let counts: Map<String, Value> =
        world.salesforce.objects.iter().map(|(k, v)| (k.clone(), json!(v.len()))).collect();
    Json(json!({
        "salesforce_api_usage": world.salesforce.api_usage,
        "salesforce_records": counts,
        "hubspot_contacts": world.hubspot.contacts.len(),
        "slack_messages": world.slack.messages.len(),
        "emails": world.emails.len(),
        "anthropic_calls": world.anthropic_calls,
    }))
}

async fn slack_messages(
    State(state): State<Arc<EmulatorState>>,
    Query(q): Query<HashMap<String, String>>,
) -> Json<Value> {
    let world = state.world();
    let list: Vec<_> = world
        .slack
        .messages
        .iter()
        .filter(|m| q.get("channel").is_none_or(|c| c == &m.channel))
        .filter(|m| {
            q.get("recipient").is_none_or(|r| m.recipient.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(r)))
        })
        .collect();
    Json(json!(list))
}

async fn hubspot_contact(State(state): State<Arc<EmulatorState>>, Path(id): Path<String>) -> Response {
    let world = state.world();
    let Some(contact) = world.hubspot.find(&id, id.contains('@')) else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "no such contact"}))).into_response();
    };
    let lists: Vec<&String> =
        world.hubspot.lists.iter().filter(|(_, (_, m))| m.contains(&contact.id)).map(|(id, _)| id).collect();
    Json(json!({"id": contact.id, "properties": contact.properties, "lists": lists})).into_response()
}

async fn hubspot_lists(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    let world = state.world();
    let lists: Map<String, Value> = world
        .hubspot
        .lists
        .iter()
        .map(|(id, (name, members))| (id.clone(), json!({"name": name, "members": members})))
        .collect();
    Json(Value::Object(lists))
}

/// An activity a rep logs on a lead or contact.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityRequest {
    who_id: String,
    /// `task` (a call, an email) or `event` (a meeting).
    kind: String,
    subject: String,
    owner_id: Option<String>,
    status: Option<String>,
}

async fn log_activity(State(state): State<Arc<EmulatorState>>, Json(request): Json<ActivityRequest>) -> Response {
    let now = state.clock.now_ms();
    let object = if request.kind.eq_ignore_ascii_case("event") { "Event" } else { "Task" };
    let mut fields = Map::new();
    fields.insert("WhoId".into(), json!(request.who_id));
    fields.insert("Subject".into(), json!(request.subject));
    if let Some(owner) = request.owner_id {
        fields.insert("OwnerId".into(), json!(owner));
    }
    if object == "Task" {
        fields.insert("Status".into(), json!(request.status.unwrap_or_else(|| "Completed".into())));
        fields.insert("ActivityDate".into(), json!(crate::time::date(now)));
    } else {
        fields.insert("StartDateTime".into(), json!(salesforce::sf_datetime(now)));
    }
    match state.world().salesforce.create(object, fields, now) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn expire_tokens(State(state): State<Arc<EmulatorState>>) -> StatusCode {
    salesforce::expire_tokens(&mut state.world().salesforce);
    StatusCode::NO_CONTENT
}

async fn salesforce_records(State(state): State<Arc<EmulatorState>>, Path(object): Path<String>) -> Json<Value> {
    let world = state.world();
    Json(json!(world.salesforce.objects.get(&object).cloned().unwrap_or_default()))
}

async fn salesforce_update(
    State(state): State<Arc<EmulatorState>>,
    Path((object, id)): Path<(String, String)>,
    Json(fields): Json<Map<String, Value>>,
) -> Response {
    let now = state.clock.now_ms();
    match state.world().salesforce.update(&object, &id, fields, now) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn emails(State(state): State<Arc<EmulatorState>>) -> Json<Value> {
    Json(json!(state.world().emails))
}
