//! Salesforce REST behind `crm`: OAuth (client credentials or JWT bearer),
//! one token refresh on `INVALID_SESSION_ID`, SOQL with paging, Lead and
//! Task writes.

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError, retry_after, transport_error};
use super::secret::Secret;
use super::time;
use crate::capabilities::{
    Account, Activity, ActivityKind, CapabilityError, Crm, CrmContact, CrmMatches, CustomNotification, Lead,
    Opportunity, Owner, OwnerKind, Task,
};
use base64::Engine as _;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::atomic::{AtomicBool, Ordering};

const PROVIDER: &str = "salesforce";

/// How Handoff signs in to Salesforce.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "flow", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SalesforceAuth {
    /// OAuth 2.0 client credentials (a connected app with a run-as user).
    ClientCredentials {
        /// The connected app's consumer key.
        client_id: String,
        /// Its consumer secret.
        client_secret: Secret,
    },
    /// OAuth 2.0 JWT bearer: an RS256 assertion signed with the connected
    /// app's certificate key.
    JwtBearer {
        /// The connected app's consumer key.
        client_id: String,
        /// The Salesforce user Handoff acts as.
        username: String,
        /// PEM (PKCS#8 or PKCS#1) RSA private key.
        private_key_pem: Secret,
        /// The `aud` claim; the login URL when unset.
        #[serde(default)]
        audience: Option<String>,
    },
}

#[derive(Clone)]
struct Token {
    access_token: Secret,
    instance_url: String,
}

/// One field of an object's describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldInfo {
    /// The API name (`Status`, `Rejection_Reason__c`).
    pub name: String,
    /// `string`, `picklist`, `reference`, ...
    pub kind: String,
    /// Whether this user may write it on an existing record.
    pub updateable: bool,
    /// Whether this user may set it on a new record.
    pub createable: bool,
    /// Whether only its picklist values are accepted.
    pub restricted: bool,
    /// A picklist's active values.
    pub values: Vec<String>,
}

/// A Salesforce REST client.
pub struct Salesforce {
    http: reqwest::Client,
    login_url: String,
    api_version: String,
    auth: SalesforceAuth,
    policy: CallPolicy,
    token: tokio::sync::Mutex<Option<Token>>,
    /// Custom notification type ids by API name, looked up once each.
    notification_types: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl Salesforce {
    /// A client signing in at `login_url` (`https://login.salesforce.com` or
    /// the My Domain host), using REST API `api_version` (`v59.0`).
    pub fn new(
        http: reqwest::Client,
        login_url: &str,
        api_version: &str,
        auth: SalesforceAuth,
        policy: CallPolicy,
    ) -> Self {
        Salesforce {
            http,
            login_url: login_url.trim_end_matches('/').to_string(),
            api_version: api_version.to_string(),
            auth,
            policy,
            token: tokio::sync::Mutex::new(None),
            notification_types: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// The id of the custom notification type whose API name is `name`,
    /// from Salesforce the first time and from memory after.
    ///
    /// # Errors
    ///
    /// When no type has that name (the message says how to create it), or
    /// Salesforce's error.
    pub async fn notification_type(&self, name: &str) -> Result<String, CapabilityError> {
        if let Some(id) = self.notification_types.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
            return Ok(id.clone());
        }
        let soql =
            format!("SELECT Id, DeveloperName FROM CustomNotificationType WHERE DeveloperName = {}", quote(name));
        let found = self.query(&soql).await?;
        let id = found.first().and_then(|r| r["Id"].as_str()).map(str::to_string).ok_or_else(|| {
            CapabilityError::Invalid(format!(
                "Salesforce has no custom notification type '{name}': create it in Setup → Custom Notifications \
                 (API name {name}, channels Desktop and Mobile), or set the node's push type to one that exists"
            ))
        })?;
        self.notification_types
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), id.clone());
        Ok(id)
    }

    /// Signs in (or keeps the session it has): what `handoff doctor` checks
    /// before reading anything.
    ///
    /// # Errors
    ///
    /// The sign-in's error, classified.
    pub async fn sign_in_check(&self) -> Result<(), ProviderError> {
        self.token().await.map(|_| ())
    }

    /// An object's fields as Salesforce describes them to this user
    /// (`GET .../sobjects/{object}/describe`): name, type, whether it can be
    /// written, and a picklist's active values.
    ///
    /// # Errors
    ///
    /// The provider's error, classified (signing in included).
    pub async fn describe(&self, object: &str) -> Result<Vec<FieldInfo>, ProviderError> {
        let body = self.request(Method::GET, &self.data_path(&format!("/sobjects/{object}/describe")), None).await?;
        let fields = body.unwrap_or_default()["fields"].as_array().cloned().unwrap_or_default();
        Ok(fields
            .iter()
            .map(|f| FieldInfo {
                name: f["name"].as_str().unwrap_or_default().to_string(),
                kind: f["type"].as_str().unwrap_or_default().to_string(),
                updateable: f["updateable"].as_bool().unwrap_or(false),
                createable: f["createable"].as_bool().unwrap_or(false),
                restricted: f["restrictedPicklist"].as_bool().unwrap_or(false),
                values: f["picklistValues"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["active"].as_bool().unwrap_or(true))
                    .filter_map(|v| v["value"].as_str().map(String::from))
                    .collect(),
            })
            .collect())
    }

    fn data_path(&self, rest: &str) -> String {
        format!("/services/data/{}{rest}", self.api_version)
    }

    /// The current access token, signing in when there is none.
    async fn token(&self) -> Result<Token, ProviderError> {
        let mut slot = self.token.lock().await;
        if let Some(token) = slot.as_ref() {
            return Ok(token.clone());
        }
        let token = self.sign_in().await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.token.lock().await = None;
    }

    async fn sign_in(&self) -> Result<Token, ProviderError> {
        let url = format!("{}/services/oauth2/token", self.login_url);
        let form: Vec<(&str, String)> = match &self.auth {
            SalesforceAuth::ClientCredentials { .. } => vec![("grant_type", "client_credentials".into())],
            SalesforceAuth::JwtBearer { client_id, username, private_key_pem, audience } => {
                let aud = audience.clone().unwrap_or_else(|| self.login_url.clone());
                let assertion = jwt_assertion(client_id, username, &aud, private_key_pem.expose())?;
                vec![("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer".into()), ("assertion", assertion)]
            }
        };
        self.policy
            .run(PROVIDER, |_| {
                let mut request = self.http.post(&url).form(&form);
                if let SalesforceAuth::ClientCredentials { client_id, client_secret } = &self.auth {
                    request = request.basic_auth(client_id, Some(client_secret.expose()));
                }
                async move {
                    let response = match request.send().await {
                        Err(e) => return transport_error(PROVIDER, &e),
                        Ok(r) => r,
                    };
                    let status = response.status();
                    let body: Value = response.json().await.unwrap_or_default();
                    if status.is_success() {
                        return Attempt::Done(Token {
                            access_token: Secret::new(body["access_token"].as_str().unwrap_or_default()),
                            instance_url: body["instance_url"]
                                .as_str()
                                .unwrap_or_default()
                                .trim_end_matches('/')
                                .to_string(),
                        });
                    }
                    let error = ProviderError::new(
                        PROVIDER,
                        Some(status.as_u16()),
                        body["error"].as_str().unwrap_or("oauth_error"),
                        body["error_description"].as_str().unwrap_or_default(),
                        if status.is_server_error() { ErrorClass::Transient } else { ErrorClass::Auth },
                    );
                    if status.is_server_error() { Attempt::Retry { error, after: None } } else { Attempt::Fail(error) }
                }
            })
            .await
    }

    /// One REST call, with a single token refresh on `INVALID_SESSION_ID`.
    /// A create (`POST`) is not retried after a timeout or a 5xx: Salesforce
    /// may have committed it, and a retry would make a second record.
    /// `path` is relative to the instance (`/services/data/...`).
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ProviderError> {
        let creating = method == Method::POST;
        self.send(method, path, body, creating).await
    }

    /// A request; `creating` (it may make a record) means one that may have
    /// reached Salesforce is not sent again.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        creating: bool,
    ) -> Result<Option<Value>, ProviderError> {
        let refreshed = AtomicBool::new(false);
        self.policy
            .run(PROVIDER, |_| {
                let method = method.clone();
                let refreshed = &refreshed;
                async move {
                    let token = match self.token().await {
                        Ok(token) => token,
                        Err(e) if e.class == ErrorClass::Transient => return Attempt::Retry { error: e, after: None },
                        Err(e) => return Attempt::Fail(e),
                    };
                    let mut request = self
                        .http
                        .request(method, format!("{}{path}", token.instance_url))
                        .bearer_auth(token.access_token.expose());
                    if let Some(body) = body {
                        request = request.json(body);
                    }
                    let response = match request.send().await {
                        // A create that may have reached Salesforce is not resent.
                        Err(e) if creating && !e.is_connect() => {
                            return Attempt::Fail(ProviderError::new(
                                PROVIDER,
                                None,
                                "transport",
                                e.to_string(),
                                ErrorClass::Transient,
                            ));
                        }
                        Err(e) => return transport_error(PROVIDER, &e),
                        Ok(r) => r,
                    };
                    match classify(response).await {
                        Attempt::Fail(error)
                            if error.code == "INVALID_SESSION_ID" && !refreshed.swap(true, Ordering::SeqCst) =>
                        {
                            self.invalidate().await;
                            Attempt::Retry { error, after: Some(std::time::Duration::ZERO) }
                        }
                        Attempt::Retry { error, .. }
                            if creating && error.code != "REQUEST_LIMIT_EXCEEDED" && error.status != Some(429) =>
                        {
                            Attempt::Fail(error)
                        }
                        other => other,
                    }
                }
            })
            .await
    }

    /// Runs a SOQL query and follows `nextRecordsUrl` to the last page.
    ///
    /// # Errors
    ///
    /// `MALFORMED_QUERY` and other provider errors, classified.
    pub async fn query(&self, soql: &str) -> Result<Vec<Value>, ProviderError> {
        let mut path = format!("{}?q={}", self.data_path("/query"), encode_query(soql));
        let mut records = Vec::new();
        loop {
            let page = self.request(Method::GET, &path, None).await?.unwrap_or_default();
            records.extend(page["records"].as_array().into_iter().flatten().cloned());
            match (page["done"].as_bool(), page["nextRecordsUrl"].as_str()) {
                (Some(false), Some(next)) => path = next.to_string(),
                _ => return Ok(records),
            }
        }
    }

    /// Runs SOQL queries in one Composite API request (`/composite`, one
    /// API call against the org's daily allowance) and returns each query's
    /// records in order, following any further pages.
    ///
    /// # Errors
    ///
    /// The request's error, or the first failed query's, classified.
    pub async fn queries(&self, soqls: &[String]) -> Result<Vec<Vec<Value>>, ProviderError> {
        let subrequests: Vec<Value> = soqls
            .iter()
            .enumerate()
            .map(|(i, soql)| {
                json!({"method": "GET", "url": format!("{}?q={}", self.data_path("/query"), encode_query(soql)), "referenceId": format!("q{i}")})
            })
            .collect();
        let body = json!({"allOrNone": false, "compositeRequest": subrequests});
        // Only reads: safe to send again.
        let answer =
            self.send(Method::POST, &self.data_path("/composite"), Some(&body), false).await?.unwrap_or_default();
        let responses = answer["compositeResponse"].as_array().cloned().unwrap_or_default();
        let mut all = Vec::with_capacity(soqls.len());
        for i in 0..soqls.len() {
            let reference = format!("q{i}");
            let Some(response) = responses.iter().find(|r| r["referenceId"] == reference.as_str()) else {
                return Err(ProviderError::new(
                    PROVIDER,
                    None,
                    "composite",
                    format!("no answer for subrequest {reference}"),
                    ErrorClass::Transient,
                ));
            };
            let status = response["httpStatusCode"].as_u64().unwrap_or(500);
            let page = &response["body"];
            if status >= 400 {
                return Err(subrequest_error(u16::try_from(status).unwrap_or(500), page));
            }
            let mut records: Vec<Value> = page["records"].as_array().cloned().unwrap_or_default();
            let mut next = page["nextRecordsUrl"].as_str().filter(|_| page["done"] == false).map(str::to_string);
            while let Some(path) = next {
                let more = self.request(Method::GET, &path, None).await?.unwrap_or_default();
                records.extend(more["records"].as_array().into_iter().flatten().cloned());
                next = more["nextRecordsUrl"].as_str().filter(|_| more["done"] == false).map(str::to_string);
            }
            all.push(records);
        }
        Ok(all)
    }

    /// Active and inactive users: `(id, name, email, active)`.
    ///
    /// # Errors
    ///
    /// The provider's error, classified.
    pub async fn users(&self) -> Result<Vec<(String, String, String, bool)>, ProviderError> {
        let rows = self.query("SELECT Id, Name, Email, IsActive FROM User").await?;
        Ok(rows
            .iter()
            .map(|r| (text(r, "Id"), text(r, "Name"), text(r, "Email"), r["IsActive"].as_bool().unwrap_or(false)))
            .collect())
    }

    async fn activities(&self, object: &str, who_id: &str, since: i64) -> Result<Vec<Activity>, ProviderError> {
        let soql = format!(
            "SELECT Id, Subject, OwnerId, CreatedDate FROM {object} WHERE WhoId = {} AND CreatedDate > {} ORDER BY CreatedDate",
            quote(who_id),
            time::soql_datetime(since)
        );
        let kind = if object == "Task" { ActivityKind::Task } else { ActivityKind::Event };
        Ok(self
            .query(&soql)
            .await?
            .iter()
            .map(|r| Activity {
                id: text(r, "Id"),
                kind,
                subject: text(r, "Subject"),
                owner_id: opt(r, "OwnerId"),
                created_at: r["CreatedDate"].as_str().and_then(time::parse).unwrap_or(0),
            })
            .collect())
    }
}

/// Builds and signs the RS256 JWT bearer assertion.
fn jwt_assertion(client_id: &str, username: &str, audience: &str, pem: &str) -> Result<String, ProviderError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|e| ProviderError::new(PROVIDER, None, "invalid_private_key", e.to_string(), ErrorClass::Auth))?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() + 180;
    let header = b64.encode(br#"{"alg":"RS256"}"#);
    let claims = b64.encode(json!({"iss": client_id, "sub": username, "aud": audience, "exp": exp}).to_string());
    let signing_input = format!("{header}.{claims}");
    let signature = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key).sign(signing_input.as_bytes());
    Ok(format!("{signing_input}.{}", b64.encode(signature.to_bytes())))
}

async fn classify(response: reqwest::Response) -> Attempt<Option<Value>> {
    let status = response.status();
    let after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Attempt::Done(if text.trim().is_empty() { None } else { serde_json::from_str(&text).ok() });
    }
    // Salesforce errors are an array: [{"message", "errorCode", "fields"}];
    // an action's are [{"actionName", "errors": [{"statusCode", "message"}],
    // "isSuccess": false}].
    let body: Value = serde_json::from_str(&text).unwrap_or_default();
    let first = if body[0]["errors"][0].is_object() {
        json!({"errorCode": body[0]["errors"][0]["statusCode"], "message": body[0]["errors"][0]["message"]})
    } else {
        body[0].clone()
    };
    let code = first["errorCode"].as_str().unwrap_or(status.canonical_reason().unwrap_or("error")).to_string();
    let message = first["message"].as_str().unwrap_or(&text).to_string();
    let error = |class| ProviderError::new(PROVIDER, Some(status.as_u16()), code.clone(), message.clone(), class);
    match (status.as_u16(), code.as_str()) {
        (401, _) => Attempt::Fail(error(ErrorClass::Auth)),
        (403, "REQUEST_LIMIT_EXCEEDED") => Attempt::Retry { error: error(ErrorClass::Transient), after },
        (403, _) => Attempt::Fail(error(ErrorClass::Auth)),
        (404, _) => Attempt::Fail(error(ErrorClass::NotFound)),
        (408 | 429 | 500..=599, _) => Attempt::Retry { error: error(ErrorClass::Transient), after },
        _ => Attempt::Fail(error(ErrorClass::Invalid)),
    }
}

/// A failed Composite subrequest as the error its own request would have
/// been.
fn subrequest_error(status: u16, body: &Value) -> ProviderError {
    let code = body[0]["errorCode"].as_str().unwrap_or("error").to_string();
    let message = body[0]["message"].as_str().unwrap_or("subrequest failed").to_string();
    let class = match (status, code.as_str()) {
        (401 | 403, "REQUEST_LIMIT_EXCEEDED") | (408 | 429 | 500..=599, _) => ErrorClass::Transient,
        (401 | 403, _) => ErrorClass::Auth,
        (404, _) => ErrorClass::NotFound,
        _ => ErrorClass::Invalid,
    };
    ProviderError::new(PROVIDER, Some(status), code, message, class)
}

/// Checks a record id before it goes into a URL path (15 or 18
/// alphanumerics), so a plugin cannot reach another object through it.
fn record_id(id: &str) -> Result<&str, CapabilityError> {
    if matches!(id.len(), 15 | 18) && id.chars().all(|c| c.is_ascii_alphanumeric()) {
        Ok(id)
    } else {
        Err(CapabilityError::Invalid(format!("'{id}' is not a Salesforce record id")))
    }
}

/// A SOQL string literal.
pub fn quote(value: &str) -> String {
    let mut out = String::from("'");
    for c in value.chars() {
        match c {
            '\'' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn encode_query(soql: &str) -> String {
    let mut out = String::new();
    for b in soql.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn text(record: &Value, field: &str) -> String {
    record[field].as_str().unwrap_or_default().to_string()
}

fn opt(record: &Value, field: &str) -> Option<String> {
    record[field].as_str().map(str::to_string)
}

/// The host part of a website, without `www.`: `https://www.acme.com/x` →
/// `acme.com`.
pub fn website_domain(website: &str) -> String {
    let rest = website.split("://").nth(1).unwrap_or(website);
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or_default().to_ascii_lowercase();
    host.strip_prefix("www.").map(str::to_string).unwrap_or(host)
}

const LEAD_FIELDS: &str = "Id, Email, FirstName, LastName, Company, Title, Phone, Country, State, Industry, NumberOfEmployees, LeadSource, Status, OwnerId";

const OPPORTUNITY_FIELDS: &str = "Id, Name, AccountId, OwnerId, StageName, Amount, CloseDate";

fn lead_by_email(email: &str) -> String {
    format!(
        "SELECT {LEAD_FIELDS} FROM Lead WHERE Email = {} AND IsConverted = false ORDER BY CreatedDate DESC LIMIT 1",
        quote(email)
    )
}

fn contact_by_email(email: &str) -> String {
    format!("SELECT Id, Email, Name, AccountId, OwnerId FROM Contact WHERE Email = {} LIMIT 1", quote(email))
}

/// Accounts whose website contains `domain` (lower case); `accounts_from`
/// keeps those whose domain it is.
fn accounts_by_domain(domain: &str) -> String {
    format!(
        "SELECT Id, Name, Website, OwnerId, NumberOfEmployees, Industry FROM Account WHERE Website LIKE {}",
        quote(&format!("%{domain}%"))
    )
}

fn contact_from(r: &Value) -> CrmContact {
    CrmContact {
        id: text(r, "Id"),
        email: text(r, "Email"),
        name: text(r, "Name"),
        account_id: opt(r, "AccountId"),
        owner_id: opt(r, "OwnerId"),
    }
}

fn accounts_from(rows: &[Value], domain: &str) -> Vec<Account> {
    rows.iter()
        .filter(|r| r["Website"].as_str().is_some_and(|w| website_domain(w) == domain))
        .map(|r| Account {
            id: text(r, "Id"),
            name: text(r, "Name"),
            domain: r["Website"].as_str().map(website_domain),
            owner_id: opt(r, "OwnerId"),
            employees: r["NumberOfEmployees"].as_u64().and_then(|n| u32::try_from(n).ok()),
            industry: opt(r, "Industry"),
        })
        .collect()
}

fn opportunity_from(r: &Value) -> Opportunity {
    Opportunity {
        id: text(r, "Id"),
        name: text(r, "Name"),
        account_id: text(r, "AccountId"),
        owner_id: text(r, "OwnerId"),
        stage: text(r, "StageName"),
        amount: r["Amount"].as_f64(),
        close_date: opt(r, "CloseDate"),
    }
}

fn lead_from(record: &Value) -> Lead {
    Lead {
        id: opt(record, "Id"),
        email: text(record, "Email"),
        first_name: opt(record, "FirstName"),
        last_name: text(record, "LastName"),
        company: text(record, "Company"),
        title: opt(record, "Title"),
        phone: opt(record, "Phone"),
        country: opt(record, "Country"),
        state: opt(record, "State"),
        industry: opt(record, "Industry"),
        employees: record["NumberOfEmployees"].as_u64().and_then(|n| u32::try_from(n).ok()),
        lead_source: opt(record, "LeadSource"),
        status: opt(record, "Status"),
        owner_id: opt(record, "OwnerId"),
        extra: "{}".into(),
    }
}

/// The Lead fields this connector writes when it creates or updates a lead
/// (beside those a plugin adds), as `handoff doctor` checks them.
pub const WRITTEN_LEAD_FIELDS: [&str; 13] = [
    "Email",
    "FirstName",
    "LastName",
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
];

/// The Task fields this connector writes.
pub const WRITTEN_TASK_FIELDS: [&str; 7] =
    ["WhoId", "OwnerId", "Subject", "Description", "ActivityDate", "Status", "Priority"];

fn lead_fields(lead: &Lead) -> Result<Map<String, Value>, CapabilityError> {
    let mut fields = Map::new();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            fields.insert(name.to_string(), v);
        }
    };
    put("Email", Some(json!(lead.email)));
    put("FirstName", lead.first_name.clone().map(Value::from));
    put("LastName", Some(json!(lead.last_name)));
    put("Company", Some(json!(lead.company)));
    put("Title", lead.title.clone().map(Value::from));
    put("Phone", lead.phone.clone().map(Value::from));
    put("Country", lead.country.clone().map(Value::from));
    put("State", lead.state.clone().map(Value::from));
    put("Industry", lead.industry.clone().map(Value::from));
    put("NumberOfEmployees", lead.employees.map(Value::from));
    put("LeadSource", lead.lead_source.clone().map(Value::from));
    put("Status", lead.status.clone().map(Value::from));
    put("OwnerId", lead.owner_id.clone().map(Value::from));
    match serde_json::from_str::<Value>(if lead.extra.trim().is_empty() { "{}" } else { &lead.extra }) {
        Ok(Value::Object(extra)) => fields.extend(extra),
        _ => return Err(CapabilityError::Invalid("lead.extra must be a JSON object".into())),
    }
    Ok(fields)
}

#[async_trait::async_trait]
impl Crm for Salesforce {
    async fn changed_leads(
        &self,
        status: &str,
        since: i64,
        fields: &[String],
        limit: u32,
    ) -> Result<Vec<crate::capabilities::LeadChange>, CapabilityError> {
        let extra: String = fields.iter().fold(String::new(), |mut out, f| {
            out.push_str(", ");
            out.push_str(f);
            out
        });
        // SystemModstamp changes on every write, by a person or the system,
        // and is indexed: what integrations poll on.
        let soql = format!(
            "SELECT {LEAD_FIELDS}, SystemModstamp{extra} FROM Lead WHERE Status = {} AND SystemModstamp > {} ORDER BY SystemModstamp LIMIT {limit}",
            quote(status),
            super::time::soql_datetime(since)
        );
        Ok(self
            .query(&soql)
            .await?
            .iter()
            .map(|r| {
                let mut lead = lead_from(r);
                let values: Map<String, Value> = fields.iter().map(|f| (f.clone(), r[f.as_str()].clone())).collect();
                lead.extra = Value::Object(values).to_string();
                crate::capabilities::LeadChange {
                    lead,
                    modified_at: r["SystemModstamp"].as_str().and_then(super::time::parse).unwrap_or(since),
                }
            })
            .collect())
    }

    async fn find_lead_by_email(&self, email: &str) -> Result<Option<Lead>, CapabilityError> {
        Ok(self.query(&lead_by_email(email)).await?.first().map(lead_from))
    }

    async fn find_contact_by_email(&self, email: &str) -> Result<Option<CrmContact>, CapabilityError> {
        Ok(self.query(&contact_by_email(email)).await?.first().map(contact_from))
    }

    async fn find_accounts_by_domain(&self, domain: &str) -> Result<Vec<Account>, CapabilityError> {
        let domain = domain.trim().to_ascii_lowercase();
        Ok(accounts_from(&self.query(&accounts_by_domain(&domain)).await?, &domain))
    }

    async fn find_open_opportunities_by_domain(&self, domain: &str) -> Result<Vec<Opportunity>, CapabilityError> {
        let accounts = self.find_accounts_by_domain(domain).await?;
        if accounts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = accounts.iter().map(|a| quote(&a.id)).collect();
        let soql = format!(
            "SELECT {OPPORTUNITY_FIELDS} FROM Opportunity WHERE IsClosed = false AND AccountId IN ({}) ORDER BY CloseDate",
            ids.join(", ")
        );
        Ok(self.query(&soql).await?.iter().map(opportunity_from).collect())
    }

    async fn find_matches(&self, email: &str, domain: Option<&str>) -> Result<CrmMatches, CapabilityError> {
        let mut soqls = vec![lead_by_email(email), contact_by_email(email)];
        let domain = domain.map(|d| d.trim().to_ascii_lowercase());
        if let Some(domain) = &domain {
            soqls.push(accounts_by_domain(domain));
            soqls.push(format!(
                "SELECT {OPPORTUNITY_FIELDS} FROM Opportunity WHERE IsClosed = false AND Account.Website LIKE {} ORDER BY CloseDate",
                quote(&format!("%{domain}%"))
            ));
        }
        let mut found = self.queries(&soqls).await?.into_iter();
        let lead = found.next().unwrap_or_default().first().map(lead_from);
        let contact = found.next().unwrap_or_default().first().map(contact_from);
        let (accounts, opportunities) = match &domain {
            Some(domain) => {
                let accounts = accounts_from(&found.next().unwrap_or_default(), domain);
                // LIKE matched the domain anywhere in the website: keep the
                // opportunities of the accounts whose domain it is.
                let opportunities = found
                    .next()
                    .unwrap_or_default()
                    .iter()
                    .map(opportunity_from)
                    .filter(|o| accounts.iter().any(|a| a.id == o.account_id))
                    .collect();
                (accounts, opportunities)
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(CrmMatches { lead, contact, accounts, opportunities })
    }

    async fn get_owner(&self, id: &str) -> Result<Option<Owner>, CapabilityError> {
        let (soql, kind) = if id.starts_with("00G") {
            (format!("SELECT Id, Name, Email FROM Group WHERE Id = {} AND Type = 'Queue'", quote(id)), OwnerKind::Queue)
        } else {
            (format!("SELECT Id, Name, Email FROM User WHERE Id = {}", quote(id)), OwnerKind::User)
        };
        Ok(self.query(&soql).await?.first().map(|r| Owner {
            id: text(r, "Id"),
            name: text(r, "Name"),
            email: text(r, "Email"),
            kind,
        }))
    }

    async fn list_activities(&self, who_id: &str, since: i64) -> Result<Vec<Activity>, CapabilityError> {
        let mut all = self.activities("Task", who_id, since).await?;
        all.extend(self.activities("Event", who_id, since).await?);
        all.sort_by_key(|a| a.created_at);
        Ok(all)
    }

    async fn upsert_lead(&self, lead: Lead) -> Result<String, CapabilityError> {
        let mut fields = lead_fields(&lead)?;
        match &lead.id {
            None => {
                let created =
                    self.request(Method::POST, &self.data_path("/sobjects/Lead"), Some(&Value::Object(fields))).await?;
                Ok(created.as_ref().and_then(|b| b["id"].as_str()).unwrap_or_default().to_string())
            }
            Some(id) => {
                fields.remove("Id");
                let path = self.data_path(&format!("/sobjects/Lead/{}", record_id(id)?));
                self.request(Method::PATCH, &path, Some(&Value::Object(fields))).await?;
                Ok(id.clone())
            }
        }
    }

    async fn assign_owner(&self, lead_id: &str, owner_id: &str) -> Result<(), CapabilityError> {
        let path = self.data_path(&format!("/sobjects/Lead/{}", record_id(lead_id)?));
        self.request(Method::PATCH, &path, Some(&json!({ "OwnerId": owner_id }))).await?;
        Ok(())
    }

    async fn create_task(&self, task: Task) -> Result<String, CapabilityError> {
        let mut body = json!({
            "WhoId": task.who_id,
            "OwnerId": task.owner_id,
            "Subject": task.subject,
            "ActivityDate": task.due_date,
            "Status": "Not Started",
            "Priority": task.priority,
        });
        if let Some(description) = task.description {
            body["Description"] = json!(description);
        }
        let created = self.request(Method::POST, &self.data_path("/sobjects/Task"), Some(&body)).await?;
        Ok(created.as_ref().and_then(|b| b["id"].as_str()).unwrap_or_default().to_string())
    }

    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, CapabilityError> {
        let soql = format!("SELECT {LEAD_FIELDS} FROM Lead WHERE Id = {}", quote(record_id(id)?));
        Ok(self.query(&soql).await?.first().map(lead_from))
    }

    async fn update_lead(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.update("Lead", id, fields).await
    }

    async fn update_task(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.update("Task", id, fields).await
    }

    async fn send_notification(&self, notification: CustomNotification) -> Result<(), CapabilityError> {
        let type_id = self.notification_type(&notification.type_name).await?;
        let body = json!({"inputs": [{
            "customNotifTypeId": type_id,
            "recipientIds": notification.recipient_ids,
            "title": notification.title,
            "body": notification.body,
            "targetId": notification.target_id,
        }]});
        let path = self.data_path("/actions/standard/customNotificationAction");
        let answer = self.request(Method::POST, &path, Some(&body)).await?;
        // 200 with `isSuccess: false` is how an action may refuse too.
        let result = answer.as_ref().and_then(|a| a.get(0)).cloned().unwrap_or_default();
        if result["isSuccess"] == false {
            let error = &result["errors"][0];
            return Err(CapabilityError::Invalid(format!(
                "salesforce {}: {}",
                error["statusCode"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or("the custom notification was refused")
            )));
        }
        Ok(())
    }
}

impl Salesforce {
    /// PATCHes `fields` (a JSON object) onto the `object` record `id`.
    async fn update(&self, object: &str, id: &str, fields: &str) -> Result<(), CapabilityError> {
        let fields: Value = serde_json::from_str(fields)
            .map_err(|e| CapabilityError::Invalid(format!("fields are not a JSON object: {e}")))?;
        let path = self.data_path(&format!("/sobjects/{object}/{}", record_id(id)?));
        self.request(Method::PATCH, &path, Some(&fields)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_doctor_checks_are_the_fields_a_lead_is_written_with() {
        let full: Value = WRITTEN_LEAD_FIELDS.iter().map(|f| (f.to_string(), json!("x"))).collect::<Map<_, _>>().into();
        let mut record = full.clone();
        record["NumberOfEmployees"] = json!(50);
        let written = lead_fields(&lead_from(&record)).unwrap();
        let mut names: Vec<&str> = written.keys().map(String::as_str).collect();
        names.sort_unstable();
        let mut listed = WRITTEN_LEAD_FIELDS.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed);
    }

    #[test]
    fn soql_literals_escape_quotes_and_backslashes() {
        assert_eq!(quote("o'brien@x.com"), r"'o\'brien@x.com'");
        assert_eq!(quote(r"a\b"), r"'a\\b'");
    }

    #[test]
    fn website_domains() {
        assert_eq!(website_domain("https://www.Acme.com/about"), "acme.com");
        assert_eq!(website_domain("acme.com"), "acme.com");
        assert_eq!(website_domain("http://shop.acme.co.uk:8080"), "shop.acme.co.uk");
    }
}
