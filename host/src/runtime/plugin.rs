//! A loaded plugin: its compiled component, pre-instantiated, and what it
//! said about itself in `describe`.

use super::budget::Budget;
use super::cache::{CacheOutcome, ComponentCache};
use super::run::{RunLimits, watch};
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

/// What a plugin is, as `handoff plugin list` shows it.
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
    /// The language it was written in, when its toolchain says so in the
    /// component's `producers` section (`python`, `javascript`).
    pub language: Option<String>,
}

/// Linear memory a node run gets when the node does not say (`memory_mb`):
/// 64 MiB, and 256 MiB for Python and JavaScript, whose interpreters need
/// that much before the plugin's own code runs.
pub fn default_memory_bytes(language: Option<&str>) -> usize {
    match language {
        Some("python" | "javascript") => 256 * 1024 * 1024,
        _ => super::RunLimits::default().memory_bytes,
    }
}

/// The language a component was written in, when its toolchain leaves a
/// mark: componentize-js names JavaScript (and itself) in the `producers`
/// section; componentize-py names nothing there, but links CPython in as
/// `libpython3.N.so`, whose name the component carries.
fn language_of(bytes: &[u8]) -> Option<String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(wasmparser::Payload::CustomSection(section)) = payload else { continue };
        let wasmparser::KnownCustom::Producers(producers) = section.as_known() else { continue };
        for field in producers.into_iter().flatten() {
            for value in field.values.into_iter().flatten() {
                match (field.name, value.name) {
                    ("language", "JavaScript") | ("processed-by", "ComponentizeJS" | "componentize-js") => {
                        return Some("javascript".into());
                    }
                    ("language", "Python") | ("processed-by", "componentize-py") => return Some("python".into()),
                    _ => {}
                }
            }
        }
    }
    let python = b"libpython3.";
    bytes.windows(python.len()).any(|w| w == python).then(|| "python".into())
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
        let language = language_of(&bytes);
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

        // describe() runs once per component: its answer (or why it was
        // refused) is cached beside the compiled code.
        let descriptor = if let Some(cached) = self.cache.load_description(&sha256) {
            cached
        } else {
            let described = self.describe(&pre).await;
            if described.as_ref().is_ok() || described.as_ref().is_err_and(|e| e.cacheable) {
                self.cache.store_description(&sha256, &described.clone().map_err(|e| e.message.clone()));
            }
            described.map_err(|e| e.message)
        };
        let descriptor = descriptor.map_err(anyhow::Error::msg)?;
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
                language,
            },
            pre,
            config_validator,
        }))
    }

    /// Calls `describe` in a fresh instance with no grants, on the plugin
    /// pool, held to [`DESCRIBE_DEADLINE`], and checks what it returned
    /// against the descriptor bounds before anything parses it.
    async fn describe(&self, pre: &NodePre<RunState>) -> Result<Description, DescribeFailure> {
        let engine = self.engine.clone();
        let pre = pre.clone();
        let dropper = self.dropper.clone();
        let job = async move {
            let identity = Arc::new(RunIdentity { plugin: "(loading)".into(), ..RunIdentity::default() });
            let context = RunContext::new(identity, GrantSet::default(), Arc::new(Capabilities::none()));
            let state = RunState::new(context, RunLimits::default().memory_bytes);
            let mut store = wasmtime::Store::new(&engine, state);
            store.limiter(|state| &mut state.memory);
            let budget = Budget::new(DESCRIBE_DEADLINE);
            let ticker = budget.clone();
            store.epoch_deadline_callback(move |_| Ok(ticker.tick()));
            store.set_epoch_deadline(1);
            let call = async {
                let node = pre.instantiate_async(&mut store).await?;
                node.call_describe(&mut store).await
            };
            let outcome = match watch(&budget, call).await {
                Ok(Ok(descriptor)) => Ok(descriptor),
                Ok(Err(e)) if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::Interrupt)) => {
                    Err(DescribeFailure::slow(&budget))
                }
                Ok(Err(_)) if let Some(asked) = store.data().memory.exceeded => Err(DescribeFailure {
                    message: format!(
                        "describe() asked for {} MiB of memory; it may use {} MiB",
                        asked.div_ceil(1 << 20),
                        store.data().memory.limit >> 20
                    ),
                    cacheable: true,
                }),
                Ok(Err(e)) => Err(DescribeFailure {
                    message: super::run::cap_text(format!("describe() failed: {e:#}")),
                    cacheable: true,
                }),
                Err(_) => Err(DescribeFailure::slow(&budget)),
            };
            dropper.dispose(store);
            outcome
        };
        let descriptor = self
            .on_pool(job)
            .await
            .map_err(|e| DescribeFailure { message: format!("describe() could not run: {e}"), cacheable: false })??;
        Description::bounded(descriptor).map_err(|message| DescribeFailure { message, cacheable: true })
    }
}

/// How long `describe()` may run when a plugin is loaded.
pub const DESCRIBE_DEADLINE: Duration = Duration::from_secs(2);
/// Largest descriptor (config schema included), in bytes.
pub const MAX_DESCRIPTOR_BYTES: usize = 256 * 1024;
/// Most ports a plugin may declare, inputs and outputs each.
pub const MAX_PORTS: usize = 32;
/// Longest port name, in bytes.
pub const MAX_PORT_NAME_BYTES: usize = 64;
/// Most regular expressions (`pattern`, `patternProperties`) in a config schema.
pub const MAX_SCHEMA_PATTERNS: usize = 128;
/// Longest regular expression in a config schema, in bytes.
pub const MAX_PATTERN_BYTES: usize = 512;
/// Most repetition one pattern may count (`{n}`, `{n,m}`: the sum of
/// their larger bounds).
pub const MAX_PATTERN_REPEAT: u32 = 1000;
/// Deepest nesting of a config schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;

/// Why `describe()` gave no usable answer.
#[derive(Debug, Clone)]
struct DescribeFailure {
    message: String,
    /// The answer would be the same next time (a trap, an oversized
    /// schema, a loop that ran its whole deadline), so it is cached.
    cacheable: bool,
}

impl DescribeFailure {
    fn slow(budget: &Budget) -> Self {
        let ran = budget.used();
        DescribeFailure {
            message: format!(
                "describe() did not return within {} s; it should only return constants",
                DESCRIBE_DEADLINE.as_secs()
            ),
            // Stopped for host load before it used its time: try again
            // next load.
            cacheable: ran >= budget.limit(),
        }
    }
}

/// What a plugin's `describe()` returned, checked against the bounds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[allow(clippy::struct_field_names)] // the WIT descriptor's own field names
pub(crate) struct Description {
    pub name: String,
    pub version: String,
    pub description: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub capabilities: Vec<String>,
    pub config_schema: String,
}

impl Description {
    fn bounded(d: crate::bindings::Descriptor) -> Result<Self, String> {
        let size = d.name.len()
            + d.version.len()
            + d.description.len()
            + d.config_schema.len()
            + [&d.inputs, &d.outputs, &d.capabilities].iter().flat_map(|l| l.iter()).map(String::len).sum::<usize>();
        if size > MAX_DESCRIPTOR_BYTES {
            return Err(format!(
                "describe() returned {size} bytes; the limit is {MAX_DESCRIPTOR_BYTES} (config schema included)"
            ));
        }
        for (what, ports) in [("input", &d.inputs), ("output", &d.outputs)] {
            if ports.len() > MAX_PORTS {
                return Err(format!("describe() declares {} {what} ports; the limit is {MAX_PORTS}", ports.len()));
            }
            if let Some(long) = ports.iter().find(|p| p.len() > MAX_PORT_NAME_BYTES || p.is_empty()) {
                return Err(format!(
                    "describe() declares the {what} port '{}'; port names are 1 to {MAX_PORT_NAME_BYTES} bytes",
                    super::run::cut(long.clone(), MAX_PORT_NAME_BYTES)
                ));
            }
        }
        if d.name.len() > 64 || d.version.len() > 64 || d.description.len() > 1024 {
            return Err("describe() returned a name or version over 64 bytes, or a description over 1 KiB".into());
        }
        let schema: Value = serde_json::from_str(&d.config_schema)
            .map_err(|e| format!("describe() returned a config schema that is not JSON: {e}"))?;
        schema_complexity(&schema)?;
        Ok(Description {
            name: d.name,
            version: d.version,
            description: d.description,
            inputs: d.inputs,
            outputs: d.outputs,
            capabilities: d.capabilities,
            config_schema: d.config_schema,
        })
    }
}

/// Refuses a config schema that would be costly to compile: too deep, too
/// many regular expressions, or ones too long or with huge repetition
/// counts (compiling those takes time and memory out of all proportion to
/// their size).
fn schema_complexity(schema: &Value) -> Result<(), String> {
    fn walk(value: &Value, depth: usize, patterns: &mut Vec<String>) -> Result<(), String> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(format!("the config schema nests deeper than {MAX_SCHEMA_DEPTH} levels"));
        }
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if key == "pattern"
                        && let Some(pattern) = child.as_str()
                    {
                        patterns.push(pattern.to_string());
                    }
                    if key == "patternProperties"
                        && let Some(properties) = child.as_object()
                    {
                        patterns.extend(properties.keys().cloned());
                    }
                    walk(child, depth + 1, patterns)?;
                }
            }
            Value::Array(items) => {
                for item in items {
                    walk(item, depth + 1, patterns)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut patterns = Vec::new();
    walk(schema, 0, &mut patterns)?;
    if patterns.len() > MAX_SCHEMA_PATTERNS {
        return Err(format!(
            "the config schema has {} regular expressions; the limit is {MAX_SCHEMA_PATTERNS}",
            patterns.len()
        ));
    }
    for pattern in &patterns {
        if pattern.len() > MAX_PATTERN_BYTES {
            return Err(format!(
                "the config schema has a {}-byte regular expression; the limit is {MAX_PATTERN_BYTES}",
                pattern.len()
            ));
        }
        if let Some(count) = counted_repetition(pattern).filter(|n| *n > MAX_PATTERN_REPEAT) {
            return Err(format!(
                "the config schema's pattern '{}' counts {count} repetitions; the limit is {MAX_PATTERN_REPEAT}",
                super::run::cut(pattern.clone(), 64)
            ));
        }
    }
    Ok(())
}

/// The sum of the counts in `{n}`, `{n,}` and `{n,m}` (the larger bound)
/// in a regular expression: what its compiled form grows with.
fn counted_repetition(pattern: &str) -> Option<u32> {
    let mut total: Option<u32> = None;
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find('}') else { break };
        let inside = &rest[..close];
        if !inside.is_empty() && inside.chars().all(|c| c.is_ascii_digit() || c == ',') {
            let bound = inside.split(',').filter(|b| !b.is_empty()).map(|b| b.parse::<u32>().unwrap_or(u32::MAX)).max();
            if let Some(n) = bound {
                total = Some(total.unwrap_or(0).saturating_add(n));
            }
        }
    }
    total
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn repetition_counts_are_read_from_patterns() {
        assert_eq!(counted_repetition("^[a-z]{2,5}-(x{3}){1000}$"), Some(1008));
        assert_eq!(counted_repetition("^\\{not a count\\}$"), None);
        assert_eq!(counted_repetition("^.{1,255}$"), Some(255));
    }

    #[test]
    fn costly_schemas_are_refused_with_the_reason() {
        let many: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("^p{i}$"), json!({"type": "string"}))).collect();
        let error = schema_complexity(&json!({"patternProperties": many})).unwrap_err();
        assert!(error.contains("200 regular expressions"), "{error}");
        let error = schema_complexity(&json!({"properties": {"a": {"pattern": "(a{1000}){1000}"}}})).unwrap_err();
        assert!(error.contains("counts 2000 repetitions"), "{error}");
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"items": deep});
        }
        assert!(schema_complexity(&deep).unwrap_err().contains("nests deeper"));
        assert!(schema_complexity(&json!({"properties": {"email": {"pattern": "^[^@]+@[^@]+$"}}})).is_ok());
    }
}
