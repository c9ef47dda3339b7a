//! What one node run's `Store` holds: WASI, limits, grants, the capability
//! providers, and what the run logged.

use crate::capabilities::{Capabilities, CapabilityError, Grant, GrantSet};
use serde::Serialize;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bytes of stdout (and, separately, stderr) kept per run.
pub const STDIO_CAPTURE_BYTES: usize = 256 * 1024;
/// Log lines kept per run from the `log` interface; later ones are counted.
pub const MAX_LOG_LINES: usize = 1000;
/// Longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

/// Who is running: the tags every log line and error carries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunIdentity {
    pub pipeline: String,
    pub node: String,
    pub plugin: String,
    pub execution_id: String,
    pub lead_id: Option<String>,
    /// Which run of which node this is within the execution
    /// (`<execution>/<node>/<n>`): the prefix of its effect keys.
    pub effect_scope: String,
    /// Nothing can be in the effect journal for this attempt yet (the
    /// execution's first run, the node's first attempt): replay lookups
    /// are skipped.
    pub journal_empty: bool,
}

/// Where a plugin log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    Debug,
    Info,
    Warn,
    Error,
    Stdout,
    Stderr,
}

/// One line a plugin logged or printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub stream: LogStream,
    pub message: String,
}

/// The per-run memory cap. Growing past it traps at once, with the sizes
/// recorded so the node error can say what happened.
pub(crate) struct MemoryCap {
    pub(crate) limit: usize,
    pub(crate) exceeded: Option<usize>,
}

/// Table elements a run may grow to.
const MAX_TABLE_ELEMENTS: usize = 200_000;

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = Some(desired);
            wasmtime::bail!("memory cap of {} bytes reached (asked for {desired})", self.limit);
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|max| desired <= max))
    }
}

/// The data of one node run's `Store`.
pub struct RunState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    identity: Arc<RunIdentity>,
    grants: GrantSet,
    capabilities: Arc<Capabilities>,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) dropped_log_lines: usize,
    pub(crate) denied: Vec<String>,
    effect_seq: u32,
}

impl RunState {
    pub(crate) fn new(
        identity: Arc<RunIdentity>,
        grants: GrantSet,
        capabilities: Arc<Capabilities>,
        memory_limit: usize,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let stderr = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        // WASI cut down to what a plugin needs: no filesystem (no preopens),
        // no sockets, no environment, no arguments, empty stdin. Clocks and
        // random numbers stay; stdout and stderr are captured.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap { limit: memory_limit, exceeded: None },
            identity,
            grants,
            capabilities,
            stdout,
            stderr,
            logs: Vec::new(),
            dropped_log_lines: 0,
            denied: Vec::new(),
            effect_seq: 0,
        }
    }

    /// The key of the next side effect of this run.
    pub(crate) fn next_effect_key(&mut self, what: &str) -> String {
        self.effect_seq += 1;
        format!("{}/{}:{what}", self.identity.effect_scope, self.effect_seq)
    }

    /// Who is running.
    pub fn identity(&self) -> &RunIdentity {
        &self.identity
    }

    /// The providers behind the capability interfaces.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
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
        tracing::warn!(pipeline = %id.pipeline, node = %id.node, plugin = %id.plugin, execution = %id.execution_id, %grant, "capability call denied");
        self.denied.push(grant.to_string());
        Err(CapabilityError::Denied(message))
    }

    /// Records a log line from the plugin and emits it into the host's log.
    pub(crate) fn log_line(&mut self, stream: LogStream, mut message: String) {
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (cut)");
        }
        let id = &self.identity;
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(target: "plugin", pipeline = %id.pipeline, node = %id.node, execution = %id.execution_id, stream = ?stream, "{message}")
            };
        }
        match stream {
            LogStream::Debug => emit!(debug),
            LogStream::Info | LogStream::Stdout => emit!(info),
            LogStream::Warn | LogStream::Stderr => emit!(warn),
            LogStream::Error => emit!(error),
        }
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push(LogLine { stream, message });
        } else {
            self.dropped_log_lines += 1;
        }
    }

    /// Moves captured stdout/stderr into the log, a line at a time.
    pub(crate) fn drain_stdio(&mut self) {
        for (stream, pipe) in [(LogStream::Stdout, self.stdout.clone()), (LogStream::Stderr, self.stderr.clone())] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                self.log_line(stream, line.to_string());
            }
        }
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl super::bindings::handoff::plugin::types::Host for RunState {}
