//! Counts the items it has seen in plugin state, with a read and a write
//! (not an increment): run again, it counts again. Its output is a decision
//! only its journaled outputs can make the same on a rerun, like a router's
//! choice among reps.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, state};

struct Tally;

impl Plugin for Tally {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "tally",
            version: "1.0.0",
            description: "test: counts items with a read and a write of plugin state",
            capabilities: &["state:read", "state:write"],
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let seen: u64 = state::get("seen")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
        state::set("seen", &seen.to_string())?;
        item["seen"] = seen.into();
        Ok(vec![emit("main", &item)])
    }
}

handoff_plugin::export!(Tally);
