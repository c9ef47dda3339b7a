//! Describes itself with a 1.5 MB config schema of 30,000 patterns (small
//! enough to build in its 64 MiB, far past the descriptor limit).
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value};

struct Vast;

impl Plugin for Vast {
    type Config = Value;

    fn describe() -> Describe {
        let properties: Vec<String> =
            (0..30_000).map(|i| format!(r#""f{i}":{{"type":"string","pattern":"^(a+)+{i}[a-z]{{1,9}}$"}}"#)).collect();
        let schema = format!(r#"{{"type":"object","properties":{{{}}}}}"#, properties.join(","));
        Describe {
            name: "vast",
            version: "1.0.0",
            description: "test: a huge config schema",
            config_schema: Box::leak(schema.into_boxed_str()),
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        Ok(Vec::new())
    }
}

handoff_plugin::export!(Vast);
