//! Plugin state writes (`set`, `delete`) the SQLite ledger has accepted and
//! not yet committed: they ride with the writer's next transaction (or one
//! of their own within `RECORD_DELAY`) instead of each costing a commit,
//! and until then reads in this process get them from here. One process
//! owns a SQLite ledger, so this is every reader there is.
//!
//! A write is checked against its plugin's quota when it is made, counting
//! the writes still held here, so a plugin hears `invalid` from the call
//! that went over, as it would from a committed write.

use std::collections::HashMap;
use std::sync::Mutex;

/// A key's row in `plugin_state`: its value and when it expires (host
/// clock, ms; none: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StateRow {
    pub value: String,
    pub expires_at: Option<i64>,
}

impl StateRow {
    /// Whether the key still exists at `now`.
    pub fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// A held write of one key: its new row, or none for a delete.
pub(super) struct StateWrite {
    pub scope: String,
    pub key: String,
    pub row: Option<StateRow>,
    /// The journal record that commits with it (an increment's: effect
    /// key, and when, host clock ms); its result is the value.
    pub record: Option<(String, i64)>,
    /// Which write of the key this is: a later one replaces it here.
    generation: u64,
    /// What it changes in its scope's usage (keys, bytes).
    delta: (i64, i64),
}

/// A key's held row: what it was last written as, or none when deleted.
pub(super) struct HeldValue(pub Option<StateRow>);

/// What a write does to a key's row.
pub(super) enum Write {
    /// Writes this row.
    Put(StateRow),
    /// Deletes the key.
    Delete,
    /// Writes nothing: the key stays as it is (this row, or none).
    Keep(Option<StateRow>),
}

#[derive(Default)]
pub(super) struct HeldState(Mutex<Held>);

#[derive(Default)]
struct Held {
    /// The newest held write of each (scope, key), by generation.
    latest: HashMap<(String, String), (Option<StateRow>, u64)>,
    /// Writes no transaction has taken yet, in the order they were made.
    queued: Vec<StateWrite>,
    /// Usage held writes add to each scope's committed usage (keys, bytes).
    pending: HashMap<String, (i64, i64)>,
    /// The records of held increments, by effect key.
    records: HashMap<String, String>,
    next_generation: u64,
}

/// A key's entry size as the quota counts it: key and value bytes.
fn entry_bytes(key: &str, value: &str) -> i64 {
    i64::try_from(key.len() + value.len()).unwrap_or(i64::MAX)
}

impl HeldState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What is held for a key, if anything (else ask the database).
    pub(super) fn get(&self, scope: &str, key: &str) -> Option<HeldValue> {
        self.lock().latest.get(&(scope.to_string(), key.to_string())).map(|(value, _)| HeldValue(value.clone()))
    }

    /// Holds a write of `key`, as `decide` makes it: given the scope's
    /// held usage change and the key's held row (when one is held), to add
    /// to what the database holds, it returns what to do and the write's
    /// own usage change, or refuses. `record`, an increment's journal
    /// record (effect key, when), commits with it. Returns the key's row
    /// after the write.
    pub(super) fn hold<E>(
        &self,
        scope: &str,
        key: &str,
        record: Option<(&str, i64)>,
        decide: impl FnOnce((i64, i64), Option<Option<&StateRow>>) -> Result<(Write, (i64, i64)), E>,
    ) -> Result<Option<StateRow>, E> {
        let mut held = self.lock();
        let pending = held.pending.get(scope).copied().unwrap_or((0, 0));
        let id = (scope.to_string(), key.to_string());
        let current = held.latest.get(&id).map(|(row, _)| row.as_ref());
        let (write, delta) = decide(pending, current)?;
        let row = match write {
            Write::Keep(row) => return Ok(row),
            Write::Put(row) => Some(row),
            Write::Delete => None,
        };
        held.next_generation += 1;
        let generation = held.next_generation;
        held.latest.insert(id, (row.clone(), generation));
        let usage = held.pending.entry(scope.to_string()).or_default();
        usage.0 += delta.0;
        usage.1 += delta.1;
        if let (Some((effect, _)), Some(row)) = (record, &row) {
            held.records.insert(effect.to_string(), row.value.clone());
        }
        held.queued.push(StateWrite {
            scope: scope.to_string(),
            key: key.to_string(),
            row: row.clone(),
            record: record.map(|(effect, at)| (effect.to_string(), at)),
            generation,
            delta,
        });
        Ok(row)
    }

    /// The result a held increment recorded under `effect`.
    pub(super) fn recorded(&self, effect: &str) -> Option<String> {
        self.lock().records.get(effect).cloned()
    }

    /// The held writes, for the transaction about to commit them.
    pub(super) fn take_queued(&self) -> Vec<StateWrite> {
        std::mem::take(&mut self.lock().queued)
    }

    /// Ends the transaction that carries `writes` with `end` (its commit
    /// or rollback), then settles them: committed or given up, the
    /// database answers for them from now on. Both happen under the lock,
    /// so a quota check, which adds held usage to the database's, sees the
    /// writes in one place or the other, never in both or neither.
    pub(super) fn settle_with<T>(&self, writes: &[StateWrite], end: impl FnOnce() -> T) -> T {
        if writes.is_empty() {
            return end();
        }
        let mut held = self.lock();
        let ended = end();
        held.settle(writes);
        ended
    }
}

impl Held {
    /// Takes `writes`, committed or given up, out of what is held.
    fn settle(&mut self, writes: &[StateWrite]) {
        for write in writes {
            let id = (write.scope.clone(), write.key.clone());
            if self.latest.get(&id).is_some_and(|(_, generation)| *generation == write.generation) {
                self.latest.remove(&id);
            }
            if let Some((effect, _)) = &write.record {
                self.records.remove(effect);
            }
            if let Some(usage) = self.pending.get_mut(&write.scope) {
                usage.0 -= write.delta.0;
                usage.1 -= write.delta.1;
            }
        }
        self.pending.retain(|_, usage| *usage != (0, 0));
    }
}

/// What writing `value` (none: deleting) to `key` changes in its scope's
/// usage (keys, bytes), given the entry it replaces (none: no entry).
pub(super) fn usage_change(key: &str, old: Option<&str>, value: Option<&str>) -> (i64, i64) {
    let size = |v: Option<&str>| v.map_or(0, |v| entry_bytes(key, v));
    let count = |v: Option<&str>| i64::from(v.is_some());
    (count(value) - count(old), size(value) - size(old))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// What a quota check counts for `scope`: the keys the database holds
    /// (`committed`, standing in for `plugin_state_usage`) plus the held
    /// ones, as `SqliteStore::hold_state` adds them up.
    fn counted(state: &HeldState, committed: &AtomicI64, key: &str) -> i64 {
        let mut seen = 0;
        state
            .hold("scope", key, None, |(held_keys, _), _| {
                seen = committed.load(Ordering::SeqCst) + held_keys;
                let row = StateRow { value: "1".into(), expires_at: None };
                Ok::<_, ()>((Write::Put(row), usage_change(key, None, Some("1"))))
            })
            .unwrap();
        seen
    }

    #[test]
    fn a_quota_check_while_a_commit_ends_counts_its_writes_once() {
        let state = Arc::new(HeldState::default());
        let committed = Arc::new(AtomicI64::new(0));
        assert_eq!(counted(&state, &committed, "a"), 0);
        let writes = state.take_queued();
        let (checking, checked) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let thread = {
            let (state, committed) = (state.clone(), committed.clone());
            std::thread::spawn(move || {
                wait.recv().unwrap();
                checking.send(counted(&state, &committed, "b")).unwrap();
            })
        };
        state.settle_with(&writes, || {
            // The transaction is committed: the database now counts "a".
            committed.fetch_add(1, Ordering::SeqCst);
            go.send(()).unwrap();
            // A check that ran now, between the commit and the settling,
            // would count "a" twice; it must wait for both instead.
            let early = checked.recv_timeout(std::time::Duration::from_millis(200));
            assert!(early.is_err(), "a quota check ran between a commit and its settling: {early:?}");
        });
        thread.join().unwrap();
        assert_eq!(checked.recv().unwrap(), 1, "key a counted once");
    }
}
