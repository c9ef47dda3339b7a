//! The Slack Web API emulator: users.lookupByEmail, conversations.open,
//! chat.postMessage and chat.update with Block Kit checks, views.open (a
//! trigger id lasts three seconds), bearer auth,
//! HTTP 200 `ok: false` errors, and per-channel rate limits (429 with
//! Retry-After).

use super::fixture::{SeedChannel, SeedSlackUser};
use super::salesforce::form_decode;
use super::{EmulatorState, bearer};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

/// A Slack user.
#[derive(Debug, Clone, Serialize)]
pub struct SlackUser {
    /// `U...`.
    pub id: String,
    /// Their email.
    pub email: String,
    /// Their real name.
    pub name: String,
}

/// A channel or DM.
#[derive(Debug, Clone, Serialize)]
pub struct Channel {
    /// `C...` for a channel, `D...` for a DM.
    pub id: String,
    /// A channel's name (none for a DM).
    pub name: Option<String>,
    /// For a DM, the user on the other side.
    pub user: Option<String>,
}

/// A posted message.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// The channel or DM it is in.
    pub channel: String,
    /// Its timestamp (its id within the channel).
    pub ts: String,
    /// Its text.
    pub text: String,
    /// Its Block Kit blocks.
    pub blocks: Option<Value>,
    /// For a DM, the recipient's email.
    pub recipient: Option<String>,
    /// How many times it was updated.
    pub edits: u32,
    /// Its message metadata (`event_type`, `event_payload`), kept across
    /// updates; `conversations.history` shows it with `include_all_metadata`.
    pub metadata: Option<Value>,
    /// When the emulator took it, in microseconds of the machine's wall
    /// clock (not the sandbox clock): for measuring latency end to end.
    pub received_at_us: i64,
}

/// A modal opened with views.open.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// `V...`.
    pub id: String,
    /// The trigger id it was opened with.
    pub trigger_id: String,
    /// The view as sent.
    pub view: Value,
}

/// How long a trigger id can open a modal, in milliseconds.
pub const TRIGGER_TTL_MS: i64 = 3_000;

/// Slack's data.
#[derive(Debug, Default)]
pub struct Data {
    /// The workspace's people.
    pub users: Vec<SlackUser>,
    /// Channels and DMs by id.
    pub channels: BTreeMap<String, Channel>,
    /// Every message, in order.
    pub messages: Vec<Message>,
    /// Every modal opened, in order.
    pub views: Vec<View>,
    next_ts: u64,
    buckets: HashMap<String, (f64, Instant)>,
}

impl Data {
    /// Data from the fixture.
    pub fn seed(channels: &[SeedChannel], users: &[SeedSlackUser]) -> Self {
        let mut data = Data::default();
        for c in channels {
            data.channels.insert(c.id.clone(), Channel { id: c.id.clone(), name: Some(c.name.clone()), user: None });
        }
        data.users = users
            .iter()
            .map(|u| SlackUser { id: u.id.clone(), email: u.email.clone(), name: u.name.clone() })
            .collect();
        data
    }

    /// The DM channel with a user, opened if need be (`conversations.open`,
    /// or `chat.postMessage` to a user id, which posts in the user's DM with
    /// the app).
    fn open_dm(&mut self, user: &str) -> Option<String> {
        if !self.users.iter().any(|u| u.id == user) {
            return None;
        }
        let id = format!("D{}", user.trim_start_matches(['U', 'W']));
        self.channels.entry(id.clone()).or_insert(Channel { id: id.clone(), name: None, user: Some(user.to_string()) });
        Some(id)
    }

    fn resolve_channel(&self, channel: &str) -> Option<String> {
        if self.channels.contains_key(channel) {
            return Some(channel.to_string());
        }
        let name = channel.trim_start_matches('#');
        self.channels.values().find(|c| c.name.as_deref() == Some(name)).map(|c| c.id.clone())
    }

    fn recipient(&self, channel: &str) -> Option<String> {
        let user = self.channels.get(channel)?.user.as_ref()?;
        self.users.iter().find(|u| &u.id == user).map(|u| u.email.clone())
    }

    /// The `block_actions` payload Slack sends when the person a DM went to
    /// clicks the element `action_id` in `message` (a button, or a select
    /// with the option whose value is `option`); none when the message has
    /// no such element or is not a DM.
    pub fn block_action(&self, message: &Message, action_id: &str, option: Option<&str>, now_ms: i64) -> Option<Value> {
        let user_id = self.channels.get(&message.channel)?.user.clone()?;
        let email = self.users.iter().find(|u| u.id == user_id)?.email.clone();
        self.block_action_by(&email, message, action_id, option, now_ms)
    }

    /// The `block_actions` payload Slack sends when the workspace member
    /// with this email clicks an element of `message` (a DM or a channel
    /// post); none when there is no such member or element.
    pub fn block_action_by(
        &self,
        email: &str,
        message: &Message,
        action_id: &str,
        option: Option<&str>,
        now_ms: i64,
    ) -> Option<Value> {
        let user = self.users.iter().find(|u| u.email == email)?;
        let (block, element) = message.blocks.as_ref()?.as_array()?.iter().find_map(|block| {
            let element = block["elements"].as_array()?.iter().find(|e| e["action_id"] == action_id)?;
            Some((block, element))
        })?;
        let action_ts = format!("{}.{:06}", now_ms / 1000, (now_ms % 1000) * 1000);
        let mut action = json!({
            "action_id": action_id, "block_id": block["block_id"], "type": element["type"], "action_ts": action_ts,
        });
        if element["type"] == "static_select" {
            let selected = element["options"].as_array()?.iter().find(|o| o["value"].as_str() == option)?;
            action["selected_option"] = selected.clone();
        } else {
            action["value"] = element["value"].clone();
            action["text"] = element["text"].clone();
        }
        let handle = user.email.split('@').next().unwrap_or_default();
        Some(json!({
            "type": "block_actions",
            "user": {"id": user.id, "username": handle, "name": handle, "team_id": "T0HANDOFF"},
            "api_app_id": "A0HANDOFF",
            "token": "verification-token-unused",
            "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel, "is_ephemeral": false},
            "trigger_id": format!("{}.{}.{}", now_ms, self.messages.len(), fastrand::u64(..)),
            "team": {"id": "T0HANDOFF", "domain": "handoff-demo"},
            "channel": {"id": message.channel, "name": "directmessage"},
            "message": {"type": "message", "user": "U0HANDOFFBOT", "bot_id": "B0HANDOFF", "ts": message.ts, "text": message.text, "blocks": message.blocks},
            "response_url": format!("https://hooks.slack.com/actions/T0HANDOFF/{}/unused", message.ts),
            "actions": [action],
        }))
    }

    /// The `view_submission` payload Slack sends when the member with this
    /// email submits modal `view_id` with `values` (its
    /// `state.values`: block id → action id → `{"type", "value"}`); none
    /// when there is no such member or modal.
    pub fn view_submission(&self, email: &str, view_id: &str, values: &Value, now_ms: i64) -> Option<Value> {
        let user = self.users.iter().find(|u| u.email == email)?;
        let opened = self.views.iter().find(|v| v.id == view_id)?;
        let handle = user.email.split('@').next().unwrap_or_default();
        let mut view = opened.view.clone();
        view["id"] = json!(opened.id);
        view["team_id"] = json!("T0HANDOFF");
        view["state"] = json!({ "values": values });
        view["hash"] = json!(format!("{now_ms}.{}", opened.id));
        Some(json!({
            "type": "view_submission",
            "team": {"id": "T0HANDOFF", "domain": "handoff-demo"},
            "user": {"id": user.id, "username": handle, "name": handle, "team_id": "T0HANDOFF"},
            "api_app_id": "A0HANDOFF",
            "token": "verification-token-unused",
            "trigger_id": format!("{}.{}.{}", now_ms, self.views.len(), fastrand::u64(..)),
            "view": view,
            "response_urls": [],
        }))
    }

    /// Token bucket per channel: `burst` messages, refilled at one a second.
    fn take_token(&mut self, channel: &str, burst: u32) -> bool {
        if burst == 0 {
            return true;
        }
        let now = Instant::now();
        let (tokens, last) = self.buckets.entry(channel.to_string()).or_insert((f64::from(burst), now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64()).min(f64::from(burst));
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The Web API routes, under `/slack/api`.
pub fn routes() -> Router<Arc<EmulatorState>> {
    Router::new().route("/{method}", any(method))
}

fn fail(error: &str) -> Response {
    Json(json!({ "ok": false, "error": error })).into_response()
}

/// Arguments from the query string, a JSON body or a form body.
fn arguments(
    headers: &HeaderMap,
    query: HashMap<String, String>,
    body: &Bytes,
) -> Result<Map<String, Value>, Response> {
    let mut args: Map<String, Value> = query.into_iter().map(|(k, v)| (k, Value::String(v))).collect();
    if body.is_empty() {
        return Ok(args);
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => args.extend(map),
            _ => return Err(fail("invalid_json")),
        }
    } else {
        for (k, v) in form_decode(body) {
            let value =
                if k == "blocks" { serde_json::from_str(&v).unwrap_or(Value::String(v)) } else { Value::String(v) };
            args.insert(k, value);
        }
    }
    Ok(args)
}

/// One Web API call. Every answer to a signed-in call carries the token's
/// scopes in `x-oauth-scopes`, as Slack's do.
async fn method(
    State(state): State<Arc<EmulatorState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let scopes = state.settings().slack_scopes.join(",");
    let mut response = answer(&state, &method, &headers, query, &body);
    if bearer(&headers).is_some()
        && let Ok(value) = HeaderValue::from_str(&scopes)
    {
        response.headers_mut().insert("x-oauth-scopes", value);
    }
    response
}

fn answer(
    state: &EmulatorState,
    method: &str,
    headers: &HeaderMap,
    query: HashMap<String, String>,
    body: &Bytes,
) -> Response {
    let settings = state.settings();
    match bearer(headers) {
        None => return fail("not_authed"),
        Some(token) if token != settings.token => return fail("invalid_auth"),
        Some(_) => {}
    }
    let args = match arguments(headers, query, body) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let text = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut world = state.world();
    let data = &mut world.slack;
    match method {
        "auth.test" => Json(json!({
            "ok": true, "url": "https://handoff-sandbox.slack.com/", "team": "Handoff sandbox", "user": "handoff",
            "team_id": "T0HANDOFF", "user_id": "U0HANDOFF", "bot_id": "B0HANDOFF", "is_enterprise_install": false,
        }))
        .into_response(),
        "users.lookupByEmail" => {
            let email = text("email");
            match data.users.iter().find(|u| u.email.eq_ignore_ascii_case(&email)) {
                Some(user) => Json(json!({
                    "ok": true,
                    "user": {
                        "id": user.id, "team_id": "T0HANDOFF", "name": user.email.split('@').next().unwrap_or_default(),
                        "deleted": false, "real_name": user.name, "tz": "Etc/UTC",
                        "profile": { "email": user.email, "real_name": user.name, "display_name": user.name },
                        "is_bot": false,
                    }
                }))
                .into_response(),
                None => fail("users_not_found"),
            }
        }
        "conversations.open" => {
            let users = text("users");
            let user = users.split(',').next().unwrap_or_default().trim().to_string();
            let Some(id) = data.open_dm(&user) else {
                return fail("user_not_found");
            };
            Json(json!({ "ok": true, "channel": { "id": id } })).into_response()
        }
        "chat.postMessage" => {
            let target = text("channel");
            let dm = if target.starts_with(['U', 'W']) { data.open_dm(&target) } else { None };
            let Some(channel) = dm.or_else(|| data.resolve_channel(&target)) else {
                return fail("channel_not_found");
            };
            let blocks = args.get("blocks").cloned().filter(|b| !b.is_null());
            if let Err(e) = check_message(&text("text"), blocks.as_ref()) {
                return fail(e);
            }
            if !data.take_token(&channel, settings.slack_channel_burst) {
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, Json(json!({"ok": false, "error": "ratelimited"}))).into_response();
                response.headers_mut().insert("retry-after", HeaderValue::from(1));
                return response;
            }
            data.next_ts += 1;
            let ts = format!("{}.{:06}", state.clock.now_ms() / 1000, data.next_ts % 1_000_000);
            let recipient = data.recipient(&channel);
            data.messages.push(Message {
                channel: channel.clone(),
                ts: ts.clone(),
                text: text("text"),
                blocks: blocks.clone(),
                recipient,
                edits: 0,
                metadata: args.get("metadata").cloned().filter(|m| m["event_type"].is_string()),
                received_at_us: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            });
            Json(json!({
                "ok": true,
                "channel": channel,
                "ts": ts,
                "message": { "type": "message", "text": text("text"), "user": "U0HANDOFFBOT", "bot_id": "B0HANDOFF", "ts": ts, "blocks": blocks },
            }))
            .into_response()
        }
        "views.open" => {
            // A trigger id reads `<ms issued>.<n>.<random>`; it opens one
            // modal within three seconds.
            let trigger = text("trigger_id");
            let Some(issued) = trigger.split('.').next().and_then(|t| t.parse::<i64>().ok()) else {
                return fail("invalid_trigger_id");
            };
            if state.clock.now_ms() - issued > TRIGGER_TTL_MS || data.views.iter().any(|v| v.trigger_id == trigger) {
                return fail("expired_trigger_id");
            }
            let view = match args.get("view") {
                Some(Value::Object(view)) => Value::Object(view.clone()),
                Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
                    Ok(view @ Value::Object(_)) => view,
                    _ => return fail("invalid_arguments"),
                },
                _ => return fail("invalid_arguments"),
            };
            let title_ok = view["title"]["text"].as_str().is_some_and(|t| !t.is_empty() && t.chars().count() <= 24);
            let blocks_ok = view["blocks"].as_array().is_some_and(|b| b.len() <= 100);
            if view["type"] != "modal" || !title_ok || !blocks_ok {
                return fail("invalid_arguments");
            }
            if view["private_metadata"].as_str().is_some_and(|m| m.len() > 3000) {
                return fail("invalid_arguments");
            }
            let id = format!("V{:010}", data.views.len() + 1);
            data.views.push(View { id: id.clone(), trigger_id: trigger, view: view.clone() });
            let mut shown = view;
            shown["id"] = json!(id);
            Json(json!({ "ok": true, "view": shown })).into_response()
        }
        "conversations.list" => {
            // Public and private channels (no DMs), one page; a cursor is
            // the index to start from.
            let start = text("cursor").parse::<usize>().unwrap_or(0);
            let limit = text("limit").parse::<usize>().unwrap_or(100).clamp(1, 1000);
            let named: Vec<&Channel> = data.channels.values().filter(|c| c.name.is_some()).collect();
            let page: Vec<Value> = named
                .iter()
                .skip(start)
                .take(limit)
                .map(|c| json!({"id": c.id, "name": c.name, "is_channel": true, "is_archived": false}))
                .collect();
            let next = if start + limit < named.len() { (start + limit).to_string() } else { String::new() };
            Json(json!({ "ok": true, "channels": page, "response_metadata": { "next_cursor": next } })).into_response()
        }
        "conversations.history" => {
            // Ids only, as in Slack; newest first; `oldest` is exclusive.
            let channel = text("channel");
            if !data.channels.contains_key(&channel) {
                return fail("channel_not_found");
            }
            let oldest = text("oldest").parse::<f64>().unwrap_or(0.0);
            let limit = text("limit").parse::<usize>().unwrap_or(100).clamp(1, 999);
            let with_metadata = matches!(text("include_all_metadata").as_str(), "true" | "1");
            let messages: Vec<Value> = data
                .messages
                .iter()
                .rev()
                .filter(|m| m.channel == channel && m.ts.parse::<f64>().unwrap_or(0.0) > oldest)
                .take(limit)
                .map(|m| {
                    let mut message = json!({"type": "message", "user": "U0HANDOFFBOT", "bot_id": "B0HANDOFF", "text": m.text, "ts": m.ts, "blocks": m.blocks});
                    if let (true, Some(metadata)) = (with_metadata, &m.metadata) {
                        message["metadata"] = metadata.clone();
                    }
                    message
                })
                .collect();
            Json(json!({ "ok": true, "messages": messages, "has_more": false, "pin_count": 0 })).into_response()
        }
        "chat.update" => {
            let Some(channel) = data.resolve_channel(&text("channel")) else {
                return fail("channel_not_found");
            };
            let blocks = args.get("blocks").cloned().filter(|b| !b.is_null());
            if let Err(e) = check_message(&text("text"), blocks.as_ref()) {
                return fail(e);
            }
            let ts = text("ts");
            let Some(message) = data.messages.iter_mut().find(|m| m.channel == channel && m.ts == ts) else {
                return fail("message_not_found");
            };
            message.text = text("text");
            // Text without blocks removes the old blocks, as in Slack.
            message.blocks.clone_from(&blocks);
            message.edits += 1;
            Json(json!({ "ok": true, "channel": channel, "ts": ts, "text": message.text, "message": { "text": message.text, "blocks": blocks } }))
                .into_response()
        }
        _ => fail("unknown_method"),
    }
}

/// Slack's message checks: some text or blocks, size limits, Block Kit
/// shapes.
fn check_message(text: &str, blocks: Option<&Value>) -> Result<(), &'static str> {
    if text.len() > 40_000 {
        return Err("msg_too_long");
    }
    let Some(blocks) = blocks else {
        return if text.is_empty() { Err("no_text") } else { Ok(()) };
    };
    let Some(list) = blocks.as_array() else {
        return Err("invalid_blocks_format");
    };
    if list.len() > 50 {
        return Err("invalid_blocks");
    }
    for block in list {
        let valid = match block["type"].as_str() {
            Some("section") => {
                let text_ok = block["text"]["text"].as_str().is_none_or(|t| t.chars().count() <= 3000);
                let fields_ok = block["fields"].as_array().is_none_or(|f| f.len() <= 10);
                text_ok && fields_ok && (block.get("text").is_some() || block.get("fields").is_some())
            }
            Some("actions") => block["elements"]
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.len() <= 25 && e.iter().all(valid_element)),
            Some("context") => block["elements"].as_array().is_some_and(|e| !e.is_empty() && e.len() <= 10),
            Some("header") => {
                block["text"]["type"] == "plain_text"
                    && block["text"]["text"].as_str().is_some_and(|t| t.chars().count() <= 150)
            }
            Some("divider" | "image" | "input" | "rich_text") => true,
            _ => false,
        };
        if !valid {
            return Err("invalid_blocks");
        }
    }
    Ok(())
}

fn valid_element(element: &Value) -> bool {
    match element["type"].as_str() {
        Some("button") => element["text"]["type"] == "plain_text" && element["action_id"].is_string(),
        Some("static_select") => {
            element["action_id"].is_string()
                && element["options"].as_array().is_some_and(|o| !o.is_empty() && o.len() <= 100)
        }
        Some(_) => true,
        None => false,
    }
}
