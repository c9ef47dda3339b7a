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
    /// The node it runs.
    pub node: String,
    /// Milliseconds since the Unix epoch.
    pub at: Timestamp,
    /// The item the node will receive, as JSON.
    pub payload: String,
    /// Idempotency key: a new timer with the same key replaces the old one.
    pub key: Option<String>,
    /// The execution that set the timer.
    pub execution_id: String,
}

/// Where timers are kept until they fire.
#[async_trait::async_trait]
pub trait Scheduler: Send + Sync {
    /// Stores `timer` (replacing one with the same pipeline and key) and
    /// returns its id.
    async fn schedule(&self, timer: Timer) -> Result<String, CapabilityError>;
    /// Cancels a pending timer of `pipeline`.
    async fn cancel(&self, pipeline: &str, timer_id: &str) -> Result<(), CapabilityError>;
}

impl Host for RunContext {
    async fn at(
        &mut self,
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
            at,
            payload,
            key,
            execution_id: identity.execution_id.clone(),
        };
        self.effect("schedule.at", Guard::Idempotent, |_| async move { scheduler.schedule(timer).await }).await
    }

    async fn cancel(&mut self, timer_id: String) -> Result<(), CapabilityError> {
        let scheduler = self.provider(Grant::ScheduleWrite, |c| &c.schedule)?;
        let pipeline = self.identity().pipeline.clone();
        self.effect(
            "schedule.cancel",
            Guard::Idempotent,
            |_| async move { scheduler.cancel(&pipeline, &timer_id).await },
        )
        .await
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
    async fn schedule(&self, timer: Timer) -> Result<String, CapabilityError> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if timer.key.is_some() {
            timers.retain(|t| !(t.pipeline == timer.pipeline && t.key == timer.key));
        }
        let id = timer.id.clone();
        timers.push(timer);
        Ok(id)
    }

    async fn cancel(&self, pipeline: &str, timer_id: &str) -> Result<(), CapabilityError> {
        let mut timers = self.timers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = timers.len();
        timers.retain(|t| !(t.pipeline == pipeline && t.id == timer_id));
        if timers.len() == before {
            return Err(CapabilityError::NotFound(format!("no pending timer {timer_id}")));
        }
        Ok(())
    }
}
