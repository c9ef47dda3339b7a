//! Fault injection (error statuses with each provider's real error body,
//! added latency, hangs) and the request log, as one layer per provider.

use super::{EmulatorState, RequestRecord};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Assigned when added.
    #[serde(default)]
    pub id: u64,
    /// `hubspot`, `salesforce`, `slack`, `anthropic`, `smtp`, or `*`.
    pub provider: String,
    /// Applies only to requests whose path contains this (e.g.
    /// `chat.postMessage`, `/sobjects/Lead`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Applies only to this HTTP method.
    #[serde(default)]
    pub method: Option<String>,
    /// What it does.
    pub kind: FaultKind,
    /// Share of matching requests affected, 0 to 1.
    #[serde(default = "always")]
    pub rate: f64,
    /// How many requests it affects before it expires; unset: until removed.
    #[serde(default)]
    pub times: Option<u32>,
}

fn always() -> f64 {
    1.0
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum FaultKind {
    /// Answer with this status and the provider's error body for it
    /// (`retry_after` in seconds adds a `Retry-After` header). For SMTP,
    /// the status is an SMTP reply code (451, 550).
    Status {
        /// The status (or SMTP reply code).
        status: u16,
        /// Seconds for `Retry-After`.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Answer normally, `ms` later.
    Latency {
        /// The delay.
        ms: u64,
    },
    /// Never answer.
    Hang,
}

/// The active faults.
#[derive(Debug, Default)]
pub struct Faults {
    rules: Vec<Fault>,
    next_id: u64,
}

impl Faults {
    /// Adds a fault; returns its id.
    pub fn add(&mut self, mut fault: Fault) -> u64 {
        self.next_id += 1;
        fault.id = self.next_id;
        self.rules.push(fault);
        self.next_id
    }

    /// Removes every fault.
    pub fn clear(&mut self) {
        self.rules.clear();
    }

    /// The active faults.
    pub fn list(&self) -> &[Fault] {
        &self.rules
    }

    /// The fault that applies to this request, if any (consuming one of its
    /// `times`).
    pub fn take(&mut self, provider: &str, method: &str, path: &str) -> Option<FaultKind> {
        let index = self.rules.iter().position(|f| {
            (f.provider == "*" || f.provider == provider)
                && f.endpoint.as_deref().is_none_or(|e| path.contains(e))
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && (f.rate >= 1.0 || fastrand::f64() < f.rate)
        })?;
        let kind = self.rules[index].kind.clone();
        if let Some(times) = &mut self.rules[index].times {
            *times = times.saturating_sub(1);
            if *times == 0 {
                self.rules.remove(index);
            }
        }
        Some(kind)
    }
}

#[derive(Clone)]
struct Layer {
    state: Arc<EmulatorState>,
    provider: &'static str,
}

/// `router` with `provider`'s fault injection and request logging.
pub fn layered(
    router: Router<Arc<EmulatorState>>,
    provider: &'static str,
    state: Arc<EmulatorState>,
) -> Router<Arc<EmulatorState>> {
    router.layer(axum::middleware::from_fn_with_state(Layer { state, provider }, apply))
}

async fn apply(State(layer): State<Layer>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let fault = layer.state.world().faults.take(layer.provider, &method, &path);
    let response = match fault {
        Some(FaultKind::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(FaultKind::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(request).await
        }
        Some(FaultKind::Status { status, retry_after }) => error_response(layer.provider, status, retry_after),
        None => next.run(request).await,
    };
    layer.state.world().requests.push(RequestRecord {
        provider: layer.provider,
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

/// The provider's own error for `status`.
pub fn error_response(provider: &str, status: u16, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = match provider {
        "hubspot" if status == 429 => json!({
            "status": "error",
            "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(),
            "policyName": "TEN_SECONDLY_ROLLING",
        }),
        "hubspot" => json!({
            "status": "error",
            "message": code.canonical_reason().unwrap_or("error"),
            "correlationId": correlation_id(),
            "category": match status { 401 => "INVALID_AUTHENTICATION", 403 => "MISSING_SCOPES", 404 => "OBJECT_NOT_FOUND", 423 => "LOCKED", 400 => "VALIDATION_ERROR", _ => "INTERNAL_ERROR" },
        }),
        "salesforce" => {
            let (error_code, message) = match status {
                401 => ("INVALID_SESSION_ID", "Session expired or invalid"),
                403 => ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
                404 => ("NOT_FOUND", "The requested resource does not exist"),
                503 => ("SERVER_UNAVAILABLE", "Server temporarily unavailable"),
                _ => (
                    "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact support",
                ),
            };
            json!([{ "message": message, "errorCode": error_code }])
        }
        "slack" => json!({ "ok": false, "error": if status == 429 { "ratelimited" } else { "service_unavailable" } }),
        "anthropic" => {
            let kind = match status {
                400 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            };
            json!({ "type": "error", "error": { "type": kind, "message": code.canonical_reason().unwrap_or("Overloaded") } })
        }
        _ => json!({ "error": status }),
    };
    let mut response = (code, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

/// A HubSpot-style correlation id.
pub fn correlation_id() -> String {
    let n = fastrand::u128(..);
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
