//! Pipelines: the file format RevOps edits, the checks that run before
//! anything executes, and the executor that moves items through nodes.

mod check;
pub mod cron;
mod executor;
mod locate;
pub mod model;

pub use check::{Diagnostic, MAX_NODE_TIMEOUT, check, check_cron, load_file, ungranted_import_message};
pub use executor::{Executor, Start};
pub use locate::{Position, SourceMap};
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
}

impl PreparedPipeline {
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
    /// The plugin it runs.
    pub plugin: Arc<Plugin>,
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
