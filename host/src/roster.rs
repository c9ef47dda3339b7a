//! The sales roster RevOps edits (a JSON file), served to plugins through
//! the `roster` capability: reps, teams, managers, working hours in each
//! rep's time zone, out-of-office dates, capacity and weights. An edit takes
//! effect on the next call, without a restart; a broken edit is logged and
//! the last good roster stays in force. Reps Salesforce marks inactive are
//! unavailable whatever the file says.

use crate::capabilities::{Availability, CapabilityError, Rep, Roster, Team};
use crate::ledger::{Ledger, PausedRep};
use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// The roster file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterFile {
    #[serde(default, rename = "$comment")]
    /// Free text for people.
    pub comment: Option<String>,
    /// The teams.
    pub teams: Vec<TeamSpec>,
    /// The reps.
    pub reps: Vec<RepSpec>,
    /// People who lead reps but take no leads themselves (managers, VPs):
    /// `get-rep` finds them, escalations reach them.
    #[serde(default)]
    pub leaders: Vec<LeaderSpec>,
}

/// A manager or VP: reachable for escalations, never routed a lead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderSpec {
    /// Salesforce user id.
    pub id: String,
    /// Their name.
    pub name: String,
    /// Their email (Slack and email).
    pub email: String,
    /// Their title, for people (`Sales Manager, EMEA`).
    #[serde(default)]
    pub title: Option<String>,
    /// IANA time zone.
    #[serde(default = "utc")]
    pub time_zone: String,
    /// The CRM user id of whom they report to (a VP).
    #[serde(default)]
    pub manager_id: Option<String>,
}

fn utc() -> String {
    "UTC".into()
}

/// A team and what it covers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSpec {
    /// The team id routing rules name.
    pub id: String,
    /// The team's name.
    pub name: String,
    #[serde(default)]
    /// The CRM user id of the team's manager.
    pub manager_id: Option<String>,
    /// Who gets a lead when nobody on the team is available (a queue).
    #[serde(default)]
    pub fallback_owner_id: Option<String>,
    /// Territories, size bands, verticals: free JSON for routing rules.
    #[serde(default)]
    pub coverage: Value,
    /// Rep ids in round-robin order.
    pub members: Vec<String>,
}

/// A rep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepSpec {
    /// Salesforce user id.
    pub id: String,
    /// The rep's name.
    pub name: String,
    /// The rep's email (Slack and email).
    pub email: String,
    /// The team id.
    pub team: String,
    #[serde(default)]
    /// The CRM user id of the rep's manager.
    pub manager_id: Option<String>,
    /// IANA time zone.
    pub time_zone: String,
    #[serde(default)]
    /// When the rep takes leads, in their time zone.
    pub working_hours: WorkingHours,
    #[serde(default = "one")]
    /// Share of round-robin assignments relative to teammates.
    pub weight: u32,
    /// Most new leads a day; 0 for no limit.
    #[serde(default)]
    pub daily_capacity: u32,
    #[serde(default)]
    /// Absences.
    pub out_of_office: Vec<Absence>,
    #[serde(default = "yes")]
    /// False when RevOps marks the rep inactive.
    pub active: bool,
}

fn one() -> u32 {
    1
}
fn yes() -> bool {
    true
}

/// Working days and hours, local to the rep.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    /// `Mon` .. `Sun`.
    pub days: Vec<String>,
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`, exclusive.
    pub end: String,
}

impl Default for WorkingHours {
    fn default() -> Self {
        WorkingHours {
            days: ["Mon", "Tue", "Wed", "Thu", "Fri"].map(String::from).to_vec(),
            start: "08:00".into(),
            end: "18:00".into(),
        }
    }
}

impl std::fmt::Display for WorkingHours {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}-{}", self.days.join(","), self.start, self.end)
    }
}

/// An absence, inclusive dates `YYYY-MM-DD` in the rep's time zone.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Absence {
    /// First day away, `YYYY-MM-DD`.
    pub from: String,
    /// Last day away, `YYYY-MM-DD`.
    pub to: String,
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

fn minutes(hhmm: &str) -> Option<u32> {
    let (h, m) = hhmm.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60).then_some(h * 60 + m)
}

/// The annotation with which a plugin's config schema marks a string that
/// names a roster entry: `"x-handoff-roster": "team"` (a team id) or
/// `"rep"` (a rep's or leader's CRM user id). `handoff validate --roster`
/// and `handoff serve` check each such value against the roster.
pub const REFERENCE_KEY: &str = "x-handoff-roster";

/// A value in a node's config that names a roster entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// Where, as a JSON pointer into the config.
    pub pointer: String,
    /// What it names: `team` or `rep`.
    pub kind: String,
    /// The id it names.
    pub id: String,
}

/// The values of `config` that `schema` marks with [`REFERENCE_KEY`],
/// following `properties`, `items`, `additionalProperties`, local `$ref`s
/// and `allOf`/`anyOf`/`oneOf`.
pub fn references(schema: &Value, config: &Value) -> Vec<Reference> {
    fn walk(root: &Value, schema: &Value, value: &Value, pointer: &str, depth: usize, out: &mut Vec<Reference>) {
        if depth > 32 {
            return;
        }
        if let Some(target) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#'))
            && let Some(target) = root.pointer(target)
        {
            walk(root, target, value, pointer, depth + 1, out);
        }
        if let (Some(kind), Some(id)) = (schema.get(REFERENCE_KEY).and_then(Value::as_str), value.as_str()) {
            let found = Reference { pointer: pointer.to_string(), kind: kind.to_string(), id: id.to_string() };
            if !out.contains(&found) {
                out.push(found);
            }
        }
        for combined in ["allOf", "anyOf", "oneOf"] {
            for sub in schema.get(combined).and_then(Value::as_array).into_iter().flatten() {
                walk(root, sub, value, pointer, depth + 1, out);
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Value::Object(members) = value {
            for (key, member) in members {
                let at = format!("{pointer}/{}", crate::pipeline::escape_segment(key));
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => walk(root, sub, member, &at, depth + 1, out),
                    None => {
                        if let Some(sub) = schema.get("additionalProperties").filter(|s| s.is_object()) {
                            walk(root, sub, member, &at, depth + 1, out);
                        }
                    }
                }
            }
        }
        if let (Value::Array(items), Some(sub)) = (value, schema.get("items").filter(|s| s.is_object())) {
            for (i, item) in items.iter().enumerate() {
                walk(root, sub, item, &format!("{pointer}/{i}"), depth + 1, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(schema, schema, config, "", 0, &mut out);
    out
}

impl RosterFile {
    /// What is wrong with `reference` against this roster, if anything:
    /// (the problem, what to do).
    pub fn dangling(&self, reference: &Reference) -> Option<(String, String)> {
        let known: Vec<&str> = match reference.kind.as_str() {
            "team" => self.teams.iter().map(|t| t.id.as_str()).collect(),
            "rep" => {
                self.reps.iter().map(|r| r.id.as_str()).chain(self.leaders.iter().map(|l| l.id.as_str())).collect()
            }
            _ => return None,
        };
        (!known.contains(&reference.id.as_str())).then(|| {
            (
                format!("{} '{}' is not in the roster", reference.kind, reference.id),
                format!("use one of the roster's {}s: {}", reference.kind, known.join(", ")),
            )
        })
    }

    /// Parses and checks a roster: time zones, hours, team membership.
    ///
    /// # Errors
    ///
    /// Every problem, naming the rep or team.
    pub fn parse(text: &str) -> Result<Self> {
        let roster: RosterFile = serde_json::from_str(text)?;
        let mut problems = Vec::new();
        for rep in &roster.reps {
            if jiff::tz::TimeZone::get(&rep.time_zone).is_err() {
                problems.push(format!("rep {} ({}): unknown time zone '{}'", rep.id, rep.name, rep.time_zone));
            }
            let hours = &rep.working_hours;
            if minutes(&hours.start).zip(minutes(&hours.end)).is_none_or(|(s, e)| s >= e) {
                problems.push(format!(
                    "rep {}: working hours {}-{} are not HH:MM with start before end",
                    rep.id, hours.start, hours.end
                ));
            }
            if let Some(day) = hours.days.iter().find(|d| !DAYS.contains(&d.as_str())) {
                problems.push(format!("rep {}: '{day}' is not one of {}", rep.id, DAYS.join(", ")));
            }
            if !roster.teams.iter().any(|t| t.id == rep.team) {
                problems.push(format!("rep {}: team '{}' is not defined", rep.id, rep.team));
            }
            for absence in &rep.out_of_office {
                if jiff::civil::Date::strptime("%Y-%m-%d", &absence.from).is_err()
                    || jiff::civil::Date::strptime("%Y-%m-%d", &absence.to).is_err()
                {
                    problems.push(format!("rep {}: out_of_office dates must be YYYY-MM-DD", rep.id));
                }
            }
        }
        for leader in &roster.leaders {
            if jiff::tz::TimeZone::get(&leader.time_zone).is_err() {
                problems
                    .push(format!("leader {} ({}): unknown time zone '{}'", leader.id, leader.name, leader.time_zone));
            }
        }
        for team in &roster.teams {
            for member in &team.members {
                if !roster.reps.iter().any(|r| &r.id == member) {
                    problems.push(format!("team {}: member {member} is not a rep", team.id));
                }
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        Ok(roster)
    }
}

/// The roster served from a file, reloaded when it changes; reps paused by
/// the SLA ladder are kept in the ledger, where every instance sees them.
pub struct FileRoster {
    path: PathBuf,
    current: Mutex<(Arc<RosterFile>, Option<SystemTime>)>,
    inactive_in_crm: Mutex<HashSet<String>>,
    pauses: Option<Arc<dyn Ledger>>,
}

impl FileRoster {
    /// Loads `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a valid roster.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the roster {}", path.display()))?;
        let roster = RosterFile::parse(&text).with_context(|| format!("in the roster {}", path.display()))?;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
        Ok(FileRoster {
            path: path.to_path_buf(),
            current: Mutex::new((Arc::new(roster), mtime)),
            inactive_in_crm: Mutex::new(HashSet::new()),
            pauses: None,
        })
    }

    /// Keeps paused reps in `ledger` (without it, `pause` is refused).
    #[must_use]
    pub fn with_pauses_in(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.pauses = Some(ledger);
        self
    }

    /// Reps paused now.
    ///
    /// # Errors
    ///
    /// When the ledger cannot be read.
    pub async fn paused(&self) -> Result<Vec<PausedRep>, CapabilityError> {
        match &self.pauses {
            Some(ledger) => ledger.paused_reps().await.map_err(|e| CapabilityError::Unavailable(format!("{e:#}"))),
            None => Ok(Vec::new()),
        }
    }

    fn leader(spec: &LeaderSpec) -> Rep {
        Rep {
            id: spec.id.clone(),
            name: spec.name.clone(),
            email: spec.email.clone(),
            team: String::new(),
            manager_id: spec.manager_id.clone(),
            time_zone: spec.time_zone.clone(),
            weight: 0,
            daily_capacity: 0,
            working_hours: WorkingHours::default().to_string(),
            active: true,
        }
    }

    /// Marks the users Salesforce reports inactive.
    pub fn set_inactive_in_crm(&self, ids: impl IntoIterator<Item = String>) {
        *self.inactive_in_crm.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ids.into_iter().collect();
    }

    /// The roster in force, reloading the file if it changed.
    pub fn current(&self) -> Arc<RosterFile> {
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if mtime != current.1 {
            match std::fs::read_to_string(&self.path).map_err(anyhow::Error::from).and_then(|t| RosterFile::parse(&t)) {
                Ok(roster) => {
                    tracing::info!(path = %self.path.display(), "roster reloaded");
                    *current = (Arc::new(roster), mtime);
                }
                Err(e) => {
                    tracing::error!(path = %self.path.display(), error = %e, "roster edit rejected; the previous roster stays in force");
                    current.1 = mtime;
                }
            }
        }
        current.0.clone()
    }

    fn rep(spec: &RepSpec, inactive: &HashSet<String>) -> Rep {
        Rep {
            id: spec.id.clone(),
            name: spec.name.clone(),
            email: spec.email.clone(),
            team: spec.team.clone(),
            manager_id: spec.manager_id.clone(),
            time_zone: spec.time_zone.clone(),
            weight: spec.weight,
            daily_capacity: spec.daily_capacity,
            working_hours: spec.working_hours.to_string(),
            active: spec.active && !inactive.contains(&spec.id),
        }
    }
}

/// Whether `spec` can take a lead at `at_ms`, and its local date then.
pub fn availability(spec: &RepSpec, active_in_crm: bool, at_ms: i64) -> Availability {
    let zone = jiff::tz::TimeZone::get(&spec.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let local = jiff::Timestamp::from_millisecond(at_ms).unwrap_or_default().to_zoned(zone);
    let date = local.date().to_string();
    let unavailable =
        |reason: String| Availability { available: false, reason: Some(reason), local_date: date.clone() };
    if !spec.active {
        return unavailable("marked inactive in the roster".into());
    }
    if !active_in_crm {
        return unavailable("inactive in Salesforce".into());
    }
    if let Some(absence) =
        spec.out_of_office.iter().find(|a| a.from.as_str() <= date.as_str() && date.as_str() <= a.to.as_str())
    {
        return unavailable(format!("out of office until {}", absence.to));
    }
    let day = DAYS[local.weekday().to_monday_zero_offset() as usize];
    let now = u32::from(local.hour().unsigned_abs()) * 60 + u32::from(local.minute().unsigned_abs());
    let hours = &spec.working_hours;
    let within = hours.days.iter().any(|d| d == day)
        && minutes(&hours.start).zip(minutes(&hours.end)).is_some_and(|(s, e)| s <= now && now < e);
    if !within {
        return unavailable(format!(
            "outside working hours ({day} {:02}:{:02} {}; works {hours})",
            now / 60,
            now % 60,
            spec.time_zone
        ));
    }
    Availability { available: true, reason: None, local_date: date }
}

#[async_trait::async_trait]
impl Roster for FileRoster {
    async fn teams(&self) -> Result<Vec<Team>, CapabilityError> {
        Ok(self
            .current()
            .teams
            .iter()
            .map(|t| Team {
                id: t.id.clone(),
                name: t.name.clone(),
                members: t.members.clone(),
                manager_id: t.manager_id.clone(),
                fallback_owner_id: t.fallback_owner_id.clone(),
                coverage: t.coverage.to_string(),
            })
            .collect())
    }

    async fn get_rep(&self, id: &str) -> Result<Option<Rep>, CapabilityError> {
        let roster = self.current();
        let inactive = self.inactive_in_crm.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(roster
            .reps
            .iter()
            .find(|r| r.id == id)
            .map(|r| Self::rep(r, &inactive))
            .or_else(|| roster.leaders.iter().find(|l| l.id == id).map(Self::leader)))
    }

    async fn availability_at(&self, rep_id: &str, at: i64) -> Result<Availability, CapabilityError> {
        let roster = self.current();
        let spec = roster
            .reps
            .iter()
            .find(|r| r.id == rep_id)
            .ok_or_else(|| CapabilityError::NotFound(format!("no rep {rep_id} in the roster")))?;
        let active_in_crm =
            !self.inactive_in_crm.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains(rep_id);
        let available = availability(spec, active_in_crm, at);
        if available.available
            && let Some(paused) = self.paused().await?.into_iter().find(|p| p.rep_id == rep_id)
        {
            return Ok(Availability {
                available: false,
                reason: Some(format!("paused: {}", paused.reason)),
                ..available
            });
        }
        Ok(available)
    }

    async fn working_time_after(&self, rep_id: &str, start: i64, duration_ms: i64) -> Result<i64, CapabilityError> {
        let roster = self.current();
        let spec = roster
            .reps
            .iter()
            .find(|r| r.id == rep_id)
            .ok_or_else(|| CapabilityError::NotFound(format!("no rep {rep_id} in the roster")))?;
        working_time_after(spec, start, duration_ms)
            .ok_or_else(|| CapabilityError::Invalid(format!("rep {rep_id} has no working hours to count in")))
    }

    async fn pause(&self, rep_id: &str, reason: &str) -> Result<(), CapabilityError> {
        let ledger =
            self.pauses.as_ref().ok_or_else(|| CapabilityError::Unavailable("no ledger keeps pauses".into()))?;
        if !self.current().reps.iter().any(|r| r.id == rep_id) {
            return Err(CapabilityError::NotFound(format!("no rep {rep_id} in the roster")));
        }
        ledger.set_rep_paused(rep_id, Some(reason)).await.map_err(|e| CapabilityError::Unavailable(format!("{e:#}")))
    }

    async fn resume(&self, rep_id: &str) -> Result<(), CapabilityError> {
        let ledger =
            self.pauses.as_ref().ok_or_else(|| CapabilityError::Unavailable("no ledger keeps pauses".into()))?;
        ledger.set_rep_paused(rep_id, None).await.map_err(|e| CapabilityError::Unavailable(format!("{e:#}")))
    }
}

/// The time `duration_ms` of `spec`'s working time after `start`: working
/// days and hours in the rep's time zone, absences not counted out (an SLA
/// clock pauses for nights and weekends, not for vacations). `None` when the
/// rep works no day at all.
pub fn working_time_after(spec: &RepSpec, start: i64, duration_ms: i64) -> Option<i64> {
    let zone = jiff::tz::TimeZone::get(&spec.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
    let hours = &spec.working_hours;
    let (open, close) = (minutes(&hours.start)?, minutes(&hours.end)?);
    if hours.days.is_empty() || open >= close {
        return None;
    }
    // `minute` minutes into `date`, local time (24:00 is the next midnight).
    let local = |date: jiff::civil::Date, minute: u32| -> Option<i64> {
        let zoned = if minute >= 24 * 60 {
            date.tomorrow().ok()?.to_zoned(zone.clone()).ok()?
        } else {
            date.at(i8::try_from(minute / 60).ok()?, i8::try_from(minute % 60).ok()?, 0, 0)
                .to_zoned(zone.clone())
                .ok()?
        };
        Some(zoned.timestamp().as_millisecond())
    };
    let mut left = duration_ms.max(0);
    let mut date = jiff::Timestamp::from_millisecond(start).ok()?.to_zoned(zone.clone()).date();
    // A few years of days at most: enough for any SLA, and bounded.
    for _ in 0..1500 {
        let day = DAYS[date.weekday().to_monday_zero_offset() as usize];
        if hours.days.iter().any(|d| d == day) {
            let (day_open, day_close) = (local(date, open)?, local(date, close)?);
            let from = start.max(day_open);
            if from < day_close {
                if left <= day_close - from {
                    return Some(from + left);
                }
                left -= day_close - from;
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_found_through_refs_items_and_maps_and_checked() {
        let schema = serde_json::json!({
            "$defs": {"team": {"type": "string", "x-handoff-roster": "team"}},
            "properties": {
                "rules": {"items": {"oneOf": [{"properties": {"team": {"$ref": "#/$defs/team"}}}]}},
                "by_region": {"additionalProperties": {"type": "string", "x-handoff-roster": "rep"}}
            }
        });
        let config = serde_json::json!({
            "rules": [{"team": "emea"}, {"owner_id": "x"}, {"team": "nowhere"}],
            "by_region": {"EMEA": "005A", "NA": "005Z"}
        });
        let found = references(&schema, &config);
        let pointers: Vec<&str> = found.iter().map(|r| r.pointer.as_str()).collect();
        assert_eq!(pointers, ["/rules/0/team", "/rules/2/team", "/by_region/EMEA", "/by_region/NA"]);
        let roster = RosterFile {
            comment: None,
            teams: vec![
                serde_json::from_value(serde_json::json!({"id": "emea", "name": "EMEA", "members": ["005A"]})).unwrap(),
            ],
            reps: vec![rep()],
            leaders: Vec::new(),
        };
        let dangling: Vec<String> = found.iter().filter_map(|r| roster.dangling(r)).map(|(m, _)| m).collect();
        assert_eq!(dangling, ["team 'nowhere' is not in the roster", "rep '005Z' is not in the roster"]);
    }

    fn rep() -> RepSpec {
        serde_json::from_value(serde_json::json!({
            "id": "005A", "name": "Lena", "email": "lena@x.com", "team": "emea", "time_zone": "Europe/Berlin",
            "working_hours": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "08:00", "end": "18:00"},
            "out_of_office": [{"from": "2026-12-24", "to": "2026-12-31"}]
        }))
        .unwrap()
    }

    fn at(iso: &str) -> i64 {
        iso.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn working_time_skips_nights_and_weekends_in_the_reps_time_zone() {
        // Friday 17:55 in Berlin (16:55 UTC): 5 minutes that day, 25 on
        // Monday from 08:00, so 08:25 Berlin (07:25 UTC).
        let due = working_time_after(&rep(), at("2026-11-27T16:55:00Z"), 30 * 60_000).unwrap();
        assert_eq!(due, at("2026-11-30T07:25:00Z"));
        // Inside the day it is plain addition.
        assert_eq!(working_time_after(&rep(), at("2026-11-25T09:00:00Z"), 60_000).unwrap(), at("2026-11-25T09:01:00Z"));
        // Saturday: starts Monday 08:00.
        assert_eq!(working_time_after(&rep(), at("2026-11-28T12:00:00Z"), 0).unwrap(), at("2026-11-30T07:00:00Z"));
    }

    #[test]
    fn working_hours_are_read_in_the_reps_time_zone() {
        // 07:30 UTC on a Wednesday is 08:30 in Berlin (winter time).
        let open = availability(&rep(), true, at("2026-11-25T07:30:00Z"));
        assert!(open.available, "{open:?}");
        assert_eq!(open.local_date, "2026-11-25");
        // 17:30 UTC is 18:30 in Berlin: closed.
        let closed = availability(&rep(), true, at("2026-11-25T17:30:00Z"));
        assert!(closed.reason.unwrap().contains("outside working hours (Wed 18:30 Europe/Berlin"));
        // Saturday.
        assert!(!availability(&rep(), true, at("2026-11-28T10:00:00Z")).available);
    }

    #[test]
    fn out_of_office_and_inactive_reps_are_unavailable() {
        let away = availability(&rep(), true, at("2026-12-28T10:00:00Z"));
        assert_eq!(away.reason.as_deref(), Some("out of office until 2026-12-31"));
        let gone = availability(&rep(), false, at("2026-11-25T10:00:00Z"));
        assert_eq!(gone.reason.as_deref(), Some("inactive in Salesforce"));
    }

    #[test]
    fn a_roster_with_mistakes_names_them() {
        let text = r#"{"teams": [{"id": "emea", "name": "EMEA", "members": ["005A", "005Z"]}],
            "reps": [{"id": "005A", "name": "Lena", "email": "l@x.com", "team": "emea", "time_zone": "Europe/Berlln"}]}"#;
        let err = RosterFile::parse(text).unwrap_err().to_string();
        assert!(err.contains("unknown time zone 'Europe/Berlln'") && err.contains("member 005Z is not a rep"), "{err}");
    }

    #[tokio::test]
    async fn an_edit_takes_effect_without_a_restart_and_a_bad_edit_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roster.json");
        let write = |weight: u32| {
            let text = format!(
                r#"{{"teams": [{{"id": "t", "name": "T", "members": ["005A"]}}],
                "reps": [{{"id": "005A", "name": "A", "email": "a@x.com", "team": "t", "time_zone": "UTC", "weight": {weight}}}]}}"#
            );
            std::fs::write(&path, text).unwrap();
        };
        write(1);
        let roster = FileRoster::load(&path).unwrap();
        assert_eq!(roster.get_rep("005A").await.unwrap().unwrap().weight, 1);
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(3);
        let file = std::fs::File::options().append(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(1)).unwrap();
        assert_eq!(roster.get_rep("005A").await.unwrap().unwrap().weight, 3);
        std::fs::write(&path, "{ broken").unwrap();
        file.set_modified(SystemTime::now() + std::time::Duration::from_secs(2)).unwrap();
        assert_eq!(roster.get_rep("005A").await.unwrap().unwrap().weight, 3, "the last good roster stays");
    }
}
