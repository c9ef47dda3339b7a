//! `handoff:plugin/roster`: the sales roster RevOps maintains.

use super::RunContext;
use super::journal::Guard;
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
    /// The time `duration_ms` of the rep's working time after `start`.
    async fn working_time_after(
        &self,
        rep_id: &str,
        start: Timestamp,
        duration_ms: i64,
    ) -> Result<Timestamp, CapabilityError>;
    /// Stops giving the rep new leads until resumed.
    async fn pause(&self, rep_id: &str, reason: &str) -> Result<(), CapabilityError>;
    /// Gives a paused rep leads again.
    async fn resume(&self, rep_id: &str) -> Result<(), CapabilityError>;
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

    async fn working_time_after(
        &mut self,
        rep_id: String,
        start: Timestamp,
        duration_ms: i64,
    ) -> Result<Timestamp, CapabilityError> {
        self.provider(Grant::RosterRead, |c| &c.roster)?.working_time_after(&rep_id, start, duration_ms).await
    }

    async fn pause(&mut self, rep_id: String, reason: String) -> Result<(), CapabilityError> {
        let roster = self.provider(Grant::RosterWrite, |c| &c.roster)?;
        self.effect("roster.pause", Guard::Idempotent, |_| async move { roster.pause(&rep_id, &reason).await }).await
    }

    async fn resume(&mut self, rep_id: String) -> Result<(), CapabilityError> {
        let roster = self.provider(Grant::RosterWrite, |c| &c.roster)?;
        self.effect("roster.resume", Guard::Idempotent, |_| async move { roster.resume(&rep_id).await }).await
    }
}
