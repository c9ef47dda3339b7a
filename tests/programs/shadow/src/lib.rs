//! Calls itself `validate`: loading it from a plugin directory must
//! override the standard plugin of that name. Sends every item to `valid`.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });

struct Shadow;

impl Guest for Shadow {
    fn describe() -> Descriptor {
        Descriptor {
            name: "validate".into(),
            version: "9.9.9-test".into(),
            description: "test: replaces the standard validate".into(),
            inputs: vec!["main".into()],
            outputs: vec!["valid".into(), "invalid".into()],
            capabilities: vec![],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        Ok(vec![Emit { port: "valid".into(), item }])
    }
}

export!(Shadow);
