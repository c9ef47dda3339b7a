//! Dry-run capabilities: every provider answers reads from a recording
//! (what the providers answered a past execution: a [`Tape`]) and records
//! writes instead of sending them (an [`Outbox`]). Plugin state lives in a
//! scratch copy, timers in a book. Nothing here holds a credential or a
//! network client except the optional live readers a simulation may be
//! given, and those only read.
//!
//! `handoff simulate`, shadow pipelines and `handoff replay` run pipelines
//! on these; they are the only capabilities a shadow pipeline ever gets.

use crate::capabilities::{
    Account, Activity, Capabilities, CapabilityError, Chat, Clock, Contact, Crm, CrmContact, CrmMatches, Email,
    EmailMessage, Lead, LeadChange, Llm, Marketing, MessageRef, Opportunity, Owner, Roster, Scheduler, StateMap,
    StateQuota, StateStore, Task, Timer,
};
use crate::record::{CallRecord, read_key};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What providers answered, by question; the latest answer to a question
/// wins.
#[derive(Debug, Clone, Default)]
pub struct Tape {
    answers: HashMap<String, Value>,
    /// Contacts by id, whatever properties were asked for.
    contacts: HashMap<String, Value>,
}

impl Tape {
    /// The answers in `reads` (later ones replace earlier ones).
    pub fn from_reads(reads: &[CallRecord]) -> Tape {
        let mut tape = Tape::default();
        for read in reads {
            if read.call == "marketing.get-contact"
                && let Some(id) = read.answer["id"].as_str()
            {
                tape.contacts.insert(id.to_string(), read.answer.clone());
            }
            tape.answers.insert(read.key(), read.answer.clone());
        }
        tape
    }

    /// A contact as a file of leads gives it: its id and its properties.
    #[must_use]
    pub fn with_contact(mut self, id: &str, properties: &Value) -> Tape {
        self.contacts.insert(id.to_string(), json!({"id": id, "properties": properties.to_string()}));
        self
    }

    /// How many answers it holds.
    pub fn len(&self) -> usize {
        self.answers.len() + self.contacts.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn answer<T: DeserializeOwned>(&self, call: &str, args: &Value) -> Option<T> {
        serde_json::from_value(self.answers.get(&read_key(call, args))?.clone()).ok()
    }

    fn contact(&self, id: &str) -> Option<Contact> {
        serde_json::from_value(self.contacts.get(id)?.clone()).ok()
    }

    fn contact_by_email(&self, email: &str) -> Option<Contact> {
        self.contacts.values().filter_map(|c| serde_json::from_value::<Contact>(c.clone()).ok()).find(|c| {
            serde_json::from_str::<Value>(&c.properties)
                .ok()
                .and_then(|p| p["email"].as_str().map(|e| e.eq_ignore_ascii_case(email)))
                .unwrap_or(false)
        })
    }
}

/// What the error of a read a dry run could not answer says: a lead whose
/// execution failed on it was not simulated (rather than failing).
pub const NOT_RECORDED: &str = "not in the recording";

/// What a read the tape does not hold gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// `unavailable`: the simulation reports the lead as not simulated.
    Unavailable,
    /// The CRM knows nothing (no lead, contact, account or opportunity;
    /// no activity): leads from a file, whose CRM side was never recorded.
    EmptyCrm,
}

/// A write that was recorded instead of sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unsent {
    /// The lead the execution was about.
    pub lead_id: Option<String>,
    /// The capability call (`chat.send-dm`).
    pub call: String,
    /// What it would have sent, in short.
    pub summary: String,
}

/// The writes a dry run did not send, in order.
#[derive(Debug, Default)]
pub struct Outbox {
    unsent: Mutex<Vec<Unsent>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Outbox {
    fn push(&self, lead_id: Option<&str>, call: &str, summary: String) {
        self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Unsent {
            lead_id: lead_id.map(str::to_string),
            call: call.to_string(),
            summary,
        });
    }

    fn id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{prefix}{n:015}")
    }

    /// What was not sent so far.
    pub fn unsent(&self) -> Vec<Unsent> {
        self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// What was not sent so far (taken).
    pub fn take(&self) -> Vec<Unsent> {
        std::mem::take(&mut *self.unsent.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Providers that may answer reads the tape does not hold (`--live-reads`).
/// Only their reads are ever called.
#[derive(Clone, Default)]
pub struct LiveReads {
    /// HubSpot.
    pub marketing: Option<Arc<dyn Marketing>>,
    /// Salesforce.
    pub crm: Option<Arc<dyn Crm>>,
    /// The language model.
    pub llm: Option<Arc<dyn Llm>>,
}

/// One lead's dry run: its tape, where unsent writes go, and what to do
/// about what is not on the tape.
struct Dry {
    tape: Tape,
    outbox: Arc<Outbox>,
    live: LiveReads,
    missing: Missing,
    lead_id: Option<String>,
}

impl Dry {
    fn not_recorded(call: &str) -> CapabilityError {
        CapabilityError::Unavailable(format!("{call}: {NOT_RECORDED} of this lead (a dry run asks no provider)"))
    }

    fn unsent(&self, call: &str, summary: String) {
        self.outbox.push(self.lead_id.as_deref(), call, summary);
    }

    /// The recorded answer, else the live one, else what `missing` says
    /// (`empty` when the CRM is taken to know nothing).
    async fn crm_read<T: DeserializeOwned + Send, F>(
        &self,
        call: &str,
        args: Value,
        live: impl FnOnce(Arc<dyn Crm>) -> F,
        empty: T,
    ) -> Result<T, CapabilityError>
    where
        F: std::future::Future<Output = Result<T, CapabilityError>>,
    {
        if let Some(answer) = self.tape.answer(call, &args) {
            return Ok(answer);
        }
        if let Some(crm) = self.live.crm.clone() {
            return live(crm).await;
        }
        match self.missing {
            Missing::EmptyCrm => Ok(empty),
            Missing::Unavailable => Err(Self::not_recorded(call)),
        }
    }
}

struct DryMarketing(Arc<Dry>);

#[async_trait::async_trait]
impl Marketing for DryMarketing {
    async fn get_contact(&self, id: &str, properties: &[String]) -> Result<Contact, CapabilityError> {
        let dry = &self.0;
        if let Some(contact) = dry.tape.answer("marketing.get-contact", &json!([id, properties])) {
            return Ok(contact);
        }
        if let Some(contact) = dry.tape.contact(id) {
            return Ok(contact);
        }
        match &dry.live.marketing {
            Some(live) => live.get_contact(id, properties).await,
            None => Err(Dry::not_recorded("marketing.get-contact")),
        }
    }

    async fn find_contact_by_email(
        &self,
        email: &str,
        properties: &[String],
    ) -> Result<Option<Contact>, CapabilityError> {
        let dry = &self.0;
        if let Some(found) = dry.tape.answer("marketing.find-contact-by-email", &json!([email, properties])) {
            return Ok(found);
        }
        if let Some(contact) = dry.tape.contact_by_email(email) {
            return Ok(Some(contact));
        }
        match &dry.live.marketing {
            Some(live) => live.find_contact_by_email(email, properties).await,
            None => Err(Dry::not_recorded("marketing.find-contact-by-email")),
        }
    }

    async fn update_contact(&self, id: &str, properties: &str) -> Result<Contact, CapabilityError> {
        self.0.unsent("marketing.update-contact", format!("contact {id}: {properties}"));
        let mut merged: serde_json::Map<String, Value> =
            self.0.tape.contact(id).and_then(|c| serde_json::from_str(&c.properties).ok()).unwrap_or_default();
        if let Ok(Value::Object(changes)) = serde_json::from_str::<Value>(properties) {
            merged.extend(changes);
        }
        Ok(Contact { id: id.to_string(), properties: Value::Object(merged).to_string() })
    }

    async fn add_to_list(&self, list_id: &str, contact_id: &str) -> Result<(), CapabilityError> {
        self.0.unsent("marketing.add-to-list", format!("contact {contact_id} to list {list_id}"));
        Ok(())
    }
}

struct DryCrm(Arc<Dry>);

#[async_trait::async_trait]
impl Crm for DryCrm {
    async fn changed_leads(
        &self,
        status: &str,
        since: i64,
        fields: &[String],
        limit: u32,
    ) -> Result<Vec<LeadChange>, CapabilityError> {
        let args = json!([status, since, fields, limit]);
        let fields = fields.to_vec();
        let status = status.to_string();
        self.0
            .crm_read(
                "crm.changed-leads",
                args,
                |crm| async move { crm.changed_leads(&status, since, &fields, limit).await },
                Vec::new(),
            )
            .await
    }

    async fn find_lead_by_email(&self, email: &str) -> Result<Option<Lead>, CapabilityError> {
        let email = email.to_string();
        self.0
            .crm_read(
                "crm.find-lead-by-email",
                json!([email]),
                |crm| async move { crm.find_lead_by_email(&email).await },
                None,
            )
            .await
    }

    async fn find_contact_by_email(&self, email: &str) -> Result<Option<CrmContact>, CapabilityError> {
        let email = email.to_string();
        self.0
            .crm_read(
                "crm.find-contact-by-email",
                json!([email]),
                |crm| async move { crm.find_contact_by_email(&email).await },
                None,
            )
            .await
    }

    async fn find_accounts_by_domain(&self, domain: &str) -> Result<Vec<Account>, CapabilityError> {
        let domain = domain.to_string();
        self.0
            .crm_read(
                "crm.find-accounts-by-domain",
                json!([domain]),
                |crm| async move { crm.find_accounts_by_domain(&domain).await },
                Vec::new(),
            )
            .await
    }

    async fn find_open_opportunities_by_domain(&self, domain: &str) -> Result<Vec<Opportunity>, CapabilityError> {
        let domain = domain.to_string();
        self.0
            .crm_read(
                "crm.find-open-opportunities-by-domain",
                json!([domain]),
                |crm| async move { crm.find_open_opportunities_by_domain(&domain).await },
                Vec::new(),
            )
            .await
    }

    async fn find_matches(&self, email: &str, domain: Option<&str>) -> Result<CrmMatches, CapabilityError> {
        let (email, domain) = (email.to_string(), domain.map(str::to_string));
        let empty = CrmMatches { lead: None, contact: None, accounts: Vec::new(), opportunities: Vec::new() };
        self.0
            .crm_read(
                "crm.find-matches",
                json!([email, domain]),
                |crm| async move { crm.find_matches(&email, domain.as_deref()).await },
                empty,
            )
            .await
    }

    async fn get_owner(&self, id: &str) -> Result<Option<Owner>, CapabilityError> {
        let id = id.to_string();
        self.0.crm_read("crm.get-owner", json!([id]), |crm| async move { crm.get_owner(&id).await }, None).await
    }

    async fn list_activities(&self, who_id: &str, since: i64) -> Result<Vec<Activity>, CapabilityError> {
        let who_id = who_id.to_string();
        self.0
            .crm_read(
                "crm.list-activities",
                json!([who_id, since]),
                |crm| async move { crm.list_activities(&who_id, since).await },
                Vec::new(),
            )
            .await
    }

    async fn upsert_lead(&self, lead: Lead) -> Result<String, CapabilityError> {
        let id = lead.id.clone().unwrap_or_else(|| self.0.outbox.id("00Qdryrun"));
        let what = if lead.id.is_some() { "update" } else { "create" };
        self.0.unsent(
            "crm.upsert-lead",
            format!(
                "{what} lead {id}: {} ({}), owner {}",
                lead.email,
                lead.company,
                lead.owner_id.as_deref().unwrap_or("-")
            ),
        );
        Ok(id)
    }

    async fn assign_owner(&self, lead_id: &str, owner_id: &str) -> Result<(), CapabilityError> {
        self.0.unsent("crm.assign-owner", format!("lead {lead_id} to {owner_id}"));
        Ok(())
    }

    async fn create_task(&self, task: Task) -> Result<String, CapabilityError> {
        let id = self.0.outbox.id("00Tdryrun");
        self.0.unsent("crm.create-task", format!("task {id} for {}: {}", task.owner_id, task.subject));
        Ok(id)
    }

    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, CapabilityError> {
        let id = id.to_string();
        self.0.crm_read("crm.get-lead", json!([id]), |crm| async move { crm.get_lead(&id).await }, None).await
    }

    async fn update_lead(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.0.unsent("crm.update-lead", format!("lead {id}: {fields}"));
        Ok(())
    }

    async fn update_task(&self, id: &str, fields: &str) -> Result<(), CapabilityError> {
        self.0.unsent("crm.update-task", format!("task {id}: {fields}"));
        Ok(())
    }

    async fn send_notification(&self, n: crate::capabilities::CustomNotification) -> Result<(), CapabilityError> {
        let to = n.recipient_ids.join(", ");
        self.0.unsent(
            "crm.send-notification",
            format!("push {} to {to} about {}: {}", n.type_name, n.target_id, n.title),
        );
        Ok(())
    }
}

struct DryChat(Arc<Dry>);

impl DryChat {
    fn message(&self, channel: &str) -> MessageRef {
        MessageRef { channel: channel.to_string(), ts: self.0.outbox.id("dryrun.") }
    }
}

#[async_trait::async_trait]
impl Chat for DryChat {
    async fn send_dm(
        &self,
        email: &str,
        text: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<MessageRef, CapabilityError> {
        self.0.unsent("chat.send-dm", format!("DM to {email}: {}", first_line(text)));
        Ok(self.message(email))
    }

    async fn post(
        &self,
        channel: &str,
        text: &str,
        _: Option<&str>,
        _: Option<&str>,
    ) -> Result<MessageRef, CapabilityError> {
        self.0.unsent("chat.post", format!("post in {channel}: {}", first_line(text)));
        Ok(self.message(channel))
    }

    async fn update(&self, message: &MessageRef, text: &str, _: Option<&str>) -> Result<(), CapabilityError> {
        self.0.unsent("chat.update", format!("update {} {}: {}", message.channel, message.ts, first_line(text)));
        Ok(())
    }

    async fn find_sent(
        &self,
        _: &str,
        _: &str,
        _: Option<&str>,
        _: i64,
    ) -> Result<Option<MessageRef>, CapabilityError> {
        Ok(None)
    }

    async fn open_view(&self, trigger_id: &str, _: &str) -> Result<(), CapabilityError> {
        self.0.unsent("chat.open-view", format!("a modal for {trigger_id}"));
        Ok(())
    }
}

fn first_line(text: &str) -> String {
    crate::runtime::cut(text.lines().next().unwrap_or_default().to_string(), 120)
}

struct DryEmail(Arc<Dry>);

#[async_trait::async_trait]
impl Email for DryEmail {
    async fn send(&self, message: EmailMessage) -> Result<(), CapabilityError> {
        self.0.unsent("email.send", format!("email to {}: {}", message.to.join(", "), message.subject));
        Ok(())
    }
}

struct DryLlm(Arc<Dry>);

#[async_trait::async_trait]
impl Llm for DryLlm {
    async fn complete(&self, request: crate::capabilities::CompletionRequest) -> Result<String, CapabilityError> {
        let args = json!([request.system, request.prompt, request.max_tokens]);
        if let Some(answer) = self.0.tape.answer("llm.complete", &args) {
            return Ok(answer);
        }
        match &self.0.live.llm {
            Some(live) => live.complete(request).await,
            None => Err(Dry::not_recorded("llm.complete")),
        }
    }
}

/// Plugin state in memory: a scratch copy that evolves as the real one
/// would (round-robin cursors, daily counts, expiring keys), seen by no one
/// else.
#[derive(Default)]
pub struct ScratchState {
    scopes: Mutex<HashMap<String, StateMap>>,
    /// Values read in the recorded execution, for keys this dry run has
    /// not written (a replay): `(scope, key)` → value.
    recorded: Mutex<HashMap<(String, String), Option<String>>>,
}

impl ScratchState {
    /// What the recorded execution read of plugin state, so a replay reads
    /// the same.
    pub fn remember(&self, reads: &[CallRecord]) {
        let mut recorded = self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for read in reads.iter().filter(|r| r.call == "state.get") {
            if let (Some(scope), Some(key)) = (read.args[0].as_str(), read.args[1].as_str()) {
                let value = read.answer.as_str().map(str::to_string);
                recorded.entry((scope.to_string(), key.to_string())).or_insert(value);
            }
        }
    }

    /// Runs `f` on a scope's scratch map, with the key's recorded value
    /// (if this dry run has not written it) moved into it first.
    fn with_key<T>(&self, scope: &str, key: &str, now: i64, f: impl FnOnce(&mut StateMap) -> T) -> T {
        let mut scopes = self.scopes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let map = scopes.entry(scope.to_string()).or_default();
        if !map.holds(key) {
            let mut recorded = self.recorded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(Some(value)) = recorded.remove(&(scope.to_string(), key.to_string())) {
                map.put(key, &value, now);
            }
        }
        f(map)
    }
}

#[async_trait::async_trait]
impl StateStore for ScratchState {
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError> {
        Ok(self.with_key(scope, key, now, |map| map.get(key, now).map(str::to_string)))
    }

    async fn set(&self, scope: &str, key: &str, value: &str, now: i64, _: StateQuota) -> Result<(), CapabilityError> {
        self.with_key(scope, key, now, |map| map.put(key, value, now));
        Ok(())
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        self.with_key(scope, key, 0, |map| map.remove(key));
        Ok(())
    }

    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        now: i64,
        _: Option<&str>,
        _: StateQuota,
    ) -> Result<i64, CapabilityError> {
        self.with_key(scope, key, now, |map| {
            let next = crate::capabilities::incremented(key, map.get(key, now), delta)?;
            map.put(key, &next.to_string(), now);
            Ok(next)
        })
    }

    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError> {
        Ok(self.with_key(scope, key, now, |map| map.expire(key, at, now)))
    }
}

/// The roster as it is read; pausing or resuming a rep is recorded, not
/// done.
struct DryRoster {
    roster: Arc<dyn Roster>,
    outbox: Arc<Outbox>,
    lead_id: Option<String>,
}

#[async_trait::async_trait]
impl Roster for DryRoster {
    async fn teams(&self) -> Result<Vec<crate::capabilities::Team>, CapabilityError> {
        self.roster.teams().await
    }

    async fn get_rep(&self, id: &str) -> Result<Option<crate::capabilities::Rep>, CapabilityError> {
        self.roster.get_rep(id).await
    }

    async fn availability_at(
        &self,
        rep_id: &str,
        at: crate::bindings::handoff::plugin::types::Timestamp,
    ) -> Result<crate::capabilities::Availability, CapabilityError> {
        self.roster.availability_at(rep_id, at).await
    }

    async fn working_time_after(
        &self,
        rep_id: &str,
        start: crate::bindings::handoff::plugin::types::Timestamp,
        duration_ms: i64,
    ) -> Result<crate::bindings::handoff::plugin::types::Timestamp, CapabilityError> {
        self.roster.working_time_after(rep_id, start, duration_ms).await
    }

    async fn pause(&self, rep_id: &str, reason: &str) -> Result<(), CapabilityError> {
        self.outbox.push(self.lead_id.as_deref(), "roster.pause", format!("pause {rep_id}: {reason}"));
        Ok(())
    }

    async fn resume(&self, rep_id: &str) -> Result<(), CapabilityError> {
        self.outbox.push(self.lead_id.as_deref(), "roster.resume", format!("resume {rep_id}"));
        Ok(())
    }
}

/// Timers a dry run would have set: recorded in the outbox, never fired.
struct DryTimers(Arc<Outbox>);

#[async_trait::async_trait]
impl Scheduler for DryTimers {
    async fn schedule(&self, timer: Timer, _: Option<&str>) -> Result<String, CapabilityError> {
        let when = crate::connectors::time::iso8601(timer.at);
        let what = timer.label().unwrap_or_else(|| format!("node {}", timer.node));
        self.0.push(timer.lead_id.as_deref(), "schedule.at", format!("{what} at {when}"));
        Ok(timer.id)
    }

    async fn cancel(&self, plugin: &str, timer_id: &str, reason: &str) -> Result<(), CapabilityError> {
        self.0.push(None, "schedule.cancel", format!("{plugin}'s timer {timer_id}: {reason}"));
        Ok(())
    }

    async fn cancel_key(&self, plugin: &str, key: &str, reason: &str) -> Result<bool, CapabilityError> {
        self.0.push(None, "schedule.cancel", format!("{plugin}'s timer {key}: {reason}"));
        Ok(false)
    }
}

/// What a dry run runs on, besides each lead's tape.
#[derive(Clone)]
pub struct DryRun {
    /// Where unsent writes go.
    pub outbox: Arc<Outbox>,
    /// Plugin state (a scratch copy, or a scoped view of the ledger's for a
    /// shadow pipeline).
    pub state: Arc<dyn StateStore>,
    /// The roster routing reads.
    pub roster: Option<Arc<dyn Roster>>,
    /// Readers for what the tape does not hold.
    pub live: LiveReads,
    /// What a read neither the tape nor a live reader answers gets.
    pub missing: Missing,
}

impl DryRun {
    /// A dry run on scratch state with `roster`, answering only from tapes.
    pub fn new(roster: Option<Arc<dyn Roster>>, missing: Missing) -> Self {
        DryRun {
            outbox: Arc::new(Outbox::default()),
            state: Arc::new(ScratchState::default()),
            roster,
            live: LiveReads::default(),
            missing,
        }
    }

    /// The capabilities for one lead: `tape` answers its reads; `clock` is
    /// what plugins see as now.
    pub fn capabilities(&self, tape: Tape, lead_id: Option<&str>, clock: Arc<dyn Clock>) -> Capabilities {
        let dry = Arc::new(Dry {
            tape,
            outbox: self.outbox.clone(),
            live: self.live.clone(),
            missing: self.missing,
            lead_id: lead_id.map(str::to_string),
        });
        let mut capabilities = Capabilities::none();
        capabilities.marketing = Some(Arc::new(DryMarketing(dry.clone())));
        capabilities.crm = Some(Arc::new(DryCrm(dry.clone())));
        capabilities.chat = Some(Arc::new(DryChat(dry.clone())));
        capabilities.email = Some(Arc::new(DryEmail(dry.clone())));
        capabilities.llm = Some(Arc::new(DryLlm(dry)));
        capabilities.roster = self.roster.clone().map(|roster| {
            Arc::new(DryRoster { roster, outbox: self.outbox.clone(), lead_id: lead_id.map(str::to_string) })
                as Arc<dyn Roster>
        });
        capabilities.state = Some(self.state.clone());
        capabilities.schedule = Some(Arc::new(DryTimers(self.outbox.clone())));
        capabilities.clock = clock;
        capabilities
    }
}

/// A shadow pipeline's plugin state: the ledger's, under scopes of its own
/// (`shadow/<pipeline>/<plugin>`), so its cursors and counts evolve across
/// restarts and never touch the live pipeline's.
pub struct ShadowState {
    inner: Arc<dyn StateStore>,
    prefix: String,
}

impl ShadowState {
    /// `inner`'s state, scoped for the shadow pipeline `pipeline`.
    pub fn new(inner: Arc<dyn StateStore>, pipeline: &str) -> Self {
        ShadowState { inner, prefix: format!("shadow/{pipeline}/") }
    }

    fn scope(&self, scope: &str) -> String {
        format!("{}{scope}", self.prefix)
    }
}

#[async_trait::async_trait]
impl StateStore for ShadowState {
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError> {
        self.inner.get(&self.scope(scope), key, now).await
    }

    async fn set(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        now: i64,
        quota: StateQuota,
    ) -> Result<(), CapabilityError> {
        self.inner.set(&self.scope(scope), key, value, now, quota).await
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        self.inner.delete(&self.scope(scope), key).await
    }

    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        now: i64,
        _: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError> {
        // No journal key: a shadow's increment is not an effect to replay.
        self.inner.increment(&self.scope(scope), key, delta, now, None, quota).await
    }

    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError> {
        self.inner.expire(&self.scope(scope), key, at, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scratch_state_counts_and_expires_as_the_ledger_does() {
        let state = ScratchState::default();
        let quota = StateQuota::default();
        state.set("route", "text", "\"x\"", 0, quota).await.unwrap();
        let refused = state.increment("route", "text", 1, 0, None, quota).await;
        assert!(matches!(&refused, Err(CapabilityError::Invalid(m)) if m.contains("not an integer")), "{refused:?}");
        state.set("route", "max", &i64::MAX.to_string(), 0, quota).await.unwrap();
        assert!(matches!(state.increment("route", "max", 1, 0, None, quota).await, Err(CapabilityError::Invalid(_))));
        assert_eq!(state.increment("route", "n", 2, 0, None, quota).await.unwrap(), 2);
        assert!(state.expire("route", "n", 100, 0).await.unwrap());
        assert_eq!(state.get("route", "n", 100).await.unwrap(), None);
        assert_eq!(state.increment("route", "n", 1, 100, None, quota).await.unwrap(), 1, "expired: from zero");
    }
}
