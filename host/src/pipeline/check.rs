//! Checking a pipeline file before anything runs it: JSON syntax, the
//! pipeline schema, plugins, ports, graph shape, capability grants and each
//! node's config. Every problem becomes a [`Diagnostic`] that names the
//! file, the JSON pointer and line, what is wrong and what to do.

use super::locate::{Position, SourceMap, escape_segment};
use super::merge::{LATE_PORT, MERGE_PLUGIN, MERGED_PORT, MergeSpec};
use super::model::{ERROR_PORT, Mode, OnError, Pipeline, TRIGGER, TRIGGER_PORT, Trigger};
use super::{NodeKind, PreparedNode, PreparedPipeline};
use crate::capabilities::{GrantSet, Interface};
use crate::runtime::{PluginRegistry, RunLimits};
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Longest per-node timeout a pipeline may set.
pub const MAX_NODE_TIMEOUT: Duration = Duration::from_secs(300);

/// One problem in a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The pipeline file.
    pub file: PathBuf,
    /// JSON pointer to the offending value (`/nodes/2/plugin`); empty for
    /// the whole document.
    pub pointer: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub help: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        let at = if self.pointer.is_empty() { "(document)" } else { &self.pointer };
        write!(f, ": error at {at}: {}", self.message)?;
        if !self.help.is_empty() {
            write!(f, "\n  help: {}", self.help)?;
        }
        Ok(())
    }
}

/// Reads and checks a pipeline file.
///
/// # Errors
///
/// Every problem found, not just the first.
pub fn load_file(path: &Path, registry: &PluginRegistry) -> Result<PreparedPipeline, Vec<Diagnostic>> {
    match std::fs::read_to_string(path) {
        Ok(text) => check(path, &text, registry),
        Err(e) => Err(vec![Diagnostic {
            file: path.to_path_buf(),
            pointer: String::new(),
            position: None,
            message: format!("cannot read the file: {e}"),
            help: "check the path".into(),
        }]),
    }
}

/// Checks pipelines that are served together: no two listen at one webhook
/// path, and, with the roster they will run on, every team or rep their
/// node configs name is in it.
pub fn check_together(pipelines: &[PreparedPipeline], roster: Option<&crate::roster::RosterFile>) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut paths: HashMap<&str, &Path> = HashMap::new();
    for prepared in pipelines {
        if let Some(live) = &prepared.pipeline.shadows {
            let found = pipelines.iter().find(|p| p.pipeline.name == *live);
            let problem = match found {
                None => Some(format!("shadows '{live}', which is not among the pipelines served with it")),
                Some(p) if p.pipeline.mode == Mode::Shadow => Some(format!("shadows '{live}', itself a shadow")),
                Some(_) => None,
            };
            if let Some(message) = problem {
                let text = std::fs::read_to_string(&prepared.path).unwrap_or_default();
                let mut report =
                    Report { file: prepared.path.clone(), map: SourceMap::new(&text), diagnostics: Vec::new() };
                let names: Vec<&str> = pipelines
                    .iter()
                    .filter(|p| p.pipeline.mode == Mode::Live)
                    .map(|p| p.pipeline.name.as_str())
                    .collect();
                report.error("/shadows", message, format!("name a live pipeline: {}", names.join(", ")));
                diagnostics.extend(report.diagnostics);
            }
        }
        // A shadow never listens: it runs on its live pipeline's events.
        if prepared.pipeline.mode == Mode::Live
            && let Trigger::Webhook { path, .. } = &prepared.pipeline.trigger
            && let Some(first) = paths.insert(path, &prepared.path)
        {
            let text = std::fs::read_to_string(&prepared.path).unwrap_or_default();
            let mut report =
                Report { file: prepared.path.clone(), map: SourceMap::new(&text), diagnostics: Vec::new() };
            report.error(
                "/trigger/path",
                format!("{} listens at {path} too", first.display()),
                "give each webhook trigger its own path".into(),
            );
            diagnostics.extend(report.diagnostics);
        }
        if let Some(roster) = roster {
            diagnostics.extend(check_roster(prepared, roster));
        }
    }
    diagnostics
}

/// Checks what the pipeline's node configs name in `roster`: each value a
/// plugin's config schema marks as a team or rep (see
/// [`crate::roster::REFERENCE_KEY`]) must be in it.
fn check_roster(prepared: &PreparedPipeline, roster: &crate::roster::RosterFile) -> Vec<Diagnostic> {
    let text = std::fs::read_to_string(&prepared.path).unwrap_or_default();
    let mut report = Report { file: prepared.path.clone(), map: SourceMap::new(&text), diagnostics: Vec::new() };
    for (i, node) in prepared.pipeline.nodes.iter().enumerate() {
        let Some(NodeKind::Plugin(plugin)) = prepared.nodes.get(&node.id).map(|n| &n.kind) else { continue };
        for reference in crate::roster::references(&plugin.info.config_schema, &node.config) {
            if let Some((message, help)) = roster.dangling(&reference) {
                report.error(&format!("{}{}", node_pointer(i, "config"), reference.pointer), message, help);
            }
        }
    }
    report.diagnostics
}

/// Checks pipeline source `text` (from `path`, for messages).
///
/// # Errors
///
/// Every problem found, not just the first.
pub fn check(path: &Path, text: &str, registry: &PluginRegistry) -> Result<PreparedPipeline, Vec<Diagnostic>> {
    let mut report = Report { file: path.to_path_buf(), map: SourceMap::new(text), diagnostics: Vec::new() };

    let document: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => {
            report.diagnostics.push(Diagnostic {
                file: path.to_path_buf(),
                pointer: String::new(),
                position: Some(Position { line: e.line(), column: e.column() }),
                message: format!("not valid JSON: {e}"),
                help: "fix the syntax; a trailing comma or a missing quote is the usual cause".into(),
            });
            return Err(report.diagnostics);
        }
    };

    for error in pipeline_schema().iter_errors(&document) {
        let pointer = error.instance_path().to_string();
        let (message, help) = explain_schema_error(&error, &pointer);
        report.error(&pointer, message, help);
    }
    if !report.diagnostics.is_empty() {
        return Err(report.diagnostics);
    }
    let pipeline: Pipeline = match serde_json::from_value(document) {
        Ok(p) => p,
        Err(e) => {
            report.error(
                "",
                format!("does not match the pipeline format: {e}"),
                "see pipelines/pipeline.schema.json".into(),
            );
            return Err(report.diagnostics);
        }
    };

    check_mode(&pipeline, &mut report);
    let nodes = check_semantics(&pipeline, registry, &mut report);
    if !report.diagnostics.is_empty() {
        return Err(report.diagnostics);
    }
    Ok(PreparedPipeline::new(pipeline, path.to_path_buf(), nodes))
}

/// A shadow pipeline names the live one it shadows; a live one names none.
fn check_mode(pipeline: &Pipeline, report: &mut Report) {
    match (pipeline.mode, &pipeline.shadows) {
        (Mode::Shadow, None) => report.error(
            "/mode",
            "a shadow pipeline must name the live pipeline it runs beside".into(),
            "add \"shadows\": \"<name of the live pipeline>\"".into(),
        ),
        (Mode::Live, Some(_)) => report.error(
            "/shadows",
            "only a shadow pipeline shadows another".into(),
            "add \"mode\": \"shadow\" (it then sends nothing), or remove \"shadows\"".into(),
        ),
        (Mode::Shadow, Some(live)) if *live == pipeline.name => report.error(
            "/shadows",
            "a pipeline cannot shadow itself".into(),
            "name the live pipeline, and give the shadow a name of its own".into(),
        ),
        _ => {}
    }
}

struct Report {
    file: PathBuf,
    map: SourceMap,
    diagnostics: Vec<Diagnostic>,
}

impl Report {
    fn error(&mut self, pointer: &str, message: String, help: String) {
        self.diagnostics.push(Diagnostic {
            file: self.file.clone(),
            pointer: pointer.to_string(),
            position: self.map.locate(pointer),
            message,
            help,
        });
    }
}

fn pipeline_schema() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(&Pipeline::json_schema()).expect("the generated pipeline schema is valid")
    })
}

fn explain_schema_error(error: &jsonschema::ValidationError<'_>, pointer: &str) -> (String, String) {
    let message = error.to_string();
    if pointer.contains("/capabilities/") {
        let grants: Vec<&str> = crate::capabilities::Grant::ALL.iter().map(|g| g.as_str()).collect();
        return (format!("{message}: not a capability"), format!("use one of: {}", grants.join(", ")));
    }
    let help = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            format!(
                "remove {} or fix its spelling; see pipelines/pipeline.schema.json for the fields",
                quote_all(unexpected)
            )
        }
        ValidationErrorKind::Required { property } => format!("add the required field {property}"),
        ValidationErrorKind::Enum { options } => format!("use one of {options}"),
        ValidationErrorKind::Pattern { pattern } => format!("the value must match {pattern}"),
        ValidationErrorKind::Type { .. } => "change the value to the expected type".into(),
        ValidationErrorKind::OneOfNotValid { .. }
        | ValidationErrorKind::OneOfMultipleValid { .. }
        | ValidationErrorKind::AnyOf { .. } => {
            if pointer.starts_with("/trigger") {
                "`type` is webhook (path, signature), schedule (cron, timezone), event (name) or timer, with only those fields".into()
            } else {
                "the value matches none of the allowed forms; see pipelines/pipeline.schema.json".into()
            }
        }
        _ => "see pipelines/pipeline.schema.json".into(),
    };
    (message, help)
}

fn quote_all(names: &[String]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}

fn node_pointer(index: usize, field: &str) -> String {
    if field.is_empty() { format!("/nodes/{index}") } else { format!("/nodes/{index}/{field}") }
}

fn connection_pointer(source: &str, port: Option<&str>) -> String {
    match port {
        Some(port) => format!("/connections/{}/{}", escape_segment(source), escape_segment(port)),
        None => format!("/connections/{}", escape_segment(source)),
    }
}

fn check_semantics(
    pipeline: &Pipeline,
    registry: &PluginRegistry,
    report: &mut Report,
) -> HashMap<String, PreparedNode> {
    check_trigger(&pipeline.trigger, report);

    let mut index_of: HashMap<&str, usize> = HashMap::new();
    for (i, node) in pipeline.nodes.iter().enumerate() {
        if node.id == TRIGGER {
            report.error(
                &node_pointer(i, "id"),
                "'trigger' is reserved for the pipeline's trigger".into(),
                "choose another id".into(),
            );
        }
        if let Some(first) = index_of.insert(&node.id, i) {
            report.error(
                &node_pointer(i, "id"),
                format!("node id '{}' is already used by /nodes/{first}", node.id),
                "give every node a unique id".into(),
            );
        }
    }

    let mut prepared = HashMap::new();
    for (i, node) in pipeline.nodes.iter().enumerate() {
        if node.plugin == MERGE_PLUGIN {
            if let Some(merge) = prepare_merge(i, node, report) {
                prepared.insert(node.id.clone(), merge);
            }
            continue;
        }
        let Some(plugin) = registry.get(&node.plugin) else {
            report.error(
                &node_pointer(i, "plugin"),
                format!("unknown plugin '{}'", node.plugin),
                format!(
                    "loaded plugins are: {}; check the spelling, or load the component with --plugins DIR",
                    registry.names().join(", ")
                ),
            );
            continue;
        };
        let grants: GrantSet = node.capabilities.iter().copied().collect();
        for needed in &plugin.info.capabilities {
            if !grants.allows(*needed) {
                report.error(
                    &node_pointer(i, "capabilities"),
                    format!("plugin '{}' needs {needed}, which node '{}' does not grant", plugin.name(), node.id),
                    format!("add \"{needed}\" to the node's capabilities"),
                );
            }
        }
        for interface in plugin.ungranted_imports(grants) {
            if plugin.info.capabilities.iter().any(|g| g.interface() == interface) {
                continue; // already reported above, with the exact grant
            }
            report.error(
                &node_pointer(i, "capabilities"),
                ungranted_import_message(&pipeline.name, &node.id, plugin.name(), interface),
                format!(
                    "grant the access the plugin needs ({}), or use a plugin that does not import {interface}",
                    interface.grants().iter().map(|g| format!("\"{g}\"")).collect::<Vec<_>>().join(" or ")
                ),
            );
        }
        for problem in plugin.check_config(&node.config) {
            report.error(
                &format!("{}{}", node_pointer(i, "config"), problem.pointer),
                format!("config for plugin '{}': {}", plugin.name(), problem.message),
                format!("see `handoff plugin schema {}` for the settings it takes", plugin.name()),
            );
        }
        let timeout = node.timeout.map_or(RunLimits::default().deadline, |t| t.0);
        if timeout.is_zero() || timeout > MAX_NODE_TIMEOUT {
            report.error(
                &node_pointer(i, "timeout"),
                format!("timeout {} is out of range", node.timeout.map(|t| t.to_string()).unwrap_or_default()),
                format!("use a timeout above 0 and at most {}s", MAX_NODE_TIMEOUT.as_secs()),
            );
        }
        if node.retry.backoff.initial > node.retry.backoff.max {
            report.error(
                &node_pointer(i, "retry/backoff"),
                format!("backoff initial {} is longer than max {}", node.retry.backoff.initial, node.retry.backoff.max),
                "make initial at most max".into(),
            );
        }
        let mut lead = plugin.info.lead.clone();
        for (port, mark) in &node.lead {
            let known = port == crate::lead::ANY_PORT
                || plugin.info.outputs.contains(port)
                || (port == ERROR_PORT && node.on_error == OnError::ErrorPort);
            if !known {
                report.error(
                    &node_pointer(i, &format!("lead/{port}")),
                    format!("plugin '{}' has no output port '{port}'", plugin.name()),
                    format!("its ports are {}; or use \"*\" for every port", quote_all(&plugin.info.outputs)),
                );
            }
            for problem in mark.problems() {
                report.error(
                    &node_pointer(i, &format!("lead/{port}")),
                    problem,
                    "see the `lead` entry in pipelines/pipeline.schema.json".into(),
                );
            }
            lead.insert(port.clone(), mark.clone());
        }
        let limits = RunLimits {
            deadline: timeout,
            memory_bytes: node.memory_mb.map_or_else(
                || crate::runtime::default_memory_bytes(plugin.info.language.as_deref()),
                |mb| mb as usize * 1024 * 1024,
            ),
            ..RunLimits::default()
        };
        prepared.insert(
            node.id.clone(),
            PreparedNode {
                node: node.clone(),
                kind: NodeKind::Plugin(plugin.clone()),
                grants,
                config: Arc::from(node.config.to_string()),
                limits,
                lead,
            },
        );
    }

    check_connections(pipeline, &prepared, report);
    check_merges(pipeline, &prepared, report);
    check_graph(pipeline, &index_of, report);
    prepared
}

/// A `"plugin": "merge"` node: its config read, and nothing set that only
/// plugin nodes have.
fn prepare_merge(i: usize, node: &crate::pipeline::Node, report: &mut Report) -> Option<PreparedNode> {
    let spec = match MergeSpec::parse(&node.config) {
        Ok(spec) => Some(spec),
        Err(problems) => {
            for (pointer, message) in problems {
                report.error(
                    &format!("{}{pointer}", node_pointer(i, "config")),
                    format!("merge node '{}': {message}", node.id),
                    "a merge's config is {\"inputs\": [{\"name\", \"from\": [node ids], \"required\", \"fields\"}], \"mode\": \"wait-for-all\" | \"first\", \"key\": \"/json/pointer\"}".into(),
                );
            }
            None
        }
    };
    let plugin_only = [
        ("capabilities", !node.capabilities.is_empty()),
        ("retry", node.retry != crate::pipeline::model::RetryPolicy::default()),
        ("memory_mb", node.memory_mb.is_some()),
        ("on_error", node.on_error != OnError::Stop),
    ];
    for (field, set) in plugin_only {
        if set {
            report.error(
                &node_pointer(i, field),
                format!("merge node '{}' runs no plugin, so '{field}' means nothing for it", node.id),
                "remove it; `timeout` is how long the merge waits for its optional inputs".into(),
            );
        }
    }
    if let Some(timeout) = node.timeout
        && timeout.0 > MAX_NODE_TIMEOUT
    {
        report.error(
            &node_pointer(i, "timeout"),
            format!("timeout {timeout} is out of range"),
            format!("use at most {}s", MAX_NODE_TIMEOUT.as_secs()),
        );
    }
    for port in node.lead.keys() {
        if ![crate::lead::ANY_PORT, MERGED_PORT, LATE_PORT].contains(&port.as_str()) {
            report.error(
                &node_pointer(i, &format!("lead/{port}")),
                format!("a merge node has no output port '{port}'"),
                format!("its ports are \"{MERGED_PORT}\" and \"{LATE_PORT}\""),
            );
        }
    }
    Some(PreparedNode {
        node: node.clone(),
        kind: NodeKind::Merge(spec?),
        grants: GrantSet::default(),
        config: Arc::from(node.config.to_string()),
        limits: RunLimits::default(),
        lead: node.lead.clone(),
    })
}

/// Every input of a merge is fed by the nodes it names, and every node
/// that feeds a merge is named by one of its inputs.
fn check_merges(pipeline: &Pipeline, prepared: &HashMap<String, PreparedNode>, report: &mut Report) {
    for (i, node) in pipeline.nodes.iter().enumerate() {
        let Some(NodeKind::Merge(spec)) = prepared.get(&node.id).map(|n| &n.kind) else { continue };
        let feeders: BTreeSet<&str> = pipeline
            .connections
            .iter()
            .filter(|(_, ports)| ports.values().flatten().any(|t| t == &node.id))
            .map(|(source, _)| source.as_str())
            .collect();
        for (k, input) in spec.inputs.iter().enumerate() {
            for (j, source) in input.from.iter().enumerate() {
                if !feeders.contains(source.as_str()) {
                    report.error(
                        &node_pointer(i, &format!("config/inputs/{k}/from/{j}")),
                        format!(
                            "merge input '{}' is fed by '{source}', but '{source}' sends nothing to '{}'",
                            input.name, node.id
                        ),
                        format!(
                            "connect a port of '{source}' to \"{}\" in connections, or remove it from `from`",
                            node.id
                        ),
                    );
                }
            }
        }
        for feeder in feeders {
            if spec.input_of(feeder).is_none() {
                report.error(
                    &connection_pointer(feeder, None),
                    format!(
                        "'{feeder}' sends items to merge node '{}', but none of its inputs lists '{feeder}'",
                        node.id
                    ),
                    format!("add \"{feeder}\" to the `from` of one of the merge's inputs"),
                );
            }
        }
    }
}

/// The message for a component that imports an interface its node grants
/// nothing of: the load-time refusal.
pub fn ungranted_import_message(pipeline: &str, node: &str, plugin: &str, interface: Interface) -> String {
    format!(
        "pipeline '{pipeline}', node '{node}': plugin '{plugin}' imports {interface}, but the node grants none of {}",
        interface.grants().iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
    )
}

fn check_trigger(trigger: &Trigger, report: &mut Report) {
    match trigger {
        Trigger::Schedule { cron, timezone } => {
            if let Err(problem) = check_cron(cron) {
                report.error(
                    "/trigger/cron",
                    format!("'{cron}' is not a cron expression: {problem}"),
                    "write five fields: minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\"".into(),
                );
            }
            if let Some(zone) = timezone
                && jiff::tz::TimeZone::get(zone).is_err()
            {
                report.error(
                    "/trigger/timezone",
                    format!("'{zone}' is not an IANA time zone"),
                    "use a name like \"Europe/Berlin\" or \"America/New_York\"".into(),
                );
            }
        }
        Trigger::Webhook { path, .. } if path.contains("//") => {
            report.error(
                "/trigger/path",
                format!("path '{path}' has an empty segment"),
                "remove the doubled '/'".into(),
            );
        }
        Trigger::Webhook { path, .. } if crate::server::owned_route(path).is_some() => {
            let owned = crate::server::owned_route(path).unwrap_or_default();
            report.error(
                "/trigger/path",
                format!("path '{path}' is the server's own ({owned})"),
                "give the webhook a path of its own, e.g. \"/webhooks/<source>\"".into(),
            );
        }
        _ => {}
    }
}

/// A syntax check of a five-field cron expression.
///
/// # Errors
///
/// What is wrong with it, naming the field.
pub fn check_cron(cron: &str) -> Result<(), String> {
    super::cron::Cron::parse(cron).map(|_| ())
}

fn check_connections(pipeline: &Pipeline, prepared: &HashMap<String, PreparedNode>, report: &mut Report) {
    for (source, ports) in &pipeline.connections {
        let outputs: Vec<String> = if source == TRIGGER {
            vec![TRIGGER_PORT.to_string()]
        } else if let Some(node) = prepared.get(source) {
            node.outputs()
        } else {
            if pipeline.node(source).is_none() {
                report.error(
                    &connection_pointer(source, None),
                    format!("connections come from '{source}', which is not a node"),
                    format!("use 'trigger' or one of the node ids: {}", node_ids(pipeline)),
                );
            }
            continue; // a node whose plugin is unknown was reported already
        };
        for (port, targets) in ports {
            if !outputs.contains(port) {
                let extra = if port == ERROR_PORT {
                    " (set \"on_error\": \"error-port\" on the node to get an error port)"
                } else {
                    ""
                };
                report.error(
                    &connection_pointer(source, Some(port)),
                    format!("'{source}' has no output port '{port}'{extra}"),
                    format!("its output ports are: {}", outputs.join(", ")),
                );
            }
            for (k, target) in targets.iter().enumerate() {
                if pipeline.node(target).is_none() {
                    report.error(
                        &format!("{}/{k}", connection_pointer(source, Some(port))),
                        format!("connection to '{target}', which is not a node"),
                        format!("use one of the node ids: {}", node_ids(pipeline)),
                    );
                }
            }
        }
    }
}

fn node_ids(pipeline: &Pipeline) -> String {
    pipeline.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
}

fn check_graph(pipeline: &Pipeline, index_of: &HashMap<&str, usize>, report: &mut Report) {
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (source, ports) in &pipeline.connections {
        for targets in ports.values() {
            for target in targets {
                if index_of.contains_key(target.as_str()) {
                    edges.entry(source.as_str()).or_default().insert(target.as_str());
                }
            }
        }
    }

    // Cycles: depth-first search, reporting each cycle once.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = pipeline.nodes.iter().map(|n| (n.id.as_str(), Mark::New)).collect();
    fn visit<'a>(
        node: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        marks: &mut HashMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        marks.insert(node, Mark::Open);
        path.push(node);
        for next in edges.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::Done) {
                Mark::New => visit(next, edges, marks, path, cycles),
                Mark::Open => {
                    let start = path.iter().position(|n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    cycles.push(cycle);
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
    }
    let mut cycles = Vec::new();
    for node in &pipeline.nodes {
        if marks[node.id.as_str()] == Mark::New {
            visit(&node.id, &edges, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    for cycle in cycles {
        report.error(
            &connection_pointer(cycle[0], None),
            format!("connections form a cycle: {}", cycle.join(" → ")),
            "pipelines must be acyclic; to come back to a step later, use a durable timer (the `schedule` capability)"
                .into(),
        );
    }

    // Reachability from the trigger.
    let mut reached: BTreeSet<&str> = BTreeSet::new();
    let mut queue: VecDeque<&str> = VecDeque::from([TRIGGER]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(node).into_iter().flatten() {
            if reached.insert(next) {
                queue.push_back(next);
            }
        }
    }
    let timer_started = matches!(pipeline.trigger, Trigger::Timer {});
    if pipeline.targets(TRIGGER, TRIGGER_PORT).is_empty() && !timer_started {
        report.error(
            "/connections",
            "nothing is connected to the trigger, so no node would ever run".into(),
            "add \"trigger\": {\"main\": [\"<first node id>\"]} to connections".into(),
        );
        return;
    }
    if timer_started {
        return; // timers start at any node
    }
    for (i, node) in pipeline.nodes.iter().enumerate() {
        if !reached.contains(node.id.as_str()) {
            report.error(
                &node_pointer(i, ""),
                format!("node '{}' is unreachable: no path from the trigger leads to it", node.id),
                "connect it from the trigger or another node's output, or remove it".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_syntax() {
        for ok in ["*/5 * * * *", "0 9 * * 1-5", "0,30 8-18 1 1,6 0"] {
            assert!(check_cron(ok).is_ok(), "{ok}");
        }
        for bad in ["* * * *", "60 * * * *", "*/0 * * * *", "a * * * *", "0 0 0 * *"] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn diagnostics_print_file_line_pointer_and_help() {
        let d = Diagnostic {
            file: "p.json".into(),
            pointer: "/nodes/1/plugin".into(),
            position: Some(Position { line: 9, column: 7 }),
            message: "unknown plugin 'x'".into(),
            help: "check the spelling".into(),
        };
        assert_eq!(
            d.to_string(),
            "p.json:9:7: error at /nodes/1/plugin: unknown plugin 'x'\n  help: check the spelling"
        );
    }
}
