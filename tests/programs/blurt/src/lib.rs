//! Sends a DM, then fails its first attempt as retryable: without the
//! effect journal, the retry would send the DM again.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, chat, emit, json};

struct Blurt;

impl Plugin for Blurt {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "blurt",
            version: "1.0.0",
            description: "test: DMs, then fails the first attempt",
            capabilities: &["chat:write"],
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let email = item["email"].as_str().unwrap_or_default();
        let sent = chat::send_dm(email, "You have a new lead", None).map_err(|e| NodeError::Fatal(format!("{e:?}")))?;
        if run.ctx.attempt == 1 {
            return Err(NodeError::Retryable("failed after the DM".into()));
        }
        Ok(vec![emit("main", &json!({"ts": sent.ts}))])
    }
}

handoff_plugin::export!(Blurt);
