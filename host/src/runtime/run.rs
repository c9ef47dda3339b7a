//! One node run: a fresh instance, one call to `run`, a checked result.

use super::budget::Budget;
use super::{EPOCH_TICK, Plugin, RunState, Runtime};
use crate::bindings::{Context, NodeError};
use crate::capabilities::{Capabilities, GrantSet, RunContext, RunIdentity};
use crate::record::{Emitted, LogLine};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Limits one run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Time the run may be given, host calls included; time spent waiting
    /// for a slot or a CPU does not count.
    pub deadline: Duration,
    /// Linear memory the instance may grow to, in bytes.
    pub memory_bytes: usize,
    /// Total size of the emitted items, in bytes of JSON.
    pub max_output_bytes: usize,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { deadline: Duration::from_secs(2), memory_bytes: 64 * 1024 * 1024, max_output_bytes: 1024 * 1024 }
    }
}

/// Everything one run needs.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Who runs.
    pub identity: Arc<RunIdentity>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The node's config, as JSON.
    pub config: Arc<str>,
    /// The input item.
    pub item: crate::record::Item,
    /// What the node grants.
    pub grants: GrantSet,
    /// What the run is held to.
    pub limits: RunLimits,
}

/// Why a run produced no items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum NodeFailure {
    /// The plugin says the item or config cannot be processed.
    InvalidInput {
        /// What the plugin said.
        message: String,
    },
    /// The plugin reports a transient failure; worth retrying.
    Retryable {
        /// What the plugin said.
        message: String,
    },
    /// The plugin reports a failure that retrying will not fix.
    Fatal {
        /// What the plugin said.
        message: String,
    },
    /// The run was stopped: it used its deadline, or it waited so long for
    /// a CPU (host load) that it was given up before it could.
    Timeout {
        /// The deadline.
        limit_ms: u64,
        /// Time the run was given (running wasm or in host calls).
        ran_ms: u64,
        /// Time it spent waiting to be resumed.
        waited_ms: u64,
    },
    /// The plugin called `exit` (WASI) instead of returning.
    Exit {
        /// The exit code.
        code: i32,
    },
    /// The plugin is paused by its circuit breaker; the lead waits.
    Paused {
        /// Why, and until when.
        message: String,
    },
    /// The instance tried to grow its memory past the cap.
    MemoryLimit {
        /// The cap.
        limit_bytes: usize,
        /// What it asked for.
        requested_bytes: usize,
    },
    /// The plugin trapped (panic, unreachable, stack overflow, ...).
    Trap {
        /// The trap, with the innermost guest frames.
        message: String,
    },
    /// The emitted items are larger than allowed.
    OutputTooLarge {
        /// The limit.
        limit_bytes: usize,
        /// What it emitted.
        size_bytes: usize,
    },
    /// The plugin broke the contract: an undeclared port, or an item that
    /// is not JSON.
    BadOutput {
        /// What was wrong.
        message: String,
    },
    /// The host could not start the run (for example, the pool is full).
    Host {
        /// What went wrong.
        message: String,
    },
}

impl NodeFailure {
    /// Whether the executor should retry the run.
    pub fn is_retryable(&self) -> bool {
        match self {
            NodeFailure::Retryable { .. } | NodeFailure::Host { .. } | NodeFailure::Paused { .. } => true,
            // Stopped before it could use its deadline: the host was busy,
            // not the plugin.
            NodeFailure::Timeout { limit_ms, ran_ms, .. } => ran_ms < limit_ms,
            _ => false,
        }
    }

    /// The failure a plugin's own node error becomes, its message capped.
    pub(crate) fn from_node_error(error: NodeError) -> Self {
        match error {
            NodeError::InvalidInput(message) => NodeFailure::InvalidInput { message: cap_text(message) },
            NodeError::Retryable(message) => NodeFailure::Retryable { message: cap_text(message) },
            NodeError::Fatal(message) => NodeFailure::Fatal { message: cap_text(message) },
        }
    }

    /// A short name for the failure class (`timeout`, `trap`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            NodeFailure::InvalidInput { .. } => "invalid-input",
            NodeFailure::Retryable { .. } => "retryable",
            NodeFailure::Fatal { .. } => "fatal",
            NodeFailure::Timeout { .. } => "timeout",
            NodeFailure::Exit { .. } => "exit",
            NodeFailure::Paused { .. } => "paused",
            NodeFailure::MemoryLimit { .. } => "memory-limit",
            NodeFailure::Trap { .. } => "trap",
            NodeFailure::OutputTooLarge { .. } => "output-too-large",
            NodeFailure::BadOutput { .. } => "bad-output",
            NodeFailure::Host { .. } => "host",
        }
    }
}

impl std::fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeFailure::InvalidInput { message } => write!(f, "invalid input: {message}"),
            NodeFailure::Retryable { message } => write!(f, "retryable: {message}"),
            NodeFailure::Fatal { message } => write!(f, "fatal: {message}"),
            NodeFailure::Timeout { limit_ms, ran_ms, waited_ms } if ran_ms < limit_ms => write!(
                f,
                "given up after waiting {waited_ms} ms for a CPU, having run {ran_ms} ms of its {limit_ms} ms deadline: the host is overloaded, so it is retried"
            ),
            NodeFailure::Timeout { limit_ms, .. } => write!(f, "stopped after its {limit_ms} ms deadline"),
            // WASI 0.2's `exit` carries only success or failure: Rust's
            // `exit(42)` arrives as 1.
            NodeFailure::Exit { code: 0 } => {
                write!(f, "the plugin exited (status 0) instead of returning its items")
            }
            NodeFailure::Exit { code } => write!(
                f,
                "the plugin exited with a failure status (code {code}; WASI 0.2 passes no other code) instead of returning; plugins report failures as node errors"
            ),
            NodeFailure::Paused { message } => f.write_str(message),
            NodeFailure::MemoryLimit { limit_bytes, requested_bytes } => write!(
                f,
                "stopped at its memory cap: asked for {} MiB, cap is {} MiB",
                requested_bytes.div_ceil(1 << 20),
                limit_bytes / (1 << 20)
            ),
            NodeFailure::Trap { message } => write!(f, "trapped: {message}"),
            NodeFailure::OutputTooLarge { limit_bytes, size_bytes } => {
                write!(f, "emitted {size_bytes} bytes; the limit is {limit_bytes}")
            }
            NodeFailure::BadOutput { message } => write!(f, "broke the plugin contract: {message}"),
            NodeFailure::Host { message } => write!(f, "host error: {message}"),
        }
    }
}

/// The result of one run, with what it logged.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    /// What it emitted, or why it failed.
    pub result: Result<Vec<Emitted>, NodeFailure>,
    /// How long it took, waiting for slots and CPU included.
    pub duration: Duration,
    /// What it logged.
    pub logs: Vec<LogLine>,
    /// Grants the plugin tried to use without having them.
    pub denied: Vec<String>,
    /// What its providers answered.
    pub reads: Vec<crate::record::CallRecord>,
}

/// Bytes of a plugin's error message (or trap text) kept; the rest is cut.
pub const MAX_ERROR_BYTES: usize = 4 * 1024;
/// Longest port name quoted back in an error.
const MAX_PORT_NAME_QUOTED: usize = 64;

/// Cuts `text` to [`MAX_ERROR_BYTES`] on a character boundary, saying so.
pub(crate) fn cap_text(text: String) -> String {
    cut(text, MAX_ERROR_BYTES)
}

/// Cuts `text` to `max` bytes on a character boundary, saying how much was cut.
pub(crate) fn cut(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut at = max;
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text.push_str(&format!("… ({total} bytes, cut)"));
    text
}

impl RunOutcome {
    fn failed(failure: NodeFailure, duration: Duration) -> Self {
        RunOutcome { result: Err(failure), duration, logs: Vec::new(), denied: Vec::new(), reads: Vec::new() }
    }
}

/// Longest a run may take in wall time, waiting for CPU included, before
/// it is given up as starved (a retryable timeout).
fn wall_cap(deadline: Duration) -> Duration {
    deadline * 10 + Duration::from_secs(5)
}

impl Runtime {
    /// Runs `plugin` once on one item in a fresh instance. Never panics on
    /// plugin misbehaviour: every failure comes back as a [`NodeFailure`].
    ///
    /// The run waits for a slot of its plugin (a plugin may hold only
    /// `max_runs_per_plugin` of them) and one of the pool; its deadline
    /// starts once it has both and counts only the time it is given.
    #[tracing::instrument(
        name = "node_run",
        skip_all,
        fields(node = %invocation.identity.node, plugin = %invocation.identity.plugin, attempt = invocation.attempt)
    )]
    pub async fn run(
        &self,
        plugin: &Arc<Plugin>,
        capabilities: &Arc<Capabilities>,
        invocation: Invocation,
    ) -> RunOutcome {
        let started = Instant::now();
        let name = plugin.name();
        if let Err(paused) = self.gates.admit(name) {
            return RunOutcome::failed(paused, started.elapsed());
        }
        let node = invocation.identity.node.clone();
        let plugin_slots = self.gates.slots(name);
        let _plugin_slot = plugin_slots.acquire().await.expect("a plugin's run semaphore is never closed");
        let _slot = self.slots.acquire().await.expect("the run semaphore is never closed");
        let job = RunJob {
            engine: self.engine.clone(),
            plugin: plugin.clone(),
            capabilities: capabilities.clone(),
            invocation,
            dropper: self.dropper.clone(),
        };
        let mut outcome = match self.on_pool(job.execute()).await {
            Ok(outcome) => outcome,
            Err(e) => RunOutcome::failed(
                NodeFailure::Host { message: format!("the run's task ended: {e}") },
                started.elapsed(),
            ),
        };
        outcome.duration = started.elapsed();
        self.gates.observe(name, &node, outcome.result.as_ref().map(|_| ()));
        let kind = outcome.result.as_ref().map_or_else(NodeFailure::kind, |_| "ok");
        crate::telemetry::TELEMETRY.node_run(name, kind, outcome.duration);
        outcome
    }
}

impl Runtime {
    /// Runs `work` on the plugin pool, in the current span; in place when
    /// already on a pool thread (an execution spawned there) or without a
    /// pool. Dropping the returned future stops it.
    pub(crate) async fn on_pool<F>(&self, work: F) -> Result<F::Output, tokio::task::JoinError>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.pool {
            Some(pool) if !super::on_pool_thread() => AbortOnDrop(pool.spawn(work.in_current_span())).await,
            _ => Ok(work.await),
        }
    }
}

/// Aborts a task on the plugin pool when whoever waits for it goes away
/// (an execution stopped because another instance took its lead over).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// One run, owning what it needs, so it can run on the plugin pool.
struct RunJob {
    engine: wasmtime::Engine,
    plugin: Arc<Plugin>,
    capabilities: Arc<Capabilities>,
    invocation: Invocation,
    dropper: super::StoreDropper,
}

/// Why the watchdog stopped a run.
pub(crate) enum Cut {
    /// It used its deadline (stuck in a host call).
    Spent,
    /// It waited too long for a CPU.
    Starved,
}

/// Polls `call` until it finishes, its budget is used up (a run stuck in
/// a host call is stopped here; wasm code is stopped by the epoch
/// callback), or it has waited [`wall_cap`] in all.
/// Provider calls inside the run stop short of its deadline
/// ([`crate::connectors::policy::within_deadline`]).
pub(crate) async fn watch<F: std::future::Future>(budget: &Arc<Budget>, call: F) -> Result<F::Output, Cut> {
    let started = Instant::now();
    let cap = wall_cap(budget.limit());
    let call = crate::connectors::policy::within_deadline(budget.clone(), call);
    tokio::pin!(call);
    loop {
        let wait = budget.next_check().min(cap.saturating_sub(started.elapsed())) + EPOCH_TICK;
        tokio::select! {
            biased;
            out = &mut call => return Ok(out),
            () = tokio::time::sleep(wait) => {
                if budget.used() >= budget.limit() + EPOCH_TICK * 2 {
                    return Err(Cut::Spent);
                }
                if started.elapsed() >= cap {
                    return Err(Cut::Starved);
                }
            }
        }
    }
}

impl RunJob {
    async fn execute(self) -> RunOutcome {
        let started = Instant::now();
        let RunJob { engine, plugin, capabilities, invocation, dropper } = self;
        let Invocation { identity, attempt, config, item, grants, limits } = invocation;
        let budget = Budget::new(limits.deadline);
        let mut context = RunContext::new(identity.clone(), grants, capabilities);
        context.set_run_clock(budget.clone());
        let state = RunState::new(context, limits.memory_bytes);
        let mut store = wasmtime::Store::new(&engine, state);
        store.limiter(|state| &mut state.memory);
        let ticker = budget.clone();
        store.epoch_deadline_callback(move |_| Ok(ticker.tick()));
        store.set_epoch_deadline(1);

        let context = Context {
            pipeline: identity.pipeline.clone(),
            node: identity.node.clone(),
            execution_id: identity.execution_id.clone(),
            lead_id: identity.lead_id.clone(),
            attempt,
            config: config.to_string(),
        };
        let call = async {
            let node = plugin.pre.instantiate_async(&mut store).await?;
            node.call_run(&mut store, &context, &item.json().to_string()).await
        };
        let raw = watch(&budget, call).await;
        let timeout = || NodeFailure::Timeout {
            limit_ms: millis(limits.deadline),
            ran_ms: millis(budget.used()),
            waited_ms: millis(started.elapsed().saturating_sub(budget.used())),
        };

        let result = match raw {
            Err(Cut::Spent | Cut::Starved) => Err(timeout()),
            Ok(Err(error)) => Err(match classify_trap(&error, store.data()) {
                Some(failure) => failure,
                None => timeout(),
            }),
            Ok(Ok(Err(error))) => Err(NodeFailure::from_node_error(error)),
            Ok(Ok(Ok(emits))) => check_output(&plugin, emits, limits),
        };
        tracing::trace!(slices = budget.slices(), "run finished");

        let state = store.data_mut();
        state.drain_stdio();
        let (logs, dropped) = state.context.take_logs();
        let denied = state.context.take_denied();
        if dropped > 0 {
            tracing::warn!(dropped, "plugin log lines dropped from the run record");
        }
        if let Err(failure) = &result {
            tracing::warn!(attempt, kind = failure.kind(), "node run failed: {failure}");
        }
        let reads = state.context.take_reads();
        dropper.dispose(store);
        RunOutcome { result, duration: started.elapsed(), logs, denied, reads }
    }
}

/// Turns a wasmtime error (a trap or a failed instantiation) into the
/// failure a person can act on; none for an interrupt (the deadline, which
/// the caller describes).
fn classify_trap(error: &wasmtime::Error, state: &RunState) -> Option<NodeFailure> {
    if let Some(requested_bytes) = state.memory.exceeded {
        return Some(NodeFailure::MemoryLimit { limit_bytes: state.memory.limit, requested_bytes });
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return Some(NodeFailure::Exit { code: exit.0 });
    }
    Some(match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => return None,
        Some(wasmtime::Trap::MemoryOutOfBounds) if runaway_recursion(error) => NodeFailure::Trap {
            message: cap_text(format!(
                "stack overflow: runaway recursion ran off the plugin's stack (wasm reports it as an out-of-bounds memory access){}",
                backtrace_summary(error)
            )),
        },
        Some(trap) => NodeFailure::Trap { message: cap_text(format!("{trap}{}", backtrace_summary(error))) },
        None if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
            NodeFailure::Host { message: format!("too many runs in flight: {error}") }
        }
        None => NodeFailure::Trap { message: cap_text(format!("{error:#}")) },
    })
}

/// Whether a trap looks like runaway recursion: every frame wasmtime kept
/// (it keeps the innermost 20) is the same function. Languages with a
/// shadow stack in linear memory (Rust, C) overflow it into an
/// out-of-bounds access, not a wasm stack overflow.
fn runaway_recursion(error: &wasmtime::Error) -> bool {
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else { return false };
    let frames = trace.frames();
    frames.len() >= 16 && frames.iter().all(|f| f.func_index() == frames[0].func_index())
}

/// The innermost guest frames of a trap, when wasmtime captured them.
fn backtrace_summary(error: &wasmtime::Error) -> String {
    let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() else {
        return String::new();
    };
    let frames: Vec<String> = trace
        .frames()
        .iter()
        .take(3)
        .map(|frame| frame.func_name().map_or_else(|| format!("func #{}", frame.func_index()), str::to_string))
        .collect();
    if frames.is_empty() { String::new() } else { format!(" (in {})", frames.join(" <- ")) }
}

/// Checks the emitted items against the plugin's declared ports, JSON and
/// the output limit.
fn check_output(
    plugin: &Plugin,
    emits: Vec<crate::bindings::Emit>,
    limits: RunLimits,
) -> Result<Vec<Emitted>, NodeFailure> {
    let size_bytes: usize = emits.iter().map(|e| e.item.len() + e.port.len()).sum();
    if size_bytes > limits.max_output_bytes {
        return Err(NodeFailure::OutputTooLarge { limit_bytes: limits.max_output_bytes, size_bytes });
    }
    emits
        .into_iter()
        .enumerate()
        .map(|(index, emit)| {
            if !plugin.info.outputs.contains(&emit.port) {
                return Err(NodeFailure::BadOutput {
                    message: format!(
                        "item {index} was emitted on port '{}', which {} does not declare (its ports: {})",
                        cut(emit.port, MAX_PORT_NAME_QUOTED),
                        plugin.info.name,
                        plugin.info.outputs.join(", ")
                    ),
                });
            }
            let item = crate::record::Item::from_json(emit.item).map_err(|e| NodeFailure::BadOutput {
                message: format!("item {index} on port '{}' is not valid JSON: {e}", emit.port),
            })?;
            Ok(Emitted { port: emit.port, item })
        })
        .collect()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
