//! Allocates (and touches) memory until something stops it.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value};

struct Hog;

impl Plugin for Hog {
    type Config = Value;

    fn describe() -> Describe {
        Describe { name: "hog", version: "1.0.0", description: "test: allocates forever", ..Describe::default() }
    }

    fn run(_: &Run<Value>, _: Value) -> Result<Vec<Emit>, NodeError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            chunks.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&chunks);
        }
    }
}

handoff_plugin::export!(Hog);
