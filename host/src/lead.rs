//! Leads: the MQL domain the ledger keeps. A lead's state and timeline come
//! from the executions about it. What an item on a node's output port means
//! for its lead is declared, not coded here: a plugin says it in its
//! descriptor (the `x-handoff-lead` annotation of its config schema), and a
//! pipeline node may say it instead (`"lead": {"<port>": {...}}`). So a new
//! plugin with a new outcome needs no host change.

use crate::record::{BranchEnd, ExecutionRecord, ExecutionStatus};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Where a state puts a lead in the handoff.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Still moving on its own (received, routed, waiting for a provider).
    #[default]
    InFlight,
    /// Handed to a person, who acts next (notified, accepted, rejected):
    /// a later event that fails or waits does not undo it.
    Settled,
    /// Nothing more happens (invalid, failed).
    Ended,
    /// The event repeated earlier work (a duplicate): the lead keeps the
    /// state it has, and shows this one only when it has none.
    Repeat,
}

/// A lead's state: a name (`notified`, or one a plugin declares) and the
/// phase it puts the lead in. Two states are the same when their names are.
#[derive(Debug, Clone, Eq)]
pub struct LeadState {
    name: Cow<'static, str>,
    phase: Phase,
}

impl PartialEq for LeadState {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl std::hash::Hash for LeadState {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl JsonSchema for LeadState {
    fn schema_name() -> Cow<'static, str> {
        "LeadState".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A lead state: a well-known one (received, validated, deduped, routed, assigned, notified, waiting, invalid, duplicate, failed, ...) or one a plugin declares.",
            "pattern": "^[a-z][a-z0-9-]*$"
        })
    }
}

impl Serialize for LeadState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl std::fmt::Display for LeadState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

macro_rules! well_known {
    ($($(#[$doc:meta])* $constant:ident = $name:literal, $phase:ident;)*) => {
        impl LeadState {
            $($(#[$doc])* pub const $constant: LeadState = LeadState { name: Cow::Borrowed($name), phase: Phase::$phase };)*
            /// The states the host itself knows, in handoff order.
            pub const WELL_KNOWN: &'static [LeadState] = &[$(LeadState::$constant),*];
        }
    };
}

well_known! {
    /// The contact was read from the marketing system.
    RECEIVED = "received", InFlight;
    /// It meets the MQL criteria.
    VALIDATED = "validated", InFlight;
    /// Checked against the CRM.
    DEDUPED = "deduped", InFlight;
    /// An owner was chosen.
    ROUTED = "routed", InFlight;
    /// The CRM record has its owner.
    ASSIGNED = "assigned", InFlight;
    /// The owner was told.
    NOTIFIED = "notified", Settled;
    /// The owner accepted it.
    ACCEPTED = "accepted", Settled;
    /// The owner rejected it, with a reason.
    REJECTED = "rejected", Settled;
    /// Sent back to marketing, to be looked at again later.
    RECYCLED = "recycled", Settled;
    /// A provider was unavailable after the node's retries; the lead waits
    /// for its next attempt (still in flight).
    WAITING = "waiting", InFlight;
    /// It does not meet the MQL criteria.
    INVALID = "invalid", Ended;
    /// The event repeated an MQL already handed off.
    DUPLICATE = "duplicate", Repeat;
    /// A step failed for good; ops were told.
    FAILED = "failed", Ended;
}

impl LeadState {
    /// A state named `name` in `phase`: a well-known state keeps its own
    /// phase.
    ///
    /// # Errors
    ///
    /// When `name` is not lower-case letters, digits and '-' (at most 64).
    pub fn new(name: &str, phase: Phase) -> Result<Self, String> {
        if let Some(known) = Self::well_known(name) {
            return Ok(known);
        }
        if !is_state_name(name) {
            return Err(format!(
                "'{name}' is not a lead state name: lower-case letters, digits and '-', starting with a letter"
            ));
        }
        Ok(LeadState { name: Cow::Owned(name.to_string()), phase })
    }

    /// The well-known state called `name`.
    pub fn well_known(name: &str) -> Option<Self> {
        Self::WELL_KNOWN.iter().find(|s| s.name == name).cloned()
    }

    /// A state as stored: its name and phase (a well-known name keeps its
    /// own phase; an unreadable phase reads as in flight).
    pub fn stored(name: &str, phase: Option<&str>) -> Self {
        let phase = phase.and_then(Phase::parse).unwrap_or_default();
        Self::new(name, phase).unwrap_or(LeadState { name: Cow::Owned(name.to_string()), phase })
    }

    /// The name stored and shown.
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The phase it puts the lead in.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the lead is done moving on its own (a person acts next, or
    /// nothing does).
    pub fn is_final(&self) -> bool {
        self.phase != Phase::InFlight
    }
}

impl Phase {
    /// The name stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::InFlight => "in-flight",
            Phase::Settled => "settled",
            Phase::Ended => "ended",
            Phase::Repeat => "repeat",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        [Phase::InFlight, Phase::Settled, Phase::Ended, Phase::Repeat].into_iter().find(|p| p.as_str() == text)
    }
}

/// Lead state names: lower-case letters, digits and '-'.
pub fn is_state_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The lead state the state a lead shows before an execution (`current`)
/// becomes after an execution whose last step is `last`: a repeated MQL
/// does not change it, and a later event that fails or waits does not undo
/// a settled lead.
pub fn next_state(current: Option<LeadState>, last: &LeadState) -> LeadState {
    match current {
        Some(current) if last.phase == Phase::Repeat => current,
        Some(current)
            if current.phase == Phase::Settled && (*last == LeadState::FAILED || *last == LeadState::WAITING) =>
        {
            current
        }
        _ => last.clone(),
    }
}

/// One step in a lead's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Step {
    /// When (host clock, ms).
    pub at: i64,
    /// The state the step put the lead in.
    pub state: LeadState,
    /// Why, in words.
    pub detail: String,
    /// What the mark's `data` pointer found in the item, for reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// What a pipeline decided for a lead, as a simulation or a shadow reports
/// it: where the lead ended up and who owns it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// The state the execution left the lead in (`notified`, `invalid`,
    /// `duplicate`, `failed`, ...).
    pub state: String,
    /// The owner's name, when one was chosen.
    pub owner: Option<String>,
    /// The owner's CRM id, when the routing said.
    pub owner_id: Option<String>,
    /// The team routing chose, when it said.
    pub team: Option<String>,
    /// Whether the lead went to the fallback queue (nobody available).
    pub fallback: bool,
    /// Why, in words (the routing's explanation, or the last step's detail).
    pub why: String,
    /// Why the execution failed, when it did.
    pub error: Option<String>,
}

impl Decision {
    /// The owner for people: the name, marked `(fallback)` when the
    /// fallback queue took the lead; `-` when nobody owns it.
    pub fn owner_text(&self) -> String {
        match (&self.owner, self.fallback) {
            (Some(owner), true) => format!("{owner} (fallback)"),
            (Some(owner), false) => owner.clone(),
            (None, _) => "-".into(),
        }
    }

    /// State and owner in a few words: `notified · Lena Fischer`.
    pub fn summary(&self) -> String {
        match self.owner {
            Some(_) => format!("{} · {}", self.state, self.owner_text()),
            None => format!("{} · no owner", self.state),
        }
    }

    /// Whether `other` puts the lead elsewhere: another state, owner or
    /// team, or the fallback queue where this did not (or the reverse).
    pub fn differs(&self, other: &Decision) -> bool {
        self.state != other.state
            || self.owner != other.owner
            || self.team != other.team
            || self.fallback != other.fallback
    }
}

/// What an execution decided for its lead: the state it left it in, the
/// owner (the nodes' owner pointers), and, where a routing plugin said so
/// (its item's `routing` object: `owner_id`, `team`, `fallback`,
/// `explanation`, as the standard `route` and the example routers emit),
/// the team and whether the fallback queue took it.
pub fn decision_of<'a>(record: &ExecutionRecord, marks_of: impl Fn(&str) -> Option<&'a LeadMarks>) -> Decision {
    let (facts, steps) = steps_of(record, marks_of);
    decision_from(record, &facts, &steps)
}

/// [`decision_of`] from the facts and steps [`steps_of`] already read from
/// `record`.
pub fn decision_from(record: &ExecutionRecord, facts: &LeadFacts, steps: &[Step]) -> Decision {
    let routing = record
        .runs
        .iter()
        .flat_map(|r| r.outputs.iter())
        .filter_map(|e| e.item.value().get("routing").filter(|r| r.is_object()).cloned())
        .next_back();
    let text = |key: &str| routing.as_ref().and_then(|r| r[key].as_str()).map(str::to_string);
    let last = steps.last();
    Decision {
        state: last.map_or_else(|| "received".to_string(), |s| s.state.as_str().to_string()),
        owner: facts.owner.clone().or_else(|| text("owner_name")),
        owner_id: text("owner_id"),
        team: text("team"),
        fallback: routing.as_ref().is_some_and(|r| r["fallback"].as_bool().unwrap_or(false)),
        why: text("explanation").or_else(|| last.map(|s| s.detail.clone())).unwrap_or_default(),
        error: record.error.clone(),
    }
}

/// Largest `data` kept with a step, in bytes of JSON.
pub const MAX_STEP_DATA_BYTES: usize = 4 * 1024;

/// What an execution learned about a lead.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeadFacts {
    /// The contact's email.
    pub email: Option<String>,
    /// First and last name.
    pub name: Option<String>,
    /// The company.
    pub company: Option<String>,
    /// The owner's name.
    pub owner: Option<String>,
    /// The CRM (Salesforce) record id.
    pub salesforce_id: Option<String>,
}

/// A lead as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct LeadRecord {
    /// The marketing system's contact id (HubSpot).
    pub id: String,
    /// The contact's email.
    pub email: Option<String>,
    /// First and last name.
    pub name: Option<String>,
    /// The company.
    pub company: Option<String>,
    /// Where it is.
    pub state: LeadState,
    /// The owner's name.
    pub owner: Option<String>,
    /// The CRM (Salesforce) record id.
    pub salesforce_id: Option<String>,
    /// When it last changed (host clock, ms).
    pub updated_at: i64,
    /// Every step, oldest first (empty in lists).
    pub timeline: Vec<Step>,
}

/// What an item on one output port means for its lead, as a plugin or a
/// pipeline node declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadMark {
    /// The lead state (`validated`, `notified`, or a name of your own:
    /// lower-case letters, digits and '-').
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*$"), length(max = 64))]
    pub state: String,
    /// What the timeline says. `{/json/pointer}` is replaced by the item's
    /// value there (`{/a|/b}`: the first that is set; `*` in a pointer
    /// takes every element of an array, joined by "; "); `{$port}` by the
    /// port's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// Where the state puts the lead: `in-flight` (the default for states
    /// of your own), `settled` (a person acts next), `ended`, or `repeat`.
    /// Ignored for the well-known states, whose phase is fixed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// JSON pointer to the owner's name in the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// JSON pointer to the CRM record id in the item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crm_id: Option<String>,
    /// JSON pointer to an object kept with the step, for reports (a
    /// rejection's reason, who rejected, the source): at most 4 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

/// A node's marks by output port; `*` stands for every port not named.
pub type LeadMarks = BTreeMap<String, LeadMark>;

/// The port key that stands for every other port.
pub const ANY_PORT: &str = "*";

/// The annotation in a plugin's config schema that declares its marks.
pub const DESCRIPTOR_KEY: &str = "x-handoff-lead";

impl LeadMark {
    /// The state this mark sets.
    ///
    /// # Errors
    ///
    /// When the state name is not valid.
    pub fn lead_state(&self) -> Result<LeadState, String> {
        LeadState::new(&self.state, self.phase.unwrap_or_default())
    }

    /// Problems with this mark: the state name, and pointers that are not
    /// JSON pointers.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Err(e) = self.lead_state() {
            problems.push(e);
        }
        for (what, pointer) in [("owner", &self.owner), ("crm_id", &self.crm_id)] {
            if let Some(p) = pointer
                && !p.starts_with('/')
            {
                problems.push(format!("{what} '{p}' is not a JSON pointer (it starts with '/')"));
            }
        }
        for placeholder in placeholders(&self.detail) {
            for alternative in placeholder.split('|') {
                if alternative != "$port" && !alternative.starts_with('/') {
                    problems.push(format!(
                        "detail placeholder '{{{placeholder}}}' names '{alternative}', not a JSON pointer or $port"
                    ));
                }
            }
        }
        problems
    }
}

/// The marks a plugin declares in its config schema, if any.
///
/// # Errors
///
/// When the annotation is there but malformed, saying how.
pub fn marks_in_schema(schema: &Value) -> Result<LeadMarks, String> {
    let Some(declared) = schema.get(DESCRIPTOR_KEY) else {
        return Ok(LeadMarks::new());
    };
    let marks: LeadMarks = serde_json::from_value(declared.clone()).map_err(|e| format!("{DESCRIPTOR_KEY}: {e}"))?;
    for (port, mark) in &marks {
        if let Some(problem) = mark.problems().into_iter().next() {
            return Err(format!("{DESCRIPTOR_KEY}.{port}: {problem}"));
        }
    }
    Ok(marks)
}

/// The `{...}` placeholders of a detail template, without braces.
fn placeholders(template: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        found.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    found
}

/// A detail template filled from `item` (see [`LeadMark::detail`]).
pub fn render_detail(template: &str, item: &Value, port: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push_str(&rest[..open]);
        let placeholder = &rest[open + 1..open + close];
        let value = placeholder
            .split('|')
            .map(|alternative| if alternative == "$port" { port.to_string() } else { text_at(item, alternative) })
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The text at `pointer` in `item` (`*` takes every array element, joined
/// by "; "); empty when unset.
fn text_at(item: &Value, pointer: &str) -> String {
    match pointer.split_once("/*") {
        Some((array, rest)) => item
            .pointer(array)
            .and_then(Value::as_array)
            .map(|elements| {
                elements
                    .iter()
                    .map(|e| if rest.is_empty() { text(Some(e)) } else { text(e.pointer(rest)) })
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default(),
        None => text(item.pointer(pointer)),
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The text at a pointer, when set.
fn text_or_none(item: &Value, pointer: Option<&str>) -> Option<String> {
    pointer.map(|p| text_at(item, p)).filter(|t| !t.is_empty())
}

/// Contact facts an item carries (a HubSpot contact's `properties`).
fn learn(facts: &mut LeadFacts, item: &Value) {
    let Some(p) = item.get("properties") else { return };
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string).filter(|s| !s.is_empty());
    facts.email = facts.email.take().or(text("email"));
    facts.company = facts.company.take().or(text("company"));
    let name = [text("firstname"), text("lastname")].into_iter().flatten().collect::<Vec<_>>().join(" ");
    if !name.is_empty() {
        facts.name = Some(name);
    }
}

/// The mark of `port` among `marks`.
pub fn mark_for<'a>(marks: &'a LeadMarks, port: &str) -> Option<&'a LeadMark> {
    marks.get(port).or_else(|| marks.get(ANY_PORT))
}

/// A lead entering a state during an execution, with the item that put it
/// there: what lead events (`lead.<state>`) carry.
#[derive(Debug, Clone)]
pub struct Transition<'r> {
    /// The node whose output it was.
    pub node: &'r str,
    /// The step it adds to the timeline.
    pub step: Step,
    /// The item emitted.
    pub item: &'r Value,
}

/// The transitions an execution record shows, in order: each node run's
/// first output read through its node's marks (`marks_of` gives a node's
/// marks by node id), and the facts learned on the way.
pub fn transitions<'r, 'a>(
    record: &'r ExecutionRecord,
    marks_of: impl Fn(&str) -> Option<&'a LeadMarks>,
) -> (LeadFacts, Vec<Transition<'r>>) {
    let mut facts = LeadFacts::default();
    let mut found = Vec::new();
    for run in &record.runs {
        let Some(out) = run.outputs.first() else {
            continue;
        };
        // Only a marked output is read (and so parsed): an item that means
        // nothing for its lead stays the bytes it is.
        let Some(mark) = marks_of(&run.node).and_then(|marks| mark_for(marks, &out.port)) else {
            continue;
        };
        let Ok(state) = mark.lead_state() else { continue };
        let item = out.item.value();
        learn(&mut facts, item);
        if let Some(owner) = text_or_none(item, mark.owner.as_deref()) {
            facts.owner = Some(owner);
        }
        if let Some(id) = text_or_none(item, mark.crm_id.as_deref()) {
            facts.salesforce_id = Some(id);
        }
        let detail = render_detail(&mark.detail, item, &out.port);
        let data = mark
            .data
            .as_deref()
            .and_then(|pointer| item.pointer(pointer))
            .filter(|v| v.is_object() && crate::record::json_len(v) <= MAX_STEP_DATA_BYTES)
            .cloned();
        found.push(Transition {
            node: &run.node,
            step: Step { at: record.at_ms(run.finished_at_us), state, detail, data },
            item,
        });
    }
    (facts, found)
}

/// The lead steps and facts an execution record shows, in order: its
/// transitions; where the execution ended decides the last.
pub fn steps_of<'a>(
    record: &ExecutionRecord,
    marks_of: impl Fn(&str) -> Option<&'a LeadMarks>,
) -> (LeadFacts, Vec<Step>) {
    let (facts, found) = transitions(record, marks_of);
    let mut steps: Vec<Step> = found.into_iter().map(|t| t.step).collect();
    let end = record.at_ms(record.duration_us);
    if record.status == ExecutionStatus::Failed {
        steps.push(Step {
            at: end,
            state: LeadState::FAILED,
            detail: record.error.clone().unwrap_or_default(),
            data: None,
        });
    } else if record.ends.iter().any(|e| matches!(e, BranchEnd::Failed { .. })) {
        steps.push(Step {
            at: end,
            state: LeadState::FAILED,
            detail: "a step failed and its branch ended".into(),
            data: None,
        });
    }
    (facts, steps)
}

/// When the lead was first handed to a person in this execution (the end
/// of the first run whose output settles it), in microseconds since the
/// execution started.
pub fn settled_at_us<'a>(record: &ExecutionRecord, marks_of: impl Fn(&str) -> Option<&'a LeadMarks>) -> Option<u64> {
    record.runs.iter().find_map(|run| {
        let out = run.outputs.first()?;
        let mark = marks_of(&run.node).and_then(|marks| mark_for(marks, &out.port))?;
        (mark.lead_state().ok()?.phase() == Phase::Settled && run.error.is_none()).then_some(run.finished_at_us)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mark(state: &str, detail: &str) -> LeadMark {
        LeadMark { state: state.into(), detail: detail.into(), phase: None, owner: None, crm_id: None, data: None }
    }

    #[test]
    fn details_fill_pointers_alternatives_arrays_and_the_port() {
        let item = json!({"validation": {"reasons": [{"message": "score 20 < 50"}, {"message": "free mail"}]},
                          "notification": {"queue_post": {"channel": "C1"}}});
        assert_eq!(render_detail("{/validation/reasons/*/message}", &item, "invalid"), "score 20 < 50; free mail");
        assert_eq!(render_detail("told {/notification/to|/notification/queue_post/channel}", &item, "x"), "told C1");
        assert_eq!(render_detail("salesforce match: {$port}", &item, "new"), "salesforce match: new");
        assert_eq!(render_detail("no {/missing} here", &item, "p"), "no  here");
    }

    #[test]
    fn well_known_states_keep_their_phase_and_new_ones_take_the_declared_one() {
        assert_eq!(LeadState::new("notified", Phase::Ended).unwrap().phase(), Phase::Settled);
        let scored = LeadState::new("scored", Phase::Settled).unwrap();
        assert!(scored.is_final());
        assert!(LeadState::new("Bad Name", Phase::InFlight).is_err());
        assert_eq!(mark("9lives", "").problems().len(), 1);
        let mut bad = mark("ok", "{owner}");
        bad.owner = Some("routing/owner".into());
        assert_eq!(bad.problems().len(), 2, "{:?}", bad.problems());
    }

    #[test]
    fn a_repeat_or_a_later_failure_does_not_undo_a_settled_lead() {
        let notified = Some(LeadState::NOTIFIED);
        assert_eq!(next_state(notified.clone(), &LeadState::DUPLICATE), LeadState::NOTIFIED);
        assert_eq!(next_state(notified.clone(), &LeadState::FAILED), LeadState::NOTIFIED);
        assert_eq!(next_state(notified, &LeadState::ACCEPTED), LeadState::ACCEPTED);
        assert_eq!(next_state(None, &LeadState::DUPLICATE), LeadState::DUPLICATE);
        assert_eq!(next_state(Some(LeadState::ROUTED), &LeadState::FAILED), LeadState::FAILED);
    }

    #[test]
    fn marks_come_from_a_schema_annotation() {
        let schema = json!({"type": "object", DESCRIPTOR_KEY: {"scored": {"state": "scored", "phase": "settled"}}});
        let marks = marks_in_schema(&schema).unwrap();
        assert_eq!(marks["scored"].lead_state().unwrap().phase(), Phase::Settled);
        let bad = json!({DESCRIPTOR_KEY: {"x": {"state": "x", "colour": "red"}}});
        assert!(marks_in_schema(&bad).unwrap_err().contains("colour"));
        assert!(marks_in_schema(&json!({})).unwrap().is_empty());
    }
}
