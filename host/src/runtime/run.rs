//! One node run: a fresh instance, one call to `run`, a checked result.

use super::{EPOCH_TICK, Plugin, RunState, Runtime};
use crate::bindings::{Context, NodeError};
use crate::capabilities::{Capabilities, GrantSet, RunContext, RunIdentity};
use crate::record::{Emitted, LogLine};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Limits one run is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall-clock time the run may take, host calls included.
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

impl RunLimits {
    /// The deadline in epoch ticks (rounded up, plus the tick in progress).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let ticks = self.deadline.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX - 1) + 1
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
    /// The run passed its deadline and was stopped.
    Timeout {
        /// The deadline.
        limit_ms: u64,
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
        matches!(self, NodeFailure::Retryable { .. } | NodeFailure::Host { .. })
    }

    /// A short name for the failure class (`timeout`, `trap`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            NodeFailure::InvalidInput { .. } => "invalid-input",
            NodeFailure::Retryable { .. } => "retryable",
            NodeFailure::Fatal { .. } => "fatal",
            NodeFailure::Timeout { .. } => "timeout",
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
            NodeFailure::Timeout { limit_ms } => write!(f, "stopped after its {limit_ms} ms deadline"),
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
    /// How long it took, waiting for a slot included.
    pub duration: Duration,
    /// What it logged.
    pub logs: Vec<LogLine>,
    /// Grants the plugin tried to use without having them.
    pub denied: Vec<String>,
}

impl Runtime {
    /// Runs `plugin` once on one item in a fresh instance. Never panics on
    /// plugin misbehaviour: every failure comes back as a [`NodeFailure`].
    #[tracing::instrument(
        name = "node_run",
        skip_all,
        fields(node = %invocation.identity.node, plugin = %invocation.identity.plugin, attempt = invocation.attempt)
    )]
    pub async fn run(&self, plugin: &Plugin, capabilities: &Arc<Capabilities>, invocation: Invocation) -> RunOutcome {
        let started = Instant::now();
        // Wait for a pool slot rather than fail on a full pool; the
        // deadline starts once the run has its slot.
        let _slot = self.slots.acquire().await.expect("the run semaphore is never closed");
        let Invocation { identity, attempt, config, item, grants, limits } = invocation;
        let context = RunContext::new(identity.clone(), grants, capabilities.clone());
        let state = RunState::new(context, limits.memory_bytes);
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();

        let context = Context {
            pipeline: identity.pipeline.clone(),
            node: identity.node.clone(),
            execution_id: identity.execution_id.clone(),
            lead_id: identity.lead_id.clone(),
            attempt,
            config: config.to_string(),
        };
        // The epoch deadline stops wasm code; this timeout also covers a run
        // stuck inside a host call.
        let grace = limits.deadline + EPOCH_TICK * 4;
        let call = async {
            let node = plugin.pre.instantiate_async(&mut store).await?;
            node.call_run(&mut store, &context, &item.json().to_string()).await
        };
        let raw = tokio::time::timeout(grace, call).await;

        let result = match raw {
            Err(_) => Err(NodeFailure::Timeout { limit_ms: millis(limits.deadline) }),
            Ok(Err(error)) => Err(classify_trap(&error, store.data(), limits)),
            Ok(Ok(Err(error))) => Err(match error {
                NodeError::InvalidInput(message) => NodeFailure::InvalidInput { message },
                NodeError::Retryable(message) => NodeFailure::Retryable { message },
                NodeError::Fatal(message) => NodeFailure::Fatal { message },
            }),
            Ok(Ok(Ok(emits))) => check_output(plugin, emits, limits),
        };

        let state = store.data_mut();
        state.drain_stdio();
        let (logs, dropped) = state.context.take_logs();
        let denied = state.context.take_denied();
        if dropped > 0 {
            tracing::warn!(dropped, "plugin log lines dropped");
        }
        if let Err(failure) = &result {
            tracing::warn!(attempt, kind = failure.kind(), "node run failed: {failure}");
        }
        self.dropper.dispose(store);
        RunOutcome { result, duration: started.elapsed(), logs, denied }
    }
}

/// Turns a wasmtime error (a trap or a failed instantiation) into the
/// failure a person can act on.
fn classify_trap(error: &wasmtime::Error, state: &RunState, limits: RunLimits) -> NodeFailure {
    if let Some(requested_bytes) = state.memory.exceeded {
        return NodeFailure::MemoryLimit { limit_bytes: state.memory.limit, requested_bytes };
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => NodeFailure::Timeout { limit_ms: millis(limits.deadline) },
        Some(trap) => NodeFailure::Trap { message: format!("{trap}{}", backtrace_summary(error)) },
        None if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() => {
            NodeFailure::Host { message: format!("too many runs in flight: {error}") }
        }
        None => NodeFailure::Trap { message: format!("{error:#}") },
    }
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
                        emit.port,
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
