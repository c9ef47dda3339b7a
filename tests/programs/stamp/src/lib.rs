//! Scores an item and declares what that means for its lead: a state of its
//! own, `scored`, that no part of the host knows by name.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json};

struct Stamp;

impl Plugin for Stamp {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "stamp",
            version: "1.0.0",
            description: "test: a plugin with a lead state of its own",
            outputs: &["scored"],
            lead: r#"{"scored": {"state": "scored", "phase": "settled", "detail": "scored {/score} by {/by}"}}"#,
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let score = item.to_string().len() % 100;
        Ok(vec![emit("scored", &json!({"event": item.get("event"), "score": score, "by": "stamp"}))])
    }
}

handoff_plugin::export!(Stamp);
