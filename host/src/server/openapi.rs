//! The OpenAPI 3.1 document of every route the server answers, served at
//! `GET /api/openapi.json` and committed as `docs/openapi.json` (a test
//! fails when it is stale; `handoff schema --openapi` writes it).
//!
//! Paths are listed here, beside the router they describe (`OPERATIONS`);
//! every request and response body is the JSON Schema of the Rust type the
//! handler reads or writes (schemars), so a changed type changes the
//! document.

use super::api::{
    ApiError, ExecutionsPage, ExecutionsQuery, LeadDetail, LeadQuery, MetricsQuery, PeriodQuery, Retried, RosterView,
    Swept, Timing,
};
use super::intake::Accepted;
use super::{Health, Ready};
use crate::lead::LeadRecord;
use crate::pipeline::model::SignatureScheme;
use crate::pipeline::{PreparedPipeline, Trigger};
use crate::reports::{Metrics, RejectionReport};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// A webhook route a pipeline serves: its path and how its sender signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The path (`/webhooks/hubspot`).
    pub path: String,
    /// Slack's interactions (a form body) or HubSpot-style JSON.
    pub slack: bool,
}

/// The webhook routes of `pipelines`.
pub fn webhooks_of(pipelines: &[Arc<PreparedPipeline>]) -> Vec<Webhook> {
    let mut hooks: Vec<Webhook> = pipelines
        .iter()
        .filter_map(|p| match &p.pipeline.trigger {
            Trigger::Webhook { path, signature, .. } => {
                Some(Webhook { path: path.clone(), slack: *signature == SignatureScheme::Slack })
            }
            _ => None,
        })
        .collect();
    hooks.sort_by(|a, b| a.path.cmp(&b.path));
    hooks.dedup();
    hooks
}

/// What a response carries.
enum Body {
    /// JSON of this schema.
    Json(Value),
    /// Text of this media type.
    Text(&'static str),
    /// Nothing.
    Empty,
}

/// One documented response.
struct Answer {
    status: u16,
    description: &'static str,
    body: Body,
}

fn answer(status: u16, description: &'static str, body: Body) -> Answer {
    Answer { status, description, body }
}

/// Builds the document's schemas, each type once under `components`.
struct Schemas(SchemaGenerator);

impl Schemas {
    fn new() -> Self {
        let settings = SchemaSettings::draft2020_12().with(|s| {
            s.definitions_path = "/components/schemas".into();
        });
        Schemas(settings.into_generator())
    }

    fn of<T: JsonSchema>(&mut self) -> Value {
        self.0.subschema_for::<T>().to_value()
    }

    fn json<T: JsonSchema>(&mut self) -> Body {
        Body::Json(self.of::<T>())
    }

    /// Query parameters from the fields of a query-string type.
    fn query<T: JsonSchema>(&mut self) -> Vec<Value> {
        let schema = self.0.root_schema_for::<T>().to_value();
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, property)| {
                let mut property = property.clone();
                let description = property.as_object_mut().and_then(|p| p.remove("description"));
                // An absent parameter is how a query string says none.
                if let Some(types) = property["type"].as_array() {
                    let types: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                    property["type"] = if types.len() == 1 { types[0].clone() } else { Value::Array(types) };
                }
                if let Some(any) = property.get_mut("anyOf").and_then(Value::as_array_mut) {
                    any.retain(|s| s["type"] != "null");
                    if any.len() == 1 {
                        property = any[0].clone();
                    }
                }
                let mut parameter = json!({
                    "name": name, "in": "query", "required": required.contains(&name.as_str()), "schema": property,
                });
                if let Some(description) = description {
                    parameter["description"] = description;
                }
                parameter
            })
            .collect()
    }
}

/// The errors every `/api` route may answer with, besides its own.
fn api_errors(schemas: &mut Schemas) -> Vec<Answer> {
    vec![
        answer(
            401,
            "No or a wrong API token (`Authorization: Bearer`, when one is configured).",
            schemas.json::<ApiError>(),
        ),
        answer(403, "Refused as cross-origin (see SECURITY.md).", schemas.json::<ApiError>()),
        answer(
            429,
            "Over the per-client request rate; `Retry-After` says when to try again.",
            schemas.json::<ApiError>(),
        ),
        answer(503, "The ledger cannot be read now.", schemas.json::<ApiError>()),
    ]
}

/// One operation: method, path, what it takes and what it answers.
struct Operation {
    method: &'static str,
    path: String,
    id: String,
    summary: String,
    tag: &'static str,
    parameters: Vec<Value>,
    request: Option<(&'static str, Value)>,
    answers: Vec<Answer>,
    secured: bool,
}

fn lead_id_parameter() -> Value {
    json!({"name": "id", "in": "path", "required": true, "description": "The lead's HubSpot contact id.",
           "schema": {"type": "string"}})
}

fn operations(webhooks: &[Webhook], schemas: &mut Schemas) -> Vec<Operation> {
    let mut ops = Vec::new();
    let api = |method, path: &str, id: &str, summary: &str, parameters, answers: Vec<Answer>, schemas: &mut Schemas| {
        let mut answers = answers;
        answers.extend(api_errors(schemas));
        Operation {
            method,
            path: path.to_string(),
            id: id.to_string(),
            summary: summary.to_string(),
            tag: "api",
            parameters,
            request: None,
            answers,
            secured: true,
        }
    };
    ops.push(Operation {
        method: "get",
        path: "/healthz".into(),
        id: "health".into(),
        summary: "The process answers.".into(),
        tag: "operations",
        parameters: Vec::new(),
        request: None,
        answers: vec![answer(200, "Alive.", schemas.json::<Health>())],
        secured: false,
    });
    ops.push(Operation {
        method: "get",
        path: "/readyz".into(),
        id: "ready".into(),
        summary: "What this server serves, plugins paused by their circuit breaker, executions in flight.".into(),
        tag: "operations",
        parameters: Vec::new(),
        request: None,
        answers: vec![answer(200, "Ready.", schemas.json::<Ready>())],
        secured: false,
    });
    ops.push(Operation {
        method: "get",
        path: "/metrics".into(),
        id: "prometheus".into(),
        summary: "Prometheus metrics (OpenMetrics text).".into(),
        tag: "operations",
        parameters: Vec::new(),
        request: None,
        answers: vec![
            answer(200, "The metrics.", Body::Text("application/openmetrics-text; version=1.0.0; charset=utf-8")),
            answer(500, "The metrics could not be encoded.", Body::Empty),
        ],
        secured: false,
    });
    for hook in webhooks {
        let name = hook.path.trim_start_matches('/').replace('/', "-");
        let (summary, request, ok) = if hook.slack {
            (
                "Slack interactivity (a button click, a select, a modal submitted), signed with Slack's v0 signature.",
                (
                    "application/x-www-form-urlencoded",
                    json!({"type": "object", "required": ["payload"],
                           "properties": {"payload": {"type": "string", "description": "The interaction, as JSON."}}}),
                ),
                answer(200, "Stored; it runs once.", Body::Empty),
            )
        } else {
            (
                "Webhook events (HubSpot's Webhooks API array, or a workflow's contact), signed as the pipeline says; each MQL event is stored before the answer.",
                (
                    "application/json",
                    json!({"description": "HubSpot's event array, or a workflow webhook's contact object.",
                           "oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}),
                ),
                answer(200, "Stored (new events run once; redeliveries are recognised).", schemas.json::<Accepted>()),
            )
        };
        ops.push(Operation {
            method: "post",
            path: hook.path.clone(),
            id: format!("webhook-{name}"),
            summary: summary.into(),
            tag: "webhooks",
            parameters: Vec::new(),
            request: Some(request),
            answers: vec![
                ok,
                answer(
                    400,
                    "The body is not what the sender sends; `detail` names the element.",
                    schemas.json::<ApiError>(),
                ),
                answer(
                    401,
                    "The signature is missing, wrong, or older than five minutes; or a replay.",
                    schemas.json::<ApiError>(),
                ),
                answer(408, "The body did not arrive in time.", schemas.json::<ApiError>()),
                answer(413, "The body is too large.", schemas.json::<ApiError>()),
                answer(
                    503,
                    "Too much in flight, or the ledger cannot store it; `Retry-After` when busy.",
                    schemas.json::<ApiError>(),
                ),
            ],
            secured: false,
        });
    }
    let leads = schemas.of::<Vec<LeadRecord>>();
    let q = schemas.query::<LeadQuery>();
    let bad = |schemas: &mut Schemas| {
        answer(400, "A query parameter is wrong; `detail` says which.", schemas.json::<ApiError>())
    };
    let b = bad(schemas);
    ops.push(api(
        "get",
        "/api/leads",
        "leads",
        "Leads by state, most recently changed first.",
        q,
        vec![answer(200, "The leads (timelines empty).", Body::Json(leads)), b],
        schemas,
    ));
    let ok = schemas.json::<LeadDetail>();
    let nf = answer(404, "No such lead.", schemas.json::<ApiError>());
    let bp = answer(400, "The id is not a path segment.", schemas.json::<ApiError>());
    ops.push(api(
        "get",
        "/api/leads/{id}",
        "lead",
        "One lead: its timeline and its timers.",
        vec![lead_id_parameter()],
        vec![answer(200, "The lead.", ok), nf, bp],
        schemas,
    ));
    let ok = schemas.json::<Retried>();
    let bp = answer(400, "The id is not a path segment.", schemas.json::<ApiError>());
    ops.push(api(
        "post",
        "/api/leads/{id}/retry",
        "retry-lead",
        "Runs the lead's failed events again (effects already done are replayed).",
        vec![lead_id_parameter()],
        vec![answer(200, "What was started.", ok), bp],
        schemas,
    ));
    let ok = schemas.json::<Retried>();
    ops.push(api(
        "post",
        "/api/retry-failed",
        "retry-failed",
        "Runs every failed lead's events again.",
        Vec::new(),
        vec![answer(200, "What was started.", ok)],
        schemas,
    ));
    let ok = schemas.json::<Swept>();
    let none = answer(404, "HubSpot is not configured.", schemas.json::<ApiError>());
    let failed = answer(502, "HubSpot could not be searched.", schemas.json::<ApiError>());
    ops.push(api(
        "post",
        "/api/sweep",
        "sweep",
        "Looks in HubSpot for MQLs no webhook delivered, and starts them.",
        Vec::new(),
        vec![answer(200, "What was started.", ok), none, failed],
        schemas,
    ));
    let ok = schemas.json::<ExecutionsPage>();
    let q = schemas.query::<ExecutionsQuery>();
    let b = bad(schemas);
    ops.push(api(
        "get",
        "/api/executions",
        "executions",
        "This server's recent executions, newest first, a page at a time.",
        q,
        vec![answer(200, "A page.", ok), b],
        schemas,
    ));
    let ok = schemas.of::<Vec<Timing>>();
    ops.push(api(
        "get",
        "/api/executions/timings",
        "timings",
        "Recent executions' timings only.",
        Vec::new(),
        vec![answer(200, "The timings.", Body::Json(ok))],
        schemas,
    ));
    let ok = schemas.json::<RosterView>();
    let none = answer(404, "No roster is configured.", schemas.json::<ApiError>());
    ops.push(api(
        "get",
        "/api/roster",
        "roster",
        "Each team's reps, who can take a lead now and why not, who is paused.",
        Vec::new(),
        vec![answer(200, "The roster now.", ok), none],
        schemas,
    ));
    let ok = schemas.json::<RejectionReport>();
    let q = schemas.query::<PeriodQuery>();
    let b = bad(schemas);
    ops.push(api("get", "/api/rejections", "rejections", "Rejections in a period (default: the last 30 days) by reason, source, campaign and rep, and what became of each lead.", q, vec![answer(200, "The report.", ok), b], schemas));
    let ok = schemas.json::<crate::reports::ShadowReport>();
    let q = schemas.query::<super::api::ShadowQuery>();
    let b = bad(schemas);
    ops.push(api(
        "get",
        "/api/shadow",
        "shadow",
        "Shadow pipelines' decisions beside the live ones (newest first), with how often each disagrees.",
        q,
        vec![answer(200, "The decisions.", ok), b],
        schemas,
    ));
    let ok = schemas.json::<Metrics>();
    let q = schemas.query::<MetricsQuery>();
    let b = bad(schemas);
    ops.push(api("get", "/api/metrics", "metrics", "Handoff health for a period (default: the last 7 days): the five metrics overall and by a grouping, with the leads behind each.", q, vec![answer(200, "The metrics.", ok), b], schemas));
    ops.push(api(
        "get",
        "/api/openapi.json",
        "openapi",
        "This document.",
        Vec::new(),
        vec![answer(200, "The OpenAPI 3.1 document.", Body::Json(json!({"type": "object"})))],
        schemas,
    ));
    for (path, id, summary) in [
        ("/", "dashboard", "The dashboard (HTML): the five metrics, trends, leads at risk, reps' load, rejections."),
        ("/leads/{id}", "dashboard-lead", "One lead's page on the dashboard (HTML)."),
    ] {
        let mut parameters = vec![json!({"name": "token", "in": "query", "required": false,
            "description": "The API token; sets the dashboard's cookie and redirects.", "schema": {"type": "string"}})];
        if path.contains("{id}") {
            parameters.push(lead_id_parameter());
        } else {
            parameters.push(json!({"name": "from", "in": "query", "required": false,
                "description": "The week starting then (default: the last 7 days).",
                "schema": {"type": "string", "minLength": 1}}));
        }
        const TEXT: &str = "text/plain; charset=utf-8";
        ops.push(Operation {
            method: "get",
            path: path.into(),
            id: id.into(),
            summary: summary.into(),
            tag: "dashboard",
            parameters,
            request: None,
            answers: vec![
                answer(200, "The page.", Body::Text("text/html; charset=utf-8")),
                answer(303, "The token was right: set as a cookie, and back to the page.", Body::Empty),
                answer(400, "A query parameter is wrong.", Body::Text(TEXT)),
                answer(401, "No or a wrong token.", Body::Text(TEXT)),
                answer(403, "Refused as cross-origin.", schemas.json::<ApiError>()),
                answer(404, "No such lead.", Body::Text(TEXT)),
                answer(503, "The ledger cannot be read now.", Body::Text(TEXT)),
            ],
            secured: true,
        });
    }
    ops
}

/// The document for a server whose pipelines listen at `webhooks`.
pub fn document(webhooks: &[Webhook]) -> Value {
    let mut schemas = Schemas::new();
    let mut paths = Map::new();
    for op in operations(webhooks, &mut schemas) {
        let mut responses = Map::new();
        for a in op.answers {
            let mut response = json!({"description": a.description});
            match a.body {
                Body::Json(schema) => response["content"] = json!({"application/json": {"schema": schema}}),
                Body::Text(media) => response["content"] = json!({media: {"schema": {"type": "string"}}}),
                Body::Empty => {}
            }
            if matches!(a.status, 429 | 503) {
                response["headers"] = json!({"Retry-After": {"description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer"}}});
            }
            responses.insert(a.status.to_string(), response);
        }
        let mut operation = json!({
            "operationId": op.id, "summary": op.summary, "tags": [op.tag], "responses": responses,
        });
        if !op.parameters.is_empty() {
            operation["parameters"] = Value::Array(op.parameters);
        }
        if let Some((media, schema)) = op.request {
            operation["requestBody"] = json!({"required": true, "content": {media: {"schema": schema}}});
        }
        if op.secured {
            // No token configured (loopback only): nothing to send.
            operation["security"] = json!([{"bearer": []}, {}]);
        }
        let entry = paths.entry(op.path).or_insert_with(|| json!({}));
        entry[op.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Handoff",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Handoff's HTTP interface: webhooks in (HubSpot, Slack interactivity), health, the ledger's API and the dashboard. Every error is JSON: {\"error\": code, \"detail\": words}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas.0.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                "description": "HANDOFF_API_TOKEN; required when the server listens beyond loopback."}},
        },
    })
}

/// The document of the shipped pipelines' routes: what `docs/openapi.json`
/// holds.
pub fn shipped_document() -> Value {
    document(&[
        Webhook { path: "/slack/interactions".into(), slack: true },
        Webhook { path: "/webhooks/hubspot".into(), slack: false },
    ])
}
