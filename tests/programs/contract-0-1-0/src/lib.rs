//! A plugin built against the plugin contract as released at 0.1.0 (`wit/`
//! here is a copy of that release, not the SDK): it must keep loading and
//! running on hosts of later 0.1.x versions. Counts its runs in state and
//! emits `{"runs": n, "now": ms, "item": input}`.

wit_bindgen::generate!({ world: "node", path: "wit" });

use handoff::plugin::{clock, state};

struct Legacy;

impl Guest for Legacy {
    fn describe() -> Descriptor {
        Descriptor {
            name: "contract-0-1-0".into(),
            version: "0.1.0".into(),
            description: "test: built against handoff:plugin@0.1.0".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec!["state:read".into(), "state:write".into()],
            config_schema: "{}".into(),
        }
    }

    fn run(_ctx: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let runs = state::increment("runs", 1).map_err(|e| NodeError::Retryable(format!("{e:?}")))?;
        let item = format!(r#"{{"runs": {runs}, "now": {}, "item": {item}}}"#, clock::now());
        Ok(vec![Emit { port: "main".into(), item }])
    }
}

export!(Legacy);
