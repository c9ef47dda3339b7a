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

/// How much state one plugin may keep, across all its runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateQuota {
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes, keys and values together.
    pub max_bytes: u64,
}

impl StateQuota {
    /// Keys one plugin may keep by default. The standard `dedupe` keeps four
    /// a lead and never deletes them (an MQL's idempotency keys), so this
    /// holds about 250,000 leads; 10,000 held 2,500, after which every lead
    /// failed at its quota.
    pub const DEFAULT_MAX_KEYS: u64 = 1_000_000;
    /// Bytes (keys and values) one plugin may keep by default: about
    /// 370,000 leads of `dedupe`'s keys.
    pub const DEFAULT_MAX_BYTES: u64 = 64 * 1024 * 1024;
}

impl Default for StateQuota {
    fn default() -> Self {
        StateQuota { max_keys: Self::DEFAULT_MAX_KEYS, max_bytes: Self::DEFAULT_MAX_BYTES }
    }
}

impl StateQuota {
    /// Checks a write of `entry_bytes` (key and value) to a key that now
    /// holds `old_entry_bytes` (none: a new key), given what the plugin
    /// holds. A write that does not grow the state always passes, so a
    /// plugin at its limit can still overwrite and delete.
    ///
    /// # Errors
    ///
    /// `invalid`, saying which limit and what the plugin holds.
    pub fn check(
        &self,
        scope: &str,
        keys: u64,
        bytes: u64,
        old_entry_bytes: Option<u64>,
        entry_bytes: u64,
    ) -> Result<(), CapabilityError> {
        if old_entry_bytes.is_none() && keys >= self.max_keys {
            return Err(CapabilityError::Invalid(format!(
                "state quota: plugin {scope} holds {keys} keys, the most it may; delete keys it no longer needs"
            )));
        }
        let after = bytes.saturating_sub(old_entry_bytes.unwrap_or(0)).saturating_add(entry_bytes);
        if after > self.max_bytes && after > bytes {
            return Err(CapabilityError::Invalid(format!(
                "state quota: plugin {scope} would hold {after} bytes; the limit is {}",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

/// Durable key-value storage. `scope` is the plugin's name, so plugins never
/// see each other's keys. Writes that grow a scope are held to its quota.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The value at `key`, if any.
    async fn get(&self, scope: &str, key: &str) -> Result<Option<String>, CapabilityError>;
    /// Sets `key` to `value` (JSON).
    async fn set(&self, scope: &str, key: &str, value: &str, quota: StateQuota) -> Result<(), CapabilityError>;
    /// Removes `key`.
    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError>;
    /// Adds `delta`. With `effect` (the effect journal's key for this
    /// call), a store that keeps the journal records the result under it in
    /// the same transaction, so a crash can neither lose nor repeat the
    /// increment; other stores ignore it.
    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        effect: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError>;
}

impl Host for RunContext {
    async fn get(&mut self, key: String) -> Result<Option<String>, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateRead, |c| &c.state)?;
        let answer = {
            let _wait = self.ledger_wait();
            store.get(&self.identity().plugin, &key).await
        };
        let scope = self.identity().plugin.clone();
        self.keep_read("state.get", serde_json::json!([scope, key]), &answer);
        answer
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
        let _wait = self.ledger_wait();
        store.set(&self.identity().plugin, &key, &value, self.capabilities().state_quota).await
    }

    async fn delete(&mut self, key: String) -> Result<(), CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        let _wait = self.ledger_wait();
        store.delete(&self.identity().plugin, &key).await
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        let scope = self.identity().plugin.clone();
        let quota = self.capabilities().state_quota;
        // Not idempotent: a replay must return the first result, not add again.
        self.effect("state.increment", Guard::Atomic, |attempt| async move {
            store.increment(&scope, &key, delta, attempt.key.as_deref(), quota).await
        })
        .await
    }
}

/// What `increment` makes of `key`'s value `old` (none: 0) and `delta`,
/// or why it cannot: the value is not an integer, or the sum overflows.
/// Every state store counts the same way.
pub(crate) fn incremented(key: &str, old: Option<&str>, delta: i64) -> Result<i64, CapabilityError> {
    let current = match old {
        None => 0,
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| CapabilityError::Invalid(format!("'{key}' holds {text}, not an integer")))?,
    };
    current.checked_add(delta).ok_or_else(|| CapabilityError::Invalid(format!("'{key}' would overflow")))
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

/// [`StateQuota::check`] for a scope held in memory.
fn check_map_quota(
    scope: &str,
    map: &BTreeMap<String, String>,
    key: &str,
    value_len: usize,
    quota: StateQuota,
) -> Result<(), CapabilityError> {
    let bytes: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    let old = map.get(key).map(|v| (key.len() + v.len()) as u64);
    quota.check(scope, map.len() as u64, bytes as u64, old, (key.len() + value_len) as u64)
}

#[async_trait::async_trait]
impl StateStore for FileStateStore {
    async fn get(&self, scope: &str, key: &str) -> Result<Option<String>, CapabilityError> {
        self.with_scope(scope, |map| Ok((map.get(key).cloned(), false)))
    }

    async fn set(&self, scope: &str, key: &str, value: &str, quota: StateQuota) -> Result<(), CapabilityError> {
        self.with_scope(scope, |map| {
            check_map_quota(scope, map, key, value.len(), quota)?;
            Ok(((), map.insert(key.to_string(), value.to_string()).as_deref() != Some(value)))
        })
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        self.with_scope(scope, |map| Ok(((), map.remove(key).is_some())))
    }

    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        _: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError> {
        self.with_scope(scope, |map| {
            check_map_quota(scope, map, key, 20, quota)?;
            let next = incremented(key, map.get(key).map(String::as_str), delta)?;
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
        let quota = StateQuota::default();
        store.set("route", "cursor", "3", quota).await.unwrap();
        assert_eq!(store.increment("route", "cursor", 2, None, quota).await.unwrap(), 5);
        store.set("other", "cursor", "\"x\"", quota).await.unwrap();

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
        store.set("p", "k", "\"text\"", StateQuota::default()).await.unwrap();
        assert!(matches!(
            store.increment("p", "k", 1, None, StateQuota::default()).await,
            Err(CapabilityError::Invalid(_))
        ));
    }

    #[test]
    fn a_write_that_grows_past_the_quota_is_refused_and_one_that_shrinks_is_not() {
        let invalid = |r: Result<(), CapabilityError>| match r {
            Err(CapabilityError::Invalid(message)) => message,
            other => panic!("expected invalid, got {other:?}"),
        };
        let quota = StateQuota { max_keys: 2, max_bytes: 100 };
        let full = invalid(quota.check("route", 2, 50, None, 10));
        assert!(full.contains("holds 2 keys"), "{full}");
        assert!(quota.check("route", 2, 50, Some(10), 10).is_ok(), "overwriting a key at the key limit");
        assert!(invalid(quota.check("route", 1, 95, None, 10)).contains("105 bytes"));
        assert!(quota.check("route", 2, 150, Some(60), 20).is_ok(), "shrinking while over the limit");
    }
}
