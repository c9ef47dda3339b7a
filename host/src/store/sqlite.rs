//! The ledger in SQLite: WAL journal, `synchronous=FULL` (a commit is on
//! disk before the webhook is answered), numbered migrations.

use super::{InboundEvent, LeadFacts, LeadRecord, LeadState, Step, Store};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Schema changes in order; the database remembers how many it has.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE events (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        lead_id TEXT,
        payload TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        execution_id TEXT,
        finished_at INTEGER,
        failed INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, event_id)
    );
    CREATE INDEX events_unfinished ON events (received_at) WHERE finished_at IS NULL;
    CREATE TABLE leads (
        id TEXT PRIMARY KEY,
        email TEXT,
        name TEXT,
        company TEXT,
        state TEXT NOT NULL,
        owner TEXT,
        salesforce_id TEXT,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX leads_state ON leads (state, updated_at);
    CREATE TABLE lead_steps (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        lead_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX lead_steps_lead ON lead_steps (lead_id, seq);
"#,
    r#"
    CREATE TABLE effects (
        key TEXT PRIMARY KEY,
        result TEXT NOT NULL,
        recorded_at INTEGER NOT NULL
    );
"#,
    r#"
    CREATE INDEX events_lead ON events (lead_id, received_at);
"#,
];

/// The SQLite ledger. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    connection: Arc<Mutex<Connection>>,
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or a migration fails.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&connection).with_context(|| format!("migrating {}", path.display()))?;
        Ok(SqliteStore { connection: Arc::new(Mutex::new(connection)) })
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = connection.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .context("the store's worker stopped")?
    }
}

fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
    let applied: usize = connection
        .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.unchecked_transaction()?;
        tx.execute_batch(migration).with_context(|| format!("migration {}", i + 1))?;
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)",
            params![(i + 1).to_string()],
        )?;
        tx.commit()?;
    }
    Ok(())
}

fn event_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<InboundEvent> {
    let payload: String = row.get(4)?;
    Ok(InboundEvent {
        source: row.get(0)?,
        event_id: row.get(1)?,
        pipeline: row.get(2)?,
        lead_id: row.get(3)?,
        payload: serde_json::from_str(&payload).unwrap_or_default(),
        received_at: row.get(5)?,
    })
}

fn load_lead(connection: &Connection, id: &str) -> Result<Option<LeadRecord>> {
    let lead = connection
        .query_row(
            "SELECT id, email, name, company, state, owner, salesforce_id, updated_at FROM leads WHERE id = ?1",
            params![id],
            |r| {
                Ok(LeadRecord {
                    id: r.get(0)?,
                    email: r.get(1)?,
                    name: r.get(2)?,
                    company: r.get(3)?,
                    state: LeadState::parse(&r.get::<_, String>(4)?).unwrap_or(LeadState::Received),
                    owner: r.get(5)?,
                    salesforce_id: r.get(6)?,
                    updated_at: r.get(7)?,
                    timeline: Vec::new(),
                })
            },
        )
        .optional()?;
    let Some(mut lead) = lead else { return Ok(None) };
    let mut statement =
        connection.prepare("SELECT at, state, detail FROM lead_steps WHERE lead_id = ?1 ORDER BY seq")?;
    lead.timeline = statement
        .query_map(params![id], |r| {
            Ok(Step {
                at: r.get(0)?,
                state: LeadState::parse(&r.get::<_, String>(1)?).unwrap_or(LeadState::Received),
                detail: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(lead))
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn record_event(&self, event: &InboundEvent) -> Result<bool> {
        let event = event.clone();
        self.with(move |c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO events (source, event_id, pipeline, lead_id, payload, received_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![event.source, event.event_id, event.pipeline, event.lead_id, event.payload.to_string(), event.received_at],
            )?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn unfinished_events(&self) -> Result<Vec<InboundEvent>> {
        self.with(|c| {
            let mut statement = c.prepare(
                "SELECT source, event_id, pipeline, lead_id, payload, received_at FROM events WHERE finished_at IS NULL ORDER BY received_at",
            )?;
            Ok(statement.query_map([], event_from_row)?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn event(&self, source: &str, event_id: &str) -> Result<Option<(InboundEvent, bool)>> {
        let (source, event_id) = (source.to_string(), event_id.to_string());
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT source, event_id, pipeline, lead_id, payload, received_at, finished_at IS NOT NULL FROM events WHERE source = ?1 AND event_id = ?2",
                params![source, event_id],
                |r| Ok((event_from_row(r)?, r.get::<_, bool>(6)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn failed_events(&self, lead_id: Option<&str>) -> Result<Vec<InboundEvent>> {
        let lead_id = lead_id.map(str::to_string);
        self.with(move |c| {
            let mut statement = c.prepare(
                "SELECT source, event_id, pipeline, lead_id, payload, received_at FROM events
                 WHERE failed = 1 AND (?1 IS NULL OR lead_id = ?1) ORDER BY received_at",
            )?;
            Ok(statement.query_map(params![lead_id], event_from_row)?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn claim_failed(&self, source: &str, event_id: &str) -> Result<bool> {
        let (source, event_id) = (source.to_string(), event_id.to_string());
        self.with(move |c| {
            let changed = c.execute(
                "UPDATE events SET failed = 0, finished_at = NULL WHERE source = ?1 AND event_id = ?2 AND failed = 1",
                params![source, event_id],
            )?;
            Ok(changed == 1)
        })
        .await
    }

    async fn has_event_since(&self, lead_id: &str, since: i64) -> Result<bool> {
        let lead_id = lead_id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS (SELECT 1 FROM events WHERE lead_id = ?1 AND received_at >= ?2)",
                params![lead_id, since],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        let key = format!("setting:{name}");
        self.with(move |c| {
            Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| r.get(0)).optional()?)
        })
        .await
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        let (key, value) = (format!("setting:{name}"), value.to_string());
        self.with(move |c| {
            c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
            Ok(())
        })
        .await
    }

    async fn finish_event(&self, source: &str, event_id: &str, execution_id: &str, failed: bool) -> Result<()> {
        let (source, event_id, execution_id) = (source.to_string(), event_id.to_string(), execution_id.to_string());
        self.with(move |c| {
            let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
            c.execute(
                "UPDATE events SET execution_id = ?3, finished_at = ?4, failed = ?5 WHERE source = ?1 AND event_id = ?2",
                params![source, event_id, execution_id, now, failed],
            )?;
            Ok(())
        })
        .await
    }

    async fn record_steps(&self, lead_id: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()> {
        let (lead_id, facts, steps) = (lead_id.to_string(), facts.clone(), steps.to_vec());
        self.with(move |c| {
            let Some(last) = steps.last() else { return Ok(()) };
            let tx = c.transaction()?;
            let existing: Option<String> =
                tx.query_row("SELECT state FROM leads WHERE id = ?1", params![lead_id], |r| r.get(0)).optional()?;
            // A repeated MQL, or a later event that fails, does not undo
            // what an earlier one achieved.
            let settled = |s: &str| matches!(s, "notified" | "accepted" | "rejected" | "recycled");
            let state = match (&existing, last.state) {
                (Some(current), LeadState::Duplicate) => current.clone(),
                (Some(current), LeadState::Failed) if settled(current) => current.clone(),
                _ => last.state.as_str().to_string(),
            };
            tx.execute(
                "INSERT INTO leads (id, email, name, company, state, owner, salesforce_id, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET
                    email = COALESCE(excluded.email, leads.email),
                    name = COALESCE(excluded.name, leads.name),
                    company = COALESCE(excluded.company, leads.company),
                    state = excluded.state,
                    owner = COALESCE(excluded.owner, leads.owner),
                    salesforce_id = COALESCE(excluded.salesforce_id, leads.salesforce_id),
                    updated_at = excluded.updated_at",
                params![
                    lead_id,
                    facts.email,
                    facts.name,
                    facts.company,
                    state,
                    facts.owner,
                    facts.salesforce_id,
                    last.at
                ],
            )?;
            for step in &steps {
                // A rerun replays steps the lead already shows.
                let known: bool = tx.query_row(
                    "SELECT EXISTS (SELECT 1 FROM lead_steps WHERE lead_id = ?1 AND state = ?2 AND detail = ?3)",
                    params![lead_id, step.state.as_str(), step.detail],
                    |r| r.get(0),
                )?;
                if known {
                    continue;
                }
                tx.execute(
                    "INSERT INTO lead_steps (lead_id, at, state, detail) VALUES (?1, ?2, ?3, ?4)",
                    params![lead_id, step.at, step.state.as_str(), step.detail],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn leads(&self, state: Option<LeadState>, limit: usize) -> Result<Vec<LeadRecord>> {
        self.with(move |c| {
            let ids: Vec<String> = {
                let mut statement = c.prepare(
                    "SELECT id FROM leads WHERE (?1 IS NULL OR state = ?1) ORDER BY updated_at DESC, id LIMIT ?2",
                )?;
                statement
                    .query_map(params![state.map(LeadState::as_str), i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                        r.get(0)
                    })?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut leads = Vec::new();
            for id in ids {
                if let Some(mut lead) = load_lead(c, &id)? {
                    lead.timeline.clear();
                    leads.push(lead);
                }
            }
            Ok(leads)
        })
        .await
    }

    async fn lead(&self, id: &str) -> Result<Option<LeadRecord>> {
        let id = id.to_string();
        self.with(move |c| load_lead(c, &id)).await
    }
}

#[async_trait::async_trait]
impl crate::capabilities::EffectJournal for SqliteStore {
    async fn recorded(&self, key: &str) -> Result<Option<serde_json::Value>> {
        let key = key.to_string();
        self.with(move |c| {
            let text: Option<String> =
                c.query_row("SELECT result FROM effects WHERE key = ?1", params![key], |r| r.get(0)).optional()?;
            Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
        })
        .await
    }

    async fn record(&self, key: &str, result: &serde_json::Value) -> Result<()> {
        let (key, result) = (key.to_string(), result.to_string());
        self.with(move |c| {
            let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
            c.execute(
                "INSERT OR IGNORE INTO effects (key, result, recorded_at) VALUES (?1, ?2, ?3)",
                params![key, result, now],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(id: &str) -> InboundEvent {
        InboundEvent {
            source: "hubspot".into(),
            event_id: id.into(),
            pipeline: "p".into(),
            lead_id: Some("1001".into()),
            payload: json!({"objectId": 1001}),
            received_at: 1,
        }
    }

    #[tokio::test]
    async fn events_are_deduplicated_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("handoff.db");
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.record_event(&event("1")).await.unwrap());
        assert!(!store.record_event(&event("1")).await.unwrap(), "a redelivery");
        assert!(store.record_event(&event("2")).await.unwrap());
        store.finish_event("hubspot", "1", "exec-1", false).await.unwrap();
        drop(store);
        let reopened = SqliteStore::open(&path).unwrap();
        let unfinished = reopened.unfinished_events().await.unwrap();
        assert_eq!(unfinished.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["2"]);
        assert_eq!(unfinished[0].payload, json!({"objectId": 1001}));
    }

    #[tokio::test]
    async fn a_duplicate_does_not_undo_a_notified_lead() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("handoff.db")).unwrap();
        let facts = LeadFacts { email: Some("a@b.co".into()), ..Default::default() };
        let steps = [
            Step { at: 1, state: LeadState::Validated, detail: String::new() },
            Step { at: 2, state: LeadState::Notified, detail: "told x".into() },
        ];
        store.record_steps("1001", &facts, &steps).await.unwrap();
        store
            .record_steps(
                "1001",
                &LeadFacts::default(),
                &[Step { at: 3, state: LeadState::Duplicate, detail: "again".into() }],
            )
            .await
            .unwrap();
        let lead = store.lead("1001").await.unwrap().unwrap();
        assert_eq!(lead.state, LeadState::Notified);
        assert_eq!(lead.email.as_deref(), Some("a@b.co"));
        assert_eq!(lead.timeline.len(), 3);
        assert_eq!(store.leads(Some(LeadState::Notified), 10).await.unwrap().len(), 1);
        assert!(store.leads(Some(LeadState::Failed), 10).await.unwrap().is_empty());
    }
}
