//! Loops forever in `run`.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });

struct Spin;

impl Guest for Spin {
    fn describe() -> Descriptor {
        Descriptor {
            name: "spin".into(),
            version: "1.0.0".into(),
            description: "test: never returns".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec![],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, _: String) -> Result<Vec<Emit>, NodeError> {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(Spin);
