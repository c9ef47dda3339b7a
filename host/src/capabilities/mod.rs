//! Capabilities: everything a plugin can ask of the outside world.
//!
//! One module per WIT capability interface. Each holds the provider trait
//! that a connector implements (HubSpot, Salesforce, Slack, ...), and the
//! glue that serves the interface to a plugin: it checks the node's grant for
//! every call, then hands the call to the provider. Plugins never see a
//! credential: providers hold them, and providers live only in the host.
//!
//! A provider that is not configured answers `unavailable`, which a plugin
//! treats like any transient outage.

mod chat;
mod clock;
mod context;
mod crm;
mod email;
pub mod grant;
mod journal;
mod llm;
mod log;
mod marketing;
mod reports;
mod roster;
mod schedule;
mod state;

use std::sync::Arc;

pub use crate::bindings::handoff::plugin::chat::MessageRef;
pub use crate::bindings::handoff::plugin::email::Message as EmailMessage;
pub use crate::bindings::handoff::plugin::llm::CompletionRequest;
pub use crate::bindings::handoff::plugin::roster::{Availability, Rep, Team};
pub use crate::bindings::handoff::plugin::types::{
    Account, Activity, ActivityKind, CapabilityError, Contact, CrmContact, CustomNotification, Lead, Opportunity,
    Owner, OwnerKind, Task,
};
pub use chat::Chat;
pub use clock::{Clock, ManualClock, SystemClock};
pub use context::{
    CapabilityLinks, HOST_LOG_BURST, HOST_LOG_LINE_BYTES, HOST_LOG_LINES_PER_SECOND, MAX_LOG_BYTES, MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES, RunClock, RunContext, RunIdentity,
};
pub use crm::{Crm, CrmMatches, LeadChange};
pub use email::Email;
pub use grant::{Grant, GrantSet, Interface};
pub use journal::{EffectJournal, Entry, OUTPUTS_SUFFIX, outputs_key};
pub use llm::Llm;
pub use marketing::Marketing;
pub use reports::Reports;
pub use roster::Roster;
pub use schedule::{Scheduler, Timer, TimerBook};
pub(crate) use state::incremented;
pub use state::{FileStateStore, StateMap, StateQuota, StateStore};

/// The providers behind every capability interface, shared by all runs.
///
/// `None` means "not configured on this host": calls answer `unavailable`.
#[derive(Clone)]
pub struct Capabilities {
    /// HubSpot.
    pub marketing: Option<Arc<dyn Marketing>>,
    /// Salesforce.
    pub crm: Option<Arc<dyn Crm>>,
    /// Slack.
    pub chat: Option<Arc<dyn Chat>>,
    /// SMTP.
    pub email: Option<Arc<dyn Email>>,
    /// Anthropic.
    pub llm: Option<Arc<dyn Llm>>,
    /// The roster file.
    pub roster: Option<Arc<dyn Roster>>,
    /// Plugin state (the ledger, or files for one-shot runs).
    pub state: Option<Arc<dyn StateStore>>,
    /// Durable timers.
    pub schedule: Option<Arc<dyn Scheduler>>,
    /// Handoff health from the ledger.
    pub reports: Option<Arc<dyn Reports>>,
    /// How much state each plugin may keep.
    pub state_quota: StateQuota,
    /// "Now" for plugins; always present (system time unless virtual).
    pub clock: Arc<dyn Clock>,
    /// Where side effects are recorded for exactly-once replay; none for a
    /// one-shot run.
    pub journal: Option<Arc<dyn EffectJournal>>,
}

impl Capabilities {
    /// No provider configured, system clock.
    pub fn none() -> Self {
        Capabilities {
            marketing: None,
            crm: None,
            chat: None,
            email: None,
            llm: None,
            roster: None,
            state: None,
            schedule: None,
            reports: None,
            state_quota: StateQuota::default(),
            clock: Arc::new(SystemClock),
            journal: None,
        }
    }
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let on = |configured: bool| if configured { "configured" } else { "not configured" };
        f.debug_struct("Capabilities")
            .field("marketing", &on(self.marketing.is_some()))
            .field("crm", &on(self.crm.is_some()))
            .field("chat", &on(self.chat.is_some()))
            .field("email", &on(self.email.is_some()))
            .field("llm", &on(self.llm.is_some()))
            .field("roster", &on(self.roster.is_some()))
            .field("state", &on(self.state.is_some()))
            .field("schedule", &on(self.schedule.is_some()))
            .field("reports", &on(self.reports.is_some()))
            .finish_non_exhaustive()
    }
}
