//! The Salesforce emulator: OAuth token endpoint (client credentials and
//! JWT bearer), SOQL query with paging, sObject create/read/update with
//! required fields, restricted picklists and owner checks, the org's API
//! limit, and Salesforce's error arrays.

use super::fixture::SeedField;
use super::soql::{self, Query};
use super::{EmulatorState, bearer};
use crate::time;
use axum::body::Bytes;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Salesforce's data: records by object type, issued tokens, API usage.
#[derive(Debug, Default)]
pub struct Data {
    pub objects: BTreeMap<String, Vec<Map<String, Value>>>,
    tokens: HashSet<String>,
    pub api_usage: u64,
    counters: HashMap<String, u64>,
    cursors: HashMap<String, Vec<Value>>,
    next_cursor: u64,
    /// The org's custom fields by object, as `describe` shows them.
    pub custom_fields: BTreeMap<String, Vec<SeedField>>,
}

const OBJECTS: [(&str, &str); 9] = [
    ("Lead", "00Q"),
    ("Contact", "003"),
    ("Account", "001"),
    ("Opportunity", "006"),
    ("User", "005"),
    ("Group", "00G"),
    ("Task", "00T"),
    ("Event", "00U"),
    ("CustomNotificationType", "0ML"),
];

/// Where the emulator keeps the custom notifications it sent (not an
/// object SOQL can query: Salesforce keeps none either).
pub const SENT_NOTIFICATIONS: &str = "CustomNotification";

fn known_fields(object: &str) -> &'static [&'static str] {
    match object {
        "Lead" => &[
            "Id",
            "Email",
            "FirstName",
            "LastName",
            "Name",
            "Company",
            "Title",
            "Phone",
            "Country",
            "State",
            "Industry",
            "NumberOfEmployees",
            "LeadSource",
            "Status",
            "OwnerId",
            "IsConverted",
            "CreatedDate",
            "LastModifiedDate",
            "SystemModstamp",
            "LastActivityDate",
            "Description",
            "Website",
        ],
        "Contact" => &[
            "Id",
            "Email",
            "FirstName",
            "LastName",
            "Name",
            "AccountId",
            "OwnerId",
            "Title",
            "Phone",
            "CreatedDate",
            "LastModifiedDate",
        ],
        "Account" => &[
            "Id",
            "Name",
            "Website",
            "OwnerId",
            "NumberOfEmployees",
            "Industry",
            "BillingCountry",
            "BillingState",
            "CreatedDate",
            "LastModifiedDate",
        ],
        "Opportunity" => &[
            "Id",
            "Name",
            "AccountId",
            "OwnerId",
            "StageName",
            "Amount",
            "CloseDate",
            "IsClosed",
            "IsWon",
            "CreatedDate",
            "LastModifiedDate",
        ],
        "User" => &[
            "Id",
            "Name",
            "FirstName",
            "LastName",
            "Email",
            "Title",
            "IsActive",
            "ManagerId",
            "Department",
            "TimeZoneSidKey",
            "CreatedDate",
        ],
        "Group" => &["Id", "Name", "Type", "Email", "CreatedDate"],
        "CustomNotificationType" => &["Id", "DeveloperName", "MasterLabel", "Desktop", "Mobile", "CreatedDate"],
        "Task" => &[
            "Id",
            "WhoId",
            "WhatId",
            "OwnerId",
            "Subject",
            "Description",
            "ActivityDate",
            "Status",
            "Priority",
            "IsClosed",
            "CreatedDate",
            "LastModifiedDate",
        ],
        "Event" => &[
            "Id",
            "WhoId",
            "WhatId",
            "OwnerId",
            "Subject",
            "Description",
            "StartDateTime",
            "EndDateTime",
            "ActivityDate",
            "CreatedDate",
            "LastModifiedDate",
        ],
        _ => &[],
    }
}

/// A standard restricted picklist's values.
fn picklist(object: &str, field: &str) -> Option<&'static [&'static str]> {
    match (object, field) {
        ("Task", "Status") => Some(&["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]),
        ("Task", "Priority") => Some(&["High", "Normal", "Low"]),
        ("Lead", "Status") => {
            Some(&["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"])
        }
        _ => None,
    }
}

/// `GET .../sobjects/{object}/describe`: the object's fields, their types,
/// whether they can be written, and picklist values.
fn describe(data: &Data, object: &str) -> Value {
    // Besides the system fields, those Salesforce derives.
    let read_only = |name: &str| SYSTEM_FIELDS.contains(&name) || ["Name", "IsConverted", "IsClosed"].contains(&name);
    let entry = |name: &str, kind: &str, updateable: bool, values: &[String], restricted: bool| {
        let values: Vec<Value> = values
            .iter()
            .map(|v| json!({"value": v, "label": v, "active": true, "defaultValue": false, "validFor": null}))
            .collect();
        json!({
            "name": name, "label": name, "type": kind, "updateable": updateable, "createable": updateable,
            "nillable": name != "Id", "custom": name.ends_with("__c"), "picklistValues": values,
            "restrictedPicklist": restricted,
        })
    };
    let mut fields: Vec<Value> = known_fields(object)
        .iter()
        .map(|name| {
            let values: Vec<String> =
                picklist(object, name).unwrap_or_default().iter().map(ToString::to_string).collect();
            let kind = if !values.is_empty() {
                "picklist"
            } else if *name == "Id" || name.ends_with("Id") {
                if *name == "Id" { "id" } else { "reference" }
            } else if name.starts_with("Is") || ["Desktop", "Mobile"].contains(name) {
                "boolean"
            } else if name.ends_with("Date") || name == &"SystemModstamp" {
                "datetime"
            } else {
                "string"
            };
            entry(name, kind, !read_only(name), &values, !values.is_empty())
        })
        .collect();
    for field in data.custom_fields.get(object).into_iter().flatten() {
        fields.push(entry(&field.name, &field.kind, field.updateable, &field.values, field.restricted));
    }
    json!({"name": object, "label": object, "custom": false, "queryable": true, "updateable": true, "fields": fields})
}

fn object_name(name: &str) -> Option<&'static str> {
    OBJECTS.iter().find(|(o, _)| o.eq_ignore_ascii_case(name)).map(|(o, _)| *o)
}

fn is_field(object: &str, field: &str) -> bool {
    field.ends_with("__c") || known_fields(object).iter().any(|f| f.eq_ignore_ascii_case(field))
}

/// A parent relationship field (`Account.Website` on an Opportunity): the
/// parent object and its field, when the object has the lookup.
fn parent_field<'f>(object: &str, field: &'f str) -> Option<(&'static str, &'f str)> {
    let (relation, rest) = field.split_once('.')?;
    let parent = object_name(relation)?;
    let lookup = format!("{parent}Id");
    (is_field(object, &lookup) && is_field(parent, rest)).then_some((parent, rest))
}

/// Salesforce's datetime format.
pub fn sf_datetime(ms: i64) -> String {
    let iso = time::iso8601(ms);
    format!("{}+0000", &iso[..23])
}

impl Data {
    /// Data from the fixture.
    pub fn seed(
        objects: &BTreeMap<String, Vec<Map<String, Value>>>,
        custom_fields: &BTreeMap<String, Vec<SeedField>>,
        now_ms: i64,
    ) -> Self {
        let mut data = Data { custom_fields: custom_fields.clone(), ..Data::default() };
        for (object, records) in objects {
            let list = data.objects.entry(object.clone()).or_default();
            for record in records {
                let mut record = record.clone();
                record.entry("CreatedDate").or_insert_with(|| json!(sf_datetime(now_ms)));
                record.entry("LastModifiedDate").or_insert_with(|| json!(sf_datetime(now_ms)));
                record.entry("SystemModstamp").or_insert_with(|| json!(sf_datetime(now_ms)));
                list.push(record);
            }
        }
        for (object, _) in OBJECTS {
            data.objects.entry(object.to_string()).or_default();
        }
        data
    }

    fn new_id(&mut self, object: &str) -> String {
        let prefix = OBJECTS.iter().find(|(o, _)| *o == object).map_or("a00", |(_, p)| p);
        let n = self.counters.entry(object.to_string()).or_insert(900_000_000);
        *n += 1;
        format!("{prefix}{n:012}AAA")
    }

    /// The record of any type with this id.
    /// Looks only among the objects the id's key prefix names, as ids say
    /// their type; newest first, as recent records are the ones asked for.
    pub fn find(&self, id: &str) -> Option<(&str, &Map<String, Value>)> {
        let by_prefix = OBJECTS.iter().find(|(_, prefix)| id.starts_with(prefix)).map(|(o, _)| *o);
        self.objects
            .iter()
            .filter(|(object, _)| by_prefix.is_none_or(|o| o == object.as_str()))
            .find_map(|(object, records)| records.iter().rev().find(|r| r["Id"] == id).map(|r| (object.as_str(), r)))
    }

    fn find_mut(&mut self, object: &str, id: &str) -> Option<&mut Map<String, Value>> {
        self.objects.get_mut(object)?.iter_mut().rev().find(|r| r["Id"] == id)
    }

    /// Creates a record after Salesforce's checks; returns its id.
    ///
    /// # Errors
    ///
    /// Salesforce's error (code, message, fields).
    pub fn create(&mut self, object: &str, fields: Map<String, Value>, now_ms: i64) -> Result<String, SfError> {
        let mut record = Map::new();
        for (name, value) in fields {
            check_writable(object, &name)?;
            record.insert(name, value);
        }
        apply_defaults(object, &mut record, self.default_owner());
        check_required(object, &record)?;
        self.check_record(object, &record)?;
        let id = self.new_id(object);
        record.insert("Id".into(), json!(id));
        record.insert("CreatedDate".into(), json!(sf_datetime(now_ms)));
        record.insert("LastModifiedDate".into(), json!(sf_datetime(now_ms)));
        record.insert("SystemModstamp".into(), json!(sf_datetime(now_ms)));
        derive(object, &mut record);
        self.touch_who(object, &record, now_ms);
        self.objects.entry(object.to_string()).or_default().push(record);
        Ok(id)
    }

    /// Updates a record after Salesforce's checks.
    ///
    /// # Errors
    ///
    /// Salesforce's error (code, message, fields).
    pub fn update(&mut self, object: &str, id: &str, fields: Map<String, Value>, now_ms: i64) -> Result<(), SfError> {
        let mut record = self.find_mut(object, id).ok_or_else(SfError::not_found)?.clone();
        for (name, value) in fields {
            check_writable(object, &name)?;
            record.insert(name, value);
        }
        check_required(object, &record)?;
        self.check_record(object, &record)?;
        record.insert("LastModifiedDate".into(), json!(sf_datetime(now_ms)));
        record.insert("SystemModstamp".into(), json!(sf_datetime(now_ms)));
        derive(object, &mut record);
        *self.find_mut(object, id).expect("found above") = record;
        Ok(())
    }

    fn default_owner(&self) -> Value {
        self.objects
            .get("User")
            .and_then(|u| u.iter().find(|r| r["IsActive"] == true))
            .map_or(Value::Null, |u| u["Id"].clone())
    }

    /// Picklists and references, as a real org enforces them.
    fn check_record(&self, object: &str, record: &Map<String, Value>) -> Result<(), SfError> {
        for field in ["Status", "Priority"] {
            if let (Some(allowed), Some(v)) = (picklist(object, field), record.get(field).and_then(Value::as_str))
                && !allowed.contains(&v)
            {
                return Err(SfError::new(
                    400,
                    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    &format!("{field}: bad value for restricted picklist field: {v}"),
                    &[field],
                ));
            }
        }
        if let Some(owner) = record.get("OwnerId").and_then(Value::as_str) {
            match self.find(owner) {
                Some(("User", user)) if user["IsActive"] == false => {
                    return Err(SfError::new(
                        400,
                        "INACTIVE_OWNER_OR_USER",
                        &format!(
                            "operation performed with inactive user [{owner}] as owner of {}",
                            object.to_lowercase()
                        ),
                        &["OwnerId"],
                    ));
                }
                Some(("User" | "Group", _)) => {}
                _ => {
                    return Err(SfError::new(
                        400,
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &["OwnerId"],
                    ));
                }
            }
        }
        for reference in ["WhoId", "AccountId", "WhatId"] {
            if let Some(id) = record.get(reference).and_then(Value::as_str)
                && self.find(id).is_none()
            {
                return Err(SfError::new(
                    400,
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[reference],
                ));
            }
        }
        Ok(())
    }

    /// A new activity updates its lead's `LastActivityDate`.
    fn touch_who(&mut self, object: &str, record: &Map<String, Value>, now_ms: i64) {
        if !matches!(object, "Task" | "Event") {
            return;
        }
        if let Some(who) = record.get("WhoId").and_then(Value::as_str).map(str::to_string)
            && let Some(lead) = self.find_mut("Lead", &who)
        {
            lead.insert("LastActivityDate".into(), json!(time::date(now_ms)));
        }
    }

    /// `record` with the parent fields a filter names (`Account.Website`),
    /// read through the record's lookup (`AccountId`).
    fn joined(&self, object: &str, record: &Map<String, Value>, fields: &[String]) -> Map<String, Value> {
        let mut joined = record.clone();
        for name in fields {
            let Some((parent, field)) = parent_field(object, name) else { continue };
            let id = soql::field(record, &format!("{parent}Id")).as_str().unwrap_or_default();
            let value = self
                .objects
                .get(parent)
                .and_then(|rows| rows.iter().find(|r| r["Id"] == id))
                .map_or(Value::Null, |r| soql::field(r, field).clone());
            joined.insert(name.clone(), value);
        }
        joined
    }

    /// Records of `object`, matching a parsed query.
    fn run(&self, query: &Query) -> Vec<Map<String, Value>> {
        let mut parents = Vec::new();
        if let Some(filter) = &query.filter {
            soql::condition_fields(filter, &mut parents);
        }
        parents.retain(|f| f.contains('.'));
        let mut rows: Vec<&Map<String, Value>> = self
            .objects
            .get(&query.object)
            .into_iter()
            .flatten()
            .filter(|r| {
                query.filter.as_ref().is_none_or(|c| {
                    if parents.is_empty() {
                        soql::matches(r, c)
                    } else {
                        soql::matches(&self.joined(&query.object, r, &parents), c)
                    }
                })
            })
            .collect();
        if let Some((field, descending)) = &query.order_by {
            rows.sort_by(|a, b| {
                let o = soql::order(a, b, field);
                if *descending { o.reverse() } else { o }
            });
        }
        rows.into_iter().skip(query.offset).take(query.limit.unwrap_or(usize::MAX)).cloned().collect()
    }
}

/// Fields Salesforce sets itself: refused in a create or update.
const SYSTEM_FIELDS: [&str; 4] = ["Id", "CreatedDate", "LastModifiedDate", "SystemModstamp"];

fn check_writable(object: &str, field: &str) -> Result<(), SfError> {
    if !is_field(object, field) {
        return Err(SfError::new(
            400,
            "INVALID_FIELD",
            &format!("No such column '{field}' on sobject of type {object}"),
            &[],
        ));
    }
    if SYSTEM_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(field)) {
        return Err(SfError::new(
            400,
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            &format!("Unable to create/update fields: {field}. Please check the security settings of this field."),
            &[field],
        ));
    }
    Ok(())
}

fn apply_defaults(object: &str, record: &mut Map<String, Value>, owner: Value) {
    record.entry("OwnerId").or_insert(owner);
    match object {
        "Lead" => {
            record.entry("Status").or_insert_with(|| json!("Open - Not Contacted"));
            record.entry("IsConverted").or_insert(json!(false));
        }
        "Task" => {
            record.entry("Status").or_insert_with(|| json!("Not Started"));
            record.entry("Priority").or_insert_with(|| json!("Normal"));
        }
        _ => {}
    }
}

fn check_required(object: &str, record: &Map<String, Value>) -> Result<(), SfError> {
    let required: &[&str] = match object {
        "Lead" => &["LastName", "Company"],
        "Contact" => &["LastName"],
        "Account" => &["Name"],
        "Opportunity" => &["Name", "StageName", "CloseDate"],
        _ => &[],
    };
    let missing: Vec<&str> = required
        .iter()
        .copied()
        .filter(|f| record.get(*f).is_none_or(|v| v.is_null() || v.as_str() == Some("")))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SfError::new(
        400,
        "REQUIRED_FIELD_MISSING",
        &format!("Required fields are missing: [{}]", missing.join(", ")),
        &missing,
    ))
}

/// Computed fields.
fn derive(object: &str, record: &mut Map<String, Value>) {
    if matches!(object, "Lead" | "Contact") {
        let first = record.get("FirstName").and_then(Value::as_str).unwrap_or_default().to_string();
        let last = record.get("LastName").and_then(Value::as_str).unwrap_or_default().to_string();
        record.insert("Name".into(), json!(format!("{first} {last}").trim().to_string()));
    }
    if object == "Task" {
        let closed = record.get("Status").and_then(Value::as_str) == Some("Completed");
        record.insert("IsClosed".into(), json!(closed));
    }
    if object == "Opportunity" {
        // Salesforce derives both from the stage's picklist entry.
        let stage = record.get("StageName").and_then(Value::as_str).unwrap_or_default().to_string();
        record.insert("IsClosed".into(), json!(stage.starts_with("Closed")));
        record.insert("IsWon".into(), json!(stage == "Closed Won"));
    }
}

/// A Salesforce error: status plus one entry of the error array.
#[derive(Debug, Clone)]
pub struct SfError {
    status: u16,
    code: String,
    message: String,
    fields: Vec<String>,
}

impl SfError {
    fn new(status: u16, code: &str, message: &str, fields: &[&str]) -> Self {
        SfError {
            status,
            code: code.into(),
            message: message.into(),
            fields: fields.iter().map(std::string::ToString::to_string).collect(),
        }
    }

    fn not_found() -> Self {
        SfError::new(404, "NOT_FOUND", "The requested resource does not exist", &[])
    }
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        let mut entry = json!({ "message": self.message, "errorCode": self.code });
        if !self.fields.is_empty() {
            entry["fields"] = json!(self.fields);
        }
        (StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST), Json(json!([entry]))).into_response()
    }
}

pub fn routes() -> Router<Arc<EmulatorState>> {
    Router::new()
        .route("/services/oauth2/token", post(token))
        .route("/services/data/{version}/query", get(query))
        .route("/services/data/{version}/composite", post(composite))
        .route("/services/data/{version}/actions/standard/customNotificationAction", post(custom_notification))
        .route("/services/data/{version}/query/{locator}", get(query_more))
        .route("/services/data/{version}/sobjects/{object}", post(create))
        .route("/services/data/{version}/sobjects/{object}/{id}", get(read).patch(update))
}

/// Decodes an `application/x-www-form-urlencoded` body.
pub fn form_decode(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

fn host_base(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    format!("http://{host}/salesforce")
}

async fn token(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_decode(&body);
    let settings = state.settings();
    let base = host_base(&headers);
    let user = match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            let basic = headers
                .get("authorization")
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Basic "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(id, secret)| (id.to_string(), secret.to_string())));
            let (id, secret) = basic
                .or_else(|| Some((form.get("client_id")?.clone(), form.get("client_secret")?.clone())))
                .unwrap_or_default();
            if id.is_empty() || secret != settings.client_secret {
                return oauth_error("invalid_client", "invalid client credentials");
            }
            state.world().salesforce.default_owner()
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(assertion) = form.get("assertion") else {
                return oauth_error("invalid_request", "assertion is required");
            };
            match verify_jwt(assertion, settings.jwt_public_key_pem.as_deref(), &base, &state) {
                Ok(user) => user,
                Err(description) => return oauth_error("invalid_grant", description),
            }
        }
        Some(other) => return oauth_error("unsupported_grant_type", &format!("grant type not supported: {other}")),
        None => return oauth_error("invalid_request", "grant_type is required"),
    };
    let access_token = format!("00D000000000001AAA!{:032x}", fastrand::u128(..));
    state.world().salesforce.tokens.insert(access_token.clone());
    let now = state.clock.now_ms();
    Json(json!({
        "access_token": access_token,
        "instance_url": base,
        "id": format!("{base}/id/00D000000000001AAA/{}", user.as_str().unwrap_or_default()),
        "token_type": "Bearer",
        "issued_at": now.to_string(),
        "scope": "api",
        "signature": base64::engine::general_purpose::STANDARD.encode(fastrand::u64(..).to_be_bytes()),
    }))
    .into_response()
}

/// Checks an RS256 JWT-bearer assertion; returns the user it names.
fn verify_jwt(
    assertion: &str,
    public_key: Option<&str>,
    base: &str,
    state: &EmulatorState,
) -> Result<Value, &'static str> {
    use rsa::pkcs8::DecodePublicKey;
    use rsa::signature::Verifier;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err("invalid assertion");
    };
    let header: Value =
        b64.decode(header).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or("invalid assertion")?;
    if header["alg"] != "RS256" {
        return Err("invalid assertion");
    }
    let key = public_key.and_then(|pem| rsa::RsaPublicKey::from_public_key_pem(pem).ok()).ok_or("invalid assertion")?;
    let signature = b64
        .decode(signature)
        .ok()
        .and_then(|s| rsa::pkcs1v15::Signature::try_from(s.as_slice()).ok())
        .ok_or("invalid assertion")?;
    rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(key)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .map_err(|_| "invalid assertion")?;
    let claims: Value =
        b64.decode(claims).ok().and_then(|c| serde_json::from_slice(&c).ok()).ok_or("invalid assertion")?;
    let now_secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    if claims["exp"].as_u64().or_else(|| claims["exp"].as_str()?.parse().ok()).is_none_or(|exp| exp < now_secs) {
        return Err("expired authorization code");
    }
    let aud = claims["aud"].as_str().unwrap_or_default();
    if aud.trim_end_matches('/') != base
        && !["https://login.salesforce.com", "https://test.salesforce.com"].contains(&aud)
    {
        return Err("Audience validation failed");
    }
    if claims["iss"].as_str().is_none_or(str::is_empty) {
        return Err("invalid assertion");
    }
    let username = claims["sub"].as_str().unwrap_or_default();
    let world = state.world();
    let user = world.salesforce.objects["User"]
        .iter()
        .find(|u| u["Email"].as_str().is_some_and(|e| e.eq_ignore_ascii_case(username)) && u["IsActive"] == true)
        .ok_or("user hasn't approved this consumer")?;
    Ok(user["Id"].clone())
}

/// Session check and API-limit accounting for data requests; returns the
/// `Sforce-Limit-Info` header value.
fn admit(state: &EmulatorState, headers: &HeaderMap) -> Result<HeaderValue, Response> {
    let settings = state.settings();
    let mut world = state.world();
    let data = &mut world.salesforce;
    let valid = bearer(headers).is_some_and(|t| t == settings.token || data.tokens.contains(t));
    if !valid {
        return Err(SfError::new(401, "INVALID_SESSION_ID", "Session expired or invalid", &[]).into_response());
    }
    if data.api_usage >= settings.salesforce_api_limit {
        let mut response =
            SfError::new(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", &[]).into_response();
        response.headers_mut().insert("sforce-limit-info", limit_info(data.api_usage, settings.salesforce_api_limit));
        return Err(response);
    }
    data.api_usage += 1;
    Ok(limit_info(data.api_usage, settings.salesforce_api_limit))
}

fn limit_info(used: u64, limit: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("api-usage={used}/{limit}")).expect("ascii")
}

fn respond(limit: HeaderValue, response: Response) -> Response {
    let mut response = response;
    response.headers_mut().insert("sforce-limit-info", limit);
    response
}

fn attributes(version: &str, object: &str, record: &Map<String, Value>) -> Value {
    json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{}", record["Id"].as_str().unwrap_or_default())})
}

async fn query(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    UrlQuery(params): UrlQuery<HashMap<String, String>>,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let soql_text = params.get("q").cloned().unwrap_or_default();
    match run_query(&state, &version, &soql_text) {
        Ok(body) => respond(limit, Json(body).into_response()),
        Err(e) => respond(limit, e.into_response()),
    }
}

/// One SOQL query's first page, as `/query` answers it.
fn run_query(state: &EmulatorState, version: &str, soql_text: &str) -> Result<Value, SfError> {
    let parsed = soql::parse(soql_text).map_err(|message| SfError::new(400, "MALFORMED_QUERY", &message, &[]))?;
    let Some(object) = object_name(&parsed.object) else {
        let message = format!("sObject type '{}' is not supported.", parsed.object);
        return Err(SfError::new(400, "INVALID_TYPE", &message, &[]));
    };
    let mut mentioned = Vec::new();
    if let Some(filter) = &parsed.filter {
        soql::condition_fields(filter, &mut mentioned);
    }
    // Parent fields (Account.Website) are answered in WHERE only.
    mentioned.retain(|f| parent_field(object, f).is_none());
    mentioned.extend(parsed.fields.iter().cloned());
    if let Some(bad) = mentioned.iter().find(|f| !is_field(object, f)) {
        let message = format!("No such column '{bad}' on entity '{object}'.");
        return Err(SfError::new(400, "INVALID_FIELD", &message, &[]));
    }
    let query = Query { object: object.to_string(), ..parsed };
    let batch = state.settings().salesforce_batch_size.max(1);
    let mut world = state.world();
    let rows: Vec<Value> = world
        .salesforce
        .run(&query)
        .iter()
        .map(|record| {
            let mut row = Map::new();
            row.insert("attributes".into(), attributes(version, object, record));
            for field in &query.fields {
                row.insert(field.clone(), soql::field(record, field).clone());
            }
            Value::Object(row)
        })
        .collect();
    let total = rows.len();
    let mut rows = rows;
    let rest = if rows.len() > batch { rows.split_off(batch) } else { Vec::new() };
    let mut body = json!({ "totalSize": total, "done": rest.is_empty(), "records": rows });
    if !rest.is_empty() {
        let data = &mut world.salesforce;
        data.next_cursor += 1;
        let locator = format!("01gD0000000{:04}", data.next_cursor);
        data.cursors.insert(locator.clone(), rest);
        body["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{locator}-{batch}"));
    }
    Ok(body)
}

/// Most subrequests one Composite request may carry.
const MAX_SUBREQUESTS: usize = 25;

/// `POST /composite`: up to 25 subrequests in one API call. This emulator
/// answers query subrequests (`GET .../query?q=`); any other subrequest is
/// answered with Salesforce's error for a request it cannot serve.
/// The standard invocable action `customNotificationAction`: each input a
/// push to users' Salesforce mobile app, about a record. Refused, as
/// Salesforce refuses: an unknown notification type, a recipient who is
/// no active user (or has no access to the target), a target that does not
/// exist, or the org's daily allowance spent.
async fn custom_notification(State(state): State<Arc<EmulatorState>>, headers: HeaderMap, body: Bytes) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return respond(
            limit,
            SfError::new(400, "JSON_PARSER_ERROR", "The request body is not JSON", &[]).into_response(),
        );
    };
    let Some(inputs) = request["inputs"].as_array() else {
        return respond(
            limit,
            SfError::new(400, "INVALID_INPUT", "inputs: an array of action inputs is required", &[]).into_response(),
        );
    };
    let per_day = state.settings().salesforce_notifications_per_day;
    let now = state.clock.now_ms();
    let mut world = state.world();
    let data = &mut world.salesforce;
    let mut results = Vec::new();
    let mut failed = false;
    for input in inputs {
        let text = |key: &str| input[key].as_str().unwrap_or_default().to_string();
        let type_id = text("customNotifTypeId");
        let recipients: Vec<String> = input["recipientIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let target = text("targetId");
        let sent = data.objects.get(SENT_NOTIFICATIONS).map_or(0, Vec::len) as u64;
        let refusal = if !data.objects["CustomNotificationType"].iter().any(|t| t["Id"] == type_id.as_str()) {
            Some(("INVALID_ARGUMENT", format!("Invalid customNotifTypeId: {type_id}")))
        } else if recipients.is_empty() || text("title").is_empty() || text("body").is_empty() {
            Some(("REQUIRED_FIELD_MISSING", "recipientIds, title and body are required".to_string()))
        } else if let Some(who) = recipients
            .iter()
            .find(|r| !data.objects["User"].iter().any(|u| u["Id"] == r.as_str() && u["IsActive"] != false))
        {
            Some((
                "INSUFFICIENT_ACCESS_OR_READONLY",
                format!("The recipient {who} is not an active user with access to {target}"),
            ))
        } else if data.find(&target).is_none() {
            Some(("INVALID_ID_FIELD", format!("targetId: no record {target}")))
        } else if sent >= per_day {
            Some(("LIMIT_EXCEEDED", format!("The org has sent its {per_day} custom notifications for today")))
        } else {
            None
        };
        if let Some((code, message)) = refusal {
            failed = true;
            results.push(json!({"actionName": "customNotificationAction", "isSuccess": false, "outputValues": null,
                "errors": [{"statusCode": code, "message": message, "fields": []}]}));
            continue;
        }
        let id = data.new_id(SENT_NOTIFICATIONS);
        let developer_name = data.objects["CustomNotificationType"]
            .iter()
            .find(|t| t["Id"] == type_id.as_str())
            .map(|t| t["DeveloperName"].clone())
            .unwrap_or_default();
        let mut record = Map::new();
        for (key, value) in [
            ("Id", json!(id)),
            ("CustomNotifTypeId", json!(type_id)),
            ("DeveloperName", developer_name),
            ("RecipientIds", json!(recipients)),
            ("Title", json!(text("title"))),
            ("Body", json!(text("body"))),
            ("TargetId", json!(target)),
            ("SentDate", json!(sf_datetime(now))),
        ] {
            record.insert(key.to_string(), value);
        }
        data.objects.entry(SENT_NOTIFICATIONS.to_string()).or_default().push(record);
        results.push(json!({"actionName": "customNotificationAction", "isSuccess": true, "errors": null,
            "outputValues": {"SuccessMessage": "Your custom notification is processed successfully."}}));
    }
    let status = if failed { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    respond(limit, (status, Json(Value::Array(results))).into_response())
}

async fn composite(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path(version): Path<String>,
    body: Bytes,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return respond(limit, SfError::new(400, "JSON_PARSER_ERROR", &e.to_string(), &[]).into_response()),
    };
    let Some(subrequests) = request["compositeRequest"].as_array() else {
        let message = "compositeRequest is required";
        return respond(limit, SfError::new(400, "INVALID_INPUT", message, &[]).into_response());
    };
    if subrequests.is_empty() || subrequests.len() > MAX_SUBREQUESTS {
        let message = format!("compositeRequest takes 1 to {MAX_SUBREQUESTS} subrequests");
        return respond(limit, SfError::new(400, "INVALID_INPUT", &message, &[]).into_response());
    }
    let all_or_none = request["allOrNone"].as_bool().unwrap_or(false);
    let mut answers = Vec::new();
    let mut failed = false;
    for sub in subrequests {
        let reference = sub["referenceId"].clone();
        let method = sub["method"].as_str().unwrap_or_default();
        let url = sub["url"].as_str().unwrap_or_default();
        let result = if failed && all_or_none {
            Err(SfError::new(
                400,
                "PROCESSING_HALTED",
                "The transaction was rolled back since another operation in the same transaction failed.",
                &[],
            ))
        } else {
            match (method, url.split_once("/query?")) {
                ("GET", Some((prefix, query))) if prefix.starts_with("/services/data/") => {
                    let params = form_decode(query.as_bytes());
                    run_query(&state, &version, params.get("q").map_or("", String::as_str))
                }
                _ => Err(SfError::new(
                    400,
                    "INVALID_URL",
                    &format!("this emulator's composite answers query subrequests only, not {method} {url}"),
                    &[],
                )),
            }
        };
        let (status, body) = match result {
            Ok(body) => (200, body),
            Err(e) => {
                failed = true;
                let status = e.status;
                let mut entry = json!({ "message": e.message, "errorCode": e.code });
                if !e.fields.is_empty() {
                    entry["fields"] = json!(e.fields);
                }
                (status, json!([entry]))
            }
        };
        answers.push(json!({"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}));
    }
    respond(limit, Json(json!({ "compositeResponse": answers })).into_response())
}

async fn query_more(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path((version, locator)): Path<(String, String)>,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let key = locator.split('-').next().unwrap_or_default().to_string();
    let batch = state.settings().salesforce_batch_size.max(1);
    let mut world = state.world();
    let data = &mut world.salesforce;
    let Some(mut rows) = data.cursors.remove(&key) else {
        return respond(
            limit,
            SfError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator", &[]).into_response(),
        );
    };
    let rest = if rows.len() > batch { rows.split_off(batch) } else { Vec::new() };
    let offset: usize = locator.split('-').nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    let total = offset + rows.len() + rest.len();
    let mut body = json!({ "totalSize": total, "done": rest.is_empty(), "records": rows });
    if !rest.is_empty() {
        data.cursors.insert(key.clone(), rest);
        body["nextRecordsUrl"] = json!(format!("/services/data/{version}/query/{key}-{}", offset + batch));
    }
    respond(limit, Json(body).into_response())
}

fn parse_fields(body: &Bytes) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(SfError::new(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON object", &[])
            .into_response()),
    }
}

async fn create(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path((_, object)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(object) = object_name(&object) else {
        return respond(limit, SfError::not_found().into_response());
    };
    let fields = match parse_fields(&body) {
        Ok(f) => f,
        Err(r) => return respond(limit, r),
    };
    let now = state.clock.now_ms();
    let result = state.world().salesforce.create(object, fields, now);
    respond(
        limit,
        match result {
            Ok(id) => (StatusCode::CREATED, Json(json!({"id": id, "errors": [], "success": true}))).into_response(),
            Err(e) => e.into_response(),
        },
    )
}

async fn read(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path((version, object, id)): Path<(String, String, String)>,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let world = state.world();
    if id == "describe" {
        let response = match object_name(&object) {
            Some(object) => Json(describe(&world.salesforce, object)).into_response(),
            None => SfError::new(404, "NOT_FOUND", &format!("The requested resource does not exist: {object}"), &[])
                .into_response(),
        };
        return respond(limit, response);
    }
    let found = object_name(&object).and_then(|o| {
        world.salesforce.objects.get(o).and_then(|r| r.iter().rev().find(|r| r["Id"] == id.as_str())).map(|r| (o, r))
    });
    respond(
        limit,
        match found {
            Some((object, record)) => {
                let mut body = record.clone();
                body.insert("attributes".into(), attributes(&version, object, record));
                Json(Value::Object(body)).into_response()
            }
            None => SfError::not_found().into_response(),
        },
    )
}

async fn update(
    State(state): State<Arc<EmulatorState>>,
    headers: HeaderMap,
    Path((_, object, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let limit = match admit(&state, &headers) {
        Ok(l) => l,
        Err(r) => return r,
    };
    let Some(object) = object_name(&object) else {
        return respond(limit, SfError::not_found().into_response());
    };
    let fields = match parse_fields(&body) {
        Ok(f) => f,
        Err(r) => return respond(limit, r),
    };
    let now = state.clock.now_ms();
    let result = state.world().salesforce.update(object, &id, fields, now);
    respond(
        limit,
        match result {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(e) => e.into_response(),
        },
    )
}

/// Forgets every issued token, so the next call gets `INVALID_SESSION_ID`.
pub fn expire_tokens(data: &mut Data) {
    data.tokens.clear();
}
