//! `handoff:plugin/schedule`: durable timers that run a pipeline node later.

use super::RunContext;
use super::journal::Guard;
use super::{CapabilityError, Grant};
use crate::bindings::handoff::plugin::schedule::Host;
use crate::bindings::handoff::plugin::types::Timestamp;
use serde::Serialize;
use std::sync::Mutex;

/// A request to run `node` of `pipeline` at `at` with `payload` as its item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timer {
    /// The timer's id.
    pub id: String,
    /// The pipeline whose node it runs.
    pub pipeline: String,
    /// The node it runs; empty to start the pipeline at its trigger.
    pub node: String,
    /// The plugin that sets it: only it may replace or cancel it.
    pub plugin: String,
    /// Milliseconds since the Unix epoch (host clock).
    pub at: Timestamp,
    /// The item the node will receive, as JSON.
    pub payload: String,
    /// Idempotency key: a new timer of the same plugin with the same key
    /// replaces the pending one.
    pub key: Option<String>,
    /// The lead the execution that set it was about.
    pub lead_id: Option<String>,
    /// The execution that set the timer.
    pub execution_id: String,
}

impl Timer {
    /// What the timer is, for people: the payload's `label`, if any.
    pub fn label(&self) -> Option<String> {
        // Only the label is read out; the rest of the payload is skipped
        // over, not built into a tree.
        #[derive(serde::Deserialize)]
        struct Labelled {
            label: Option<serde_json::Value>,
        }
        // A struct would also be read from an array, by position.
        if !self.payload.trim_start().starts_with('{') {
            return None;
        }
        match serde_json::from_str::<Labelled>(&self.payload).ok()?.label? {
            serde_json::Value::String(label) => Some(label),
            _ => None,
        }
    }
}

/// Where timers are kept until they fire.
#[async_trait::async_trait]
pub trait Scheduler: Send + Sync {
    /// Stores `timer` (replacing a pending one of the same plugin and key)
    /// and returns its id; a timer whose id is already stored is kept as it
    /// is. With `effect` (the effect journal's key for this call), a store
    /// that keeps the journal records the id under it in the same
    /// transaction, so a crash can neither lose nor double the timer.
    async fn schedule(&self, timer: Timer, effect: Option<&str>) -> Result<String, CapabilityError>;
    /// Cancels a pending timer `plugin` set; a timer already fired or
    /// cancelled is left as it is.
    ///
    /// # Errors
    ///
    /// `not-found` when `plugin` set no timer with this id.
    async fn cancel(&self, plugin: &str, timer_id: &str, reason: &str) -> Result<(), CapabilityError>;
    /// Cancels the pending timer `plugin` set under `key`; false when there
    /// is none.
    async fn cancel_key(&self, plugin: &str, key: &str, reason: &str) -> Result<bool, CapabilityError>;
}

impl RunContext {
    /// Sets a timer about `lead` (journaled with the call).
    async fn set_timer(
        &mut self,
        lead: Option<String>,
        at: Timestamp,
        node: String,
        payload: String,
        key: Option<String>,
    ) -> Result<String, CapabilityError> {
        super::state::require_json(&payload, "payload")?;
        let scheduler = self.provider(Grant::ScheduleWrite, |c| &c.schedule)?;
        let identity = self.identity();
        let timer = Timer {
            id: uuid::Uuid::now_v7().to_string(),
            pipeline: identity.pipeline.clone(),
            node,
            plugin: identity.plugin.clone(),
            at,
            payload,
            key,
            lead_id: lead,
            execution_id: identity.execution_id.clone(),
        };
        // The timer and its journal record commit together.
        self.effect("schedule.at", Guard::Atomic, |attempt| async move {
            scheduler.schedule(timer, attempt.key.as_deref()).await
        })
        .await
    }
}

impl Host for RunContext {
    async fn at(
        &mut self,
        at: Timestamp,
        node: String,
        payload: String,
        key: Option<String>,
    ) -> Result<String, CapabilityError> {
        let lead = self.identity().lead_id.clone();
        self.set_timer(lead, at, node, payload, key).await
    }

    async fn at_for_lead(
        &mut self,
        lead_id: String,
        at: Timestamp,
        node: String,
        payload: String,
        key: Option<String>,
    ) -> Result<String, CapabilityError> {
        if lead_id.is_empty() || lead_id.len() > 128 {
            return Err(CapabilityError::Invalid("a lead id is 1 to 128 bytes".into()));
        }
        self.set_timer(Some(lead_id), at, node, payload, key).await
    }

    async fn cancel(&mut self, timer_id: String) -> Result<(), CapabilityError> {
        let scheduler = self.provider(Grant::ScheduleWrite, |c| &c.schedule)?;
        let (plugin, reason) = self.cancel_reason();
        self.effect("schedule.cancel", Guard::Idempotent, |_| async move {
            scheduler.cancel(&plugin, &timer_id, &reason).await
        })
        .await
    }

    async fn cancel_key(&mut self, key: String) -> Result<bool, CapabilityError> {
        let scheduler = self.provider(Grant::ScheduleWrite, |c| &c.schedule)?;
        let (plugin, reason) = self.cancel_reason();
        self.effect("schedule.cancel-key", Guard::Idempotent, |_| async move {
            scheduler.cancel_key(&plugin, &key, &reason).await
        })
        .await
    }
}

impl RunContext {
    /// The plugin cancelling, and the reason recorded with the timer.
    fn cancel_reason(&self) -> (String, String) {
        let id = self.identity();
        (id.plugin.clone(), format!("cancelled by {} in {} ({})", id.node, id.pipeline, id.execution_id))
    }
}

/// Timers held in memory: what `handoff run` uses, since a one-shot run
/// exits before any timer is due. It lists what a run scheduled.
#[derive(Debug, Default)]
pub struct TimerBook {
    timers: Mutex<Vec<Timer>>,
}

impl TimerBook {
    /// The pending timers, soonest first.
    pub fn pending(&self) -> Vec<Timer> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        timers.sort_by_key(|t| t.at);
        timers
    }
}

#[async_trait::async_trait]
impl Scheduler for TimerBook {
    async fn schedule(&self, timer: Timer, _: Option<&str>) -> Result<String, CapabilityError> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if timer.key.is_some() {
            timers.retain(|t| !(t.plugin == timer.plugin && t.key == timer.key));
        }
        let id = timer.id.clone();
        timers.push(timer);
        Ok(id)
    }

    async fn cancel(&self, plugin: &str, timer_id: &str, _: &str) -> Result<(), CapabilityError> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = timers.len();
        timers.retain(|t| !(t.plugin == plugin && t.id == timer_id));
        if timers.len() == before {
            return Err(CapabilityError::NotFound(format!("no timer {timer_id}")));
        }
        Ok(())
    }

    async fn cancel_key(&self, plugin: &str, key: &str, _: &str) -> Result<bool, CapabilityError> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = timers.len();
        timers.retain(|t| !(t.plugin == plugin && t.key.as_deref() == Some(key)));
        Ok(timers.len() != before)
    }
}

#[cfg(test)]
mod tests {
    use super::Timer;

    fn timer(payload: &str) -> Timer {
        Timer {
            id: "t".into(),
            pipeline: "p".into(),
            node: "n".into(),
            plugin: "escalate".into(),
            at: 0,
            payload: payload.into(),
            key: None,
            lead_id: None,
            execution_id: "e".into(),
        }
    }

    #[test]
    fn a_timers_label_is_its_payloads_label_text() {
        let payload = r#"{"sla": {"steps": [1, 2, {"label": "inner"}]}, "label": "2 h: tell the manager", "n": 3}"#;
        assert_eq!(timer(payload).label().as_deref(), Some("2 h: tell the manager"));
        assert_eq!(timer(r#"{"sla": {"label": "inner"}}"#).label(), None, "only a top-level label");
        assert_eq!(timer(r#"{"label": 7}"#).label(), None, "not text");
        assert_eq!(timer(r#"["label"]"#).label(), None, "not an object");
    }
}
