//! The Anthropic Messages API emulator. Replies are derived
//! deterministically from the prompt, so tests can predict them.

use super::EmulatorState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn routes() -> Router<Arc<EmulatorState>> {
    Router::new().route("/v1/messages", post(messages)).route("/v1/models/{model}", get(model))
}

/// The models the emulated account may use.
pub const MODELS: [&str; 3] = ["claude-sandbox", "claude-haiku-4-5", "claude-sonnet-4-5"];

/// `GET /v1/models/{model}`: one model, or `not_found_error`.
async fn model(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, Path(model): Path<String>) -> Response {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.settings().token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if !MODELS.contains(&model.as_str()) {
        return error(StatusCode::NOT_FOUND, "not_found_error", &format!("model: {model}"));
    }
    Json(json!({"type": "model", "id": model, "display_name": model, "created_at": "2025-10-01T00:00:00Z"}))
        .into_response()
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({"type": "error", "error": {"type": kind, "message": message}}))).into_response()
}

async fn messages(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    if key != Some(state.settings().token.as_str()) {
        return error(StatusCode::UNAUTHORIZED, "authentication_error", "invalid x-api-key");
    }
    if headers.get("anthropic-version").is_none() {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "anthropic-version: header is required");
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "request body is not valid JSON");
    };
    if request["model"].as_str().is_none_or(str::is_empty) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "model: Field required");
    }
    if request["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return error(StatusCode::BAD_REQUEST, "invalid_request_error", "max_tokens: Field required");
    }
    let prompt: String = request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().map_or_else(|| m["content"].to_string(), str::to_string))
        .collect::<Vec<_>>()
        .join("\n");
    if prompt.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "messages: at least one user message is required",
        );
    }
    state.world().anthropic_calls += 1;
    let text = reply(&prompt, request["max_tokens"].as_u64().unwrap_or(400));
    let hash = super::fixture::fnv(&prompt);
    Json(json!({
        "id": format!("msg_sandbox{hash:08x}"),
        "type": "message",
        "role": "assistant",
        "model": request["model"],
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": prompt.split_whitespace().count(), "output_tokens": text.split_whitespace().count()},
    }))
    .into_response()
}

/// A deterministic "summary": the prompt's `key: value` facts woven into
/// sentences, or its opening words, within `max_tokens` words.
pub fn reply(prompt: &str, max_tokens: u64) -> String {
    let facts: Vec<(String, String)> = prompt
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches(['-', '*', ' ']);
            let (key, value) = line.split_once(':')?;
            let value = value.trim();
            (!value.is_empty() && key.len() < 40).then(|| (key.trim().to_lowercase(), value.to_string()))
        })
        .collect();
    let text = if facts.is_empty() {
        let opening: Vec<&str> = prompt.split_whitespace().take(20).collect();
        format!("In short: {}.", opening.join(" "))
    } else {
        let parts: Vec<String> = facts.iter().take(6).map(|(k, v)| format!("{k} {v}")).collect();
        format!("Sandbox summary: {}.", parts.join("; "))
    };
    text.split_whitespace().take(max_tokens as usize).collect::<Vec<_>>().join(" ")
}
