//! The ladder as plain data and functions: config, the state a ladder
//! carries from step to step (in its timers' payloads), due times, what
//! counts as activity, and the words and blocks of its messages. Tested
//! natively; `lib.rs` is the glue to the host.

use handoff_plugin::time::duration_ms;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What a step does when it is due and the lead has had no activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A reminder DM to the rep.
    Remind,
    /// A DM to the rep's manager.
    NotifyManager,
    /// The next available rep of the team gets the lead.
    Reassign,
    /// A DM to the VP and a task for them on the lead.
    VpReview,
}

/// Where a step's clock starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum From {
    /// When the lead was assigned.
    #[default]
    Assignment,
    /// When it was last reassigned (assignment if never).
    Reassignment,
}

/// One rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// `30m`, `2h`, `1d`.
    pub after: String,
    /// Where its clock starts.
    #[serde(default)]
    pub from: From,
    /// What it does.
    pub action: Action,
    /// Also push the step's message to the person it tells (the rep, the
    /// manager, the VP) through the Salesforce mobile app.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub push: bool,
}

impl Step {
    /// The step's delay in milliseconds.
    pub fn after_ms(&self) -> i64 {
        duration_ms(&self.after).unwrap_or(0)
    }
}

fn default_steps() -> Vec<Step> {
    let step = |after: &str, from, action| Step { after: after.into(), from, action, push: false };
    vec![
        step("30m", From::Assignment, Action::Remind),
        step("2h", From::Assignment, Action::NotifyManager),
        step("4h", From::Assignment, Action::Reassign),
        step("24h", From::Reassignment, Action::VpReview),
    ]
}

fn default_worked() -> Vec<String> {
    ["Working - Contacted", "Qualified", "Unqualified"].map(String::from).to_vec()
}

fn default_accept_status() -> String {
    "Working - Contacted".into()
}

fn default_pause_after() -> u32 {
    3
}

fn yes() -> bool {
    true
}

fn default_ladder_node() -> String {
    "ladder".into()
}

/// The node config RevOps edits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The ladder.
    #[serde(default = "default_steps")]
    pub steps: Vec<Step>,
    /// Count only the rep's working hours.
    #[serde(default)]
    pub business_hours: bool,
    /// Lead statuses that count as worked.
    #[serde(default = "default_worked")]
    pub worked_statuses: Vec<String>,
    /// The status Accept sets.
    #[serde(default = "default_accept_status")]
    pub accept_status: String,
    /// Reassignments in a row before a rep is paused; 0: never.
    #[serde(default = "default_pause_after")]
    pub pause_after: u32,
    /// VP review creates a task for the VP.
    #[serde(default = "yes")]
    pub vp_task: bool,
    /// The node that runs ladder steps.
    #[serde(default = "default_ladder_node")]
    pub ladder_node: String,
    /// Where a lead reassigned to a queue (nobody available) is posted.
    #[serde(default = "default_queue_channel")]
    pub queue_channel: String,
    /// The Reject menu (code, label); the standard picklist when empty.
    #[serde(default)]
    pub reject_reasons: Vec<RejectReason>,
    /// The Salesforce lead status a rejection in Slack sets.
    #[serde(default = "default_reject_status")]
    pub reject_status: String,
    /// The Salesforce lead field that holds the rejection reason.
    #[serde(default = "default_reason_field")]
    pub reason_field: String,
    /// The custom notification type steps with `push` use.
    #[serde(default = "default_push_type")]
    pub push_type: String,
}

fn default_push_type() -> String {
    "Handoff_Priority_MQL".into()
}

/// One entry of the Reject menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectReason {
    /// Stable code (`timing`).
    pub code: String,
    /// What the menu shows.
    #[serde(default)]
    pub label: Option<String>,
}

impl Config {
    /// The Reject menu as (code, label) pairs.
    pub fn reasons(&self) -> Vec<(String, String)> {
        if self.reject_reasons.is_empty() {
            return handoff_plugin::rejection::standard();
        }
        self.reject_reasons
            .iter()
            .map(|r| {
                let label = r.label.clone().unwrap_or_else(|| handoff_plugin::rejection::label(&r.code).to_string());
                (r.code.clone(), label)
            })
            .collect()
    }
}

fn default_reject_status() -> String {
    "Closed - Not Converted".into()
}

fn default_reason_field() -> String {
    "Rejection_Reason__c".into()
}

fn default_queue_channel() -> String {
    "#revops-alerts".into()
}

/// A person the ladder talks to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// CRM user id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// Their email (how Slack finds them).
    pub email: String,
    /// Their DM channel with Handoff, once one was sent (for a queue, the
    /// channel its post went to).
    #[serde(default)]
    pub dm_channel: Option<String>,
    /// When the ladder this person owns the lead under started (host
    /// clock): an Accept recorded before it belongs to an earlier handoff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

impl Person {
    /// Whether this owner is a queue rather than a person (nobody on the
    /// team could take the lead).
    pub fn is_queue(&self) -> bool {
        self.email.is_empty()
    }
}

/// A running ladder: what each step needs, carried in the payload of the
/// timer that runs it (and snapshotting the config it started with, so a
/// ladder runs by the rules it started under).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sla {
    /// The marketing (HubSpot) contact id: the ledger's lead id.
    pub lead: String,
    /// The CRM lead id.
    pub crm_id: String,
    /// The contact's name.
    pub name: String,
    /// The company.
    pub company: String,
    /// Link to the CRM record.
    pub url: String,
    /// The engagement summary the first DM had.
    pub summary: String,
    /// The team reassignments pick from.
    pub team: String,
    /// Who owns the lead now.
    pub owner: Person,
    /// Everyone who has owned it (left out of reassignments).
    pub owners: Vec<String>,
    /// When it was assigned (host clock, ms).
    pub assigned_at: i64,
    /// When it was last reassigned.
    #[serde(default)]
    pub reassigned_at: Option<i64>,
    /// Tasks Handoff made on the lead (not the rep's activity).
    #[serde(default)]
    pub tasks: Vec<String>,
    /// The index of the step due next.
    pub next: usize,
    /// The ladder's steps.
    pub steps: Vec<Step>,
    /// Working hours only.
    pub business_hours: bool,
    /// Statuses that count as worked.
    pub worked_statuses: Vec<String>,
    /// Reassignments in a row before a pause.
    pub pause_after: u32,
    /// VP review creates a task.
    pub vp_task: bool,
    /// The node timers go to.
    pub ladder_node: String,
    /// Where a lead reassigned to a queue is posted.
    #[serde(default = "default_queue_channel")]
    pub queue_channel: String,
    /// The Reject menu on the ladder's messages.
    #[serde(default = "handoff_plugin::rejection::standard")]
    pub reasons: Vec<(String, String)>,
    /// The custom notification type pushing steps use.
    #[serde(default = "default_push_type")]
    pub push_type: String,
    /// What the last step did, in words (the lead's timeline).
    #[serde(default)]
    pub did: String,
    /// The rep's first touch, when a step found one: `{"at", "what"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touch: Option<serde_json::Value>,
}

impl Sla {
    /// Where step `index`'s clock starts.
    pub fn base(&self, index: usize) -> i64 {
        match self.steps.get(index).map(|s| s.from) {
            Some(From::Reassignment) => self.reassigned_at.unwrap_or(self.assigned_at),
            _ => self.assigned_at,
        }
    }

    /// The timer key of this lead's ladder: one pending step at a time.
    pub fn timer_key(&self) -> String {
        format!("sla:{}", self.crm_id)
    }

    /// What the timer for step `index` is called on the timeline.
    pub fn label(&self, index: usize) -> String {
        let Some(step) = self.steps.get(index) else { return String::new() };
        let what = match step.action {
            Action::Remind => format!("reminder to {}", self.owner.name),
            Action::NotifyManager => format!("tell {}'s manager", self.owner.name),
            Action::Reassign => format!("reassign from {}", self.owner.name),
            Action::VpReview => "VP review".into(),
        };
        let from = match step.from {
            From::Assignment => "after assignment",
            From::Reassignment => "after reassignment",
        };
        format!("SLA {} {from}: {what}", step.after)
    }
}

/// An activity on the lead, as the CRM reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Touch {
    /// The activity's id.
    pub id: String,
    /// `task` or `event`.
    pub kind: &'static str,
    /// Its subject.
    pub subject: String,
    /// When it was logged.
    pub at: i64,
}

/// The first activity that is the rep's own (not a task Handoff made),
/// logged after `since`.
pub fn first_touch<'a>(touches: &'a [Touch], handoff_tasks: &[String], since: i64) -> Option<&'a Touch> {
    touches.iter().filter(|t| t.at >= since && !handoff_tasks.contains(&t.id)).min_by_key(|t| t.at)
}

/// `15:10 UTC` from milliseconds since the epoch.
pub fn clock_time(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02} UTC", minutes / 60, minutes % 60)
}

/// `45 min`, `2 h`, `1 d 4 h` for a span of milliseconds.
pub fn span(ms: i64) -> String {
    if ms < 60_000 {
        return format!("{} s", ms.max(0) / 1000);
    }
    let minutes = ms / 60_000;
    match (minutes / 1440, minutes % 1440 / 60, minutes % 60) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

/// The Accept button and the lead link, in the block naming the lead.
pub fn lead_actions(sla: &Sla) -> Value {
    json!({"type": "actions", "block_id": format!("lead:{}", sla.lead), "elements": [
        {"type": "button", "text": {"type": "plain_text", "text": "Open in Salesforce"}, "action_id": "open_salesforce", "url": sla.url},
        {"type": "button", "text": {"type": "plain_text", "text": "Accept"}, "style": "primary", "action_id": "accept_lead", "value": sla.crm_id},
        handoff_plugin::rejection::select(&sla.crm_id, &sla.reasons)
    ]})
}

/// A message of one section and the lead's buttons.
pub fn with_buttons(sla: &Sla, text: &str) -> Value {
    json!([{"type": "section", "text": {"type": "mrkdwn", "text": text}}, lead_actions(sla)])
}

/// The Resume button sent to a paused rep and their manager.
pub fn resume_blocks(rep: &Person, text: &str) -> Value {
    json!([
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "actions", "block_id": format!("rep:{}", rep.id), "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Resume"}, "style": "primary", "action_id": "resume_rep", "value": rep.id}
        ]}
    ])
}

/// A message's blocks with its buttons replaced by a line saying what
/// happened (`Accepted by X at T`).
pub fn settled_blocks(blocks: &Value, line: &str) -> Value {
    let mut kept: Vec<Value> =
        blocks.as_array().into_iter().flatten().filter(|b| b["type"] != "actions").cloned().collect();
    kept.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}));
    Value::Array(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_default_reject_menu_is_the_standard_picklist() {
        // `handoff doctor` reads the labels written to Salesforce from the
        // schema's default.
        let schema: serde_json::Value = serde_json::from_str(include_str!("config.schema.json")).unwrap();
        let default: Vec<(String, String)> = schema["properties"]["reject_reasons"]["default"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["code"].as_str().unwrap().to_string(), r["label"].as_str().unwrap().to_string()))
            .collect();
        assert_eq!(default, handoff_plugin::rejection::standard());
    }

    fn sla() -> Sla {
        Sla {
            lead: "1002".into(),
            crm_id: "00Q1".into(),
            name: "Marcus Webb".into(),
            company: "Brightline".into(),
            url: "https://sf/00Q1".into(),
            summary: String::new(),
            team: "na".into(),
            owner: Person { id: "005A".into(), name: "Carlos Ruiz".into(), ..Person::default() },
            owners: vec!["005A".into()],
            assigned_at: 1_000,
            reassigned_at: None,
            tasks: vec![],
            next: 0,
            steps: default_steps(),
            business_hours: false,
            worked_statuses: default_worked(),
            pause_after: 3,
            vp_task: true,
            ladder_node: "ladder".into(),
            queue_channel: default_queue_channel(),
            reasons: handoff_plugin::rejection::standard(),
            push_type: default_push_type(),
            touch: None,
            did: String::new(),
        }
    }

    #[test]
    fn the_default_ladder_and_its_clocks() {
        let mut s = sla();
        assert_eq!(
            s.steps.iter().map(Step::after_ms).collect::<Vec<_>>(),
            [1_800_000, 7_200_000, 14_400_000, 86_400_000]
        );
        assert_eq!(s.base(3), 1_000, "no reassignment yet: from assignment");
        s.reassigned_at = Some(50_000);
        assert_eq!((s.base(0), s.base(3)), (1_000, 50_000));
        assert_eq!(s.label(0), "SLA 30m after assignment: reminder to Carlos Ruiz");
        assert_eq!(s.label(3), "SLA 24h after reassignment: VP review");
        let config: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(config.steps, default_steps());
    }

    #[test]
    fn only_the_reps_own_activity_after_assignment_counts() {
        let touch = |id: &str, at| Touch { id: id.into(), kind: "task", subject: "x".into(), at };
        let touches = [touch("00T-followup", 500), touch("00T-old", 10), touch("00T-call", 900)];
        assert_eq!(first_touch(&touches, &["00T-followup".into()], 100).map(|t| t.id.as_str()), Some("00T-call"));
        assert_eq!(first_touch(&touches, &["00T-followup".into(), "00T-call".into()], 100), None);
    }

    #[test]
    fn words_and_blocks() {
        assert_eq!(span(4_000), "4 s");
        assert_eq!(clock_time(1_795_000_000_000), "11:06 UTC");
        assert_eq!(
            (span(30 * 60_000), span(4 * 3_600_000), span(90 * 60_000), span(26 * 3_600_000)),
            ("30 min".into(), "4 h".into(), "1 h 30 min".into(), "1 d 2 h".into())
        );
        let blocks = with_buttons(&sla(), "hi");
        assert_eq!(blocks[1]["block_id"], "lead:1002");
        let settled = settled_blocks(&blocks, "Accepted by Carlos Ruiz at 15:10 UTC");
        assert_eq!(settled.as_array().unwrap().len(), 2);
        assert!(settled.to_string().contains("Accepted by") && !settled.to_string().contains("accept_lead"));
    }
}
