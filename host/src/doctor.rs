//! `handoff doctor`: checks a real setup before it takes leads, and changes
//! nothing. Each provider gets read-only calls with the configured
//! credentials: HubSpot's token scopes and the contact properties, options
//! and lists the pipelines write; Salesforce's sign-in and the Lead and Task
//! fields and picklist values; Slack's bot scopes, signing secret and
//! channels; the model; the SMTP relay. Then the public URL HubSpot signs,
//! and the ledger. What the pipelines need is read from their nodes'
//! configs, with each plugin's schema defaults filled in, so a pipeline
//! RevOps changed is checked as changed.

use crate::capabilities::Grant;
use crate::connectors::salesforce::{FieldInfo, WRITTEN_LEAD_FIELDS, WRITTEN_TASK_FIELDS};
use crate::connectors::{ConnectorsConfig, ErrorClass, ProviderError, SalesforceAuth, slack};
use crate::ledger::Database;
use crate::pipeline::PreparedPipeline;
use crate::pipeline::model::{SignatureScheme, Trigger};
use crate::runtime::PluginRegistry;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// As it should be.
    Ok,
    /// Works, but not as well as it could (no model: template summaries).
    Warn,
    /// Leads would fail or be refused: fix before serving.
    Fail,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `HubSpot`, `Salesforce`, `Slack`, `Anthropic`, `SMTP`, `Webhooks`,
    /// `Ledger` or `Settings`.
    pub area: &'static str,
    /// How it came out.
    pub level: Level,
    /// What was found, in words.
    pub what: String,
    /// How to fix it, for a warning or failure.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(area: &'static str, what: impl Into<String>) -> Self {
        Finding { area, level: Level::Ok, what: what.into(), fix: None }
    }
    fn warn(area: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { area, level: Level::Warn, what: what.into(), fix: Some(fix.into()) }
    }
    fn fail(area: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Finding { area, level: Level::Fail, what: what.into(), fix: Some(fix.into()) }
    }
}

/// What the served pipelines write to or use at each provider; every entry
/// names the node (`pipeline/node`) that needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Lead Status values set in Salesforce.
    pub lead_statuses: BTreeMap<String, String>,
    /// Lead fields written beside the standard ones, with the picklist
    /// values written to them (the Reject menu's labels).
    pub lead_fields: BTreeMap<String, (Vec<String>, String)>,
    /// Salesforce custom notification types pushed.
    pub notification_types: BTreeMap<String, String>,
    /// HubSpot contact properties written or read.
    pub contact_properties: BTreeMap<String, String>,
    /// The field type to create a missing property as (HubSpot's names:
    /// `Number`, `Date picker`; `Single-line text` otherwise).
    pub property_types: BTreeMap<String, &'static str>,
    /// Option values set on HubSpot enumeration properties.
    pub property_options: BTreeMap<(String, String), String>,
    /// HubSpot lists contacts are added to.
    pub lists: BTreeMap<String, String>,
    /// Slack channels posted to.
    pub channels: BTreeMap<String, String>,
    /// A node writes to HubSpot contacts.
    pub marketing_write: Option<String>,
    /// A node sends email.
    pub email: Option<String>,
    /// A node asks the model.
    pub llm: Option<String>,
    /// Webhook paths HubSpot signs with the URL it calls (v3).
    pub hubspot_paths: Vec<String>,
    /// Webhook paths Slack calls (interactivity).
    pub slack_paths: Vec<String>,
}

impl Needs {
    /// What `pipelines` need, read from their nodes' effective configs (the
    /// node's config over its plugin's schema defaults) and grants. The ops
    /// channel failed leads are reported to is a channel too.
    pub fn of(pipelines: &[PreparedPipeline], registry: &PluginRegistry, ops_channel: &str) -> Needs {
        let mut needs = Needs::default();
        if ops_channel.starts_with('#') {
            needs.channels.insert(ops_channel.to_string(), "handoff serve --ops-channel".into());
        }
        for prepared in pipelines {
            let pipeline = &prepared.pipeline;
            if let Trigger::Webhook { path, signature, .. } = &pipeline.trigger {
                match signature {
                    // v1 signs the body alone; v2 and v3 sign the URL too.
                    SignatureScheme::HubspotV3 | SignatureScheme::HubspotV2 => needs.hubspot_paths.push(path.clone()),
                    SignatureScheme::HubspotV1 => {}
                    SignatureScheme::Slack => needs.slack_paths.push(path.clone()),
                    SignatureScheme::None => {}
                }
            }
            for node in &pipeline.nodes {
                let by = format!("{}/{}", pipeline.name, node.id);
                let schema = registry.get(&node.plugin).map_or(Value::Null, |p| p.info.config_schema.clone());
                let config = with_defaults(&schema, &node.config);
                let granted = |grant: Grant| node.capabilities.contains(&grant);
                for (grant, slot) in [
                    (Grant::MarketingWrite, &mut needs.marketing_write),
                    (Grant::EmailSend, &mut needs.email),
                    (Grant::LlmComplete, &mut needs.llm),
                ] {
                    if granted(grant) && slot.is_none() {
                        *slot = Some(by.clone());
                    }
                }
                needs.read_config(&config, &by, granted(Grant::MarketingWrite));
            }
        }
        needs
    }

    /// Picks out of one node's config what it writes, by the standard
    /// plugins' setting names.
    fn read_config(&mut self, config: &Value, by: &str, marketing_write: bool) {
        let pushes = config.to_string().contains("salesforce_push") || has_push_step(config);
        walk(config, &mut |object: &Map<String, Value>| {
            for (key, value) in object {
                let text = value.as_str();
                match (key.as_str(), text) {
                    ("accept_status" | "reject_status" | "rejected_status", Some(v)) => {
                        self.lead_statuses.entry(v.to_string()).or_insert_with(|| by.to_string());
                    }
                    ("reason_field", Some(v)) => {
                        let labels: Vec<String> = object
                            .get("reject_reasons")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|r| r["label"].as_str().map(String::from))
                            .collect();
                        let entry = self.lead_fields.entry(v.to_string()).or_insert_with(|| (Vec::new(), by.into()));
                        for label in labels {
                            if !entry.0.contains(&label) {
                                entry.0.push(label);
                            }
                        }
                    }
                    ("push_type", Some(v)) if pushes => {
                        self.notification_types.entry(v.to_string()).or_insert_with(|| by.to_string());
                    }
                    (k, Some(v)) if k.ends_with("channel") && v.starts_with('#') && posts_to_channel(object) => {
                        self.channels.entry(v.to_string()).or_insert_with(|| by.to_string());
                    }
                    ("campaign_property", Some(v)) => {
                        self.contact_properties.entry(v.to_string()).or_insert_with(|| by.to_string());
                    }
                    _ if !marketing_write => {}
                    ("properties", None) => {
                        for (role, name) in value.as_object().into_iter().flatten() {
                            let Some(name) = name.as_str() else { continue };
                            self.contact_properties.entry(name.to_string()).or_insert_with(|| by.to_string());
                            let kind = match role.as_str() {
                                r if r.ends_with("_count") => "Number",
                                r if r.ends_with("_at") => "Date picker",
                                _ => "Single-line text",
                            };
                            self.property_types.insert(name.to_string(), kind);
                        }
                    }
                    ("lifecycle_stage", Some(v)) => {
                        let key = ("lifecyclestage".to_string(), v.to_string());
                        self.property_options.entry(key).or_insert_with(|| by.to_string());
                    }
                    ("lead_status", Some(v)) => {
                        let key = ("hs_lead_status".to_string(), v.to_string());
                        self.property_options.entry(key).or_insert_with(|| by.to_string());
                    }
                    ("list", Some(v)) => {
                        self.lists.entry(v.to_string()).or_insert_with(|| by.to_string());
                    }
                    _ => {}
                }
            }
        });
    }
}

/// Whether an object naming a channel posts to it: a priority section
/// (`{"channel", "channels": [...]}`) posts there only with `slack_channel`
/// among its channels.
fn posts_to_channel(object: &Map<String, Value>) -> bool {
    object.get("channels").and_then(Value::as_array).is_none_or(|c| c.iter().any(|c| c == "slack_channel"))
}

/// Whether an SLA ladder step pushes (`"push": true`).
fn has_push_step(config: &Value) -> bool {
    config["steps"].as_array().is_some_and(|steps| steps.iter().any(|s| s["push"] == Value::Bool(true)))
}

/// Calls `visit` on every object in `value`, outermost first.
fn walk(value: &Value, visit: &mut impl FnMut(&Map<String, Value>)) {
    match value {
        Value::Object(map) => {
            visit(map);
            for v in map.values() {
                walk(v, visit);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(v, visit);
            }
        }
        _ => {}
    }
}

/// `config` with the defaults of `schema`'s properties filled in where it
/// says nothing, nested objects included: what the plugin runs with.
pub fn with_defaults(schema: &Value, config: &Value) -> Value {
    let Some(properties) = schema["properties"].as_object() else {
        return config.clone();
    };
    let mut out = match config {
        Value::Object(map) => map.clone(),
        Value::Null => Map::new(),
        other => return other.clone(),
    };
    for (key, property) in properties {
        match out.get(key) {
            None => {
                if let Some(default) = property.get("default") {
                    out.insert(key.clone(), with_defaults(property, default));
                } else if property["type"] == "object" && property.get("properties").is_some() {
                    let filled = with_defaults(property, &Value::Null);
                    if filled.as_object().is_some_and(|m| !m.is_empty()) {
                        out.insert(key.clone(), filled);
                    }
                }
            }
            Some(given @ Value::Object(_)) => {
                let filled = with_defaults(property, given);
                out.insert(key.clone(), filled);
            }
            Some(_) => {}
        }
    }
    Value::Object(out)
}

/// What `handoff doctor` checks.
pub struct Options {
    /// Connector settings (file and environment).
    pub connectors: ConnectorsConfig,
    /// What the served pipelines need.
    pub needs: Needs,
    /// The URL HubSpot calls (`--public-url`).
    pub public_url: Option<String>,
    /// The ledger the server would open.
    pub database: Database,
}

/// Runs every check; nothing is written anywhere. Calls are tried once
/// each, with a short timeout, so a provider that cannot be reached is
/// reported in seconds.
pub async fn check(options: &Options) -> Vec<Finding> {
    let mut connectors = options.connectors.clone();
    connectors.policy.max_attempts = 1;
    connectors.policy.timeout = connectors.policy.timeout.min(std::time::Duration::from_secs(10));
    let mut findings = settings(&connectors);
    let http = crate::connectors::policy::http_client();
    findings.extend(hubspot(&connectors, &http, &options.needs).await);
    findings.extend(webhooks(&connectors, options.public_url.as_deref(), &options.needs));
    findings.extend(salesforce(&connectors, &http, &options.needs).await);
    findings.extend(slack_checks(&connectors, &http, &options.needs).await);
    findings.extend(anthropic(&connectors, &http, &options.needs).await);
    findings.extend(smtp(&connectors, &options.needs).await);
    findings.extend(ledger(&options.database).await);
    findings
}

/// What `handoff serve` would refuse to start without.
fn settings(connectors: &ConnectorsConfig) -> Vec<Finding> {
    crate::app::unmet_for_serve(connectors)
        .into_iter()
        .map(|unmet| match unmet.section {
            Some(section) => Finding::fail(
                "Settings",
                format!("{section} is not configured: the server will not start without it"),
                format!("add (or uncomment) {section} in the config file (handoff init writes one): {}", unmet.setting),
            ),
            None => Finding::fail(
                "Settings",
                format!("{} is missing: the server will not start without it", unmet.setting),
                format!("set {}", unmet.setting),
            ),
        })
        .collect()
}

/// Why a provider's answer failed, for a finding.
fn unreachable(area: &'static str, what: &str, e: &ProviderError, setting: &str) -> Finding {
    match e.class {
        ErrorClass::Auth => Finding::fail(area, format!("{what}: refused ({e})"), setting.to_string()),
        _ => Finding::fail(
            area,
            format!("{what}: {e}"),
            "check the base URL in the config and that this machine can reach it".to_string(),
        ),
    }
}

async fn hubspot(connectors: &ConnectorsConfig, http: &reqwest::Client, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "HubSpot";
    let Some(client) = connectors.hubspot_client(http) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let (hub, scopes) = match client.token_scopes().await {
        Ok(info) => info,
        Err(e) => {
            out.push(unreachable(
                AREA,
                "the private app token",
                &e,
                "HubSpot › Settings › Integrations › Private Apps › your app › Auth: copy the access token into \
                 hubspot.token or HANDOFF_HUBSPOT_TOKEN",
            ));
            return out;
        }
    };
    out.push(Finding::ok(AREA, format!("token accepted (portal {})", hub.map_or("?".into(), |h| h.to_string()))));
    let mut wanted: Vec<(&str, String)> = vec![("crm.objects.contacts.read", "to read each MQL's contact".into())];
    if let Some(by) = &needs.marketing_write {
        wanted.push(("crm.objects.contacts.write", format!("{by} writes rejections back to the contact")));
    }
    if let Some((_, by)) = needs.lists.iter().next() {
        wanted.push(("crm.lists.write", format!("{by} adds rejected leads to nurture lists")));
    }
    // Scopes only these checks use: without them the server works, and
    // what they would check is not checked.
    let mut for_checks: Vec<(&str, &str)> = Vec::new();
    if !needs.lists.is_empty() {
        for_checks.push(("crm.lists.read", "the nurture lists"));
    }
    let schemas = !needs.contact_properties.is_empty() || !needs.property_options.is_empty();
    if schemas {
        for_checks.push(("crm.schemas.contacts.read", "the contact properties and options the pipelines write"));
    }
    let missing_scope = |scope: &str| !scopes.iter().any(|s| s == scope);
    for (scope, why) in &wanted {
        if missing_scope(scope) {
            out.push(Finding::fail(
                AREA,
                format!("the private app lacks the scope {scope} ({why})"),
                format!("HubSpot › Settings › Integrations › Private Apps › your app › Scopes: add {scope} (the token stays the same)"),
            ));
        }
    }
    for (scope, what) in &for_checks {
        if missing_scope(scope) {
            out.push(Finding::warn(
                AREA,
                format!("without the scope {scope}, {what} cannot be checked (the server does not need it)"),
                format!("HubSpot › Settings › Integrations › Private Apps › your app › Scopes: add {scope}, or check {what} by hand"),
            ));
        }
    }
    let all: Vec<&str> = wanted.iter().map(|(s, _)| *s).chain(for_checks.iter().map(|(s, _)| *s)).collect();
    if !all.iter().any(|s| missing_scope(s)) {
        out.push(Finding::ok(AREA, format!("scopes: {}", all.join(", "))));
    }
    if schemas && !missing_scope("crm.schemas.contacts.read") {
        out.extend(hubspot_properties(&client, needs).await);
    }
    if !needs.lists.is_empty() && !missing_scope("crm.lists.read") {
        let mut found = 0;
        for (list, by) in &needs.lists {
            match client.list(list).await {
                Ok(Some((_, true, true))) => found += 1,
                Ok(Some((name, is_static, contacts))) => out.push(Finding::fail(
                    AREA,
                    format!(
                        "list {list} ('{name}') is {}: {by} cannot add rejected leads to it",
                        if contacts { "an active list" } else { "not a contact list" }
                    ),
                    format!(
                        "HubSpot › Contacts › Lists: create a static contact list and put its id in {by}'s config in place of {list}{}",
                        if is_static { "" } else { " (an active list's members come from its filters)" }
                    ),
                )),
                Ok(None) => out.push(Finding::fail(
                    AREA,
                    format!("list {list} does not exist ({by} adds rejected leads to it)"),
                    format!("HubSpot › Contacts › Lists: create a static contact list and put its id in {by}'s config in place of {list}"),
                )),
                Err(e) => out.push(unreachable(AREA, &format!("list {list}"), &e, "see the scopes above")),
            }
        }
        if found == needs.lists.len() {
            out.push(Finding::ok(AREA, format!("the {found} nurture lists exist")));
        }
    }
    out
}

async fn hubspot_properties(client: &crate::connectors::hubspot::HubSpot, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "HubSpot";
    let mut out = Vec::new();
    let mut names: BTreeMap<&str, &str> =
        needs.contact_properties.iter().map(|(n, by)| (n.as_str(), by.as_str())).collect();
    for ((property, _), by) in &needs.property_options {
        names.entry(property.as_str()).or_insert(by.as_str());
    }
    for (name, by) in &names {
        match client.contact_property(name).await {
            Ok(Some((kind, options))) => {
                for ((property, value), by) in needs.property_options.iter().filter(|((p, _), _)| p == name) {
                    if kind == "enumeration" && !options.contains(value) {
                        out.push(Finding::fail(
                            AREA,
                            format!("the contact property {property} has no option {value} ({by} sets it)"),
                            format!("HubSpot › Settings › Properties › {property}: add the option {value}, or change {by}'s config to an option it has ({})", options.join(", ")),
                        ));
                    }
                }
            }
            Ok(None) => {
                out.push(Finding::fail(
                    AREA,
                    format!("the contact property {name} does not exist ({by} uses it)"),
                    format!(
                        "HubSpot › Settings › Properties › Create property: contact, internal name {name} ({})",
                        needs.property_types.get(*name).copied().unwrap_or("Single-line text")
                    ),
                ));
            }
            Err(e) => {
                out.push(unreachable(AREA, &format!("the contact property {name}"), &e, "see the scopes above"));
            }
        }
    }
    // Every finding above is a problem.
    if out.is_empty() {
        out.push(Finding::ok(
            AREA,
            format!("the {} contact properties the pipelines use exist, with their options", names.len()),
        ));
    }
    out
}

fn webhooks(connectors: &ConnectorsConfig, public_url: Option<&str>, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "Webhooks";
    let mut out = Vec::new();
    if connectors.hubspot.is_none() && connectors.slack.is_none() {
        return out;
    }
    let Some(url) = public_url else {
        if !needs.hubspot_paths.is_empty() {
            out.push(Finding::fail(
                AREA,
                "no public URL: HubSpot signs each webhook with the URL it calls, so every webhook would be refused",
                "pass --public-url https://handoff.example.com (the address HubSpot and Slack reach this server at)",
            ));
        }
        return out;
    };
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if u.host().is_some() => u,
        _ => {
            out.push(Finding::fail(
                AREA,
                format!("the public URL '{url}' is not a URL"),
                "pass --public-url https://handoff.example.com",
            ));
            return out;
        }
    };
    if parsed.scheme() != "https" {
        out.push(Finding::warn(
            AREA,
            format!("the public URL {url} is not https: HubSpot and Slack only call https URLs"),
            "put a TLS-terminating proxy or load balancer in front (docs/deploy.md) and pass its https URL",
        ));
    }
    let host = parsed.host_str().unwrap_or_default().trim_matches(['[', ']']);
    let loopback = host == "localhost"
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| match ip {
            std::net::IpAddr::V4(ip) => ip.is_loopback() || ip.is_private() || ip.is_unspecified(),
            std::net::IpAddr::V6(ip) => ip.is_loopback() || ip.is_unspecified(),
        });
    if loopback {
        out.push(Finding::warn(
            AREA,
            format!("the public URL {url} is not reachable from the internet"),
            "pass the address HubSpot and Slack reach this server at",
        ));
    }
    let base = url.trim_end_matches('/');
    for path in &needs.hubspot_paths {
        out.push(Finding::ok(AREA, format!("HubSpot's webhook target URL: {base}{path}")));
    }
    for path in &needs.slack_paths {
        out.push(Finding::ok(AREA, format!("Slack's interactivity request URL: {base}{path}")));
    }
    out
}

async fn salesforce(connectors: &ConnectorsConfig, http: &reqwest::Client, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "Salesforce";
    let (Some(config), Some(client)) = (&connectors.salesforce, connectors.salesforce_client(http)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Err(e) = client.sign_in_check().await {
        let fix = match &config.auth {
            SalesforceAuth::ClientCredentials { .. } => {
                "Setup › App Manager › your connected app: check the consumer key and secret \
                 (salesforce.auth or HANDOFF_SALESFORCE_CLIENT_ID/_SECRET), that the Client Credentials \
                 Flow is enabled and has a Run As user, and salesforce.login_url (your My Domain URL)"
            }
            SalesforceAuth::JwtBearer { .. } => {
                "Setup › App Manager › your connected app: the certificate must match \
                 salesforce.auth.private_key_pem (HANDOFF_SALESFORCE_PRIVATE_KEY), and the user must be \
                 pre-authorized (Manage › Policies: admin approved users)"
            }
        };
        out.push(unreachable(AREA, &format!("signing in at {}", config.login_url), &e, fix));
        return out;
    }
    out.push(Finding::ok(AREA, format!("signed in at {}", config.login_url)));
    let profile = "the integration user's profile needs Read, Create and Edit on Leads and Tasks \
                   (Setup › Profiles › Object Settings)";
    let lead = match client.describe("Lead").await {
        Ok(fields) => fields,
        Err(e) => {
            out.push(Finding::fail(AREA, format!("reading the Lead object's fields: {e}"), profile));
            return out;
        }
    };
    let field_check = |object: &str, fields: &[FieldInfo], name: &str, values: &[String], by: &str| {
        let Some(field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(name)) else {
            let kind = if values.is_empty() {
                "Text".to_string()
            } else {
                format!("Picklist with the values {}", values.join(", "))
            };
            return Some(Finding::fail(
                AREA,
                format!("{object} has no field {name} that this user can see ({by} writes it)"),
                format!(
                    "Setup › Object Manager › {object} › Fields & Relationships: create {name} ({kind}), visible and editable to the integration user's profile"
                ),
            ));
        };
        if !field.updateable || !field.createable {
            return Some(Finding::fail(
                AREA,
                format!("{object}.{name} cannot be written by this user ({by} writes it)"),
                format!(
                    "Setup › Object Manager › {object} › {name} › Set Field-Level Security: make it editable for the integration user's profile"
                ),
            ));
        }
        let lacking: Vec<&String> = values.iter().filter(|v| !field.values.contains(v)).collect();
        if field.kind == "picklist" && !lacking.is_empty() {
            let lacking = lacking.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
            return Some(Finding::fail(
                AREA,
                format!("{object}.{name} has no picklist value {lacking} ({by} sets it)"),
                format!(
                    "Setup › Object Manager › {object} › {name} › Values: add {lacking}, or change {by}'s config to values the picklist has"
                ),
            ));
        }
        None
    };
    let mut found = Vec::new();
    for name in WRITTEN_LEAD_FIELDS {
        let (values, by): (Vec<String>, &str) = if name == "Status" {
            let by = needs.lead_statuses.values().next().map_or("the assign plugin", String::as_str);
            (needs.lead_statuses.keys().cloned().collect(), by)
        } else {
            (Vec::new(), "the assign plugin")
        };
        found.extend(field_check("Lead", &lead, name, &values, by));
    }
    for (name, (labels, by)) in &needs.lead_fields {
        // Values matter where only listed ones are taken, and say what to
        // create where the field is missing.
        let open = lead.iter().any(|f| f.name.eq_ignore_ascii_case(name) && !f.restricted);
        let values: &[String] = if open { &[] } else { labels };
        found.extend(field_check("Lead", &lead, name, values, by));
    }
    match client.describe("Task").await {
        Ok(task) => {
            for name in WRITTEN_TASK_FIELDS {
                found.extend(field_check("Task", &task, name, &[], "the notify plugin's follow-up task"));
            }
        }
        Err(e) => found.push(Finding::fail(AREA, format!("reading the Task object's fields: {e}"), profile)),
    }
    let checked = WRITTEN_LEAD_FIELDS.len() + needs.lead_fields.len() + WRITTEN_TASK_FIELDS.len();
    let all_there = found.is_empty();
    out.extend(found);
    if all_there {
        out.push(Finding::ok(
            AREA,
            format!("the {checked} Lead and Task fields the pipelines write exist and are editable, with their picklist values"),
        ));
    }
    for (name, by) in &needs.notification_types {
        match client.notification_type(name).await {
            Ok(_) => {
                out.push(Finding::ok(AREA, format!("the custom notification type {name} exists ({by} pushes it)")));
            }
            Err(crate::capabilities::CapabilityError::Invalid(e)) => out.push(Finding::fail(
                AREA,
                format!("{by} pushes the custom notification type {name}: {e}"),
                format!("Setup › Custom Notifications › New: API name {name}, channels Desktop and Mobile"),
            )),
            Err(e) => out.push(Finding::fail(
                AREA,
                format!("looking up the custom notification type {name}: {e}"),
                "the integration user needs the API Enabled permission and access to custom notification types",
            )),
        }
    }
    out
}

async fn slack_checks(connectors: &ConnectorsConfig, http: &reqwest::Client, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "Slack";
    let Some(config) = &connectors.slack else {
        return Vec::new();
    };
    let Some(token) = config.bot_token.clone() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if config.signing_secret.is_none() {
        out.push(Finding::fail(
            AREA,
            "no signing secret: Accept and Reject clicks cannot be verified, so every click would be refused",
            "Slack app › Basic Information › App Credentials: copy the Signing Secret into slack.signing_secret or HANDOFF_SLACK_SIGNING_SECRET",
        ));
    }
    let client = slack::Slack::new(http.clone(), &config.base_url, token, connectors.policy.clone());
    let (who, scopes) = match client.identity().await {
        Ok(answer) => answer,
        Err(e) => {
            out.push(unreachable(
                AREA,
                "the bot token",
                &e,
                "Slack app › OAuth & Permissions: copy the Bot User OAuth Token (xoxb-...) into slack.bot_token or HANDOFF_SLACK_BOT_TOKEN",
            ));
            return out;
        }
    };
    let bot = who["user"].as_str().unwrap_or("the bot");
    out.push(Finding::ok(
        AREA,
        format!(
            "bot token accepted (the bot {} in the workspace {})",
            who["user"].as_str().unwrap_or("?"),
            who["team"].as_str().unwrap_or("?")
        ),
    ));
    let mut lacking = Vec::new();
    for (method, needed) in slack::METHOD_SCOPES {
        for scope in *needed {
            if !scopes.iter().any(|s| s == scope) && !lacking.iter().any(|(s, _)| s == scope) {
                lacking.push((*scope, *method));
            }
        }
    }
    for (scope, method) in &lacking {
        out.push(Finding::fail(
            AREA,
            format!("the bot lacks the scope {scope} ({method} needs it)"),
            format!("Slack app › OAuth & Permissions › Bot Token Scopes: add {scope} and reinstall the app (slack-app-manifest.json lists every scope)"),
        ));
    }
    if lacking.is_empty() {
        out.push(Finding::ok(AREA, format!("scopes: {}", scopes.join(", "))));
    }
    if !needs.channels.is_empty() && !scopes.iter().any(|s| s == "chat:write.public") {
        let channels = needs.channels.keys().cloned().collect::<Vec<_>>().join(", ");
        out.push(Finding::warn(
            AREA,
            format!(
                "without the scope chat:write.public the bot posts only to channels it was invited to ({channels})"
            ),
            format!("invite @{bot} to each, or add chat:write.public and reinstall the app"),
        ));
    }
    if lacking.iter().any(|(s, _)| *s == "channels:read" || *s == "groups:read") {
        return out;
    }
    let before = out.len();
    for (channel, by) in &needs.channels {
        match client.channel_exists(channel).await {
            Ok(true) => {}
            Ok(false) => {
                out.push(Finding::fail(
                    AREA,
                    format!("the channel {channel} does not exist or the bot cannot see it ({by} posts to it)"),
                    format!("create {channel} (a private one: invite @{bot} to it), or change {by}'s config"),
                ));
            }
            Err(e) => {
                out.push(unreachable(AREA, &format!("the channel {channel}"), &e, "see the scopes above"));
            }
        }
    }
    if out.len() == before && !needs.channels.is_empty() {
        out.push(Finding::ok(
            AREA,
            format!("channels exist: {}", needs.channels.keys().cloned().collect::<Vec<_>>().join(", ")),
        ));
    }
    out
}

async fn anthropic(connectors: &ConnectorsConfig, http: &reqwest::Client, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "Anthropic";
    let Some(config) = &connectors.anthropic else {
        return match &needs.llm {
            Some(by) => vec![Finding::warn(
                AREA,
                format!("no [anthropic]: {by} writes engagement summaries from its template"),
                "for model-written summaries, set HANDOFF_ANTHROPIC_API_KEY (or [anthropic] api_key)",
            )],
            None => Vec::new(),
        };
    };
    let Some(key) = config.api_key.clone() else {
        return Vec::new();
    };
    let client = crate::connectors::anthropic::Anthropic::new(
        http.clone(),
        &config.base_url,
        key,
        &config.model,
        connectors.policy.clone(),
    );
    match client.check_model().await {
        Ok(()) => vec![Finding::ok(AREA, format!("key accepted; the model {} is available", config.model))],
        Err(e) if e.class == ErrorClass::NotFound => vec![Finding::fail(
            AREA,
            format!("the model {} is not available to this key ({e})", config.model),
            format!(
                "set anthropic.model (or HANDOFF_ANTHROPIC_MODEL) to a model the account has, e.g. {}",
                crate::connectors::DEFAULT_ANTHROPIC_MODEL
            ),
        )],
        Err(e) => vec![unreachable(
            AREA,
            "the API key",
            &e,
            "console.anthropic.com › API keys: set anthropic.api_key or HANDOFF_ANTHROPIC_API_KEY",
        )],
    }
}

async fn smtp(connectors: &ConnectorsConfig, needs: &Needs) -> Vec<Finding> {
    const AREA: &str = "SMTP";
    let Some(config) = &connectors.smtp else {
        return match &needs.email {
            Some(by) => vec![Finding::warn(
                AREA,
                format!("no [smtp]: {by} sends no email backup"),
                "set HANDOFF_SMTP_HOST and HANDOFF_SMTP_FROM (and the login), or [smtp] in the config file",
            )],
            None => Vec::new(),
        };
    };
    if config.from.trim().is_empty() {
        return Vec::new();
    }
    let credentials = match (&config.username, &config.password) {
        (Some(user), Some(password)) => Some((user.clone(), password.clone())),
        _ => None,
    };
    let sender = match crate::connectors::smtp::Smtp::new(
        &config.host,
        config.port,
        config.security,
        credentials.clone(),
        &config.from,
        connectors.policy.clone(),
    ) {
        Ok(sender) => sender,
        Err(e) => return vec![Finding::fail(AREA, format!("{e:#}"), "fix smtp.host and smtp.from")],
    };
    let relay = format!("{}:{}", config.host, config.port);
    match sender.check().await {
        Ok(()) => vec![Finding::ok(
            AREA,
            format!("the relay {relay} greets{}", if credentials.is_some() { " and takes the login" } else { "" }),
        )],
        Err(e) => vec![Finding::fail(
            AREA,
            format!("the relay {relay}: {e}"),
            "check smtp.host, smtp.port and smtp.security (587 STARTTLS, 465 TLS), and smtp.username with HANDOFF_SMTP_PASSWORD",
        )],
    }
}

async fn ledger(database: &Database) -> Vec<Finding> {
    const AREA: &str = "Ledger";
    let versions = |(applied, known): (usize, usize), what: &str| -> Finding {
        match applied.cmp(&known) {
            std::cmp::Ordering::Greater => Finding::fail(
                AREA,
                format!("{what} has {applied} migrations, newer than this binary knows ({known})"),
                "run the binary that wrote it, or a newer one (docs/deploy.md: upgrades)",
            ),
            std::cmp::Ordering::Less => {
                Finding::ok(AREA, format!("{what}: {} migrations to apply when the server starts", known - applied))
            }
            std::cmp::Ordering::Equal => Finding::ok(AREA, format!("{what} is up to date ({known} migrations)")),
        }
    };
    match database {
        Database::Sqlite(path) => {
            let Some(dir) = path.parent().map(|d| if d.as_os_str().is_empty() { std::path::Path::new(".") } else { d })
            else {
                return Vec::new();
            };
            let mut existing = dir;
            while !existing.exists() {
                match existing.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => existing = parent,
                    _ => {
                        existing = std::path::Path::new(".");
                        break;
                    }
                }
            }
            let probe = existing.join(format!(".handoff-doctor-{}", std::process::id()));
            let writable = std::fs::write(&probe, b"").is_ok();
            let _ = std::fs::remove_file(&probe);
            if !writable {
                return vec![Finding::fail(
                    AREA,
                    format!(
                        "{} is not writable: the SQLite ledger {} cannot be created there",
                        existing.display(),
                        path.display()
                    ),
                    "pass --data-dir DIR (HANDOFF_DATA_DIR) on a local disk the server's user can write",
                )];
            }
            match crate::ledger::inspect_sqlite(path) {
                Ok(None) => {
                    vec![Finding::ok(AREA, format!("SQLite at {}: created when the server starts", path.display()))]
                }
                Ok(Some(v)) => vec![versions(v, &format!("SQLite at {}", path.display()))],
                Err(e) => vec![Finding::fail(
                    AREA,
                    format!("{e:#}"),
                    "restore the ledger from a backup (docs/deploy.md), or move it aside to start empty",
                )],
            }
        }
        Database::Postgres { url, schema } => match crate::ledger::inspect_postgres(url, schema).await {
            Ok(access) if !access.can_migrate => {
                let grant = if access.schema_exists {
                    format!("GRANT USAGE, CREATE ON SCHEMA {schema} TO {};", access.user)
                } else {
                    format!(
                        "GRANT CREATE ON DATABASE <database> TO {}; (or create the schema {schema} owned by it)",
                        access.user
                    )
                };
                vec![Finding::fail(
                    AREA,
                    format!(
                        "PostgreSQL: the role {} may not create {} that migrations need",
                        access.user,
                        if access.schema_exists {
                            format!("tables in the schema {schema}")
                        } else {
                            format!("the schema {schema}")
                        }
                    ),
                    grant,
                )]
            }
            Ok(access) => {
                vec![versions(access.migrations, &format!("PostgreSQL schema {schema} (as {})", access.user))]
            }
            Err(e) => vec![Finding::fail(
                AREA,
                format!("{e:#}"),
                "check HANDOFF_DATABASE_URL (postgres://user:password@host:5432/db) and that the server accepts this machine",
            )],
        },
    }
}

/// The findings as a person reads them: by area, each failure with its fix,
/// and a last line with the counts.
pub fn render(findings: &[Finding]) -> String {
    let mut out = String::new();
    let mut area = "";
    for finding in findings {
        if finding.area != area {
            area = finding.area;
            let _ = writeln!(out, "{area}");
        }
        let mark = match finding.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(out, "  {mark}  {}", finding.what);
        if let Some(fix) = &finding.fix {
            let _ = writeln!(out, "        fix: {fix}");
        }
    }
    let fails = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warns = findings.iter().filter(|f| f.level == Level::Warn).count();
    let _ = match (fails, warns) {
        (0, 0) => writeln!(
            out,
            "\nAll {} checks passed; nothing was changed at the providers or in the ledger.",
            findings.len()
        ),
        _ => writeln!(
            out,
            "\n{fails} problem{} and {warns} warning{} in {} checks; nothing was changed at the providers or in the ledger.",
            if fails == 1 { "" } else { "s" },
            if warns == 1 { "" } else { "s" },
            findings.len()
        ),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_fill_what_a_node_leaves_out_nested_objects_too() {
        let schema = json!({"properties": {
            "reject_status": {"type": "string", "default": "Closed - Not Converted"},
            "salesforce": {"type": "object", "properties": {"reason_field": {"default": "Rejection_Reason__c"}}},
            "given": {"type": "string", "default": "x"},
        }});
        let filled = with_defaults(&schema, &json!({"given": "y"}));
        assert_eq!(filled["reject_status"], "Closed - Not Converted");
        assert_eq!(filled["salesforce"]["reason_field"], "Rejection_Reason__c");
        assert_eq!(filled["given"], "y", "what the node says wins");
    }

    #[test]
    fn the_counts_line_says_nothing_was_changed() {
        let text = render(&[
            Finding::ok("Slack", "bot token accepted"),
            Finding::fail("Slack", "the bot lacks the scope im:write", "add it"),
        ]);
        assert!(text.contains("Slack\n  ok    bot token accepted\n  FAIL  the bot lacks"), "{text}");
        assert!(text.contains("        fix: add it"), "{text}");
        assert!(
            text.ends_with(
                "1 problem and 0 warnings in 2 checks; nothing was changed at the providers or in the ledger.\n"
            ),
            "{text}"
        );
    }
}
