//! `notify`: tells the owner. A Slack DM with the lead, the company, the
//! summary, why they got it, a link to the Salesforce record, and Accept /
//! Reject (with a reason) buttons; an email backup; a Salesforce task due
//! at the SLA deadline; and for high-priority leads (enterprise size or
//! high intent) a post in the priority channel and a push to the owner's
//! Salesforce mobile app (a custom notification that opens the lead; a
//! push that fails is kept with the lead's step and told to RevOps, and
//! the DM stands). Leads on a queue go to
//! the queue's channel. When the company has an open opportunity, only its
//! owner is told (no buttons, no task).
//!
//! Output on `notified`: the item plus `"notification": {...}`.
//!
//! With `"mode": "update-summary"` it updates a DM it sent to carry the
//! language model's summary, which came after the DM went out (output on
//! `updated`).

use handoff_plugin::contact::{full_name, prop, prop_number};
use handoff_plugin::time::{duration_ms, utc_date};
use handoff_plugin::types::{CustomNotification, Task};
use handoff_plugin::{
    CapabilityError, Describe, Emit, NodeError, Plugin, Run, Value, chat, clock, crm, email, emit, json, log,
};

struct Notify;

/// The engagement summary: `summarize`'s, or the template until it comes.
pub fn summary_text(item: &Value) -> String {
    match item["summary"]["text"].as_str() {
        Some(text) if !text.is_empty() => text.to_string(),
        _ => handoff_plugin::summary::template(item),
    }
}

/// The heads-up to an open opportunity's owner.
fn opportunity_text(item: &Value) -> String {
    let opp = &item["dedupe"]["opportunity"];
    let company = prop(item, "company").unwrap_or("(no company)");
    format!(
        "Heads-up: {} from {company} just became an MQL. {company} has an open opportunity, {} ({}), so no new lead was created. {}",
        full_name(item),
        opp["name"].as_str().unwrap_or_default(),
        opp["stage"].as_str().unwrap_or_default(),
        summary_text(item)
    )
}

/// The rep's message: the fallback text and the Block Kit blocks.
fn owner_message(item: &Value, notification: &Value, reasons: &[(String, String)]) -> (String, String) {
    let lead_id = item["salesforce"]["lead_id"].as_str().unwrap_or_default();
    let url = item["salesforce"]["url"].as_str().unwrap_or_default();
    let accept_within = notification["accept_within"].as_str().unwrap_or("30m");
    let due = notification["task_due"].as_str().unwrap_or_default();
    let why_priority = notification["priority"].as_str();
    let blocks = blocks(item, lead_id, url, accept_within, due, why_priority, reasons).to_string();
    let company = prop(item, "company").unwrap_or("(no company)");
    let mut text = format!("New MQL: {} ({company}). {}", full_name(item), summary_text(item));
    if notification.get("queue_post").is_some() || notification["kind"] == "queue" {
        text = format!("Unassigned MQL for {}: {text}", item["routing"]["owner_name"].as_str().unwrap_or("the queue"));
    }
    (text, blocks)
}

/// `"mode": "update-summary"`: the language model's summary came after
/// the DM went out (a merge's `late` port); the DM (or queue post) is
/// updated in place to carry it.
fn update_summary(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
    let _ = run;
    let notification = item["notification"].clone();
    if item["summary"]["source"] != "llm" {
        item["notification"]["summary_update"] = json!("kept: no model summary to show");
        return Ok(vec![emit("updated", &item)]);
    }
    let message = if notification.get("dm").is_some() { &notification["dm"] } else { &notification["queue_post"] };
    let (Some(channel), Some(ts)) = (message["channel"].as_str(), message["ts"].as_str()) else {
        return Err(NodeError::InvalidInput(
            "no notification.dm or notification.queue_post to update; run notify first".into(),
        ));
    };
    let message = chat::MessageRef { channel: channel.to_string(), ts: ts.to_string() };
    if notification["kind"] == "opportunity-owner" {
        chat::update(&message, &opportunity_text(&item), None)?;
    } else {
        let reasons = handoff_plugin::rejection::from_config(&notification["reject_reasons"]);
        let (text, blocks) = owner_message(&item, &notification, &reasons);
        chat::update(&message, &text, Some(&blocks))?;
    }
    item["notification"]["summary_update"] = json!("updated");
    Ok(vec![emit("updated", &item)])
}

/// The custom notification type a push uses unless the node names one.
pub const PUSH_TYPE: &str = "Handoff_Priority_MQL";

/// The louder paths a high-priority lead takes (`priority.channels`):
/// both by default.
pub fn priority_paths(config: &Value) -> Vec<&str> {
    match config["priority"]["channels"].as_array() {
        Some(paths) => paths.iter().filter_map(Value::as_str).collect(),
        None => vec!["slack_channel", "salesforce_push"],
    }
}

/// A capability error in words.
fn capability_error_text(error: &CapabilityError) -> String {
    match error {
        CapabilityError::Denied(m) => format!("not allowed: {m}"),
        CapabilityError::NotFound(m) | CapabilityError::Invalid(m) | CapabilityError::Unavailable(m) => m.clone(),
    }
}

/// Whether a lead takes the priority path, and why.
pub fn priority(item: &Value, config: &Value) -> Option<String> {
    let p = &config["priority"];
    let employees = prop_number(item, "numemployees").unwrap_or(0.0);
    let score = prop_number(item, "hubspotscore").unwrap_or(0.0);
    let pricing = prop_number(item, "pricing_page_views").unwrap_or(0.0);
    let min = |k: &str, default: f64| p[k].as_f64().unwrap_or(default);
    if employees >= min("min_employees", 1000.0) {
        Some(format!("enterprise account ({} employees)", employees as u64))
    } else if score >= min("min_score", 85.0) {
        Some(format!("high score ({})", score as u64))
    } else if pricing >= min("min_pricing_page_views", 3.0) {
        Some(format!("high intent ({} pricing page views)", pricing as u64))
    } else {
        None
    }
}

fn field(label: &str, value: Option<&str>) -> Option<Value> {
    value.map(|v| json!({"type": "mrkdwn", "text": format!("*{label}*\n{v}")}))
}

/// The Block Kit message for the rep.
pub fn blocks(
    item: &Value,
    lead_id: &str,
    url: &str,
    accept_within: &str,
    due: &str,
    why_priority: Option<&str>,
    reasons: &[(String, String)],
) -> Value {
    let name = full_name(item);
    let summary = summary_text(item);
    let header = match why_priority {
        Some(_) => format!(":rotating_light: Priority MQL: {name}"),
        None => format!("New MQL: {name}"),
    };
    let fields: Vec<Value> = [
        field("Company", prop(item, "company")),
        field("Title", prop(item, "jobtitle")),
        field("Employees", prop(item, "numemployees")),
        field("Country", prop(item, "country")),
        field("Score", prop(item, "hubspotscore")),
        field("Email", item["validation"]["email"].as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let why = item["routing"]["explanation"].as_str().unwrap_or_default();
    let mut list = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": header.chars().take(150).collect::<String>()}}),
        json!({"type": "section", "fields": fields}),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": summary.chars().take(3000).collect::<String>()}}),
    ];
    if let Some(reason) = why_priority {
        list.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Priority: {reason}")}]}));
    }
    list.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Why you: {why}").chars().take(3000).collect::<String>()}]}));
    // The block names the lead by its marketing (HubSpot) id, which is how
    // Handoff's ledger knows it; the buttons carry the CRM id.
    let contact = item["id"].as_str().unwrap_or(lead_id);
    list.push(json!({"type": "actions", "block_id": format!("lead:{contact}"), "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open in Salesforce"}, "action_id": "open_salesforce", "url": url},
        {"type": "button", "text": {"type": "plain_text", "text": "Accept"}, "style": "primary", "action_id": "accept_lead", "value": lead_id},
        handoff_plugin::rejection::select(lead_id, reasons)
    ]}));
    list.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Accept within {accept_within}. Follow-up task due {due}.")}]}));
    Value::Array(list)
}

impl Plugin for Notify {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "notify",
            version: env!("CARGO_PKG_VERSION"),
            description: "Slack DM with Accept/Reject, email backup, Salesforce task due at the SLA deadline, priority channel post and Salesforce mobile push",
            outputs: &["notified", "updated"],
            capabilities: &["chat:write", "email:send", "crm:read", "crm:write"],
            config_schema: include_str!("config.schema.json"),
            lead: r#"{"notified": {"state": "notified", "detail": "told {/notification/to|/notification/queue_post/channel}", "data": "/notification/report"}}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let config = &run.config;
        if config["mode"] == "update-summary" {
            return update_summary(run, item);
        }
        let name = full_name(&item);
        let company = prop(&item, "company").unwrap_or("(no company)").to_string();
        let summary = summary_text(&item);

        if item["dedupe"]["match"] == "open-opportunity" {
            let owner_id = item["dedupe"]["opportunity"]["owner_id"].as_str().unwrap_or_default();
            let owner = crm::get_owner(owner_id)?
                .ok_or_else(|| NodeError::Fatal(format!("opportunity owner {owner_id} not found")))?;
            // Each effect below happens once per execution: the host's
            // effect journal replays it on a retry or a rerun.
            let dm = chat::send_dm(&owner.email, &opportunity_text(&item), None)?;
            let dm = json!({"channel": dm.channel, "ts": dm.ts});
            item["notification"] = json!({"kind": "opportunity-owner", "to": owner.email, "dm": dm});
            return Ok(vec![emit("notified", &item)]);
        }

        let lead_id = item["salesforce"]["lead_id"]
            .as_str()
            .ok_or_else(|| NodeError::InvalidInput("no salesforce.lead_id; run `assign` first".into()))?
            .to_string();
        let url = item["salesforce"]["url"].as_str().unwrap_or_default().to_string();
        let owner_id = item["routing"]["owner_id"].as_str().unwrap_or_default().to_string();
        let owner_email = item["routing"]["owner_email"].as_str().unwrap_or_default().to_string();
        let accept_within = config["accept_within"].as_str().unwrap_or("30m").to_string();
        let sla = config["sla"].as_str().and_then(duration_ms).unwrap_or(4 * 3_600_000);
        let due = utc_date(clock::now() + sla);
        let why_priority = priority(&item, config);
        let reasons = handoff_plugin::rejection::from_config(&run.config["reject_reasons"]);

        // What the health report groups this handoff by (the lead mark keeps it).
        let report = json!({
            "owner": item["routing"]["owner_name"], "team": item["routing"]["team"],
            "source": prop(&item, "hs_analytics_source"), "campaign": prop(&item, "recent_conversion_event_name"),
            "priority": why_priority.is_some(),
        });
        let on_queue = item["routing"]["owner_kind"] == "queue" || owner_email.is_empty();
        let mut notification = json!({"kind": if on_queue { "queue" } else { "owner" }, "priority": why_priority, "task_due": due, "at": clock::now(), "owner_id": owner_id, "report": report,
            "accept_within": accept_within, "reject_reasons": run.config["reject_reasons"]});
        let (text, blocks) = owner_message(&item, &notification, &reasons);
        if on_queue {
            let channel = config["queue_channel"].as_str().unwrap_or("#revops-alerts");
            let posted = chat::post(channel, &text, Some(&blocks))?;
            notification["queue_post"] = json!({"channel": posted.channel, "ts": posted.ts});
        } else {
            let dm = chat::send_dm(&owner_email, &text, Some(&blocks))?;
            notification["dm"] = json!({"channel": dm.channel, "ts": dm.ts});
            notification["to"] = json!(owner_email);
        }
        let task = Task {
            who_id: lead_id.clone(),
            owner_id: owner_id.clone(),
            subject: format!("Follow up on new MQL: {name}"),
            description: Some(format!(
                "{summary}\n\nRouted: {}",
                item["routing"]["explanation"].as_str().unwrap_or_default()
            )),
            due_date: due,
            priority: if why_priority.is_some() { "High".into() } else { "Normal".into() },
        };
        notification["task_id"] = json!(crm::create_task(&task)?);
        if let Some(reason) = &why_priority {
            let owner_name = item["routing"]["owner_name"].as_str().unwrap_or("the owner");
            let paths = priority_paths(config);
            if paths.contains(&"slack_channel") {
                let channel = config["priority"]["channel"].as_str().unwrap_or("#sales-priority");
                let alert = format!(
                    ":rotating_light: Priority MQL ({reason}): {name} at {company}, assigned to *{owner_name}*. <{url}|Open in Salesforce>"
                );
                let posted = chat::post(channel, &alert, None)?;
                notification["priority_post"] = json!({"channel": posted.channel, "ts": posted.ts});
            }
            // A queue has no phone: the push is for an owner.
            if paths.contains(&"salesforce_push") && !on_queue {
                let type_name = config["priority"]["push_type"].as_str().unwrap_or(PUSH_TYPE).to_string();
                let push = CustomNotification {
                    type_name: type_name.clone(),
                    recipient_ids: vec![owner_id.clone()],
                    title: format!("Priority MQL: {company}"),
                    body: format!("{name} at {company}: {reason}. Yours now; accept in Slack or open the lead."),
                    target_id: lead_id.clone(),
                };
                match crm::send_notification(&push) {
                    Ok(()) => notification["push"] = json!({"sent": true, "type": type_name, "to": owner_id}),
                    // Salesforce down: the node's retry (its DM replayed,
                    // not resent) tries the push again.
                    Err(CapabilityError::Unavailable(message)) => return Err(NodeError::Retryable(message)),
                    Err(e) => {
                        // The DM, the task and the channel post went out;
                        // the push's failure is kept with the lead's step
                        // and RevOps hears of it.
                        let problem = capability_error_text(&e);
                        log::log(
                            log::Level::Warn,
                            &format!("the Salesforce push for lead {lead_id} failed: {problem}"),
                        );
                        notification["push"] = json!({"sent": false, "type": type_name, "error": problem});
                        notification["report"]["push_error"] = json!(problem);
                        let channel = config["queue_channel"].as_str().unwrap_or("#revops-alerts");
                        let alert = format!(
                            ":warning: The Salesforce mobile push for priority lead {name} ({company}) to {owner_name} failed: {problem}. The Slack DM and the task went out."
                        );
                        notification["push_alert_posted"] = json!(chat::post(channel, &alert, None).is_ok());
                    }
                }
            }
        }
        // The backup email goes last: the DM, the task and the priority
        // post do not wait on the mail server.
        if notification.get("dm").is_some() && config["email_backup"].as_bool().unwrap_or(true) {
            let html = format!(
                "<p><strong>New MQL: {name}</strong> ({company})</p><p>{summary}</p><p>Why you: {}</p><p><a href=\"{url}\">Open in Salesforce</a>. Accept within {accept_within}.</p>",
                item["routing"]["explanation"].as_str().unwrap_or_default()
            );
            let message = email::Message {
                to: vec![owner_email.clone()],
                cc: vec![],
                subject: format!("New MQL: {name} ({company})"),
                text: format!("{text}\n\nOpen in Salesforce: {url}\nAccept within {accept_within} in Slack."),
                html: Some(html),
            };
            // The DM is the primary channel: a failed backup email is
            // recorded, not fatal.
            notification["email_sent"] = json!(email::send(&message).is_ok());
        }
        item["notification"] = notification;
        Ok(vec![emit("notified", &item)])
    }
}

handoff_plugin::export!(Notify);

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(employees: &str, score: &str, pricing: &str) -> Value {
        json!({"properties": {"firstname": "Ann", "lastname": "Lee", "company": "Acme", "numemployees": employees, "hubspotscore": score, "pricing_page_views": pricing},
               "validation": {"email": "ann@acme.com"}, "summary": {"text": "Ann viewed pricing."}, "routing": {"explanation": "matched emea; chose Lena"}})
    }

    #[test]
    fn priority_is_enterprise_size_or_high_intent() {
        let config = json!({});
        assert_eq!(priority(&lead("5000", "50", "0"), &config).as_deref(), Some("enterprise account (5000 employees)"));
        assert_eq!(priority(&lead("50", "90", "0"), &config).as_deref(), Some("high score (90)"));
        assert_eq!(priority(&lead("50", "60", "4"), &config).as_deref(), Some("high intent (4 pricing page views)"));
        assert_eq!(priority(&lead("50", "60", "1"), &config), None);
        assert_eq!(priority(&lead("5000", "50", "0"), &json!({"priority": {"min_employees": 10000}})), None);
    }

    #[test]
    fn the_dm_has_the_lead_the_reasons_and_the_buttons() {
        let reasons = handoff_plugin::rejection::standard();
        let b = blocks(&lead("50", "60", "1"), "00Q1", "https://sf/00Q1", "30m", "2026-11-25", None, &reasons);
        let text = b.to_string();
        assert!(
            text.contains("New MQL: Ann Lee")
                && text.contains("Ann viewed pricing.")
                && text.contains("Why you: matched emea")
        );
        let actions = b.as_array().unwrap().iter().find(|x| x["type"] == "actions").unwrap();
        let ids: Vec<&str> =
            actions["elements"].as_array().unwrap().iter().map(|e| e["action_id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["open_salesforce", "accept_lead", "reject_lead"]);
        assert_eq!(actions["elements"][2]["options"].as_array().unwrap().len(), reasons.len());
    }
}
