//! A loaded plugin: its compiled component, pre-instantiated, and what it
//! said about itself in `describe`.

use super::cache::{CacheOutcome, ComponentCache};
use super::run::RunLimits;
use super::{RunState, Runtime};
use crate::bindings::NodePre;
use crate::capabilities::{Capabilities, Grant, GrantSet, Interface, RunContext, RunIdentity};
use anyhow::{Context, Result, anyhow, bail};
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where a plugin came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "kebab-case")]
pub enum PluginSource {
    /// Compiled into the `handoff` binary.
    Standard,
    /// Loaded from a file (`--plugins DIR`).
    File(PathBuf),
}

impl std::fmt::Display for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginSource::Standard => f.write_str("built-in"),
            PluginSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// What a plugin is, as `handoff plugins` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PluginInfo {
    /// The name pipelines use.
    pub name: String,
    /// Semantic version.
    pub version: String,
    /// One line for people.
    pub description: String,
    /// Input ports.
    pub inputs: Vec<String>,
    /// Output ports.
    pub outputs: Vec<String>,
    /// Grants the plugin says it needs.
    pub capabilities: Vec<Grant>,
    /// Capability interfaces the component imports.
    pub imports: Vec<Interface>,
    /// JSON Schema of the node config.
    pub config_schema: Value,
    /// What an item on each output port means for its lead (the schema's
    /// `x-handoff-lead` annotation); a pipeline node may say otherwise.
    pub lead: crate::lead::LeadMarks,
    /// Where it was loaded from.
    pub source: PluginSource,
    /// SHA-256 of the component bytes.
    pub sha256: String,
    /// Whether loading compiled the component or found it in the cache.
    pub cache: CacheOutcome,
}

/// A plugin ready to run: a pre-instantiated component.
pub struct Plugin {
    /// What it said about itself, and where it came from.
    pub info: PluginInfo,
    pub(crate) pre: NodePre<RunState>,
    config_validator: jsonschema::Validator,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("info", &self.info).finish_non_exhaustive()
    }
}

/// One problem with a node's config: where (JSON pointer inside `config`)
/// and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub pointer: String,
    pub message: String,
}

impl Plugin {
    /// The plugin's name (from `describe`).
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Checks a node's `config` against the plugin's config schema.
    pub fn check_config(&self, config: &Value) -> Vec<ConfigProblem> {
        self.config_validator
            .iter_errors(config)
            .map(|error| ConfigProblem { pointer: error.instance_path().to_string(), message: error.to_string() })
            .collect()
    }

    /// Interfaces the component imports that `grants` does not open.
    pub fn ungranted_imports(&self, grants: GrantSet) -> Vec<Interface> {
        self.info.imports.iter().copied().filter(|i| !grants.opens(*i)).collect()
    }
}

impl Runtime {
    /// Compiles (or loads from the cache) a component, checks what it
    /// imports, pre-instantiates it and asks it to describe itself.
    ///
    /// # Errors
    ///
    /// When the bytes are not a component, it imports something the host
    /// does not provide, or `describe` fails or returns nonsense. The error
    /// says which.
    pub async fn load(&self, source: PluginSource, bytes: Vec<u8>) -> Result<Arc<Plugin>> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let sha256 = ComponentCache::content_hash(&bytes);
        let (component, cache_outcome) = tokio::task::spawn_blocking(move || cache.load_or_compile(&engine, &bytes))
            .await
            .context("compiling the component")?
            .context("not a valid WebAssembly component")?;

        let mut imports = Vec::new();
        for (name, _) in component.component_type().imports(&self.engine) {
            match Interface::from_import(name) {
                Some(Ok(interface)) => imports.push(interface),
                Some(Err(message)) => bail!("{message}"),
                None if name.starts_with("wasi:") || name.starts_with(Interface::PACKAGE) => {}
                None => bail!("imports {name}; plugins may import only handoff:plugin/* capabilities and wasi:*"),
            }
        }
        imports.sort();
        imports.dedup();

        let pre = self.linker.instantiate_pre(&component).map_err(|e| anyhow!("cannot link the component: {e}"))?;
        let pre = NodePre::new(pre).map_err(|e| anyhow!("does not implement the handoff:plugin `node` world: {e}"))?;

        let descriptor = self.describe(&pre).await?;
        let mut capabilities = Vec::new();
        for name in &descriptor.capabilities {
            let grant = Grant::parse(name)
                .ok_or_else(|| anyhow!("describe() names an unknown capability '{name}'; known: {}", known_grants()))?;
            capabilities.push(grant);
        }
        if !is_plugin_name(&descriptor.name) {
            bail!("describe() gives the name '{}'; names are lower-case letters, digits and '-'", descriptor.name);
        }
        if descriptor.outputs.is_empty() {
            bail!("describe() declares no output ports");
        }
        let config_schema: Value = serde_json::from_str(&descriptor.config_schema)
            .context("describe() returned a config schema that is not JSON")?;
        let config_validator = jsonschema::validator_for(&config_schema)
            .map_err(|e| anyhow!("describe() returned an invalid config schema: {e}"))?;
        let lead = crate::lead::marks_in_schema(&config_schema)
            .map_err(|e| anyhow!("describe() declares lead states wrongly: {e}"))?;
        for port in lead.keys() {
            if port != crate::lead::ANY_PORT && !descriptor.outputs.contains(port) {
                bail!("describe() declares a lead state for port '{port}', which is not one of its outputs");
            }
        }

        Ok(Arc::new(Plugin {
            info: PluginInfo {
                name: descriptor.name,
                version: descriptor.version,
                description: descriptor.description,
                inputs: descriptor.inputs,
                outputs: descriptor.outputs,
                capabilities,
                imports,
                config_schema,
                lead,
                source,
                sha256,
                cache: cache_outcome,
            },
            pre,
            config_validator,
        }))
    }

    /// Calls `describe` in a fresh instance with no grants.
    async fn describe(&self, pre: &NodePre<RunState>) -> Result<crate::bindings::Descriptor> {
        let identity = Arc::new(RunIdentity { plugin: "(loading)".into(), ..RunIdentity::default() });
        let limits = RunLimits { deadline: Duration::from_secs(10), ..RunLimits::default() };
        let context = RunContext::new(identity, GrantSet::default(), Arc::new(Capabilities::none()));
        let state = RunState::new(context, limits.memory_bytes);
        let mut store = wasmtime::Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        let call = async {
            let node = pre.instantiate_async(&mut store).await?;
            node.call_describe(&mut store).await
        };
        let descriptor = match tokio::time::timeout(limits.deadline * 2, call).await {
            Ok(Ok(descriptor)) => descriptor,
            Ok(Err(e)) => bail!("describe() failed: {e:#}"),
            Err(_) => bail!("describe() did not return within {:?}", limits.deadline * 2),
        };
        self.dropper.dispose(store);
        Ok(descriptor)
    }
}

/// Plugin names: what pipelines write in `"plugin"`.
pub fn is_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn known_grants() -> String {
    Grant::ALL.iter().map(|g| g.as_str()).collect::<Vec<_>>().join(", ")
}
