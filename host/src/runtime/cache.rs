//! Compiled components on disk, so a restart does not recompile.
//!
//! Entries are keyed by the SHA-256 of the component bytes and by the
//! engine's compatibility hash (wasmtime version, target, compiler settings),
//! so a new wasmtime or a changed engine configuration never loads a stale
//! artifact: it compiles afresh under a new key.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// Loaded from the cache; no compilation.
    Hit,
    /// Compiled (taking `compile_ms`) and stored for next time.
    Compiled {
        /// How long compiling took.
        compile_ms: u64,
    },
}

/// A directory of precompiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: PathBuf,
    engine_key: String,
}

impl ComponentCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        ComponentCache { dir: dir.into(), engine_key }
    }

    /// The content hash used as (part of) the cache key.
    pub fn content_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Where the compiled form of a component with this content hash lives.
    pub fn entry_path(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!("{}-{}.cwasm", &content_hash[..32], self.engine_key))
    }

    /// Loads the compiled component for `bytes`, compiling and storing it on
    /// a miss. A corrupt or incompatible entry is replaced, never trusted.
    ///
    /// # Errors
    ///
    /// When `bytes` is not a valid component. A cache directory that cannot
    /// be written only costs a recompile next time (logged).
    pub fn load_or_compile(&self, engine: &Engine, bytes: &[u8]) -> Result<(Component, CacheOutcome)> {
        let path = self.entry_path(&Self::content_hash(bytes));
        if path.exists() {
            // SAFETY: the file is one this cache wrote with
            // `Component::serialize` for an engine with the same
            // compatibility hash; wasmtime checks the header again and
            // rejects an incompatible artifact.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "discarding unusable compiled component"),
            }
        }
        let started = Instant::now();
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        let compile_ms = duration_ms(started.elapsed());
        if let Err(e) = self.store(&path, &component) {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache compiled component");
        }
        Ok((component, CacheOutcome::Compiled { compile_ms }))
    }

    fn description_path(&self, content_hash: &str) -> PathBuf {
        self.dir.join(format!("{}-{}.describe.json", &content_hash[..32], self.engine_key))
    }

    /// What the component with this content hash said in `describe()` (or
    /// why its answer was refused), when a load stored it.
    pub(crate) fn load_description(&self, content_hash: &str) -> Option<Result<super::plugin::Description, String>> {
        let bytes = std::fs::read(self.description_path(content_hash)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Stores what `describe()` said, so the next load does not call it.
    /// A failure to store only costs a call next time (logged).
    pub(crate) fn store_description(
        &self,
        content_hash: &str,
        description: &Result<super::plugin::Description, String>,
    ) {
        let path = self.description_path(content_hash);
        let write = || -> Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, serde_json::to_vec(description)?)?;
            std::fs::rename(&tmp, &path)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a plugin's description");
        }
    }

    fn store(&self, path: &Path, component: &Component) -> Result<()> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))?;
        let bytes = component.serialize().map_err(anyhow::Error::from)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Feeds `Hash` output into SHA-256, for a key that is stable across runs.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the SHA-256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
