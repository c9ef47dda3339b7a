//! `assign`: creates the Salesforce lead (or updates the existing one) with
//! the routed owner. An existing lead qualifying again is set back to an
//! open status (`requalified_status`): a new handoff starts untouched.
//!
//! Output on `assigned`: the item plus `"salesforce": {"lead_id", "url",
//! "created"}`.

use handoff_plugin::contact::{prop, prop_number};
use handoff_plugin::types::Lead;
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, crm, emit, json};

struct Assign;

/// The Salesforce lead for an item: HubSpot properties mapped to Lead
/// fields, the routed owner, and the existing lead's id when there is one.
///
/// # Errors
///
/// When the item has no email or no routed owner.
pub fn lead_for(item: &Value, lead_source: &str) -> Result<Lead, String> {
    let email = item["validation"]["email"].as_str().or_else(|| prop(item, "email")).ok_or("the item has no email")?;
    let owner = item["routing"]["owner_id"].as_str().ok_or("the item has no routing.owner_id; run `route` first")?;
    let text = |name: &str| prop(item, name).map(String::from);
    Ok(Lead {
        id: item["dedupe"]["lead"]["id"].as_str().map(String::from),
        email: email.to_string(),
        first_name: text("firstname"),
        last_name: text("lastname").unwrap_or_else(|| "[not provided]".into()),
        company: text("company").unwrap_or_else(|| "[not provided]".into()),
        title: text("jobtitle"),
        phone: text("phone"),
        country: text("country"),
        state: text("state"),
        industry: text("industry"),
        employees: prop_number(item, "numemployees").map(|n| n as u32),
        lead_source: Some(lead_source.to_string()),
        status: None,
        owner_id: Some(owner.to_string()),
        extra: json!({}).to_string(),
    })
}

impl Plugin for Assign {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "assign",
            version: env!("CARGO_PKG_VERSION"),
            description: "Creates or updates the Salesforce lead and assigns the routed owner",
            outputs: &["assigned"],
            capabilities: &["crm:write"],
            config_schema: r#"{"type": "object", "additionalProperties": false, "properties": {
                "lead_source": {"type": "string", "default": "Marketing - HubSpot MQL"},
                "requalified_status": {"type": "string", "default": "Open - Not Contacted", "description": "Status an existing Salesforce lead is set back to when it qualifies again: its new handoff starts untouched, so the SLA ladder does not take an old status for the rep's work."},
                "record_url_base": {"type": "string", "description": "Salesforce Lightning base URL for record links, e.g. https://acme.lightning.force.com"}
            }}"#,
            lead: r#"{"assigned": {"state": "assigned", "detail": "salesforce lead {/salesforce/lead_id}", "crm_id": "/salesforce/lead_id"}}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let source = run.config["lead_source"].as_str().unwrap_or("Marketing - HubSpot MQL");
        let base =
            run.config["record_url_base"].as_str().unwrap_or("https://login.salesforce.com").trim_end_matches('/');
        let mut lead = lead_for(&item, source).map_err(NodeError::InvalidInput)?;
        let created = lead.id.is_none();
        if !created {
            lead.status = Some(run.config["requalified_status"].as_str().unwrap_or("Open - Not Contacted").to_string());
        }
        let lead_id = crm::upsert_lead(&lead)?;
        item["salesforce"] = json!({
            "lead_id": lead_id,
            "url": format!("{base}/lightning/r/Lead/{lead_id}/view"),
            "created": created,
        });
        Ok(vec![emit("assigned", &item)])
    }
}

handoff_plugin::export!(Assign);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hubspot_properties_to_a_lead_with_the_routed_owner() {
        let item = json!({
            "properties": {"firstname": "Greta", "lastname": "Holm", "company": "Umbrella Health", "jobtitle": "CFO", "numemployees": "12000", "country": "Germany"},
            "validation": {"email": "greta.holm@umbrellahealth.de"},
            "routing": {"owner_id": "005L"},
            "dedupe": {"match": "existing-lead", "lead": {"id": "00Q1"}}
        });
        let lead = lead_for(&item, "Web").unwrap();
        assert_eq!(lead.id.as_deref(), Some("00Q1"));
        assert_eq!(
            (lead.last_name.as_str(), lead.company.as_str(), lead.employees),
            ("Holm", "Umbrella Health", Some(12000))
        );
        assert_eq!(lead.owner_id.as_deref(), Some("005L"));
        assert!(lead_for(&json!({"validation": {"email": "a@b.co"}}), "Web").is_err(), "no routing, no lead");
    }
}
