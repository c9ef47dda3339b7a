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
    /// a lead (an MQL's idempotency keys) for its `remember_days` (30 by
    /// default), after which they expire: at 1,000,000 keys, about 250,000
    /// leads in that window.
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
///
/// A key may expire (`expire`): at and after its time (`now`, the host
/// clock of the run that asks) it reads as absent, and a write treats it as
/// a new key. A store removes expired keys when it prunes (a server's
/// pruner, or a file store's next save); until then they count toward the
/// quota.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync {
    /// The value at `key`, if any and not expired at `now`.
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError>;
    /// Sets `key` to `value` (JSON), keeping its expiry if it has one.
    async fn set(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        now: i64,
        quota: StateQuota,
    ) -> Result<(), CapabilityError>;
    /// Removes `key` (and its expiry).
    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError>;
    /// Adds `delta`, keeping the key's expiry. With `effect` (the effect
    /// journal's key for this call), a store that keeps the journal records
    /// the result under it in the same transaction, so a crash can neither
    /// lose nor repeat the increment; other stores ignore it.
    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        now: i64,
        effect: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError>;
    /// Makes `key` expire at `at`; an `at` not after `now` deletes it.
    /// False (and nothing changed) when the key does not exist at `now`.
    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError>;
}

impl Host for RunContext {
    async fn get(&mut self, key: String) -> Result<Option<String>, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateRead, |c| &c.state)?;
        let now = self.capabilities().clock.now_ms();
        let answer = {
            let _wait = self.ledger_wait();
            store.get(&self.identity().plugin, &key, now).await
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
        let now = self.capabilities().clock.now_ms();
        let _wait = self.ledger_wait();
        store.set(&self.identity().plugin, &key, &value, now, self.capabilities().state_quota).await
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
        let now = self.capabilities().clock.now_ms();
        // Not idempotent: a replay must return the first result, not add again.
        self.effect("state.increment", Guard::Atomic, |attempt| async move {
            store.increment(&scope, &key, delta, now, attempt.key.as_deref(), quota).await
        })
        .await
    }

    async fn expire(&mut self, key: String, at: i64) -> Result<bool, CapabilityError> {
        check_key(&key)?;
        let store = self.provider(Grant::StateWrite, |c| &c.state)?;
        let now = self.capabilities().clock.now_ms();
        let _wait = self.ledger_wait();
        store.expire(&self.identity().plugin, &key, at, now).await
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

/// One plugin's state held in memory: its values, and the expiry (host
/// clock, ms) of those that have one. What the in-memory stores (a file
/// store's scopes, a dry run's scratch state) share, so they expire keys
/// the way the ledger does.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateMap {
    values: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    expires: BTreeMap<String, i64>,
}

impl StateMap {
    /// The value at `key` unless it is absent or expired at `now`.
    pub fn get(&self, key: &str, now: i64) -> Option<&str> {
        let live = self.expires.get(key).is_none_or(|at| *at > now);
        self.values.get(key).filter(|_| live).map(String::as_str)
    }

    /// Whether `key` has a value here, expired or not.
    pub fn holds(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Sets `key`, keeping its expiry while it has not expired (an expired
    /// key written again is a new key, with none). Returns whether
    /// anything changed.
    pub fn put(&mut self, key: &str, value: &str, now: i64) -> bool {
        let mut changed = false;
        if self.get(key, now).is_none() {
            changed |= self.expires.remove(key).is_some();
        }
        changed |= self.values.insert(key.to_string(), value.to_string()).as_deref() != Some(value);
        changed
    }

    /// Removes `key` and its expiry; whether it was here.
    pub fn remove(&mut self, key: &str) -> bool {
        self.expires.remove(key);
        self.values.remove(key).is_some()
    }

    /// Makes `key` expire at `at` (an `at` not after `now` removes it);
    /// false when the key does not exist at `now`.
    pub fn expire(&mut self, key: &str, at: i64, now: i64) -> bool {
        if self.get(key, now).is_none() {
            return false;
        }
        if at <= now {
            self.remove(key);
        } else {
            self.expires.insert(key.to_string(), at);
        }
        true
    }

    /// Removes the keys expired at `now`; how many.
    pub fn prune(&mut self, now: i64) -> usize {
        let expired: Vec<String> = self.expires.iter().filter(|(_, at)| **at <= now).map(|(k, _)| k.clone()).collect();
        for key in &expired {
            self.remove(key);
        }
        expired.len()
    }

    /// [`StateQuota::check`] for writing `value_len` bytes to `key`.
    ///
    /// # Errors
    ///
    /// `invalid`, as the quota's check says.
    pub fn check_quota(
        &self,
        scope: &str,
        key: &str,
        value_len: usize,
        quota: StateQuota,
    ) -> Result<(), CapabilityError> {
        let bytes: usize = self.values.iter().map(|(k, v)| k.len() + v.len()).sum();
        let old = self.values.get(key).map(|v| (key.len() + v.len()) as u64);
        quota.check(scope, self.values.len() as u64, bytes as u64, old, (key.len() + value_len) as u64)
    }
}

/// A state file as it is read: the current shape, or the plain map of
/// values that files had before keys could expire.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StateFile {
    Current(StateMap),
    Plain(BTreeMap<String, String>),
}

/// Plugin state in one JSON file per plugin under a directory, written
/// atomically (temporary file, fsync, rename) on every change. Expired keys
/// are dropped when a file is loaded or saved.
///
/// For one-shot runs (`handoff run`); a server keeps plugin state in the
/// ledger (`SqliteStore`), where an increment and its journal record commit
/// together.
pub struct FileStateStore {
    dir: PathBuf,
    scopes: Mutex<HashMap<String, StateMap>>,
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
        now: i64,
        f: impl FnOnce(&mut StateMap) -> Result<(T, bool), CapabilityError>,
    ) -> Result<T, CapabilityError> {
        let mut scopes = self.scopes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !scopes.contains_key(scope) {
            let loaded = match std::fs::read(self.path(scope)) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(StateFile::Current(map)) => map,
                    Ok(StateFile::Plain(values)) => StateMap { values, expires: BTreeMap::new() },
                    Err(e) => {
                        return Err(CapabilityError::Unavailable(format!("state file for {scope} is corrupt: {e}")));
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateMap::default(),
                Err(e) => return Err(CapabilityError::Unavailable(format!("reading state for {scope}: {e}"))),
            };
            scopes.insert(scope.to_string(), loaded);
        }
        let map = scopes.get_mut(scope).expect("loaded above");
        let before = map.clone();
        let pruned = map.prune(now) > 0;
        let (value, changed) = f(map)?;
        if (changed || pruned)
            && let Err(e) = self.save(scope, map)
        {
            *map = before;
            return Err(CapabilityError::Unavailable(format!("saving state for {scope}: {e}")));
        }
        Ok(value)
    }

    fn save(&self, scope: &str, map: &StateMap) -> std::io::Result<()> {
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
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError> {
        self.with_scope(scope, now, |map| Ok((map.get(key, now).map(str::to_string), false)))
    }

    async fn set(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        now: i64,
        quota: StateQuota,
    ) -> Result<(), CapabilityError> {
        self.with_scope(scope, now, |map| {
            map.check_quota(scope, key, value.len(), quota)?;
            Ok(((), map.put(key, value, now)))
        })
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        self.with_scope(scope, i64::MIN, |map| Ok(((), map.remove(key))))
    }

    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        now: i64,
        _: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError> {
        self.with_scope(scope, now, |map| {
            map.check_quota(scope, key, 20, quota)?;
            let next = incremented(key, map.get(key, now), delta)?;
            map.put(key, &next.to_string(), now);
            Ok((next, true))
        })
    }

    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError> {
        self.with_scope(scope, now, |map| {
            let found = map.expire(key, at, now);
            Ok((found, found))
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
        store.set("route", "cursor", "3", 0, quota).await.unwrap();
        assert_eq!(store.increment("route", "cursor", 2, 0, None, quota).await.unwrap(), 5);
        store.set("other", "cursor", "\"x\"", 0, quota).await.unwrap();

        let reopened = FileStateStore::new(dir.path());
        assert_eq!(reopened.get("route", "cursor", 0).await.unwrap().as_deref(), Some("5"));
        assert_eq!(reopened.get("other", "cursor", 0).await.unwrap().as_deref(), Some("\"x\""));
        reopened.delete("route", "cursor").await.unwrap();
        assert_eq!(FileStateStore::new(dir.path()).get("route", "cursor", 0).await.unwrap(), None);
    }

    #[tokio::test]
    async fn increment_refuses_a_non_integer() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::new(dir.path());
        store.set("p", "k", "\"text\"", 0, StateQuota::default()).await.unwrap();
        assert!(matches!(
            store.increment("p", "k", 1, 0, None, StateQuota::default()).await,
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

    #[test]
    fn an_expired_key_reads_as_absent_and_comes_back_as_a_new_key() {
        let mut map = StateMap::default();
        map.put("claims", "1", 0);
        assert!(map.expire("claims", 1_000, 0));
        assert!(!map.expire("missing", 1_000, 0), "no such key");
        map.put("claims", "2", 500);
        assert_eq!(map.get("claims", 999), Some("2"), "set keeps the expiry, and it has not come");
        assert_eq!(map.get("claims", 1_000), None, "expired at its time");
        assert!(!map.expire("claims", 5_000, 1_000), "an expired key cannot be given more time");
        map.put("claims", "3", 2_000);
        assert_eq!(map.get("claims", 10_000), Some("3"), "written again after expiring: a new key, no expiry");
        assert!(map.expire("claims", 0, 2_000), "a past time deletes now");
        assert!(!map.holds("claims"));
    }

    #[test]
    fn pruning_removes_only_the_keys_expired_by_then() {
        let mut map = StateMap::default();
        for (key, at) in [("a", 100), ("b", 200)] {
            map.put(key, "1", 0);
            map.expire(key, at, 0);
        }
        map.put("kept", "1", 0);
        assert_eq!(map.prune(150), 1);
        assert!(!map.holds("a") && map.holds("b") && map.holds("kept"));
        let quota = StateQuota { max_keys: 2, max_bytes: 1_000 };
        assert!(map.check_quota("p", "new", 1, quota).is_err(), "b counts until it is pruned");
        map.prune(200);
        assert!(map.check_quota("p", "new", 1, quota).is_ok());
    }

    #[tokio::test]
    async fn a_file_store_keeps_expiries_and_reads_files_from_before_them() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("route.json"), r#"{"cursor": "4"}"#).unwrap();
        let store = FileStateStore::new(dir.path());
        assert_eq!(store.get("route", "cursor", 0).await.unwrap().as_deref(), Some("4"), "a plain map of values");
        assert!(store.expire("route", "cursor", 1_000, 0).await.unwrap());
        assert_eq!(store.increment("route", "cursor", 1, 10, None, StateQuota::default()).await.unwrap(), 5);

        let reopened = FileStateStore::new(dir.path());
        assert_eq!(reopened.get("route", "cursor", 999).await.unwrap().as_deref(), Some("5"));
        assert_eq!(reopened.get("route", "cursor", 1_000).await.unwrap(), None);
        assert_eq!(reopened.increment("route", "cursor", 1, 1_000, None, StateQuota::default()).await.unwrap(), 1);
    }
}
