//! Panics in `run` (a wasm trap).
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value};

struct Trap;

impl Plugin for Trap {
    type Config = Value;

    fn describe() -> Describe {
        Describe { name: "trap", version: "1.0.0", description: "test: panics", ..Describe::default() }
    }

    fn run(_: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let index = std::hint::black_box(item.to_string().len() + 10);
        let list = [1, 2, 3];
        panic!("index {index} of {}", list.len());
    }
}

handoff_plugin::export!(Trap);
