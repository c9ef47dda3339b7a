//! Ops alerts for leads that failed for good: read from the ledger, told
//! to the ops channel in batches, marked told only once Slack took the
//! message. A burst of a thousand failures is one message naming the count
//! and the first few leads; a Slack outage or rate limit delays it, and a
//! restart resumes it; nothing is dropped. (Two instances on one ledger
//! may, rarely, both tell the same batch: a repeat, never a loss.)

use super::AppState;
use crate::ledger::FailuresToTell;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument as _;

/// How long the alerter lets a burst gather after a failure wakes it.
const GATHER: Duration = Duration::from_millis(500);
/// How often it looks anyway (failures from another instance, or a batch
/// Slack refused).
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// Leads a batched alert names one by one.
const FIRST_LISTED: usize = 5;

/// Tells ops of failures until the server stops: woken by each failure,
/// and every [`LOOK_EVERY`] in case a batch is still untold.
pub(super) async fn run(state: Arc<AppState>) {
    let (Some(channel), Some(chat)) = (state.ops_channel.clone(), state.executor.capabilities().chat.clone()) else {
        return;
    };
    loop {
        let _ = tokio::time::timeout(LOOK_EVERY, state.alerts.notified()).await;
        tokio::time::sleep(GATHER).await;
        let told = async {
            let failures = state.ledger.failures_to_tell(FIRST_LISTED).await?;
            if failures.count == 0 {
                return anyhow::Ok(0);
            }
            chat.post(&channel, &message(&failures), None, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            state.ledger.mark_told(failures.through).await?;
            Ok(failures.count)
        };
        match told.instrument(tracing::info_span!("ops_alert")).await {
            Ok(0) => {}
            Ok(count) => tracing::info!(count, "ops told of failed leads"),
            Err(e) => tracing::warn!(error = %e, "cannot tell ops of failed leads yet; trying again shortly"),
        }
    }
}

/// The alert: one lead in full, or a count with the first few and how to
/// see and retry them all.
fn message(failures: &FailuresToTell) -> String {
    let why = |error: &Option<String>| error.clone().unwrap_or_else(|| "a step failed".into());
    if let [only] = failures.first.as_slice()
        && failures.count == 1
    {
        let lead = only.lead_id.as_deref().unwrap_or("?");
        return format!(
            ":warning: Lead {lead} failed in {} (event {}): {}. Fix the cause, then `handoff retry {lead}`.",
            only.pipeline,
            only.event_id,
            why(&only.error)
        );
    }
    let mut text = format!(":warning: {} leads failed after their retries:", failures.count);
    for failed in &failures.first {
        let lead = failed.lead_id.as_deref().unwrap_or("?");
        let _ = write!(text, "\n• Lead {lead} in {}: {}", failed.pipeline, why(&failed.error));
    }
    let more = failures.count.saturating_sub(failures.first.len() as u64);
    if more > 0 {
        let _ = write!(text, "\n• and {more} more");
    }
    text.push_str("\nList them: `handoff lead list --state failed`. Fix the cause, then `handoff retry --all-failed`.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::FailedLead;

    fn failed(lead: &str) -> FailedLead {
        FailedLead {
            pipeline: "mql-handoff".into(),
            event_id: format!("e{lead}"),
            lead_id: Some(lead.into()),
            error: Some("Salesforce refused the lead".into()),
        }
    }

    #[test]
    fn one_failure_is_told_in_full_and_many_as_a_count() {
        let one = FailuresToTell { count: 1, first: vec![failed("1002")], through: 0 };
        let text = message(&one);
        assert!(text.contains("Lead 1002 failed in mql-handoff (event e1002): Salesforce refused"), "{text}");
        assert!(text.contains("`handoff retry 1002`"), "{text}");

        let many = FailuresToTell { count: 1200, first: (0..5).map(|i| failed(&i.to_string())).collect(), through: 0 };
        let text = message(&many);
        assert!(text.starts_with(":warning: 1200 leads failed"), "{text}");
        assert_eq!(text.matches("\n• Lead ").count(), 5, "{text}");
        assert!(text.contains("and 1195 more") && text.contains("handoff retry --all-failed"), "{text}");
    }
}
