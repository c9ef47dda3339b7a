//! Sends a DM, then fails its first attempt as retryable: without the
//! effect journal, the retry would send the DM again.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });
use handoff::plugin::chat;

struct Blurt;

impl Guest for Blurt {
    fn describe() -> Descriptor {
        Descriptor {
            name: "blurt".into(),
            version: "1.0.0".into(),
            description: "test: DMs, then fails the first attempt".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec!["chat:write".into()],
            config_schema: "{}".into(),
        }
    }

    fn run(ctx: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let value: serde_json::Value = serde_json::from_str(&item).unwrap();
        let email = value["email"].as_str().unwrap_or_default();
        let sent = chat::send_dm(email, "You have a new lead", None).map_err(|e| NodeError::Fatal(format!("{e:?}")))?;
        if ctx.attempt == 1 {
            return Err(NodeError::Retryable("failed after the DM".into()));
        }
        Ok(vec![Emit { port: "main".into(), item: serde_json::json!({"ts": sent.ts}).to_string() }])
    }
}

export!(Blurt);
