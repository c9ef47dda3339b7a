//! `recycle`: rejected leads go back to marketing with their reason, into
//! the nurture for that reason, and come back to sales when the reason may
//! have changed.
//!
//! One plugin, four entries, chosen by the item:
//! - a `lead.rejected` event (the recycle pipeline's trigger): writes the
//!   reason, who and when to the HubSpot contact, moves its lifecycle stage
//!   and lead status back, adds it to the reason's nurture list, and sets
//!   the re-evaluation timer (port `nurtured`);
//! - a re-evaluation timer: the contact is read again; one that became an
//!   opportunity or a customer (or has an open Salesforce opportunity) is a
//!   recycled conversion (`converted`); one that still scores as an MQL is
//!   made an MQL again and re-enters the handoff (`recycled`, which raises
//!   `lead.recycled`); the rest stay in nurture (`stays`);
//! - a schedule slot (the Salesforce poll): leads set to the rejected status
//!   since the last poll (by `SystemModstamp`, so nothing is missed across
//!   restarts); each with a reason gets its own execution (a timer for that
//!   lead to the `reject` node), each without one a Slack message asking its
//!   owner to pick one (`polled`);
//! - that per-lead timer: the Salesforce rejection as a `rejected` lead
//!   step, which raises `lead.rejected` like a rejection in Slack.

use handoff_plugin::rejection;
use handoff_plugin::time::{duration_ms, utc_date};
use handoff_plugin::{
    Describe, Emit, NodeError, Plugin, Run, Value, chat, clock, crm, emit, json, marketing, roster, schedule, state,
};

struct Recycle;

impl Plugin for Recycle {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "recycle",
            version: env!("CARGO_PKG_VERSION"),
            description: "Rejected leads back to marketing with their reason, into the reason's nurture, re-evaluated later; Salesforce rejections found by a poll",
            outputs: &["nurtured", "recycled", "converted", "stays", "rejected", "polled", "skipped"],
            capabilities: &[
                "marketing:read",
                "marketing:write",
                "crm:read",
                "chat:write",
                "roster:read",
                "state:read",
                "state:write",
                "schedule:write",
            ],
            config_schema: include_str!("config.schema.json"),
            lead: r#"{
                "nurtured": {"state": "nurture", "phase": "ended", "detail": "{/recycle/did}", "data": "/recycle"},
                "recycled": {"state": "recycled", "detail": "{/recycle/did}", "data": "/recycle"},
                "converted": {"state": "converted", "phase": "ended", "detail": "{/recycle/did}", "data": "/recycle"},
                "stays": {"state": "nurture", "phase": "ended", "detail": "{/recycle/did}", "data": "/recycle"},
                "rejected": {"state": "rejected", "phase": "settled", "detail": "rejected in Salesforce by {/rejection/by}: {/rejection/label}", "data": "/rejection"}
            }"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let config = &run.config;
        if let Some(event) = item.get("event") {
            if event["name"] == "lead.rejected" {
                return back_to_marketing(config, event);
            }
            if event.get("scheduled_for").is_some() {
                return poll_salesforce(config);
            }
        }
        if let Some(due) = item.get("reevaluate") {
            return reevaluate(config, due);
        }
        if let Some(found) = item.get("salesforce_rejection") {
            return salesforce_rejection(found);
        }
        Ok(vec![emit("skipped", &json!({"item": item, "why": "not a rejection, a re-evaluation or a poll"}))])
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// What a reason code does, from the config or the standard settings.
struct ReasonPlan {
    label: String,
    list: Option<String>,
    reevaluate_after: Option<String>,
    lead_status: Option<String>,
}

fn plan(config: &Value, code: &str) -> ReasonPlan {
    let configured = &config["reasons"][code];
    let standard_delay = match code {
        "timing" | "budget" => Some("90d"),
        "no-response" => Some("30d"),
        _ => None,
    };
    let standard_status = (code == "timing").then_some("BAD_TIMING");
    let configured_set = config["reasons"].is_object() && config["reasons"].get(code).is_some();
    ReasonPlan {
        label: configured["label"].as_str().map_or_else(|| rejection::label(code).to_string(), str::to_string),
        list: configured["list"].as_str().map(str::to_string),
        reevaluate_after: match configured["reevaluate_after"].as_str() {
            Some(after) => Some(after.to_string()),
            None if configured_set => None,
            None => standard_delay.map(str::to_string),
        },
        lead_status: configured["lead_status"].as_str().or(standard_status).map(str::to_string),
    }
}

fn property(config: &Value, name: &str, default: &str) -> String {
    config["properties"][name].as_str().unwrap_or(default).to_string()
}

fn handled_key(crm_id: &str) -> String {
    format!("handled:{crm_id}")
}

fn recycles_key(lead: &str) -> String {
    format!("recycles:{lead}")
}

/// A `lead.rejected` event: the lead goes back to marketing.
fn back_to_marketing(config: &Value, event: &Value) -> Result<Vec<Emit>, NodeError> {
    let lead = text(&event["lead_id"]);
    let rejected = &event["item"]["rejection"];
    let crm_id = text(&rejected["crm_id"]);
    let code = rejected["reason"].as_str().unwrap_or(rejection::OTHER).to_string();
    let at = rejected["at"].as_i64().unwrap_or_else(clock::now);
    if lead.is_empty() {
        return Err(NodeError::InvalidInput("the lead.rejected event names no lead".into()));
    }
    let plan = plan(config, &code);
    let campaign_property = config["campaign_property"].as_str().unwrap_or("recent_conversion_event_name");
    let contact = marketing::get_contact(&lead, &[campaign_property.to_string(), "lifecyclestage".into()])?;
    let campaign = contact_property(&contact.properties, campaign_property);

    let mut properties = json!({
        property(config, "reason", "handoff_rejection_reason"): plan.label,
        property(config, "rejected_by", "handoff_rejected_by"): text(&rejected["by"]),
        property(config, "rejected_at", "handoff_rejected_at"): utc_date(at),
        "lifecyclestage": config["lifecycle_stage"].as_str().unwrap_or("lead"),
        "hs_lead_status": plan.lead_status.clone().unwrap_or_else(|| config["lead_status"].as_str().unwrap_or("UNQUALIFIED").to_string()),
    });
    if let Some(note) = rejected["note"].as_str() {
        properties[property(config, "note", "handoff_rejection_note")] = json!(note);
    }
    marketing::update_contact(&lead, &properties.to_string())?;
    if let Some(list) = &plan.list {
        marketing::add_to_list(list, &lead)?;
    }
    // A rejection handled here is not taken again from Salesforce's poll.
    state::set(&handled_key(&crm_id), &json!({"at": at, "reason": code}).to_string())?;

    let recycles = state::get(&recycles_key(&lead))?.and_then(|n| n.parse::<i64>().ok()).unwrap_or(0);
    let mut reevaluate_at = None;
    if let Some(after) = plan.reevaluate_after.as_deref().and_then(duration_ms) {
        let due = at + after;
        let label =
            format!("re-evaluate after {} ({})", plan.reevaluate_after.as_deref().unwrap_or_default(), plan.label);
        let payload = json!({"reevaluate": {"lead": lead, "crm_id": crm_id, "reason": code, "label": plan.label,
                                            "rejected_at": at, "after": plan.reevaluate_after}, "label": label});
        let node = config["reevaluate_node"].as_str().unwrap_or("reevaluate");
        schedule::at(due, node, &payload.to_string(), Some(&format!("reevaluate:{lead}")))?;
        reevaluate_at = Some(due);
    }
    let nurture = plan.list.as_deref().map_or_else(|| "no nurture list".to_string(), |l| format!("nurture list {l}"));
    let then = reevaluate_at
        .map_or_else(|| "not re-evaluated".to_string(), |due| format!("re-evaluated on {}", utc_date(due)));
    let did = format!("back to marketing ({}): {nurture}, {then}", plan.label);
    let recycle = json!({
        "reason": code, "label": plan.label, "note": rejected["note"], "by": rejected["by"], "source": rejected["source"],
        "campaign": campaign, "list": plan.list, "rejected_at": at, "reevaluate_at": reevaluate_at,
        "recycles": recycles, "did": did,
    });
    Ok(vec![emit("nurtured", &json!({"lead": lead, "crm_id": crm_id, "recycle": recycle}))])
}

fn contact_property(properties: &str, name: &str) -> Option<String> {
    let properties: Value = serde_json::from_str(properties).unwrap_or_default();
    properties[name].as_str().filter(|v| !v.is_empty()).map(str::to_string)
}

/// A re-evaluation is due: converted, back to sales, or still nurtured.
fn reevaluate(config: &Value, due: &Value) -> Result<Vec<Emit>, NodeError> {
    let lead = text(&due["lead"]);
    let crm_id = text(&due["crm_id"]);
    let label = text(&due["label"]);
    let after = text(&due["after"]);
    let contact = marketing::get_contact(&lead, &["lifecyclestage".into(), "hubspotscore".into(), "email".into()])?;
    let stage = contact_property(&contact.properties, "lifecyclestage").unwrap_or_default();
    let score = contact_property(&contact.properties, "hubspotscore").and_then(|s| s.parse::<f64>().ok());
    let email = contact_property(&contact.properties, "email").unwrap_or_default();
    let base = json!({"reason": due["reason"], "label": label, "rejected_at": due["rejected_at"], "after": after});
    let with = |did: String, extra: Value| {
        let mut recycle = base.clone();
        recycle["did"] = json!(did);
        if let (Some(recycle), Some(extra)) = (recycle.as_object_mut(), extra.as_object()) {
            recycle.extend(extra.clone());
        }
        json!({"lead": lead, "crm_id": crm_id, "recycle": recycle})
    };

    // A conversion, seen in HubSpot or as an open Salesforce opportunity.
    let opportunity = match email.rsplit_once('@') {
        Some((_, domain)) => crm::find_open_opportunities_by_domain(domain)?.into_iter().next(),
        None => None,
    };
    if matches!(stage.as_str(), "opportunity" | "customer") || opportunity.is_some() {
        let how = opportunity
            .map_or_else(|| format!("lifecycle stage {stage}"), |o| format!("open opportunity '{}'", o.name));
        let did = format!("recycled lead converted ({how}), rejected for {label}");
        return Ok(vec![emit("converted", &with(did, json!({"converted": how})))]);
    }
    let min_score = config["min_score"].as_f64().unwrap_or(50.0);
    if score.unwrap_or(0.0) < min_score {
        let did = format!(
            "re-evaluated after {after} ({label}): score {} < {min_score}, stays in nurture",
            score.map_or_else(|| "none".to_string(), |s| s.to_string())
        );
        return Ok(vec![emit("stays", &with(did, json!({})))]);
    }
    let count = state::increment(&recycles_key(&lead), 1)?;
    let properties = json!({
        "lifecyclestage": "marketingqualifiedlead",
        "hs_lead_status": "OPEN",
        property(config, "recycle_count", "handoff_recycle_count"): count.to_string(),
    });
    marketing::update_contact(&lead, &properties.to_string())?;
    // A later rejection in Salesforce is a new one.
    state::delete(&handled_key(&crm_id))?;
    let did = format!("re-evaluated after {after} ({label}): an MQL again, back to sales (recycle #{count})");
    Ok(vec![emit("recycled", &with(did, json!({"count": count})))])
}

/// The Salesforce poll: rejections made there since the last poll.
fn poll_salesforce(config: &Value) -> Result<Vec<Emit>, NodeError> {
    let sf = &config["salesforce"];
    let status = sf["rejected_status"].as_str().unwrap_or("Closed - Not Converted");
    let field = sf["reason_field"].as_str().unwrap_or("Rejection_Reason__c").to_string();
    let node = sf["reject_node"].as_str().unwrap_or("reject");
    let now = clock::now();
    let lookback = duration_ms(sf["lookback"].as_str().unwrap_or("1d")).unwrap_or(86_400_000);
    let cursor = state::get("salesforce-cursor")?.and_then(|c| c.parse::<i64>().ok()).unwrap_or(now - lookback);
    let changes = crm::changed_leads(status, cursor, std::slice::from_ref(&field), 200)?;
    let (mut handed, mut asked, mut skipped) = (0, 0, 0);
    let mut newest = cursor;
    for change in changes {
        newest = newest.max(change.modified_at);
        let lead = change.lead;
        let crm_id = lead.id.clone().unwrap_or_default();
        // Rejected in Slack (Handoff wrote the status): handled already.
        let handled: Option<Value> = state::get(&handled_key(&crm_id))?.and_then(|h| serde_json::from_str(&h).ok());
        if handled.as_ref().and_then(|h| h["at"].as_i64()).is_some_and(|at| at >= change.modified_at - 300_000) {
            skipped += 1;
            continue;
        }
        let Some(contact) = marketing::find_contact_by_email(&lead.email, &[])? else {
            skipped += 1;
            continue;
        };
        let extra: Value = serde_json::from_str(&lead.extra).unwrap_or_default();
        let value = extra[&field].as_str().unwrap_or_default().trim().to_string();
        let owner = match &lead.owner_id {
            Some(id) => roster::get_rep(id)?,
            None => None,
        };
        if value.is_empty() {
            let Some(owner) = owner else {
                skipped += 1;
                continue;
            };
            let name = [lead.first_name.clone().unwrap_or_default(), lead.last_name.clone()].join(" ");
            let text = format!(
                ":leftwards_arrow_with_hook: You set *{}* ({}) to {status} in Salesforce without a reason. Pick one so marketing can nurture it:",
                name.trim(),
                lead.company
            );
            let blocks = json!([
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "actions", "block_id": format!("lead:{}", contact.id), "elements": [reason_select(&crm_id)]}
            ]);
            chat::send_dm(&owner.email, &text, Some(&blocks.to_string()))?;
            asked += 1;
            continue;
        }
        let code = reason_code(config, &value);
        let found = json!({"salesforce_rejection": {
            "lead": contact.id, "crm_id": crm_id, "reason": code.0, "label": code.1, "value": value,
            "by": owner.map_or_else(|| lead.owner_id.clone().unwrap_or_default(), |o| o.name),
            "at": change.modified_at,
        }, "label": format!("Salesforce rejection of {crm_id}")});
        // A minute on, so a rejection made in Slack (which wrote this
        // status) is recorded as handled first.
        schedule::at_for_lead(
            &contact.id,
            now + 60_000,
            node,
            &found.to_string(),
            Some(&format!("salesforce-rejection:{crm_id}")),
        )?;
        handed += 1;
    }
    state::set("salesforce-cursor", &newest.to_string())?;
    Ok(vec![emit(
        "polled",
        &json!({"since": cursor, "until": newest, "handed": handed, "asked": asked, "skipped": skipped}),
    )])
}

/// The Reject menu for a lead rejected in Salesforce without a reason.
fn reason_select(crm_id: &str) -> Value {
    let mut select = rejection::select(crm_id, &rejection::standard());
    select["action_id"] = json!("reject_reason");
    select
}

/// The reason code (and label) for a Salesforce reason value.
fn reason_code(config: &Value, value: &str) -> (String, String) {
    if let Some(code) = config["salesforce"]["reasons"][value].as_str() {
        return (code.to_string(), plan(config, code).label);
    }
    let lower = value.to_lowercase();
    for reason in rejection::REASONS {
        if reason.code == lower || reason.label.to_lowercase() == lower {
            return (reason.code.to_string(), plan(config, reason.code).label);
        }
    }
    (rejection::OTHER.to_string(), value.to_string())
}

/// One Salesforce rejection, in its own execution about its lead.
fn salesforce_rejection(found: &Value) -> Result<Vec<Emit>, NodeError> {
    let crm_id = text(&found["crm_id"]);
    let at = found["at"].as_i64().unwrap_or_else(clock::now);
    let handled: Option<Value> = state::get(&handled_key(&crm_id))?.and_then(|h| serde_json::from_str(&h).ok());
    if handled.as_ref().and_then(|h| h["at"].as_i64()).is_some_and(|h| h >= at - 300_000) {
        return Ok(vec![emit("skipped", &json!({"crm_id": crm_id, "why": "rejected in Slack, handled already"}))]);
    }
    let note = (found["reason"] == rejection::OTHER).then(|| found["value"].clone());
    let rejection = json!({
        "reason": found["reason"], "label": found["label"], "note": note, "by": found["by"],
        "source": "salesforce", "at": at, "crm_id": crm_id,
    });
    Ok(vec![emit("rejected", &json!({"lead": found["lead"], "crm_id": crm_id, "rejection": rejection}))])
}

handoff_plugin::export!(Recycle);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_plans_re_evaluate_timing_and_budget_after_a_quarter() {
        let config = json!({});
        assert_eq!(plan(&config, "timing").reevaluate_after.as_deref(), Some("90d"));
        assert_eq!(plan(&config, "no-response").reevaluate_after.as_deref(), Some("30d"));
        assert_eq!(plan(&config, "wrong-persona").reevaluate_after, None);
        let configured = json!({"reasons": {"timing": {"list": "501"}}});
        assert_eq!(plan(&configured, "timing").reevaluate_after, None, "a configured reason says all");
        assert_eq!(plan(&configured, "timing").list.as_deref(), Some("501"));
    }

    #[test]
    fn salesforce_values_map_to_codes_by_config_code_or_label() {
        let config = json!({"salesforce": {"reasons": {"Not now": "timing"}}});
        assert_eq!(reason_code(&config, "Not now").0, "timing");
        assert_eq!(reason_code(&config, "Wrong persona").0, "wrong-persona");
        assert_eq!(reason_code(&config, "budget").0, "budget");
        assert_eq!(reason_code(&config, "Moved to Mars"), ("other".to_string(), "Moved to Mars".to_string()));
    }
}
