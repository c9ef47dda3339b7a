//! Declares `state:read` but also writes: the write must come back
//! `denied`. Emits what each call returned.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });
use handoff::plugin::state;

struct Overreach;

impl Guest for Overreach {
    fn describe() -> Descriptor {
        Descriptor {
            name: "overreach".into(),
            version: "1.0.0".into(),
            description: "test: writes state with only a read grant".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec!["state:read".into()],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, _: String) -> Result<Vec<Emit>, NodeError> {
        let read = format!("{:?}", state::get("counter"));
        let write = match state::set("counter", "1") {
            Ok(()) => "ok".to_string(),
            Err(state::CapabilityError::Denied(message)) => format!("denied: {message}"),
            Err(other) => format!("other: {other:?}"),
        };
        let item = serde_json::json!({"read": read, "write": write});
        Ok(vec![Emit { port: "main".into(), item: item.to_string() }])
    }
}

export!(Overreach);
