//! The per-run capability context: who is running, what the node grants,
//! the providers behind the interfaces, the sequence of its side effects,
//! and what the plugin logged. Every capability interface's host trait is
//! implemented on [`RunContext`]; the runtime links them into each instance
//! through [`CapabilityLinks`], the way wasmtime's WASI crates link theirs.

use super::{Capabilities, CapabilityError, Grant, GrantSet};
use crate::record::{LogLine, LogStream};
use serde::Serialize;
use std::sync::Arc;

/// Log lines kept per run from the `log` interface; later ones are counted.
pub const MAX_LOG_LINES: usize = 1000;
/// Longest log line kept, in bytes; longer ones are cut.
pub const MAX_LOG_LINE_BYTES: usize = 8 * 1024;

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
    /// are skipped.
    pub journal_empty: bool,
}

/// What one node run may reach, and what it did.
pub struct RunContext {
    identity: Arc<RunIdentity>,
    grants: GrantSet,
    capabilities: Arc<Capabilities>,
    logs: Vec<LogLine>,
    dropped_log_lines: usize,
    denied: Vec<String>,
    effect_seq: u32,
}

/// Links the capability interfaces to a run's [`RunContext`] (wasmtime's
/// `HasData`: the linker projects the run's store data onto it).
pub struct CapabilityLinks;

impl wasmtime::component::HasData for CapabilityLinks {
    type Data<'a> = &'a mut RunContext;
}

impl RunContext {
    /// The context of one run of `identity` with `grants`.
    pub fn new(identity: Arc<RunIdentity>, grants: GrantSet, capabilities: Arc<Capabilities>) -> Self {
        RunContext {
            identity,
            grants,
            capabilities,
            logs: Vec::new(),
            dropped_log_lines: 0,
            denied: Vec::new(),
            effect_seq: 0,
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

    /// Records a log line from the plugin and emits it into the host's log
    /// (inside the run's span, which carries pipeline, node and execution).
    pub fn log_line(&mut self, stream: LogStream, mut message: String) {
        if message.len() > MAX_LOG_LINE_BYTES {
            let mut cut = MAX_LOG_LINE_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("… (cut)");
        }
        macro_rules! emit {
            ($level:ident) => {
                tracing::$level!(target: "plugin", stream = ?stream, "{message}")
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

    /// What the run logged (taken), and how many lines were dropped.
    pub fn take_logs(&mut self) -> (Vec<LogLine>, usize) {
        (std::mem::take(&mut self.logs), self.dropped_log_lines)
    }

    /// Grants the plugin tried to use without having them (taken).
    pub fn take_denied(&mut self) -> Vec<String> {
        std::mem::take(&mut self.denied)
    }
}

impl crate::bindings::handoff::plugin::types::Host for RunContext {}
