//! Calls itself `validate`: loading it from a plugin directory must
//! override the standard plugin of that name. Sends every item to `valid`.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit};

struct Shadow;

impl Plugin for Shadow {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "validate",
            version: "9.9.9-test",
            description: "test: replaces the standard validate",
            outputs: &["valid", "invalid"],
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        Ok(vec![emit("valid", &item)])
    }
}

handoff_plugin::export!(Shadow);
