//! The per-run capability context: who is running, what the node grants,
//! the providers behind the interfaces, the sequence of its side effects,
//! and what the plugin logged. Every capability interface's host trait is
//! implemented on [`RunContext`]; the runtime links them into each instance
//! through [`CapabilityLinks`], the way wasmtime's WASI crates link theirs.

use super::{Capabilities, CapabilityError, Grant, GrantSet};
use crate::record::{LogLine, LogStream};
use serde::Serialize;
use std::sync::Arc;

/// Log lines kept per run (the `log` interface, stdout and stderr); later
/// ones are counted.
pub const MAX_LOG_LINES: usize = 1000;
/// Bytes of log kept per run; later lines are counted.
pub const MAX_LOG_BYTES: usize = 64 * 1024;
/// Longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;
/// Longest plugin log line written to the host's log, in bytes.
pub const HOST_LOG_LINE_BYTES: usize = 1024;
/// Plugin log lines per second (per plugin, burst [`HOST_LOG_BURST`]) that
/// reach the host's log; the rest are counted and reported.
pub const HOST_LOG_LINES_PER_SECOND: f64 = 20.0;
/// Lines a plugin may log to the host's log at once before the rate applies.
pub const HOST_LOG_BURST: f64 = 100.0;

/// The host's log is one per process, so its rate limit is too: a token
/// bucket per plugin, shared by all of that plugin's runs.
struct HostLogBucket {
    tokens: f64,
    refilled: std::time::Instant,
    dropped: u64,
}

static HOST_LOG: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, HostLogBucket>>> =
    std::sync::LazyLock::new(Default::default);

/// Whether a line of `plugin` may go to the host's log now, and how many
/// of its lines were dropped since the last one that did.
fn host_log_admit(plugin: &str) -> (bool, u64) {
    let now = std::time::Instant::now();
    let mut buckets = HOST_LOG.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let bucket = buckets.entry(plugin.to_string()).or_insert(HostLogBucket {
        tokens: HOST_LOG_BURST,
        refilled: now,
        dropped: 0,
    });
    let refill = now.duration_since(bucket.refilled).as_secs_f64() * HOST_LOG_LINES_PER_SECOND;
    bucket.tokens = (bucket.tokens + refill).min(HOST_LOG_BURST);
    bucket.refilled = now;
    if bucket.tokens >= 1.0 {
        bucket.tokens -= 1.0;
        (true, std::mem::take(&mut bucket.dropped))
    } else {
        bucket.dropped += 1;
        (false, 0)
    }
}

/// Cuts `message` to `max` bytes on a character boundary, marking the cut.
fn cut_line(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return std::borrow::Cow::Borrowed(message);
    }
    let mut at = max;
    while !message.is_char_boundary(at) {
        at -= 1;
    }
    std::borrow::Cow::Owned(format!("{}… ({} bytes, cut)", &message[..at], message.len()))
}

/// Who is running: the tags every log line and error carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunIdentity {
    /// The pipeline's name.
    pub pipeline: String,
    /// The node id.
    pub node: String,
    /// The plugin's name.
    pub plugin: String,
    /// The execution.
    pub execution_id: String,
    /// The lead the execution is about, when known.
    pub lead_id: Option<String>,
    /// Which run of which node this is within the execution
    /// (`<execution>/<node>/<n>`): the prefix of its effect keys.
    pub effect_scope: String,
    /// Nothing can be in the effect journal for this attempt yet (the
    /// execution's first run, the node's first attempt): replay lookups
    /// are skipped, and no effect is looked for at its provider.
    pub journal_empty: bool,
    /// No effect of this execution happened before this time (host clock,
    /// ms): where a run that may repeat an earlier one starts looking for
    /// what that one did at the provider.
    pub effects_since_ms: i64,
}

/// What one node run may reach, and what it did.
pub struct RunContext {
    identity: Arc<RunIdentity>,
    grants: GrantSet,
    capabilities: Arc<Capabilities>,
    logs: Vec<LogLine>,
    log_bytes: usize,
    dropped_log_lines: usize,
    denied: Vec<String>,
    effect_seq: u32,
    run_clock: Option<Arc<dyn RunClock>>,
    reads: Vec<crate::record::CallRecord>,
    read_bytes: usize,
}

/// Bytes of provider answers kept per run; later answers are not kept (a
/// simulation then asks for them again, or reports them missing).
pub const MAX_READ_BYTES: usize = 256 * 1024;

/// A run's deadline clock, as the sandbox keeps it. Capability calls that
/// wait on the host's own ledger (plugin state, the effect journal) stop it:
/// the ledger's load is the host's, not the plugin's, and must not push a
/// plugin past its deadline (or trip its circuit breaker). The wall-clock
/// cap on a run still applies.
pub trait RunClock: Send + Sync {
    /// Stops counting the run's time.
    fn pause(&self);
    /// Counts it again.
    fn resume(&self);
}

/// While it lives, the run's clock is stopped.
pub(crate) struct LedgerWait(Option<Arc<dyn RunClock>>);

impl Drop for LedgerWait {
    fn drop(&mut self) {
        if let Some(clock) = &self.0 {
            clock.resume();
        }
    }
}

/// Links the capability interfaces to a run's [`RunContext`] (wasmtime's
/// `HasData`: the linker projects the run's store data onto it).
pub struct CapabilityLinks;

impl wasmtime::component::HasData for CapabilityLinks {
    type Data<'a> = &'a mut RunContext;
}

impl RunContext {
    /// Lets ledger waits stop the run's deadline clock.
    pub fn set_run_clock(&mut self, clock: Arc<dyn RunClock>) {
        self.run_clock = Some(clock);
    }

    /// Stops the run's clock until the returned guard is dropped: for a
    /// wait on the host's ledger.
    pub(crate) fn ledger_wait(&self) -> LedgerWait {
        if let Some(clock) = &self.run_clock {
            clock.pause();
        }
        LedgerWait(self.run_clock.clone())
    }

    /// The context of one run of `identity` with `grants`.
    pub fn new(identity: Arc<RunIdentity>, grants: GrantSet, capabilities: Arc<Capabilities>) -> Self {
        RunContext {
            identity,
            grants,
            capabilities,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_log_lines: 0,
            denied: Vec::new(),
            effect_seq: 0,
            run_clock: None,
            reads: Vec::new(),
            read_bytes: 0,
        }
    }

    /// Who is running.
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    /// The providers behind the capability interfaces.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The key of the next side effect of this run.
    pub(crate) fn next_effect_key(&mut self, what: &str) -> String {
        self.effect_seq += 1;
        format!("{}/{}:{what}", self.identity.effect_scope, self.effect_seq)
    }

    /// Checks `grant`, then returns the provider `pick` selects.
    ///
    /// # Errors
    ///
    /// `denied` when the node lacks the grant (recorded and logged);
    /// `unavailable` when no provider is configured.
    pub(crate) fn provider<P: ?Sized>(
        &mut self,
        grant: Grant,
        pick: impl FnOnce(&Capabilities) -> &Option<Arc<P>>,
    ) -> Result<Arc<P>, CapabilityError> {
        self.authorize(grant)?;
        tracing::trace!(provider = grant.interface().name(), %grant, "capability call");
        pick(&self.capabilities).clone().ok_or_else(|| {
            CapabilityError::Unavailable(format!("{} is not configured on this host", grant.interface().name()))
        })
    }

    fn authorize(&mut self, grant: Grant) -> Result<(), CapabilityError> {
        if self.grants.allows(grant) {
            return Ok(());
        }
        let id = &self.identity;
        let message = format!(
            "{grant} is not granted to node '{}' of pipeline '{}'; add \"{grant}\" to the node's capabilities if the plugin should have it",
            id.node, id.pipeline
        );
        tracing::warn!(%grant, "capability call denied");
        self.denied.push(grant.to_string());
        Err(CapabilityError::Denied(message))
    }

    /// Records a log line from the plugin (up to [`MAX_LOG_LINES`] lines
    /// and [`MAX_LOG_BYTES`] per run) and emits it into the host's log
    /// (inside the run's span, which carries pipeline, node and execution),
    /// cut to [`HOST_LOG_LINE_BYTES`] and rate-limited per plugin.
    pub fn log_line(&mut self, stream: LogStream, message: String) {
        let (admitted, dropped) = host_log_admit(&self.identity.plugin);
        if admitted {
            if dropped > 0 {
                tracing::warn!(target: "plugin", dropped, "{dropped} log lines of plugin {} dropped (over {HOST_LOG_LINES_PER_SECOND} lines a second)", self.identity.plugin);
            }
            let line = cut_line(&message, HOST_LOG_LINE_BYTES);
            macro_rules! emit {
                ($level:ident) => {
                    tracing::$level!(target: "plugin", stream = ?stream, "{line}")
                };
            }
            match stream {
                LogStream::Debug => emit!(debug),
                LogStream::Info | LogStream::Stdout => emit!(info),
                LogStream::Warn | LogStream::Stderr => emit!(warn),
                LogStream::Error => emit!(error),
            }
        }
        let message = cut_line(&message, MAX_LOG_LINE_BYTES).into_owned();
        if self.logs.len() < MAX_LOG_LINES && self.log_bytes + message.len() <= MAX_LOG_BYTES {
            self.log_bytes += message.len();
            self.logs.push(LogLine { stream, message });
        } else {
            self.dropped_log_lines += 1;
        }
    }

    /// What the run logged (taken), and how many lines were dropped.
    pub fn take_logs(&mut self) -> (Vec<LogLine>, usize) {
        (std::mem::take(&mut self.logs), self.dropped_log_lines)
    }

    /// Keeps what a provider answered to `call` with `args` (successful
    /// reads only), up to [`MAX_READ_BYTES`] per run.
    pub(crate) fn record_read<T: Serialize>(&mut self, call: &str, args: serde_json::Value, answer: &T) {
        let Ok(answer) = serde_json::to_value(answer) else { return };
        let size = call.len() + crate::record::json_len(&args) + crate::record::json_len(&answer);
        if self.read_bytes + size > MAX_READ_BYTES {
            return;
        }
        self.read_bytes += size;
        self.reads.push(crate::record::CallRecord { call: call.to_string(), args, answer });
    }

    /// [`Self::record_read`] of an answer, when it is one.
    pub(crate) fn keep_read<T: Serialize, E>(&mut self, call: &str, args: serde_json::Value, answer: &Result<T, E>) {
        if let Ok(answer) = answer {
            self.record_read(call, args, answer);
        }
    }

    /// What the run's providers answered (taken).
    pub fn take_reads(&mut self) -> Vec<crate::record::CallRecord> {
        std::mem::take(&mut self.reads)
    }

    /// Grants the plugin tried to use without having them (taken).
    pub fn take_denied(&mut self) -> Vec<String> {
        std::mem::take(&mut self.denied)
    }
}

impl crate::bindings::handoff::plugin::types::Host for RunContext {}
