//! The effect journal: exactly-once side effects across retries and
//! restarts. Every capability call that changes the outside world (a DM, a
//! Salesforce write, an email, a HubSpot update, a timer) is keyed by
//! execution, node run and call sequence; its result is recorded when it
//! succeeds, and a rerun of the same execution gets the recorded result
//! instead of doing it again (the way Temporal, Restate and Golem replay).
//!
//! A crash can fall between a provider's answer and the journal's commit.
//! An effect that is not idempotent is therefore looked for at its provider
//! (the Salesforce lead with that email, the DM carrying its journal key)
//! before a run that may repeat an earlier one does it: any run but the
//! first attempt of an execution's first run, which the worker knows from
//! where the event came from (just received, just fired) without asking
//! the ledger. The few effects no provider can be asked about (a mobile
//! push) make an intent durable first instead, and are at most once.

use super::RunContext;
use super::{CapabilityError, Contact, MessageRef};
use serde_json::{Value, json};
use std::future::Future;

/// What ends the journal key of a node run's outputs (recorded so a rerun
/// resumes after the last completed node, and dropped once the execution
/// completes).
pub const OUTPUTS_SUFFIX: &str = ":outputs";

/// The journal key of the outputs of the node run with effect scope `scope`.
pub fn outputs_key(scope: &str) -> String {
    format!("{scope}{OUTPUTS_SUFFIX}")
}

/// What the journal holds for one effect key.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// The effect happened; this is its result.
    Done(Value),
    /// An attempt started at this time (host clock, ms) and its result was
    /// never recorded: it may or may not have happened.
    Started {
        /// When the attempt started.
        at_ms: i64,
    },
}

/// Where recorded effects are kept.
#[async_trait::async_trait]
pub trait EffectJournal: Send + Sync {
    /// What is recorded under this key.
    async fn entry(&self, key: &str) -> anyhow::Result<Option<Entry>>;
    /// Records, durably, that an attempt of the effect starts now (the
    /// intent of an effect that is at most once), with what [`Self::persist`]
    /// would make durable.
    async fn start(&self, key: &str, at_ms: i64) -> anyhow::Result<()>;
    /// Writes the decisions `execution_id` made so far (its node runs'
    /// outputs), before one of its effects leaves the process: a rerun after
    /// the process is killed then replays the decisions that led to the
    /// effect (a router's choice among them) and finds the effect, instead
    /// of deciding anew. Nothing to do when nothing new was decided.
    async fn persist(&self, execution_id: &str) -> anyhow::Result<()>;
    /// Records an effect's result, as JSON text. May return before the
    /// record is durable: a record lost to a crash is covered by the effect
    /// being looked for at its provider, by its intent, or by its being
    /// idempotent, so callers need not wait for the disk.
    async fn record(&self, key: &str, result: &str) -> anyhow::Result<()>;

    /// The recorded result under this key, if the effect is done.
    async fn recorded(&self, key: &str) -> anyhow::Result<Option<Value>> {
        Ok(match self.entry(key).await? {
            Some(Entry::Done(value)) => Some(value),
            _ => None,
        })
    }
}

/// How a side effect is protected against being repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Guard {
    /// Doing it again changes nothing (setting fields, replacing a
    /// message, adding to a list): record the result.
    Idempotent,
    /// Doing it again would repeat it (a new lead, a DM), and the provider
    /// can be asked whether it happened: a run that may repeat an earlier
    /// one looks for it there before acting.
    Lookup,
    /// Doing it again would repeat it and no provider can tell whether it
    /// happened (a mobile push): an intent is made durable first, and a
    /// rerun that finds the intent does not act again.
    AtMostOnce,
    /// The provider records the result under the key in the same
    /// transaction as the effect (plugin state in the ledger).
    Atomic,
}

/// One attempt of an effect, as the call sees it.
pub(crate) struct Attempt {
    /// The effect's journal key (none without a journal).
    pub key: Option<String>,
    /// Since when (host clock, ms) an earlier attempt whose outcome is
    /// unknown may have done it: look for what it did before acting.
    pub earlier: Option<i64>,
}

/// How an effect's result is written to and read from the journal.
pub(crate) trait Recorded: Sized {
    fn encode(&self) -> Value;
    fn decode(value: &Value) -> Option<Self>;
}

impl Recorded for () {
    fn encode(&self) -> Value {
        Value::Null
    }
    fn decode(_: &Value) -> Option<Self> {
        Some(())
    }
}

impl Recorded for String {
    fn encode(&self) -> Value {
        json!(self)
    }
    fn decode(value: &Value) -> Option<Self> {
        value.as_str().map(str::to_string)
    }
}

impl Recorded for bool {
    fn encode(&self) -> Value {
        json!(self)
    }
    fn decode(value: &Value) -> Option<Self> {
        value.as_bool()
    }
}

impl Recorded for i64 {
    fn encode(&self) -> Value {
        json!(self)
    }
    fn decode(value: &Value) -> Option<Self> {
        value.as_i64()
    }
}

impl Recorded for MessageRef {
    fn encode(&self) -> Value {
        json!({"channel": self.channel, "ts": self.ts})
    }
    fn decode(value: &Value) -> Option<Self> {
        Some(MessageRef { channel: value["channel"].as_str()?.to_string(), ts: value["ts"].as_str()?.to_string() })
    }
}

impl Recorded for Contact {
    fn encode(&self) -> Value {
        json!({"id": self.id, "properties": self.properties})
    }
    fn decode(value: &Value) -> Option<Self> {
        Some(Contact { id: value["id"].as_str()?.to_string(), properties: value["properties"].as_str()?.to_string() })
    }
}

impl RunContext {
    /// Runs the side effect `what` at most once per execution: replays the
    /// recorded result if this call was made before (same execution, node
    /// run and call sequence), otherwise calls and records a success.
    /// Without a journal (a one-shot `handoff run`), it just calls.
    pub(crate) async fn effect<T: Recorded, F: Future<Output = Result<T, CapabilityError>>>(
        &mut self,
        what: &str,
        guard: Guard,
        call: impl FnOnce(Attempt) -> F,
    ) -> Result<T, CapabilityError> {
        let Some(journal) = self.capabilities().journal.clone() else {
            return call(Attempt { key: None, earlier: None }).await;
        };
        let key = self.next_effect_key(what);
        let unavailable = |e: anyhow::Error| CapabilityError::Unavailable(format!("effect journal: {e}"));
        let wait = self.ledger_wait();
        let first = self.identity().journal_empty;
        let entry = if first { None } else { journal.entry(&key).await.map_err(unavailable)? };
        let earlier = match entry {
            Some(Entry::Done(value)) => {
                // The effect happened; an unreadable record must not make
                // it happen again.
                let result = T::decode(&value).ok_or_else(|| {
                    CapabilityError::Unavailable(format!("effect journal: the record of {key} is unreadable: {value}"))
                })?;
                tracing::debug!(%key, "replayed a recorded effect");
                return Ok(result);
            }
            Some(Entry::Started { at_ms }) => {
                tracing::info!(%key, "an earlier attempt may have done this; checking before acting");
                Some(at_ms)
            }
            // A run that may repeat an earlier one cannot tell from the
            // journal alone: a record may have been lost to a crash.
            None if guard == Guard::Lookup && !first => Some(self.identity().effects_since_ms),
            None => None,
        };
        if guard == Guard::AtMostOnce && earlier.is_none() {
            // Carries what the execution recorded before it (see `start`).
            journal.start(&key, self.capabilities().clock.now_ms()).await.map_err(unavailable)?;
        } else if guard != Guard::Atomic {
            journal.persist(&self.identity().execution_id).await.map_err(unavailable)?;
        }
        // The provider's own time counts; an atomic effect is the ledger's.
        if guard != Guard::Atomic {
            drop(wait);
        }
        let result = call(Attempt { key: Some(key.clone()), earlier }).await?;
        let _wait = self.ledger_wait();
        if guard != Guard::Atomic
            && let Err(e) = journal.record(&key, &result.encode().to_string()).await
        {
            // The effect happened; failing now would repeat it on retry.
            tracing::error!(%key, error = %e, "effect done but not journaled");
        }
        Ok(result)
    }
}
