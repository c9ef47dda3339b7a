//! Moving items through a prepared pipeline: each item reaching a node is
//! one node run; each emitted item follows the connections of its port.
//! Items on different branches run at the same time; a merge node waits
//! for the branches it joins (`merge.rs`).

use super::merge::{Arrival, LATE_PORT, MERGE_PLUGIN, MERGED_PORT, MergeState};
use super::model::{ERROR_PORT, OnError, TRIGGER, TRIGGER_PORT};
use super::{NodeKind, PreparedNode, PreparedPipeline};
use crate::capabilities::{Capabilities, RunIdentity};
use crate::record::{
    BranchEnd, Emitted, ExecutionRecord, ExecutionStatus, Item, LogLine, LogStream, NodeRunRecord, RunError,
};
use crate::runtime::{Invocation, NodeFailure, Runtime};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// What is known of an execution's earlier runs when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// It never ran: an event just received, a timer just fired, a new
    /// execution id. Nothing is read from the journal and no effect is
    /// looked for at its provider.
    New,
    /// It may have run before (resumed after a crash, taken over from
    /// another instance, run again after waiting for a provider, retried):
    /// the journal's records are replayed, and an effect the journal does
    /// not hold is looked for at its provider from `since_ms` (host clock:
    /// when the event was received) before it is done.
    Resumed {
        /// No effect of the execution happened before this.
        since_ms: i64,
    },
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
        let id = uuid::Uuid::now_v7().to_string();
        self.execute_as(prepared, input, start, lead_id, id, History::New).await
    }

    /// Runs one execution under `execution_id`. Running the same work again
    /// under the same id (after a crash, with [`History::Resumed`]) lets
    /// plugins recognise their own earlier claims and recorded side effects
    /// instead of taking the rerun for a second lead.
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
        history: History,
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
            retryable: false,
            started_at_ms: self.capabilities.clock.now_ms(),
            duration_us: 0,
            runs: Vec::new(),
            ends: Vec::new(),
        };

        let input = Item::from_value(input);
        let mut ready: VecDeque<Work> = match start {
            Start::Trigger => pipeline
                .targets(TRIGGER, TRIGGER_PORT)
                .iter()
                .map(|t| Work {
                    node: t.clone(),
                    item: input.clone(),
                    branch: ROOT_BRANCH.into(),
                    from: TRIGGER.into(),
                })
                .collect(),
            Start::Node(node) => {
                VecDeque::from([Work { node, item: input, branch: ROOT_BRANCH.into(), from: TRIGGER.into() }])
            }
        };

        let (first_run, effects_since_ms) = match history {
            History::New => (true, record.started_at_ms),
            History::Resumed { since_ms } => (false, since_ms.min(record.started_at_ms)),
        };
        let shared = Shared {
            prepared,
            execution_id: &execution_id,
            lead_id: &lead_id,
            first_run,
            effects_since_ms,
            started,
            runs_made: AtomicUsize::new(0),
        };
        // Node runs in flight: items on different branches run at once.
        let mut running = FuturesUnordered::new();
        // Node runs that finished while a merge waited on the journal.
        let mut finished_early: VecDeque<NodeDone> = VecDeque::new();
        let mut merges: HashMap<String, MergeState> = HashMap::new();
        // Late items waiting for a replayed merge to go on first.
        let mut held: HashMap<String, Vec<(String, Work)>> = HashMap::new();
        let mut used_scopes: HashSet<String> = HashSet::new();
        let mut stopping = false;
        loop {
            while let Some(mut work) = ready.pop_front() {
                if stopping {
                    break;
                }
                let Some(node) = prepared.node(&work.node) else {
                    record.fail(format!("no node '{}' in pipeline '{}'", work.node, pipeline.name));
                    stopping = true;
                    break;
                };
                match &node.kind {
                    NodeKind::Plugin(plugin) => {
                        // Runs are named by node and branch, the same on
                        // every run of the execution whatever order
                        // concurrent branches finish in.
                        let mut scope = format!("{execution_id}/{}/{}", work.node, work.branch);
                        let mut again = 1;
                        while !used_scopes.insert(scope.clone()) {
                            again += 1;
                            scope = format!("{execution_id}/{}/{}#{again}", work.node, work.branch);
                        }
                        if again > 1 {
                            work.branch = format!("{}#{again}", work.branch);
                        }
                        running.push(self.run_node(&shared, node, plugin, work, scope));
                    }
                    NodeKind::Merge(spec) => {
                        let merge = merges
                            .entry(work.node.clone())
                            .or_insert_with(|| MergeState::new(spec.clone(), node.node.timeout.map(|t| t.0)));
                        // The node runs in flight are polled while the merge
                        // reads the journal: a run left unpolled holds its
                        // ledger connection (and its answer) hostage, and
                        // the journal read may need that very connection.
                        let done = {
                            let arriving = self.arrive(&shared, &work, merge, &mut held);
                            tokio::pin!(arriving);
                            loop {
                                tokio::select! {
                                    done = &mut arriving => break done,
                                    Some(finished) = running.next() => finished_early.push_back(finished),
                                }
                            }
                        };
                        for merged in done {
                            self.settle_merge(&shared, &work.node, merged, &mut record, &mut ready);
                        }
                    }
                }
            }
            if stopping && running.is_empty() && finished_early.is_empty() {
                break;
            }
            if running.is_empty() && finished_early.is_empty() {
                // Nothing can reach a waiting merge any more: each goes on
                // with what it has, or ends its branch as incomplete.
                let now = Instant::now();
                for (node, merge) in &mut merges {
                    let (replays, merged, incomplete) = merge.close(now);
                    for (key, item) in replays {
                        for done in replayed(node, key, item, &mut held) {
                            self.settle_merge(&shared, node, done, &mut record, &mut ready);
                        }
                    }
                    for m in merged {
                        self.settle_merge(&shared, node, MergeDone::Merged(m), &mut record, &mut ready);
                    }
                    for i in incomplete {
                        record.ends.push(BranchEnd::Incomplete {
                            node: node.clone(),
                            present: i.present,
                            missing: i.missing,
                        });
                    }
                }
                if ready.is_empty() {
                    break;
                }
                continue;
            }
            let deadline = merges.values().filter_map(MergeState::next_deadline).min();
            let finished = if let Some(finished) = finished_early.pop_front() {
                Some(finished)
            } else {
                tokio::select! {
                    finished = running.next() => finished,
                    () = sleep_until(deadline) => None,
                }
            };
            let Some(finished) = finished else {
                let now = Instant::now();
                for (node, merge) in &mut merges {
                    for m in merge.expire(now) {
                        self.settle_merge(&shared, node, MergeDone::Merged(m), &mut record, &mut ready);
                    }
                }
                continue;
            };
            let NodeDone { work, runs, outcome } = finished;
            for mut run in runs {
                run.seq = record.runs.len() + 1;
                record.runs.push(run);
            }
            match outcome {
                Outcome::Emitted(emitted) => {
                    route(prepared, &work.node, &work.branch, emitted, &mut ready, &mut record.ends);
                }
                Outcome::Ended(end) => record.ends.push(end),
                Outcome::Stop { reason, retryable } => {
                    // The first failure stops the execution; branches
                    // still running finish, and nothing new starts.
                    if record.error.is_none() {
                        record.fail_by(reason, retryable);
                    }
                    stopping = true;
                    ready.clear();
                }
            }
        }

        record.duration_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        record
    }

    /// One plugin node on one item, with its retries; or its recorded
    /// outputs, when an earlier run of this execution completed it.
    async fn run_node(
        &self,
        shared: &Shared<'_>,
        node: &PreparedNode,
        plugin: &Arc<crate::runtime::Plugin>,
        work: Work,
        effect_scope: String,
    ) -> NodeDone {
        let pipeline = &shared.prepared.pipeline;
        let node_id = &work.node;
        let item = &work.item;
        let mut runs = Vec::new();
        let identity = Arc::new(RunIdentity {
            pipeline: pipeline.name.clone(),
            node: node_id.clone(),
            plugin: plugin.name().to_string(),
            execution_id: shared.execution_id.to_string(),
            lead_id: shared.lead_id.clone(),
            effect_scope,
            journal_empty: shared.first_run,
            effects_since_ms: shared.effects_since_ms,
        });
        // A node run that completed in an earlier run of this execution
        // (before a crash, or before a later node failed) is not run
        // again: its recorded outputs are reused, so the rerun makes the
        // same decisions and resumes after the last completed node.
        let outputs_key = crate::capabilities::outputs_key(&identity.effect_scope);
        if !shared.first_run
            && let Some(journal) = &self.capabilities.journal
            && let Ok(Some(recorded)) = journal.recorded(&outputs_key).await
            && let Ok(emitted) = serde_json::from_value::<Vec<Emitted>>(recorded)
        {
            runs.push(NodeRunRecord {
                seq: 0,
                node: node_id.clone(),
                plugin: plugin.name().to_string(),
                plugin_version: plugin.info.version.clone(),
                attempt: 0,
                input: item.clone(),
                outputs: emitted.clone(),
                duration_us: 0,
                finished_at_us: shared.elapsed_us(),
                error: None,
                logs: Vec::new(),
                denied: Vec::new(),
                reads: Vec::new(),
                replayed: true,
            });
            return NodeDone { work, runs, outcome: Outcome::Emitted(emitted) };
        }
        let mut attempt = 1;
        loop {
            if shared.runs_made.fetch_add(1, Ordering::Relaxed) >= MAX_RUNS_PER_EXECUTION {
                let reason =
                    format!("stopped after {MAX_RUNS_PER_EXECUTION} node runs; does a node fan out without bound?");
                return NodeDone { work, runs, outcome: Outcome::Stop { reason, retryable: false } };
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
            let outcome = self.runtime.run(plugin, &self.capabilities, invocation).await;
            let error = outcome.result.as_ref().err().map(run_error);
            runs.push(NodeRunRecord {
                seq: 0,
                node: node_id.clone(),
                plugin: plugin.name().to_string(),
                plugin_version: plugin.info.version.clone(),
                attempt,
                input: item.clone(),
                outputs: outcome.result.clone().unwrap_or_default(),
                duration_us: u64::try_from(outcome.duration.as_micros()).unwrap_or(u64::MAX),
                finished_at_us: shared.elapsed_us(),
                error: error.clone(),
                logs: outcome.logs,
                denied: outcome.denied,
                reads: outcome.reads,
                replayed: false,
            });
            match outcome.result {
                Ok(emitted) => {
                    // Outputs that go on to other nodes are journaled, so a
                    // rerun resumes with the same items; a node whose items
                    // all end their branch just runs again (its effects
                    // replayed), and a large final item is never copied
                    // into the ledger.
                    let routed_on = emitted.iter().any(|e| !pipeline.targets(node_id, &e.port).is_empty());
                    if routed_on
                        && let Some(journal) = &self.capabilities.journal
                        && let Ok(json) = serde_json::to_string(&emitted)
                        && let Err(e) = journal.record(&outputs_key, &json).await
                    {
                        tracing::error!(error = %e, node = %node_id, "cannot journal a node's outputs");
                    }
                    return NodeDone { work, runs, outcome: Outcome::Emitted(emitted) };
                }
                Err(failure) if failure.is_retryable() && attempt < node.node.retry.max_attempts => {
                    crate::telemetry::TELEMETRY
                        .retries
                        .get_or_create(&crate::telemetry::PluginLabel { plugin: plugin.name().to_string() })
                        .inc();
                    tokio::time::sleep(node.node.retry.backoff.delay(attempt)).await;
                    attempt += 1;
                }
                Err(failure) => {
                    let outcome = match node.node.on_error {
                        OnError::Stop => Outcome::Stop {
                            reason: format!("node '{node_id}' failed after {attempt} attempt(s): {failure}"),
                            retryable: failure.is_retryable(),
                        },
                        OnError::Continue => {
                            Outcome::Ended(BranchEnd::Failed { node: node_id.clone(), error: run_error(&failure) })
                        }
                        OnError::ErrorPort => {
                            Outcome::Emitted(vec![error_item(node_id, attempt, &failure, item.clone())])
                        }
                    };
                    return NodeDone { work, runs, outcome };
                }
            }
        }
    }

    /// An item reaches a merge node: what goes on because of it. On a rerun
    /// of the execution, a group that went on before goes on the same way
    /// (its outputs are journaled), whatever the timing this time.
    async fn arrive(
        &self,
        shared: &Shared<'_>,
        work: &Work,
        merge: &mut MergeState,
        held: &mut HashMap<String, Vec<(String, Work)>>,
    ) -> Vec<MergeDone> {
        let now = Instant::now();
        let key = merge.spec().key_of(&work.item);
        if !shared.first_run
            && !merge.knows(&key)
            && let Some(journal) = &self.capabilities.journal
            && let Ok(Some(recorded)) = journal.recorded(&merge_record_key(shared.execution_id, &work.node, &key)).await
            && let Ok(emitted) = serde_json::from_value::<Vec<Emitted>>(recorded["emitted"].clone())
            && let Some(first) = emitted.into_iter().next()
        {
            let present: Vec<String> = serde_json::from_value(recorded["present"].clone()).unwrap_or_default();
            merge.replayed(&key, &present, first.item, now);
        }
        match merge.arrive(&work.from, work.item.clone(), now) {
            Arrival::Held => Vec::new(),
            Arrival::Merged(merged) => vec![MergeDone::Merged(merged)],
            Arrival::Late { key, input } => vec![MergeDone::Late { key, input, work: work.clone() }],
            Arrival::LateAfterReplay { key, input } => {
                held.entry(format!("{}\n{key}", work.node)).or_default().push((input, work.clone()));
                Vec::new()
            }
            Arrival::Replayed { key, item } => replayed(&work.node, key, item, held),
        }
    }

    /// Records what a merge node did and sends its items on.
    fn settle_merge(
        &self,
        shared: &Shared<'_>,
        node: &str,
        done: MergeDone,
        record: &mut ExecutionRecord,
        ready: &mut VecDeque<Work>,
    ) {
        let prepared = shared.prepared;
        let (input, outputs, logs, branch, was_replayed) = match done {
            MergeDone::Merged(m) => {
                let emitted = vec![Emitted { port: MERGED_PORT.to_string(), item: m.item }];
                if let Some(journal) = &self.capabilities.journal {
                    let journal = journal.clone();
                    let key = merge_record_key(shared.execution_id, node, &m.key);
                    let value = serde_json::json!({"emitted": emitted, "present": m.present}).to_string();
                    // The merge's decision is journaled like a node's
                    // outputs; the record commits with the next group.
                    tokio::spawn(async move {
                        if let Err(e) = journal.record(&key, &value).await {
                            tracing::error!(error = %e, "cannot journal a merge's outputs");
                        }
                    });
                }
                let summary = json!({"key": m.key, "merged": m.present, "missing": m.missing,
                    "why": m.reason.describe(), "waited_ms": u64::try_from(m.waited.as_millis()).unwrap_or(u64::MAX)});
                let line = if m.missing.is_empty() {
                    format!(
                        "merged {} ({}, after {} ms)",
                        m.present.join(", "),
                        m.reason.describe(),
                        m.waited.as_millis()
                    )
                } else {
                    format!(
                        "merged {} without {} ({}, after {} ms)",
                        m.present.join(", "),
                        m.missing.join(", "),
                        m.reason.describe(),
                        m.waited.as_millis()
                    )
                };
                (summary, emitted, vec![line], merge_branch(&m.key), false)
            }
            MergeDone::Replayed { key, item } => {
                let summary = json!({"key": key, "replayed": true});
                let emitted = vec![Emitted { port: MERGED_PORT.to_string(), item }];
                let line = "went on as recorded in an earlier run of this execution".to_string();
                (summary, emitted, vec![line], merge_branch(&key), true)
            }
            MergeDone::Late { key, input, work } => {
                let summary = json!({"key": key, "late": input, "from": work.from});
                let emitted = vec![Emitted { port: LATE_PORT.to_string(), item: work.item }];
                let line = format!("'{input}' arrived after its group went on: sent on '{LATE_PORT}'");
                (summary, emitted, vec![line], format!("{}.late", work.branch), false)
            }
        };
        record.runs.push(NodeRunRecord {
            seq: record.runs.len() + 1,
            node: node.to_string(),
            plugin: MERGE_PLUGIN.to_string(),
            plugin_version: env!("CARGO_PKG_VERSION").to_string(),
            attempt: u32::from(!was_replayed),
            input: Item::from_value(input),
            outputs: outputs.clone(),
            duration_us: 0,
            finished_at_us: shared.elapsed_us(),
            error: None,
            logs: logs.into_iter().map(|message| LogLine { stream: LogStream::Info, message }).collect(),
            denied: Vec::new(),
            reads: Vec::new(),
            replayed: was_replayed,
        });
        route(prepared, node, &branch, outputs, ready, &mut record.ends);
    }
}

/// The branch name of the execution's first items.
const ROOT_BRANCH: &str = "1";

/// What one execution's node runs share.
struct Shared<'a> {
    prepared: &'a PreparedPipeline,
    execution_id: &'a str,
    lead_id: &'a Option<String>,
    /// The execution never ran before: nothing to replay.
    first_run: bool,
    /// See [`RunIdentity::effects_since_ms`].
    effects_since_ms: i64,
    started: Instant,
    /// Node runs made or started, for the fan-out guard.
    runs_made: AtomicUsize,
}

impl Shared<'_> {
    fn elapsed_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// An item on its way to a node.
#[derive(Clone)]
struct Work {
    node: String,
    item: Item,
    /// Names the path the item took, so the node's run has the same effect
    /// scope on every run of the execution.
    branch: String,
    /// The node (or `trigger`) that sent it.
    from: String,
}

struct NodeDone {
    work: Work,
    runs: Vec<NodeRunRecord>,
    outcome: Outcome,
}

enum Outcome {
    Emitted(Vec<Emitted>),
    Ended(BranchEnd),
    Stop { reason: String, retryable: bool },
}

enum MergeDone {
    Merged(super::merge::Merged),
    Replayed { key: String, item: Item },
    Late { key: String, input: String, work: Work },
}

/// A replayed merge, then the items held until it went on, as late.
fn replayed(node: &str, key: String, item: Item, held: &mut HashMap<String, Vec<(String, Work)>>) -> Vec<MergeDone> {
    let late = held.remove(&format!("{node}\n{key}")).unwrap_or_default();
    let mut done = vec![MergeDone::Replayed { key: key.clone(), item }];
    done.extend(late.into_iter().map(|(input, work)| MergeDone::Late { key: key.clone(), input, work }));
    done
}

fn merge_record_key(execution_id: &str, node: &str, key: &str) -> String {
    crate::capabilities::outputs_key(&format!("{execution_id}/{node}/{}", merge_branch(key)))
}

/// The branch a merged group's item goes on with: the root branch for the
/// execution's one group, else named by the key.
fn merge_branch(key: &str) -> String {
    if key.is_empty() {
        return ROOT_BRANCH.to_string();
    }
    let clean: String = key.chars().take(64).map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("{ROOT_BRANCH}.k{clean}")
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
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
/// of the branch when the port is unconnected. An item keeps its branch
/// when it is the only one its node emitted; a node fed by several nodes
/// tells its runs apart by where the item came from.
fn route(
    prepared: &PreparedPipeline,
    node_id: &str,
    branch: &str,
    emitted: Vec<Emitted>,
    ready: &mut VecDeque<Work>,
    ends: &mut Vec<BranchEnd>,
) {
    let many = emitted.len() > 1;
    for (k, Emitted { port, item }) in emitted.into_iter().enumerate() {
        let branch = if many { format!("{branch}.{}", k + 1) } else { branch.to_string() };
        let targets = prepared.pipeline.targets(node_id, &port);
        if targets.is_empty() {
            ends.push(BranchEnd::Unconnected { node: node_id.to_string(), port, item });
            continue;
        }
        for target in targets {
            let branch = if prepared.is_join(target) { format!("{branch}.{node_id}") } else { branch.clone() };
            ready.push_back(Work { node: target.clone(), item: item.clone(), branch, from: node_id.to_string() });
        }
    }
}
