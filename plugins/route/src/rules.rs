//! Routing rules and weighted round-robin, as pure functions.

use handoff_plugin::contact::{prop, prop_number, region};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The node config RevOps edits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tried in order; the first whose `when` holds decides.
    pub rules: Vec<Rule>,
    /// Owner (usually a queue) when no rule matches or nobody is available.
    pub fallback_owner_id: String,
    #[serde(default = "queue_name")]
    /// Its name, as the routing trail shows it.
    pub fallback_owner_name: String,
    /// Keep an existing lead's or account's owner while they are active.
    #[serde(default = "yes")]
    pub keep_existing_owner: bool,
}

fn queue_name() -> String {
    "Lead queue".into()
}
fn yes() -> bool {
    true
}

/// One routing rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Its name, as the routing trail shows it.
    pub name: String,
    #[serde(default)]
    /// When it applies.
    pub when: When,
    /// The team whose members share the leads (weighted round-robin).
    #[serde(default)]
    pub team: Option<String>,
    /// Or one owner (named accounts).
    #[serde(default)]
    pub owner_id: Option<String>,
}

/// Conditions; all that are given must hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    /// Sales regions (`NA`, `LATAM`, `EMEA`, `APAC`).
    pub regions: Vec<String>,
    #[serde(default)]
    /// Countries (HubSpot's `country`).
    pub countries: Vec<String>,
    #[serde(default)]
    /// States or provinces.
    pub states: Vec<String>,
    #[serde(default)]
    /// Industries.
    pub industries: Vec<String>,
    #[serde(default)]
    /// Email domains (named accounts).
    pub domains: Vec<String>,
    /// Fewest employees.
    pub min_employees: Option<f64>,
    /// Most employees.
    pub max_employees: Option<f64>,
}

fn any_eq(list: &[String], value: Option<&str>) -> bool {
    list.is_empty() || value.is_some_and(|v| list.iter().any(|x| x.eq_ignore_ascii_case(v)))
}

impl When {
    /// Whether the lead in `item` satisfies every given condition.
    pub fn holds(&self, item: &Value) -> bool {
        let country = prop(item, "country");
        let employees = prop_number(item, "numemployees");
        let domain = item["validation"]["email_domain"].as_str();
        any_eq(&self.regions, country.and_then(region))
            && any_eq(&self.countries, country)
            && any_eq(&self.states, prop(item, "state"))
            && any_eq(&self.industries, prop(item, "industry"))
            && any_eq(&self.domains, domain)
            && self.min_employees.is_none_or(|min| employees.is_some_and(|e| e >= min))
            && self.max_employees.is_none_or(|max| employees.is_some_and(|e| e <= max))
    }
}

/// The first rule that matches the lead.
pub fn first_match<'a>(config: &'a Config, item: &Value) -> Option<&'a Rule> {
    config.rules.iter().find(|rule| rule.when.holds(item))
}

/// Smooth weighted round-robin (as nginx does it): every candidate gains
/// its weight, the largest total wins and pays back the sum. Returns the
/// index chosen among `candidates` (id, weight) and updates `current`.
/// Deterministic; ties go to the earlier candidate.
pub fn weighted_round_robin(candidates: &[(String, u32)], current: &mut Map<String, Value>) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let total: i64 = candidates.iter().map(|(_, w)| i64::from((*w).max(1))).sum();
    let mut best: Option<(usize, i64)> = None;
    for (i, (id, weight)) in candidates.iter().enumerate() {
        let value = current.get(id).and_then(Value::as_i64).unwrap_or(0) + i64::from((*weight).max(1));
        current.insert(id.clone(), value.into());
        if best.is_none_or(|(_, b)| value > b) {
            best = Some((i, value));
        }
    }
    let (index, value) = best?;
    current.insert(candidates[index].0.clone(), (value - total).into());
    Some(index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_match_in_order_on_region_size_and_domain() {
        let config: Config = serde_json::from_value(json!({
            "fallback_owner_id": "00G",
            "rules": [
                {"name": "named", "when": {"domains": ["umbrellahealth.de"]}, "owner_id": "005L"},
                {"name": "emea-enterprise", "when": {"regions": ["EMEA"], "min_employees": 1000}, "team": "emea-ent"},
                {"name": "emea", "when": {"regions": ["EMEA"]}, "team": "emea"},
                {"name": "na-west", "when": {"countries": ["United States"], "states": ["CA", "WA"]}, "team": "west"}
            ]
        }))
        .unwrap();
        let lead = |country: &str, employees: &str, domain: &str, state: &str| json!({"properties": {"country": country, "numemployees": employees, "state": state}, "validation": {"email_domain": domain}});
        assert_eq!(first_match(&config, &lead("Germany", "50", "umbrellahealth.de", "")).unwrap().name, "named");
        assert_eq!(first_match(&config, &lead("Germany", "1200", "x.de", "")).unwrap().name, "emea-enterprise");
        assert_eq!(first_match(&config, &lead("France", "200", "x.fr", "")).unwrap().name, "emea");
        assert_eq!(first_match(&config, &lead("United States", "200", "x.com", "ca")).unwrap().name, "na-west");
        assert!(first_match(&config, &lead("United States", "200", "x.com", "NY")).is_none());
    }

    #[test]
    fn weighted_round_robin_shares_by_weight_and_is_deterministic() {
        let reps = vec![("a".to_string(), 2), ("b".to_string(), 1), ("c".to_string(), 1)];
        let mut state = Map::new();
        let picks: Vec<&str> =
            (0..8).map(|_| reps[weighted_round_robin(&reps, &mut state).unwrap()].0.as_str()).collect();
        assert_eq!(picks, ["a", "b", "c", "a", "a", "b", "c", "a"]);
        assert_eq!(picks.iter().filter(|p| **p == "a").count(), 4, "a has half the weight");
    }

    #[test]
    fn an_unavailable_rep_is_skipped_without_losing_the_others_turns() {
        let mut state = Map::new();
        let all = vec![("a".to_string(), 1), ("b".to_string(), 1)];
        assert_eq!(weighted_round_robin(&all, &mut state), Some(0));
        let only_a = vec![("a".to_string(), 1)];
        assert_eq!(weighted_round_robin(&only_a, &mut state), Some(0));
        assert_eq!(all[weighted_round_robin(&all, &mut state).unwrap()].0, "b", "b's turn is still due");
    }
}
