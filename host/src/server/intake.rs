//! Intake: a webhook is verified (the provider's signature, within its
//! time window), parsed into events (malformed: 400 naming the element),
//! and each event written to the ledger before the 200 goes back; only then
//! does the worker start it. Nothing here runs a pipeline.

use super::api::refuse;
use super::{AppState, worker};
use crate::connectors::hubspot;
use crate::ledger::InboundEvent;
use crate::pipeline::model::SignatureScheme;
use crate::pipeline::{History, Trigger};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

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
    // Signature windows are real time: HubSpot signs with its wall clock.
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

/// The MQL events of a HubSpot webhook body, and how many other events it
/// carried: what intake stores, one event each.
///
/// # Errors
///
/// Why the body is refused (400), naming the element.
pub fn hubspot_events(body: &[u8], now_ms: i64) -> Result<(Vec<Value>, usize), String> {
    let parsed = parse_body(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    mql_events(&parsed, now_ms)
}

/// A HubSpot event's id (its redelivery is recognised by it) and its lead.
pub fn hubspot_identity(event: &Value) -> (String, Option<String>) {
    let lead =
        event["objectId"].as_str().map(String::from).or_else(|| event["objectId"].as_u64().map(|n| n.to_string()));
    (event_id(event), lead)
}

/// A webhook body as JSON, with every integer too large for 64 bits at the
/// top level of an event (`eventId`, `objectId`, ...) kept as its exact
/// digits in a string: parsed as a number it would round to a float, and two
/// events whose ids differ only past the 17th digit would become one.
///
/// # Errors
///
/// When the body is not JSON.
pub fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut parsed: Value = serde_json::from_slice(body)?;
    let rounded = |object: &serde_json::Map<String, Value>| object.values().any(Value::is_f64);
    let needs_digits = match &parsed {
        Value::Array(events) => events.iter().any(|e| e.as_object().is_some_and(rounded)),
        Value::Object(object) => rounded(object),
        _ => false,
    };
    if needs_digits {
        // Read the body again, keeping each top-level value's source text.
        type Fields<'a> = std::collections::HashMap<String, &'a serde_json::value::RawValue>;
        let exact = |object: &mut serde_json::Map<String, Value>, raw: &Fields| {
            for (key, value) in object.iter_mut() {
                let text = raw.get(key).map(|r| r.get()).unwrap_or_default();
                let integer = text.strip_prefix('-').unwrap_or(text);
                if value.is_f64() && !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) {
                    *value = Value::String(text.to_string());
                }
            }
        };
        match &mut parsed {
            Value::Array(events) => {
                let raw: Vec<Option<Fields>> = serde_json::from_slice(body).unwrap_or_default();
                for (event, raw) in events.iter_mut().zip(raw) {
                    if let (Value::Object(object), Some(raw)) = (event, raw) {
                        exact(object, &raw);
                    }
                }
            }
            Value::Object(object) => {
                if let Ok(raw) = serde_json::from_slice::<Fields>(body) {
                    exact(object, &raw);
                }
            }
            _ => {}
        }
    }
    Ok(parsed)
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
            let id = id.as_str().map_or_else(|| id.to_string(), String::from);
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

/// `POST <webhook path>`, counted by status for `/metrics`.
pub async fn receive(
    State(state): State<Arc<AppState>>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let response = receive_request(State(state), method, OriginalUri(uri), headers, body).await;
    crate::telemetry::TELEMETRY.webhook(response.status().as_str());
    response
}

/// A webhook's events, stored: the answer HubSpot gets.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[allow(clippy::struct_field_names)] // the wire format's names
pub struct Accepted {
    /// New MQL events stored (each runs once).
    pub accepted: usize,
    /// Events stored before (a redelivery): not run again.
    pub duplicates: usize,
    /// Events in the body that are not MQL events.
    pub ignored: usize,
    /// The ids of the new events.
    pub events: Vec<String>,
}

async fn receive_request(
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
    if signature == SignatureScheme::Slack {
        return receive_slack(&state, &prepared, &headers, &body, received).await;
    }
    if let Err(detail) = verify(&state, signature, &method, called_uri(&state, &headers, &uri), &headers, &body) {
        tracing::warn!(path = uri.path(), %detail, "webhook refused");
        return refuse(StatusCode::UNAUTHORIZED, "invalid_signature", detail);
    }
    if state.worker.in_flight() >= state.limits.max_in_flight {
        // Refused before anything is stored: HubSpot delivers it again.
        let mut response = refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("{} leads are in flight, the most this server runs at once", state.limits.max_in_flight),
        );
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, super::RETRY_AFTER_SECS.into());
        return response;
    }
    let (events, ignored) = match hubspot_events(&body, state.clock.now_ms()) {
        Ok(found) => found,
        Err(detail) => return refuse(StatusCode::BAD_REQUEST, "malformed_body", detail),
    };
    // Durable before acknowledged: every event is in the ledger (and a
    // redelivery recognised) before HubSpot hears 200.
    let mut fresh = Vec::new();
    let mut duplicates = 0;
    for payload in events {
        let (event_id, lead_id) = hubspot_identity(&payload);
        let event = InboundEvent {
            source: "hubspot".into(),
            event_id,
            pipeline: prepared.pipeline.name.clone(),
            lead_id,
            payload,
            received_at: state.clock.now_ms(),
            node: None,
        };
        match state.ledger.record_event(&event).await {
            Ok(true) => fresh.push(event),
            Ok(false) => duplicates += 1,
            Err(e) => {
                // The events stored so far run; the redelivery will find
                // them stored and store the rest.
                for event in fresh {
                    worker::start(state.clone(), prepared.clone(), event, History::New, received);
                }
                tracing::error!(error = %e, "cannot store a webhook event; HubSpot will retry");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
            }
        }
    }
    let ids: Vec<String> = fresh.iter().map(|e| e.event_id.clone()).collect();
    for event in fresh {
        worker::start(state.clone(), prepared.clone(), event, History::New, received);
    }
    (StatusCode::OK, Json(Accepted { accepted: ids.len(), duplicates, ignored, events: ids })).into_response()
}

/// A Slack interaction (`POST /slack/interactions`: a button click, a
/// select, a modal submitted): the signature checked (v0, five minutes), the
/// form's `payload` parsed, the interaction stored as an event, and only
/// then the 200 Slack wants within three seconds; the work runs after.
/// A request replayed (the same interaction again) is refused like a forged
/// one: nothing new is stored.
async fn receive_slack(
    state: &Arc<AppState>,
    prepared: &Arc<crate::pipeline::PreparedPipeline>,
    headers: &HeaderMap,
    body: &[u8],
    received: Instant,
) -> Response {
    let Some(secret) = state.slack_signing_secret.as_ref() else {
        return refuse(StatusCode::UNAUTHORIZED, "invalid_signature", "no Slack signing secret is configured");
    };
    let now_secs = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock) / 1000;
    let verified = match (header(headers, "x-slack-request-timestamp"), header(headers, "x-slack-signature")) {
        (Some(ts), Some(signature)) => {
            crate::connectors::slack::verify_signature(secret.expose(), ts, signature, body, now_secs)
                .map_err(|e| e.to_string())
        }
        _ => Err("missing X-Slack-Request-Timestamp or X-Slack-Signature header".into()),
    };
    if let Err(detail) = verified {
        tracing::warn!(%detail, "Slack interaction refused");
        return refuse(StatusCode::UNAUTHORIZED, "invalid_signature", detail);
    }
    let (payload, event_id, lead_id) = match slack_interaction(body) {
        Ok(interaction) => interaction,
        Err(detail) => return refuse(StatusCode::BAD_REQUEST, "malformed_body", detail),
    };
    let event = InboundEvent {
        source: "slack".into(),
        event_id,
        pipeline: prepared.pipeline.name.clone(),
        lead_id,
        payload,
        received_at: state.clock.now_ms(),
        node: None,
    };
    match state.ledger.record_event(&event).await {
        Ok(true) => {
            worker::start(state.clone(), prepared.clone(), event, History::New, received);
            StatusCode::OK.into_response()
        }
        Ok(false) => {
            tracing::warn!(event = %event.event_id, "Slack interaction replayed; refused");
            refuse(StatusCode::UNAUTHORIZED, "replayed", "this interaction was received before")
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store a Slack interaction");
            refuse(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
        }
    }
}

/// A Slack interaction's form body as intake stores it: its payload, its id
/// (a replay is recognised by it) and the lead it is about.
///
/// # Errors
///
/// What is wrong with the body (400).
pub fn slack_interaction(body: &[u8]) -> Result<(Value, String, Option<String>), String> {
    let payload = slack_payload(body)?;
    let id = slack_event_id(&payload, body);
    let lead = slack_lead_id(&payload);
    Ok((payload, id, lead))
}

/// The JSON in a Slack interaction's form body (`payload=...`).
///
/// # Errors
///
/// What is wrong with the body.
pub fn slack_payload(body: &[u8]) -> Result<Value, String> {
    let text = form_urlencoded::parse(body).find(|(k, _)| k == "payload").map(|(_, v)| v.into_owned());
    let text = text.ok_or("the body has no payload field (Slack sends payload=<JSON>, form-encoded)")?;
    let payload: Value = serde_json::from_str(&text).map_err(|e| format!("the payload is not JSON: {e}"))?;
    if !payload["type"].is_string() {
        return Err("the payload has no type".into());
    }
    Ok(payload)
}

/// A Slack interaction's id: its `trigger_id` (unique per interaction), or
/// a hash of the body.
fn slack_event_id(payload: &Value, body: &[u8]) -> String {
    match payload["trigger_id"].as_str() {
        Some(trigger) if !trigger.is_empty() => trigger.to_string(),
        _ => {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(body))
        }
    }
}

/// The lead a Slack interaction is about: the acting block's id when it
/// reads `lead:<id>` (how Handoff's messages name their lead), or a modal's
/// `private_metadata` `{"lead": id}`.
fn slack_lead_id(payload: &Value) -> Option<String> {
    let from_block =
        payload["actions"][0]["block_id"].as_str().and_then(|b| b.strip_prefix("lead:")).map(str::to_string);
    from_block.or_else(|| {
        let metadata: Value = serde_json::from_str(payload["view"]["private_metadata"].as_str()?).ok()?;
        metadata["lead"].as_str().map(str::to_string)
    })
}

fn event_id(event: &Value) -> String {
    event["eventId"].as_str().map_or_else(|| event["eventId"].to_string(), String::from)
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
    fn event_ids_beyond_64_bits_stay_distinct() {
        // Parsed as numbers, both ids once rounded to 1.2345678901234568e23
        // and the second event was taken for a redelivery of the first.
        let body = br#"[
            {"eventId": 123456789012345678901234, "subscriptionType": "contact.creation", "objectId": 98765432109876543210987},
            {"eventId": 123456789012345678901235, "subscriptionType": "contact.creation", "objectId": 98765432109876543210988, "score": 1.5}
        ]"#;
        let (events, _) = mql_events(&parse_body(body).unwrap(), 0).unwrap();
        let ids: Vec<String> = events.iter().map(event_id).collect();
        assert_eq!(ids, ["123456789012345678901234", "123456789012345678901235"]);
        assert_eq!(events[1]["objectId"], "98765432109876543210988");
        assert_eq!(events[1]["score"], 1.5, "fractions stay numbers");
        // Ids that fit stay numbers, as HubSpot sends them.
        let body = br#"[{"eventId": 18446744073709551615, "subscriptionType": "contact.creation", "objectId": -7}]"#;
        let (events, _) = mql_events(&parse_body(body).unwrap(), 0).unwrap();
        assert_eq!(event_id(&events[0]), "18446744073709551615");
        assert!(events[0]["objectId"].is_i64());
        let workflow = parse_body(br#"{"vid": 123456789012345678901234}"#).unwrap();
        assert_eq!(mql_events(&workflow, 0).unwrap().0[0]["objectId"], "123456789012345678901234");
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
