//! The effect journal: exactly-once side effects across retries and
//! restarts. Every capability call that changes the outside world (a DM, a
//! Salesforce write, an email, a HubSpot update, a timer) is keyed by
//! execution, node run and call sequence; its result is recorded when it
//! succeeds, and a rerun of the same execution gets the recorded result
//! instead of doing it again (the way Temporal, Restate and Golem replay).

use super::{CapabilityError, Contact, MessageRef};
use crate::runtime::RunState;
use serde_json::{Value, json};
use std::future::Future;

/// Where recorded effects are kept.
#[async_trait::async_trait]
pub trait EffectJournal: Send + Sync {
    /// The recorded result of the effect with this key.
    async fn recorded(&self, key: &str) -> anyhow::Result<Option<Value>>;
    /// Records an effect's result.
    async fn record(&self, key: &str, result: &Value) -> anyhow::Result<()>;
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

impl RunState {
    /// Runs the side effect `what` at most once per execution: replays the
    /// recorded result if this call was made before (same execution, node
    /// run and call sequence), otherwise calls and records a success.
    /// Without a journal (a one-shot `handoff run`), it just calls.
    pub(crate) async fn effect<T: Recorded, F: Future<Output = Result<T, CapabilityError>>>(
        &mut self,
        what: &str,
        call: impl FnOnce() -> F,
    ) -> Result<T, CapabilityError> {
        let Some(journal) = self.capabilities().journal.clone() else {
            return call().await;
        };
        let key = self.next_effect_key(what);
        match journal.recorded(&key).await {
            Ok(Some(value)) => {
                if let Some(result) = T::decode(&value) {
                    tracing::debug!(%key, "replayed a recorded effect");
                    return Ok(result);
                }
            }
            Ok(None) => {}
            Err(e) => return Err(CapabilityError::Unavailable(format!("effect journal: {e}"))),
        }
        let result = call().await?;
        if let Err(e) = journal.record(&key, &result.encode()).await {
            // The effect happened; failing now would repeat it on retry.
            tracing::error!(%key, error = %e, "effect done but not journaled");
        }
        Ok(result)
    }
}
