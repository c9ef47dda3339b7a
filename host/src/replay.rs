//! `handoff replay`: one past execution run again from its trace (the same
//! input, the same provider answers, the same plugin state reads, the
//! clock at the time it ran) twice on dry-run capabilities: as it was, and
//! with a new plugin version or pipeline. The two are compared node by
//! node: a node whose input is the same but whose output differs is where
//! the change acts; nodes after it differ because their input did.

use crate::capabilities::{Clock, ManualClock};
use crate::dry_run::{DryRun, Missing, ScratchState, Tape};
use crate::lead::Decision;
use crate::ledger::{InboundEvent, Ledger, Trace};
use crate::pipeline::{Executor, History, PreparedPipeline, Start};
use crate::record::{Emitted, ExecutionRecord};
use crate::runtime::Runtime;
use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::Arc;

/// How a node's runs compare between the original and the changed
/// execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Same input, same output.
    Same,
    /// Same input, different output: the change acts here.
    Changed,
    /// Its input changed upstream (its output may follow).
    InputChanged,
    /// It ran in the original only.
    NoLongerRuns,
    /// It runs in the changed execution only.
    RunsOnlyNow,
}

/// One node's runs, original and changed.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeDiff {
    /// The node.
    pub node: String,
    /// How they compare.
    pub verdict: Verdict,
    /// Top-level fields of its output items that differ.
    pub fields: Vec<String>,
    /// What it emitted in the original.
    pub before: Vec<Emitted>,
    /// What it emits after the change.
    pub after: Vec<Emitted>,
}

/// A replay's report.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ReplayReport {
    /// The execution replayed.
    pub execution_id: String,
    /// Its pipeline and version, as replayed.
    pub pipeline: String,
    /// The changed pipeline's version.
    pub changed_version: u32,
    /// What was changed, for people.
    pub change: String,
    /// The lead.
    pub lead_id: Option<String>,
    /// When it ran (ms): the clock of both replays.
    pub at: i64,
    /// What it decided when it ran.
    pub recorded: Decision,
    /// What the original decides, run again from its recording.
    pub before: Decision,
    /// What the changed one decides.
    pub after: Decision,
    /// Whether the original, run again, decides as it did (it should: a
    /// difference means the recording is incomplete or a plugin is not
    /// deterministic).
    pub reproduced: bool,
    /// Node by node.
    pub nodes: Vec<NodeDiff>,
    /// Writes the original would make and the changed one would not.
    pub effects_only_before: Vec<String>,
    /// Writes only the changed one would make.
    pub effects_only_after: Vec<String>,
}

/// The execution `execution_id` from the ledger: its event and its trace.
///
/// # Errors
///
/// When the ledger cannot be read, or holds no such execution or no trace
/// of it (it predates traces, or retention pruned it).
pub async fn recorded(ledger: &dyn Ledger, execution_id: &str) -> Result<(InboundEvent, Trace)> {
    let event = ledger.event_of_execution(execution_id).await?.with_context(|| {
        format!("no execution {execution_id} in the ledger (see `handoff lead show ID` or /api/executions)")
    })?;
    let trace = ledger.trace(execution_id).await?.with_context(|| {
        format!("execution {execution_id} left no trace to replay from (it ran before traces were kept, or retention pruned it)")
    })?;
    anyhow::ensure!(
        !event.payload.as_object().is_some_and(serde_json::Map::is_empty),
        "execution {execution_id}'s event payload was pruned (retention); it cannot be replayed"
    );
    Ok((event, trace))
}

/// Runs the execution of `event` again on `prepared` from `trace`.
async fn run_again(
    runtime: &Arc<Runtime>,
    prepared: &Arc<PreparedPipeline>,
    event: &InboundEvent,
    trace: &Trace,
    roster: Option<Arc<dyn crate::capabilities::Roster>>,
) -> (ExecutionRecord, Vec<String>) {
    let state = ScratchState::default();
    state.remember(&trace.reads);
    let dry = DryRun { state: Arc::new(state), ..DryRun::new(roster, Missing::Unavailable) };
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(trace.at));
    let capabilities = dry.capabilities(Tape::from_reads(&trace.reads), event.lead_id.as_deref(), clock);
    let executor = Executor::new(runtime.clone(), Arc::new(capabilities));
    let (input, start) = match &event.node {
        Some(node) => (event.payload.clone(), Start::Node(node.clone())),
        None => (json!({ "event": event.payload }), Start::Trigger),
    };
    let (pipeline, lead) = (prepared.clone(), event.lead_id.clone());
    let id = format!("replay:{}", trace.execution_id);
    let record = runtime
        .spawn(async move { executor.execute_as(&pipeline, input, start, lead, id, History::New).await })
        .await
        .expect("a replay's execution does not panic");
    let effects = dry.outbox.take().into_iter().map(|u| format!("{}: {}", u.call, u.summary)).collect();
    (record, effects)
}

/// Replays `event`'s execution on `original` and on `changed` and compares
/// them.
pub async fn replay(
    runtime: &Arc<Runtime>,
    event: &InboundEvent,
    trace: &Trace,
    original: &Arc<PreparedPipeline>,
    changed: &Arc<PreparedPipeline>,
    change: &str,
    roster: Option<Arc<dyn crate::capabilities::Roster>>,
) -> ReplayReport {
    let (before, effects_before) = run_again(runtime, original, event, trace, roster.clone()).await;
    let (after, effects_after) = run_again(runtime, changed, event, trace, roster).await;
    let before_decision = crate::lead::decision_of(&before, |n| original.lead_marks(n));
    let after_decision = crate::lead::decision_of(&after, |n| changed.lead_marks(n));
    let mut order: Vec<String> = Vec::new();
    for node in original.pipeline.nodes.iter().chain(&changed.pipeline.nodes) {
        if !order.contains(&node.id) {
            order.push(node.id.clone());
        }
    }
    // A node's input changed when its recorded input did or any node that
    // feeds it emits differently (a merge's recorded input is one of many).
    let feeders = |node: &str| -> Vec<String> {
        let connections = original.pipeline.connections.iter().chain(&changed.pipeline.connections);
        connections
            .filter(|(_, ports)| ports.values().flatten().any(|t| t == node))
            .map(|(source, _)| source.clone())
            .collect()
    };
    let emits_same = |node: &str| runs_of(&before, node).map(|r| r.1) == runs_of(&after, node).map(|r| r.1);
    let nodes = order
        .into_iter()
        .filter_map(|node| {
            let fed_same = feeders(&node).iter().all(|f| emits_same(f));
            diff_node(&node, &before, &after, fed_same)
        })
        .collect();
    ReplayReport {
        execution_id: trace.execution_id.clone(),
        pipeline: format!("{} v{}", original.pipeline.name, original.pipeline.version),
        changed_version: changed.pipeline.version,
        change: change.to_string(),
        lead_id: event.lead_id.clone(),
        at: trace.at,
        reproduced: !trace.decision.differs(&before_decision),
        recorded: trace.decision.clone(),
        before: before_decision,
        after: after_decision,
        nodes,
        effects_only_before: effects_before.iter().filter(|e| !effects_after.contains(e)).cloned().collect(),
        effects_only_after: effects_after.iter().filter(|e| !effects_before.contains(e)).cloned().collect(),
    }
}

/// A node's inputs and outputs in one execution (every run that ended,
/// its last attempt).
fn runs_of(record: &ExecutionRecord, node: &str) -> Option<(Vec<Value>, Vec<Emitted>)> {
    let runs: Vec<_> = record.runs.iter().filter(|r| r.node == node).collect();
    if runs.is_empty() {
        return None;
    }
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for run in runs.iter().filter(|r| r.error.is_none() || r.outputs.is_empty()) {
        inputs.push(run.input.value().clone());
        outputs.extend(run.outputs.iter().cloned());
    }
    Some((inputs, outputs))
}

fn diff_node(node: &str, before: &ExecutionRecord, after: &ExecutionRecord, fed_same: bool) -> Option<NodeDiff> {
    let (verdict, fields, before, after) = match (runs_of(before, node), runs_of(after, node)) {
        (None, None) => return None,
        (Some((_, out)), None) => (Verdict::NoLongerRuns, Vec::new(), out, Vec::new()),
        (None, Some((_, out))) => (Verdict::RunsOnlyNow, Vec::new(), Vec::new(), out),
        (Some((in_before, out_before)), Some((in_after, out_after))) => {
            let fields = differing_fields(&out_before, &out_after);
            let outputs_same = out_before == out_after;
            let verdict = match (fed_same && in_before == in_after, outputs_same) {
                (true, true) => Verdict::Same,
                (true, false) => Verdict::Changed,
                (false, _) => Verdict::InputChanged,
            };
            (verdict, fields, out_before, out_after)
        }
    };
    Some(NodeDiff { node: node.to_string(), verdict, fields, before, after })
}

/// Top-level fields (and ports) of the items that differ, item by item.
fn differing_fields(before: &[Emitted], after: &[Emitted]) -> Vec<String> {
    let mut fields = Vec::new();
    for (b, a) in before.iter().zip(after) {
        if b.port != a.port {
            fields.push(format!("port {} -> {}", b.port, a.port));
        }
        let (bv, av) = (b.item.value(), a.item.value());
        let keys =
            bv.as_object().into_iter().flat_map(|o| o.keys()).chain(av.as_object().into_iter().flat_map(|o| o.keys()));
        for key in keys {
            if bv.get(key) != av.get(key) && !fields.contains(key) {
                fields.push(key.clone());
            }
        }
    }
    if before.len() != after.len() {
        fields.push(format!("{} items -> {}", before.len(), after.len()));
    }
    fields
}

/// The report as a person reads it.
pub fn render(report: &ReplayReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Replay of {} (lead {}, ran {}) on {} with {}; nothing was sent.",
        report.execution_id,
        report.lead_id.as_deref().unwrap_or("-"),
        crate::connectors::time::iso8601(report.at),
        report.pipeline,
        report.change
    );
    if report.reproduced {
        let _ = writeln!(
            out,
            "The original, run again from its recording, decides as it did: {}.",
            report.before.summary()
        );
    } else {
        let _ = writeln!(
            out,
            "warning: the original, run again, decides {} where it decided {}: the recording is incomplete or a plugin is not deterministic.",
            report.before.summary(),
            report.recorded.summary()
        );
    }
    let _ = writeln!(out, "\n{:<16} RESULT", "NODE");
    for node in &report.nodes {
        let what = match node.verdict {
            Verdict::Same => "same".to_string(),
            Verdict::Changed => format!("CHANGED (same input): {}", node.fields.join(", ")),
            Verdict::InputChanged if node.fields.is_empty() => "input changed upstream; same output".to_string(),
            Verdict::InputChanged => format!("input changed upstream; output differs: {}", node.fields.join(", ")),
            Verdict::NoLongerRuns => "no longer runs".to_string(),
            Verdict::RunsOnlyNow => "runs only now".to_string(),
        };
        let _ = writeln!(out, "{:<16} {what}", node.node);
        if node.verdict == Verdict::Changed {
            for (b, a) in node.before.iter().zip(&node.after) {
                for field in &node.fields {
                    if let (Some(bv), Some(av)) = (b.item.value().get(field), a.item.value().get(field)) {
                        let _ = writeln!(out, "{:<16}   {field}: {}", "", crate::runtime::cut(bv.to_string(), 160));
                        let _ = writeln!(out, "{:<16}   now:  {}", "", crate::runtime::cut(av.to_string(), 160));
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "\nDecision: {} -> {}", report.before.summary(), report.after.summary());
    if report.before.why != report.after.why {
        let _ = writeln!(out, "  why now: {}", report.after.why);
    }
    if report.effects_only_before.is_empty() && report.effects_only_after.is_empty() {
        let _ = writeln!(out, "Effects: the same.");
    } else {
        let _ = writeln!(out, "Effects that differ:");
        for effect in &report.effects_only_before {
            let _ = writeln!(out, "  - {effect}");
        }
        for effect in &report.effects_only_after {
            let _ = writeln!(out, "  + {effect}");
        }
    }
    out
}
