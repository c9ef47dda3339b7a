//! HubSpot CRM v3 (private-app bearer token) behind `marketing`, and
//! HubSpot's webhook request signatures (v1, v2, v3).

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError, retry_after, transport_error};
use super::secret::Secret;
use crate::capabilities::{CapabilityError, Contact, Marketing};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

const PROVIDER: &str = "hubspot";

/// Lifecycle stages in HubSpot's order; a contact only moves forward
/// unless the stage is cleared first.
pub const LIFECYCLE_STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

/// A HubSpot CRM client.
#[derive(Clone)]
pub struct HubSpot {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    policy: CallPolicy,
}

/// One page of contact search results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// Contacts matching, in all.
    pub total: u64,
    /// This page's contacts.
    pub results: Vec<Contact>,
    /// The `after` cursor of the next page, when there is one.
    pub next_after: Option<String>,
}

impl HubSpot {
    /// A client for the API at `base_url` (`https://api.hubapi.com`).
    pub fn new(http: reqwest::Client, base_url: &str, token: Secret, policy: CallPolicy) -> Self {
        HubSpot { http, base_url: base_url.trim_end_matches('/').to_string(), token, policy }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Option<Value>, ProviderError> {
        let url = format!("{}{path}", self.base_url);
        self.policy
            .run(PROVIDER, |attempt| {
                let mut request = self.http.request(method.clone(), &url).bearer_auth(self.token.expose()).query(query);
                if let Some(body) = body {
                    request = request.json(body);
                }
                async move {
                    match request.send().await {
                        Err(e) => transport_error(PROVIDER, &e),
                        Ok(response) => classify(response, attempt, &self.policy).await,
                    }
                }
            })
            .await
    }

    /// Searches contacts (`POST /crm/v3/objects/contacts/search`) with the
    /// request body HubSpot documents (filterGroups, properties, sorts,
    /// limit, after).
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn search_contacts(&self, request: &Value) -> Result<SearchPage, ProviderError> {
        let body =
            self.call(Method::POST, "/crm/v3/objects/contacts/search", &[], Some(request)).await?.unwrap_or_default();
        Ok(SearchPage {
            total: body["total"].as_u64().unwrap_or(0),
            results: body["results"].as_array().into_iter().flatten().map(contact).collect(),
            next_after: body["paging"]["next"]["after"].as_str().map(str::to_string),
        })
    }

    /// Reads up to 100 contacts at once by `id_property` (`None` for the
    /// record id, `Some("email")`). Contacts that do not exist are left out.
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn batch_read(
        &self,
        ids: &[String],
        id_property: Option<&str>,
        properties: &[String],
    ) -> Result<Vec<Contact>, ProviderError> {
        let mut body = json!({
            "properties": properties,
            "inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
        });
        if let Some(p) = id_property {
            body["idProperty"] = json!(p);
        }
        let body =
            self.call(Method::POST, "/crm/v3/objects/contacts/batch/read", &[], Some(&body)).await?.unwrap_or_default();
        Ok(body["results"].as_array().into_iter().flatten().map(contact).collect())
    }

    /// The scopes the private app's token was granted
    /// (`POST /oauth/v2/private-apps/get/access-token-info`), with the hub id.
    ///
    /// # Errors
    ///
    /// The provider's error, classified (a token HubSpot does not know is `Auth`).
    pub async fn token_scopes(&self) -> Result<(Option<u64>, Vec<String>), ProviderError> {
        let body = json!({ "tokenKey": self.token.expose() });
        let info = match self.call(Method::POST, "/oauth/v2/private-apps/get/access-token-info", &[], Some(&body)).await
        {
            Ok(info) => info.unwrap_or_default(),
            // A token HubSpot does not know may be answered 400, not 401.
            Err(mut e) if e.status == Some(400) => {
                e.class = ErrorClass::Auth;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let scopes = info["scopes"].as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from);
        Ok((info["hubId"].as_u64(), scopes.collect()))
    }

    /// A contact property's definition (`GET /crm/v3/properties/contacts/{name}`):
    /// its type and, for an enumeration, its option values; `None` when the
    /// portal has no such property.
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn contact_property(&self, name: &str) -> Result<Option<(String, Vec<String>)>, ProviderError> {
        let path = format!("/crm/v3/properties/contacts/{}", encode_segment(name));
        let Some(body) = absent_is_none(self.call(Method::GET, &path, &[], None).await)? else {
            return Ok(None);
        };
        let body = body.unwrap_or_default();
        let options = body["options"].as_array().into_iter().flatten();
        let values = options.filter_map(|o| o["value"].as_str()).map(String::from).collect();
        Ok(Some((body["type"].as_str().unwrap_or("string").to_string(), values)))
    }

    /// A list's name, whether it is static (`processingType` `MANUAL` or
    /// `SNAPSHOT`: contacts can be added to it) and whether it holds
    /// contacts (`objectTypeId` `0-1`), from `GET /crm/v3/lists/{list_id}`;
    /// `None` when there is no such list.
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn list(&self, list_id: &str) -> Result<Option<(String, bool, bool)>, ProviderError> {
        let path = format!("/crm/v3/lists/{}", encode_segment(list_id));
        let Some(body) = absent_is_none(self.call(Method::GET, &path, &[], None).await)? else {
            return Ok(None);
        };
        let list = &body.unwrap_or_default()["list"];
        let kind = list["processingType"].as_str().unwrap_or("MANUAL");
        Ok(Some((
            list["name"].as_str().unwrap_or_default().to_string(),
            kind == "MANUAL" || kind == "SNAPSHOT",
            list["objectTypeId"].as_str().is_none_or(|t| t == "0-1"),
        )))
    }

    async fn read_contact(
        &self,
        id: &str,
        id_property: Option<&str>,
        properties: &[String],
    ) -> Result<Option<Contact>, ProviderError> {
        let mut query = Vec::new();
        if !properties.is_empty() {
            query.push(("properties", properties.join(",")));
        }
        if let Some(p) = id_property {
            query.push(("idProperty", p.to_string()));
        }
        let path = format!("/crm/v3/objects/contacts/{}", encode_segment(id));
        Ok(absent_is_none(self.call(Method::GET, &path, &query, None).await)?.flatten().as_ref().map(contact))
    }
}

/// A read's answer, with "no such object" (404) as `None`.
fn absent_is_none<T>(answer: Result<T, ProviderError>) -> Result<Option<T>, ProviderError> {
    match answer {
        Ok(found) => Ok(Some(found)),
        Err(e) if e.class == ErrorClass::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn contact(value: &Value) -> Contact {
    Contact {
        id: value["id"].as_str().unwrap_or_default().to_string(),
        properties: value.get("properties").cloned().unwrap_or_else(|| json!({})).to_string(),
    }
}

fn encode_segment(segment: &str) -> String {
    let mut out = String::new();
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' | b'+' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Classifies a HubSpot response.
async fn classify(response: reqwest::Response, attempt: u32, policy: &CallPolicy) -> Attempt<Option<Value>> {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Attempt::Done(if text.trim().is_empty() { None } else { serde_json::from_str(&text).ok() });
    }
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    let message = body["message"].as_str().unwrap_or(&text).to_string();
    let code = body["category"]
        .as_str()
        .or(body["policyName"].as_str())
        .or(body["errors"][0]["code"].as_str())
        .unwrap_or(status.canonical_reason().unwrap_or("error"))
        .to_string();
    let error = |class| ProviderError::new(PROVIDER, Some(status.as_u16()), code.clone(), message.clone(), class);
    match status.as_u16() {
        404 => Attempt::Fail(error(ErrorClass::NotFound)),
        401 | 403 => Attempt::Fail(error(ErrorClass::Auth)),
        429 => {
            if body["policyName"] == "DAILY" {
                // The daily quota is gone; retrying inside this call is futile.
                return Attempt::Fail(error(ErrorClass::Transient));
            }
            let after = retry_after(&headers).or(Some(policy.rolling_limit_wait * attempt));
            Attempt::Retry { error: error(ErrorClass::Transient), after }
        }
        423 => Attempt::Retry {
            error: error(ErrorClass::Transient),
            after: Some(retry_after(&headers).unwrap_or(Duration::from_secs(2)).max(Duration::from_secs(2))),
        },
        477 | 500..=599 => Attempt::Retry { error: error(ErrorClass::Transient), after: retry_after(&headers) },
        _ if status == StatusCode::REQUEST_TIMEOUT => {
            Attempt::Retry { error: error(ErrorClass::Transient), after: None }
        }
        _ => Attempt::Fail(error(ErrorClass::Invalid)),
    }
}

#[async_trait::async_trait]
impl Marketing for HubSpot {
    async fn get_contact(&self, id: &str, properties: &[String]) -> Result<Contact, CapabilityError> {
        self.read_contact(id, None, properties)
            .await?
            .ok_or_else(|| CapabilityError::NotFound(format!("hubspot contact {id} does not exist")))
    }

    async fn find_contact_by_email(
        &self,
        email: &str,
        properties: &[String],
    ) -> Result<Option<Contact>, CapabilityError> {
        Ok(self.read_contact(email, Some("email"), properties).await?)
    }

    async fn update_contact(&self, id: &str, properties: &str) -> Result<Contact, CapabilityError> {
        let properties: Value = serde_json::from_str(properties)
            .map_err(|e| CapabilityError::Invalid(format!("properties are not JSON: {e}")))?;
        let path = format!("/crm/v3/objects/contacts/{}", encode_segment(id));
        if let Some(target) = properties.get("lifecyclestage").and_then(Value::as_str) {
            // HubSpot only moves a lifecycle stage forward; moving it back
            // (a rejected lead returning to `lead`) needs it cleared first.
            let current = self.read_contact(id, None, &["lifecyclestage".to_string()]).await?;
            let current_stage = current
                .and_then(|c| serde_json::from_str::<Value>(&c.properties).ok())
                .and_then(|p| p["lifecyclestage"].as_str().map(str::to_string));
            let rank = |stage: &str| LIFECYCLE_STAGES.iter().position(|s| *s == stage);
            if let (Some(now), Some(next)) = (current_stage.as_deref().and_then(rank), rank(target))
                && next < now
            {
                let clear = json!({"properties": {"lifecyclestage": ""}});
                self.call(Method::PATCH, &path, &[], Some(&clear)).await?;
            }
        }
        let body = self.call(Method::PATCH, &path, &[], Some(&json!({ "properties": properties }))).await?;
        Ok(body.as_ref().map(contact).unwrap_or(Contact { id: id.to_string(), properties: "{}".into() }))
    }

    async fn add_to_list(&self, list_id: &str, contact_id: &str) -> Result<(), CapabilityError> {
        let path = format!("/crm/v3/lists/{}/memberships/add", encode_segment(list_id));
        let body = self.call(Method::PUT, &path, &[], Some(&json!([contact_id]))).await?.unwrap_or_default();
        // HubSpot's schema spells the added field `recordsIdsAdded`; only the
        // missing list matters here.
        let missing = body["recordIdsMissing"].as_array().is_some_and(|m| m.iter().any(|id| id == contact_id));
        if missing {
            return Err(CapabilityError::NotFound(format!("hubspot contact {contact_id} does not exist")));
        }
        Ok(())
    }
}

/// Why a webhook signature was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// A required header is absent or malformed.
    Missing(&'static str),
    /// The timestamp is more than five minutes old (or in the future).
    Expired,
    /// The signature does not match.
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Missing(header) => write!(f, "missing or malformed {header} header"),
            SignatureError::Expired => f.write_str("request timestamp is outside the five-minute window"),
            SignatureError::Mismatch => f.write_str("signature does not match"),
        }
    }
}

/// Largest accepted age of a v3 request, in milliseconds.
pub const MAX_SIGNATURE_AGE_MS: i64 = 300_000;

/// Verifies `X-HubSpot-Signature-v3`: base64(HMAC-SHA256(secret, method +
/// uri + body + timestamp)), with the timestamp (ms) within five minutes.
///
/// # Errors
///
/// Why the request is refused.
pub fn verify_v3(
    secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: &str,
    signature: &str,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Missing("X-HubSpot-Request-Timestamp"))?;
    if (now_ms - ts).abs() > MAX_SIGNATURE_AGE_MS {
        return Err(SignatureError::Expired);
    }
    let expected = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::Missing("X-HubSpot-Signature-v3"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(decode_uri_for_v3(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp.trim().as_bytes());
    mac.verify_slice(&expected).map_err(|_| SignatureError::Mismatch)
}

/// HubSpot signs v3 requests over the URI with these escapes decoded.
fn decode_uri_for_v3(uri: &str) -> String {
    const DECODE: [(&str, &str); 14] = [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
        ("%3a", ":"),
        ("%2f", "/"),
    ];
    DECODE.iter().fold(uri.to_string(), |acc, (from, to)| acc.replace(from, to))
}

/// Computes a v3 signature (for tests, the emulator and the demo sender).
pub fn sign_v3(secret: &str, method: &str, uri: &str, body: &[u8], timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(method.as_bytes());
    mac.update(decode_uri_for_v3(uri).as_bytes());
    mac.update(body);
    mac.update(timestamp_ms.to_string().as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Verifies a v2 signature: hex(SHA-256(secret + method + uri + body)).
///
/// # Errors
///
/// Why the request is refused.
pub fn verify_v2(secret: &str, method: &str, uri: &str, body: &[u8], signature: &str) -> Result<(), SignatureError> {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(method.as_bytes());
    hash.update(uri.as_bytes());
    hash.update(body);
    compare_hex(&hash.finalize(), signature)
}

/// Verifies a v1 signature: hex(SHA-256(secret + body)).
///
/// # Errors
///
/// Why the request is refused.
pub fn verify_v1(secret: &str, body: &[u8], signature: &str) -> Result<(), SignatureError> {
    let mut hash = Sha256::new();
    hash.update(secret.as_bytes());
    hash.update(body);
    compare_hex(&hash.finalize(), signature)
}

/// Compares a digest with a hex signature in constant time.
fn compare_hex(digest: &[u8], signature: &str) -> Result<(), SignatureError> {
    let given = hex::decode(signature.trim()).map_err(|_| SignatureError::Missing("X-HubSpot-Signature"))?;
    if given.len() != digest.len() {
        return Err(SignatureError::Mismatch);
    }
    let diff = given.iter().zip(digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff == 0 { Ok(()) } else { Err(SignatureError::Mismatch) }
}
