//! `fetch-contact`: turns a HubSpot webhook event into the contact it is
//! about, reading the properties the rest of the pipeline needs.
//!
//! Input: `{"event": {"objectId": 123, ...}}` (a HubSpot webhook event),
//! `{"event": {"name": "lead.recycled", "lead_id": "123", ...}}` (a lead
//! event) or `{"contact_id": "123"}`.
//! Output on `main`: `{"event", "id", "properties"}`.

use handoff_plugin::{CapabilityError, Describe, Emit, NodeError, Plugin, Run, Value, emit, json, marketing};

/// Properties read when the config names none: identity, firmographics,
/// lifecycle, score and engagement.
pub const DEFAULT_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "company",
    "jobtitle",
    "phone",
    "country",
    "state",
    "numemployees",
    "industry",
    "lifecyclestage",
    "hubspotscore",
    "hs_lead_status",
    "hs_analytics_num_page_views",
    "hs_analytics_num_visits",
    "pricing_page_views",
    "content_downloads",
    "hs_email_open",
    "num_conversion_events",
    "recent_conversion_event_name",
    "hs_analytics_source",
    "icp_fit",
    "website",
];

struct FetchContact;

/// The contact id an item refers to.
pub fn contact_id(item: &Value) -> Option<String> {
    let event = item.get("event");
    let id = item
        .get("contact_id")
        .or_else(|| event?.get("objectId"))
        .or_else(|| event?.get("lead_id").filter(|_| event.is_some_and(|e| e.get("name").is_some())))?;
    match id {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Plugin for FetchContact {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "fetch-contact",
            version: env!("CARGO_PKG_VERSION"),
            description: "Reads the HubSpot contact a webhook event is about",
            capabilities: &["marketing:read"],
            config_schema: r#"{"type": "object", "additionalProperties": false, "properties": {
                "properties": {"type": "array", "items": {"type": "string"}, "description": "Contact properties to read; a default set covering identity, firmographics, score and engagement when unset."}
            }}"#,
            lead: r#"{"main": {"state": "received", "detail": "contact read from HubSpot"}}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let id = contact_id(&item)
            .ok_or_else(|| NodeError::InvalidInput("item has no event.objectId or contact_id".into()))?;
        let properties: Vec<String> = match run.config.get("properties").and_then(Value::as_array) {
            Some(list) => list.iter().filter_map(|p| p.as_str().map(String::from)).collect(),
            None => DEFAULT_PROPERTIES.iter().map(|p| (*p).to_string()).collect(),
        };
        let contact = marketing::get_contact(&id, &properties).map_err(|e| match e {
            CapabilityError::NotFound(m) => {
                NodeError::InvalidInput(format!("contact {id} does not exist in HubSpot: {m}"))
            }
            other => other.into(),
        })?;
        let properties: Value = serde_json::from_str(&contact.properties).unwrap_or_else(|_| json!({}));
        let out = json!({ "event": item.get("event").cloned().unwrap_or(Value::Null), "id": contact.id, "properties": properties });
        Ok(vec![emit("main", &out)])
    }
}

handoff_plugin::export!(FetchContact);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contact_id_comes_from_the_event_or_the_item() {
        assert_eq!(contact_id(&json!({"event": {"objectId": 847297356}})), Some("847297356".into()));
        assert_eq!(contact_id(&json!({"event": {"name": "lead.recycled", "lead_id": "1002"}})), Some("1002".into()));
        assert_eq!(contact_id(&json!({"contact_id": "12"})), Some("12".into()));
        assert_eq!(contact_id(&json!({"event": {}})), None);
    }
}
