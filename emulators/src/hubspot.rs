//! The HubSpot CRM v3 emulator: contacts (read, create, update, search,
//! batch read), static list membership, bearer auth, the ten-second rolling
//! and search rate limits, and HubSpot's error bodies.

use super::faults::correlation_id;
use super::fixture::{HubSpotFixture, SeedProperty};
use super::{EmulatorState, bearer};
use crate::time;

/// HubSpot's lifecycle stages, in order.
const LIFECYCLE_STAGES: [&str; 8] = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A stored contact.
#[derive(Debug, Clone)]
pub struct StoredContact {
    pub id: String,
    /// Property values, all strings.
    pub properties: BTreeMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// HubSpot's data and rate-limit windows.
#[derive(Debug, Default)]
pub struct Data {
    pub contacts: BTreeMap<u64, StoredContact>,
    /// list id → (name, member contact ids).
    pub lists: BTreeMap<String, (String, BTreeSet<String>)>,
    /// list id → processing type, where it is not `MANUAL`.
    pub list_types: BTreeMap<String, String>,
    /// Contact properties by name: the fixture's, and every one a seeded
    /// contact carries (as text).
    pub properties: BTreeMap<String, SeedProperty>,
    next_id: u64,
    window: VecDeque<Instant>,
    search_window: VecDeque<Instant>,
}

impl Data {
    /// Data from the fixture.
    pub fn seed(fixture: &HubSpotFixture, now_ms: i64) -> Self {
        let mut data = Data::default();
        for seed in &fixture.contacts {
            let id: u64 = seed.id.parse().unwrap_or(0);
            let mut properties: BTreeMap<String, String> =
                seed.properties.iter().filter_map(|(k, v)| property_text(v).map(|text| (k.clone(), text))).collect();
            stamp_mql_date(&mut properties, now_ms);
            data.contacts
                .insert(id, StoredContact { id: seed.id.clone(), properties, created_at: now_ms, updated_at: now_ms });
            data.next_id = data.next_id.max(id);
        }
        for list in &fixture.lists {
            data.lists.insert(list.list_id.clone(), (list.name.clone(), BTreeSet::new()));
            if let Some(kind) = &list.processing_type {
                data.list_types.insert(list.list_id.clone(), kind.clone());
            }
        }
        for property in &fixture.properties {
            data.properties.insert(property.name.clone(), property.clone());
        }
        // Every property a seeded contact carries exists, as text, and so do
        // HubSpot's standard ones the host writes.
        let carried = data.contacts.values().flat_map(|c| c.properties.keys().cloned());
        for name in carried.chain(["email", "firstname", "lastname", "company"].map(String::from)).collect::<Vec<_>>() {
            data.properties.entry(name.clone()).or_insert(SeedProperty {
                name,
                kind: "string".into(),
                options: Vec::new(),
            });
        }
        data
    }

    /// Creates a contact from properties; returns its id.
    pub fn create(&mut self, properties: BTreeMap<String, String>, now_ms: i64) -> String {
        self.next_id += 1;
        let id = self.next_id.to_string();
        self.contacts
            .insert(self.next_id, StoredContact { id: id.clone(), properties, created_at: now_ms, updated_at: now_ms });
        id
    }

    /// The contact with this id or email.
    pub fn find(&self, key: &str, by_email: bool) -> Option<&StoredContact> {
        if by_email {
            self.contacts.values().find(|c| c.properties.get("email").is_some_and(|e| e.eq_ignore_ascii_case(key)))
        } else {
            key.parse().ok().and_then(|id| self.contacts.get(&id))
        }
    }

    fn find_mut(&mut self, key: &str) -> Option<&mut StoredContact> {
        key.parse().ok().and_then(|id| self.contacts.get_mut(&id))
    }
}

/// The property HubSpot sets when a contact becomes an MQL.
pub const MQL_DATE: &str = "hs_lifecyclestage_marketingqualifiedlead_date";

/// Sets the MQL date the way HubSpot does when the stage becomes MQL.
fn stamp_mql_date(properties: &mut BTreeMap<String, String>, now_ms: i64) {
    if properties.get("lifecyclestage").map(String::as_str) == Some("marketingqualifiedlead")
        && !properties.contains_key(MQL_DATE)
    {
        properties.insert(MQL_DATE.into(), now_ms.to_string());
    }
}

fn property_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

pub fn routes() -> Router<Arc<EmulatorState>> {
    Router::new()
        .route("/crm/v3/objects/contacts", post(create_contact))
        .route("/crm/v3/objects/contacts/search", post(search))
        .route("/crm/v3/objects/contacts/batch/read", post(batch_read))
        .route("/crm/v3/objects/contacts/{id}", get(get_contact).patch(update_contact))
        .route("/crm/v3/lists/{list_id}/memberships/add", put(add_to_list))
        .route("/crm/v3/lists/{list_id}", get(get_list))
        .route("/crm/v3/properties/contacts/{name}", get(get_property))
        .route("/oauth/v2/private-apps/get/access-token-info", post(token_info))
}

/// `POST /oauth/v2/private-apps/get/access-token-info`: what a private
/// app's token may do (`{"tokenKey": ...}` in, its hub and scopes out).
async fn token_info(State(state): State<Arc<EmulatorState>>, body: Bytes) -> Response {
    let settings = state.settings();
    let token = serde_json::from_slice::<Value>(&body).ok().and_then(|v| v["tokenKey"].as_str().map(str::to_string));
    match token {
        Some(token) if token == settings.token => Json(json!({
            "userId": 7_100_001, "hubId": HUB_ID, "appId": 3_100_001, "scopes": settings.hubspot_scopes,
        }))
        .into_response(),
        Some(_) => error(StatusCode::UNAUTHORIZED, "INVALID_AUTHENTICATION", "The access token is not valid."),
        None => error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON: `tokenKey` is required"),
    }
}

/// The emulated portal's id.
const HUB_ID: u64 = 44_000_001;

/// `GET /crm/v3/properties/contacts/{name}`: one property's definition.
async fn get_property(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let world = state.world();
    let response = match world.hubspot.properties.get(&name) {
        Some(p) => {
            let field_type = match p.kind.as_str() {
                "enumeration" => "select",
                "number" => "number",
                "datetime" | "date" => "date",
                _ => "text",
            };
            let options: Vec<Value> = p
                .options
                .iter()
                .enumerate()
                .map(|(i, o)| json!({"label": o, "value": o, "displayOrder": i, "hidden": false}))
                .collect();
            Json(json!({
                "name": p.name, "label": p.name, "type": p.kind, "fieldType": field_type,
                "groupName": "contactinformation", "options": options, "hidden": false,
                "modificationMetadata": {"readOnlyValue": false, "archivable": true, "readOnlyDefinition": false},
            }))
            .into_response()
        }
        None => error(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            &format!("Unable to find property {name} for object type 0-1"),
        ),
    };
    with_headers(rate, response)
}

/// `GET /crm/v3/lists/{list_id}`: a list's definition.
async fn get_list(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(list_id): Path<String>,
) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let world = state.world();
    let response = match world.hubspot.lists.get(&list_id) {
        Some((name, members)) => Json(json!({"list": {
            "listId": list_id, "name": name, "objectTypeId": "0-1",
            "processingType": world.hubspot.list_types.get(&list_id).map_or("MANUAL", String::as_str),
            "processingStatus": "COMPLETE", "size": members.len(),
        }}))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", &format!("List {list_id} does not exist")),
    };
    with_headers(rate, response)
}

fn error(status: StatusCode, category: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"status": "error", "message": message, "correlationId": correlation_id(), "category": category})),
    )
        .into_response()
}

/// Auth, then the rate limits; returns the rate-limit headers to attach.
fn admit(state: &EmulatorState, headers: &HeaderMap, search: bool) -> Result<HeaderMap, Response> {
    let settings = state.settings();
    match bearer(headers) {
        Some(token) if token == settings.token => {}
        Some(_) => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "The OAuth token used to make this call expired.",
            ));
        }
        None => {
            return Err(error(
                StatusCode::UNAUTHORIZED,
                "INVALID_AUTHENTICATION",
                "Authentication credentials not found. This API supports OAuth 2.0 authentication.",
            ));
        }
    }
    let mut world = state.world();
    let data = &mut world.hubspot;
    let now = Instant::now();
    let limit = settings.hubspot_per_ten_seconds as usize;
    while data.window.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(10)) {
        data.window.pop_front();
    }
    let mut out = HeaderMap::new();
    if limit > 0 {
        if data.window.len() >= limit {
            let body = json!({
                "status": "error",
                "message": "You have reached your ten_secondly_rolling limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": "TEN_SECONDLY_ROLLING",
            });
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            response.headers_mut().insert("x-hubspot-ratelimit-max", HeaderValue::from(limit));
            response.headers_mut().insert("x-hubspot-ratelimit-remaining", HeaderValue::from(0));
            response.headers_mut().insert("x-hubspot-ratelimit-interval-milliseconds", HeaderValue::from(10_000));
            return Err(response);
        }
        data.window.push_back(now);
        out.insert("x-hubspot-ratelimit-max", HeaderValue::from(limit));
        out.insert("x-hubspot-ratelimit-remaining", HeaderValue::from(limit - data.window.len()));
        out.insert("x-hubspot-ratelimit-interval-milliseconds", HeaderValue::from(10_000));
    }
    let search_limit = settings.hubspot_search_per_second as usize;
    if search && search_limit > 0 {
        while data.search_window.front().is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1)) {
            data.search_window.pop_front();
        }
        if data.search_window.len() >= search_limit {
            let body = json!({
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": "SECONDLY",
            });
            return Err((StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response());
        }
        data.search_window.push_back(now);
    }
    Ok(out)
}

fn with_headers(headers: HeaderMap, response: Response) -> Response {
    let mut response = response;
    response.headers_mut().extend(headers);
    response
}

const DEFAULT_PROPERTIES: [&str; 3] = ["email", "firstname", "lastname"];

/// A contact as the API returns it: requested properties (unset → null)
/// plus the ones HubSpot always includes.
fn render(contact: &StoredContact, requested: Option<&[String]>) -> Value {
    let mut properties = Map::new();
    let names: Vec<String> = match requested {
        Some(list) => list.to_vec(),
        None => DEFAULT_PROPERTIES.iter().map(std::string::ToString::to_string).collect(),
    };
    for name in names {
        properties
            .insert(name.clone(), contact.properties.get(&name).map_or(Value::Null, |v| Value::String(v.clone())));
    }
    properties.insert("hs_object_id".into(), json!(contact.id));
    properties.insert("createdate".into(), json!(time::iso8601(contact.created_at)));
    properties.insert("lastmodifieddate".into(), json!(time::iso8601(contact.updated_at)));
    json!({
        "id": contact.id,
        "properties": properties,
        "createdAt": time::iso8601(contact.created_at),
        "updatedAt": time::iso8601(contact.updated_at),
        "archived": false,
    })
}

fn requested(query: &HashMap<String, String>) -> Option<Vec<String>> {
    query.get("properties").map(|p| p.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
}

async fn get_contact(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let by_email = query.get("idProperty").is_some_and(|p| p == "email");
    let world = state.world();
    let response = match world.hubspot.find(&id, by_email) {
        Some(contact) => Json(render(contact, requested(&query).as_deref())).into_response(),
        None => error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found"),
    };
    with_headers(rate, response)
}

fn parse_properties(body: &Bytes) -> Result<BTreeMap<String, String>, Response> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &format!("Invalid input JSON on line 1: {e}"))
    })?;
    let Some(properties) = value.get("properties").and_then(Value::as_object) else {
        return Err(error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON: `properties` is required"));
    };
    Ok(properties.iter().map(|(k, v)| (k.clone(), property_text(v).unwrap_or_default())).collect())
}

fn invalid_property(name: &str, message: &str, code: &str) -> Response {
    let detail = json!([{ "isValid": false, "message": message, "error": code, "name": name }]).to_string();
    let mut response =
        error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &format!("Property values were not valid: {detail}"));
    if let Ok(body) = serde_json::to_vec(&json!({
        "status": "error",
        "message": format!("Property values were not valid: {detail}"),
        "correlationId": correlation_id(),
        "category": "VALIDATION_ERROR",
        "errors": [{ "message": message, "code": code, "context": { "propertyName": [name] } }],
    })) {
        *response.body_mut() = axum::body::Body::from(body);
    }
    response
}

/// Checks a lifecycle stage change: known option, and forward only.
fn check_lifecycle(current: Option<&String>, next: &str) -> Result<(), Response> {
    if next.is_empty() {
        return Ok(());
    }
    let rank = |s: &str| LIFECYCLE_STAGES.iter().position(|stage| *stage == s);
    let Some(to) = rank(next) else {
        return Err(invalid_property(
            "lifecyclestage",
            &format!("{next} was not one of the allowed options"),
            "INVALID_OPTION",
        ));
    };
    if let Some(from) = current.filter(|c| !c.is_empty()).and_then(|c| rank(c))
        && to < from
    {
        return Err(invalid_property(
            "lifecyclestage",
            "lifecyclestage can only move forward; clear it before setting an earlier stage",
            "INVALID_OPTION",
        ));
    }
    Ok(())
}

async fn create_contact(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let properties = match parse_properties(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    if let Some(stage) = properties.get("lifecyclestage")
        && let Err(r) = check_lifecycle(None, stage)
    {
        return r;
    }
    let now = state.clock.now_ms();
    let mut world = state.world();
    if let Some(email) = properties.get("email")
        && let Some(existing) = world.hubspot.find(email, true)
    {
        let message = format!("Contact already exists. Existing ID: {}", existing.id);
        return error(StatusCode::CONFLICT, "CONFLICT", &message);
    }
    let mut properties = properties;
    stamp_mql_date(&mut properties, now);
    let id = world.hubspot.create(properties, now);
    let contact = world.hubspot.find(&id, false).expect("just created");
    let names: Vec<String> = contact.properties.keys().cloned().collect();
    with_headers(rate, (StatusCode::CREATED, Json(render(contact, Some(&names)))).into_response())
}

async fn update_contact(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let properties = match parse_properties(&body) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = state.clock.now_ms();
    let mut world = state.world();
    let Some(contact) = world.hubspot.find_mut(&id) else {
        return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", "resource not found");
    };
    if let Some(stage) = properties.get("lifecyclestage")
        && let Err(r) = check_lifecycle(contact.properties.get("lifecyclestage"), stage)
    {
        return r;
    }
    let names: Vec<String> = properties.keys().cloned().collect();
    let becomes_mql = properties.get("lifecyclestage").map(String::as_str) == Some("marketingqualifiedlead")
        && contact.properties.get("lifecyclestage").map(String::as_str) != Some("marketingqualifiedlead");
    contact.properties.extend(properties);
    if becomes_mql {
        contact.properties.insert(MQL_DATE.into(), now.to_string());
    }
    contact.updated_at = now;
    with_headers(rate, Json(render(contact, Some(&names))).into_response())
}

/// Whether a stored value satisfies one search filter.
fn filter_matches(contact: &StoredContact, filter: &Value) -> Result<bool, String> {
    let name = filter["propertyName"].as_str().ok_or("filter without propertyName")?;
    let operator = filter["operator"].as_str().unwrap_or("EQ");
    // Record timestamps are searchable like properties (milliseconds).
    let stamp = match name {
        "createdate" => Some(contact.created_at.to_string()),
        "lastmodifieddate" => Some(contact.updated_at.to_string()),
        _ => None,
    };
    let value = stamp.as_ref().or_else(|| contact.properties.get(name)).filter(|v| !v.is_empty());
    let text = |v: &Value| property_text(v).unwrap_or_default();
    let cmp = |actual: &str, wanted: &str| -> std::cmp::Ordering {
        let number = |s: &str| s.parse::<f64>().ok().or_else(|| time::parse(s).map(|ms| ms as f64));
        match (number(actual), number(wanted)) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(std::cmp::Ordering::Equal),
            _ => actual.to_lowercase().cmp(&wanted.to_lowercase()),
        }
    };
    use std::cmp::Ordering::{Equal, Greater, Less};
    Ok(match operator {
        "HAS_PROPERTY" => value.is_some(),
        "NOT_HAS_PROPERTY" => value.is_none(),
        "EQ" => value.is_some_and(|v| cmp(v, &text(&filter["value"])) == Equal),
        "NEQ" => value.is_none_or(|v| cmp(v, &text(&filter["value"])) != Equal),
        "LT" => value.is_some_and(|v| cmp(v, &text(&filter["value"])) == Less),
        "LTE" => value.is_some_and(|v| cmp(v, &text(&filter["value"])) != Greater),
        "GT" => value.is_some_and(|v| cmp(v, &text(&filter["value"])) == Greater),
        "GTE" => value.is_some_and(|v| cmp(v, &text(&filter["value"])) != Less),
        "BETWEEN" => value
            .is_some_and(|v| cmp(v, &text(&filter["value"])) != Less && cmp(v, &text(&filter["highValue"])) != Greater),
        "IN" | "NOT_IN" => {
            let hit = value
                .is_some_and(|v| filter["values"].as_array().into_iter().flatten().any(|w| cmp(v, &text(w)) == Equal));
            hit == (operator == "IN")
        }
        "CONTAINS_TOKEN" | "NOT_CONTAINS_TOKEN" => {
            let token = text(&filter["value"]).to_lowercase().replace('*', "");
            let hit = value.is_some_and(|v| {
                v.to_lowercase()
                    .split(|c: char| !c.is_alphanumeric() && c != '@' && c != '.')
                    .any(|t| t == token || v.to_lowercase().contains(&token))
            });
            hit == (operator == "CONTAINS_TOKEN")
        }
        other => return Err(format!("Unknown operator {other}")),
    })
}

async fn search(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let rate = match admit(&state, &headers, true) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON");
    };
    let groups = request["filterGroups"].as_array().cloned().unwrap_or_default();
    let total_filters: usize = groups.iter().map(|g| g["filters"].as_array().map_or(0, Vec::len)).sum();
    if groups.len() > 5
        || groups.iter().any(|g| g["filters"].as_array().is_some_and(|f| f.len() > 6))
        || total_filters > 18
    {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Too many filters: at most 5 filterGroups, 6 filters in a group and 18 filters in all",
        );
    }
    let limit = request["limit"].as_u64().unwrap_or(10) as usize;
    if limit > 200 {
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "limit must be at most 200");
    }
    let after: usize = request["after"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .or(request["after"].as_u64().map(|a| a as usize))
        .unwrap_or(0);
    let properties: Option<Vec<String>> =
        request["properties"].as_array().map(|p| p.iter().filter_map(|v| v.as_str().map(String::from)).collect());
    let world = state.world();
    let mut hits = Vec::new();
    for contact in world.hubspot.contacts.values() {
        let mut matched = groups.is_empty();
        for group in &groups {
            let mut all = true;
            for filter in group["filters"].as_array().into_iter().flatten() {
                match filter_matches(contact, filter) {
                    Ok(true) => {}
                    Ok(false) => all = false,
                    Err(message) => return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", &message),
                }
            }
            matched |= all;
        }
        if matched {
            hits.push(contact);
        }
    }
    if let Some(sort) = request["sorts"].as_array().and_then(|s| s.first()) {
        let name = sort["propertyName"].as_str().unwrap_or("createdate").to_string();
        let descending = sort["direction"] == "DESCENDING";
        let key = |c: &StoredContact| match name.as_str() {
            "createdate" => c.created_at.to_string(),
            "lastmodifieddate" => c.updated_at.to_string(),
            _ => c.properties.get(&name).cloned().unwrap_or_default(),
        };
        hits.sort_by(|a, b| {
            let (x, y) = (key(a), key(b));
            let ordering = match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) => p.partial_cmp(&q).unwrap_or(std::cmp::Ordering::Equal),
                _ => x.cmp(&y),
            };
            if descending { ordering.reverse() } else { ordering }
        });
    }
    let total = hits.len();
    let page: Vec<Value> = hits.iter().skip(after).take(limit).map(|c| render(c, properties.as_deref())).collect();
    let mut body = json!({ "total": total, "results": page });
    if after + limit < total.min(10_000) {
        body["paging"] = json!({ "next": { "after": (after + limit).to_string() } });
    }
    with_headers(rate, Json(body).into_response())
}

async fn batch_read(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Invalid input JSON");
    };
    let inputs: Vec<String> =
        request["inputs"].as_array().into_iter().flatten().filter_map(|i| i["id"].as_str().map(String::from)).collect();
    if inputs.len() > 100 {
        return error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", "Batch input must contain at most 100 inputs");
    }
    let by_email = request["idProperty"] == "email";
    let properties: Option<Vec<String>> =
        request["properties"].as_array().map(|p| p.iter().filter_map(|v| v.as_str().map(String::from)).collect());
    let world = state.world();
    let (mut results, mut missing) = (Vec::new(), Vec::new());
    for id in &inputs {
        match world.hubspot.find(id, by_email) {
            Some(c) => results.push(render(c, properties.as_deref())),
            None => missing.push(id.clone()),
        }
    }
    let now = time::iso8601(state.clock.now_ms());
    if missing.is_empty() {
        return with_headers(
            rate,
            Json(json!({"status": "COMPLETE", "results": results, "startedAt": now, "completedAt": now}))
                .into_response(),
        );
    }
    let body = json!({
        "status": "COMPLETE",
        "results": results,
        "numErrors": 1,
        "errors": [{
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.",
            "context": { "ids": missing },
        }],
        "startedAt": now,
        "completedAt": now,
    });
    with_headers(rate, (StatusCode::MULTI_STATUS, Json(body)).into_response())
}

async fn add_to_list(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(list_id): Path<String>,
    body: Bytes,
) -> Response {
    let rate = match admit(&state, &headers, false) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Ok(ids) = serde_json::from_slice::<Vec<String>>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Invalid input JSON: expected an array of record ids",
        );
    };
    let mut world = state.world();
    let known: Vec<bool> = ids.iter().map(|id| world.hubspot.find(id, false).is_some()).collect();
    let Some((_, members)) = world.hubspot.lists.get_mut(&list_id) else {
        return error(StatusCode::NOT_FOUND, "OBJECT_NOT_FOUND", &format!("List {list_id} does not exist"));
    };
    let (mut added, mut missing) = (Vec::new(), Vec::new());
    for (id, exists) in ids.into_iter().zip(known) {
        if !exists {
            missing.push(id);
        } else if members.insert(id.clone()) {
            added.push(id);
        }
    }
    with_headers(
        rate,
        Json(json!({"recordIdsMissing": missing, "recordIdsRemoved": [], "recordsIdsAdded": added})).into_response(),
    )
}
