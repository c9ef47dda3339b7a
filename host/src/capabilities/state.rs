//! `handoff:plugin/state`: durable key-value storage private to each plugin.

use super::RunContext;
use super::journal::Guard;
use super::{CapabilityError, Grant};
use crate::bindings::handoff::plugin::state::Host;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

/// Longest key a plugin may use, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Largest value a plugin may store, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Durable key-value storage. `scope` is the plugin's name, so plugins never
/// see each other's keys.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The value at `key`, if any.
    async fn get(&self, scope: &str, key: &str) -> Result<Option<String>, CapabilityError>;
    /// Sets `key` to `value` (JSON).
    async fn set(&self, scope: &str, key: &str, value: &str) -> Result<(), CapabilityError>;
    /// Removes `key`.
    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError>;
    /// Adds `delta`. With `effect` (the effect journal's key for this
    /// call), a store that keeps the journal records the result under it in
    /// the same transaction, so a crash can neither lose nor repeat the
    /// increment; other stores ignore it.
    async fn increment(&self, scope: &str, key: &str, delta: i64, effect: Option<&str>)
    -> Result<i64, CapabilityError>;
}

impl Host for RunContext {
    async fn get(&mut self, key: String) -> Result<Option<String>, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateRead, |c| &c.state)?;
        store.get(&self.identity().plugin, &key).await
    }

    async fn set(&mut self, key: String, value: String) -> Result<(), CapabilityError> {
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(CapabilityError::Invalid(format!(
                "value is {} bytes; the limit is {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        require_json(&value, "value")?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        store.set(&self.identity().plugin, &key, &value).await
    }

    async fn delete(&mut self, key: String) -> Result<(), CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        store.delete(&self.identity().plugin, &key).await
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        let scope = self.identity().plugin.clone();
        // Not idempotent: a replay must return the first result, not add again.
        self.effect("state.increment", Guard::Atomic, |attempt| async move {
            store.increment(&scope, &key, delta, attempt.key.as_deref()).await
        })
        .await
    }
}

fn check_key(key: &str) -> Result<(), CapabilityError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(CapabilityError::Invalid(format!("keys are 1 to {MAX_KEY_BYTES} bytes")));
    }
    Ok(())
}

/// Rejects text that is not JSON, naming the argument.
pub(super) fn require_json(text: &str, what: &str) -> Result<(), CapabilityError> {
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| CapabilityError::Invalid(format!("{what} is not valid JSON: {e}")))
}

/// Plugin state in one JSON file per plugin under a directory, written
/// atomically (temporary file, fsync, rename) on every change.
///
/// For one-shot runs (`handoff run`); a server keeps plugin state in the
/// ledger (`SqliteStore`), where an increment and its journal record commit
/// together.
pub struct FileStateStore {
    dir: PathBuf,
    scopes: Mutex<HashMap<String, BTreeMap<String, String>>>,
}

impl FileStateStore {
    /// State kept under `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileStateStore { dir: dir.into(), scopes: Mutex::new(HashMap::new()) }
    }

    fn path(&self, scope: &str) -> PathBuf {
        let safe: String =
            scope.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        self.dir.join(format!("{safe}.json"))
    }

    /// Runs `f` on the scope's map, loading it first; saves when `f` says so.
    fn with_scope<T>(
        &self,
        scope: &str,
        f: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(T, bool), CapabilityError>,
    ) -> Result<T, CapabilityError> {
        let mut scopes = self.scopes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !scopes.contains_key(scope) {
            let loaded = match std::fs::read(self.path(scope)) {
                Ok(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|e| CapabilityError::Unavailable(format!("state file for {scope} is corrupt: {e}")))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(CapabilityError::Unavailable(format!("reading state for {scope}: {e}"))),
            };
            scopes.insert(scope.to_string(), loaded);
        }
        let map = scopes.get_mut(scope).expect("loaded above");
        let before = map.clone();
        let (value, changed) = f(map)?;
        if changed && let Err(e) = self.save(scope, map) {
            *map = before;
            return Err(CapabilityError::Unavailable(format!("saving state for {scope}: {e}")));
        }
        Ok(value)
    }

    fn save(&self, scope: &str, map: &BTreeMap<String, String>) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(scope);
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec(map).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

#[async_trait::async_trait]
impl StateStore for FileStateStore {
    async fn get(&self, scope: &str, key: &str) -> Result<Option<String>, CapabilityError> {
        self.with_scope(scope, |map| Ok((map.get(key).cloned(), false)))
    }

    async fn set(&self, scope: &str, key: &str, value: &str) -> Result<(), CapabilityError> {
        self.with_scope(scope, |map| Ok(((), map.insert(key.to_string(), value.to_string()).as_deref() != Some(value))))
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        self.with_scope(scope, |map| Ok(((), map.remove(key).is_some())))
    }

    async fn increment(&self, scope: &str, key: &str, delta: i64, _: Option<&str>) -> Result<i64, CapabilityError> {
        self.with_scope(scope, |map| {
            let current = match map.get(key) {
                None => 0,
                Some(text) => text
                    .parse::<i64>()
                    .map_err(|_| CapabilityError::Invalid(format!("'{key}' holds {text}, not an integer")))?,
            };
            let next = current
                .checked_add(delta)
                .ok_or_else(|| CapabilityError::Invalid(format!("'{key}' would overflow")))?;
            map.insert(key.to_string(), next.to_string());
            Ok((next, true))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn values_survive_a_new_store_on_the_same_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path());
        store.set("route", "cursor", "3").await.unwrap();
        assert_eq!(store.increment("route", "cursor", 2, None).await.unwrap(), 5);
        store.set("other", "cursor", "\"x\"").await.unwrap();

        let reopened = FileStateStore::new(dir.path());
        assert_eq!(reopened.get("route", "cursor").await.unwrap().as_deref(), Some("5"));
        assert_eq!(reopened.get("other", "cursor").await.unwrap().as_deref(), Some("\"x\""));
        reopened.delete("route", "cursor").await.unwrap();
        assert_eq!(FileStateStore::new(dir.path()).get("route", "cursor").await.unwrap(), None);
    }

    #[tokio::test]
    async fn increment_refuses_a_non_integer() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path());
        store.set("p", "k", "\"text\"").await.unwrap();
        assert!(matches!(store.increment("p", "k", 1, None).await, Err(CapabilityError::Invalid(_))));
    }
}
