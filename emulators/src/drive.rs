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
