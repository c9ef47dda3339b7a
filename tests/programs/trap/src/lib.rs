//! Panics in `run` (a wasm trap).
wit_bindgen::generate!({ world: "node", path: "../../../wit" });

struct Trap;

impl Guest for Trap {
    fn describe() -> Descriptor {
        Descriptor {
            name: "trap".into(),
            version: "1.0.0".into(),
            description: "test: panics".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec![],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let index = std::hint::black_box(item.len() + 10);
        let list = [1, 2, 3];
        panic!("index {index} of {}", list.len());
    }
}

export!(Trap);
