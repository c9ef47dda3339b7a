//! Loops forever in `run`.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value};

struct Spin;

impl Plugin for Spin {
    type Config = Value;

    fn describe() -> Describe {
        Describe { name: "spin", version: "1.0.0", description: "test: never returns", ..Describe::default() }
    }

    fn run(_: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

handoff_plugin::export!(Spin);
