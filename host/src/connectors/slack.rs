//! Slack Web API behind `chat`, and Slack's request signatures for the
//! interactivity callbacks Slack sends us.

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError, retry_after, transport_error};
use super::secret::Secret;
use crate::capabilities::{CapabilityError, Chat, MessageRef};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

const PROVIDER: &str = "slack";

/// The message-metadata event type that carries an effect's journal key.
const EFFECT_EVENT: &str = "handoff_effect";

/// Every Web API method this connector calls and the bot scopes it needs
/// (the committed `slack-app-manifest.json` grants them; `handoff doctor`
/// checks a token has them).
pub const METHOD_SCOPES: &[(&str, &[&str])] = &[
    ("chat.postMessage", &["chat:write"]),
    ("chat.update", &["chat:write"]),
    ("conversations.open", &["im:write"]),
    ("conversations.history", &["im:history", "channels:history"]),
    ("conversations.list", &["channels:read", "groups:read"]),
    ("users.lookupByEmail", &["users:read", "users:read.email"]),
    ("views.open", &[]),
];

/// A Slack client (bot token).
pub struct Slack {
    http: reqwest::Client,
    base_url: String,
    token: Secret,
    policy: CallPolicy,
    /// email → user id, from `users.lookupByEmail`.
    users: Mutex<HashMap<String, String>>,
    /// user id → DM channel id, from `conversations.open`.
    dms: Mutex<HashMap<String, String>>,
    /// channel name → id, from `conversations.list`.
    channels: Mutex<HashMap<String, String>>,
}

impl Slack {
    /// A client for the Web API at `base_url` (`https://slack.com/api`).
    pub fn new(http: reqwest::Client, base_url: &str, token: Secret, policy: CallPolicy) -> Self {
        Slack {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            token,
            policy,
            users: Mutex::new(HashMap::new()),
            dms: Mutex::new(HashMap::new()),
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// Calls a Web API method: GET with query parameters, or POST with a
    /// JSON body. Returns the body of an `ok: true` answer.
    ///
    /// # Errors
    ///
    /// Slack's error code (`channel_not_found`, `ratelimited`, ...), classified.
    pub async fn api(
        &self,
        method: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ProviderError> {
        self.call(method, query, body, |_| ()).await.map(|(body, ())| body)
    }

    /// [`Slack::api`], with what `headers` reads of the answer's headers.
    async fn call<T>(
        &self,
        method: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        headers: impl Fn(&reqwest::header::HeaderMap) -> T + Sync,
    ) -> Result<(Value, T), ProviderError> {
        let url = format!("{}/{method}", self.base_url);
        self.policy
            .run(PROVIDER, |_| {
                let request = match body {
                    Some(body) => self.http.request(Method::POST, &url).json(body),
                    None => self.http.request(Method::GET, &url).query(query),
                };
                let request = request.bearer_auth(self.token.expose());
                let headers = &headers;
                async move {
                    match request.send().await {
                        Err(e) => transport_error(PROVIDER, &e),
                        Ok(response) => {
                            let read = headers(response.headers());
                            match classify(response).await {
                                Attempt::Done(body) => Attempt::Done((body, read)),
                                Attempt::Retry { error, after } => Attempt::Retry { error, after },
                                Attempt::Fail(error) => Attempt::Fail(error),
                            }
                        }
                    }
                }
            })
            .await
    }

    /// Who the token is (`auth.test`: team and bot user) and the scopes it
    /// has (Slack's `x-oauth-scopes` header).
    ///
    /// # Errors
    ///
    /// `invalid_auth` and the like, classified.
    pub async fn identity(&self) -> Result<(Value, Vec<String>), ProviderError> {
        self.call("auth.test", &[], None, |headers| {
            let scopes = headers.get("x-oauth-scopes").and_then(|v| v.to_str().ok()).unwrap_or_default();
            scopes.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
        })
        .await
    }

    /// Whether a channel of this name (`#sales-priority`) exists and the bot
    /// can see it.
    ///
    /// # Errors
    ///
    /// Slack's error, classified.
    pub async fn channel_exists(&self, name: &str) -> Result<bool, ProviderError> {
        Ok(self.channel_id(name).await?.is_some())
    }

    /// The Slack user id for an email address (cached).
    ///
    /// # Errors
    ///
    /// `users_not_found` and the like, classified.
    pub async fn user_id(&self, email: &str) -> Result<String, ProviderError> {
        let key = email.to_ascii_lowercase();
        if let Some(id) = self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&key) {
            return Ok(id.clone());
        }
        let body = self.api("users.lookupByEmail", &[("email", email)], None).await?;
        let id = body["user"]["id"].as_str().unwrap_or_default().to_string();
        self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, id.clone());
        Ok(id)
    }

    /// The id of a channel given by name (`#sales-priority`), from
    /// `conversations.list` (cached); `None` when no channel has that name.
    async fn channel_id(&self, name: &str) -> Result<Option<String>, ProviderError> {
        let name = name.trim_start_matches('#');
        if let Some(id) = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
            return Ok(Some(id.clone()));
        }
        let mut cursor = String::new();
        loop {
            let query = [("types", "public_channel,private_channel"), ("limit", "1000"), ("cursor", cursor.as_str())];
            let body = self.api("conversations.list", &query, None).await?;
            let mut known = self.channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for channel in body["channels"].as_array().into_iter().flatten() {
                if let (Some(n), Some(id)) = (channel["name"].as_str(), channel["id"].as_str()) {
                    known.insert(n.to_string(), id.to_string());
                }
            }
            if let Some(id) = known.get(name) {
                return Ok(Some(id.clone()));
            }
            cursor = body["response_metadata"]["next_cursor"].as_str().unwrap_or_default().to_string();
            if cursor.is_empty() {
                return Ok(None);
            }
        }
    }

    /// Drops what the caches hold for this person.
    fn forget(&self, email: &str, user: &str) {
        self.users.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&email.to_ascii_lowercase());
        self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(user);
    }

    async fn dm_channel(&self, user: &str) -> Result<String, ProviderError> {
        if let Some(id) = self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(user) {
            return Ok(id.clone());
        }
        let body = self.api("conversations.open", &[], Some(&json!({ "users": user }))).await?;
        let id = body["channel"]["id"].as_str().unwrap_or_default().to_string();
        self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(user.to_string(), id.clone());
        Ok(id)
    }

    async fn post_message(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&str>,
        key: Option<&str>,
    ) -> Result<MessageRef, CapabilityError> {
        let mut body = json!({ "channel": channel, "text": text });
        if let Some(key) = key {
            body["metadata"] = json!({ "event_type": EFFECT_EVENT, "event_payload": { "key": key } });
        }
        if let Some(blocks) = blocks {
            body["blocks"] =
                serde_json::from_str(blocks).map_err(|e| CapabilityError::Invalid(format!("blocks: {e}")))?;
        }
        let answer = self.api("chat.postMessage", &[], Some(&body)).await?;
        Ok(MessageRef {
            channel: answer["channel"].as_str().unwrap_or(channel).to_string(),
            ts: answer["ts"].as_str().unwrap_or_default().to_string(),
        })
    }
}

/// A lookup for a sent message that Slack refused: without the scope (or
/// the channel) we cannot tell, and sending again is better than a lead
/// that never gets its DM. Transient failures stay errors (the node retries).
fn cannot_tell(e: ProviderError) -> Result<Option<MessageRef>, CapabilityError> {
    if matches!(e.class, ErrorClass::Auth | ErrorClass::NotFound | ErrorClass::Invalid) {
        tracing::warn!(error = %e, "cannot check whether a message was sent; sending it");
        Ok(None)
    } else {
        Err(e.into())
    }
}

async fn classify(response: reqwest::Response) -> Attempt<Value> {
    let status = response.status();
    let after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    let code = body["error"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error")).to_string();
    let error = |class| ProviderError::new(PROVIDER, Some(status.as_u16()), code.clone(), String::new(), class);
    if status.as_u16() == 429 {
        return Attempt::Retry { error: error(ErrorClass::Transient), after };
    }
    if status.is_server_error() {
        return Attempt::Retry { error: error(ErrorClass::Transient), after };
    }
    if status.is_success() && body["ok"] == Value::Bool(true) {
        return Attempt::Done(body);
    }
    // Slack answers most errors with HTTP 200 and `ok: false`.
    match code.as_str() {
        "ratelimited" | "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Attempt::Retry { error: error(ErrorClass::Transient), after }
        }
        "users_not_found" | "channel_not_found" | "user_not_found" | "message_not_found" => {
            Attempt::Fail(error(ErrorClass::NotFound))
        }
        "invalid_auth"
        | "not_authed"
        | "account_inactive"
        | "token_revoked"
        | "token_expired"
        | "missing_scope"
        | "not_allowed_token_type" => Attempt::Fail(error(ErrorClass::Auth)),
        _ => Attempt::Fail(error(ErrorClass::Invalid)),
    }
}

#[async_trait::async_trait]
impl Chat for Slack {
    async fn send_dm(
        &self,
        email: &str,
        text: &str,
        blocks: Option<&str>,
        key: Option<&str>,
    ) -> Result<MessageRef, CapabilityError> {
        // Posting to a user id lands in their DM with the app: no
        // `conversations.open` round trip. The DM channel Slack answers
        // with is kept for `find_sent`.
        let user = self.user_id(email).await?;
        let posted = match self.post_message(&user, text, blocks, key).await {
            // The cached user id went stale (the person left and came
            // back): forget it, look again, and send once more.
            Err(CapabilityError::NotFound(_)) => {
                self.forget(email, &user);
                let user = self.user_id(email).await?;
                self.post_message(&user, text, blocks, key).await?
            }
            other => other?,
        };
        self.dms.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(user, posted.channel.clone());
        Ok(posted)
    }

    async fn find_sent(
        &self,
        to: &str,
        text: &str,
        key: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<MessageRef>, CapabilityError> {
        let channel = if to.contains('@') {
            let user = self.user_id(to).await?;
            self.dm_channel(&user).await?
        } else if to.starts_with(['C', 'G', 'D']) {
            to.to_string()
        } else {
            // conversations.history takes ids only.
            match self.channel_id(to).await {
                Ok(Some(id)) => id,
                Ok(None) => return Ok(None),
                Err(e) => return cannot_tell(e),
            }
        };
        // A minute of slack for clocks that disagree.
        let oldest = format!("{}.000000", (since_ms / 1000).saturating_sub(60));
        let body = match self
            .api(
                "conversations.history",
                &[("channel", &channel), ("oldest", &oldest), ("limit", "200"), ("include_all_metadata", "true")],
                None,
            )
            .await
        {
            Ok(body) => body,
            Err(e) => return cannot_tell(e),
        };
        // Slack returns text with &, < and > escaped.
        let unescape = |t: &str| t.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
        let found = body["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| !m["bot_id"].is_null())
            .find(|m| {
                let keyed = m["metadata"]["event_type"] == EFFECT_EVENT
                    && key.is_some_and(|k| m["metadata"]["event_payload"]["key"] == k);
                keyed || m["text"].as_str().is_some_and(|t| t == text || unescape(t) == text)
            })
            .and_then(|m| m["ts"].as_str());
        Ok(found.map(|ts| MessageRef { channel: channel.clone(), ts: ts.to_string() }))
    }

    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&str>,
        key: Option<&str>,
    ) -> Result<MessageRef, CapabilityError> {
        self.post_message(channel, text, blocks, key).await
    }

    async fn update(&self, message: &MessageRef, text: &str, blocks: Option<&str>) -> Result<(), CapabilityError> {
        let mut body = json!({ "channel": message.channel, "ts": message.ts, "text": text });
        if let Some(blocks) = blocks {
            body["blocks"] =
                serde_json::from_str(blocks).map_err(|e| CapabilityError::Invalid(format!("blocks: {e}")))?;
        }
        self.api("chat.update", &[], Some(&body)).await?;
        Ok(())
    }

    async fn open_view(&self, trigger_id: &str, view: &str) -> Result<(), CapabilityError> {
        let view: Value = serde_json::from_str(view).map_err(|e| CapabilityError::Invalid(format!("view: {e}")))?;
        self.api("views.open", &[], Some(&json!({ "trigger_id": trigger_id, "view": view }))).await?;
        Ok(())
    }
}

/// Largest accepted clock difference for a signed Slack request, seconds.
pub const MAX_SIGNATURE_AGE_SECS: i64 = 300;

/// Verifies `X-Slack-Signature` (`v0=` + hex HMAC-SHA256 of
/// `v0:{timestamp}:{body}`) with `X-Slack-Request-Timestamp` within five
/// minutes of `now_secs`.
///
/// # Errors
///
/// Why the request is refused.
pub fn verify_signature(
    signing_secret: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), super::hubspot::SignatureError> {
    use super::hubspot::SignatureError;
    let ts: i64 = timestamp.trim().parse().map_err(|_| SignatureError::Missing("X-Slack-Request-Timestamp"))?;
    if (now_secs - ts).abs() > MAX_SIGNATURE_AGE_SECS {
        return Err(SignatureError::Expired);
    }
    let given = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Missing("X-Slack-Signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

/// Computes a Slack request signature (for tests and the emulator).
pub fn sign(signing_secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(signing_secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}
