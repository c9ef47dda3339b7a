//! `dedupe`: is this MQL new to sales? Checks Salesforce by email and by
//! company domain, and makes sure the same MQL event never routes twice.
//!
//! Ports: `new`; `existing-lead` (an unconverted lead has the email: update
//! it, keep its owner if active); `existing-account` (a contact or account
//! matches: route to the account owner); `open-opportunity` (the company
//! has an open deal: tell its owner, create no lead); `duplicate` (this MQL
//! was already handed off). Adds `"dedupe": {"match", ...}` to the item.

use handoff_plugin::time::utc_date;
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, clock, crm, emit, json, state};

struct Dedupe;

const DAY_MS: i64 = 86_400_000;

/// The idempotency keys of an MQL: the HubSpot event, and the contact on
/// the day it became an MQL (catches a second event for the same MQL).
pub fn keys(item: &Value, now_ms: i64) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(event) = item.get("event").and_then(|e| e.get("eventId")).filter(|v| !v.is_null()) {
        keys.push(format!("event:{}", event.as_str().map_or_else(|| event.to_string(), String::from)));
    }
    let occurred = item.get("event").and_then(|e| e.get("occurredAt")).and_then(Value::as_i64).unwrap_or(now_ms);
    let Some(id) = item.get("id").and_then(Value::as_str) else { return keys };
    // A rejected lead re-evaluated and back (`lead.recycled`) is a new
    // handoff, whatever day it was first handed off: its recycle number
    // tells its repeats apart.
    let recycle = item.get("event").filter(|e| e["name"] == "lead.recycled").map(|e| &e["item"]["recycle"]["count"]);
    match recycle {
        Some(count) => keys.push(format!("recycled:{id}:{count}")),
        None => keys.push(format!("mql:{id}:{}", utc_date(occurred))),
    }
    keys
}

impl Plugin for Dedupe {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "dedupe",
            version: env!("CARGO_PKG_VERSION"),
            description: "Matches an MQL against Salesforce leads, contacts, accounts and open opportunities; drops repeats",
            outputs: &["new", "existing-lead", "existing-account", "open-opportunity", "duplicate"],
            capabilities: &["crm:read", "state:read", "state:write"],
            config_schema: r#"{"type": "object", "additionalProperties": false, "properties": {
                "match_accounts_by_domain": {"type": "boolean", "default": true, "description": "Also match accounts and open opportunities by the email's company domain."},
                "remember_days": {"type": "integer", "minimum": 1, "maximum": 3650, "default": 30, "description": "How long an MQL's idempotency keys are kept (then they expire and stop counting toward the plugin's state quota): a repeat of the same event, or of the contact's MQL on the same day, arriving within this many days is a duplicate."}
            }}"#,
            lead: r#"{
                "duplicate": {"state": "duplicate", "detail": "already handed off ({/dedupe/key})"},
                "*": {"state": "deduped", "detail": "salesforce match: {$port}"}
            }"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let ctx = &run.ctx;
        let by_domain = run.config.get("match_accounts_by_domain").and_then(Value::as_bool).unwrap_or(true);
        let remember_days = run.config.get("remember_days").and_then(Value::as_i64).unwrap_or(30);
        let email = item["validation"]["email"].as_str().map(String::from).ok_or_else(|| {
            NodeError::InvalidInput("item has no validation.email; run `validate` before `dedupe`".into())
        })?;
        let domain = item["validation"]["email_domain"].as_str().unwrap_or_default().to_string();

        // Idempotency: the first execution to claim a key owns it (the
        // increment is atomic, so concurrent deliveries cannot both win); a
        // retry of the owning execution is not mistaken for a repeat. The
        // owner key is needed even though the count is journaled: a rerun
        // may find no journal (a failed lead retried after the retention
        // pruned it), and must still recognise its own claim
        // (`push::a_crash_between_the_push_and_its_record_pushes_no_second_time`).
        // The owner makes both keys expire, so they do not pile up forever.
        let me = json!(ctx.execution_id).to_string();
        let now = clock::now();
        let forget_at = now.saturating_add(remember_days.saturating_mul(DAY_MS));
        for key in keys(&item, now) {
            let claim = format!("claims:{key}");
            let claims = state::increment(&claim, 1)?;
            if claims == 1 {
                state::set(&key, &me)?;
                state::expire(&claim, forget_at)?;
                state::expire(&key, forget_at)?;
            } else if state::get(&key)?.as_deref() != Some(me.as_str()) {
                item["dedupe"] = json!({"match": "duplicate", "key": key});
                return Ok(vec![emit("duplicate", &item)]);
            }
        }

        // One round trip for all four lookups (Salesforce: one Composite
        // request), then the strongest match wins.
        let domain = by_domain.then_some(domain).filter(|d| !d.is_empty());
        let matches = crm::find_matches(&email, domain.as_deref())?;
        let (port, found) = if let Some(opportunity) = matches.opportunities.into_iter().next() {
            (
                "open-opportunity",
                json!({"opportunity": {
                    "id": opportunity.id, "name": opportunity.name, "account_id": opportunity.account_id,
                    "owner_id": opportunity.owner_id, "stage": opportunity.stage, "amount": opportunity.amount,
                }}),
            )
        } else if let Some(lead) = matches.lead {
            (
                "existing-lead",
                json!({"lead": {"id": lead.id, "owner_id": lead.owner_id, "status": lead.status, "company": lead.company}}),
            )
        } else if let Some(contact) = matches.contact {
            (
                "existing-account",
                json!({"contact": {"id": contact.id, "name": contact.name}, "account": {"id": contact.account_id, "owner_id": contact.owner_id}}),
            )
        } else if let Some(account) = matches.accounts.into_iter().next() {
            (
                "existing-account",
                json!({"account": {"id": account.id, "name": account.name, "owner_id": account.owner_id}}),
            )
        } else {
            ("new", json!({}))
        };
        let mut dedupe = found;
        dedupe["match"] = json!(port);
        item["dedupe"] = dedupe;
        Ok(vec![emit(port, &item)])
    }
}

handoff_plugin::export!(Dedupe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cover_the_event_and_the_contact_per_day() {
        let item = json!({"id": "1001", "event": {"eventId": 3029365631u64, "occurredAt": 1_715_203_101_896i64}});
        assert_eq!(keys(&item, 0), ["event:3029365631", "mql:1001:2024-05-08"]);
        let recycled = json!({"id": "1001", "event": {"name": "lead.recycled", "item": {"recycle": {"count": 2}}}});
        assert_eq!(keys(&recycled, 0), ["recycled:1001:2"]);
        assert_eq!(
            keys(&json!({"id": "7"}), 1_715_203_101_896),
            ["mql:7:2024-05-08"],
            "without an event, today's date"
        );
    }
}
