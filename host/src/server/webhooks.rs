//! Webhook triggers: verify the provider's signature, turn the body into
//! MQL events, start one execution per event, answer at once.

use super::{AppState, Finished};
use crate::connectors::hubspot;
use crate::pipeline::model::SignatureScheme;
use crate::pipeline::{ExecutionRecord, ExecutionStatus};
use crate::pipeline::{PreparedPipeline, Start, Trigger};
use crate::store::{InboundEvent, LeadState, Step};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

fn refuse(status: StatusCode, error: &str, detail: String) -> Response {
    (status, Json(json!({"error": error, "detail": detail}))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The URL HubSpot called, as it signs it.
fn called_uri(state: &AppState, headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    match &state.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => format!("http://{}{path}", header(headers, "host").unwrap_or("localhost")),
    }
}

fn verify(
    state: &AppState,
    scheme: SignatureScheme,
    method: &Method,
    uri: String,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    if scheme == SignatureScheme::None {
        return Ok(());
    }
    let secret = state.hubspot_app_secret.as_ref().ok_or("no HubSpot app secret is configured")?.expose().to_string();
    let now_ms = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
    let result = match scheme {
        SignatureScheme::HubspotV3 => hubspot::verify_v3(
            &secret,
            method.as_str(),
            &uri,
            body,
            header(headers, "x-hubspot-request-timestamp").ok_or("missing X-HubSpot-Request-Timestamp header")?,
            header(headers, "x-hubspot-signature-v3").ok_or("missing X-HubSpot-Signature-v3 header")?,
            now_ms,
        ),
        SignatureScheme::HubspotV2 => hubspot::verify_v2(
            &secret,
            method.as_str(),
            &uri,
            body,
            header(headers, "x-hubspot-signature").ok_or("missing X-HubSpot-Signature header")?,
        ),
        SignatureScheme::HubspotV1 => hubspot::verify_v1(
            &secret,
            body,
            header(headers, "x-hubspot-signature").ok_or("missing X-HubSpot-Signature header")?,
        ),
        SignatureScheme::Slack | SignatureScheme::None => {
            return Err("this trigger's signature scheme is not for HubSpot webhooks".into());
        }
    };
    result.map_err(|e| e.to_string())
}

/// MQL events in a HubSpot webhook body: the Webhooks API's event array
/// (`contact.propertyChange` on lifecyclestage to MQL, `contact.creation`),
/// or a workflow webhook's contact object. Returns (events, ignored count).
///
/// # Errors
///
/// What is wrong with the body, naming the element.
pub fn mql_events(body: &Value, now_ms: i64) -> Result<(Vec<Value>, usize), String> {
    match body {
        Value::Array(events) => {
            let mut mqls = Vec::new();
            let mut ignored = 0;
            for (i, event) in events.iter().enumerate() {
                let kind = event["subscriptionType"].as_str().ok_or(format!("event {i} has no subscriptionType"))?;
                if event["objectId"].is_null() {
                    return Err(format!("event {i} has no objectId"));
                }
                if event["eventId"].is_null() {
                    return Err(format!("event {i} has no eventId"));
                }
                let is_mql = match kind {
                    "contact.propertyChange" | "object.propertyChange" => {
                        event["propertyName"] == "lifecyclestage"
                            && event["propertyValue"] == "marketingqualifiedlead"
                            && event["objectTypeId"].as_str().is_none_or(|t| t == "0-1")
                    }
                    "contact.creation" | "object.creation" => event["objectTypeId"].as_str().is_none_or(|t| t == "0-1"),
                    _ => false,
                };
                if is_mql { mqls.push(event.clone()) } else { ignored += 1 }
            }
            Ok((mqls, ignored))
        }
        Value::Object(object) => {
            // A workflow "send a webhook" action: the contact as the API returns it.
            let id = ["objectId", "id", "vid", "hs_object_id"]
                .iter()
                .find_map(|k| object.get(*k).filter(|v| !v.is_null()))
                .or_else(|| object.get("properties").and_then(|p| p.get("hs_object_id")))
                .ok_or("the workflow body has no objectId, id or vid")?;
            let id = id.as_str().map(String::from).unwrap_or_else(|| id.to_string());
            let day = crate::connectors::time::date(now_ms);
            Ok((
                vec![
                    json!({"eventId": format!("workflow:{id}:{day}"), "subscriptionType": "workflow", "objectId": id, "occurredAt": now_ms}),
                ],
                0,
            ))
        }
        _ => Err("the body must be a JSON array of events or a contact object".into()),
    }
}

/// `POST <webhook path>`.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let received = Instant::now();
    let Some(prepared) = state
        .pipelines
        .iter()
        .find(|p| matches!(&p.pipeline.trigger, Trigger::Webhook { path, .. } if path == uri.path()))
        .cloned()
    else {
        return refuse(StatusCode::NOT_FOUND, "no_pipeline", format!("no pipeline listens at {}", uri.path()));
    };
    let Trigger::Webhook { signature, .. } = prepared.pipeline.trigger else { unreachable!("matched above") };
    if let Err(detail) = verify(&state, signature, &method, called_uri(&state, &headers, &uri), &headers, &body) {
        tracing::warn!(path = uri.path(), %detail, "webhook refused");
        return refuse(StatusCode::UNAUTHORIZED, "invalid_signature", detail);
    }
    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "malformed_body", format!("the body is not JSON: {e}")),
    };
    let (events, ignored) = match mql_events(&parsed, state.clock.now_ms()) {
        Ok(found) => found,
        Err(detail) => return refuse(StatusCode::BAD_REQUEST, "malformed_body", detail),
    };
    // Durable before acknowledged: every event is in the ledger (and a
    // redelivery recognised) before HubSpot hears 200.
    let mut fresh = Vec::new();
    let mut duplicates = 0;
    for payload in events {
        let event = InboundEvent {
            source: "hubspot".into(),
            event_id: event_id(&payload),
            pipeline: prepared.pipeline.name.clone(),
            lead_id: payload["objectId"]
                .as_str()
                .map(String::from)
                .or_else(|| payload["objectId"].as_u64().map(|n| n.to_string())),
            payload,
            received_at: state.clock.now_ms(),
        };
        match state.store.record_event(&event).await {
            Ok(true) => fresh.push(event),
            Ok(false) => duplicates += 1,
            Err(e) => {
                // The events stored so far run; the redelivery will find
                // them stored and store the rest.
                for event in fresh {
                    start(state.clone(), prepared.clone(), event, received);
                }
                tracing::error!(error = %e, "cannot store a webhook event; HubSpot will retry");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
            }
        }
    }
    let ids: Vec<String> = fresh.iter().map(|e| e.event_id.clone()).collect();
    for event in fresh {
        start(state.clone(), prepared.clone(), event, received);
    }
    (StatusCode::OK, Json(json!({"accepted": ids.len(), "duplicates": duplicates, "ignored": ignored, "events": ids})))
        .into_response()
}

fn event_id(event: &Value) -> String {
    event["eventId"].as_str().map(String::from).unwrap_or_else(|| event["eventId"].to_string())
}

/// Tells the ops channel that a lead failed after its retries, and how to
/// drive it again. A failure to alert is logged; the lead is `failed` in the
/// ledger either way.
async fn alert_ops(state: &AppState, event: &InboundEvent, record: &ExecutionRecord) {
    let (Some(channel), Some(chat)) = (&state.ops_channel, state.executor.capabilities().chat.clone()) else {
        return;
    };
    let lead = event.lead_id.as_deref().unwrap_or("?");
    let text = format!(
        ":warning: Lead {lead} failed in {} (event {}): {}. Fix the cause, then `handoff retry {lead}`.",
        event.pipeline,
        event.event_id,
        record.error.as_deref().unwrap_or("a step failed")
    );
    if let Err(e) = chat.post(channel, &text, None).await {
        tracing::error!(error = %e, lead, "cannot alert the ops channel");
    }
}

/// The execution id of an event: the same on every run of that event, so a
/// run resumed after a crash is recognised by the plugins' idempotency keys.
fn execution_id(event: &InboundEvent) -> String {
    format!("{}:{}:{}", event.pipeline, event.source, event.event_id)
}

/// Runs one stored event's execution in the background, then records the
/// lead's steps and marks the event finished.
pub(super) fn start(state: Arc<AppState>, prepared: Arc<PreparedPipeline>, event: InboundEvent, received: Instant) {
    let execution = execution_id(&event);
    {
        let mut running = state.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.contains_key(&execution) {
            tracing::info!(execution = %execution, "already running; not starting it twice");
            return;
        }
        let run = super::Run { event: (event.source.clone(), event.event_id.clone()), stop: None };
        running.insert(execution.clone(), run);
    }
    state.in_flight.fetch_add(1, Ordering::SeqCst);
    // Count the execution down and release its id however the task ends: a
    // panic, or being stopped (even before it first runs).
    let in_flight = InFlight(state.clone());
    let running = Running { state: state.clone(), execution: execution.clone() };
    let task_state = state.clone();
    let task_execution = execution.clone();
    let task = tokio::spawn(async move {
        let (state, execution) = (task_state, task_execution);
        let id = event.event_id.clone();
        let lead = event.lead_id.clone();
        let record = state
            .executor
            .execute_as(&prepared, json!({ "event": event.payload }), Start::Trigger, lead.clone(), execution)
            .await;
        let failed = settle(&state, &event, &record).await;
        // No longer running: a retry asked for while ops is being told
        // starts at once.
        drop(running);
        if failed {
            alert_ops(&state, &event, &record).await;
        }
        let total_us = u64::try_from(received.elapsed().as_micros()).unwrap_or(u64::MAX);
        let notified_us = record
            .runs
            .iter()
            .rev()
            .find(|r| r.plugin == "notify" && r.error.is_none())
            .map(|r| total_us.saturating_sub(record.duration_us.saturating_sub(r.finished_at_us)));
        state.record(Finished { event_id: id, total_us, notified_us, record });
        drop(in_flight);
    });
    if let Some(run) = state.running.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&execution) {
        run.stop = Some(task.abort_handle());
    }
}

/// Applies an execution's steps to the event's lead, if it names one; a
/// failure is logged (the event's own state in the ledger is what reruns).
async fn record_lead(state: &AppState, event: &InboundEvent, facts: &crate::store::LeadFacts, steps: &[Step]) {
    if let Some(lead) = &event.lead_id
        && let Err(e) = state.store.record_steps(lead, facts, steps).await
    {
        tracing::error!(error = %e, lead = %lead, "cannot record the lead's steps");
    }
}

/// Records how an execution ended: the lead's steps, then the event
/// finished, or waiting for another attempt when a provider was down.
/// Returns whether the lead failed for good (and ops should hear of it).
async fn settle(state: &AppState, event: &InboundEvent, record: &ExecutionRecord) -> bool {
    let (facts, mut steps) = crate::store::steps_of(record);
    let failed = record.status == ExecutionStatus::Failed;
    // A provider outage or rate limit outlasted the node's retries: the
    // lead waits and runs again later (the journal keeps what is done).
    let transient = failed && record.runs.last().and_then(|r| r.error.as_ref()).is_some_and(|e| e.retryable);
    if transient {
        match state.store.defer_event(&event.source, &event.event_id, state.waiting).await {
            Ok(Some(deferred)) => {
                // Attempt times are the ledger's (system) clock, whatever
                // clock the plugins see.
                let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
                let wait_s = ((deferred.next_attempt_ms - now).max(0) + 999) / 1000;
                if let Some(last) = steps.last_mut() {
                    last.state = LeadState::Waiting;
                    last.detail = format!(
                        "{}; attempt {} failed, next in {wait_s} s",
                        record.error.as_deref().unwrap_or("a provider is unavailable"),
                        deferred.attempts
                    );
                }
                record_lead(state, event, &facts, &steps).await;
                tracing::info!(event = %event.event_id, attempts = deferred.attempts, "waiting for a provider");
                return false;
            }
            Ok(None) => tracing::warn!(event = %event.event_id, "waited too long for a provider; failing the lead"),
            Err(e) => {
                // Lost to another instance, or the ledger failed: either way
                // the claim is not renewed once this run ends, and whoever
                // holds or next claims the event runs it.
                tracing::error!(error = %e, event = %event.event_id, "cannot defer the event");
                return false;
            }
        }
    }
    record_lead(state, event, &facts, &steps).await;
    match state.store.finish_event(&event.source, &event.event_id, &record.execution_id, failed).await {
        Ok(true) => failed,
        Ok(false) => {
            tracing::warn!(event = %event.event_id, "another instance took this event over");
            false
        }
        Err(e) => {
            tracing::error!(error = %e, event = %event.event_id, "cannot mark the event finished; it will run again");
            false
        }
    }
}

/// Marks an execution no longer running when dropped.
struct Running {
    state: Arc<AppState>,
    execution: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.execution);
    }
}

/// Counts an execution as in flight until dropped.
struct InFlight(Arc<AppState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_mql_events_start_executions() {
        let body = json!([
            {"eventId": 1, "subscriptionType": "contact.propertyChange", "objectId": 11, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead"},
            {"eventId": 2, "subscriptionType": "contact.propertyChange", "objectId": 12, "propertyName": "lifecyclestage", "propertyValue": "lead"},
            {"eventId": 3, "subscriptionType": "contact.creation", "objectId": 13, "changeFlag": "NEW"},
            {"eventId": 4, "subscriptionType": "object.propertyChange", "objectTypeId": "0-3", "objectId": 14, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead"},
            {"eventId": 5, "subscriptionType": "deal.creation", "objectId": 15}
        ]);
        let (events, ignored) = mql_events(&body, 0).unwrap();
        let ids: Vec<i64> = events.iter().map(|e| e["objectId"].as_i64().unwrap()).collect();
        assert_eq!(ids, [11, 13]);
        assert_eq!(ignored, 3);
    }

    #[test]
    fn a_workflow_body_is_one_event_and_malformed_ones_say_why() {
        let (events, _) =
            mql_events(&json!({"id": "33451", "properties": {"email": "x@y.com"}}), 1_715_203_101_896).unwrap();
        assert_eq!(events[0]["eventId"], "workflow:33451:2024-05-08");
        assert_eq!(
            mql_events(&json!([{"eventId": 1, "objectId": 2}]), 0).unwrap_err(),
            "event 0 has no subscriptionType"
        );
        assert_eq!(
            mql_events(&json!([{"eventId": 1, "subscriptionType": "contact.creation"}]), 0).unwrap_err(),
            "event 0 has no objectId"
        );
        assert!(mql_events(&json!("nope"), 0).is_err());
    }
}
