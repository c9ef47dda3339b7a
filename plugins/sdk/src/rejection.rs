//! The standard rejection picklist: why sales sends a lead back. The DM's
//! Reject menu, the "Other" modal, the Salesforce reason mapping and the
//! `recycle` plugin's nurture and re-evaluation settings all key on these
//! codes; a pipeline that offers its own list (`reject_reasons` in
//! `notify` and `escalate`, `reasons` in `recycle`) keeps the codes the
//! same everywhere.

/// One reason: its code (what is stored and mapped) and its label (what
/// people read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    /// Stable code, e.g. `timing`.
    pub code: &'static str,
    /// What the menu shows.
    pub label: &'static str,
}

/// The standard picklist, in menu order. `other` asks for a note.
pub const REASONS: [Reason; 8] = [
    Reason { code: "timing", label: "Timing not right" },
    Reason { code: "budget", label: "No budget" },
    Reason { code: "wrong-persona", label: "Wrong persona" },
    Reason { code: "no-authority", label: "No authority" },
    Reason { code: "customer-or-competitor", label: "Existing customer or competitor" },
    Reason { code: "bad-data", label: "Bad data" },
    Reason { code: "no-response", label: "No response" },
    Reason { code: "other", label: "Other (add a note)" },
];

/// The reason that asks for a note in a modal.
pub const OTHER: &str = "other";

/// The label of a standard reason code, or the code itself.
pub fn label(code: &str) -> &str {
    REASONS.iter().find(|r| r.code == code).map_or(code, |r| r.label)
}

/// A Block Kit `static_select` offering `reasons` (code, label) for the lead
/// with CRM id `crm_id`: each option's value is `<crm id>:<code>`.
pub fn select(crm_id: &str, reasons: &[(String, String)]) -> serde_json::Value {
    let options: Vec<serde_json::Value> = reasons
        .iter()
        .map(|(code, label)| {
            serde_json::json!({"text": {"type": "plain_text", "text": label}, "value": format!("{crm_id}:{code}")})
        })
        .collect();
    serde_json::json!({
        "type": "static_select",
        "action_id": "reject_lead",
        "placeholder": {"type": "plain_text", "text": "Reject with a reason"},
        "options": options
    })
}

/// The standard picklist as (code, label) pairs.
pub fn standard() -> Vec<(String, String)> {
    REASONS.iter().map(|r| (r.code.to_string(), r.label.to_string())).collect()
}

/// The (code, label) pairs a plugin's config gives (`[{"code", "label"}]`),
/// or the standard list.
pub fn from_config(config: &serde_json::Value) -> Vec<(String, String)> {
    let Some(list) = config.as_array().filter(|l| !l.is_empty()) else { return standard() };
    list.iter()
        .filter_map(|r| {
            let code = r["code"].as_str()?;
            Some((code.to_string(), r["label"].as_str().unwrap_or_else(|| label(code)).to_string()))
        })
        .collect()
}
