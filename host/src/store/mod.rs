//! The ledger: every inbound event on disk before it is acknowledged, and
//! every lead's state with a timeline. SQLite (WAL) is the embedded
//! default; the [`Store`] trait is what a PostgreSQL backend implements for
//! several instances sharing one database.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::pipeline::{BranchEnd, ExecutionRecord, ExecutionStatus};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

/// Where a lead is in the handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LeadState {
    Received,
    Validated,
    Deduped,
    Routed,
    Assigned,
    Notified,
    Accepted,
    Rejected,
    Recycled,
    Invalid,
    Duplicate,
    Failed,
}

impl LeadState {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            LeadState::Received => "received",
            LeadState::Validated => "validated",
            LeadState::Deduped => "deduped",
            LeadState::Routed => "routed",
            LeadState::Assigned => "assigned",
            LeadState::Notified => "notified",
            LeadState::Accepted => "accepted",
            LeadState::Rejected => "rejected",
            LeadState::Recycled => "recycled",
            LeadState::Invalid => "invalid",
            LeadState::Duplicate => "duplicate",
            LeadState::Failed => "failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        use clap::ValueEnum;
        LeadState::value_variants().iter().copied().find(|s| s.as_str() == text)
    }

    /// Whether the lead is done moving on its own (a person acts next, or
    /// nothing does).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            LeadState::Received | LeadState::Validated | LeadState::Deduped | LeadState::Routed | LeadState::Assigned
        )
    }
}

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
    pub payload: Value,
    pub received_at: i64,
}

/// One step in a lead's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub at: i64,
    pub state: LeadState,
    pub detail: String,
}

/// A lead as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LeadRecord {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub company: Option<String>,
    pub state: LeadState,
    pub owner: Option<String>,
    pub salesforce_id: Option<String>,
    pub updated_at: i64,
    pub timeline: Vec<Step>,
}

/// The durable ledger.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Stores an event; `false` when one with the same source and id is
    /// already stored (a redelivery). Returns only once it is durable.
    async fn record_event(&self, event: &InboundEvent) -> Result<bool>;
    /// Events stored but whose execution never finished (a crash or a
    /// restart in between): the work to resume.
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
    /// Marks an event's execution finished.
    async fn finish_event(&self, source: &str, event_id: &str, execution_id: &str, failed: bool) -> Result<()>;
    /// Applies the steps of a finished execution to its lead.
    async fn record_steps(&self, lead_id: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()>;
    /// Leads, most recently updated first, optionally in one state.
    async fn leads(&self, state: Option<LeadState>, limit: usize) -> Result<Vec<LeadRecord>>;
    /// One lead with its timeline.
    async fn lead(&self, id: &str) -> Result<Option<LeadRecord>>;
}

/// What an execution learned about a lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeadFacts {
    pub email: Option<String>,
    pub name: Option<String>,
    pub company: Option<String>,
    pub owner: Option<String>,
    pub salesforce_id: Option<String>,
}

/// Why `validate` found an item invalid, its reasons' messages joined.
pub fn invalid_reasons(item: &Value) -> String {
    let reasons: Vec<&str> =
        item["validation"]["reasons"].as_array().into_iter().flatten().filter_map(|r| r["message"].as_str()).collect();
    reasons.join("; ")
}

/// The lead steps and facts an execution record shows, in order. Each
/// successful node run is a step (`validate` → validated, `dedupe` →
/// deduped, ...); where the execution ended decides the final one.
pub fn steps_of(record: &ExecutionRecord) -> (LeadFacts, Vec<Step>) {
    let mut facts = LeadFacts::default();
    let mut steps = Vec::new();
    let at = |run_us: u64| record.started_at_ms + i64::try_from(run_us / 1000).unwrap_or(0);
    for run in &record.runs {
        let Some(out) = run.outputs.first() else {
            continue;
        };
        let item = &out.item;
        if let Some(p) = item.get("properties") {
            let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
            facts.email = facts.email.take().or(text("email"));
            facts.company = facts.company.take().or(text("company"));
            let name = [text("firstname"), text("lastname")].into_iter().flatten().collect::<Vec<_>>().join(" ");
            if !name.is_empty() {
                facts.name = Some(name);
            }
        }
        let state = match (run.plugin.as_str(), out.port.as_str()) {
            ("fetch-contact", _) => Some((LeadState::Received, "contact read from HubSpot".to_string())),
            ("validate", "valid") => Some((LeadState::Validated, "meets the MQL criteria".into())),
            ("validate", "invalid") => Some((LeadState::Invalid, invalid_reasons(item))),
            ("dedupe", "duplicate") => Some((
                LeadState::Duplicate,
                format!("already handed off ({})", item["dedupe"]["key"].as_str().unwrap_or_default()),
            )),
            ("dedupe", port) => Some((LeadState::Deduped, format!("salesforce match: {port}"))),
            ("route" | "score-router-py" | "score-router-js", _) => {
                facts.owner = item["routing"]["owner_name"].as_str().map(str::to_string);
                Some((LeadState::Routed, item["routing"]["explanation"].as_str().unwrap_or_default().to_string()))
            }
            ("assign", _) => {
                facts.salesforce_id = item["salesforce"]["lead_id"].as_str().map(str::to_string);
                Some((
                    LeadState::Assigned,
                    format!("salesforce lead {}", facts.salesforce_id.clone().unwrap_or_default()),
                ))
            }
            ("notify", _) => {
                let n = &item["notification"];
                let to = n["to"].as_str().or(n["queue_post"]["channel"].as_str()).unwrap_or_default();
                Some((LeadState::Notified, format!("told {to}")))
            }
            _ => None,
        };
        if let Some((state, detail)) = state {
            steps.push(Step { at: at(run.finished_at_us), state, detail });
        }
    }
    if record.status == ExecutionStatus::Failed {
        let at = record.started_at_ms + i64::try_from(record.duration_us / 1000).unwrap_or(0);
        steps.push(Step { at, state: LeadState::Failed, detail: record.error.clone().unwrap_or_default() });
    } else if record.ends.iter().any(|e| matches!(e, BranchEnd::Failed { .. })) {
        let at = record.started_at_ms + i64::try_from(record.duration_us / 1000).unwrap_or(0);
        steps.push(Step { at, state: LeadState::Failed, detail: "a step failed and its branch ended".into() });
    }
    (facts, steps)
}
