//! The ledger in PostgreSQL, for several `handoff serve` instances sharing
//! one database. The same tables as SQLite, in a schema of their own
//! (`handoff` unless told otherwise); claims use `FOR UPDATE SKIP LOCKED`
//! so instances never wait on each other's work.

use super::{Deferred, InboundEvent, Instance, Ledger, PausedRep, TimerRecord, WaitPolicy};
use crate::capabilities::{CapabilityError, Clock, EffectJournal, Entry, Scheduler, StateQuota, StateStore, Timer};
use crate::lead::{LeadFacts, LeadRecord, LeadState, Step};
use anyhow::{Context, Result};
use std::sync::{Arc, Mutex};
use tokio_postgres::{Client, NoTls, Row};

/// Schema changes in order; the schema's `meta` table remembers how many
/// it has.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE events (
        source TEXT NOT NULL,
        event_id TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        lead_id TEXT,
        payload TEXT NOT NULL,
        received_at BIGINT NOT NULL,
        execution_id TEXT,
        finished_at BIGINT,
        failed BOOLEAN NOT NULL DEFAULT FALSE,
        claimed_by TEXT,
        claim_boot TEXT,
        lease_until BIGINT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        waiting_since BIGINT,
        PRIMARY KEY (source, event_id)
    );
    CREATE INDEX events_unfinished ON events (received_at) WHERE finished_at IS NULL;
    CREATE INDEX events_lead ON events (lead_id, received_at);
    CREATE TABLE leads (
        id TEXT PRIMARY KEY,
        email TEXT,
        name TEXT,
        company TEXT,
        state TEXT NOT NULL,
        owner TEXT,
        salesforce_id TEXT,
        updated_at BIGINT NOT NULL
    );
    CREATE INDEX leads_state ON leads (state, updated_at);
    CREATE TABLE lead_steps (
        seq BIGSERIAL PRIMARY KEY,
        lead_id TEXT NOT NULL,
        at BIGINT NOT NULL,
        state TEXT NOT NULL,
        detail TEXT NOT NULL
    );
    CREATE INDEX lead_steps_lead ON lead_steps (lead_id, seq);
    CREATE TABLE effects (
        key TEXT PRIMARY KEY,
        result TEXT NOT NULL,
        recorded_at BIGINT NOT NULL
    );
    CREATE TABLE effect_intents (
        key TEXT PRIMARY KEY,
        started_at BIGINT NOT NULL
    );
    CREATE TABLE plugin_state (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
"#,
    // Lead states are declared by plugins; each carries its phase. Rows
    // from before name only well-known states, whose phase is fixed.
    "ALTER TABLE leads ADD COLUMN phase TEXT; ALTER TABLE lead_steps ADD COLUMN phase TEXT;",
    r#"
    ALTER TABLE events ADD COLUMN node TEXT;
    CREATE TABLE timers (
        id TEXT PRIMARY KEY,
        pipeline TEXT NOT NULL,
        node TEXT NOT NULL,
        plugin TEXT NOT NULL,
        key TEXT,
        label TEXT,
        lead_id TEXT,
        execution_id TEXT NOT NULL,
        due_at BIGINT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        settled_at BIGINT,
        reason TEXT
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
    CREATE UNIQUE INDEX timers_key ON timers (plugin, key) WHERE state = 'pending' AND key IS NOT NULL;
    CREATE INDEX timers_lead ON timers (lead_id, due_at);
    CREATE TABLE paused_reps (
        rep_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        since BIGINT NOT NULL
    );
"#,
    "ALTER TABLE lead_steps ADD COLUMN execution_id TEXT;",
    // What each plugin holds, kept by a trigger, for its state quota.
    r#"
    CREATE TABLE plugin_state_usage (scope TEXT PRIMARY KEY, keys BIGINT NOT NULL, bytes BIGINT NOT NULL);
    INSERT INTO plugin_state_usage
        SELECT scope, count(*), sum(octet_length(key) + octet_length(value)) FROM plugin_state GROUP BY scope;
    CREATE FUNCTION plugin_state_usage_track() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO plugin_state_usage VALUES (NEW.scope, 1, octet_length(NEW.key) + octet_length(NEW.value))
            ON CONFLICT (scope) DO UPDATE
                SET keys = plugin_state_usage.keys + 1, bytes = plugin_state_usage.bytes + excluded.bytes;
        ELSIF TG_OP = 'UPDATE' THEN
            UPDATE plugin_state_usage SET bytes = bytes + octet_length(NEW.value) - octet_length(OLD.value)
                WHERE scope = NEW.scope;
        ELSE
            UPDATE plugin_state_usage
                SET keys = keys - 1, bytes = bytes - octet_length(OLD.key) - octet_length(OLD.value)
                WHERE scope = OLD.scope;
        END IF;
        RETURN NULL;
    END $$;
    CREATE TRIGGER plugin_state_usage AFTER INSERT OR UPDATE OR DELETE ON plugin_state
        FOR EACH ROW EXECUTE FUNCTION plugin_state_usage_track();
"#,
    "ALTER TABLE lead_steps ADD COLUMN data TEXT; CREATE INDEX lead_steps_state ON lead_steps (state, at);",
    // Failed leads ops has been told of; untold ones are found by index.
    "ALTER TABLE events ADD COLUMN told_at BIGINT;
     CREATE INDEX events_untold ON events (finished_at) WHERE failed AND told_at IS NULL;
     UPDATE events SET told_at = finished_at WHERE failed AND finished_at IS NOT NULL;",
    // What providers answered each execution (simulation, replay), and
    // shadow pipelines' decisions.
    r#"
    CREATE TABLE traces (execution_id TEXT PRIMARY KEY, at BIGINT NOT NULL, record TEXT NOT NULL);
    CREATE INDEX traces_at ON traces (at);
    CREATE TABLE shadow_decisions (
        pipeline TEXT NOT NULL, execution_id TEXT NOT NULL, lead_id TEXT, at BIGINT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (pipeline, execution_id)
    );
    CREATE INDEX shadow_decisions_lead ON shadow_decisions (lead_id, at);
    CREATE INDEX shadow_decisions_at ON shadow_decisions (at);
    CREATE INDEX events_received ON events (received_at);
"#,
    // Plugin state that expires (`state.expire`, contract 0.1.1).
    "ALTER TABLE plugin_state ADD COLUMN expires_at BIGINT;
     CREATE INDEX plugin_state_expiry ON plugin_state (expires_at) WHERE expires_at IS NOT NULL;",
    // Only the steps reports look up by state are indexed by state.
    concat!(
        "DROP INDEX lead_steps_state; CREATE INDEX lead_steps_reported ON lead_steps (state, at) WHERE state IN (",
        reported_states!(),
        ");"
    ),
];

/// Most connections one instance opens.
const MAX_CONNECTIONS: usize = 16;

/// Longest wait for a free connection.
const POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The PostgreSQL ledger. Cheap to clone.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    schema: String,
    idle: Mutex<Vec<Client>>,
    permits: tokio::sync::Semaphore,
    instance: Instance,
    /// The host's clock, for business times (see `SqliteStore`).
    clock: Arc<dyn Clock>,
    pending: super::PendingRecords,
}

/// A pooled connection, returned to the pool when dropped (unless broken).
struct Pooled<'a> {
    inner: &'a Inner,
    client: Option<Client>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(client);
        }
    }
}

fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 63
        && schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit())
}

/// What `handoff doctor` learns of a PostgreSQL ledger without changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The role the URL signs in as.
    pub user: String,
    /// Whether the schema exists yet.
    pub schema_exists: bool,
    /// Whether the role may create what migrations create: tables in the
    /// schema when it exists, the schema itself in the database otherwise.
    pub can_migrate: bool,
    /// Migrations the schema has, and the number this binary brings.
    pub migrations: (usize, usize),
}

/// Connects to `url` and reads the role's rights over `schema` and the
/// migrations it has, writing nothing.
///
/// # Errors
///
/// When the database cannot be reached or signed in to (the URL's password
/// is not in the message).
pub async fn inspect(url: &str, schema: &str) -> Result<Access> {
    anyhow::ensure!(valid_schema(schema), "schema '{schema}' must be a lower-case identifier (letters, digits, _)");
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(url)))?;
    let connection = tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_user::text,
                    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
                    CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)
                         THEN has_schema_privilege($1, 'USAGE') AND has_schema_privilege($1, 'CREATE')
                         ELSE has_database_privilege(current_database(), 'CREATE') END,
                    EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = $1 AND tablename = 'meta')",
            &[&schema],
        )
        .await?;
    let (user, schema_exists, can_migrate, has_meta): (String, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let applied = if has_meta && can_migrate {
        client
            .query_opt(&format!("SELECT value FROM {schema}.meta WHERE key = 'schema_version'"), &[])
            .await?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    drop(client);
    let _ = connection.await;
    Ok(Access { user, schema_exists, can_migrate, migrations: (applied, MIGRATIONS.len()) })
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host/db`), creating and
    /// migrating `schema`, as `instance`.
    ///
    /// # Errors
    ///
    /// When the database cannot be reached, the schema name is not a plain
    /// lower-case identifier, or a migration fails.
    pub async fn connect(url: &str, schema: &str, instance: Instance, clock: Arc<dyn Clock>) -> Result<Self> {
        anyhow::ensure!(valid_schema(schema), "schema '{schema}' must be a lower-case identifier (letters, digits, _)");
        let store = PostgresStore {
            inner: Arc::new(Inner {
                url: url.to_string(),
                schema: schema.to_string(),
                idle: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(MAX_CONNECTIONS),
                instance,
                clock,
                pending: super::PendingRecords::default(),
            }),
        };
        {
            let mut client = store.client().await?;
            migrate(&mut client, schema).await.with_context(|| format!("migrating schema {schema}"))?;
        }
        Ok(store)
    }

    async fn open(&self) -> Result<Client> {
        let (client, connection) = tokio_postgres::connect(&self.inner.url, NoTls)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {}", redact(&self.inner.url)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "a PostgreSQL connection closed");
            }
        });
        client.batch_execute(&format!("SET search_path TO {}", self.inner.schema)).await?;
        Ok(client)
    }

    /// [`Self::open`], tried again for about two seconds while the server
    /// refuses: a database at its connection limit (instances and tools
    /// share it) or restarting is a pause, not a failed lead.
    async fn open_patiently(&self) -> Result<Client> {
        let mut pause = std::time::Duration::from_millis(25);
        let mut waited = std::time::Duration::ZERO;
        loop {
            match self.open().await {
                Ok(client) => return Ok(client),
                Err(e) if waited >= std::time::Duration::from_secs(2) => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot connect to PostgreSQL yet; trying again");
                    tokio::time::sleep(pause).await;
                    waited += pause;
                    pause = (pause * 2).min(std::time::Duration::from_millis(400));
                }
            }
        }
    }

    async fn client(&self) -> Result<Pooled<'_>> {
        // A wait this long is a stall, not load: fail the call (it is
        // retried) rather than wait on forever.
        let permit = tokio::time::timeout(POOL_WAIT, self.inner.permits.acquire())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "no PostgreSQL connection came free in {} s (all {MAX_CONNECTIONS} in use)",
                    POOL_WAIT.as_secs()
                )
            })?
            .context("the connection pool closed")?;
        let idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let client = match idle {
            Some(client) => client,
            None => self.open_patiently().await?,
        };
        Ok(Pooled { inner: &self.inner, client: Some(client), _permit: permit })
    }

    /// The host's clock, for business times. Liveness times (leases,
    /// waits) are the database's clock ([`DB_NOW`]).
    fn business_now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.inner.instance.lease.as_millis()).unwrap_or(i64::MAX / 4).min(i64::MAX / 4)
    }
}

/// The database's clock in milliseconds: leases and attempt times are
/// compared on one clock, however the instances' clocks drift.
const DB_NOW: &str = "(extract(epoch from clock_timestamp()) * 1000)::bigint";

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:[redacted]{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn migrate(client: &mut Client, schema: &str) -> Result<()> {
    let tx = client.transaction().await?;
    // One migrator at a time across instances.
    tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("handoff-migrate:{schema}")]).await?;
    let exists: bool =
        tx.query_one("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", &[&schema]).await?.get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA {schema}")).await?;
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)").await?;
    let applied: usize = tx
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .await?
        .and_then(|r| r.get::<_, String>(0).parse().ok())
        .unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(migration).await.with_context(|| format!("migration {}", i + 1))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            &[&(i + 1).to_string()],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

const EVENT_COLUMNS: &str = "source, event_id, pipeline, lead_id, payload, received_at, node";

fn event_from_row(row: &Row) -> InboundEvent {
    InboundEvent {
        source: row.get(0),
        event_id: row.get(1),
        pipeline: row.get(2),
        lead_id: row.get(3),
        payload: serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_default(),
        received_at: row.get(5),
        node: row.get(6),
    }
}

fn stored_state(row: &Row, name: usize, phase: usize) -> LeadState {
    LeadState::stored(row.get(name), row.get::<_, Option<&str>>(phase))
}

async fn load_lead(client: &Client, id: &str, timeline: bool) -> Result<Option<LeadRecord>> {
    let Some(row) = client
        .query_opt(
            "SELECT id, email, name, company, state, owner, salesforce_id, updated_at, phase FROM leads WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let mut lead = LeadRecord {
        id: row.get(0),
        email: row.get(1),
        name: row.get(2),
        company: row.get(3),
        state: stored_state(&row, 4, 8),
        owner: row.get(5),
        salesforce_id: row.get(6),
        updated_at: row.get(7),
        timeline: Vec::new(),
    };
    if timeline {
        lead.timeline = client
            .query("SELECT at, state, detail, phase, data FROM lead_steps WHERE lead_id = $1 ORDER BY seq", &[&id])
            .await?
            .iter()
            .map(|r| Step {
                at: r.get(0),
                state: stored_state(r, 1, 3),
                detail: r.get(2),
                data: r.get::<_, Option<String>>(4).and_then(|t| serde_json::from_str(&t).ok()),
            })
            .collect();
    }
    Ok(Some(lead))
}

#[async_trait::async_trait]
impl Ledger for PostgresStore {
    fn instance(&self) -> &Instance {
        &self.inner.instance
    }

    async fn flush(&self) -> Result<()> {
        // Records commit on tasks of their own; wait for them to land.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !self.inner.pending.is_empty() {
            anyhow::ensure!(std::time::Instant::now() < deadline, "effect records are still not committed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        Ok(())
    }

    async fn record_event(&self, event: &InboundEvent) -> Result<bool> {
        let client = self.client().await?;
        let me = &self.inner.instance;
        let inserted = client
            .execute(
                &format!(
                    "INSERT INTO events (source, event_id, pipeline, lead_id, payload, received_at, claimed_by, claim_boot, lease_until, node)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {DB_NOW} + $9, $10) ON CONFLICT DO NOTHING"
                ),
                &[
                    &event.source,
                    &event.event_id,
                    &event.pipeline,
                    &event.lead_id,
                    &event.payload.to_string(),
                    &event.received_at,
                    &me.id,
                    &me.boot,
                    &self.lease_ms(),
                    &event.node,
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    async fn claim_due(&self, limit: usize) -> Result<Vec<InboundEvent>> {
        let client = self.client().await?;
        let me = &self.inner.instance;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = client
            .query(
                &format!(
                    "UPDATE events SET claimed_by = $1, claim_boot = $2, lease_until = {DB_NOW} + $3
                     WHERE (source, event_id) IN (
                        SELECT source, event_id FROM events
                        WHERE finished_at IS NULL
                          AND (next_attempt_at IS NULL OR next_attempt_at <= {DB_NOW})
                          AND (claimed_by IS NULL OR lease_until < {DB_NOW} OR (claimed_by = $1 AND claim_boot <> $2))
                        ORDER BY received_at LIMIT $4
                        FOR UPDATE SKIP LOCKED)
                     RETURNING {EVENT_COLUMNS}"
                ),
                &[&me.id, &me.boot, &self.lease_ms(), &limit],
            )
            .await?;
        let mut claimed: Vec<InboundEvent> = rows.iter().map(event_from_row).collect();
        claimed.sort_by_key(|e| e.received_at);
        Ok(claimed)
    }

    async fn renew_leases(&self, events: &[(String, String)]) -> Result<Vec<(String, String)>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.client().await?;
        let me = &self.inner.instance;
        let (sources, ids): (Vec<&str>, Vec<&str>) = events.iter().map(|(s, e)| (s.as_str(), e.as_str())).unzip();
        let renewed: std::collections::HashSet<(String, String)> = client
            .query(
                &format!(
                    "UPDATE events SET lease_until = {DB_NOW} + $3
                     WHERE claimed_by = $1 AND claim_boot = $2 AND finished_at IS NULL
                       AND (source, event_id) IN (SELECT * FROM unnest($4::text[], $5::text[]))
                     RETURNING source, event_id"
                ),
                &[&me.id, &me.boot, &self.lease_ms(), &sources, &ids],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        Ok(events.iter().filter(|e| !renewed.contains(*e)).cloned().collect())
    }

    async fn defer_event(&self, source: &str, event_id: &str, policy: WaitPolicy) -> Result<Option<Deferred>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let me = &self.inner.instance;
        let Some(row) = tx
            .query_opt(
                &format!(
                    "SELECT attempts, waiting_since, {DB_NOW} FROM events
                     WHERE source = $1 AND event_id = $2 AND finished_at IS NULL AND claimed_by = $3 AND claim_boot = $4
                     FOR UPDATE"
                ),
                &[&source, &event_id, &me.id, &me.boot],
            )
            .await?
        else {
            anyhow::bail!("this instance no longer holds event {event_id}");
        };
        let (attempts, since, now): (i32, Option<i64>, i64) = (row.get(0), row.get(1), row.get(2));
        let give_up_ms = i64::try_from(policy.give_up_after.as_millis()).unwrap_or(i64::MAX);
        if since.is_some_and(|since| now - since >= give_up_ms) {
            return Ok(None);
        }
        let attempts = u32::try_from(attempts).unwrap_or(0).saturating_add(1);
        let next_attempt_ms = now.saturating_add(policy.delay_ms(attempts - 1));
        tx.execute(
            "UPDATE events SET attempts = $3, next_attempt_at = $4, waiting_since = COALESCE(waiting_since, $5),
                claimed_by = NULL, claim_boot = NULL, lease_until = NULL
             WHERE source = $1 AND event_id = $2",
            &[&source, &event_id, &i32::try_from(attempts).unwrap_or(i32::MAX), &next_attempt_ms, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(Some(Deferred { attempts, next_attempt_ms }))
    }

    async fn unfinished_events(&self) -> Result<Vec<InboundEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE finished_at IS NULL ORDER BY received_at"), &[])
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn event(&self, source: &str, event_id: &str) -> Result<Option<(InboundEvent, bool)>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {EVENT_COLUMNS}, finished_at IS NOT NULL FROM events WHERE source = $1 AND event_id = $2"
                ),
                &[&source, &event_id],
            )
            .await?;
        Ok(row.map(|r| (event_from_row(&r), r.get(7))))
    }

    async fn failed_events(&self, lead_id: Option<&str>) -> Result<Vec<InboundEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE failed AND ($1::text IS NULL OR lead_id = $1) ORDER BY received_at"
                ),
                &[&lead_id],
            )
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn claim_failed(&self, source: &str, event_id: &str) -> Result<bool> {
        let client = self.client().await?;
        let me = &self.inner.instance;
        let changed = client
            .execute(
                &format!(
                    "UPDATE events SET failed = FALSE, finished_at = NULL, attempts = 0, next_attempt_at = NULL,
                        waiting_since = NULL, claimed_by = $3, claim_boot = $4, lease_until = {DB_NOW} + $5
                     WHERE source = $1 AND event_id = $2 AND failed"
                ),
                &[&source, &event_id, &me.id, &me.boot, &self.lease_ms()],
            )
            .await?;
        Ok(changed == 1)
    }

    async fn has_event_since(&self, lead_id: &str, since: i64) -> Result<bool> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM events WHERE lead_id = $1 AND received_at >= $2)",
                &[&lead_id, &since],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        let client = self.client().await?;
        Ok(client.query_opt("SELECT value FROM settings WHERE name = $1", &[&name]).await?.map(|r| r.get(0)))
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&name, &value],
            )
            .await?;
        Ok(())
    }

    async fn finish_event(&self, source: &str, event_id: &str, execution_id: &str, failed: bool) -> Result<bool> {
        // Its records first: one committing after the resume points are
        // dropped would leave one behind.
        EffectJournal::persist(self, execution_id).await?;
        let client = self.client().await?;
        let me = &self.inner.instance;
        let changed = client
            .execute(
                "UPDATE events SET execution_id = $3, finished_at = $4, failed = $5, next_attempt_at = NULL,
                    claimed_by = NULL, claim_boot = NULL, lease_until = NULL, told_at = NULL
                 WHERE source = $1 AND event_id = $2 AND finished_at IS NULL AND claimed_by = $6 AND claim_boot = $7",
                &[&source, &event_id, &execution_id, &self.business_now(), &failed, &me.id, &me.boot],
            )
            .await?;
        if changed == 1 && !failed {
            let (low, high) = super::journal_of(execution_id);
            let suffix = format!("%{}", crate::capabilities::OUTPUTS_SUFFIX);
            client
                .execute("DELETE FROM effects WHERE key >= $1 AND key < $2 AND key LIKE $3", &[&low, &high, &suffix])
                .await?;
        }
        Ok(changed == 1)
    }

    async fn prune(&self, before: i64, limit: usize) -> Result<super::Pruned> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // Executions a retry or a rerun may still need.
        let keep =
            "SELECT pipeline || ':' || source || ':' || event_id FROM events WHERE finished_at IS NULL OR failed";
        let effects = client
            .execute(
                &format!(
                    "DELETE FROM effects WHERE ctid IN (SELECT ctid FROM effects WHERE recorded_at < $1
                       AND split_part(key, '/', 1) NOT IN ({keep}) LIMIT $2)"
                ),
                &[&before, &limit],
            )
            .await?;
        let intents = client
            .execute(
                &format!(
                    "DELETE FROM effect_intents WHERE ctid IN (SELECT ctid FROM effect_intents WHERE started_at < $1
                       AND split_part(key, '/', 1) NOT IN ({keep}) LIMIT $2)"
                ),
                &[&before, &limit],
            )
            .await?;
        let timers = client
            .execute(
                "DELETE FROM timers WHERE ctid IN (SELECT ctid FROM timers
                   WHERE state <> 'pending' AND settled_at < $1 LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        let payloads = client
            .execute(
                "UPDATE events SET payload = '{}' WHERE ctid IN (SELECT ctid FROM events
                   WHERE finished_at < $1 AND NOT failed AND payload <> '{}' LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        let reads = client
            .execute(
                "DELETE FROM traces WHERE ctid IN (SELECT ctid FROM traces WHERE at < $1 LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        let shadows = client
            .execute(
                "DELETE FROM shadow_decisions WHERE ctid IN (SELECT ctid FROM shadow_decisions WHERE at < $1 LIMIT $2)",
                &[&before, &limit],
            )
            .await?;
        let state = client
            .execute(
                "DELETE FROM plugin_state WHERE ctid IN (SELECT ctid FROM plugin_state WHERE expires_at <= $1 LIMIT $2)",
                &[&self.business_now(), &limit],
            )
            .await?;
        Ok(super::Pruned { effects: effects + intents, timers, payloads, reads: reads + shadows, state })
    }

    async fn record_steps(&self, lead_id: &str, execution: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()> {
        let Some(last) = steps.last() else { return Ok(()) };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let existing: Option<LeadState> = tx
            .query_opt("SELECT state, phase FROM leads WHERE id = $1 FOR UPDATE", &[&lead_id])
            .await?
            .map(|r| stored_state(&r, 0, 1));
        let state = crate::lead::next_state(existing, &last.state);
        tx.execute(
            "INSERT INTO leads (id, email, name, company, state, owner, salesforce_id, updated_at, phase)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO UPDATE SET
                email = COALESCE(excluded.email, leads.email),
                name = COALESCE(excluded.name, leads.name),
                company = COALESCE(excluded.company, leads.company),
                state = excluded.state,
                phase = excluded.phase,
                owner = COALESCE(excluded.owner, leads.owner),
                salesforce_id = COALESCE(excluded.salesforce_id, leads.salesforce_id),
                updated_at = excluded.updated_at",
            &[
                &lead_id,
                &facts.email,
                &facts.name,
                &facts.company,
                &state.as_str(),
                &facts.owner,
                &facts.salesforce_id,
                &last.at,
                &state.phase().as_str(),
            ],
        )
        .await?;
        for step in steps {
            tx.execute(
                "INSERT INTO lead_steps (lead_id, at, state, detail, phase, execution_id, data)
                 SELECT $1, $2, $3, $4, $5, $6, $7
                 WHERE NOT EXISTS (SELECT 1 FROM lead_steps
                   WHERE lead_id = $1 AND state = $3 AND detail = $4 AND execution_id IS NOT DISTINCT FROM $6)",
                &[
                    &lead_id,
                    &step.at,
                    &step.state.as_str(),
                    &step.detail,
                    &step.state.phase().as_str(),
                    &execution,
                    &step.data.as_ref().map(ToString::to_string),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn steps_between(&self, states: &[&str], from: i64, to: i64) -> Result<Vec<(String, Step)>> {
        // Naming the index's own list lets PostgreSQL answer from it.
        let query = if super::all_reported(states) {
            concat!(
                "SELECT lead_id, at, state, detail, phase, data FROM lead_steps WHERE state IN (",
                reported_states!(),
                ") AND state = ANY($1) AND at >= $2 AND at < $3 ORDER BY at, seq"
            )
        } else {
            "SELECT lead_id, at, state, detail, phase, data FROM lead_steps
             WHERE state = ANY($1) AND at >= $2 AND at < $3 ORDER BY at, seq"
        };
        let states: Vec<String> = states.iter().map(|s| (*s).to_string()).collect();
        let client = self.client().await?;
        Ok(client
            .query(query, &[&states, &from, &to])
            .await?
            .iter()
            .map(|r| {
                let step = Step {
                    at: r.get(1),
                    state: stored_state(r, 2, 4),
                    detail: r.get(3),
                    data: r.get::<_, Option<String>>(5).and_then(|t| serde_json::from_str(&t).ok()),
                };
                (r.get(0), step)
            })
            .collect())
    }

    async fn leads(&self, state: Option<&LeadState>, limit: usize) -> Result<Vec<LeadRecord>> {
        let client = self.client().await?;
        let ids: Vec<String> = client
            .query(
                "SELECT id FROM leads WHERE ($1::text IS NULL OR state = $1) ORDER BY updated_at DESC, id LIMIT $2",
                &[&state.map(LeadState::as_str), &i64::try_from(limit).unwrap_or(i64::MAX)],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut leads = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(lead) = load_lead(&client, &id, false).await? {
                leads.push(lead);
            }
        }
        Ok(leads)
    }

    async fn lead_states(&self) -> Result<Vec<(LeadState, u64)>> {
        let client = self.client().await?;
        let rows =
            client.query("SELECT state, MAX(phase), COUNT(*) FROM leads GROUP BY state ORDER BY state", &[]).await?;
        Ok(rows.iter().map(|r| (stored_state(r, 0, 1), u64::try_from(r.get::<_, i64>(2)).unwrap_or(0))).collect())
    }

    async fn lead(&self, id: &str) -> Result<Option<LeadRecord>> {
        let client = self.client().await?;
        load_lead(&client, id, true).await
    }

    async fn fire_due_timers(&self, now: i64, limit: usize, pipelines: Option<&[String]>) -> Result<Vec<InboundEvent>> {
        let pipelines: Option<Vec<String>> = pipelines.map(<[String]>::to_vec);
        let mut client = self.client().await?;
        let me = &self.inner.instance;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tx = client.transaction().await?;
        // Each due timer is locked by one instance; the others skip it.
        let rows = tx
            .query(
                "UPDATE timers SET state = 'fired', settled_at = $1
                 WHERE id IN (
                    SELECT id FROM timers WHERE state = 'pending' AND due_at <= $1
                      AND ($3::text[] IS NULL OR pipeline = ANY($3))
                    ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING id, pipeline, node, lead_id, payload, due_at",
                &[&now, &limit, &pipelines],
            )
            .await?;
        let mut fired: Vec<(i64, InboundEvent)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let node: String = row.get(2);
            let event = InboundEvent {
                source: "timer".into(),
                event_id: row.get(0),
                pipeline: row.get(1),
                lead_id: row.get(3),
                payload: serde_json::from_str(row.get::<_, &str>(4)).unwrap_or_default(),
                received_at: now,
                node: (!node.is_empty()).then_some(node),
            };
            tx.execute(
                &format!(
                    "INSERT INTO events (source, event_id, pipeline, lead_id, payload, received_at, claimed_by, claim_boot, lease_until, node)
                     VALUES ('timer', $1, $2, $3, $4, $5, $6, $7, {DB_NOW} + $8, $9) ON CONFLICT DO NOTHING"
                ),
                &[
                    &event.event_id,
                    &event.pipeline,
                    &event.lead_id,
                    &row.get::<_, &str>(4),
                    &now,
                    &me.id,
                    &me.boot,
                    &self.lease_ms(),
                    &event.node,
                ],
            )
            .await?;
            fired.push((row.get(5), event));
        }
        tx.commit().await?;
        fired.sort_by(|a, b| (a.0, &a.1.event_id).cmp(&(b.0, &b.1.event_id)));
        Ok(fired.into_iter().map(|(_, e)| e).collect())
    }

    async fn next_timer_due(&self, pipelines: Option<&[String]>) -> Result<Option<i64>> {
        let pipelines: Option<Vec<String>> = pipelines.map(<[String]>::to_vec);
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT MIN(due_at) FROM timers WHERE state = 'pending' AND ($1::text[] IS NULL OR pipeline = ANY($1))",
                &[&pipelines],
            )
            .await?
            .get(0))
    }

    async fn lead_timers(&self, lead_id: &str) -> Result<Vec<TimerRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, pipeline, node, plugin, key, label, due_at, state, settled_at, reason
                 FROM timers WHERE lead_id = $1 ORDER BY due_at, id",
                &[&lead_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| TimerRecord {
                id: r.get(0),
                pipeline: r.get(1),
                node: r.get(2),
                plugin: r.get(3),
                key: r.get(4),
                label: r.get(5),
                due_at: r.get(6),
                state: r.get(7),
                settled_at: r.get(8),
                reason: r.get(9),
            })
            .collect())
    }

    async fn failures_to_tell(&self, limit: usize) -> Result<super::FailuresToTell> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let totals = client
            .query_one(
                "SELECT count(*), max(finished_at) FROM events
                 WHERE failed AND told_at IS NULL AND finished_at IS NOT NULL",
                &[],
            )
            .await?;
        let rows = client
            .query(
                "SELECT e.pipeline, e.event_id, e.lead_id,
                    (SELECT s.detail FROM lead_steps s WHERE s.lead_id = e.lead_id
                       AND s.execution_id = e.execution_id AND s.state = 'failed' ORDER BY s.seq DESC LIMIT 1)
                 FROM events e WHERE e.failed AND e.told_at IS NULL AND e.finished_at IS NOT NULL
                 ORDER BY e.finished_at LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(super::FailuresToTell {
            count: u64::try_from(totals.get::<_, i64>(0)).unwrap_or_default(),
            first: rows
                .iter()
                .map(|r| super::FailedLead {
                    pipeline: r.get(0),
                    event_id: r.get(1),
                    lead_id: r.get(2),
                    error: r.get(3),
                })
                .collect(),
            through: totals.get::<_, Option<i64>>(1).unwrap_or_default(),
        })
    }

    async fn mark_told(&self, through: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "UPDATE events SET told_at = $2
                 WHERE failed AND told_at IS NULL AND finished_at IS NOT NULL AND finished_at <= $1",
                &[&through, &self.business_now()],
            )
            .await?;
        Ok(())
    }

    async fn record_trace(&self, trace: &super::Trace) -> Result<()> {
        let record = serde_json::to_string(trace)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO traces (execution_id, at, record) VALUES ($1, $2, $3)
                 ON CONFLICT (execution_id) DO UPDATE SET at = excluded.at, record = excluded.record",
                &[&trace.execution_id, &trace.at, &record],
            )
            .await?;
        Ok(())
    }

    async fn trace(&self, execution_id: &str) -> Result<Option<super::Trace>> {
        let client = self.client().await?;
        let row = client.query_opt("SELECT record FROM traces WHERE execution_id = $1", &[&execution_id]).await?;
        Ok(row.and_then(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()))
    }

    async fn events_between(&self, pipeline: Option<&str>, from: i64, to: i64) -> Result<Vec<InboundEvent>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE received_at >= $1 AND received_at < $2 AND ($3::text IS NULL OR pipeline = $3)
                     ORDER BY received_at, ctid"
                ),
                &[&from, &to, &pipeline],
            )
            .await?;
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn event_of_execution(&self, execution_id: &str) -> Result<Option<InboundEvent>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {EVENT_COLUMNS} FROM events
                     WHERE execution_id = $1 OR pipeline || ':' || source || ':' || event_id = $1 LIMIT 1"
                ),
                &[&execution_id],
            )
            .await?;
        Ok(row.as_ref().map(event_from_row))
    }

    async fn record_shadow(&self, decision: &super::ShadowDecision) -> Result<()> {
        let record = serde_json::to_string(decision)?;
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO shadow_decisions (pipeline, execution_id, lead_id, at, record) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (pipeline, execution_id) DO UPDATE SET lead_id = excluded.lead_id, at = excluded.at,
                    record = excluded.record",
                &[&decision.pipeline, &decision.execution_id, &decision.lead_id, &decision.at, &record],
            )
            .await?;
        Ok(())
    }

    async fn shadow_decisions(
        &self,
        lead_id: Option<&str>,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<Vec<super::ShadowDecision>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT record FROM shadow_decisions WHERE ($1::text IS NULL OR lead_id = $1) AND ($2::text IS NULL OR pipeline = $2)
                 ORDER BY at DESC, execution_id DESC LIMIT $3",
                &[&lead_id, &pipeline, &limit],
            )
            .await?;
        Ok(rows.iter().filter_map(|r| serde_json::from_str(r.get::<_, &str>(0)).ok()).collect())
    }

    async fn paused_reps(&self) -> Result<Vec<PausedRep>> {
        let client = self.client().await?;
        let rows = client.query("SELECT rep_id, reason, since FROM paused_reps ORDER BY since", &[]).await?;
        Ok(rows.iter().map(|r| PausedRep { rep_id: r.get(0), reason: r.get(1), since: r.get(2) }).collect())
    }

    async fn set_rep_paused(&self, rep_id: &str, reason: Option<&str>) -> Result<()> {
        let client = self.client().await?;
        match reason {
            Some(reason) => {
                client
                    .execute(
                        "INSERT INTO paused_reps (rep_id, reason, since) VALUES ($1, $2, $3)
                         ON CONFLICT (rep_id) DO UPDATE SET reason = excluded.reason",
                        &[&rep_id, &reason, &self.business_now()],
                    )
                    .await?
            }
            None => client.execute("DELETE FROM paused_reps WHERE rep_id = $1", &[&rep_id]).await?,
        };
        Ok(())
    }
}

/// Timers in the ledger: a timer and the journal record of the call that
/// set it commit together.
#[async_trait::async_trait]
impl Scheduler for PostgresStore {
    async fn schedule(&self, timer: Timer, effect: Option<&str>) -> Result<String, CapabilityError> {
        let (now, label) = (self.business_now(), timer.label());
        let mut client = self.client().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(unavailable)?;
        if let Some(effect) = effect {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("handoff-effect:{effect}")])
                .await
                .map_err(unavailable)?;
            let done =
                tx.query_opt("SELECT result FROM effects WHERE key = $1", &[&effect]).await.map_err(unavailable)?;
            if let Some(id) = done.and_then(|r| serde_json::from_str::<String>(r.get::<_, &str>(0)).ok()) {
                return Ok(id);
            }
        }
        if let Some(key) = &timer.key {
            // One pending timer per plugin and key: serialize replacements.
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))",
                &[&format!("handoff-timer:{}:{}:{key}", timer.plugin.len(), timer.plugin)],
            )
            .await
            .map_err(unavailable)?;
            tx.execute(
                "UPDATE timers SET state = 'replaced', settled_at = $3, reason = $4
                 WHERE plugin = $1 AND key = $2 AND state = 'pending'",
                &[&timer.plugin, key, &now, &format!("replaced by timer {}", timer.id)],
            )
            .await
            .map_err(unavailable)?;
        }
        tx.execute(
            "INSERT INTO timers (id, pipeline, node, plugin, key, label, lead_id, execution_id, due_at, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING",
            &[
                &timer.id,
                &timer.pipeline,
                &timer.node,
                &timer.plugin,
                &timer.key,
                &label,
                &timer.lead_id,
                &timer.execution_id,
                &timer.at,
                &timer.payload,
            ],
        )
        .await
        .map_err(unavailable)?;
        if let Some(effect) = effect {
            let id = serde_json::to_string(&timer.id).map_err(|e| CapabilityError::Invalid(e.to_string()))?;
            record_effect(&tx, effect, &id, now).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(timer.id)
    }

    async fn cancel(&self, plugin: &str, timer_id: &str, reason: &str) -> Result<(), CapabilityError> {
        let client = self.client().await.map_err(unavailable)?;
        client
            .execute(
                "UPDATE timers SET state = 'cancelled', settled_at = $3, reason = $4
                 WHERE id = $1 AND plugin = $2 AND state = 'pending'",
                &[&timer_id, &plugin, &self.business_now(), &reason],
            )
            .await
            .map_err(unavailable)?;
        let known: bool = client
            .query_one("SELECT EXISTS (SELECT 1 FROM timers WHERE id = $1 AND plugin = $2)", &[&timer_id, &plugin])
            .await
            .map_err(unavailable)?
            .get(0);
        if known { Ok(()) } else { Err(CapabilityError::NotFound(format!("no timer {timer_id} of this plugin"))) }
    }

    async fn cancel_key(&self, plugin: &str, key: &str, reason: &str) -> Result<bool, CapabilityError> {
        let client = self.client().await.map_err(unavailable)?;
        let changed = client
            .execute(
                "UPDATE timers SET state = 'cancelled', settled_at = $3, reason = $4
                 WHERE plugin = $1 AND key = $2 AND state = 'pending'",
                &[&plugin, &key, &self.business_now(), &reason],
            )
            .await
            .map_err(unavailable)?;
        Ok(changed > 0)
    }
}

#[async_trait::async_trait]
impl EffectJournal for PostgresStore {
    async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        if let Some(result) = self.inner.pending.get(key) {
            return Ok(Some(Entry::Done(result)));
        }
        let client = self.client().await?;
        // One statement, one snapshot: a record committing in between
        // cannot make both look absent.
        let row = client
            .query_opt(
                "SELECT (SELECT result FROM effects WHERE key = $1), (SELECT started_at FROM effect_intents WHERE key = $1)",
                &[&key],
            )
            .await?;
        Ok(row.and_then(|r| match (r.get::<_, Option<String>>(0), r.get::<_, Option<i64>>(1)) {
            (Some(done), _) => Some(Entry::Done(serde_json::from_str(&done).unwrap_or_default())),
            (None, Some(at_ms)) => Some(Entry::Started { at_ms }),
            (None, None) => None,
        }))
    }

    async fn start(&self, key: &str, at_ms: i64) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO effect_intents (key, started_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &at_ms],
            )
            .await?;
        Ok(())
    }

    async fn persist(&self, execution_id: &str) -> Result<()> {
        // Records commit on tasks of their own: wait for this execution's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.inner.pending.any_of(execution_id) {
            anyhow::ensure!(std::time::Instant::now() < deadline, "effect records are still not committed");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        Ok(())
    }

    async fn record(&self, key: &str, result: &str) -> Result<()> {
        // Not waited for (see the trait), but readable here at once.
        self.inner.pending.hold(key, result, self.business_now());
        let (store, key, result, at) = (self.clone(), key.to_string(), result.to_string(), self.business_now());
        tokio::spawn(async move {
            let commit = async {
                let mut client = store.client().await?;
                let tx = client.transaction().await?;
                record_effect(&tx, &key, &result, at).await?;
                tx.commit().await?;
                anyhow::Ok(())
            };
            if let Err(e) = commit.await {
                tracing::warn!(error = %e, "an effect's record was not committed; a rerun looks for its effect");
            }
            store.inner.pending.remove(&key);
        });
        Ok(())
    }
}

/// Records an effect's result at `at` (host clock) and drops its intent.
async fn record_effect(tx: &tokio_postgres::Transaction<'_>, key: &str, result: &str, at: i64) -> Result<()> {
    tx.execute(
        "INSERT INTO effects (key, result, recorded_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        &[&key, &result, &at],
    )
    .await?;
    tx.execute("DELETE FROM effect_intents WHERE key = $1", &[&key]).await?;
    Ok(())
}

fn unavailable(e: impl Into<anyhow::Error>) -> CapabilityError {
    CapabilityError::Unavailable(format!("the ledger: {:#}", e.into()))
}

#[async_trait::async_trait]
impl StateStore for PostgresStore {
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError> {
        let client = self.client().await.map_err(unavailable)?;
        let row = client
            .query_opt(
                &format!("SELECT value FROM plugin_state WHERE scope = $1 AND key = $2 AND {LIVE_AT_3}"),
                &[&scope, &key, &now],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn set(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        now: i64,
        quota: StateQuota,
    ) -> Result<(), CapabilityError> {
        let mut client = self.client().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(unavailable)?;
        check_state_quota(&tx, scope, key, value.len(), quota).await?;
        // A live key keeps its expiry; an expired one is written anew.
        tx.execute(
            "INSERT INTO plugin_state (scope, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,
                expires_at = CASE WHEN plugin_state.expires_at > $4 THEN plugin_state.expires_at END",
            &[&scope, &key, &value, &now],
        )
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        let client = self.client().await.map_err(unavailable)?;
        client
            .execute("DELETE FROM plugin_state WHERE scope = $1 AND key = $2", &[&scope, &key])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn increment(
        &self,
        scope: &str,
        key: &str,
        delta: i64,
        now: i64,
        effect: Option<&str>,
        quota: StateQuota,
    ) -> Result<i64, CapabilityError> {
        let at = self.business_now();
        let mut client = self.client().await.map_err(unavailable)?;
        let tx = client.transaction().await.map_err(unavailable)?;
        // Lock the row, or the key's absence, for this transaction.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext($1))",
            &[&format!("handoff-state:{}:{scope}:{key}", scope.len())],
        )
        .await
        .map_err(unavailable)?;
        // Done already (by a run of this execution elsewhere): the recorded
        // result, not a second increment.
        if let Some(effect) = effect {
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&format!("handoff-effect:{effect}")])
                .await
                .map_err(unavailable)?;
            let done =
                tx.query_opt("SELECT result FROM effects WHERE key = $1", &[&effect]).await.map_err(unavailable)?;
            if let Some(n) = done.and_then(|r| r.get::<_, String>(0).parse::<i64>().ok()) {
                return Ok(n);
            }
        }
        let current = tx
            .query_opt(
                &format!("SELECT value, expires_at FROM plugin_state WHERE scope = $1 AND key = $2 AND {LIVE_AT_3}"),
                &[&scope, &key, &now],
            )
            .await
            .map_err(unavailable)?;
        let (current, expires_at): (Option<String>, Option<i64>) =
            current.map_or((None, None), |row| (Some(row.get(0)), row.get(1)));
        let next = crate::capabilities::incremented(key, current.as_deref(), delta)?;
        check_state_quota(&tx, scope, key, next.to_string().len(), quota).await?;
        tx.execute(
            "INSERT INTO plugin_state (scope, key, value, expires_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            &[&scope, &key, &next.to_string(), &expires_at],
        )
        .await
        .map_err(unavailable)?;
        if let Some(effect) = effect {
            record_effect(&tx, effect, &next.to_string(), at).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(next)
    }

    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError> {
        let client = self.client().await.map_err(unavailable)?;
        // One statement either way, so it cannot race a write of the key.
        let changed = if at <= now {
            client
                .execute(
                    &format!("DELETE FROM plugin_state WHERE scope = $1 AND key = $2 AND {LIVE_AT_3}"),
                    &[&scope, &key, &now],
                )
                .await
        } else {
            client
                .execute(
                    &format!("UPDATE plugin_state SET expires_at = $4 WHERE scope = $1 AND key = $2 AND {LIVE_AT_3}"),
                    &[&scope, &key, &now, &at],
                )
                .await
        }
        .map_err(unavailable)?;
        Ok(changed == 1)
    }
}

/// The condition that a `plugin_state` row has not expired at `$3`.
const LIVE_AT_3: &str = "(expires_at IS NULL OR expires_at > $3)";

/// [`StateQuota::check`] against what the scope holds, its usage row
/// locked until `tx` ends so concurrent writers of one plugin take turns.
async fn check_state_quota(
    tx: &tokio_postgres::Transaction<'_>,
    scope: &str,
    key: &str,
    value_len: usize,
    quota: StateQuota,
) -> Result<(), CapabilityError> {
    tx.execute("INSERT INTO plugin_state_usage VALUES ($1, 0, 0) ON CONFLICT DO NOTHING", &[&scope])
        .await
        .map_err(unavailable)?;
    let usage = tx
        .query_one("SELECT keys, bytes FROM plugin_state_usage WHERE scope = $1 FOR UPDATE", &[&scope])
        .await
        .map_err(unavailable)?;
    let old = tx
        .query_opt(
            "SELECT (octet_length(key) + octet_length(value))::bigint FROM plugin_state WHERE scope = $1 AND key = $2",
            &[&scope, &key],
        )
        .await
        .map_err(unavailable)?;
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    quota.check(
        scope,
        size(usage.get(0)),
        size(usage.get(1)),
        old.map(|r| size(r.get(0))),
        (key.len() + value_len) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_messages_and_schemas_are_identifiers() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/x"), "postgres://app:[redacted]@db:5432/x");
        assert_eq!(redact("postgres://app@db/x"), "postgres://app@db/x");
        assert!(valid_schema("handoff_test_1"));
        assert!(!valid_schema("Handoff") && !valid_schema("a;drop") && !valid_schema("1a") && !valid_schema(""));
    }
}
