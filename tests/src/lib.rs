//! Shared setup for the integration tests: the guest programs, a host with
//! them loaded, and test doubles for capability providers (which exist only
//! here, never in the product's code path).

use handoff::capabilities::{
    Account, Activity, Capabilities, CapabilityError, Crm, CrmContact, Lead, Opportunity, Owner, Task,
};
use handoff::connectors::{CallPolicy, ConnectorsConfig};
use handoff::pipeline::{self, Diagnostic, Executor, PreparedPipeline, Start};
use handoff::record::ExecutionRecord;
use handoff::runtime::{Plugin, PluginRegistry, PluginSource, Runtime, RuntimeConfig};
use handoff_emulators::{Emulators, Settings};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod browser;
pub mod fuzz;
pub mod toolchains;

/// Paths of the guest programs built by `build.rs`.
pub mod programs {
    include!(concat!(env!("OUT_DIR"), "/programs.rs"));
}

/// A compiled-component cache shared by test runs, so each test does not
/// recompile every program.
pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("OUT_DIR")).join("data")
}

/// A runtime sized for tests, caching compiled components in `data_dir`.
pub fn runtime(data_dir: &Path) -> Arc<Runtime> {
    let mut config = RuntimeConfig::new(data_dir);
    config.max_concurrent_runs = 32;
    Runtime::new(config).expect("runtime starts")
}

/// Loads one guest program.
pub async fn load_program(runtime: &Runtime, path: &str) -> Arc<Plugin> {
    let bytes = std::fs::read(path).expect("program was built");
    runtime.load(PluginSource::File(path.into()), bytes).await.expect("program loads")
}

/// A runtime with the standard plugins and every test program except
/// `shadow` (which would replace `validate`).
pub struct TestHost {
    /// The sandbox.
    pub runtime: Arc<Runtime>,
    /// Standard plugins and test programs.
    pub registry: PluginRegistry,
}

impl TestHost {
    /// A fresh host (own runtime), sharing the compiled-component cache.
    pub async fn new() -> TestHost {
        let runtime = runtime(&shared_cache_dir());
        let (mut registry, problems) = PluginRegistry::load(&runtime, &[]).await;
        assert!(problems.is_empty(), "standard plugins load: {problems:?}");
        for path in
            [programs::ECHO, programs::SPIN, programs::HOG, programs::TRAP, programs::SNEAKY, programs::OVERREACH]
        {
            registry.insert(load_program(&runtime, path).await);
        }
        TestHost { runtime, registry }
    }

    /// Checks pipeline JSON as if read from `pipeline.json`.
    ///
    /// # Errors
    ///
    /// Every problem found.
    pub fn check(&self, json: &str) -> Result<PreparedPipeline, Vec<Diagnostic>> {
        pipeline::check(Path::new("pipeline.json"), json, &self.registry)
    }

    /// Checks `json`, panicking with the diagnostics when it is invalid.
    pub fn prepare(&self, json: &str) -> PreparedPipeline {
        self.check(json).unwrap_or_else(|d| panic!("pipeline should be valid:\n{}", render(&d)))
    }

    /// Executes a valid pipeline on `input` with `capabilities`.
    pub async fn execute(&self, json: &str, input: Value, capabilities: Capabilities) -> ExecutionRecord {
        let prepared = self.prepare(json);
        Executor::new(self.runtime.clone(), Arc::new(capabilities))
            .execute(&prepared, input, Start::Trigger, Some("lead-1".into()))
            .await
    }
}

/// Diagnostics as the CLI prints them, one per line.
pub fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// A pipeline of `nodes` (JSON array text) with `connections` (JSON object
/// text), triggered by a webhook.
pub fn pipeline_json(nodes: &str, connections: &str) -> String {
    format!(
        r#"{{
  "name": "test",
  "version": 1,
  "trigger": {{"type": "webhook", "path": "/hook", "signature": "none"}},
  "nodes": {nodes},
  "connections": {connections}
}}"#
    )
}

/// A CRM test double that records every call and answers from a fixed
/// list of leads.
#[derive(Default)]
pub struct RecordingCrm {
    /// The leads it answers from.
    pub leads: Vec<Lead>,
    /// Every call, in order.
    pub calls: Mutex<Vec<String>>,
}

impl RecordingCrm {
    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

/// A lead as the CRM double holds it.
pub fn lead(id: &str, email: &str, owner: &str) -> Lead {
    Lead {
        id: Some(id.into()),
        email: email.into(),
        first_name: None,
        last_name: "Doe".into(),
        company: "Acme".into(),
        title: None,
        phone: None,
        country: None,
        state: None,
        industry: None,
        employees: None,
        lead_source: None,
        status: None,
        owner_id: Some(owner.into()),
        extra: "{}".into(),
    }
}

#[async_trait::async_trait]
impl Crm for RecordingCrm {
    async fn changed_leads(
        &self,
        status: &str,
        since: i64,
        _: &[String],
        _: u32,
    ) -> Result<Vec<handoff::capabilities::LeadChange>, CapabilityError> {
        self.record(format!("changed_leads {status} {since}"));
        Ok(Vec::new())
    }
    async fn find_lead_by_email(&self, email: &str) -> Result<Option<Lead>, CapabilityError> {
        self.record(format!("find_lead_by_email {email}"));
        Ok(self.leads.iter().find(|l| l.email == email).cloned())
    }
    async fn find_contact_by_email(&self, email: &str) -> Result<Option<CrmContact>, CapabilityError> {
        self.record(format!("find_contact_by_email {email}"));
        Ok(None)
    }
    async fn find_accounts_by_domain(&self, domain: &str) -> Result<Vec<Account>, CapabilityError> {
        self.record(format!("find_accounts_by_domain {domain}"));
        Ok(Vec::new())
    }
    async fn find_open_opportunities_by_domain(&self, domain: &str) -> Result<Vec<Opportunity>, CapabilityError> {
        self.record(format!("find_open_opportunities_by_domain {domain}"));
        Ok(Vec::new())
    }
    async fn get_owner(&self, id: &str) -> Result<Option<Owner>, CapabilityError> {
        self.record(format!("get_owner {id}"));
        Ok(None)
    }
    async fn list_activities(&self, who_id: &str, since: i64) -> Result<Vec<Activity>, CapabilityError> {
        self.record(format!("list_activities {who_id} {since}"));
        Ok(Vec::new())
    }
    async fn upsert_lead(&self, lead: Lead) -> Result<String, CapabilityError> {
        self.record(format!("upsert_lead {}", lead.email));
        Ok("00Q000000000001".into())
    }
    async fn assign_owner(&self, lead_id: &str, owner_id: &str) -> Result<(), CapabilityError> {
        self.record(format!("assign_owner {lead_id} {owner_id}"));
        Ok(())
    }
    async fn create_task(&self, task: Task) -> Result<String, CapabilityError> {
        self.record(format!("create_task {}", task.subject));
        Ok("00T000000000001".into())
    }
    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, CapabilityError> {
        self.record(format!("get_lead {id}"));
        Ok(self.leads.iter().find(|l| l.id.as_deref() == Some(id)).cloned())
    }
    async fn update_lead(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.record(format!("update_lead {id} {fields}"));
        Ok(())
    }
    async fn update_task(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.record(format!("update_task {id} {fields}"));
        Ok(())
    }
    async fn send_notification(
        &self,
        notification: handoff::capabilities::CustomNotification,
    ) -> Result<(), CapabilityError> {
        self.record(format!("send_notification {} {}", notification.type_name, notification.target_id));
        Ok(())
    }
}

/// Emulators on free loopback ports with default settings.
pub async fn emulators() -> Emulators {
    emulators_with(Settings::default()).await
}

/// Emulators on free loopback ports with `settings`.
pub async fn emulators_with(settings: Settings) -> Emulators {
    Emulators::start_loopback(settings, handoff_emulators::system_clock()).await.expect("the emulators start")
}

/// The call policy with short waits, so retry tests run fast.
pub fn fast_policy() -> CallPolicy {
    CallPolicy {
        timeout: std::time::Duration::from_secs(2),
        base_backoff: std::time::Duration::from_millis(5),
        rolling_limit_wait: std::time::Duration::from_millis(20),
        ..CallPolicy::default()
    }
}

/// Connector settings for `emulators` with the fast policy.
pub fn emulator_connectors(emulators: &Emulators) -> ConnectorsConfig {
    ConnectorsConfig { policy: fast_policy(), ..handoff::emulated::connectors(emulators) }
}

/// How many requests `provider`'s emulator answered, and with what status.
pub fn statuses(emulators: &Emulators, provider: &str) -> Vec<u16> {
    emulators.state.world().requests.iter().filter(|r| r.provider == provider).map(|r| r.status).collect()
}

/// A running Handoff beside its emulators, on virtual time ([`handoff::demo::DEMO_NOW`]).
pub struct Running {
    /// The emulators.
    pub emulators: Emulators,
    /// The server.
    pub app: handoff::app::App,
    /// Its virtual time.
    pub clock: Arc<handoff::capabilities::ManualClock>,
    /// Its ledger and state.
    pub state_dir: tempfile::TempDir,
}

/// Shifts the tests' virtual time by this many days (default 0), so the
/// suite can be run far from the wall clock: a multiple of 7 keeps the
/// weekday, and so the roster's working hours, as they are at
/// [`handoff::demo::DEMO_NOW`].
pub const SHIFT_DAYS_VAR: &str = "HANDOFF_TEST_SHIFT_DAYS";

/// The virtual time end-to-end tests start at: [`handoff::demo::DEMO_NOW`],
/// moved by [`SHIFT_DAYS_VAR`] days when set.
pub fn test_now_ms() -> i64 {
    let days: i64 = std::env::var(SHIFT_DAYS_VAR).ok().and_then(|d| d.trim().parse().ok()).unwrap_or(0);
    handoff::capabilities::Clock::now_ms(&*handoff::demo::demo_clock()) + days * 86_400_000
}

/// A manual clock at [`test_now_ms`].
pub fn test_clock() -> Arc<handoff::capabilities::ManualClock> {
    Arc::new(handoff::capabilities::ManualClock::new(test_now_ms()))
}

/// Starts the emulators and the server with the shipped pipeline and roster.
pub async fn start_handoff() -> Running {
    start_handoff_in(tempfile::tempdir().unwrap()).await
}

/// [`start_handoff`] with its state and ledger (`handoff.db`) in `state_dir`.
pub async fn start_handoff_in(state_dir: tempfile::TempDir) -> Running {
    start_handoff_with(state_dir, test_clock(), |options| options).await
}

/// Starts the emulators and the server on `clock`, with the shipped pipeline
/// and roster, the options changed by `adjust`.
pub async fn start_handoff_with(
    state_dir: tempfile::TempDir,
    clock: Arc<handoff::capabilities::ManualClock>,
    adjust: impl FnOnce(handoff::app::AppOptions) -> handoff::app::AppOptions,
) -> Running {
    start_handoff_on(Settings::default(), state_dir, clock, adjust).await
}

/// Emulator settings without rate limits: for tests that send a thousand
/// leads and are not about limits.
pub fn unlimited() -> Settings {
    Settings { hubspot_per_ten_seconds: 0, hubspot_search_per_second: 0, slack_channel_burst: 0, ..Settings::default() }
}

/// [`start_handoff_with`] on emulators with `settings`.
pub async fn start_handoff_on(
    settings: Settings,
    state_dir: tempfile::TempDir,
    clock: Arc<handoff::capabilities::ManualClock>,
    adjust: impl FnOnce(handoff::app::AppOptions) -> handoff::app::AppOptions,
) -> Running {
    let emulators = handoff::emulated::start(settings, clock.clone()).await.unwrap();
    let options = adjust(handoff_options(&emulators, clock.clone(), state_dir.path()));
    let app = handoff::app::App::launch(options).await.expect("handoff starts");
    Running { emulators, app, clock, state_dir }
}

/// The shipped roster with every rep always available and no daily cap,
/// written into `dir`: for tests whose virtual time may fall at any hour.
pub fn open_roster(dir: &Path) -> PathBuf {
    let path = dir.join("open-roster.json");
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    handoff::demo::write_open_roster(&pipelines, &path).expect("the open roster is written");
    path
}

/// The shipped pipeline and roster on `emulators` (with fast retries), on
/// `clock`, with plugin state and the ledger (`handoff.db`) in `state_dir`.
pub fn handoff_options(
    emulators: &Emulators,
    clock: Arc<handoff::capabilities::ManualClock>,
    state_dir: &Path,
) -> handoff::app::AppOptions {
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    handoff::app::AppOptions {
        database: Some(handoff::ledger::Database::Sqlite(state_dir.join("handoff.db"))),
        ..handoff::app::AppOptions::mql_handoff(&pipelines, shared_cache_dir(), emulator_connectors(emulators), clock)
    }
}

/// A HubSpot `contact.propertyChange` event making `contact_id` an MQL.
pub fn mql_event(event_id: u64, contact_id: u64) -> Value {
    serde_json::json!({
        "eventId": event_id, "subscriptionId": 686627, "portalId": 891472211, "appId": 7906213,
        "occurredAt": 1_795_000_000_000i64, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": contact_id, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead",
        "changeSource": "CRM_UI", "sourceId": "userId:882761034"
    })
}

/// `n` new MQL contacts in `running`'s HubSpot, in North America (Illinois),
/// mid-sized and scored 70: plain leads every NA rep may take. Their ids.
pub async fn new_contacts(running: &Running, n: usize) -> Vec<u64> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..n {
        let properties = serde_json::json!({"email": format!("buyer{i}@fair-share{i}.com"), "firstname": "Pat", "lastname": format!("Fair{i}"),
            "company": format!("Fair Share {i}"), "country": "United States", "state": "IL", "numemployees": "300",
            "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
        let id = handoff_emulators::drive::create_contact(&http, running.emulators.http, &properties).await.unwrap();
        ids.push(id.parse().unwrap());
    }
    ids
}

/// POSTs `events` to the webhook, signed (v3) with `secret`.
pub async fn post_webhook(running: &Running, events: &Value, secret: &str) -> reqwest::Response {
    let url = format!("http://{}/webhooks/hubspot", running.app.server.addr);
    handoff_emulators::drive::send_hubspot_webhook(&reqwest::Client::new(), &url, secret, events.to_string())
        .await
        .unwrap()
}

/// The ledger (SQLite) of a running Handoff.
pub fn ledger(running: &Running) -> handoff::ledger::SqliteStore {
    handoff::ledger::SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap()
}

/// Posts signed HubSpot webhook events and waits for their executions.
pub async fn deliver(running: &Running, events: Value) {
    let response = post_webhook(running, &events, handoff_emulators::SECRET).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(running.app.server.settle(Duration::from_secs(60)).await, "executions finish");
}

/// Moves the virtual clock to `at` and waits until every timer due by then
/// has fired and what it started has finished.
pub async fn advance_to(running: &Running, at: i64) {
    running.clock.set(at);
    let ledger = ledger(running);
    for _ in 0..400 {
        let pending = handoff::ledger::Ledger::next_timer_due(&ledger, None).await.unwrap();
        // A fired timer's event is in the ledger before the worker takes
        // it: settled means no event unfinished there either.
        let unfinished = handoff::ledger::Ledger::unfinished_events(&ledger).await.unwrap();
        if pending.is_none_or(|due| due > at) && unfinished.is_empty() && running.app.server.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if running.app.server.in_flight() == 0 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timers due by {at} did not fire and settle");
}

/// The texts of the DMs sent to `email`, oldest first.
pub fn dms_to(running: &Running, email: &str) -> Vec<String> {
    let world = running.emulators.state.world();
    world.slack.messages.iter().filter(|m| m.recipient.as_deref() == Some(email)).map(|m| m.text.clone()).collect()
}

/// The Salesforce lead with this email.
pub fn sf_lead(running: &Running, email: &str) -> serde_json::Map<String, Value> {
    let world = running.emulators.state.world();
    world.salesforce.objects["Lead"].iter().find(|l| l["Email"] == email).cloned().expect("the Salesforce lead")
}

/// The timers set about a lead.
pub async fn timers(running: &Running, lead: &str) -> Vec<handoff::ledger::TimerRecord> {
    handoff::ledger::Ledger::lead_timers(&ledger(running), lead).await.unwrap()
}

/// The lead's state in the ledger.
pub async fn lead_state(running: &Running, lead: &str) -> String {
    handoff::ledger::Ledger::lead(&ledger(running), lead).await.unwrap().unwrap().state.as_str().to_string()
}

/// `recipient` clicks `action` in their newest DM that has it, and the
/// executions it starts finish.
pub async fn click(running: &Running, recipient: &str, action: &str) -> reqwest::Response {
    choose(running, recipient, action, None).await
}

/// `recipient` clicks `action` (picking `option` in a select) in their
/// newest DM that has it, and the executions it starts finish.
pub async fn choose(running: &Running, recipient: &str, action: &str, option: Option<&str>) -> reqwest::Response {
    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let response = handoff_emulators::drive::click(
        &reqwest::Client::new(),
        &url,
        &running.emulators.state,
        recipient,
        action,
        option,
    )
    .await
    .unwrap();
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    response
}
