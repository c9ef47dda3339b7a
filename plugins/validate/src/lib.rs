//! `validate`: the first step of the MQL handoff.
//!
//! Input: a HubSpot contact as the CRM API returns it,
//! `{"id": "...", "properties": {"email": "...", ...}}`.
//! Output on `valid`: the same contact plus `"validation": {"email",
//! "email_domain", "score"}`; on `invalid`: the contact plus
//! `"validation": {"reasons": [{"code", "field", "message"}]}`.
//! The criteria live in [`rules`].

pub mod rules;

use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json};

/// The plugin's config schema, also served by `describe`.
pub const CONFIG_SCHEMA: &str = include_str!("config.schema.json");

struct Validate;

impl Plugin for Validate {
    type Config = rules::Config;

    fn describe() -> Describe {
        Describe {
            name: "validate",
            version: env!("CARGO_PKG_VERSION"),
            description: "Checks a HubSpot contact against the MQL criteria: score, required fields, email, domain, lifecycle stage",
            outputs: &["valid", "invalid"],
            config_schema: CONFIG_SCHEMA,
            lead: r#"{
                "valid": {"state": "validated", "detail": "meets the MQL criteria"},
                "invalid": {"state": "invalid", "detail": "{/validation/reasons/*/message}"}
            }"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<rules::Config>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let (port, item) = evaluate(&run.config, item)?;
        Ok(vec![emit(port, &item)])
    }
}

/// Runs the checks on one item and builds the emitted item.
fn evaluate(config: &rules::Config, mut item: Value) -> Result<(&'static str, Value), NodeError> {
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

handoff_plugin::export!(Validate);
