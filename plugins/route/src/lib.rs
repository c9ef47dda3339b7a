//! `route`: picks the owner of an MQL. Existing owners are kept while
//! active; otherwise ordered rules (territory, size, industry, named
//! accounts) choose a team, and weighted round-robin picks an available rep
//! (in office, within their working hours, under their daily capacity).
//! Nobody available: the fallback queue. Every decision is explained.
//!
//! Output on `routed`: the item plus `"routing": {"owner_id", "owner_name",
//! "owner_email", "owner_kind", "team", "rule", "fallback", "trail",
//! "explanation"}`.

pub mod rules;

use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, clock, emit, json, roster, state};
use rules::Config;
use serde_json::Map;

struct Route;

struct Owner {
    id: String,
    name: String,
    email: String,
    kind: &'static str,
}

/// An existing owner to keep, if they are an active rep.
fn keep(owner_id: Option<&str>, what: &str, trail: &mut Vec<String>) -> Result<Option<Owner>, NodeError> {
    let Some(id) = owner_id.filter(|id| id.starts_with("005")) else {
        return Ok(None);
    };
    match roster::get_rep(id)? {
        Some(rep) if rep.active => {
            trail.push(format!("kept the {what} owner {}", rep.name));
            Ok(Some(Owner { id: rep.id, name: rep.name, email: rep.email, kind: "user" }))
        }
        Some(rep) => {
            trail.push(format!("{what} owner {} is inactive", rep.name));
            Ok(None)
        }
        None => {
            trail.push(format!("{what} owner {id} is not on the roster"));
            Ok(None)
        }
    }
}

/// Chooses an available rep of `team_id` by weighted round-robin, leaving
/// out the reps in `exclude`.
fn pick_from_team(
    team_id: &str,
    now: i64,
    exclude: &[&str],
    trail: &mut Vec<String>,
) -> Result<Option<Owner>, NodeError> {
    let teams = roster::teams()?;
    let Some(team) = teams.iter().find(|t| t.id == team_id) else {
        trail.push(format!("team {team_id} is not on the roster"));
        return Ok(None);
    };
    let mut candidates = Vec::new();
    let mut reps = Vec::new();
    for member in &team.members {
        if exclude.contains(&member.as_str()) {
            continue;
        }
        let Some(rep) = roster::get_rep(member)? else { continue };
        let availability = roster::availability_at(member, now)?;
        if !availability.available {
            trail.push(format!("{} skipped: {}", rep.name, availability.reason.unwrap_or_default()));
            continue;
        }
        let load_key = format!("load:{}:{}", rep.id, availability.local_date);
        let load: u32 = state::get(&load_key)?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if rep.daily_capacity > 0 && load >= rep.daily_capacity {
            trail.push(format!("{} skipped: at daily capacity ({load}/{})", rep.name, rep.daily_capacity));
            continue;
        }
        candidates.push((rep.id.clone(), rep.weight));
        reps.push((rep, load_key));
    }
    let key = format!("wrr:{team_id}");
    let mut current: Map<String, Value> =
        state::get(&key)?.and_then(|v| serde_json::from_str(&v).ok()).unwrap_or_default();
    let Some(index) = rules::weighted_round_robin(&candidates, &mut current) else {
        trail.push(format!("nobody on {} is available", team.name));
        return Ok(None);
    };
    state::set(&key, &Value::Object(current).to_string())?;
    let (rep, load_key) = &reps[index];
    state::increment(load_key, 1)?;
    trail.push(format!("chose {} by weighted round-robin", rep.name));
    Ok(Some(Owner { id: rep.id.clone(), name: rep.name.clone(), email: rep.email.clone(), kind: "user" }))
}

impl Plugin for Route {
    type Config = Config;

    fn describe() -> Describe {
        Describe {
            name: "route",
            version: env!("CARGO_PKG_VERSION"),
            description: "Chooses the owner: existing owner, rules (territory, size, industry, named accounts), weighted round-robin over available reps, fallback queue",
            outputs: &["routed"],
            capabilities: &["roster:read", "state:read", "state:write"],
            config_schema: include_str!("config.schema.json"),
            lead: r#"{"routed": {"state": "routed", "detail": "{/routing/explanation}", "owner": "/routing/owner_name"}}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Config>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let config = &run.config;
        let now = clock::now();
        let mut trail = Vec::new();
        let mut rule_name = Value::Null;
        let mut team_name = Value::Null;

        let matched = item["dedupe"]["match"].as_str().unwrap_or("new").to_string();
        let mut owner = None;
        // A reassignment (the SLA ladder's) goes to the next available rep
        // of the same team, the reps it has been with left out.
        if let Some(team) = item["reassign"]["team"].as_str().map(str::to_string) {
            let exclude: Vec<&str> =
                item["reassign"]["exclude"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            if let Some(from) = item["reassign"]["from"].as_str() {
                trail.push(format!("reassigning from {from}"));
            }
            team_name = json!(team);
            owner = pick_from_team(&team, now, &exclude, &mut trail)?;
        } else if config.keep_existing_owner {
            owner = match matched.as_str() {
                "existing-lead" => keep(item["dedupe"]["lead"]["owner_id"].as_str(), "existing lead", &mut trail)?,
                "existing-account" => keep(item["dedupe"]["account"]["owner_id"].as_str(), "account", &mut trail)?,
                _ => None,
            };
        }
        if owner.is_none() && item["reassign"].is_null() {
            match rules::first_match(config, &item) {
                None => trail.push("no rule matched".into()),
                Some(rule) => {
                    trail.push(format!("matched {}", rule.name));
                    rule_name = json!(rule.name);
                    if let Some(owner_id) = &rule.owner_id {
                        owner = keep(Some(owner_id), "named-account", &mut trail)?;
                    } else if let Some(team) = &rule.team {
                        team_name = json!(team);
                        owner = pick_from_team(team, now, &[], &mut trail)?;
                    }
                }
            }
        }
        let fallback = owner.is_none();
        let owner = owner.unwrap_or_else(|| {
            trail.push(format!("fell back to {}", config.fallback_owner_name));
            Owner {
                id: config.fallback_owner_id.clone(),
                name: config.fallback_owner_name.clone(),
                email: String::new(),
                kind: "queue",
            }
        });
        item["routing"] = json!({
            "owner_id": owner.id,
            "owner_name": owner.name,
            "owner_email": owner.email,
            "owner_kind": owner.kind,
            "team": team_name,
            "rule": rule_name,
            "fallback": fallback,
            "explanation": trail.join("; "),
            "trail": trail,
        });
        Ok(vec![emit("routed", &item)])
    }
}

handoff_plugin::export!(Route);
