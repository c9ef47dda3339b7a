//! Never returns from `describe()`.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value};

struct Stall;

impl Plugin for Stall {
    type Config = Value;

    fn describe() -> Describe {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }

    fn run(_: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        Ok(Vec::new())
    }
}

handoff_plugin::export!(Stall);
