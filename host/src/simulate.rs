//! `handoff simulate`: a pipeline run over past leads (the ledger's events
//! with the answers their executions got) or exported ones (a HubSpot CSV
//! export, or JSON lines), lead by lead in order of arrival, on dry-run
//! capabilities ([`crate::dry_run`]): nothing is sent, plugin state is a
//! scratch copy that starts empty and evolves lead by lead as it would live
//! (round-robin cursors, daily counts), and each lead's clock stands at the
//! time it arrived (working hours, out of office, dates in state keys).
//! What each lead would get is compared with another pipeline's run over
//! the same leads, or with what was decided live.

use crate::capabilities::{Clock, ManualClock};
use crate::dry_run::{DryRun, Missing, NOT_RECORDED, Tape};
use crate::lead::Decision;
use crate::ledger::Ledger;
use crate::pipeline::{Executor, History, PreparedPipeline, Start};
use crate::record::CallRecord;
use crate::roster::RosterFile;
use crate::runtime::Runtime;
use anyhow::{Context, Result, bail};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

/// One lead to simulate: what started its execution, what its providers
/// answered, and what was decided live.
#[derive(Debug, Clone)]
pub struct SimLead {
    /// The lead (the HubSpot contact id).
    pub lead_id: Option<String>,
    /// Who it is, for people: name and email when known.
    pub label: String,
    /// The event (`source:event id`), unique among the leads.
    pub event_id: String,
    /// The execution's input (`{"event": ...}`).
    pub input: Value,
    /// When it arrived (ms): the clock its execution sees.
    pub at: i64,
    /// What its providers answered.
    pub tape: Tape,
    /// What the live pipeline decided, when the ledger recorded it.
    pub live: Option<Decision>,
}

/// Leads to simulate, and those left out with why.
#[derive(Debug)]
pub struct LeadSet {
    /// In order of arrival.
    pub leads: Vec<SimLead>,
    /// Left out.
    pub skipped: Vec<Skipped>,
    /// What a read the recording does not hold gets.
    pub missing: Missing,
    /// Where the leads came from, for people.
    pub source: String,
}

/// A lead left out of a simulation.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Skipped {
    /// Who.
    pub lead: String,
    /// Why.
    pub why: String,
}

/// The ledger's events of `pipeline` received in `[from, to)`, each with
/// the answers its execution got and what it decided. Timer firings are
/// left out (they are steps of a lead already in the set); an event whose
/// payload retention emptied is skipped, and says so.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn leads_from_ledger(ledger: &dyn Ledger, pipeline: &str, from: i64, to: i64) -> Result<LeadSet> {
    let mut set = LeadSet {
        leads: Vec::new(),
        skipped: Vec::new(),
        missing: Missing::Unavailable,
        source: format!(
            "the ledger: {pipeline}'s events from {} to {}",
            crate::connectors::time::iso8601(from),
            crate::connectors::time::iso8601(to)
        ),
    };
    for event in ledger.events_between(Some(pipeline), from, to).await? {
        if event.node.is_some() {
            continue;
        }
        let label = event.lead_id.clone().unwrap_or_else(|| event.event_id.clone());
        if event.payload.as_object().is_some_and(serde_json::Map::is_empty) {
            set.skipped.push(Skipped { lead: label, why: "its event's payload was pruned (retention)".into() });
            continue;
        }
        let execution = format!("{}:{}:{}", event.pipeline, event.source, event.event_id);
        let trace = ledger.trace(&execution).await?;
        let (tape, live, label) = match trace {
            Some(trace) => {
                let label = label_of(&trace.reads).unwrap_or(label);
                (Tape::from_reads(&trace.reads), Some(trace.decision), label)
            }
            None => (Tape::default(), None, label),
        };
        set.leads.push(SimLead {
            lead_id: event.lead_id,
            label,
            event_id: format!("{}:{}", event.source, event.event_id),
            input: json!({ "event": event.payload }),
            at: event.received_at,
            tape,
            live,
        });
    }
    Ok(set)
}

/// Who a recording's contact is: `First Last <email>`.
fn label_of(reads: &[CallRecord]) -> Option<String> {
    let contact = reads.iter().find(|r| r.call == "marketing.get-contact")?;
    let properties: Value = serde_json::from_str(contact.answer["properties"].as_str()?).ok()?;
    Some(person(&properties))
}

fn person(properties: &Value) -> String {
    let text = |key: &str| properties[key].as_str().unwrap_or_default().trim().to_string();
    let name = format!("{} {}", text("firstname"), text("lastname")).trim().to_string();
    match (name.is_empty(), text("email")) {
        (false, email) if !email.is_empty() => format!("{name} <{email}>"),
        (false, _) => name,
        (true, email) => email,
    }
}

/// HubSpot's contact export column labels and the properties they hold.
const HUBSPOT_COLUMNS: &[(&str, &str)] = &[
    ("record id", "hs_object_id"),
    ("contact id", "hs_object_id"),
    ("first name", "firstname"),
    ("last name", "lastname"),
    ("email", "email"),
    ("company name", "company"),
    ("company", "company"),
    ("job title", "jobtitle"),
    ("phone number", "phone"),
    ("country/region", "country"),
    ("country", "country"),
    ("state/region", "state"),
    ("city", "city"),
    ("number of employees", "numemployees"),
    ("industry", "industry"),
    ("lifecycle stage", "lifecyclestage"),
    ("hubspot score", "hubspotscore"),
    ("lead status", "hs_lead_status"),
    ("website url", "website"),
    ("original source", "hs_analytics_source"),
    ("number of pageviews", "hs_analytics_num_page_views"),
    ("number of sessions", "hs_analytics_num_visits"),
    ("recent conversion", "recent_conversion_event_name"),
    ("number of form submissions", "num_conversion_events"),
    ("create date", "createdate"),
    ("became a marketing qualified lead date", "hs_lifecyclestage_marketingqualifiedlead_date"),
];

/// HubSpot's lifecycle stage labels and their internal values.
const LIFECYCLE_LABELS: &[(&str, &str)] = &[
    ("subscriber", "subscriber"),
    ("lead", "lead"),
    ("marketing qualified lead", "marketingqualifiedlead"),
    ("sales qualified lead", "salesqualifiedlead"),
    ("opportunity", "opportunity"),
    ("customer", "customer"),
    ("evangelist", "evangelist"),
    ("other", "other"),
];

/// The property a column holds: HubSpot's export label, or the internal
/// name itself (`numemployees`).
fn property_of(column: &str) -> String {
    let label = column.trim().to_lowercase();
    HUBSPOT_COLUMNS
        .iter()
        .find(|(l, _)| *l == label)
        .map_or_else(|| label.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', ""), |(_, p)| (*p).to_string())
}

/// A value as HubSpot's API gives it: lifecycle labels as internal values,
/// thousands separators out of numbers.
fn api_value(property: &str, value: &str) -> String {
    let value = value.trim();
    match property {
        "lifecyclestage" => LIFECYCLE_LABELS
            .iter()
            .find(|(label, _)| label.eq_ignore_ascii_case(value))
            .map_or_else(|| value.to_lowercase().replace(' ', ""), |(_, internal)| (*internal).to_string()),
        "numemployees" | "hubspotscore" | "hs_analytics_num_page_views" | "hs_analytics_num_visits"
            if value.chars().all(|c| c.is_ascii_digit() || c == ',' || c == '.') =>
        {
            value.replace(',', "")
        }
        _ => value.to_string(),
    }
}

/// Leads from a file: a HubSpot contact export (`.csv`, its column labels
/// or internal property names as headers) or JSON lines (`.jsonl`: a
/// contact `{"id", "properties": {...}}` or its properties alone per line).
/// Each becomes the MQL webhook event HubSpot would send, at its "Became a
/// Marketing Qualified Lead Date" when the file has it, else at `now`; its
/// CRM side is taken to be empty (no Salesforce lead, contact, account or
/// opportunity matches).
///
/// # Errors
///
/// When the file cannot be read, or a line or row is malformed (named).
pub fn leads_from_file(path: &Path, now: i64) -> Result<LeadSet> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the leads file {}", path.display()))?;
    let contacts = match path.extension().and_then(|e| e.to_str()).map(str::to_lowercase).as_deref() {
        Some("csv") => contacts_from_csv(&text).with_context(|| format!("in {}", path.display()))?,
        Some("jsonl" | "ndjson") => contacts_from_jsonl(&text).with_context(|| format!("in {}", path.display()))?,
        _ => bail!("{}: a leads file is a HubSpot export (.csv) or JSON lines (.jsonl)", path.display()),
    };
    let mut leads: Vec<SimLead> = contacts
        .into_iter()
        .enumerate()
        .map(|(n, (id, properties))| {
            let at = properties["hs_lifecyclestage_marketingqualifiedlead_date"]
                .as_str()
                .and_then(parse_export_time)
                .unwrap_or(now);
            let object_id = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
            let event = json!({
                "eventId": n + 1, "subscriptionType": "contact.propertyChange", "objectId": object_id,
                "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead", "occurredAt": at,
                "changeSource": "IMPORT",
            });
            SimLead {
                lead_id: Some(id.clone()),
                label: person(&properties),
                event_id: format!("file:{}", n + 1),
                input: json!({ "event": event }),
                at,
                tape: Tape::default().with_contact(&id, &properties),
                live: None,
            }
        })
        .collect();
    leads.sort_by_key(|l| l.at);
    Ok(LeadSet {
        leads,
        skipped: Vec::new(),
        missing: Missing::EmptyCrm,
        source: format!("{} (its CRM side taken as empty)", path.display()),
    })
}

/// A time as HubSpot exports write it (`2026-11-03 14:22`, ISO 8601, a
/// date, or milliseconds), read as UTC.
fn parse_export_time(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Some(at.as_millisecond());
    }
    // `2026-11-03 14:22`, `2026-11-03T14:22:05`, `2026-11-03`: UTC.
    if let Ok(civil) = text.replacen(' ', "T", 1).parse::<jiff::civil::DateTime>() {
        return civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp().as_millisecond());
    }
    crate::reports::parse_time(text).ok()
}

type FileContact = (String, Value);

fn contacts_from_csv(text: &str) -> Result<Vec<FileContact>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let properties: Vec<String> = reader.headers().context("reading the header row")?.iter().map(property_of).collect();
    if !properties.iter().any(|p| p == "email") {
        bail!("no Email column (the header row names the columns: HubSpot's export labels or property names)");
    }
    let mut contacts = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("row {}", n + 2))?;
        let mut object = serde_json::Map::new();
        for (property, value) in properties.iter().zip(row.iter()) {
            if !property.is_empty() && !value.trim().is_empty() {
                object.insert(property.clone(), json!(api_value(property, value)));
            }
        }
        let id =
            object.get("hs_object_id").and_then(Value::as_str).map_or_else(|| format!("file-{}", n + 1), String::from);
        contacts.push((id, Value::Object(object)));
    }
    Ok(contacts)
}

fn contacts_from_jsonl(text: &str) -> Result<Vec<FileContact>> {
    let mut contacts = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        // serde_json stops at 128 levels of nesting: no stack overflow.
        let value: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {}: not JSON: {e}", n + 1))?;
        let (id, properties) = match (&value["properties"], &value["id"]) {
            (Value::Object(properties), id) => (id.clone(), Value::Object(properties.clone())),
            _ if value.is_object() => (value["hs_object_id"].clone(), value.clone()),
            _ => bail!("line {}: a lead is a JSON object", n + 1),
        };
        let id = match id {
            Value::String(id) => id,
            Value::Number(id) => id.to_string(),
            _ => format!("file-{}", n + 1),
        };
        let properties = match properties {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Value::String(s) => json!(api_value(&k, &s)),
                            Value::Null => Value::Null,
                            other => json!(other.to_string()),
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            other => other,
        };
        contacts.push((id, properties));
    }
    Ok(contacts)
}

/// What one lead would get.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Simulated {
    /// The lead.
    pub lead_id: Option<String>,
    /// Who it is.
    pub lead: String,
    /// When it arrived (ms).
    pub at: i64,
    /// What the pipeline decided.
    pub decision: Decision,
    /// Why it could not be simulated: its execution needed an answer the
    /// recording does not hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_simulated: Option<String>,
    /// The writes it would have made (`chat.send-dm: DM to ...`).
    pub would_send: Vec<String>,
}

/// One pipeline's run over a set of leads.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SimRun {
    /// The pipeline.
    pub pipeline: String,
    /// Its version.
    pub version: u32,
    /// Lead by lead, in the order they ran.
    pub leads: Vec<Simulated>,
    /// The writes it would have made, by capability call.
    pub would_send: BTreeMap<String, usize>,
    /// How long the run took (ms).
    pub elapsed_ms: u64,
}

/// Runs `prepared` over `leads` in order on `dry`: one execution per lead,
/// on the plugin pool, each seeing the clock at its lead's arrival.
pub async fn run(runtime: &Arc<Runtime>, prepared: &Arc<PreparedPipeline>, leads: &[SimLead], dry: &DryRun) -> SimRun {
    let started = std::time::Instant::now();
    let mut out = SimRun {
        pipeline: prepared.pipeline.name.clone(),
        version: prepared.pipeline.version,
        leads: Vec::with_capacity(leads.len()),
        would_send: BTreeMap::new(),
        elapsed_ms: 0,
    };
    for lead in leads {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(lead.at));
        let capabilities = dry.capabilities(lead.tape.clone(), lead.lead_id.as_deref(), clock);
        let executor = Executor::new(runtime.clone(), Arc::new(capabilities));
        let (pipeline, input, lead_id) = (prepared.clone(), lead.input.clone(), lead.lead_id.clone());
        let execution = format!("simulate:{}:{}", prepared.pipeline.name, lead.event_id);
        let ran = runtime
            .spawn(async move {
                executor.execute_as(&pipeline, input, Start::Trigger, lead_id, execution, History::New).await
            })
            .await;
        let decision = match ran {
            Ok(record) => crate::lead::decision_of(&record, |node| prepared.lead_marks(node)),
            Err(e) => Decision {
                state: "failed".into(),
                error: Some(format!("the simulation stopped: {e}")),
                ..Decision::default()
            },
        };
        let not_simulated = decision.error.clone().filter(|e| e.contains(NOT_RECORDED));
        let unsent = dry.outbox.take();
        for write in &unsent {
            *out.would_send.entry(write.call.clone()).or_default() += 1;
        }
        out.leads.push(Simulated {
            lead_id: lead.lead_id.clone(),
            lead: lead.label.clone(),
            at: lead.at,
            decision,
            not_simulated,
            would_send: unsent.into_iter().map(|u| format!("{}: {}", u.call, u.summary)).collect(),
        });
    }
    out.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    out
}

/// One lead whose outcome changes.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Change {
    /// The lead.
    pub lead_id: Option<String>,
    /// Who it is.
    pub lead: String,
    /// Before the change.
    pub before: Decision,
    /// After it.
    pub after: Decision,
}

/// Leads one owner gets, before and after.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Load {
    /// The owner (a rep, a queue) or the team.
    pub name: String,
    /// The owner's team, when the roster or the routing says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Before.
    pub before: usize,
    /// After.
    pub after: usize,
}

/// Round-robin fairness among a team's reps of equal weight: the most and
/// fewest leads one of them gets.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Fairness {
    /// The team.
    pub team: String,
    /// The reps' weight.
    pub weight: u32,
    /// How many reps have it.
    pub reps: usize,
    /// Before: [most, fewest].
    pub before: [usize; 2],
    /// After: [most, fewest].
    pub after: [usize; 2],
}

/// What a change does to the leads: the difference between two sets of
/// decisions over the same leads.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Comparison {
    /// What the decisions are compared with (`live`, or a pipeline).
    pub before: String,
    /// The changed pipeline.
    pub after: String,
    /// Leads with a decision on both sides.
    pub compared: usize,
    /// Leads without one on a side (not simulated, or nothing recorded live).
    pub not_compared: usize,
    /// Leads whose state, owner, team or fallback changes.
    pub changed: Vec<Change>,
    /// Leads per owner.
    pub owners: Vec<Load>,
    /// Leads per team.
    pub teams: Vec<Load>,
    /// Fairness among equal-weight reps, per team.
    pub fairness: Vec<Fairness>,
    /// Leads the fallback queue gets: [before, after].
    pub fallback: [usize; 2],
    /// Leads that fail after the change and did not before.
    pub new_failures: Vec<Change>,
}

/// Compares `before[i]` with `after[i]` for every lead of `after`;
/// `roster` tells reps' teams and weights.
pub fn compare(
    before_name: &str,
    before: &[Option<Decision>],
    after: &SimRun,
    roster: Option<&RosterFile>,
) -> Comparison {
    let mut comparison = Comparison {
        before: before_name.to_string(),
        after: after.pipeline.clone(),
        compared: 0,
        not_compared: 0,
        changed: Vec::new(),
        owners: Vec::new(),
        teams: Vec::new(),
        fairness: Vec::new(),
        fallback: [0, 0],
        new_failures: Vec::new(),
    };
    let team_of_rep: HashMap<&str, &str> =
        roster.map(|r| r.reps.iter().map(|rep| (rep.id.as_str(), rep.team.as_str())).collect()).unwrap_or_default();
    let team_of = |d: &Decision| {
        d.team.clone().or_else(|| d.owner_id.as_deref().and_then(|id| team_of_rep.get(id)).map(|t| (*t).to_string()))
    };
    let mut owners: BTreeMap<String, (Option<String>, [usize; 2])> = BTreeMap::new();
    let mut teams: BTreeMap<String, [usize; 2]> = BTreeMap::new();
    let mut by_rep: HashMap<String, [usize; 2]> = HashMap::new();
    for (lead, before) in after.leads.iter().zip(before) {
        let Some(before) = before.as_ref().filter(|_| lead.not_simulated.is_none()) else {
            comparison.not_compared += 1;
            continue;
        };
        comparison.compared += 1;
        let after = &lead.decision;
        for (side, decision) in [before, after].into_iter().enumerate() {
            if let Some(owner) = &decision.owner {
                let entry = owners.entry(owner.clone()).or_insert((team_of(decision), [0, 0]));
                entry.1[side] += 1;
            }
            if let Some(team) = team_of(decision) {
                teams.entry(team).or_default()[side] += 1;
            }
            if let Some(id) = &decision.owner_id {
                by_rep.entry(id.clone()).or_default()[side] += 1;
            }
            if decision.fallback {
                comparison.fallback[side] += 1;
            }
        }
        let change = || Change {
            lead_id: lead.lead_id.clone(),
            lead: lead.lead.clone(),
            before: before.clone(),
            after: after.clone(),
        };
        if before.differs(after) {
            comparison.changed.push(change());
        }
        if after.state == "failed" && before.state != "failed" {
            comparison.new_failures.push(change());
        }
    }
    comparison.owners =
        owners.into_iter().map(|(name, (team, [before, after]))| Load { name, team, before, after }).collect();
    comparison.teams =
        teams.into_iter().map(|(name, [before, after])| Load { name, team: None, before, after }).collect();
    if let Some(roster) = roster {
        for team in &roster.teams {
            let mut weights: BTreeMap<u32, Vec<[usize; 2]>> = BTreeMap::new();
            for member in &team.members {
                let Some(rep) = roster.reps.iter().find(|r| &r.id == member) else { continue };
                weights.entry(rep.weight).or_default().push(by_rep.get(&rep.id).copied().unwrap_or_default());
            }
            for (weight, counts) in weights.into_iter().filter(|(_, c)| c.len() > 1) {
                let side = |s: usize| {
                    let values = counts.iter().map(|c| c[s]);
                    [values.clone().max().unwrap_or(0), values.min().unwrap_or(0)]
                };
                comparison.fairness.push(Fairness {
                    team: team.id.clone(),
                    weight,
                    reps: counts.len(),
                    before: side(0),
                    after: side(1),
                });
            }
        }
    }
    comparison
}

/// A simulation's report: the run, and what it changes when compared.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Report {
    /// Where the leads came from.
    pub source: String,
    /// Leads left out, with why.
    pub skipped: Vec<Skipped>,
    /// The simulated pipeline's run.
    pub run: SimRun,
    /// The run it was compared with (`--compare`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<SimRun>,
    /// The difference (`--compare`, `--baseline live`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

fn fit(text: &str, width: usize) -> String {
    let text: String = text.chars().take(width).collect();
    format!("{text:<width$}")
}

/// The report as a person reads it: every lead (or, compared, the leads
/// that change), then the totals.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let run = &report.run;
    let simulated = run.leads.iter().filter(|l| l.not_simulated.is_none()).count();
    let _ = writeln!(
        out,
        "Simulated {} v{} over {} leads from {} in {} ms; nothing was sent.",
        run.pipeline,
        run.version,
        run.leads.len(),
        report.source,
        run.elapsed_ms
    );
    match &report.comparison {
        None => {
            let _ = writeln!(
                out,
                "\n{} {} {} {} WHY",
                fit("LEAD", 34),
                fit("STATE", 11),
                fit("OWNER", 26),
                fit("TEAM", 16)
            );
            for lead in &run.leads {
                let d = &lead.decision;
                let why =
                    lead.not_simulated.as_deref().map_or_else(|| d.why.clone(), |e| format!("not simulated: {e}"));
                let _ = writeln!(
                    out,
                    "{} {} {} {} {}",
                    fit(&lead.lead, 34),
                    fit(&d.state, 11),
                    fit(&d.owner_text(), 26),
                    fit(d.team.as_deref().unwrap_or("-"), 16),
                    crate::runtime::cut(why, 100)
                );
            }
        }
        Some(c) => render_comparison(&mut out, c),
    }
    let _ = writeln!(out, "\n{simulated} of {} leads simulated.", run.leads.len());
    for lead in run.leads.iter().filter(|l| l.not_simulated.is_some()).take(5) {
        let _ = writeln!(out, "  not simulated: {}: {}", lead.lead, lead.not_simulated.as_deref().unwrap_or_default());
    }
    if !report.skipped.is_empty() {
        let _ = writeln!(
            out,
            "{} left out, e.g. {}: {}",
            report.skipped.len(),
            report.skipped[0].lead,
            report.skipped[0].why
        );
    }
    if !run.would_send.is_empty() {
        let sends: Vec<String> = run.would_send.iter().map(|(call, n)| format!("{n} {call}")).collect();
        let _ = writeln!(out, "Would have sent (not sent): {}.", sends.join(", "));
    }
    out
}

fn render_comparison(out: &mut String, c: &Comparison) {
    let _ = writeln!(
        out,
        "Compared with {}: {} of {} leads change ({} not compared).",
        c.before,
        c.changed.len(),
        c.compared,
        c.not_compared
    );
    if !c.changed.is_empty() {
        let _ = writeln!(out, "\n{} {} AFTER", fit("LEAD", 34), fit("BEFORE", 34));
        for change in &c.changed {
            let _ = writeln!(
                out,
                "{} {} {}",
                fit(&change.lead, 34),
                fit(&change.before.summary(), 34),
                change.after.summary()
            );
            let _ = writeln!(out, "{} why: {}", " ".repeat(34), crate::runtime::cut(change.after.why.clone(), 100));
        }
    }
    let _ = writeln!(out, "\n{} {} {} CHANGE", fit("OWNER", 30), fit("TEAM", 16), fit("BEFORE", 7));
    for load in &c.owners {
        let _ = writeln!(
            out,
            "{} {} {:<7} {:<6} {:+}",
            fit(&load.name, 30),
            fit(load.team.as_deref().unwrap_or("-"), 16),
            load.before,
            load.after,
            i64::try_from(load.after).unwrap_or(0) - i64::try_from(load.before).unwrap_or(0)
        );
    }
    let _ = writeln!(out, "\n{} {:<7} AFTER", fit("TEAM", 30), "BEFORE");
    for load in &c.teams {
        let _ = writeln!(out, "{} {:<7} {}", fit(&load.name, 30), load.before, load.after);
    }
    if !c.fairness.is_empty() {
        let _ = writeln!(out, "\nRound-robin fairness (most/fewest leads per rep of equal weight):");
        for f in &c.fairness {
            let _ = writeln!(
                out,
                "  {} ({} reps, weight {}): {}/{} -> {}/{}",
                f.team, f.reps, f.weight, f.before[0], f.before[1], f.after[0], f.after[1]
            );
        }
    }
    let _ = writeln!(out, "\nFallback queue: {} -> {} leads.", c.fallback[0], c.fallback[1]);
    let _ = writeln!(out, "New failures: {}.", c.new_failures.len());
    for change in c.new_failures.iter().take(10) {
        let _ = writeln!(out, "  {}: {}", change.lead, change.after.error.as_deref().unwrap_or(&change.after.why));
    }
}

/// The report as a page: the totals, the per-owner chart (before and
/// after, when compared) and the leads that change (or every lead).
pub fn html(report: &Report) -> String {
    use maud::{DOCTYPE, PreEscaped, html};
    let run = &report.run;
    let chart = if let Some(c) = &report.comparison {
        crate::charts::paired_bar_chart(
            "Leads per owner",
            [c.before.as_str(), c.after.as_str()],
            &c.owners.iter().map(|l| (l.name.clone(), [l.before as u64, l.after as u64])).collect::<Vec<_>>(),
        )
    } else {
        let mut owners: BTreeMap<String, u64> = BTreeMap::new();
        for lead in &run.leads {
            if let Some(owner) = &lead.decision.owner {
                *owners.entry(owner.clone()).or_default() += 1;
            }
        }
        crate::charts::bar_chart("Leads per owner", &owners.into_iter().collect::<Vec<_>>())
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Simulation of " (run.pipeline) " · Handoff" }
                style { (PreEscaped(REPORT_STYLE)) }
            }
            body {
                h1 { "Simulation of " (run.pipeline) " v" (run.version) }
                p { (run.leads.len()) " leads from " (report.source) ", in " (run.elapsed_ms) " ms. Nothing was sent." }
                @if let Some(c) = &report.comparison {
                    p.summary {
                        "Compared with " b { (c.before) } ": " b { (c.changed.len()) } " of " (c.compared)
                        " leads change; fallback queue " (c.fallback[0]) " → " (c.fallback[1])
                        "; new failures " (c.new_failures.len()) "."
                    }
                }
                div.chart { (PreEscaped(chart)) }
                @if let Some(c) = &report.comparison {
                    @if !c.fairness.is_empty() {
                        h2 { "Round-robin fairness" }
                        table {
                            tr { th { "Team" } th { "Reps (weight)" } th { "Before: most / fewest" } th { "After: most / fewest" } }
                            @for f in &c.fairness {
                                tr { td { (f.team) } td { (f.reps) " (" (f.weight) ")" } td { (f.before[0]) " / " (f.before[1]) } td { (f.after[0]) " / " (f.after[1]) } }
                            }
                        }
                    }
                    h2 { "Leads that change" }
                    table {
                        tr { th { "Lead" } th { "Before" } th { "After" } th { "Why (after)" } }
                        @for change in &c.changed {
                            tr {
                                td { (change.lead) }
                                td { (change.before.summary()) }
                                td { (change.after.summary()) }
                                td { (change.after.why) }
                            }
                        }
                    }
                } @else {
                    h2 { "Leads" }
                    table {
                        tr { th { "Lead" } th { "State" } th { "Owner" } th { "Team" } th { "Why" } }
                        @for lead in &run.leads {
                            tr {
                                td { (lead.lead) }
                                td { (lead.decision.state) }
                                td { (lead.decision.owner_text()) }
                                td { (lead.decision.team.as_deref().unwrap_or("-")) }
                                td { (lead.not_simulated.as_deref().unwrap_or(&lead.decision.why)) }
                            }
                        }
                    }
                }
            }
        }
    };
    page.into_string()
}

const REPORT_STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2433;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}.summary{font-size:16px}.chart{margin:12px 0}
table{border-collapse:collapse;width:100%}th,td{padding:6px 9px;border-bottom:1px solid #e6e8ec;text-align:left;font-size:14px}
th{background:#eef0f4}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_times_are_read_as_utc_to_the_minute() {
        let at = |text| parse_export_time(text).map(crate::connectors::time::iso8601);
        assert_eq!(at("2026-11-25 15:07").as_deref(), Some("2026-11-25T15:07:00.000Z"));
        assert_eq!(at("2026-11-25T15:07:30").as_deref(), Some("2026-11-25T15:07:30.000Z"));
        assert_eq!(at("2026-11-25T15:07:30+01:00").as_deref(), Some("2026-11-25T14:07:30.000Z"));
        assert_eq!(at("2026-11-25").as_deref(), Some("2026-11-25T00:00:00.000Z"));
        assert_eq!(at(""), None);
        assert_eq!(at("soon"), None);
    }

    #[test]
    fn hubspot_export_columns_become_properties() {
        let contacts = contacts_from_csv(
            "Record ID,First Name,Email,Number of Employees,Lifecycle Stage,pricing_page_views\n7,Ada,ada@x.io,\"1,200\",Marketing Qualified Lead,4\n",
        )
        .unwrap();
        assert_eq!(contacts[0].0, "7");
        assert_eq!(
            contacts[0].1,
            json!({"hs_object_id": "7", "firstname": "Ada", "email": "ada@x.io", "numemployees": "1200",
                   "lifecyclestage": "marketingqualifiedlead", "pricing_page_views": "4"})
        );
        let err = contacts_from_csv("Name,Company\nAda,X\n").unwrap_err().to_string();
        assert!(err.contains("no Email column"), "{err}");
    }
}
