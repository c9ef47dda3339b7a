//! `escalate`: the SLA ladder, and the Slack buttons that stop it.
//!
//! In the SLA pipeline it starts a ladder when a lead is notified (a
//! `lead.notified` event), then runs each step on a durable timer: when a
//! step is due it first looks for activity (a task or event the rep logged
//! on the lead, a worked status, an Accept click) and stops if there is
//! any; otherwise it reminds the rep, tells their manager, hands the lead
//! to the next available rep of the team (through `route`, on port
//! `reassign`, and back here as the handover), or flags it for VP review.
//! A rep who lets `pause_after` leads in a row reach reassignment is paused
//! until they or their manager click Resume.
//!
//! In the Slack interactions pipeline it handles Accept (the lead becomes
//! accepted in the ledger and Salesforce, the ladder stops, the DM says so;
//! a click on a lead already reassigned is told who owns it now) and Resume.

pub mod ladder;

use handoff_plugin::time::utc_date;
use handoff_plugin::types::{ActivityKind, CustomNotification, Task};
use handoff_plugin::{
    CapabilityError, Describe, Emit, NodeError, Plugin, Run, Value, chat, clock, crm, emit, json, roster, schedule,
    state,
};
use ladder::{Action, Config, Person, Sla, Touch};

struct Escalate;

impl Plugin for Escalate {
    type Config = Config;

    fn describe() -> Describe {
        Describe {
            name: "escalate",
            version: env!("CARGO_PKG_VERSION"),
            description: "The SLA ladder on durable timers (reminder, manager, reassignment, VP review), stopped by activity; Accept and Resume in Slack",
            outputs: &[
                "armed",
                "stopped",
                "reminded",
                "escalated",
                "reassign",
                "reassigned",
                "vp-review",
                "accepted",
                "rejected",
                "closed",
                "answered",
                "resumed",
                "other",
            ],
            capabilities: &[
                "crm:read",
                "crm:write",
                "chat:write",
                "roster:read",
                "roster:write",
                "state:read",
                "state:write",
                "schedule:write",
            ],
            config_schema: include_str!("config.schema.json"),
            lead: r#"{
                "stopped": {"state": "contacted", "phase": "settled", "detail": "{/sla/did}", "data": "/sla/touch"},
                "reminded": {"state": "reminded", "phase": "settled", "detail": "{/sla/did}"},
                "escalated": {"state": "escalated", "phase": "settled", "detail": "{/sla/did}"},
                "reassigned": {"state": "reassigned", "phase": "settled", "detail": "{/sla/did}", "owner": "/sla/owner/name"},
                "vp-review": {"state": "vp-review", "phase": "settled", "detail": "{/sla/did}"},
                "accepted": {"state": "accepted", "detail": "{/accept/did}", "data": "/accept"},
                "rejected": {"state": "rejected", "phase": "settled", "detail": "rejected by {/rejection/by}: {/rejection/label}", "data": "/rejection"}
            }"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Config>, item: Value) -> Result<Vec<Emit>, NodeError> {
        if let Some(event) = item.get("event") {
            return match (event["name"].as_str(), event["type"].as_str()) {
                (Some("lead.notified"), _) => start(&run.config, event),
                (_, Some("block_actions")) => click(&run.config, event),
                (_, Some("view_submission")) => submit_note(&run.config, event),
                _ => Ok(vec![emit("other", &item)]),
            };
        }
        let sla: Sla = serde_json::from_value(item["sla"].clone())
            .map_err(|e| NodeError::InvalidInput(format!("expected a ladder (`sla`) in the item: {e}")))?;
        if item.get("routing").is_some() { handover(sla, &item) } else { step(sla) }
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// The current owner of a lead, as the ladder last set it.
fn owner_key(crm_id: &str) -> String {
    format!("owner:{crm_id}")
}

fn accepted_key(crm_id: &str) -> String {
    format!("accepted:{crm_id}")
}

fn rejected_key(crm_id: &str) -> String {
    format!("rejected:{crm_id}")
}

fn breaches_key(rep_id: &str) -> String {
    format!("breaches:{rep_id}")
}

/// A lead was notified: arm its ladder.
fn start(config: &Config, event: &Value) -> Result<Vec<Emit>, NodeError> {
    let item = &event["item"];
    let notification = &item["notification"];
    // Only a rep's own lead runs a ladder: not a queue post, not a heads-up
    // to an opportunity's owner.
    if notification["kind"] != "owner" || notification["dm"].is_null() {
        return Ok(vec![emit("other", event)]);
    }
    let routing = &item["routing"];
    let owner = Person {
        id: text(&routing["owner_id"]),
        name: text(&routing["owner_name"]),
        email: text(&routing["owner_email"]),
        dm_channel: notification["dm"]["channel"].as_str().map(str::to_string),
        since: None,
    };
    let team = match routing["team"].as_str() {
        Some(team) => team.to_string(),
        None => roster::get_rep(&owner.id)?.map(|r| r.team).unwrap_or_default(),
    };
    let properties = &item["properties"];
    let name = [properties["firstname"].as_str(), properties["lastname"].as_str()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let mut sla = Sla {
        lead: text(&event["lead_id"]),
        crm_id: text(&item["salesforce"]["lead_id"]),
        name,
        company: text(&properties["company"]),
        url: text(&item["salesforce"]["url"]),
        summary: text(&item["summary"]["text"]),
        team,
        owners: vec![owner.id.clone()],
        owner,
        assigned_at: notification["at"].as_i64().or_else(|| event["at"].as_i64()).unwrap_or_else(clock::now),
        reassigned_at: None,
        tasks: notification["task_id"].as_str().map(|t| vec![t.to_string()]).unwrap_or_default(),
        next: 0,
        steps: config.steps.clone(),
        business_hours: config.business_hours,
        worked_statuses: config.worked_statuses.clone(),
        pause_after: config.pause_after,
        vp_task: config.vp_task,
        ladder_node: config.ladder_node.clone(),
        queue_channel: config.queue_channel.clone(),
        reasons: config.reasons(),
        push_type: config.push_type.clone(),
        did: String::new(),
        touch: None,
    };
    if sla.crm_id.is_empty() || sla.lead.is_empty() {
        return Err(NodeError::InvalidInput("the notified item names no lead (lead_id, salesforce.lead_id)".into()));
    }
    let mut owner = sla.owner.clone();
    owner.since = Some(sla.assigned_at);
    state::set(&owner_key(&sla.crm_id), &json!(owner).to_string())?;
    schedule_next(&mut sla)?;
    Ok(vec![emit("armed", &json!({"sla": sla}))])
}

/// Sets the timer of the ladder's next step, if there is one.
fn schedule_next(sla: &mut Sla) -> Result<(), NodeError> {
    let Some(step) = sla.steps.get(sla.next) else { return Ok(()) };
    let base = sla.base(sla.next);
    // A queue keeps no hours: its steps count from the rep it came from.
    let clock_of = if sla.owner.is_queue() { sla.owners.iter().rev().nth(1) } else { Some(&sla.owner.id) };
    let due = match clock_of {
        Some(rep) if sla.business_hours => roster::working_time_after(rep, base, step.after_ms())?,
        _ => base + step.after_ms(),
    };
    let payload = json!({"sla": sla, "label": sla.label(sla.next)});
    schedule::at(due, &sla.ladder_node, &payload.to_string(), Some(&sla.timer_key()))?;
    Ok(())
}

/// What stopped a ladder.
enum Activity {
    /// The lead was accepted in Slack (and is `accepted` already).
    Accepted(String),
    /// The rep touched the lead: in words, and when (host clock, ms).
    Touched(String, i64),
}

/// The Accept recorded for this ladder, if any: one from before the
/// ladder started belongs to an earlier handoff of the same CRM lead.
fn accepted_since(crm_id: &str, since: i64) -> Result<Option<Value>, NodeError> {
    marker_since(&accepted_key(crm_id), since)
}

/// A marker (`{"at", ...}`) stored at `key` at or after `since`.
fn marker_since(key: &str, since: i64) -> Result<Option<Value>, NodeError> {
    let Some(marker) = state::get(key)? else { return Ok(None) };
    let marker: Value = serde_json::from_str(&marker).unwrap_or_default();
    Ok(marker["at"].as_i64().is_some_and(|at| at >= since).then_some(marker))
}

/// The rep's first own activity on the lead since the clock started, a
/// worked status, or an Accept; none when the lead is untouched.
fn activity(sla: &Sla) -> Result<Option<Activity>, NodeError> {
    if let Some(accepted) = accepted_since(&sla.crm_id, sla.assigned_at)? {
        return Ok(Some(Activity::Accepted(format!("accepted by {} in Slack", text(&accepted["by"])))));
    }
    if let Some(rejected) = marker_since(&rejected_key(&sla.crm_id), sla.assigned_at)? {
        return Ok(Some(Activity::Accepted(format!("rejected by {} in Slack", text(&rejected["by"])))));
    }
    let since = sla.reassigned_at.unwrap_or(sla.assigned_at);
    let touches: Vec<Touch> = crm::list_activities(&sla.crm_id, since)?
        .into_iter()
        .map(|a| Touch {
            id: a.id,
            kind: if a.kind == ActivityKind::Event { "event" } else { "task" },
            subject: a.subject,
            at: a.created_at,
        })
        .collect();
    if let Some(touch) = ladder::first_touch(&touches, &sla.tasks, since) {
        let at = touch.at;
        return Ok(Some(Activity::Touched(
            format!(
                "{} logged a {} '{}' at {}, {} after assignment",
                sla.owner.name,
                touch.kind,
                touch.subject,
                ladder::clock_time(touch.at),
                ladder::span(touch.at - since)
            ),
            at,
        )));
    }
    if let Some(lead) = crm::get_lead(&sla.crm_id)?
        && let Some(status) = lead.status.filter(|s| sla.worked_statuses.contains(s))
    {
        return Ok(Some(Activity::Touched(format!("the lead's status is '{status}'"), clock::now())));
    }
    Ok(None)
}

/// A ladder step is due.
fn step(mut sla: Sla) -> Result<Vec<Emit>, NodeError> {
    let Some(step) = sla.steps.get(sla.next).cloned() else { return Ok(Vec::new()) };
    match activity(&sla)? {
        // The rep is on it: the ladder stops, and their run of breaches too.
        Some(Activity::Touched(touched, at)) => {
            state::set(&breaches_key(&sla.owner.id), "0")?;
            sla.did = format!("SLA met: {touched}");
            sla.touch = Some(json!({"at": at, "what": touched}));
            return Ok(vec![emit("stopped", &json!({"sla": sla}))]);
        }
        // Accepted in Slack: the lead is `accepted` already, and stays so
        // (this port marks no state).
        Some(Activity::Accepted(accepted)) => {
            sla.did = format!("SLA met: {accepted}");
            return Ok(vec![emit("closed", &json!({"sla": sla}))]);
        }
        None => {}
    }
    // The step's own threshold, not the time on the clock now: a rerun of
    // this step (after a crash, or waiting out a Slack outage) must send
    // the same words, which is how its DM is recognised as sent already.
    let waited = if sla.business_hours {
        format!("{} of working time", ladder::span(step.after_ms()))
    } else {
        ladder::span(step.after_ms())
    };
    let port = match step.action {
        Action::Remind => {
            let text = format!(
                ":hourglass: Reminder: *{}* ({}) has waited {waited} for you. Accept it or log your first touch in Salesforce.",
                sla.name, sla.company
            );
            let sent = chat::send_dm(&sla.owner.email, &text, Some(&ladder::with_buttons(&sla, &text).to_string()))?;
            sla.owner.dm_channel = Some(sent.channel);
            sla.did = format!("{} reminded after {waited} without activity", sla.owner.name);
            if step.push {
                let (owner, title) = (sla.owner.id.clone(), format!("Reminder: {}", sla.company));
                push(&mut sla, &owner, &title, &text)?;
            }
            "reminded"
        }
        Action::NotifyManager => {
            let manager = manager_of(&sla.owner.id)?;
            match &manager {
                Some(manager) => {
                    let text = format!(
                        ":warning: {} has not touched *{}* ({}) in {waited}. <{}|Open in Salesforce>",
                        sla.owner.name, sla.name, sla.company, sla.url
                    );
                    chat::send_dm(&manager.email, &text, None)?;
                    sla.did =
                        format!("{}'s manager {} told after {waited} without activity", sla.owner.name, manager.name);
                    if step.push {
                        let title = format!("Untouched lead: {}", sla.company);
                        push(&mut sla, &manager.id, &title, &text)?;
                    }
                }
                None => sla.did = format!("{} has no manager on the roster to tell", sla.owner.name),
            }
            "escalated"
        }
        Action::Reassign => {
            sla.next += 1;
            let reassign = json!({"team": sla.team, "exclude": sla.owners, "from": sla.owner.name, "after": waited});
            return Ok(vec![emit("reassign", &json!({"sla": sla, "reassign": reassign}))]);
        }
        Action::VpReview => {
            // The VP above the lead's owner, or, for a lead gone to a
            // queue, above the rep it was first assigned to.
            let mut vp = None;
            for id in std::iter::once(&sla.owner.id).chain(sla.owners.first()) {
                if let Some(manager) = manager_of(id)? {
                    vp = manager_of(&manager.id)?;
                    break;
                }
            }
            match &vp {
                Some(vp) => {
                    let text = format!(
                        ":rotating_light: VP review: *{}* ({}) is still untouched {waited} after being reassigned to {}. <{}|Open in Salesforce>",
                        sla.name, sla.company, sla.owner.name, sla.url
                    );
                    chat::send_dm(&vp.email, &text, None)?;
                    if sla.vp_task {
                        let task = Task {
                            who_id: sla.crm_id.clone(),
                            owner_id: vp.id.clone(),
                            subject: format!("VP review: {} untouched {waited} after reassignment", sla.name),
                            description: Some(format!("Owned by {}. {}", sla.owner.name, sla.summary)),
                            due_date: utc_date(clock::now()),
                            priority: "High".into(),
                        };
                        sla.tasks.push(crm::create_task(&task)?);
                    }
                    sla.did = format!("flagged for VP review by {} ({waited} after reassignment)", vp.name);
                    if step.push {
                        let title = format!("VP review: {}", sla.company);
                        push(&mut sla, &vp.id, &title, &text)?;
                    }
                }
                None => sla.did = format!("no VP on the roster above {}'s manager", sla.owner.name),
            }
            "vp-review"
        }
    };
    sla.next += 1;
    schedule_next(&mut sla)?;
    Ok(vec![emit(port, &json!({"sla": sla}))])
}

/// The rep whose email's local part is this Slack handle (how Slack's
/// `user.name` reads for workspaces that sign in with company email).
fn rep_by_slack_handle(handle: &str) -> Result<Option<Person>, NodeError> {
    if handle.is_empty() {
        return Ok(None);
    }
    for team in roster::teams()? {
        for id in team.members {
            if let Some(rep) = roster::get_rep(&id)?
                && rep.email.split('@').next() == Some(handle)
            {
                return Ok(Some(Person {
                    id: rep.id,
                    name: rep.name,
                    email: rep.email,
                    dm_channel: None,
                    since: None,
                }));
            }
        }
    }
    Ok(None)
}

/// The manager of a rep (or of a manager: their VP), from the roster.
/// Pushes `text` to `to`'s Salesforce mobile app about the lead. A push
/// Salesforce refuses is noted in what the step did, never fatal: the DM
/// went out; one it cannot take now makes the step retry (its DM replayed).
fn push(sla: &mut Sla, to: &str, title: &str, text: &str) -> Result<(), NodeError> {
    let notification = CustomNotification {
        type_name: sla.push_type.clone(),
        recipient_ids: vec![to.to_string()],
        title: title.to_string(),
        body: text.replace('*', ""),
        target_id: sla.crm_id.clone(),
    };
    match crm::send_notification(&notification) {
        Ok(()) => sla.did.push_str("; pushed to the Salesforce app"),
        Err(CapabilityError::Unavailable(message)) => return Err(NodeError::Retryable(message)),
        Err(CapabilityError::Denied(m) | CapabilityError::NotFound(m) | CapabilityError::Invalid(m)) => {
            sla.did.push_str(&format!("; the Salesforce push failed: {m}"));
        }
    }
    Ok(())
}

fn manager_of(id: &str) -> Result<Option<Person>, NodeError> {
    let Some(manager_id) = roster::get_rep(id)?.and_then(|r| r.manager_id) else { return Ok(None) };
    Ok(roster::get_rep(&manager_id)?.map(|m| Person {
        id: m.id,
        name: m.name,
        email: m.email,
        dm_channel: None,
        since: None,
    }))
}

/// `route` chose the next owner: hand the lead over.
fn handover(mut sla: Sla, item: &Value) -> Result<Vec<Emit>, NodeError> {
    let routing = &item["routing"];
    let previous = sla.owner.clone();
    let next = Person {
        id: text(&routing["owner_id"]),
        name: text(&routing["owner_name"]),
        email: text(&routing["owner_email"]),
        dm_channel: None,
        since: None,
    };
    let after = text(&item["reassign"]["after"]);
    crm::assign_owner(&sla.crm_id, &next.id)?;
    // Salesforce does not let a queue own a task: the first owner's task
    // stays theirs until someone takes the lead from the queue.
    if let Some(task) = sla.tasks.first()
        && !next.is_queue()
    {
        crm::update_task(task, &json!({"OwnerId": next.id}).to_string())?;
    }
    sla.owner = next.clone();
    if next.is_queue() {
        // Nobody on the team could take it: the queue's channel hears.
        let text = format!(
            ":inbox_tray: *{}* ({}) needs an owner: {} did not respond within {after} and nobody else on the team is available.",
            sla.name, sla.company, previous.name
        );
        let posted = chat::post(&sla.queue_channel, &text, Some(&ladder::with_buttons(&sla, &text).to_string()))?;
        sla.owner.dm_channel = Some(posted.channel);
    } else {
        let text = format!(
            ":arrows_counterclockwise: *{}* ({}) is yours: reassigned from {} after {after} without a response.\n{}",
            sla.name, sla.company, previous.name, sla.summary
        );
        let sent = chat::send_dm(&next.email, &text, Some(&ladder::with_buttons(&sla, &text).to_string()))?;
        sla.owner.dm_channel = Some(sent.channel);
    }
    let manager = manager_of(&previous.id)?;
    if let Some(manager) = &manager {
        let text = format!(
            ":arrows_counterclockwise: *{}* ({}) was reassigned from {} to {} after {after} without activity.",
            sla.name, sla.company, previous.name, next.name
        );
        chat::send_dm(&manager.email, &text, None)?;
    }
    sla.did = format!("reassigned from {} to {} after {after} without activity", previous.name, next.name);
    // A rep who lets leads reach reassignment again and again stops
    // getting new ones until they, or their manager, say otherwise.
    let breaches = state::increment(&breaches_key(&previous.id), 1)?;
    if sla.pause_after > 0 && breaches >= i64::from(sla.pause_after) {
        let reason = format!("{breaches} leads in a row reached reassignment");
        roster::pause(&previous.id, &reason)?;
        let text = format!(
            ":pause_button: {} gets no new leads: {reason}. Click Resume when they are ready to take leads again.",
            previous.name
        );
        chat::send_dm(&previous.email, &text, Some(&ladder::resume_blocks(&previous, &text).to_string()))?;
        if let Some(manager) = &manager {
            chat::send_dm(&manager.email, &text, Some(&ladder::resume_blocks(&previous, &text).to_string()))?;
        }
        sla.did.push_str(&format!("; {} paused ({reason})", previous.name));
    }
    sla.owners.push(next.id.clone());
    sla.reassigned_at = Some(clock::now());
    let mut owner = sla.owner.clone();
    owner.since = Some(sla.assigned_at);
    state::set(&owner_key(&sla.crm_id), &json!(owner).to_string())?;
    schedule_next(&mut sla)?;
    Ok(vec![emit("reassigned", &json!({"sla": sla}))])
}

/// A button in Slack was clicked.
fn click(config: &Config, payload: &Value) -> Result<Vec<Emit>, NodeError> {
    let action = &payload["actions"][0];
    let message = chat::MessageRef {
        channel: payload["channel"]["id"]
            .as_str()
            .or_else(|| payload["container"]["channel_id"].as_str())
            .unwrap_or_default()
            .to_string(),
        ts: payload["container"]["message_ts"]
            .as_str()
            .or_else(|| payload["message"]["ts"].as_str())
            .unwrap_or_default()
            .to_string(),
    };
    let blocks = &payload["message"]["blocks"];
    let now = ladder::clock_time(clock::now());
    match action["action_id"].as_str() {
        Some("accept_lead") => accept(config, action, &message, blocks, &now, payload),
        Some(id @ ("reject_lead" | "reject_reason")) => {
            let source = if id == "reject_reason" { "salesforce" } else { "slack" };
            reject(config, action, &message, blocks, &now, payload, source)
        }
        Some("resume_rep") => {
            let rep = text(&action["value"]);
            roster::resume(&rep)?;
            state::set(&breaches_key(&rep), "0")?;
            let by = text(&payload["user"]["name"]);
            let line = format!(":arrow_forward: Resumed by {by} at {now}: leads flow again.");
            chat::update(&message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
            Ok(vec![emit("resumed", &json!({"rep": rep, "by": by}))])
        }
        _ => Ok(vec![emit("other", &json!({"event": payload}))]),
    }
}

/// Accept: the lead is the rep's (unless it was reassigned meanwhile).
fn accept(
    config: &Config,
    action: &Value,
    message: &chat::MessageRef,
    blocks: &Value,
    now: &str,
    payload: &Value,
) -> Result<Vec<Emit>, NodeError> {
    let crm_id = text(&action["value"]);
    let lead = action["block_id"].as_str().and_then(|b| b.strip_prefix("lead:")).unwrap_or_default().to_string();
    let mut owner: Option<Person> = state::get(&owner_key(&crm_id))?.and_then(|o| serde_json::from_str(&o).ok());
    let trigger = text(&payload["trigger_id"]);
    let since = owner.as_ref().and_then(|o| o.since).unwrap_or(i64::MIN);
    // An Accept of this handoff by another click; this click's own marker
    // (written by an earlier attempt of this run) goes on down the path.
    if let Some(accepted) = accepted_since(&crm_id, since)?
        && accepted["trigger"] != trigger.as_str()
    {
        let line = format!("Already accepted by {} at {}.", text(&accepted["by"]), text(&accepted["at_text"]));
        chat::update(message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
        return Ok(vec![emit("answered", &json!({"lead": lead, "answer": line}))]);
    }
    if let Some(rejected) = marker_since(&rejected_key(&crm_id), since)? {
        let line = format!("Already rejected by {} ({}).", text(&rejected["by"]), text(&rejected["label"]));
        chat::update(message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
        return Ok(vec![emit("answered", &json!({"lead": lead, "answer": line}))]);
    }
    // The click came from a DM; a DM channel is one person's. A click in a
    // DM that is not the current owner's is a lead reassigned meanwhile.
    if let Some(owner) = &owner
        && owner.dm_channel.as_deref().is_some_and(|c| c != message.channel)
    {
        let line = format!(
            ":arrows_counterclockwise: This lead was reassigned and now belongs to {}; it can no longer be accepted here.",
            owner.name
        );
        chat::update(message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
        return Ok(vec![emit("answered", &json!({"lead": lead, "answer": line}))]);
    }
    // A lead waiting in the queue goes to whoever takes it there.
    if let Some(queue) = owner.clone().filter(Person::is_queue) {
        let handle = text(&payload["user"]["name"]);
        let Some(taker) = rep_by_slack_handle(&handle)? else {
            let line = format!(
                "@{handle} is not a rep on the roster, so the lead stays in {}; take it in Salesforce.",
                queue.name
            );
            chat::update(message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
            return Ok(vec![emit("answered", &json!({"lead": lead, "answer": line}))]);
        };
        crm::assign_owner(&crm_id, &taker.id)?;
        let taker = Person { dm_channel: Some(message.channel.clone()), since: queue.since, ..taker };
        state::set(&owner_key(&crm_id), &json!(taker).to_string())?;
        owner = Some(taker);
    }
    let by = owner.as_ref().map_or_else(|| text(&payload["user"]["name"]), |o| o.name.clone());
    crm::update_lead(&crm_id, &json!({"Status": config.accept_status}).to_string())?;
    let at = clock::now();
    let marker = json!({"by": by, "at": at, "at_text": now, "trigger": trigger});
    state::set(&accepted_key(&crm_id), &marker.to_string())?;
    schedule::cancel_key(&format!("sla:{crm_id}"))?;
    if let Some(owner) = &owner {
        state::set(&breaches_key(&owner.id), "0")?;
    }
    let line = format!(":white_check_mark: Accepted by {by} at {now}");
    chat::update(message, &line, Some(&ladder::settled_blocks(blocks, &line).to_string()))?;
    let did = format!("accepted by {by} in Slack at {now}");
    Ok(vec![emit("accepted", &json!({"lead": lead, "crm_id": crm_id, "accept": {"by": by, "at": at, "did": did}}))])
}

/// A reason picked in a Reject menu (`<crm id>:<code>` in the option's
/// value): the lead goes back to marketing. "Other" first asks for a note.
fn reject(
    config: &Config,
    action: &Value,
    message: &chat::MessageRef,
    blocks: &Value,
    now: &str,
    payload: &Value,
    source: &str,
) -> Result<Vec<Emit>, NodeError> {
    let value = text(&action["selected_option"]["value"]);
    let Some((crm_id, code)) = value.rsplit_once(':') else {
        return Err(NodeError::InvalidInput(format!("a Reject option's value reads <crm id>:<code>, not '{value}'")));
    };
    let lead = action["block_id"].as_str().and_then(|b| b.strip_prefix("lead:")).unwrap_or_default().to_string();
    let owner: Option<Person> = state::get(&owner_key(crm_id))?.and_then(|o| serde_json::from_str(&o).ok());
    let since = owner.as_ref().and_then(|o| o.since).unwrap_or(i64::MIN);
    if let Some(answer) = settled_already(crm_id, since, owner.as_ref(), message)? {
        chat::update(message, &answer, Some(&ladder::settled_blocks(blocks, &answer).to_string()))?;
        return Ok(vec![emit("answered", &json!({"lead": lead, "answer": answer}))]);
    }
    let by = text(&payload["user"]["name"]);
    let by_name = owner.as_ref().filter(|o| !o.is_queue()).map_or_else(|| by.clone(), |o| o.name.clone());
    if code == handoff_plugin::rejection::OTHER {
        let metadata = json!({"lead": lead, "crm_id": crm_id, "channel": message.channel, "ts": message.ts,
                              "by": by_name, "source": source});
        chat::open_view(&text(&payload["trigger_id"]), &note_view(&metadata).to_string())?;
        return Ok(vec![emit("answered", &json!({"lead": lead, "answer": "asked for a note"}))]);
    }
    let label = config.reasons().into_iter().find(|(c, _)| c == code).map_or_else(|| code.to_string(), |(_, l)| l);
    let rejection =
        Rejection { lead, crm_id: crm_id.to_string(), code: code.to_string(), label, note: None, by: by_name, source };
    finish_rejection(config, &rejection, message, Some(blocks), now)
}

/// What a rejection carries to the recycle pipeline.
struct Rejection<'a> {
    lead: String,
    crm_id: String,
    code: String,
    label: String,
    note: Option<String>,
    by: String,
    source: &'a str,
}

/// Why a click on a lead can no longer act, if it cannot: accepted or
/// rejected already in this handoff, or now someone else's.
fn settled_already(
    crm_id: &str,
    since: i64,
    owner: Option<&Person>,
    message: &chat::MessageRef,
) -> Result<Option<String>, NodeError> {
    if let Some(accepted) = accepted_since(crm_id, since)? {
        return Ok(Some(format!("Already accepted by {} at {}.", text(&accepted["by"]), text(&accepted["at_text"]))));
    }
    if let Some(rejected) = marker_since(&rejected_key(crm_id), since)? {
        return Ok(Some(format!("Already rejected by {} ({}).", text(&rejected["by"]), text(&rejected["label"]))));
    }
    if let Some(owner) = owner
        && owner.dm_channel.as_deref().is_some_and(|c| c != message.channel)
    {
        return Ok(Some(format!(
            ":arrows_counterclockwise: This lead was reassigned and now belongs to {}; it can no longer be changed here.",
            owner.name
        )));
    }
    Ok(None)
}

/// The modal that asks why, for "Other".
fn note_view(metadata: &Value) -> Value {
    json!({
        "type": "modal",
        "callback_id": "reject_note",
        "private_metadata": metadata.to_string(),
        "title": {"type": "plain_text", "text": "Reject lead"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "input", "block_id": "note", "label": {"type": "plain_text", "text": "Why is it not a fit for sales?"},
             "element": {"type": "plain_text_input", "action_id": "note", "multiline": true, "max_length": 500}}
        ]
    })
}

/// The "Other" modal was submitted: reject with its note.
fn submit_note(config: &Config, payload: &Value) -> Result<Vec<Emit>, NodeError> {
    let view = &payload["view"];
    if view["callback_id"] != "reject_note" {
        return Ok(vec![emit("other", &json!({"event": payload}))]);
    }
    let metadata: Value = serde_json::from_str(view["private_metadata"].as_str().unwrap_or("{}")).unwrap_or_default();
    let note = text(&view["state"]["values"]["note"]["note"]["value"]).trim().chars().take(500).collect::<String>();
    let message = chat::MessageRef { channel: text(&metadata["channel"]), ts: text(&metadata["ts"]) };
    let rejection = Rejection {
        lead: text(&metadata["lead"]),
        crm_id: text(&metadata["crm_id"]),
        code: handoff_plugin::rejection::OTHER.into(),
        label: handoff_plugin::rejection::label(handoff_plugin::rejection::OTHER)
            .trim_end_matches(" (add a note)")
            .into(),
        note: (!note.is_empty()).then_some(note),
        by: text(&metadata["by"]),
        source: if metadata["source"] == "salesforce" { "salesforce" } else { "slack" },
    };
    let now = ladder::clock_time(clock::now());
    finish_rejection(config, &rejection, &message, None, &now)
}

/// Records a rejection: Salesforce status and reason, the ladder stopped,
/// the DM updated; the `rejected` item starts the recycle pipeline.
fn finish_rejection(
    config: &Config,
    rejection: &Rejection,
    message: &chat::MessageRef,
    blocks: Option<&Value>,
    now: &str,
) -> Result<Vec<Emit>, NodeError> {
    let Rejection { lead, crm_id, code, label, note, by, source } = rejection;
    let mut fields = json!({ config.reason_field.clone(): label });
    if *source == "slack" {
        fields["Status"] = json!(config.reject_status);
    }
    crm::update_lead(crm_id, &fields.to_string())?;
    let at = clock::now();
    let marker = json!({"by": by, "label": label, "at": at});
    state::set(&rejected_key(crm_id), &marker.to_string())?;
    schedule::cancel_key(&format!("sla:{crm_id}"))?;
    let line = match note {
        Some(note) => {
            format!(":leftwards_arrow_with_hook: Rejected by {by} at {now}: {label} ({note}). Back to marketing.")
        }
        None => format!(":leftwards_arrow_with_hook: Rejected by {by} at {now}: {label}. Back to marketing."),
    };
    let settled = match blocks {
        Some(blocks) => ladder::settled_blocks(blocks, &line),
        None => json!([{"type": "section", "text": {"type": "mrkdwn", "text": line}}]),
    };
    chat::update(message, &line, Some(&settled.to_string()))?;
    let rejection =
        json!({"reason": code, "label": label, "note": note, "by": by, "source": source, "at": at, "crm_id": crm_id});
    Ok(vec![emit("rejected", &json!({"lead": lead, "crm_id": crm_id, "rejection": rejection}))])
}

handoff_plugin::export!(Escalate);
