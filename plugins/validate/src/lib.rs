//! `validate`: the first step of the MQL handoff.
//!
//! Input: a HubSpot contact as the CRM API returns it,
//! `{"id": "...", "properties": {"email": "...", ...}}`.
//! Output on `valid`: the same contact plus `"validation": {"email",
//! "email_domain", "score"}`; on `invalid`: the contact plus
//! `"validation": {"reasons": [{"code", "field", "message"}]}`.
//! The criteria live in [`rules`].

// The generated bindings lower WIT records into many flat arguments.
#![allow(clippy::too_many_arguments)]

pub mod rules;

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "node",
    path: "../../wit",
});

/// The plugin's config schema, also served by `describe`.
pub const CONFIG_SCHEMA: &str = include_str!("config.schema.json");

struct Validate;

impl Guest for Validate {
    fn describe() -> Descriptor {
        Descriptor {
            name: "validate".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Checks a HubSpot contact against the MQL criteria: score, required fields, email, domain, lifecycle stage".to_string(),
            inputs: vec!["main".to_string()],
            outputs: vec!["valid".to_string(), "invalid".to_string()],
            capabilities: Vec::new(),
            config_schema: CONFIG_SCHEMA.to_string(),
        }
    }

    fn run(ctx: Context, item: String) -> Result<Vec<Emit>, NodeError> {
        let config: rules::Config =
            serde_json::from_str(&ctx.config).map_err(|e| NodeError::InvalidInput(format!("config: {e}")))?;
        let (port, item) = evaluate(&config, &item)?;
        Ok(vec![Emit { port: port.to_string(), item: item.to_string() }])
    }
}

/// Runs the checks on one item and builds the emitted item.
fn evaluate(config: &rules::Config, item: &str) -> Result<(&'static str, Value), NodeError> {
    let mut item: Value =
        serde_json::from_str(item).map_err(|e| NodeError::InvalidInput(format!("item is not JSON: {e}")))?;
    let Some(properties) = item.get("properties").and_then(Value::as_object) else {
        return Err(NodeError::InvalidInput(
            "item has no `properties` object; expected a HubSpot contact {\"id\", \"properties\"}".to_string(),
        ));
    };
    let (port, validation) = match rules::check(config, properties) {
        rules::Verdict::Valid { email, email_domain, score } => {
            ("valid", json!({"email": email, "email_domain": email_domain, "score": score}))
        }
        rules::Verdict::Invalid(reasons) => ("invalid", json!({ "reasons": reasons })),
    };
    item["validation"] = validation;
    Ok((port, item))
}

export!(Validate);
