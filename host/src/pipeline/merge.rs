//! The built-in `merge` node: joins the items that reached it on different
//! branches of one execution, what n8n's Merge node does.
//!
//! A merge node is written like any node with `"plugin": "merge"`; its
//! config names its inputs by the nodes that feed them:
//!
//! ```json
//! {"id": "join", "plugin": "merge", "timeout": "250ms",
//!  "config": {"inputs": [{"name": "lead", "from": ["assign", "dedupe"]},
//!                        {"name": "summary", "from": ["summarize"], "required": false, "fields": ["summary"]}]}}
//! ```
//!
//! Items are grouped by `key` (a JSON pointer into each item; one group per
//! execution without it). In `wait-for-all` mode a group is merged when
//! every input has an item, or `timeout` after its required inputs are in,
//! or as soon as nothing upstream can send it anything more. In `first`
//! mode the first item of a group goes on at once. The merged item is the
//! inputs' objects laid over each other in the listed order (`fields` takes
//! only those fields of an input). It goes out on `main`; an item that comes
//! after its group was merged goes out on `late` (e.g. a summary that
//! missed the DM updates it in place). A group whose required inputs never
//! came ends its branch, recorded with what was missing.

use crate::record::Item;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The plugin name that makes a node a merge node.
pub const MERGE_PLUGIN: &str = "merge";
/// The port merged items go out on.
pub const MERGED_PORT: &str = "main";
/// The port items that arrive after their group was merged go out on.
pub const LATE_PORT: &str = "late";

/// A merge node's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeSpec {
    /// The inputs, in the order their items are laid over each other.
    pub inputs: Vec<MergeInput>,
    /// When a group goes on.
    #[serde(default)]
    pub mode: MergeMode,
    /// JSON pointer into each item: items with the same value are merged
    /// together. Unset: one group per execution.
    #[serde(default)]
    pub key: Option<String>,
}

/// One input of a merge node.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MergeInput {
    /// The input's name, for the record.
    pub name: String,
    /// The nodes whose items arrive on this input.
    pub from: Vec<String>,
    /// Whether the merge waits for it (`wait-for-all`); true by default.
    #[serde(default = "yes")]
    pub required: bool,
    /// Only these top-level fields of the input's item are taken.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// When a merge group goes on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeMode {
    /// When every input has an item (or the timeout after the required ones).
    #[default]
    WaitForAll,
    /// With the first item of the group.
    First,
}

impl MergeSpec {
    /// Reads a merge node's config, naming each problem.
    ///
    /// # Errors
    ///
    /// The config does not parse, or names no input, an input twice, or an
    /// input without sources.
    pub fn parse(config: &Value) -> Result<MergeSpec, Vec<(String, String)>> {
        let spec: MergeSpec =
            serde_json::from_value(config.clone()).map_err(|e| vec![(String::new(), e.to_string())])?;
        let mut problems = Vec::new();
        if spec.inputs.is_empty() {
            problems.push(("/inputs".to_string(), "a merge node needs at least one input".to_string()));
        }
        for (i, input) in spec.inputs.iter().enumerate() {
            if spec.inputs[..i].iter().any(|earlier| earlier.name == input.name) {
                problems.push((format!("/inputs/{i}/name"), format!("input '{}' is named twice", input.name)));
            }
            if input.from.is_empty() {
                problems.push((format!("/inputs/{i}/from"), format!("input '{}' names no source node", input.name)));
            }
            for (j, source) in input.from.iter().enumerate() {
                if spec.inputs[..i].iter().any(|earlier| earlier.from.contains(source)) {
                    problems.push((
                        format!("/inputs/{i}/from/{j}"),
                        format!("node '{source}' already feeds an earlier input"),
                    ));
                }
            }
        }
        if let Some(key) = &spec.key
            && !key.is_empty()
            && !key.starts_with('/')
        {
            problems.push(("/key".to_string(), format!("key '{key}' is not a JSON pointer (like /properties/email)")));
        }
        if problems.is_empty() { Ok(spec) } else { Err(problems) }
    }

    /// The input fed by `source`.
    pub fn input_of(&self, source: &str) -> Option<usize> {
        self.inputs.iter().position(|i| i.from.iter().any(|f| f == source))
    }

    /// The group an item belongs to.
    pub fn key_of(&self, item: &Item) -> String {
        match self.key.as_deref().filter(|k| !k.is_empty()) {
            None => String::new(),
            Some(pointer) => match item.value().pointer(pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
        }
    }
}

/// Why a group went on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeReason {
    /// Every input had an item.
    AllIn,
    /// `first` mode: the first item.
    First,
    /// The timeout passed after the required inputs were in.
    TimedOut,
    /// Nothing upstream could send the group anything more.
    NoMoreInputs,
}

impl MergeReason {
    /// In words, for the record.
    pub fn describe(self) -> &'static str {
        match self {
            MergeReason::AllIn => "every input arrived",
            MergeReason::First => "first item (mode first)",
            MergeReason::TimedOut => "timed out waiting for the optional inputs",
            MergeReason::NoMoreInputs => "no more items could arrive",
        }
    }
}

/// What the merge does with an item that reaches it.
#[derive(Debug)]
pub enum Arrival {
    /// It waits in its group.
    Held,
    /// Its group goes on.
    Merged(Merged),
    /// Its group's recorded merge (from an earlier run of the execution)
    /// now has the inputs it used: it goes on as recorded.
    Replayed {
        /// The group's key.
        key: String,
        /// The merged item, as recorded.
        item: Item,
    },
    /// An input the recorded merge did not use (it was late then): it goes
    /// out on `late` once the recorded merge has gone on.
    LateAfterReplay {
        /// The group's key.
        key: String,
        /// The input it arrived on.
        input: String,
    },
    /// Its group went on earlier (or its input was already filled): it goes
    /// out on `late` as it is.
    Late {
        /// The group's key.
        key: String,
        /// The input it arrived on.
        input: String,
    },
}

/// A group that went on.
#[derive(Debug)]
pub struct Merged {
    /// The group's key.
    pub key: String,
    /// The merged item.
    pub item: Item,
    /// The inputs that had an item.
    pub present: Vec<String>,
    /// The inputs that had none.
    pub missing: Vec<String>,
    /// Why it went on.
    pub reason: MergeReason,
    /// How long the group waited, from its first item.
    pub waited: Duration,
}

/// A group that never went on: a required input never came.
#[derive(Debug)]
pub struct Incomplete {
    /// The group's key.
    pub key: String,
    /// The inputs that had an item.
    pub present: Vec<String>,
    /// The required inputs that had none.
    pub missing: Vec<String>,
}

struct Group {
    items: Vec<Option<Item>>,
    first_at: Instant,
    /// When the required inputs were all in (the timeout counts from here).
    ready_at: Option<Instant>,
    merged: bool,
    /// The recorded merge of an earlier run, until its inputs are in again.
    replay: Option<Item>,
    /// Inputs the recorded merge used that have not arrived again.
    absorbed: Vec<bool>,
}

/// The groups of one merge node in one execution.
pub struct MergeState {
    spec: MergeSpec,
    timeout: Option<Duration>,
    groups: HashMap<String, Group>,
    /// Group keys in order of their first item, so closing is deterministic.
    order: Vec<String>,
}

impl MergeState {
    /// No groups yet; `timeout` is the node's `timeout`, if set.
    pub fn new(spec: MergeSpec, timeout: Option<Duration>) -> Self {
        MergeState { spec, timeout, groups: HashMap::new(), order: Vec::new() }
    }

    /// The node's spec.
    pub fn spec(&self) -> &MergeSpec {
        &self.spec
    }

    /// The group went on in an earlier run of the execution with the
    /// inputs `present`, as `item` (replayed from the journal). It goes on
    /// the same way once those inputs have arrived again, so what follows
    /// it still follows what fed it; any other input's item is late.
    pub fn replayed(&mut self, key: &str, present: &[String], item: Item, now: Instant) {
        let awaiting: Vec<bool> = self.spec.inputs.iter().map(|i| present.contains(&i.name)).collect();
        let group = self.group(key, now);
        group.replay = Some(item);
        group.absorbed = awaiting;
    }

    /// Whether the group exists yet.
    pub fn knows(&self, key: &str) -> bool {
        self.groups.contains_key(key)
    }

    fn group(&mut self, key: &str, now: Instant) -> &mut Group {
        if !self.groups.contains_key(key) {
            self.order.push(key.to_string());
        }
        let inputs = self.spec.inputs.len();
        self.groups.entry(key.to_string()).or_insert_with(|| Group {
            items: vec![None; inputs],
            first_at: now,
            ready_at: None,
            merged: false,
            replay: None,
            absorbed: vec![false; inputs],
        })
    }

    /// An item from node `source` arrives.
    pub fn arrive(&mut self, source: &str, item: Item, now: Instant) -> Arrival {
        let Some(input) = self.spec.input_of(source) else {
            // The checks refuse a connection into a merge from a node no
            // input lists; should one get here, it is passed on, not lost.
            return Arrival::Late { key: String::new(), input: source.to_string() };
        };
        let key = self.spec.key_of(&item);
        let mode = self.spec.mode;
        let name = self.spec.inputs[input].name.clone();
        let required: Vec<bool> = self.spec.inputs.iter().map(|i| i.required).collect();
        let group = self.group(&key, now);
        if group.replay.is_some() {
            if !group.absorbed[input] {
                return Arrival::LateAfterReplay { key, input: name };
            }
            group.absorbed[input] = false;
            if group.absorbed.iter().any(|a| *a) {
                return Arrival::Held;
            }
            group.merged = true;
            let item = group.replay.take().expect("checked");
            return Arrival::Replayed { key, item };
        }
        if group.merged || group.items[input].is_some() {
            return Arrival::Late { key, input: name };
        }
        group.items[input] = Some(item);
        if mode == MergeMode::First {
            return Arrival::Merged(self.merge(&key, MergeReason::First, now));
        }
        let group = self.groups.get_mut(&key).expect("the group was just made");
        if group.items.iter().all(Option::is_some) {
            return Arrival::Merged(self.merge(&key, MergeReason::AllIn, now));
        }
        if group.ready_at.is_none() && group.items.iter().zip(&required).all(|(item, req)| item.is_some() || !req) {
            group.ready_at = Some(now);
            if self.timeout.is_some_and(|t| t.is_zero()) {
                return Arrival::Merged(self.merge(&key, MergeReason::TimedOut, now));
            }
        }
        Arrival::Held
    }

    /// When the next waiting group times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.timeout?;
        self.groups
            .values()
            .filter(|g| !g.merged && g.replay.is_none())
            .filter_map(|g| g.ready_at)
            .map(|at| at + timeout)
            .min()
    }

    /// The groups whose timeout has passed, merged with what they have.
    pub fn expire(&mut self, now: Instant) -> Vec<Merged> {
        let Some(timeout) = self.timeout else { return Vec::new() };
        let due: Vec<String> = self
            .order
            .iter()
            .filter(|k| {
                let g = &self.groups[k.as_str()];
                !g.merged && g.replay.is_none() && g.ready_at.is_some_and(|at| at + timeout <= now)
            })
            .cloned()
            .collect();
        due.iter().map(|k| self.merge(k, MergeReason::TimedOut, now)).collect()
    }

    /// Nothing more can arrive: a replayed group goes on as recorded
    /// (returned first, with its key), each other waiting group is merged
    /// with what it has, or, without its required inputs, reported
    /// incomplete.
    pub fn close(&mut self, now: Instant) -> (Vec<(String, Item)>, Vec<Merged>, Vec<Incomplete>) {
        let mut replays = Vec::new();
        let mut merged = Vec::new();
        let mut incomplete = Vec::new();
        for key in self.order.clone() {
            let group = self.groups.get_mut(&key).expect("listed");
            if let Some(item) = group.replay.take() {
                group.merged = true;
                replays.push((key, item));
                continue;
            }
            if group.merged {
                continue;
            }
            if group.ready_at.is_some() {
                merged.push(self.merge(&key, MergeReason::NoMoreInputs, now));
            } else {
                let group = self.groups.get_mut(&key).expect("listed");
                group.merged = true;
                let (present, missing) = split(&self.spec, &group.items, true);
                incomplete.push(Incomplete { key, present, missing });
            }
        }
        (replays, merged, incomplete)
    }

    fn merge(&mut self, key: &str, reason: MergeReason, now: Instant) -> Merged {
        let group = self.groups.get_mut(key).expect("merging a known group");
        group.merged = true;
        let mut combined = Map::new();
        for (input, item) in self.spec.inputs.iter().zip(&group.items) {
            let Some(item) = item else { continue };
            match (item.value(), &input.fields) {
                (Value::Object(fields), None) => {
                    combined.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                (Value::Object(fields), Some(wanted)) => {
                    for name in wanted {
                        if let Some(value) = fields.get(name) {
                            combined.insert(name.clone(), value.clone());
                        }
                    }
                }
                (other, _) => {
                    combined.insert(input.name.clone(), other.clone());
                }
            }
        }
        let (present, missing) = split(&self.spec, &group.items, false);
        Merged {
            key: key.to_string(),
            item: Item::from_value(Value::Object(combined)),
            present,
            missing,
            reason,
            waited: now.saturating_duration_since(group.first_at),
        }
    }
}

fn split(spec: &MergeSpec, items: &[Option<Item>], required_only: bool) -> (Vec<String>, Vec<String>) {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for (input, item) in spec.inputs.iter().zip(items) {
        if item.is_some() {
            present.push(input.name.clone());
        } else if input.required || !required_only {
            missing.push(input.name.clone());
        }
    }
    (present, missing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(config: Value) -> MergeSpec {
        MergeSpec::parse(&config).unwrap()
    }

    fn lead_and_summary() -> MergeSpec {
        spec(json!({"inputs": [
            {"name": "lead", "from": ["assign", "dedupe"]},
            {"name": "summary", "from": ["summarize"], "required": false, "fields": ["summary"]},
        ]}))
    }

    fn item(v: Value) -> Item {
        Item::from_value(v)
    }

    #[test]
    fn waits_for_every_input_and_lays_them_over_each_other() {
        let now = Instant::now();
        let mut state = MergeState::new(lead_and_summary(), None);
        let summary = item(json!({"id": 1, "summary": {"text": "hi"}, "stale": true}));
        assert!(matches!(state.arrive("summarize", summary, now), Arrival::Held));
        let Arrival::Merged(merged) = state.arrive("assign", item(json!({"id": 1, "owner": "ann"})), now) else {
            panic!("merged when both are in")
        };
        assert_eq!(merged.item.value(), &json!({"id": 1, "owner": "ann", "summary": {"text": "hi"}}));
        assert_eq!((merged.reason, merged.missing.len()), (MergeReason::AllIn, 0));
        assert!(matches!(state.arrive("summarize", item(json!({})), now), Arrival::Late { .. }));
    }

    #[test]
    fn the_timeout_counts_from_the_required_inputs_and_late_items_go_on_late() {
        let start = Instant::now();
        let mut state = MergeState::new(lead_and_summary(), Some(Duration::from_millis(250)));
        assert!(matches!(state.arrive("dedupe", item(json!({"owner": "opp"})), start), Arrival::Held));
        assert_eq!(state.next_deadline(), Some(start + Duration::from_millis(250)));
        assert!(state.expire(start + Duration::from_millis(249)).is_empty());
        let merged = state.expire(start + Duration::from_millis(250));
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].missing, ["summary"]);
        assert_eq!(merged[0].reason, MergeReason::TimedOut);
        assert_eq!(state.next_deadline(), None);
        let late = state.arrive("summarize", item(json!({"summary": {}})), start + Duration::from_secs(1));
        assert!(matches!(late, Arrival::Late { input, .. } if input == "summary"));
    }

    #[test]
    fn an_optional_input_alone_never_starts_the_clock() {
        let now = Instant::now();
        let mut state = MergeState::new(lead_and_summary(), Some(Duration::from_millis(10)));
        assert!(matches!(state.arrive("summarize", item(json!({})), now), Arrival::Held));
        assert_eq!(state.next_deadline(), None, "the lead is required");
        let (_, merged, incomplete) = state.close(now);
        assert!(merged.is_empty());
        assert_eq!(incomplete[0].missing, ["lead"]);
        assert_eq!(incomplete[0].present, ["summary"]);
    }

    #[test]
    fn closing_merges_what_is_ready() {
        let now = Instant::now();
        let mut state = MergeState::new(lead_and_summary(), None);
        state.arrive("assign", item(json!({"a": 1})), now);
        let (_, merged, incomplete) = state.close(now);
        assert!(incomplete.is_empty());
        assert_eq!(merged[0].reason, MergeReason::NoMoreInputs);
        assert_eq!(merged[0].item.value(), &json!({"a": 1}));
    }

    #[test]
    fn groups_by_key_and_first_mode_goes_at_once() {
        let now = Instant::now();
        let config = json!({"mode": "first", "key": "/id", "inputs": [{"name": "a", "from": ["x"]}, {"name": "b", "from": ["y"]}]});
        let mut state = MergeState::new(spec(config), None);
        assert!(matches!(state.arrive("y", item(json!({"id": 1})), now), Arrival::Merged(m) if m.key == "1"));
        assert!(matches!(state.arrive("x", item(json!({"id": 2})), now), Arrival::Merged(m) if m.key == "2"));
        assert!(matches!(state.arrive("x", item(json!({"id": 1})), now), Arrival::Late { key, .. } if key == "1"));
    }

    #[test]
    fn a_replayed_merge_takes_back_the_items_it_used_and_passes_late_ones_on() {
        let now = Instant::now();
        let mut state = MergeState::new(lead_and_summary(), Some(Duration::ZERO));
        state.replayed("", &["lead".to_string()], item(json!({"recorded": true})), now);
        assert!(
            matches!(state.arrive("summarize", item(json!({})), now), Arrival::LateAfterReplay { .. }),
            "the summary was late the first time too: it waits for the recorded merge"
        );
        let Arrival::Replayed { item: merged, .. } = state.arrive("assign", item(json!({})), now) else {
            panic!("the recorded merge goes on once the lead it used is in again")
        };
        assert_eq!(merged.value(), &json!({"recorded": true}));
        assert!(matches!(state.arrive("summarize", item(json!({})), now), Arrival::Late { .. }));
    }

    #[test]
    fn bad_configs_name_the_problem() {
        let problems = MergeSpec::parse(
            &json!({"inputs": [{"name": "a", "from": []}, {"name": "a", "from": ["x"]}], "key": "id"}),
        )
        .unwrap_err();
        let pointers: Vec<&str> = problems.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(pointers, ["/inputs/0/from", "/inputs/1/name", "/key"]);
        assert!(MergeSpec::parse(&json!({"inputs": [], "mode": "sometimes"})).is_err());
    }
}
