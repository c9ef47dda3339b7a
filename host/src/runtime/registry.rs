//! The plugins a host knows: the standard set compiled into the binary, plus
//! any components in `--plugins` directories, which add to or override the
//! standard set by name.

use super::{Plugin, PluginSource, Runtime};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

include!(concat!(env!("OUT_DIR"), "/standard_plugins.rs"));

/// A component that could not be loaded. Loading goes on without it.
#[derive(Debug, Clone)]
pub struct LoadProblem {
    /// The file, or `built-in:NAME` for a standard plugin.
    pub source: String,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for LoadProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// Plugins by name.
#[derive(Debug, Default, Clone)]
pub struct PluginRegistry {
    plugins: BTreeMap<String, Arc<Plugin>>,
}

impl PluginRegistry {
    /// Loads the standard plugins, then every `*.wasm` in `dirs` (in order;
    /// a later plugin with the same name overrides an earlier one). A broken
    /// component is reported in the returned problems, never fatal.
    pub async fn load(runtime: &Runtime, dirs: &[PathBuf]) -> (Self, Vec<LoadProblem>) {
        let mut registry = PluginRegistry::default();
        let mut problems = Vec::new();
        for (name, bytes) in STANDARD_PLUGINS {
            match runtime.load(PluginSource::Standard, bytes.to_vec()).await {
                Ok(plugin) => registry.insert(plugin),
                Err(e) => problems.push(LoadProblem { source: format!("built-in:{name}"), message: format!("{e:#}") }),
            }
        }
        for dir in dirs {
            match wasm_files(dir) {
                Err(e) => problems.push(LoadProblem { source: dir.display().to_string(), message: e.to_string() }),
                Ok(files) => {
                    for path in files {
                        match registry.load_file(runtime, &path).await {
                            Ok(()) => {}
                            Err(e) => problems
                                .push(LoadProblem { source: path.display().to_string(), message: format!("{e:#}") }),
                        }
                    }
                }
            }
        }
        (registry, problems)
    }

    async fn load_file(&mut self, runtime: &Runtime, path: &Path) -> anyhow::Result<()> {
        let bytes = std::fs::read(path)?;
        let plugin = runtime.load(PluginSource::File(path.to_path_buf()), bytes).await?;
        if plugin.name() == crate::pipeline::MERGE_PLUGIN {
            anyhow::bail!("the plugin name 'merge' is the host's built-in merge node; rename the plugin");
        }
        if let Some(previous) = self.plugins.get(plugin.name()) {
            tracing::info!(plugin = plugin.name(), from = %plugin.info.source, replaces = %previous.info.source, "plugin overrides an earlier one");
        }
        self.insert(plugin);
        Ok(())
    }

    /// Adds `plugin`, replacing one with the same name.
    pub fn insert(&mut self, plugin: Arc<Plugin>) {
        self.plugins.insert(plugin.name().to_string(), plugin);
    }

    /// The plugin called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.get(name)
    }

    /// All plugins, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.plugins.values()
    }

    /// Plugin names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.plugins.keys().map(String::as_str).collect()
    }
}

/// The `.wasm` files directly in `dir`, sorted by name.
fn wasm_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}
