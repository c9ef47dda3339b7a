//! Acting as the outside world against a running Handoff: HubSpot creating
//! contacts and sending signed webhooks, the way tests, the demo and the
//! load tool drive it.

use anyhow::{Context, Result};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::net::SocketAddr;

/// Creates a HubSpot contact in the emulators through HubSpot's API;
/// returns its id.
///
/// # Errors
///
/// When the emulator cannot be reached or answers without an id.
pub async fn create_contact(http: &reqwest::Client, emulators: SocketAddr, properties: &Value) -> Result<String> {
    let created: Value = http
        .post(format!("http://{emulators}/hubspot/crm/v3/objects/contacts"))
        .bearer_auth(crate::TOKEN)
        .json(&json!({ "properties": properties }))
        .send()
        .await?
        .json()
        .await?;
    Ok(created["id"].as_str().context("the HubSpot emulator returned no id")?.to_string())
}

/// HubSpot's v3 request signature: base64(HMAC-SHA256(secret, method + URI
/// + body + timestamp)).
pub fn hubspot_v3_signature(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Slack's v0 request signature: `v0=` hex(HMAC-SHA256(secret,
/// `v0:{timestamp}:{body}`)).
pub fn slack_signature(secret: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp_secs}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex_lower(&mac.finalize().into_bytes()))
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

/// The form body Slack posts for an interaction: `payload=<JSON>`.
pub fn slack_form(payload: &Value) -> String {
    let mut out = String::from("payload=");
    for byte in payload.to_string().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// POSTs an interaction `payload` to `url` as Slack does: form-encoded,
/// signed with `secret` at `timestamp_secs` (the wall clock's, as Slack's).
///
/// # Errors
///
/// When the request cannot be sent.
pub async fn send_slack_interaction(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    payload: &Value,
    timestamp_secs: i64,
) -> reqwest::Result<reqwest::Response> {
    let body = slack_form(payload);
    http.post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp_secs.to_string())
        .header("x-slack-signature", slack_signature(secret, timestamp_secs, body.as_bytes()))
        .body(body)
        .send()
        .await
}

/// The person a DM went to (by email) clicks `action_id` in the newest DM
/// to them that has it (a button, or a select's `option`): the payload
/// Slack would send, or none when no such DM exists.
pub fn click_payload(
    state: &crate::EmulatorState,
    recipient: &str,
    action_id: &str,
    option: Option<&str>,
) -> Option<Value> {
    let now = state.clock.now_ms();
    let world = state.world();
    let slack = &world.slack;
    slack
        .messages
        .iter()
        .rev()
        .filter(|m| m.recipient.as_deref() == Some(recipient))
        .find_map(|m| slack.block_action(m, action_id, option, now))
}

/// Clicks as the person a DM went to and POSTs it to Handoff's
/// interactivity URL, signed with the emulated app's secret.
///
/// # Errors
///
/// When no DM to `recipient` has `action_id`, or the request fails.
pub async fn click(
    http: &reqwest::Client,
    url: &str,
    state: &crate::EmulatorState,
    recipient: &str,
    action_id: &str,
    option: Option<&str>,
) -> Result<reqwest::Response> {
    let payload = click_payload(state, recipient, action_id, option)
        .with_context(|| format!("no DM to {recipient} offers {action_id}"))?;
    let now_secs = jiff::Timestamp::now().as_second();
    Ok(send_slack_interaction(http, url, crate::SECRET, &payload, now_secs).await?)
}

/// The member with `email` submits the newest modal with `values` (its
/// `state.values`) and the submission is POSTed to Handoff's interactivity
/// URL, signed with the emulated app's secret.
///
/// # Errors
///
/// When no modal is open or `email` is no member, or the request fails.
pub async fn submit_view(
    http: &reqwest::Client,
    url: &str,
    state: &crate::EmulatorState,
    email: &str,
    values: &Value,
) -> Result<reqwest::Response> {
    let payload = {
        let now = state.clock.now_ms();
        let world = state.world();
        let view = world.slack.views.last().context("no modal is open")?;
        world.slack.view_submission(email, &view.id, values, now).with_context(|| format!("{email} is no member"))?
    };
    let now_secs = jiff::Timestamp::now().as_second();
    Ok(send_slack_interaction(http, url, crate::SECRET, &payload, now_secs).await?)
}

/// POSTs a webhook body to `url` signed as HubSpot does (v3, with the
/// wall clock's time, as HubSpot's own).
///
/// # Errors
///
/// When the request cannot be sent.
pub async fn send_hubspot_webhook(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    let ts = jiff::Timestamp::now().as_millisecond();
    let signature = hubspot_v3_signature(secret, "POST", url, body.as_bytes(), ts);
    http.post(url)
        .header("content-type", "application/json")
        .header("x-hubspot-request-timestamp", ts.to_string())
        .header("x-hubspot-signature-v3", signature)
        .body(body)
        .send()
        .await
}
