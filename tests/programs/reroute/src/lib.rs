//! Calls itself `route`: a changed routing plugin for replay tests. Every
//! lead goes to Tom Dubois of the EMEA team, whatever the rules say.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json};

struct Reroute;

impl Plugin for Reroute {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "route",
            version: "2.0.0-test",
            description: "test: a changed route plugin (everyone to Tom Dubois)",
            outputs: &["routed"],
            capabilities: &["roster:read", "state:read", "state:write"],
            lead: r#"{"routed": {"state": "routed", "detail": "{/routing/explanation}", "owner": "/routing/owner_name"}}"#,
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        item["routing"] = json!({
            "owner_id": "005000000000006AAA", "owner_name": "Tom Dubois",
            "owner_email": "tom.dubois@handoff-demo.com", "owner_kind": "user", "team": "emea",
            "rule": "test", "fallback": false, "trail": ["test: everyone to Tom Dubois"],
            "explanation": "test: everyone to Tom Dubois",
        });
        Ok(vec![emit("routed", &item)])
    }
}

handoff_plugin::export!(Reroute);
