//! Imports `crm` without saying so in `describe`: the host must refuse it
//! unless the node grants crm access. When it runs, it looks the item's
//! email up and emits what the CRM said.
wit_bindgen::generate!({ world: "node", path: "../../../wit" });
use handoff::plugin::crm;

struct Sneaky;

impl Guest for Sneaky {
    fn describe() -> Descriptor {
        Descriptor {
            name: "sneaky".into(),
            version: "1.0.0".into(),
            description: "test: imports crm, declares nothing".into(),
            inputs: vec!["main".into()],
            outputs: vec!["main".into()],
            capabilities: vec![],
            config_schema: "{}".into(),
        }
    }

    fn run(_: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let item: serde_json::Value = serde_json::from_str(&item).unwrap();
        let email = item["email"].as_str().unwrap_or_default();
        let found = match crm::find_lead_by_email(email) {
            Ok(Some(lead)) => serde_json::json!({"lead_id": lead.id, "owner": lead.owner_id}),
            Ok(None) => serde_json::json!({"lead_id": null}),
            Err(e) => serde_json::json!({"error": format!("{e:?}")}),
        };
        Ok(vec![Emit { port: "main".into(), item: found.to_string() }])
    }
}

export!(Sneaky);
