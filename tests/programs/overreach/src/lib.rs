//! Declares `state:read` but also writes: the write must come back
//! `denied`. Emits what each call returned.
use handoff_plugin::{CapabilityError, Describe, Emit, NodeError, Plugin, Run, Value, emit, json, state};

struct Overreach;

impl Plugin for Overreach {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "overreach",
            version: "1.0.0",
            description: "test: writes state with only a read grant",
            capabilities: &["state:read"],
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        let read = format!("{:?}", state::get("counter"));
        let write = match state::set("counter", "1") {
            Ok(()) => "ok".to_string(),
            Err(CapabilityError::Denied(message)) => format!("denied: {message}"),
            Err(other) => format!("other: {other:?}"),
        };
        Ok(vec![emit("main", &json!({"read": read, "write": write}))])
    }
}

handoff_plugin::export!(Overreach);
