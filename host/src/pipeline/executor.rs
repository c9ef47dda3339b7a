//! Moving items through a prepared pipeline: each item reaching a node is
//! one node run; each emitted item follows the connections of its port.

use super::PreparedPipeline;
use super::model::{ERROR_PORT, OnError, TRIGGER, TRIGGER_PORT};
use crate::capabilities::{Capabilities, RunIdentity};
use crate::record::{BranchEnd, Emitted, ExecutionRecord, ExecutionStatus, Item, NodeRunRecord, RunError};
use crate::runtime::{Invocation, NodeFailure, Runtime};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// Node runs one execution may make before it is stopped (fan-out guard).
pub const MAX_RUNS_PER_EXECUTION: usize = 10_000;

/// Where an execution starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At the nodes connected to the trigger.
    Trigger,
    /// At one node (a durable timer firing).
    Node(String),
}

/// Runs prepared pipelines on a runtime with a set of capability providers.
#[derive(Clone)]
pub struct Executor {
    runtime: Arc<Runtime>,
    capabilities: Arc<Capabilities>,
}

impl Executor {
    /// An executor over `runtime`, serving plugins `capabilities`.
    pub fn new(runtime: Arc<Runtime>, capabilities: Arc<Capabilities>) -> Self {
        Executor { runtime, capabilities }
    }

    /// The capability providers plugins are served.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.capabilities
    }

    /// The plugin sandbox.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Runs one execution of `prepared` on `input` to its end, under a new
    /// execution id.
    pub async fn execute(
        &self,
        prepared: &PreparedPipeline,
        input: Value,
        start: Start,
        lead_id: Option<String>,
    ) -> ExecutionRecord {
        self.execute_as(prepared, input, start, lead_id, uuid::Uuid::now_v7().to_string()).await
    }

    /// Runs one execution under `execution_id`. Running the same work again
    /// under the same id (after a crash) lets plugins recognise their own
    /// earlier claims and recorded side effects instead of taking the rerun
    /// for a second lead.
    #[tracing::instrument(
        name = "execution",
        skip_all,
        fields(pipeline = %prepared.pipeline.name, execution = %execution_id, lead = lead_id.as_deref().unwrap_or(""))
    )]
    pub async fn execute_as(
        &self,
        prepared: &PreparedPipeline,
        input: Value,
        start: Start,
        lead_id: Option<String>,
        execution_id: String,
    ) -> ExecutionRecord {
        let pipeline = &prepared.pipeline;
        let started = Instant::now();
        let mut record = ExecutionRecord {
            execution_id: execution_id.clone(),
            pipeline: pipeline.name.clone(),
            pipeline_version: pipeline.version,
            lead_id: lead_id.clone(),
            status: ExecutionStatus::Completed,
            error: None,
            started_at_ms: self.capabilities.clock.now_ms(),
            duration_us: 0,
            runs: Vec::new(),
            ends: Vec::new(),
        };

        let input = Item::from_value(input);
        let mut queue: VecDeque<(String, Item)> = match start {
            Start::Trigger => {
                pipeline.targets(TRIGGER, TRIGGER_PORT).iter().map(|t| (t.clone(), input.clone())).collect()
            }
            Start::Node(node) => VecDeque::from([(node, input)]),
        };

        // A first run has nothing to replay: skip the journal reads.
        let first_run = match &self.capabilities.journal {
            Some(journal) => matches!(journal.any_under(&format!("{execution_id}/")).await, Ok(false)),
            None => false,
        };
        let mut node_runs: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        'items: while let Some((node_id, item)) = queue.pop_front() {
            let Some(node) = prepared.node(&node_id) else {
                record.fail(format!("no node '{node_id}' in pipeline '{}'", pipeline.name));
                break;
            };
            // Items reach nodes in the same order on every run of an
            // execution, so the n-th run of a node is the same work again.
            let nth = node_runs.entry(node_id.clone()).or_default();
            *nth += 1;
            let identity = Arc::new(RunIdentity {
                pipeline: pipeline.name.clone(),
                node: node_id.clone(),
                plugin: node.plugin.name().to_string(),
                execution_id: execution_id.clone(),
                lead_id: lead_id.clone(),
                effect_scope: format!("{execution_id}/{node_id}/{nth}"),
                journal_empty: first_run,
            });
            // A node run that completed in an earlier run of this execution
            // (before a crash, or before a later node failed) is not run
            // again: its recorded outputs are reused, so the rerun makes the
            // same decisions and resumes after the last completed node.
            let outputs_key = format!("{}:outputs", identity.effect_scope);
            if !first_run
                && let Some(journal) = &self.capabilities.journal
                && let Ok(Some(recorded)) = journal.recorded(&outputs_key).await
                && let Ok(emitted) = serde_json::from_value::<Vec<Emitted>>(recorded)
            {
                record.runs.push(NodeRunRecord {
                    seq: record.runs.len() + 1,
                    node: node_id.clone(),
                    plugin: node.plugin.name().to_string(),
                    plugin_version: node.plugin.info.version.clone(),
                    attempt: 0,
                    input: item.clone(),
                    outputs: emitted.clone(),
                    duration_us: 0,
                    finished_at_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    error: None,
                    logs: Vec::new(),
                    denied: Vec::new(),
                    replayed: true,
                });
                route(prepared, &node_id, emitted, &mut queue, &mut record.ends);
                continue 'items;
            }
            let mut attempt = 1;
            let emitted = loop {
                if record.runs.len() >= MAX_RUNS_PER_EXECUTION {
                    record.fail(format!(
                        "stopped after {MAX_RUNS_PER_EXECUTION} node runs; does a node fan out without bound?"
                    ));
                    break 'items;
                }
                // A retry replays what the failed attempt did.
                let identity = if attempt > 1 && identity.journal_empty {
                    Arc::new(RunIdentity { journal_empty: false, ..(*identity).clone() })
                } else {
                    identity.clone()
                };
                let invocation = Invocation {
                    identity,
                    attempt,
                    config: node.config.clone(),
                    item: item.clone(),
                    grants: node.grants,
                    limits: node.limits,
                };
                let outcome = self.runtime.run(&node.plugin, &self.capabilities, invocation).await;
                let error = outcome.result.as_ref().err().map(run_error);
                record.runs.push(NodeRunRecord {
                    seq: record.runs.len() + 1,
                    node: node_id.clone(),
                    plugin: node.plugin.name().to_string(),
                    plugin_version: node.plugin.info.version.clone(),
                    attempt,
                    input: item.clone(),
                    outputs: outcome.result.clone().unwrap_or_default(),
                    duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
                    finished_at_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                    error: error.clone(),
                    logs: outcome.logs,
                    denied: outcome.denied,
                    replayed: false,
                });
                match outcome.result {
                    Ok(emitted) => {
                        // Outputs that go on to other nodes are journaled,
                        // so a rerun resumes with the same items; a node
                        // whose items all end their branch just runs again
                        // (its effects replayed), and a large final item is
                        // never copied into the ledger.
                        let routed_on = emitted.iter().any(|e| !pipeline.targets(&node_id, &e.port).is_empty());
                        if routed_on
                            && let Some(journal) = &self.capabilities.journal
                            && let Err(e) = journal.record(&outputs_key, &serde_json::json!(emitted)).await
                        {
                            tracing::error!(error = %e, node = %node_id, "cannot journal a node's outputs");
                        }
                        break emitted;
                    }
                    Err(failure) if failure.is_retryable() && attempt < node.node.retry.max_attempts => {
                        crate::telemetry::TELEMETRY
                            .retries
                            .get_or_create(&crate::telemetry::PluginLabel { plugin: node.plugin.name().to_string() })
                            .inc();
                        tokio::time::sleep(node.node.retry.backoff.delay(attempt)).await;
                        attempt += 1;
                    }
                    Err(failure) => match node.node.on_error {
                        OnError::Stop => {
                            record.fail(format!("node '{node_id}' failed after {attempt} attempt(s): {failure}"));
                            break 'items;
                        }
                        OnError::Continue => {
                            record.ends.push(BranchEnd::Failed { node: node_id.clone(), error: run_error(&failure) });
                            continue 'items;
                        }
                        OnError::ErrorPort => break vec![error_item(&node_id, attempt, &failure, item.clone())],
                    },
                }
            };
            route(prepared, &node_id, emitted, &mut queue, &mut record.ends);
        }

        record.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        record
    }
}

fn run_error(failure: &NodeFailure) -> RunError {
    RunError { kind: failure.kind(), message: failure.to_string(), retryable: failure.is_retryable() }
}

/// The item a node with `"on_error": "error-port"` emits for a failure.
fn error_item(node: &str, attempts: u32, failure: &NodeFailure, item: Item) -> Emitted {
    Emitted {
        port: ERROR_PORT.to_string(),
        item: Item::from_value(json!({
            "error": {"node": node, "kind": failure.kind(), "message": failure.to_string(), "attempts": attempts},
            "item": item,
        })),
    }
}

/// Sends each emitted item to the targets of its port, or records the end
/// of the branch when the port is unconnected.
fn route(
    prepared: &PreparedPipeline,
    node_id: &str,
    emitted: Vec<Emitted>,
    queue: &mut VecDeque<(String, Item)>,
    ends: &mut Vec<BranchEnd>,
) {
    for Emitted { port, item } in emitted {
        let targets = prepared.pipeline.targets(node_id, &port);
        match targets {
            [] => ends.push(BranchEnd::Unconnected { node: node_id.to_string(), port, item }),
            [only] => queue.push_back((only.clone(), item)),
            many => queue.extend(many.iter().map(|t| (t.clone(), item.clone()))),
        }
    }
}
