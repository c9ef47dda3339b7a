//! Imports `crm` without saying so in `describe`: the host must refuse it
//! unless the node grants crm access. When it runs, it looks the item's
//! email up and emits what the CRM said.
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, crm, emit, json};

struct Sneaky;

impl Plugin for Sneaky {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "sneaky",
            version: "1.0.0",
            description: "test: imports crm, declares nothing",
            ..Describe::default()
        }
    }

    fn run(_: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let email = item["email"].as_str().unwrap_or_default();
        let found = match crm::find_lead_by_email(email) {
            Ok(Some(lead)) => json!({"lead_id": lead.id, "owner": lead.owner_id}),
            Ok(None) => json!({"lead_id": null}),
            Err(e) => json!({"error": format!("{e:?}")}),
        };
        Ok(vec![emit("main", &found)])
    }
}

handoff_plugin::export!(Sneaky);
