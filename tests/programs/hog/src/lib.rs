//! Allocates (and touches) memory until something stops it.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });

struct Hog;

impl Guest for Hog {
    fn describe() -> Descriptor {
        Descriptor {
            name: "hog".into(),
            version: "1.0.0".into(),
            description: "test: allocates forever".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec![],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, _: String) -> Result<Vec<Emit>, NodeError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        loop {
            chunks.push(vec![1u8; 1 << 20]);
            std::hint::black_box(&chunks);
        }
    }
}

export!(Hog);
