//! `handoff:plugin/reports`: handoff health from the ledger, for plugins
//! that report it (the weekly digest).

use super::{CapabilityError, Grant, RunContext};
use crate::bindings::handoff::plugin::reports::Host;
use crate::bindings::handoff::plugin::types::Timestamp;

/// The host's reports, as a provider implements them.
#[async_trait::async_trait]
pub trait Reports: Send + Sync {
    /// The metrics for leads handed to reps from `from` up to `to`, as
    /// JSON.
    async fn metrics(&self, from: Timestamp, to: Timestamp) -> Result<String, CapabilityError>;
}

impl Host for RunContext {
    async fn metrics(&mut self, from: Timestamp, to: Timestamp) -> Result<String, CapabilityError> {
        if to <= from {
            return Err(CapabilityError::Invalid("`to` must be after `from`".into()));
        }
        self.provider(Grant::ReportsRead, |c| &c.reports)?.metrics(from, to).await
    }
}
