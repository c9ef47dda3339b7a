//! Pipelines: the file format RevOps edits, the checks that run before
//! anything executes, and the executor that moves items through nodes.

mod check;
pub mod cron;
mod executor;
mod locate;
pub mod merge;
pub mod model;

pub use check::{Diagnostic, MAX_NODE_TIMEOUT, check, check_cron, check_together, load_file, ungranted_import_message};
pub use executor::{Executor, History, Start};
pub use locate::{Position, SourceMap, escape_segment};
pub use merge::{MERGE_PLUGIN, MergeSpec};
pub use model::{Node, OnError, Pipeline, Trigger};

use crate::capabilities::GrantSet;
use crate::runtime::{Plugin, RunLimits};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// A pipeline that passed every check, with each node bound to its loaded
/// plugin. Only a prepared pipeline can be executed.
#[derive(Debug)]
pub struct PreparedPipeline {
    /// The pipeline as written.
    pub pipeline: Pipeline,
    /// The file it was read from.
    pub path: PathBuf,
    nodes: HashMap<String, PreparedNode>,
    /// Nodes fed by more than one node: their runs are told apart by source.
    joins: std::collections::HashSet<String>,
}

impl PreparedPipeline {
    pub(crate) fn new(pipeline: Pipeline, path: PathBuf, nodes: HashMap<String, PreparedNode>) -> Self {
        let mut sources: HashMap<&str, std::collections::HashSet<&str>> = HashMap::new();
        for (source, ports) in &pipeline.connections {
            for target in ports.values().flatten() {
                sources.entry(target.as_str()).or_default().insert(source.as_str());
            }
        }
        let joins = sources.into_iter().filter(|(_, s)| s.len() > 1).map(|(t, _)| t.to_string()).collect();
        PreparedPipeline { pipeline, path, nodes, joins }
    }

    /// The pipeline with every node tried once: a dry run answers from a
    /// recording, and asking again would get the same answer.
    #[must_use]
    pub fn tried_once(mut self) -> Self {
        for node in self.nodes.values_mut() {
            node.node.retry.max_attempts = 1;
        }
        self
    }

    /// Whether more than one node (or the trigger) sends items to `id`.
    pub fn is_join(&self, id: &str) -> bool {
        self.joins.contains(id)
    }

    /// The prepared node with this id.
    pub fn node(&self, id: &str) -> Option<&PreparedNode> {
        self.nodes.get(id)
    }

    /// The lead marks of the node with this id.
    pub fn lead_marks(&self, id: &str) -> Option<&crate::lead::LeadMarks> {
        self.nodes.get(id).map(|n| &n.lead)
    }

    /// Every lead state this pipeline's nodes can set.
    pub fn lead_states(&self) -> Vec<crate::lead::LeadState> {
        self.nodes.values().flat_map(|n| n.lead.values()).filter_map(|m| m.lead_state().ok()).collect()
    }
}

/// A node bound to its plugin, with its grants and limits resolved.
#[derive(Debug)]
pub struct PreparedNode {
    /// The node as written.
    pub node: Node,
    /// What it runs.
    pub kind: NodeKind,
    /// What the node grants.
    pub grants: GrantSet,
    /// The node's config as JSON text, serialized once.
    pub config: Arc<str>,
    /// Deadline, memory cap and output limit of one run.
    pub limits: RunLimits,
    /// What an item on each output port means for its lead: the plugin's
    /// declaration, overridden port by port by the node's `lead`.
    pub lead: crate::lead::LeadMarks,
}

/// What a node runs.
#[derive(Debug)]
pub enum NodeKind {
    /// A plugin, in the sandbox.
    Plugin(Arc<Plugin>),
    /// The host's merge (`"plugin": "merge"`).
    Merge(MergeSpec),
}

impl PreparedNode {
    /// The plugin's name, or `merge`.
    pub fn plugin_name(&self) -> &str {
        match &self.kind {
            NodeKind::Plugin(plugin) => plugin.name(),
            NodeKind::Merge(_) => MERGE_PLUGIN,
        }
    }

    /// The output ports the node can emit on.
    pub fn outputs(&self) -> Vec<String> {
        let mut outputs = match &self.kind {
            NodeKind::Plugin(plugin) => plugin.info.outputs.clone(),
            NodeKind::Merge(_) => vec![merge::MERGED_PORT.to_string(), merge::LATE_PORT.to_string()],
        };
        if self.node.on_error == OnError::ErrorPort {
            outputs.push(model::ERROR_PORT.to_string());
        }
        outputs
    }
}
