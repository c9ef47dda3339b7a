//! The ledger: every inbound event on disk before it is acknowledged, the
//! claims and leases that share work between instances, every lead's state
//! with a timeline, the effect journal and plugin state. SQLite (WAL) is
//! the embedded default; PostgreSQL serves several instances sharing one
//! database. The ledger knows nothing of plugins or pipelines: lead states
//! arrive already mapped (`crate::lead`).

/// The lead states reports look up by time ([`Ledger::steps_between`]), as
/// an SQL list. Only steps into these states are indexed by state: a lead's
/// other steps (received, validated, deduped, routed, assigned) then cost
/// no index page each, which the index of every step by state did (a page
/// per state, since each state's entries sit apart). A migration makes the
/// index from this list, so adding a state here needs a migration too.
macro_rules! reported_states {
    () => {
        "'notified', 'rejected', 'nurture', 'recycled', 'converted', 'reminded', 'escalated', 'reassigned', 'vp-review'"
    };
}

/// Whether the index of reported steps holds every one of `states`: only
/// then may a query name the index's list to be answered from it.
fn all_reported(states: &[&str]) -> bool {
    let reported: Vec<&str> = reported_states!().split(", ").map(|s| s.trim_matches('\'')).collect();
    states.iter().all(|s| reported.contains(s))
}

mod held_state;
mod packing;
mod postgres;
mod sqlite;

pub use postgres::{Access as PostgresAccess, PostgresStore, inspect as inspect_postgres};
pub use sqlite::{SqliteStore, inspect as inspect_sqlite};

use crate::capabilities::{Clock, EffectJournal, Scheduler, StateStore};
use crate::lead::{Decision, LeadFacts, LeadRecord, LeadState, Step};
use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;

/// An inbound event, as stored before it is acknowledged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboundEvent {
    /// `hubspot`.
    pub source: String,
    /// The provider's event id (the deduplication key).
    pub event_id: String,
    /// The pipeline it starts.
    pub pipeline: String,
    /// The lead it is about (HubSpot contact id).
    pub lead_id: Option<String>,
    /// The provider's event, as received (for a timer, the item its node
    /// receives).
    pub payload: Value,
    /// When it was received (host clock, ms).
    pub received_at: i64,
    /// The node it starts at; none for the pipeline's trigger.
    pub node: Option<String>,
}

/// What one execution left behind for later: what its providers answered
/// (a simulation or a replay answers from it) and what it decided (a
/// simulation's `--baseline live`, a shadow's comparison).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Trace {
    /// The execution.
    pub execution_id: String,
    /// Its pipeline.
    pub pipeline: String,
    /// Its lead.
    pub lead_id: Option<String>,
    /// When it started (host clock, ms).
    pub at: i64,
    /// What it decided.
    pub decision: Decision,
    /// What its providers answered, in order.
    pub reads: Vec<crate::record::CallRecord>,
    /// What it did: each effect's journal key (after `{execution_id}/`)
    /// with its result. The journal of an execution that completed is kept
    /// here, not key by key (none is needed again to run it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub effects: Vec<(String, Value)>,
}

/// How an execution that ended (rather than waiting for a provider) is
/// recorded: its lead's steps, its trace, the lead events it raises, and
/// its event finished. [`Ledger::settle`] records it all at once.
#[derive(Debug, Clone)]
pub struct Settlement {
    /// The event it ran for: (source, event id).
    pub event: (String, String),
    /// The execution.
    pub execution_id: String,
    /// Whether it failed for good.
    pub failed: bool,
    /// The lead's steps, when the event names a lead.
    pub lead: Option<LeadSteps>,
    /// What its providers answered and what it decided.
    pub trace: Option<Trace>,
    /// Lead events it raises, each stored claimed by this instance.
    pub raised: Vec<InboundEvent>,
}

/// A lead's steps from one execution (see [`Ledger::record_steps`]).
#[derive(Debug, Clone)]
pub struct LeadSteps {
    /// The lead.
    pub lead_id: String,
    /// What the execution learned of it.
    pub facts: LeadFacts,
    /// Its steps, in order.
    pub steps: Vec<Step>,
}

/// What [`Ledger::settle`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The event is finished; false when this instance no longer held it
    /// (another took it over) and the event was left as it was.
    pub finished: bool,
    /// For each raised event, whether it was new (false: raised before, by
    /// an earlier run of the execution).
    pub raised: Vec<bool>,
}

/// A shadow pipeline's decision beside the live one's, for one lead.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, JsonSchema)]
pub struct ShadowDecision {
    /// The shadow pipeline.
    pub pipeline: String,
    /// The live pipeline it shadows.
    pub shadows: String,
    /// The live execution it ran beside.
    pub execution_id: String,
    /// The lead.
    pub lead_id: Option<String>,
    /// When (host clock, ms).
    pub at: i64,
    /// What the live pipeline decided.
    pub live: Decision,
    /// What the shadow would have decided.
    pub shadow: Decision,
    /// Whether they differ in state, owner or team.
    pub differs: bool,
}

/// Leads that failed for good and ops has not yet been told of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailuresToTell {
    /// How many there are.
    pub count: u64,
    /// The first few, oldest first.
    pub first: Vec<FailedLead>,
    /// The latest finish time among them: [`Ledger::mark_told`] up to it
    /// marks exactly these (and any that failed at the same instant).
    pub through: i64,
}

/// One lead that failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedLead {
    /// The pipeline it failed in.
    pub pipeline: String,
    /// Its event.
    pub event_id: String,
    /// The lead (a HubSpot contact id), when the event names one.
    pub lead_id: Option<String>,
    /// Why, as its timeline's `failed` step says.
    pub error: Option<String>,
}

/// What one pass of the pruner removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Effect-journal records and intents.
    pub effects: u64,
    /// Fired or cancelled timers.
    pub timers: u64,
    /// Event payloads emptied (the event row stays: it recognises a
    /// redelivery).
    pub payloads: u64,
    /// Executions' recorded provider answers and shadow decisions.
    pub reads: u64,
    /// Plugin state keys whose expiry has come (`state.expire`).
    pub state: u64,
}

impl std::ops::AddAssign for Pruned {
    fn add_assign(&mut self, other: Pruned) {
        self.effects += other.effects;
        self.timers += other.timers;
        self.payloads += other.payloads;
        self.reads += other.reads;
        self.state += other.state;
    }
}

impl Pruned {
    /// Rows touched in all.
    pub fn total(&self) -> u64 {
        self.effects + self.timers + self.payloads + self.reads + self.state
    }

    /// Whether some kind of row filled its batch of `limit`: there may be
    /// more to remove.
    pub fn filled(&self, limit: u64) -> bool {
        [self.effects, self.timers, self.payloads, self.reads, self.state].iter().any(|n| *n >= limit)
    }
}

/// The key range of an execution's effect-journal keys (`{execution}/...`),
/// its resume points (ending in
/// [`OUTPUTS_SUFFIX`](crate::capabilities::OUTPUTS_SUFFIX)) among them.
pub(crate) fn journal_of(execution_id: &str) -> (String, String) {
    key_range(&format!("{execution_id}/"))
}

/// A durable timer as the ledger keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct TimerRecord {
    /// The timer's id.
    pub id: String,
    /// The pipeline it runs in.
    pub pipeline: String,
    /// The node it starts at; empty for the pipeline's trigger (a schedule).
    pub node: String,
    /// The plugin that set it (only it may cancel or replace it).
    pub plugin: String,
    /// Its idempotency key, if any.
    pub key: Option<String>,
    /// What it is, for people (the payload's `label`).
    pub label: Option<String>,
    /// When it is due (host clock, ms).
    pub due_at: i64,
    /// `pending`, `fired`, `cancelled` or `replaced`.
    pub state: String,
    /// When it fired or was cancelled.
    pub settled_at: Option<i64>,
    /// Why it was cancelled or replaced.
    pub reason: Option<String>,
}

/// A rep who gets no new leads until resumed.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct PausedRep {
    /// The rep's CRM user id.
    pub rep_id: String,
    /// Why.
    pub reason: String,
    /// Since when (host clock, ms).
    pub since: i64,
}

/// Effect records this process handed to the ledger and that are not
/// committed: readable here at once. SQLite holds an execution's records
/// until it ends and then keeps them with its trace, or writes them as rows
/// for a rerun (see `sqlite.rs`); PostgreSQL commits each on a task of its
/// own and drops it from here once committed.
#[derive(Default)]
pub(crate) struct PendingRecords(std::sync::Mutex<Pending>);

#[derive(Default)]
struct Pending {
    /// Records held for their execution, by key.
    held: std::collections::BTreeMap<String, Held>,
    /// Records released to be written as rows by the next transaction.
    queued: Vec<QueuedRecord>,
}

struct Held {
    /// As JSON text.
    result: String,
    /// When it was recorded (host clock, ms).
    at: i64,
    /// Written already (made durable before an effect of its execution).
    written: bool,
}

/// A record on its way to the ledger.
pub(crate) struct QueuedRecord {
    /// Its journal key.
    pub key: String,
    /// The result, as JSON text.
    pub result: String,
    /// When it was recorded (host clock, ms).
    pub at: i64,
}

impl PendingRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds a record, readable until it is taken, released or removed.
    fn hold(&self, key: &str, result: &str, at: i64) {
        self.lock().held.insert(key.to_string(), Held { result: result.to_string(), at, written: false });
    }

    /// The keys held for `execution_id`.
    fn keys_of(pending: &Pending, execution_id: &str) -> Vec<String> {
        let prefix = format!("{execution_id}/");
        pending.held.range(prefix.clone()..).map(|(k, _)| k).take_while(|k| k.starts_with(&prefix)).cloned().collect()
    }

    /// The records held for `execution_id`, taken.
    fn take_execution(&self, execution_id: &str) -> Vec<QueuedRecord> {
        let mut pending = self.lock();
        Self::keys_of(&pending, execution_id)
            .into_iter()
            .filter_map(|key| pending.held.remove(&key).map(|h| QueuedRecord { key, result: h.result, at: h.at }))
            .collect()
    }

    /// Copies of the resume points (node outputs, merge decisions) held for
    /// `execution_id` that are not written yet: the decisions a rerun must
    /// replay rather than make again. They stay held, for its end.
    fn unwritten_resume_points(&self, execution_id: &str) -> Vec<QueuedRecord> {
        let pending = self.lock();
        Self::keys_of(&pending, execution_id)
            .into_iter()
            .filter(|key| key.ends_with(crate::capabilities::OUTPUTS_SUFFIX))
            .filter_map(|key| {
                let held = pending.held.get(&key).filter(|h| !h.written)?;
                Some(QueuedRecord { result: held.result.clone(), at: held.at, key })
            })
            .collect()
    }

    /// Marks records as written.
    fn written(&self, records: &[QueuedRecord]) {
        let mut pending = self.lock();
        for record in records {
            if let Some(held) = pending.held.get_mut(&record.key) {
                held.written = true;
            }
        }
    }

    /// Whether records of `execution_id` are still uncommitted.
    fn any_of(&self, execution_id: &str) -> bool {
        !Self::keys_of(&self.lock(), execution_id).is_empty()
    }

    /// Moves `records` to the queue the writer's next transaction takes.
    fn queue(&self, records: Vec<QueuedRecord>) {
        if !records.is_empty() {
            self.lock().queued.extend(records);
        }
    }

    /// Every held record, taken (to be written as rows).
    fn take_all(&self) -> Vec<QueuedRecord> {
        let held = std::mem::take(&mut self.lock().held);
        held.into_iter().map(|(key, h)| QueuedRecord { key, result: h.result, at: h.at }).collect()
    }

    /// The queued records, for the transaction about to commit them.
    fn take_queued(&self) -> Vec<QueuedRecord> {
        std::mem::take(&mut self.lock().queued)
    }

    /// A pending record's result, parsed.
    fn get(&self, key: &str) -> Option<Value> {
        let pending = self.lock();
        let text = match pending.held.get(key) {
            Some(held) => &held.result,
            None => &pending.queued.iter().rev().find(|r| r.key == key)?.result,
        };
        Some(serde_json::from_str(text).unwrap_or_default())
    }

    fn is_empty(&self) -> bool {
        let pending = self.lock();
        pending.held.is_empty() && pending.queued.is_empty()
    }

    fn remove(&self, key: &str) {
        self.lock().held.remove(key);
    }
}

/// The keys starting with `prefix`, as a range `[low, high)` an index can
/// use: `high` is `prefix` with its last character raised by one.
pub(crate) fn key_range(prefix: &str) -> (String, String) {
    let mut high: Vec<char> = prefix.chars().collect();
    match high.pop() {
        Some(last) => {
            let next = char::from_u32(u32::from(last) + 1).unwrap_or(char::MAX);
            high.push(next);
            (prefix.to_string(), high.into_iter().collect())
        }
        None => (String::new(), char::MAX.to_string()),
    }
}

/// Where the ledger lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// Embedded SQLite in this file (one instance).
    Sqlite(std::path::PathBuf),
    /// PostgreSQL at this URL, in this schema (instances share it).
    Postgres {
        /// `postgres://user@host/db`.
        url: String,
        /// The schema its tables live in.
        schema: String,
    },
}

impl Database {
    /// `HANDOFF_DATABASE_URL` (and `HANDOFF_DATABASE_SCHEMA`, default
    /// `handoff`) when set; otherwise SQLite at `<data_dir>/handoff.db`.
    pub fn from_env(data_dir: &std::path::Path) -> Self {
        match std::env::var("HANDOFF_DATABASE_URL").ok().filter(|u| !u.trim().is_empty()) {
            Some(url) => Database::Postgres {
                url,
                schema: std::env::var("HANDOFF_DATABASE_SCHEMA")
                    .ok()
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| "handoff".into()),
            },
            None => Database::Sqlite(data_dir.join("handoff.db")),
        }
    }
}

/// One ledger in its three roles: events, claims and leads; the effect
/// journal; and plugin state.
#[derive(Clone)]
pub struct Roles {
    /// Events, claims, leases, leads and settings.
    pub ledger: Arc<dyn Ledger>,
    /// The effect journal.
    pub journal: Arc<dyn EffectJournal>,
    /// Plugin state.
    pub state: Arc<dyn StateStore>,
    /// Durable timers.
    pub timers: Arc<dyn Scheduler>,
}

impl Roles {
    /// Opens (creating and migrating) the ledger as `instance`. Business
    /// times it writes come from `clock`, the host's clock, so that they
    /// compare with what plugins and runs see; liveness times (leases,
    /// waits) are real time.
    ///
    /// # Errors
    ///
    /// When the database cannot be opened or reached, or a migration fails.
    pub async fn open(database: &Database, instance: Instance, clock: Arc<dyn Clock>) -> Result<Roles> {
        Ok(match database {
            Database::Sqlite(path) => Roles::from(Arc::new(SqliteStore::open_as(path, instance, clock)?)),
            Database::Postgres { url, schema } => {
                Roles::from(Arc::new(PostgresStore::connect(url, schema, instance, clock).await?))
            }
        })
    }
}

impl<T: Ledger + EffectJournal + StateStore + Scheduler + 'static> From<Arc<T>> for Roles {
    fn from(ledger: Arc<T>) -> Self {
        Roles { ledger: ledger.clone(), journal: ledger.clone(), state: ledger.clone(), timers: ledger }
    }
}

/// Who owns work in the ledger: one running `handoff serve`. An instance
/// claims each event it runs and renews the claim's lease while it runs;
/// when a lease expires (the instance died or lost the database), any
/// instance may take the event over. A restart of the same instance (same
/// id, new boot) takes its own claims back at once.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Stable across restarts: `HANDOFF_INSTANCE_ID`, else the host name.
    pub id: String,
    /// Unique to this process start.
    pub boot: String,
    /// How long a claim lasts without renewal.
    pub lease: std::time::Duration,
}

/// Lease length when not configured.
pub const DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

impl Instance {
    /// This process, named from the environment.
    pub fn from_env() -> Self {
        let id = std::env::var("HANDOFF_INSTANCE_ID")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "handoff".into());
        let mut instance = Instance::named(&id);
        if let Some(secs) = std::env::var("HANDOFF_LEASE_SECS").ok().and_then(|v| v.trim().parse::<u64>().ok()) {
            instance.lease = std::time::Duration::from_secs(secs.max(1));
        }
        instance
    }

    /// An instance with this id and a fresh boot.
    pub fn named(id: &str) -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static STARTS: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let boot = format!("{}-{nanos:x}-{}", std::process::id(), STARTS.fetch_add(1, Ordering::Relaxed));
        Instance { id: id.to_string(), boot, lease: DEFAULT_LEASE }
    }
}

/// How long an event waits between attempts while a provider is down, and
/// when it stops waiting and fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPolicy {
    /// Wait after the first failed attempt; each next wait doubles.
    pub first: std::time::Duration,
    /// Longest wait between attempts.
    pub max: std::time::Duration,
    /// Measured from the first wait: after this, the event fails (and the
    /// ops channel hears of it).
    pub give_up_after: std::time::Duration,
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy {
            first: std::time::Duration::from_secs(5),
            max: std::time::Duration::from_secs(120),
            give_up_after: std::time::Duration::from_secs(24 * 3600),
        }
    }
}

impl WaitPolicy {
    /// The default, changed by `HANDOFF_WAIT_FIRST_MS`, `HANDOFF_WAIT_MAX_MS`
    /// and `HANDOFF_GIVE_UP_AFTER_S` where `var` has them.
    ///
    /// # Errors
    ///
    /// When one of them is not a whole number, naming it.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let number = |name: &str| -> Result<Option<u64>> {
            var(name)
                .map(|v| {
                    v.trim().parse::<u64>().map_err(|_| anyhow::anyhow!("{name} must be a whole number, not '{v}'"))
                })
                .transpose()
        };
        let mut policy = WaitPolicy::default();
        if let Some(ms) = number("HANDOFF_WAIT_FIRST_MS")? {
            policy.first = std::time::Duration::from_millis(ms);
        }
        if let Some(ms) = number("HANDOFF_WAIT_MAX_MS")? {
            policy.max = std::time::Duration::from_millis(ms);
        }
        if let Some(s) = number("HANDOFF_GIVE_UP_AFTER_S")? {
            policy.give_up_after = std::time::Duration::from_secs(s);
        }
        Ok(policy)
    }

    /// The wait before attempt `attempts + 1`, in milliseconds.
    pub fn delay_ms(&self, attempts: u32) -> i64 {
        let first = i64::try_from(self.first.as_millis()).unwrap_or(i64::MAX);
        let max = i64::try_from(self.max.as_millis()).unwrap_or(i64::MAX);
        first.saturating_mul(1_i64 << attempts.min(30)).min(max)
    }
}

/// An event put back to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deferred {
    /// Attempts so far, this one included.
    pub attempts: u32,
    /// When it runs again (system time, ms).
    pub next_attempt_ms: i64,
}

/// The durable ledger of events, claims and leads.
#[async_trait::async_trait]
pub trait Ledger: Send + Sync {
    /// Who this store claims work as.
    fn instance(&self) -> &Instance;
    /// Waits until every write handed over so far (effect records
    /// included) is committed.
    async fn flush(&self) -> Result<()>;
    /// Removes, at most `limit` rows at a time, what settled work no longer
    /// needs once it is older than `before` (business time): effect-journal
    /// records and intents of executions that are neither in flight nor
    /// failed (a failed one may be retried), settled timers, and the
    /// payloads of events that finished without failing; and plugin state
    /// keys whose expiry has come (host clock, now). Lead timelines stay
    /// (the metrics read them).
    async fn prune(&self, before: i64, limit: usize) -> Result<Pruned>;
    /// Stores an event, claimed by this instance; `false` when one with the
    /// same source and id is already stored (a redelivery). Returns only
    /// once it is durable.
    async fn record_event(&self, event: &InboundEvent) -> Result<bool>;
    /// Claims up to `limit` unfinished events that are due and that nobody
    /// holds (never claimed, lease expired, deferred, or claimed by an
    /// earlier boot of this instance): the work to start or take over.
    async fn claim_due(&self, limit: usize) -> Result<Vec<InboundEvent>>;
    /// Extends this boot's lease on these events (source, event id): the
    /// ones it is running. Claims it holds but no longer runs lapse.
    /// Returns the events whose claim this boot no longer holds (another
    /// instance took them over): their runs must stop.
    async fn renew_leases(&self, events: &[(String, String)]) -> Result<Vec<(String, String)>>;
    /// Puts an event this instance holds back to wait for its next attempt
    /// under `policy` and releases the claim; `None` (and nothing changed)
    /// when it has waited longer than the policy allows. An error when this
    /// instance no longer holds the event (another took it over).
    async fn defer_event(&self, source: &str, event_id: &str, policy: WaitPolicy) -> Result<Option<Deferred>>;
    /// Events stored but whose execution has not finished (running,
    /// waiting, or left by a crash).
    async fn unfinished_events(&self) -> Result<Vec<InboundEvent>>;
    /// One stored event, and whether its execution finished.
    async fn event(&self, source: &str, event_id: &str) -> Result<Option<(InboundEvent, bool)>>;
    /// Events whose execution failed, for one lead or all.
    async fn failed_events(&self, lead_id: Option<&str>) -> Result<Vec<InboundEvent>>;
    /// Claims a failed event for a retry: true for exactly one caller.
    async fn claim_failed(&self, source: &str, event_id: &str) -> Result<bool>;
    /// Whether any event about this lead was received at or after `since`.
    async fn has_event_since(&self, lead_id: &str, since: i64) -> Result<bool>;
    /// A small named value kept with the ledger (e.g. the last sweep time).
    async fn setting(&self, name: &str) -> Result<Option<String>>;
    /// Sets a named value.
    async fn set_setting(&self, name: &str, value: &str) -> Result<()>;
    /// Marks an event's execution finished; `false` when this instance no
    /// longer held the event (another took it over), and nothing changed.
    async fn finish_event(&self, source: &str, event_id: &str, execution_id: &str, failed: bool) -> Result<bool>;
    /// An execution of this instance stopped without being settled (it
    /// waits for a provider, or was stopped): effect records the store
    /// still holds for it in memory are written, for its next run. A store
    /// that holds none does nothing.
    fn release(&self, execution_id: &str) {
        let _ = execution_id;
    }
    /// Records how an execution ended: the lead's steps
    /// ([`Self::record_steps`]), the trace ([`Self::record_trace`]), the lead
    /// events it raises ([`Self::record_event`]) and the event finished
    /// ([`Self::finish_event`]), in that order. A backend that can does it
    /// in one transaction, so none is recorded without the others.
    async fn settle(&self, settlement: &Settlement) -> Result<Settled> {
        if let Some(lead) = &settlement.lead {
            self.record_steps(&lead.lead_id, &settlement.execution_id, &lead.facts, &lead.steps).await?;
        }
        if let Some(trace) = &settlement.trace {
            self.record_trace(trace).await?;
        }
        let mut raised = Vec::with_capacity(settlement.raised.len());
        for event in &settlement.raised {
            raised.push(self.record_event(event).await?);
        }
        let (source, event_id) = &settlement.event;
        let finished = self.finish_event(source, event_id, &settlement.execution_id, settlement.failed).await?;
        Ok(Settled { finished, raised })
    }
    /// Applies the steps of a finished execution (`execution`) to its lead.
    /// Steps it recorded already (a rerun) are not repeated; the same steps
    /// from another execution (the lead handed off again) are.
    async fn record_steps(&self, lead_id: &str, execution: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()>;
    /// Leads, most recently updated first, optionally in one state.
    async fn leads(&self, state: Option<&LeadState>, limit: usize) -> Result<Vec<LeadRecord>>;
    /// The states leads are in now, with how many are in each.
    async fn lead_states(&self) -> Result<Vec<(LeadState, u64)>>;
    /// One lead with its timeline.
    async fn lead(&self, id: &str) -> Result<Option<LeadRecord>>;
    /// Steps into any of `states` from `from` up to `to` (host clock, ms),
    /// oldest first, each with its lead's id: what reports read.
    async fn steps_between(&self, states: &[&str], from: i64, to: i64) -> Result<Vec<(String, Step)>>;
    /// Fires up to `limit` pending timers due at `now` (host clock), in
    /// deadline order: each becomes an event (source `timer`, its id the
    /// timer's) claimed by this instance, in the same transaction, so a
    /// timer fires exactly once whichever instance claims it.
    /// Only timers of `pipelines` fire, when given: an instance that does
    /// not serve a pipeline (an older one, during a rolling deploy) leaves
    /// its timers pending for one that does.
    async fn fire_due_timers(&self, now: i64, limit: usize, pipelines: Option<&[String]>) -> Result<Vec<InboundEvent>>;
    /// When the next pending timer (of `pipelines`, when given) is due, if
    /// any.
    async fn next_timer_due(&self, pipelines: Option<&[String]>) -> Result<Option<i64>>;
    /// Timers set about a lead, by due time.
    async fn lead_timers(&self, lead_id: &str) -> Result<Vec<TimerRecord>>;
    /// Keeps an execution's trace (replacing the one of an earlier run of it).
    async fn record_trace(&self, trace: &Trace) -> Result<()>;
    /// The trace an execution left.
    async fn trace(&self, execution_id: &str) -> Result<Option<Trace>>;
    /// Events of `pipeline` (every pipeline when none) received in
    /// `[from, to)` (host clock), in the order they arrived.
    async fn events_between(&self, pipeline: Option<&str>, from: i64, to: i64) -> Result<Vec<InboundEvent>>;
    /// The event an execution ran for.
    async fn event_of_execution(&self, execution_id: &str) -> Result<Option<InboundEvent>>;
    /// Keeps a shadow pipeline's decision (replaced when the live execution
    /// runs again).
    async fn record_shadow(&self, decision: &ShadowDecision) -> Result<()>;
    /// Shadow decisions, newest first: about one lead, or of one shadow
    /// pipeline, or all.
    async fn shadow_decisions(
        &self,
        lead_id: Option<&str>,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ShadowDecision>>;
    /// Leads that failed for good since ops was last told (a retried lead
    /// that fails again counts again), with the first `limit` of them.
    async fn failures_to_tell(&self, limit: usize) -> Result<FailuresToTell>;
    /// Marks the failures finished up to `through` as told.
    async fn mark_told(&self, through: i64) -> Result<()>;
    /// Reps paused now.
    async fn paused_reps(&self) -> Result<Vec<PausedRep>>;
    /// Pauses a rep (with a reason) or resumes one (`None`).
    async fn set_rep_paused(&self, rep_id: &str, reason: Option<&str>) -> Result<()>;
}
