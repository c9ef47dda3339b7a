//! `handoff:plugin/roster`: the sales roster RevOps maintains.

use super::RunContext;
use super::{Availability, CapabilityError, Grant, Rep, Team};
use crate::bindings::handoff::plugin::roster::Host;
use crate::bindings::handoff::plugin::types::Timestamp;

/// Reps, teams and their availability.
#[async_trait::async_trait]
pub trait Roster: Send + Sync {
    /// Every team.
    async fn teams(&self) -> Result<Vec<Team>, CapabilityError>;
    /// One rep by CRM user id.
    async fn get_rep(&self, id: &str) -> Result<Option<Rep>, CapabilityError>;
    /// Whether a rep can take a lead at `at`, and why not.
    async fn availability_at(&self, rep_id: &str, at: Timestamp) -> Result<Availability, CapabilityError>;
}

impl Host for RunContext {
    async fn teams(&mut self) -> Result<Vec<Team>, CapabilityError> {
        self.provider(Grant::RosterRead, |c| &c.roster)?.teams().await
    }

    async fn get_rep(&mut self, id: String) -> Result<Option<Rep>, CapabilityError> {
        self.provider(Grant::RosterRead, |c| &c.roster)?.get_rep(&id).await
    }

    async fn availability_at(&mut self, rep_id: String, at: Timestamp) -> Result<Availability, CapabilityError> {
        self.provider(Grant::RosterRead, |c| &c.roster)?.availability_at(&rep_id, at).await
    }
}
