//! The ledger in SQLite: WAL journal, group commit on one writer thread
//! (a commit an outside party is told of, such as a webhook's event, is
//! fsynced first; see `Reach`), numbered migrations.

use super::held_state::{HeldState, HeldValue, StateRow, StateWrite, Write, usage_change};
use super::packing::Packer;
use super::{Deferred, InboundEvent, Instance, Ledger, PausedRep, PendingRecords, TimerRecord, WaitPolicy};
use crate::capabilities::Entry;
use crate::capabilities::{CapabilityError, Clock, Scheduler, StateQuota, StateStore, SystemClock, Timer};
use crate::lead::{LeadFacts, LeadRecord, LeadState, Step};
use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
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
    r#"
    ALTER TABLE events ADD COLUMN claimed_by TEXT;
    ALTER TABLE events ADD COLUMN claim_boot TEXT;
    ALTER TABLE events ADD COLUMN lease_until INTEGER;
    ALTER TABLE events ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE events ADD COLUMN next_attempt_at INTEGER;
    ALTER TABLE events ADD COLUMN waiting_since INTEGER;
    CREATE TABLE effect_intents (
        key TEXT PRIMARY KEY,
        started_at INTEGER NOT NULL
    );
    CREATE TABLE plugin_state (
        scope TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (scope, key)
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
        due_at INTEGER NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',
        settled_at INTEGER,
        reason TEXT
    );
    CREATE INDEX timers_due ON timers (due_at) WHERE state = 'pending';
    CREATE UNIQUE INDEX timers_key ON timers (plugin, key) WHERE state = 'pending' AND key IS NOT NULL;
    CREATE INDEX timers_lead ON timers (lead_id, due_at);
    CREATE TABLE paused_reps (
        rep_id TEXT PRIMARY KEY,
        reason TEXT NOT NULL,
        since INTEGER NOT NULL
    );
"#,
    // A step is the same step only within one execution: a lead handed off
    // again shows its second handoff's steps too.
    "ALTER TABLE lead_steps ADD COLUMN execution_id TEXT;",
    // What each plugin holds, kept by triggers, for its state quota.
    r#"
    CREATE TABLE plugin_state_usage (scope TEXT PRIMARY KEY, keys INTEGER NOT NULL, bytes INTEGER NOT NULL);
    INSERT INTO plugin_state_usage
        SELECT scope, count(*), sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))) FROM plugin_state GROUP BY scope;
    CREATE TRIGGER plugin_state_inserted AFTER INSERT ON plugin_state BEGIN
        INSERT OR IGNORE INTO plugin_state_usage VALUES (NEW.scope, 0, 0);
        UPDATE plugin_state_usage
            SET keys = keys + 1, bytes = bytes + length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB))
            WHERE scope = NEW.scope;
    END;
    CREATE TRIGGER plugin_state_updated AFTER UPDATE ON plugin_state BEGIN
        UPDATE plugin_state_usage
            SET bytes = bytes + length(CAST(NEW.value AS BLOB)) - length(CAST(OLD.value AS BLOB))
            WHERE scope = NEW.scope;
    END;
    CREATE TRIGGER plugin_state_deleted AFTER DELETE ON plugin_state BEGIN
        UPDATE plugin_state_usage
            SET keys = keys - 1, bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB))
            WHERE scope = OLD.scope;
    END;
"#,
    // What a step's mark kept for reports (a rejection's reason), and the
    // reports' lookup by state and time.
    "ALTER TABLE lead_steps ADD COLUMN data TEXT; CREATE INDEX lead_steps_state ON lead_steps (state, at);",
    // Failed leads ops has been told of; untold ones are found by index.
    "ALTER TABLE events ADD COLUMN told_at INTEGER;
     CREATE INDEX events_untold ON events (finished_at) WHERE failed = 1 AND told_at IS NULL;
     UPDATE events SET told_at = finished_at WHERE failed = 1 AND finished_at IS NOT NULL;",
    // The journal keyed by its key alone (no rowid, no second copy of every
    // key in an index): about half its bytes.
    r#"
    CREATE TABLE effects_by_key (key TEXT PRIMARY KEY, result TEXT NOT NULL, recorded_at INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO effects_by_key SELECT key, result, recorded_at FROM effects;
    DROP TABLE effects;
    ALTER TABLE effects_by_key RENAME TO effects;
    CREATE TABLE effect_intents_by_key (key TEXT PRIMARY KEY, started_at INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO effect_intents_by_key SELECT key, started_at FROM effect_intents;
    DROP TABLE effect_intents;
    ALTER TABLE effect_intents_by_key RENAME TO effect_intents;
"#,
    // What providers answered each execution (simulation, replay), and
    // shadow pipelines' decisions.
    r#"
    CREATE TABLE traces (execution_id TEXT PRIMARY KEY, at INTEGER NOT NULL, record BLOB NOT NULL);
    CREATE INDEX traces_at ON traces (at);
    CREATE TABLE shadow_decisions (
        pipeline TEXT NOT NULL, execution_id TEXT NOT NULL, lead_id TEXT, at INTEGER NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (pipeline, execution_id)
    );
    CREATE INDEX shadow_decisions_lead ON shadow_decisions (lead_id, at);
    CREATE INDEX shadow_decisions_at ON shadow_decisions (at);
    CREATE INDEX events_received ON events (received_at);
"#,
    // Compression dictionaries trained on the ledger's own documents
    // (`packing.rs`); traces and plugin state keyed by their keys alone.
    r#"
    CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, trained_at INTEGER NOT NULL, bytes BLOB NOT NULL);
    CREATE TABLE traces_by_id (execution_id TEXT PRIMARY KEY, at INTEGER NOT NULL, record BLOB NOT NULL) WITHOUT ROWID;
    INSERT INTO traces_by_id SELECT execution_id, at, record FROM traces;
    DROP TABLE traces;
    ALTER TABLE traces_by_id RENAME TO traces;
    CREATE INDEX traces_at ON traces (at);
    CREATE TABLE plugin_state_by_key (scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID;
    INSERT INTO plugin_state_by_key SELECT scope, key, value FROM plugin_state;
    DROP TABLE plugin_state;
    ALTER TABLE plugin_state_by_key RENAME TO plugin_state;
    CREATE TRIGGER plugin_state_inserted AFTER INSERT ON plugin_state BEGIN
        INSERT OR IGNORE INTO plugin_state_usage VALUES (NEW.scope, 0, 0);
        UPDATE plugin_state_usage
            SET keys = keys + 1, bytes = bytes + length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB))
            WHERE scope = NEW.scope;
    END;
    CREATE TRIGGER plugin_state_updated AFTER UPDATE ON plugin_state BEGIN
        UPDATE plugin_state_usage
            SET bytes = bytes + length(CAST(NEW.value AS BLOB)) - length(CAST(OLD.value AS BLOB))
            WHERE scope = NEW.scope;
    END;
    CREATE TRIGGER plugin_state_deleted AFTER DELETE ON plugin_state BEGIN
        UPDATE plugin_state_usage
            SET keys = keys - 1, bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB))
            WHERE scope = OLD.scope;
    END;
"#,
    // Plugin state that expires (`state.expire`, contract 0.1.1).
    r#"
    ALTER TABLE plugin_state ADD COLUMN expires_at INTEGER;
    CREATE INDEX plugin_state_expiry ON plugin_state (expires_at) WHERE expires_at IS NOT NULL;
"#,
    // Only the steps reports look up by state are indexed by state.
    concat!(
        "DROP INDEX lead_steps_state; CREATE INDEX lead_steps_reported ON lead_steps (state, at) WHERE state IN (",
        reported_states!(),
        ");"
    ),
];

/// Steps into any of a JSON list of states within a time range.
const STEPS_BETWEEN: &str = "SELECT lead_id, at, state, detail, phase, data FROM lead_steps
    WHERE state IN (SELECT value FROM json_each(?1)) AND at >= ?2 AND at < ?3 ORDER BY at, seq";

/// The same, for states that are all reported: naming the index's own list
/// lets SQLite answer it from `lead_steps_reported`.
const STEPS_BETWEEN_REPORTED: &str = concat!(
    "SELECT lead_id, at, state, detail, phase, data FROM lead_steps
    WHERE state IN (",
    reported_states!(),
    ") AND state IN (SELECT value FROM json_each(?1)) AND at >= ?2 AND at < ?3 ORDER BY at, seq"
);

/// Most writes committed together in one transaction.
const MAX_GROUP: usize = 512;

/// Longest a held plugin state write or a released effect record waits for
/// a transaction to ride along with before it gets one of its own.
const RECORD_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// The SQLite ledger. Cheap to clone.
///
/// Writes go to one writer thread that commits whatever is queued as one
/// transaction (group commit: one fsync for many callers, each caller's
/// work in its own savepoint so one failure does not undo the others);
/// reads use their own connections and see only committed data.
///
/// Effect records, which nobody waits for (see
/// [`EffectJournal::record`](crate::capabilities::EffectJournal::record)),
/// are not writes of their own: they queue, readable by this process at
/// once, and the next transaction takes them along, or a transaction of
/// their own after [`RECORD_DELAY`]. A lead's dozen records cost no commit
/// of their own, and the resume points of an execution that completes
/// before they are taken are never written at all.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    writer: Mutex<std::sync::mpsc::Sender<Job>>,
    readers: Mutex<Vec<Connection>>,
    instance: Instance,
    /// The host's clock: the business times the ledger writes (when an
    /// event finished, when an effect was recorded) are on the same time
    /// line as the plugins and the runs.
    clock: Arc<dyn Clock>,
    /// Effect records not committed yet; the writer takes them.
    pending: Arc<PendingRecords>,
    /// How documents are stored (compressed, with the ledger's dictionary).
    packer: Arc<Packer>,
    /// Plugin state writes accepted and not yet committed.
    held_state: Arc<HeldState>,
}

/// What a write does once its group's commit is known: answers its caller.
type Answer = Box<dyn FnOnce(Result<(), String>) + Send>;

/// A write's work in its group's transaction (none: the group failed to
/// begin), returning its [`Answer`] and whether the work succeeded.
type Work = Box<dyn FnOnce(Place<'_>) -> (Answer, bool) + Send>;

/// Where a write runs.
enum Place<'c> {
    /// Nowhere: its group's transaction failed to begin or was rolled back.
    Nowhere,
    /// In its own savepoint: a failure undoes its writes and no one else's.
    Shared(&'c Connection),
    /// Alone in its transaction, with no savepoint (each costs two
    /// statements and a copy of every page the write touches): a failure
    /// rolls the whole transaction back.
    Alone(&'c Connection),
}

/// A write: runs inside the group's transaction (or, given
/// [`Place::Nowhere`], does not run) and returns what to do once the
/// group's commit is known.
struct Job {
    run: Work,
    /// Whether its commit must reach the disk before it is answered (see
    /// [`Reach`]).
    reach: Reach,
}

/// How far a write's commit goes before the writer answers it.
///
/// Every commit is in the WAL (the OS holds it) before it is answered, so a
/// killed process loses nothing. Only `Disk` commits also wait for the
/// WAL's fsync, which is what survives a power cut; and since the WAL is
/// one sequence, that fsync makes every commit before it durable too. So
/// only writes that precede a promise to the outside world need it: an
/// event acknowledged to its sender, and an effect's intent before the
/// effect. Everything else (claims, journal results, lead steps, timers,
/// state) is made durable by the next such fsync, or by the checkpoint,
/// and a power cut in between loses only work that runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// In the WAL (`synchronous = NORMAL`).
    Wal,
    /// In the WAL and fsynced (`synchronous = FULL`).
    Disk,
}

fn connect(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    // Statements are prepared once per connection and reused: parsing SQL
    // on every call was a visible share of a lead's CPU.
    connection.set_prepared_statement_cache_capacity(128);
    Ok(connection)
}

/// What a SQLite ledger file holds, read without writing to it: the
/// migrations it has and the number this binary brings (`handoff doctor`).
///
/// # Errors
///
/// When the file exists but cannot be read as a database.
pub fn inspect(path: &Path) -> Result<Option<(usize, usize)>> {
    if !path.exists() {
        return Ok(None);
    }
    let connection = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("opening {} read-only", path.display()))?;
    let has_meta: bool = connection
        .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')", [], |r| {
            r.get(0)
        })
        .with_context(|| format!("reading {}", path.display()))?;
    let applied = if has_meta {
        connection
            .query_row("SELECT value FROM meta WHERE key = 'schema_version'", [], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    } else {
        0
    };
    Ok(Some((applied, MIGRATIONS.len())))
}

impl SqliteStore {
    /// Opens (creating and migrating) the database at `path`, as the
    /// instance the environment names, on the system clock: for reading a
    /// ledger, or for tools that run on real time.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or a migration fails.
    pub fn open(path: &Path) -> Result<Self> {
        SqliteStore::open_as(path, Instance::from_env(), Arc::new(SystemClock))
    }

    /// Opens the database at `path` as `instance`, writing business times
    /// from `clock` (the host's clock).
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or a migration fails.
    pub fn open_as(path: &Path, instance: Instance, clock: Arc<dyn Clock>) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let connection = connect(path)?;
        migrate(&connection).with_context(|| format!("migrating {}", path.display()))?;
        let packer = Arc::new(Packer::open(&connection, path.to_path_buf())?);
        let (writer, jobs) = std::sync::mpsc::channel::<Job>();
        let pending = Arc::new(PendingRecords::default());
        let held_state = Arc::new(HeldState::default());
        let (records, writer_packer, writer_clock) = (pending.clone(), packer.clone(), clock.clone());
        let state = held_state.clone();
        std::thread::Builder::new()
            .name("handoff-ledger".into())
            .spawn(move || {
                let writer = Writer {
                    connection: &connection,
                    records: &records,
                    state: &state,
                    packer: &writer_packer,
                    clock: &*writer_clock,
                    synchronous: Reach::Disk,
                };
                write_groups(writer, &jobs);
            })
            .context("starting the ledger's writer")?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                instance,
                clock,
                pending,
                packer,
                held_state,
            }),
        })
    }

    /// Reads on a connection of their own, on a blocking thread: for reads
    /// that scan (reports, listings).
    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || read_on(&inner, f)).await.context("the store's reader stopped")?
    }

    /// Reads by key, here and now: a lookup by primary key in WAL mode
    /// never waits for the writer and takes microseconds, less than handing
    /// it to another thread and back.
    fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        read_on(&self.inner, f)
    }

    /// Writes through the writer thread; the write is queued at once, and
    /// the future resolves once it is committed (in the WAL, see [`Reach`]).
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        self.write_as(Reach::Wal, f)
    }

    /// [`Self::write`], resolving once the commit is on the disk: for
    /// writes the outside world is told of.
    fn write_durable<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        self.write_as(Reach::Disk, f)
    }

    fn write_as<T: Send + 'static>(
        &self,
        reach: Reach,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<T>> + Send + 'static {
        let (done, result) = tokio::sync::oneshot::channel();
        let run = Box::new(move |place: Place<'_>| {
            let outcome = match place {
                Place::Shared(c) => in_savepoint(c, f),
                Place::Alone(c) => f(c),
                Place::Nowhere => Err(anyhow::anyhow!("not run: the group's transaction was rolled back")),
            };
            let succeeded = outcome.is_ok();
            let answer = Box::new(move |commit: Result<(), String>| {
                let _ = done.send(match commit {
                    Ok(()) => outcome,
                    Err(e) => Err(anyhow::anyhow!("the ledger could not commit: {e}")),
                });
            }) as Answer;
            (answer, succeeded)
        });
        let queued = self.send(Job { run, reach });
        async move {
            queued?;
            result.await.context("the ledger's writer stopped")?
        }
    }

    fn send(&self, job: Job) -> Result<()> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| anyhow::anyhow!("the ledger's writer stopped"))
    }

    /// Real time, for liveness: leases and the waits of events whose
    /// provider is down measure how long something has really been
    /// unresponsive, whatever time the host's clock says.
    fn now() -> i64 {
        SystemClock.now_ms()
    }

    /// The host's clock, for business times.
    fn business_now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.inner.instance.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Runs `f` on a pooled reader connection (opening one when none is idle).
fn read_on<T>(inner: &Inner, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let pooled = inner.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
    let connection = match pooled {
        Some(c) => c,
        None => connect(&inner.path)?,
    };
    let result = f(&connection);
    inner.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(connection);
    result
}

/// Runs one statement that returns no rows, prepared once per connection
/// (`execute_batch` parses its text on every call).
fn run_cached(connection: &Connection, sql: &str) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// Runs `f` in a savepoint: its writes stay only if it succeeds.
fn in_savepoint<T>(connection: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    run_cached(connection, "SAVEPOINT job")?;
    match f(connection) {
        Ok(value) => {
            run_cached(connection, "RELEASE job")?;
            Ok(value)
        }
        Err(e) => {
            let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

/// The writer thread: takes every queued write and effect record, runs
/// them in one transaction, commits once, then answers them all.
fn write_groups(mut writer: Writer<'_>, jobs: &std::sync::mpsc::Receiver<Job>) {
    use std::sync::mpsc::RecvTimeoutError;
    loop {
        // Held state writes and released records wait at most this long
        // for a write to ride with; nobody has to wake the writer for them.
        let mut group = match jobs.recv_timeout(RECORD_DELAY) {
            Ok(job) => vec![job],
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            // The store is gone: what is queued is still committed.
            Err(RecvTimeoutError::Disconnected) => {
                writer.commit(Vec::new());
                return;
            }
        };
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        writer.commit(group);
    }
}

/// What the writer thread works with.
struct Writer<'a> {
    connection: &'a Connection,
    records: &'a PendingRecords,
    state: &'a HeldState,
    packer: &'a Packer,
    clock: &'a dyn Clock,
    /// The connection's `synchronous` setting now.
    synchronous: Reach,
}

/// Says that held plugin state writes were lost with their transaction.
fn lost_state(state: &[StateWrite], error: &str) {
    if !state.is_empty() {
        tracing::error!(error, writes = state.len(), "plugin state writes could not be committed");
    }
}

impl Writer<'_> {
    /// One transaction: the held plugin state writes and queued effect
    /// records, a newly trained dictionary, then each write in its own
    /// savepoint (none when it is alone in the transaction); commits once
    /// (to the disk if any write must be), then answers every write.
    fn commit(&mut self, group: Vec<Job>) {
        let connection = self.connection;
        let queued = self.records.take_queued();
        let state = self.state.take_queued();
        let trained = self.packer.has_trained();
        if group.is_empty() && queued.is_empty() && state.is_empty() && !trained {
            return;
        }
        let began = std::time::Instant::now();
        // The group goes to the disk if any of its writes must.
        let wanted = if group.iter().any(|job| job.reach == Reach::Disk) { Reach::Disk } else { Reach::Wal };
        let set = if wanted == self.synchronous {
            Ok(())
        } else {
            let level = if wanted == Reach::Disk { "FULL" } else { "NORMAL" };
            run_cached(connection, &format!("PRAGMA synchronous = {level}")).map(|()| self.synchronous = wanted)
        };
        if let Err(e) = set.and_then(|()| run_cached(connection, "BEGIN IMMEDIATE")) {
            let error = e.to_string();
            tracing::warn!(error = %error, records = queued.len(), "effect records were not committed; a rerun looks for their effects");
            lost_state(&state, &error);
            self.state.settle_with(&state, || ());
            for job in group {
                // Nothing runs: each caller hears why.
                let (answer, _) = (job.run)(Place::Nowhere);
                answer(Err(error.clone()));
            }
            return;
        }
        if !state.is_empty()
            && let Err(e) = in_savepoint(connection, |c| write_state(c, &state))
        {
            lost_state(&state, &e.to_string());
        }
        if !queued.is_empty()
            && let Err(e) = in_savepoint(connection, |c| write_records(c, &queued))
        {
            tracing::warn!(error = %e, records = queued.len(), "effect records were not committed; a rerun looks for their effects");
        }
        let dictionary = self.packer.store_trained(connection, self.clock.now_ms());
        // Most groups at a steady rate are one write with nothing else in
        // their transaction: it needs no savepoint of its own.
        let alone = group.len() == 1 && state.is_empty() && queued.is_empty() && dictionary.is_none();
        // A job that hits a disk error can make SQLite roll the whole
        // transaction back; the jobs after it must not then run (and
        // commit) on their own.
        let mut answers = Vec::with_capacity(group.len());
        let mut failed_alone = false;
        for job in group {
            let place = match (connection.is_autocommit(), alone) {
                (true, _) => Place::Nowhere,
                (false, true) => Place::Alone(connection),
                (false, false) => Place::Shared(connection),
            };
            let (answer, succeeded) = (job.run)(place);
            failed_alone = alone && !succeeded;
            answers.push(answer);
        }
        // Held state writes are settled together with the commit (see
        // `HeldState::settle_with`).
        let commit = self.state.settle_with(&state, || {
            let commit = if failed_alone {
                // What the failed write did is undone (SQLite may have done
                // it already); it hears its own error, as from a savepoint.
                if connection.is_autocommit() {
                    Ok(())
                } else {
                    run_cached(connection, "ROLLBACK").map_err(|e| e.to_string())
                }
            } else {
                run_cached(connection, "COMMIT").map_err(|e| e.to_string())
            };
            if commit.is_err() && !connection.is_autocommit() {
                let _ = connection.execute_batch("ROLLBACK");
            }
            commit
        });
        match (&commit, dictionary) {
            (Ok(()), Some((id, trained_at, bytes))) => self.packer.adopt(id, trained_at, &bytes),
            (Err(_), Some(_)) => self.packer.lost(),
            _ => {}
        }
        if let Err(e) = &commit {
            lost_state(&state, e);
        }
        crate::telemetry::TELEMETRY.ledger_commit_seconds.observe(began.elapsed().as_secs_f64());
        for answer in answers {
            answer(commit.clone());
        }
    }
}

fn migrate(connection: &Connection) -> Result<()> {
    connection.execute_batch("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")?;
    let applied: usize = connection
        .prepare_cached("SELECT value FROM meta WHERE key = 'schema_version'")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = connection.unchecked_transaction()?;
        tx.execute_batch(migration).with_context(|| format!("migration {}", i + 1))?;
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?1)")?
            .execute(params![(i + 1).to_string()])?;
        tx.commit()?;
    }
    Ok(())
}

fn event_from_row(packer: &Packer, row: &rusqlite::Row<'_>) -> rusqlite::Result<InboundEvent> {
    Ok(InboundEvent {
        source: row.get(0)?,
        event_id: row.get(1)?,
        pipeline: row.get(2)?,
        lead_id: row.get(3)?,
        payload: packer.unpack(row.get_ref(4)?),
        received_at: row.get(5)?,
        node: row.get(6)?,
    })
}

fn load_lead(connection: &Connection, id: &str) -> Result<Option<LeadRecord>> {
    let lead = connection
        .prepare_cached(
            "SELECT id, email, name, company, state, owner, salesforce_id, updated_at, phase FROM leads WHERE id = ?1",
        )?
        .query_row(params![id], |r| {
            Ok(LeadRecord {
                id: r.get(0)?,
                email: r.get(1)?,
                name: r.get(2)?,
                company: r.get(3)?,
                state: LeadState::stored(&r.get::<_, String>(4)?, r.get::<_, Option<String>>(8)?.as_deref()),
                owner: r.get(5)?,
                salesforce_id: r.get(6)?,
                updated_at: r.get(7)?,
                timeline: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut lead) = lead else { return Ok(None) };
    let mut statement =
        connection.prepare("SELECT at, state, detail, phase, data FROM lead_steps WHERE lead_id = ?1 ORDER BY seq")?;
    lead.timeline = statement
        .query_map(params![id], |r| {
            Ok(Step {
                at: r.get(0)?,
                state: LeadState::stored(&r.get::<_, String>(1)?, r.get::<_, Option<String>>(3)?.as_deref()),
                detail: r.get(2)?,
                data: step_data(r.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some(lead))
}

const EVENT_COLUMNS: &str = "source, event_id, pipeline, lead_id, payload, received_at, node";

#[async_trait::async_trait]
impl Ledger for SqliteStore {
    fn instance(&self) -> &Instance {
        &self.inner.instance
    }

    async fn flush(&self) -> Result<()> {
        // Every held record too. The writer commits in order: when this
        // commits, so has all before.
        self.inner.pending.queue(self.inner.pending.take_all());
        self.write_durable(|_| Ok(())).await
    }

    fn release(&self, execution_id: &str) {
        // Written within RECORD_DELAY.
        self.inner.pending.queue(self.inner.pending.take_execution(execution_id));
    }

    async fn record_event(&self, event: &InboundEvent) -> Result<bool> {
        let event = event.clone();
        let instance = self.inner.instance.clone();
        let lease_until = Self::now().saturating_add(self.lease_ms());
        // Acknowledged to its sender once this returns.
        let (packer, now) = (self.inner.packer.clone(), self.business_now());
        self.write_durable(move |c| insert_event(c, &packer, &event, &instance, lease_until, now)).await
    }

    async fn settle(&self, settlement: &super::Settlement) -> Result<super::Settled> {
        let completed = !settlement.failed;
        let mut held = self.inner.pending.take_execution(&settlement.execution_id);
        if completed {
            // Resume points: a completed execution never runs again.
            held.retain(|r| !r.key.ends_with(crate::capabilities::OUTPUTS_SUFFIX));
        }
        // A completed execution's journal is kept with its trace, one
        // compressed record, rather than row by row.
        let in_trace = completed && settlement.trace.is_some();
        let now = self.business_now();
        let trace = match &settlement.trace {
            Some(trace) if in_trace => {
                let prefix = format!("{}/", settlement.execution_id);
                let mut trace = trace.clone();
                trace.effects.extend(held.iter().map(|r| {
                    let key = r.key.strip_prefix(&prefix).unwrap_or(&r.key).to_string();
                    (key, serde_json::from_str(&r.result).unwrap_or_default())
                }));
                Some(self.inner.packer.pack(&serde_json::to_string(&trace)?, now))
            }
            trace => {
                trace.as_ref().map(serde_json::to_string).transpose()?.map(|json| self.inner.packer.pack(&json, now))
            }
        };
        let settlement = settlement.clone();
        let instance = self.inner.instance.clone();
        let lease_until = Self::now().saturating_add(self.lease_ms());
        let packer = self.inner.packer.clone();
        // Nobody outside is told of it: the WAL is enough (see `Reach`).
        self.write(move |c| {
            if let Some(lead) = &settlement.lead {
                insert_steps(c, &lead.lead_id, &settlement.execution_id, &lead.facts, &lead.steps)?;
            }
            if let (Some(trace), Some(record)) = (&settlement.trace, trace) {
                insert_trace(c, &trace.execution_id, trace.at, record)?;
            }
            let raised = settlement
                .raised
                .iter()
                .map(|event| insert_event(c, &packer, event, &instance, lease_until, now))
                .collect::<Result<_>>()?;
            let finished =
                finish(c, &settlement.event, &settlement.execution_id, settlement.failed, now, &instance, in_trace)?;
            // Kept as rows where they may be needed to run it again: it
            // failed, or another instance took its event over.
            if !in_trace || !finished {
                write_records(c, &held)?;
            }
            Ok(super::Settled { finished, raised })
        })
        .await
    }

    async fn claim_due(&self, limit: usize) -> Result<Vec<InboundEvent>> {
        let instance = self.inner.instance.clone();
        let now = Self::now();
        let lease_until = now.saturating_add(self.lease_ms());
        let packer = self.inner.packer.clone();
        self.write(move |c| {
            let mut statement = c.prepare(&format!(
                "UPDATE events SET claimed_by = ?1, claim_boot = ?2, lease_until = ?3
                 WHERE rowid IN (
                    SELECT rowid FROM events
                    WHERE finished_at IS NULL
                      AND (next_attempt_at IS NULL OR next_attempt_at <= ?4)
                      AND (claimed_by IS NULL OR lease_until < ?4 OR (claimed_by = ?1 AND claim_boot != ?2))
                    ORDER BY received_at LIMIT ?5)
                 RETURNING {EVENT_COLUMNS}"
            ))?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let mut claimed: Vec<InboundEvent> = statement
                .query_map(params![instance.id, instance.boot, lease_until, now, limit], |r| {
                    event_from_row(&packer, r)
                })?
                .collect::<rusqlite::Result<_>>()?;
            claimed.sort_by_key(|e| e.received_at);
            Ok(claimed)
        })
        .await
    }

    async fn renew_leases(&self, events: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let instance = self.inner.instance.clone();
        let lease_until = Self::now().saturating_add(self.lease_ms());
        let events = events.to_vec();
        self.write(move |c| {
            let mut statement = c.prepare(
                "UPDATE events SET lease_until = ?5
                 WHERE source = ?1 AND event_id = ?2 AND claimed_by = ?3 AND claim_boot = ?4 AND finished_at IS NULL",
            )?;
            let mut lost = Vec::new();
            for (source, event_id) in events {
                if statement.execute(params![source, event_id, instance.id, instance.boot, lease_until])? == 0 {
                    lost.push((source, event_id));
                }
            }
            Ok(lost)
        })
        .await
    }

    async fn defer_event(&self, source: &str, event_id: &str, policy: WaitPolicy) -> Result<Option<Deferred>> {
        let (source, event_id) = (source.to_string(), event_id.to_string());
        let now = Self::now();
        let instance = self.inner.instance.clone();
        self.write(move |c| {
            let held: Option<(i64, Option<i64>)> = c
                .prepare_cached("SELECT attempts, waiting_since FROM events
                     WHERE source = ?1 AND event_id = ?2 AND finished_at IS NULL AND claimed_by = ?3 AND claim_boot = ?4")?.query_row(params![source, event_id, instance.id, instance.boot],
                    |r| Ok((r.get(0)?, r.get(1)?)),)
                .optional()?;
            let Some((attempts, since)) = held else {
                anyhow::bail!("this instance no longer holds event {event_id}");
            };
            let give_up_ms = i64::try_from(policy.give_up_after.as_millis()).unwrap_or(i64::MAX);
            if since.is_some_and(|since| now - since >= give_up_ms) {
                return Ok(None);
            }
            let attempts = u32::try_from(attempts + 1).unwrap_or(u32::MAX);
            let next_attempt_ms = now.saturating_add(policy.delay_ms(attempts - 1));
            c.prepare_cached("UPDATE events SET attempts = ?3, next_attempt_at = ?4, waiting_since = COALESCE(waiting_since, ?5),
                    claimed_by = NULL, claim_boot = NULL, lease_until = NULL
                 WHERE source = ?1 AND event_id = ?2")?.execute(params![source, event_id, attempts, next_attempt_ms, now],)?;
            Ok(Some(Deferred { attempts, next_attempt_ms }))
        })
        .await
    }

    async fn unfinished_events(&self) -> Result<Vec<InboundEvent>> {
        let packer = self.inner.packer.clone();
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE finished_at IS NULL ORDER BY received_at"
            ))?;
            Ok(statement.query_map([], |r| event_from_row(&packer, r))?.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn event(&self, source: &str, event_id: &str) -> Result<Option<(InboundEvent, bool)>> {
        let (source, event_id) = (source.to_string(), event_id.to_string());
        let packer = &self.inner.packer;
        self.read_now(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {EVENT_COLUMNS}, finished_at IS NOT NULL FROM events WHERE source = ?1 AND event_id = ?2"
            ))?
            .query_row(params![source, event_id], |r| Ok((event_from_row(packer, r)?, r.get::<_, bool>(7)?)))
            .optional()?)
        })
    }

    async fn failed_events(&self, lead_id: Option<&str>) -> Result<Vec<InboundEvent>> {
        let lead_id = lead_id.map(str::to_string);
        let packer = self.inner.packer.clone();
        self.read(move |c| {
            let mut statement = c.prepare(&format!(
                "SELECT {EVENT_COLUMNS} FROM events
                 WHERE failed = 1 AND (?1 IS NULL OR lead_id = ?1) ORDER BY received_at"
            ))?;
            Ok(statement
                .query_map(params![lead_id], |r| event_from_row(&packer, r))?
                .collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn claim_failed(&self, source: &str, event_id: &str) -> Result<bool> {
        let (source, event_id) = (source.to_string(), event_id.to_string());
        let instance = self.inner.instance.clone();
        let lease_until = Self::now().saturating_add(self.lease_ms());
        self.write(move |c| {
            let changed = c.prepare_cached("UPDATE events SET failed = 0, finished_at = NULL, attempts = 0, next_attempt_at = NULL, waiting_since = NULL,
                    claimed_by = ?3, claim_boot = ?4, lease_until = ?5
                 WHERE source = ?1 AND event_id = ?2 AND failed = 1")?.execute(params![source, event_id, instance.id, instance.boot, lease_until],)?;
            Ok(changed == 1)
        })
        .await
    }

    async fn has_event_since(&self, lead_id: &str, since: i64) -> Result<bool> {
        let lead_id = lead_id.to_string();
        self.read_now(move |c| {
            Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE lead_id = ?1 AND received_at >= ?2)")?
                .query_row(params![lead_id, since], |r| r.get(0))?)
        })
    }

    async fn setting(&self, name: &str) -> Result<Option<String>> {
        let key = format!("setting:{name}");
        self.read_now(move |c| {
            Ok(c.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?)
        })
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        let (key, value) = (format!("setting:{name}"), value.to_string());
        self.write(move |c| {
            c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
            Ok(())
        })
        .await
    }

    async fn finish_event(&self, source: &str, event_id: &str, execution_id: &str, failed: bool) -> Result<bool> {
        self.release(execution_id);
        let event = (source.to_string(), event_id.to_string());
        let execution_id = execution_id.to_string();
        let instance = self.inner.instance.clone();
        let now = self.business_now();
        self.write(move |c| finish(c, &event, &execution_id, failed, now, &instance, false)).await
    }

    async fn prune(&self, before: i64, limit: usize) -> Result<super::Pruned> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = self.business_now();
        self.write(move |c| {
            // Executions a retry or a rerun may still need.
            let keep = "SELECT pipeline || ':' || source || ':' || event_id FROM events
                        WHERE finished_at IS NULL OR failed = 1";
            let effects = c
                .prepare_cached(&format!(
                    "DELETE FROM effects WHERE key IN (SELECT key FROM effects WHERE recorded_at < ?1
                       AND substr(key, 1, instr(key, '/') - 1) NOT IN ({keep}) LIMIT ?2)"
                ))?
                .execute(params![before, limit])?;
            let intents = c
                .prepare_cached(&format!(
                    "DELETE FROM effect_intents WHERE key IN (SELECT key FROM effect_intents WHERE started_at < ?1
                       AND substr(key, 1, instr(key, '/') - 1) NOT IN ({keep}) LIMIT ?2)"
                ))?
                .execute(params![before, limit])?;
            let timers = c
                .prepare_cached(
                    "DELETE FROM timers WHERE rowid IN (SELECT rowid FROM timers
                       WHERE state <> 'pending' AND settled_at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            let payloads = c
                .prepare_cached(
                    "UPDATE events SET payload = '{}' WHERE rowid IN (SELECT rowid FROM events
                       WHERE finished_at < ?1 AND failed = 0 AND payload <> '{}' LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            let reads = c
                .prepare_cached(
                    "DELETE FROM traces WHERE execution_id IN (SELECT execution_id FROM traces WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            let shadows = c
                .prepare_cached(
                    "DELETE FROM shadow_decisions WHERE rowid IN (SELECT rowid FROM shadow_decisions
                       WHERE at < ?1 LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            // A held write of an expired key rewrites its whole row when it
            // commits, so deleting the row first loses nothing.
            let state = c
                .prepare_cached(
                    "DELETE FROM plugin_state WHERE (scope, key) IN (SELECT scope, key FROM plugin_state
                       WHERE expires_at <= ?1 LIMIT ?2)",
                )?
                .execute(params![now, limit])?;
            let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
            Ok(super::Pruned {
                effects: count(effects + intents),
                timers: count(timers),
                payloads: count(payloads),
                reads: count(reads + shadows),
                state: count(state),
            })
        })
        .await
    }

    async fn record_steps(&self, lead_id: &str, execution: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()> {
        let (lead_id, execution, facts, steps) =
            (lead_id.to_string(), execution.to_string(), facts.clone(), steps.to_vec());
        self.write(move |c| insert_steps(c, &lead_id, &execution, &facts, &steps)).await
    }

    async fn steps_between(&self, states: &[&str], from: i64, to: i64) -> Result<Vec<(String, Step)>> {
        let indexed = super::all_reported(states);
        let states = serde_json::to_string(states)?;
        self.read(move |c| {
            let mut statement = c.prepare_cached(if indexed { STEPS_BETWEEN_REPORTED } else { STEPS_BETWEEN })?;
            let steps = statement
                .query_map(params![states, from, to], |r| {
                    Ok((
                        r.get(0)?,
                        Step {
                            at: r.get(1)?,
                            state: LeadState::stored(
                                &r.get::<_, String>(2)?,
                                r.get::<_, Option<String>>(4)?.as_deref(),
                            ),
                            detail: r.get(3)?,
                            data: step_data(r.get(5)?),
                        },
                    ))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(steps)
        })
        .await
    }

    async fn leads(&self, state: Option<&LeadState>, limit: usize) -> Result<Vec<LeadRecord>> {
        let state = state.map(|s| s.as_str().to_string());
        self.read(move |c| {
            let ids: Vec<String> = {
                let mut statement = c.prepare(
                    "SELECT id FROM leads WHERE (?1 IS NULL OR state = ?1) ORDER BY updated_at DESC, id LIMIT ?2",
                )?;
                statement
                    .query_map(params![state, i64::try_from(limit).unwrap_or(i64::MAX)], |r| r.get(0))?
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

    async fn lead_states(&self) -> Result<Vec<(LeadState, u64)>> {
        self.read(|c| {
            let mut statement =
                c.prepare("SELECT state, MAX(phase), COUNT(*) FROM leads GROUP BY state ORDER BY state")?;
            let rows = statement
                .query_map([], |r| {
                    let state = LeadState::stored(&r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?.as_deref());
                    Ok((state, u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0)))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn lead(&self, id: &str) -> Result<Option<LeadRecord>> {
        let id = id.to_string();
        self.read_now(move |c| load_lead(c, &id))
    }

    async fn fire_due_timers(&self, now: i64, limit: usize, pipelines: Option<&[String]>) -> Result<Vec<InboundEvent>> {
        let instance = self.inner.instance.clone();
        let pipelines = pipelines.map(|p| serde_json::to_string(p).unwrap_or_default());
        let lease_until = Self::now().saturating_add(self.lease_ms());
        let packer = self.inner.packer.clone();
        self.write(move |c| {
            type Due = (String, String, String, Option<String>, rusqlite::types::Value);
            let due: Vec<Due> = {
                let mut statement = c.prepare_cached(
                    "SELECT id, pipeline, node, lead_id, payload FROM timers
                     WHERE state = 'pending' AND due_at <= ?1
                       AND (?3 IS NULL OR pipeline IN (SELECT value FROM json_each(?3)))
                     ORDER BY due_at, id LIMIT ?2",
                )?;
                statement
                    .query_map(params![now, i64::try_from(limit).unwrap_or(i64::MAX), pipelines], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut fired = Vec::with_capacity(due.len());
            for (id, pipeline, node, lead_id, payload) in due {
                let changed = c.prepare_cached("UPDATE timers SET state = 'fired', settled_at = ?2 WHERE id = ?1 AND state = 'pending'")?.execute(params![id, now],)?;
                if changed == 0 {
                    continue;
                }
                let node = (!node.is_empty()).then_some(node);
                c.prepare_cached("INSERT OR IGNORE INTO events (source, event_id, pipeline, lead_id, payload, received_at, claimed_by, claim_boot, lease_until, node)
                     VALUES ('timer', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)")?.execute(params![id, pipeline, lead_id, payload, now, instance.id, instance.boot, lease_until, node],)?;
                fired.push(InboundEvent {
                    source: "timer".into(),
                    event_id: id,
                    pipeline,
                    lead_id,
                    payload: packer.unpack((&payload).into()),
                    received_at: now,
                    node,
                });
            }
            Ok(fired)
        })
        .await
    }

    async fn next_timer_due(&self, pipelines: Option<&[String]>) -> Result<Option<i64>> {
        let pipelines = pipelines.map(|p| serde_json::to_string(p).unwrap_or_default());
        self.read_now(move |c| {
            Ok(c.prepare_cached(
                "SELECT MIN(due_at) FROM timers WHERE state = 'pending'
                   AND (?1 IS NULL OR pipeline IN (SELECT value FROM json_each(?1)))",
            )?
            .query_row([pipelines], |r| r.get(0))?)
        })
    }

    async fn lead_timers(&self, lead_id: &str) -> Result<Vec<TimerRecord>> {
        let lead_id = lead_id.to_string();
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, pipeline, node, plugin, key, label, due_at, state, settled_at, reason
                 FROM timers WHERE lead_id = ?1 ORDER BY due_at, id",
            )?;
            let timers = statement
                .query_map(params![lead_id], |r| {
                    Ok(TimerRecord {
                        id: r.get(0)?,
                        pipeline: r.get(1)?,
                        node: r.get(2)?,
                        plugin: r.get(3)?,
                        key: r.get(4)?,
                        label: r.get(5)?,
                        due_at: r.get(6)?,
                        state: r.get(7)?,
                        settled_at: r.get(8)?,
                        reason: r.get(9)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(timers)
        })
        .await
    }

    async fn failures_to_tell(&self, limit: usize) -> Result<super::FailuresToTell> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let (count, through): (i64, Option<i64>) = c
                .prepare_cached(
                    "SELECT count(*), max(finished_at) FROM events
                     WHERE failed = 1 AND told_at IS NULL AND finished_at IS NOT NULL",
                )?
                .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let first = c
                .prepare_cached(
                    "SELECT e.pipeline, e.event_id, e.lead_id,
                        (SELECT s.detail FROM lead_steps s WHERE s.lead_id = e.lead_id
                           AND s.execution_id = e.execution_id AND s.state = 'failed' ORDER BY s.seq DESC LIMIT 1)
                     FROM events e WHERE e.failed = 1 AND e.told_at IS NULL AND e.finished_at IS NOT NULL
                     ORDER BY e.finished_at LIMIT ?1",
                )?
                .query_map(params![limit], |r| {
                    Ok(super::FailedLead {
                        pipeline: r.get(0)?,
                        event_id: r.get(1)?,
                        lead_id: r.get(2)?,
                        error: r.get(3)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(super::FailuresToTell {
                count: u64::try_from(count).unwrap_or_default(),
                first,
                through: through.unwrap_or_default(),
            })
        })
        .await
    }

    async fn mark_told(&self, through: i64) -> Result<()> {
        let now = self.business_now();
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE events SET told_at = ?2
                 WHERE failed = 1 AND told_at IS NULL AND finished_at IS NOT NULL AND finished_at <= ?1",
            )?
            .execute(params![through, now])?;
            Ok(())
        })
        .await
    }

    async fn record_trace(&self, trace: &super::Trace) -> Result<()> {
        let (execution_id, at) = (trace.execution_id.clone(), trace.at);
        let record = self.inner.packer.pack(&serde_json::to_string(trace)?, self.business_now());
        self.write(move |c| insert_trace(c, &execution_id, at, record)).await
    }

    async fn trace(&self, execution_id: &str) -> Result<Option<super::Trace>> {
        let execution_id = execution_id.to_string();
        let packer = &self.inner.packer;
        self.read_now(move |c| {
            let stored = c
                .prepare_cached("SELECT record FROM traces WHERE execution_id = ?1")?
                .query_row(params![execution_id], |r| Ok(packer.unpack(r.get_ref(0)?)))
                .optional()?;
            Ok(stored.and_then(|v| serde_json::from_value(v).ok()))
        })
    }

    async fn events_between(&self, pipeline: Option<&str>, from: i64, to: i64) -> Result<Vec<InboundEvent>> {
        let pipeline = pipeline.map(str::to_string);
        let packer = self.inner.packer.clone();
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT source, event_id, pipeline, lead_id, payload, received_at, node FROM events
                 WHERE received_at >= ?1 AND received_at < ?2 AND (?3 IS NULL OR pipeline = ?3)
                 ORDER BY received_at, rowid",
            )?;
            let events = statement
                .query_map(params![from, to, pipeline], |r| event_from_row(&packer, r))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(events)
        })
        .await
    }

    async fn event_of_execution(&self, execution_id: &str) -> Result<Option<InboundEvent>> {
        let execution_id = execution_id.to_string();
        let packer = &self.inner.packer;
        self.read_now(move |c| {
            Ok(c.prepare_cached(
                "SELECT source, event_id, pipeline, lead_id, payload, received_at, node FROM events
                 WHERE execution_id = ?1 OR pipeline || ':' || source || ':' || event_id = ?1 LIMIT 1",
            )?
            .query_row(params![execution_id], |r| event_from_row(packer, r))
            .optional()?)
        })
    }

    async fn record_shadow(&self, decision: &super::ShadowDecision) -> Result<()> {
        let record = serde_json::to_string(decision)?;
        let (pipeline, execution, lead, at) =
            (decision.pipeline.clone(), decision.execution_id.clone(), decision.lead_id.clone(), decision.at);
        self.write(move |c| {
            c.prepare_cached(
                "INSERT OR REPLACE INTO shadow_decisions (pipeline, execution_id, lead_id, at, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![pipeline, execution, lead, at, record])?;
            Ok(())
        })
        .await
    }

    async fn shadow_decisions(
        &self,
        lead_id: Option<&str>,
        pipeline: Option<&str>,
        limit: usize,
    ) -> Result<Vec<super::ShadowDecision>> {
        let (lead_id, pipeline) = (lead_id.map(str::to_string), pipeline.map(str::to_string));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT record FROM shadow_decisions WHERE (?1 IS NULL OR lead_id = ?1) AND (?2 IS NULL OR pipeline = ?2)
                 ORDER BY at DESC, execution_id DESC LIMIT ?3",
            )?;
            let rows = statement.query_map(params![lead_id, pipeline, limit], |r| r.get::<_, String>(0))?;
            let mut decisions = Vec::new();
            for row in rows {
                if let Ok(decision) = serde_json::from_str(&row?) {
                    decisions.push(decision);
                }
            }
            Ok(decisions)
        })
        .await
    }

    async fn paused_reps(&self) -> Result<Vec<PausedRep>> {
        self.read_now(|c| {
            let mut statement = c.prepare_cached("SELECT rep_id, reason, since FROM paused_reps ORDER BY since")?;
            let paused = statement
                .query_map([], |r| Ok(PausedRep { rep_id: r.get(0)?, reason: r.get(1)?, since: r.get(2)? }))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(paused)
        })
    }

    async fn set_rep_paused(&self, rep_id: &str, reason: Option<&str>) -> Result<()> {
        let (rep_id, reason, now) = (rep_id.to_string(), reason.map(str::to_string), self.business_now());
        self.write(move |c| {
            match reason {
                Some(reason) => c
                    .prepare_cached(
                        "INSERT INTO paused_reps (rep_id, reason, since) VALUES (?1, ?2, ?3)
                     ON CONFLICT (rep_id) DO UPDATE SET reason = excluded.reason",
                    )?
                    .execute(params![rep_id, reason, now])?,
                None => c.prepare_cached("DELETE FROM paused_reps WHERE rep_id = ?1")?.execute(params![rep_id])?,
            };
            Ok(())
        })
        .await
    }
}

/// Applies an execution's steps to its lead (see [`Ledger::record_steps`]).
fn insert_steps(tx: &Connection, lead_id: &str, execution: &str, facts: &LeadFacts, steps: &[Step]) -> Result<()> {
    let Some(last) = steps.last() else { return Ok(()) };
    let existing: Option<LeadState> = tx
        .prepare_cached("SELECT state, phase FROM leads WHERE id = ?1")?
        .query_row(params![lead_id], |r| {
            Ok(LeadState::stored(&r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?.as_deref()))
        })
        .optional()?;
    let state = crate::lead::next_state(existing, &last.state);
    tx.prepare_cached(
        "INSERT INTO leads (id, email, name, company, state, phase, owner, salesforce_id, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (id) DO UPDATE SET
            email = COALESCE(excluded.email, leads.email),
            name = COALESCE(excluded.name, leads.name),
            company = COALESCE(excluded.company, leads.company),
            state = excluded.state,
            phase = excluded.phase,
            owner = COALESCE(excluded.owner, leads.owner),
            salesforce_id = COALESCE(excluded.salesforce_id, leads.salesforce_id),
            updated_at = excluded.updated_at",
    )?
    .execute(params![
        lead_id,
        facts.email,
        facts.name,
        facts.company,
        state.as_str(),
        state.phase().as_str(),
        facts.owner,
        facts.salesforce_id,
        last.at
    ])?;
    // A rerun replays steps the lead already shows. The lead's own index,
    // named: the state index (which the planner prefers without statistics)
    // would scan every lead's steps in that state.
    let known: std::collections::HashSet<(String, String)> = tx
        .prepare_cached(
            "SELECT state, detail FROM lead_steps INDEXED BY lead_steps_lead WHERE lead_id = ?1 AND execution_id IS ?2",
        )?
        .query_map(params![lead_id, execution], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for step in steps {
        if known.contains(&(step.state.as_str().to_string(), step.detail.clone())) {
            continue;
        }
        tx.prepare_cached(
            "INSERT INTO lead_steps (lead_id, at, state, phase, detail, execution_id, data)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            lead_id,
            step.at,
            step.state.as_str(),
            step.state.phase().as_str(),
            step.detail,
            execution,
            step.data.as_ref().map(ToString::to_string)
        ])?;
    }
    Ok(())
}

/// Stores an event claimed by `instance` (see [`Ledger::record_event`]),
/// its payload packed at `now` (host clock).
fn insert_event(
    c: &Connection,
    packer: &Packer,
    event: &InboundEvent,
    instance: &Instance,
    lease_until: i64,
    now: i64,
) -> Result<bool> {
    let inserted = c
        .prepare_cached(
            "INSERT OR IGNORE INTO events (source, event_id, pipeline, lead_id, payload, received_at, claimed_by, claim_boot, lease_until, node)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?
        .execute(params![
            event.source,
            event.event_id,
            event.pipeline,
            event.lead_id,
            packer.pack(&event.payload.to_string(), now),
            event.received_at,
            instance.id,
            instance.boot,
            lease_until,
            event.node
        ])?;
    Ok(inserted == 1)
}

/// Keeps an execution's trace, `record` packed (see [`Ledger::record_trace`]).
fn insert_trace(c: &Connection, execution_id: &str, at: i64, record: rusqlite::types::Value) -> Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO traces (execution_id, at, record) VALUES (?1, ?2, ?3)")?
        .execute(params![execution_id, at, record])?;
    Ok(())
}

/// Marks an event (source, id) finished at `now` if `instance` still holds
/// it (see [`Ledger::finish_event`]). A completed execution never runs
/// again: its resume points go, and with `kept_elsewhere` (its trace keeps
/// what it did) every row of its journal.
fn finish(
    c: &Connection,
    (source, event_id): &(String, String),
    execution_id: &str,
    failed: bool,
    now: i64,
    instance: &Instance,
    kept_elsewhere: bool,
) -> Result<bool> {
    let changed = c
        .prepare_cached(
            "UPDATE events SET execution_id = ?3, finished_at = ?4, failed = ?5, next_attempt_at = NULL,
                claimed_by = NULL, claim_boot = NULL, lease_until = NULL, told_at = NULL
             WHERE source = ?1 AND event_id = ?2 AND finished_at IS NULL AND claimed_by = ?6 AND claim_boot = ?7",
        )?
        .execute(params![source, event_id, execution_id, now, failed, instance.id, instance.boot])?;
    if changed == 1 && !failed {
        let (low, high) = super::journal_of(execution_id);
        if kept_elsewhere {
            c.prepare_cached("DELETE FROM effects WHERE key >= ?1 AND key < ?2")?.execute(params![low, high])?;
            c.prepare_cached("DELETE FROM effect_intents WHERE key >= ?1 AND key < ?2")?.execute(params![low, high])?;
        } else {
            // The suffix is in the text: a bound LIKE pattern makes SQLite
            // prepare the statement again on every run.
            c.prepare_cached(&format!(
                "DELETE FROM effects WHERE key >= ?1 AND key < ?2 AND key LIKE '%{}'",
                crate::capabilities::OUTPUTS_SUFFIX
            ))?
            .execute(params![low, high])?;
        }
    }
    Ok(changed == 1)
}

/// Timers in the ledger: a timer and the journal record of the call that
/// set it commit together.
#[async_trait::async_trait]
impl Scheduler for SqliteStore {
    async fn schedule(&self, timer: Timer, effect: Option<&str>) -> Result<String, CapabilityError> {
        let (effect, now, label) = (effect.map(str::to_string), self.business_now(), timer.label());
        let payload = self.inner.packer.pack(&timer.payload, now);
        self.write(move |c| {
            if let Some(effect) = &effect
                && let Some(done) = c
                    .prepare_cached("SELECT result FROM effects WHERE key = ?1")?.query_row(params![effect], |r| r.get::<_, String>(0))
                    .optional()?
                && let Ok(id) = serde_json::from_str::<String>(&done)
            {
                return Ok(id);
            }
            if let Some(key) = &timer.key {
                c.prepare_cached("UPDATE timers SET state = 'replaced', settled_at = ?3, reason = ?4
                     WHERE plugin = ?1 AND key = ?2 AND state = 'pending'")?.execute(params![timer.plugin, key, now, format!("replaced by timer {}", timer.id)],)?;
            }
            c.prepare_cached("INSERT OR IGNORE INTO timers (id, pipeline, node, plugin, key, label, lead_id, execution_id, due_at, payload)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")?.execute(params![
                    timer.id,
                    timer.pipeline,
                    timer.node,
                    timer.plugin,
                    timer.key,
                    label,
                    timer.lead_id,
                    timer.execution_id,
                    timer.at,
                    payload
                ],)?;
            if let Some(effect) = &effect {
                record_effect(c, effect, &serde_json::to_string(&timer.id)?, now)?;
            }
            Ok(timer.id)
        })
        .await
        .map_err(unavailable)
    }

    async fn cancel(&self, plugin: &str, timer_id: &str, reason: &str) -> Result<(), CapabilityError> {
        let (plugin, id, reason, now) =
            (plugin.to_string(), timer_id.to_string(), reason.to_string(), self.business_now());
        let known = self
            .write(move |c| {
                c.prepare_cached(
                    "UPDATE timers SET state = 'cancelled', settled_at = ?3, reason = ?4
                     WHERE id = ?1 AND plugin = ?2 AND state = 'pending'",
                )?
                .execute(params![id, plugin, now, reason])?;
                Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM timers WHERE id = ?1 AND plugin = ?2)")?
                    .query_row(params![id, plugin], |r| r.get::<_, bool>(0))?)
            })
            .await
            .map_err(unavailable)?;
        if known { Ok(()) } else { Err(CapabilityError::NotFound(format!("no timer {timer_id} of this plugin"))) }
    }

    async fn cancel_key(&self, plugin: &str, key: &str, reason: &str) -> Result<bool, CapabilityError> {
        let (plugin, key, reason, now) = (plugin.to_string(), key.to_string(), reason.to_string(), self.business_now());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE timers SET state = 'cancelled', settled_at = ?3, reason = ?4
                 WHERE plugin = ?1 AND key = ?2 AND state = 'pending'",
            )?
            .execute(params![plugin, key, now, reason])?
                > 0)
        })
        .await
        .map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl crate::capabilities::EffectJournal for SqliteStore {
    async fn entry(&self, key: &str) -> Result<Option<Entry>> {
        if let Some(result) = self.inner.pending.get(key) {
            return Ok(Some(Entry::Done(result)));
        }
        if let Some(result) = self.inner.held_state.recorded(key) {
            return Ok(Some(Entry::Done(serde_json::from_str(&result).unwrap_or_default())));
        }
        let key = key.to_string();
        self.read_now(move |c| {
            let done: Option<String> = c
                .prepare_cached("SELECT result FROM effects WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?;
            if let Some(text) = done {
                return Ok(Some(Entry::Done(serde_json::from_str(&text).unwrap_or_default())));
            }
            let started: Option<i64> = c
                .prepare_cached("SELECT started_at FROM effect_intents WHERE key = ?1")?
                .query_row(params![key], |r| r.get(0))
                .optional()?;
            Ok(started.map(|at_ms| Entry::Started { at_ms }))
        })
    }

    async fn start(&self, key: &str, at_ms: i64) -> Result<()> {
        let execution = key.split('/').next().unwrap_or_default();
        let (key, records) = (key.to_string(), self.inner.pending.unwritten_resume_points(execution));
        // On the disk before the effect it announces, with what led to it.
        let written = self
            .write_durable(move |c| {
                write_records(c, &records)?;
                c.prepare_cached("INSERT OR IGNORE INTO effect_intents (key, started_at) VALUES (?1, ?2)")?
                    .execute(params![key, at_ms])?;
                Ok(records)
            })
            .await?;
        self.inner.pending.written(&written);
        Ok(())
    }

    async fn persist(&self, execution_id: &str) -> Result<()> {
        let records = self.inner.pending.unwritten_resume_points(execution_id);
        if records.is_empty() {
            return Ok(());
        }
        // In the WAL, which a killed process does not lose; the disk has
        // them at the next fsync (see `Reach` and ARCHITECTURE.md).
        let written = self
            .write(move |c| {
                write_records(c, &records)?;
                Ok(records)
            })
            .await?;
        self.inner.pending.written(&written);
        Ok(())
    }

    async fn record(&self, key: &str, result: &str) -> Result<()> {
        // Held until the execution ends (see `settle` and `release`); not
        // waited for (see the trait), but readable here at once.
        self.inner.pending.hold(key, result, self.business_now());
        Ok(())
    }
}

/// Applies held plugin state writes.
fn write_state(c: &Connection, writes: &[StateWrite]) -> Result<()> {
    // Only the last write of a key in the batch reaches its row (a claim
    // counted and then given its expiry is one statement, not two); every
    // increment's journal record is kept.
    let mut last = std::collections::HashMap::new();
    for (i, write) in writes.iter().enumerate() {
        last.insert((write.scope.as_str(), write.key.as_str()), i);
    }
    for (i, write) in writes.iter().enumerate() {
        if let (Some((effect, at)), Some(row)) = (&write.record, &write.row) {
            record_effect(c, effect, &row.value, *at)?;
        }
        if last.get(&(write.scope.as_str(), write.key.as_str())) != Some(&i) {
            continue;
        }
        match &write.row {
            Some(row) => c
                .prepare_cached(
                    "INSERT INTO plugin_state (scope, key, value, expires_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
                )?
                .execute(params![write.scope, write.key, row.value, row.expires_at])?,
            None => c
                .prepare_cached("DELETE FROM plugin_state WHERE scope = ?1 AND key = ?2")?
                .execute(params![write.scope, write.key])?,
        };
    }
    Ok(())
}

/// Writes held records as rows.
fn write_records(c: &Connection, records: &[super::QueuedRecord]) -> Result<()> {
    for record in records {
        record_effect(c, &record.key, &record.result, record.at)?;
    }
    Ok(())
}

/// Records an effect's result at `at` (host clock) and drops its intent.
fn record_effect(c: &Connection, key: &str, result: &str, at: i64) -> Result<()> {
    c.prepare_cached("INSERT OR IGNORE INTO effects (key, result, recorded_at) VALUES (?1, ?2, ?3)")?
        .execute(params![key, result, at])?;
    c.prepare_cached("DELETE FROM effect_intents WHERE key = ?1")?.execute(params![key])?;
    Ok(())
}

/// Plugin state lives in the ledger: one commit path, group-committed, and
/// an increment commits together with its effect-journal record. An expired
/// key's row stays until the pruner deletes it; every read and write here
/// treats it as absent.
#[async_trait::async_trait]
impl StateStore for SqliteStore {
    async fn get(&self, scope: &str, key: &str, now: i64) -> Result<Option<String>, CapabilityError> {
        if let Some(HeldValue(held)) = self.inner.held_state.get(scope, key) {
            return Ok(held.filter(|row| row.live(now)).map(|row| row.value));
        }
        let (scope, key) = (scope.to_string(), key.to_string());
        self.read_now(move |c| {
            Ok(c.prepare_cached(
                "SELECT value FROM plugin_state WHERE scope = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
            )?
            .query_row(params![scope, key, now], |r| r.get(0))
            .optional()?)
        })
        .map_err(unavailable)
    }

    async fn set(
        &self,
        scope: &str,
        key: &str,
        value: &str,
        now: i64,
        quota: StateQuota,
    ) -> Result<(), CapabilityError> {
        let value = value.to_string();
        self.hold_state(
            scope,
            key,
            None,
            |live| Ok(Write::Put(StateRow { value, expires_at: live.and_then(|row| row.expires_at) })),
            now,
            quota,
        )
        .map(|_| ())
    }

    async fn delete(&self, scope: &str, key: &str) -> Result<(), CapabilityError> {
        // Deleting never grows the state: no quota refuses it.
        self.hold_state(scope, key, None, |_| Ok(Write::Delete), i64::MIN, StateQuota::default()).map(|_| ())
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
        // Done already (by a run of this execution elsewhere): the recorded
        // result, not a second increment.
        if let Some(effect) = effect {
            let done = match self.inner.held_state.recorded(effect) {
                Some(done) => Some(done),
                None => self
                    .read_now(|c| {
                        Ok(c.prepare_cached("SELECT result FROM effects WHERE key = ?1")?
                            .query_row(params![effect], |r| r.get::<_, String>(0))
                            .optional()?)
                    })
                    .map_err(unavailable)?,
            };
            if let Some(n) = done.and_then(|d| d.parse::<i64>().ok()) {
                return Ok(n);
            }
        }
        // Held like a `set`, with its record: they commit together.
        let at = self.business_now();
        let next = self.hold_state(
            scope,
            key,
            effect.map(|e| (e, at)),
            |live| {
                let value = crate::capabilities::incremented(key, live.map(|row| row.value.as_str()), delta)?;
                Ok(Write::Put(StateRow { value: value.to_string(), expires_at: live.and_then(|row| row.expires_at) }))
            },
            now,
            quota,
        )?;
        Ok(next.and_then(|row| row.value.parse().ok()).unwrap_or_default())
    }

    async fn expire(&self, scope: &str, key: &str, at: i64, now: i64) -> Result<bool, CapabilityError> {
        let mut found = false;
        self.hold_state(
            scope,
            key,
            None,
            |live| {
                let Some(row) = live else { return Ok(Write::Keep(None)) };
                found = true;
                Ok(if at <= now { Write::Delete } else { Write::Put(StateRow { expires_at: Some(at), ..row.clone() }) })
            },
            now,
            StateQuota::default(),
        )?;
        Ok(found)
    }
}

impl SqliteStore {
    /// Holds a plugin state write for the writer's next transaction (see
    /// `held_state.rs`): `write` decides it from the key's row if it exists
    /// at `now` (not expired), the plugin's quota permitting; `record` is an
    /// increment's journal record, committed with it. Readable here at
    /// once. Returns the key's row after the write.
    fn hold_state(
        &self,
        scope: &str,
        key: &str,
        record: Option<(&str, i64)>,
        write: impl FnOnce(Option<&StateRow>) -> Result<Write, CapabilityError>,
        now: i64,
        quota: StateQuota,
    ) -> Result<Option<StateRow>, CapabilityError> {
        let usage = |c: &Connection| -> Result<(i64, i64)> {
            Ok(c.prepare_cached("SELECT keys, bytes FROM plugin_state_usage WHERE scope = ?1")?
                .query_row(params![scope], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .unwrap_or((0, 0)))
        };
        let written = self.inner.held_state.hold(scope, key, record, |(held_keys, held_bytes), held| {
            // A key not held here is read from the database, with the
            // scope's usage in the same visit; a held one needs the usage
            // only for a write that grows it (below).
            let (committed, stored) = match held {
                Some(_) => (None, None),
                None => self
                    .read_now(|c| {
                        let stored = c
                            .prepare_cached("SELECT value, expires_at FROM plugin_state WHERE scope = ?1 AND key = ?2")?
                            .query_row(params![scope, key], |r| {
                                Ok(StateRow { value: r.get(0)?, expires_at: r.get(1)? })
                            })
                            .optional()?;
                        Ok((Some(usage(c)?), stored))
                    })
                    .map_err(unavailable)?,
            };
            // The row as it stands (an expired one still counts in the
            // usage until pruned), and as the plugin sees it.
            let old = match held {
                Some(held) => held,
                None => stored.as_ref(),
            };
            let decided = write(old.filter(|row| row.live(now)))?;
            let new = match &decided {
                Write::Put(row) => Some(row.value.as_str()),
                Write::Delete => None,
                Write::Keep(_) => return Ok((decided, (0, 0))),
            };
            let old = old.map(|row| row.value.as_str());
            let grows = new.is_some_and(|new| old.is_none_or(|old| new.len() > old.len()));
            if let Some(new) = new.filter(|_| grows) {
                let (keys, bytes) = match committed {
                    Some(usage) => usage,
                    None => self.read_now(usage).map_err(unavailable)?,
                };
                let size = |n: i64| u64::try_from(n).unwrap_or(0);
                let old_entry = old.map(|o| (key.len() + o.len()) as u64);
                let entry = (key.len() + new.len()) as u64;
                quota.check(scope, size(keys + held_keys), size(bytes + held_bytes), old_entry, entry)?;
            }
            let change = usage_change(key, old, new);
            Ok::<_, CapabilityError>((decided, change))
        })?;
        // Committed within RECORD_DELAY, or sooner with another write.
        Ok(written)
    }
}

/// A step's stored `data` column, parsed.
fn step_data(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

fn unavailable(e: anyhow::Error) -> CapabilityError {
    CapabilityError::Unavailable(format!("the ledger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(store: &SqliteStore, key: &str) -> Option<String> {
        store
            .read_now(|c| Ok(c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?))
            .unwrap()
    }

    fn put(key: &'static str, fail: bool) -> impl FnOnce(&Connection) -> Result<()> + Send + 'static {
        move |c| {
            c.execute("INSERT INTO meta (key, value) VALUES (?1, 'written')", [key])?;
            if fail { Err(anyhow::anyhow!("refused after writing")) } else { Ok(()) }
        }
    }

    #[tokio::test]
    async fn reports_find_steps_through_the_index_of_reported_steps_and_other_steps_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
        let step = |at, state: LeadState| Step { at, state, detail: String::new(), data: None };
        let steps = [
            step(1_000, LeadState::RECEIVED),
            step(1_001, LeadState::NOTIFIED),
            step(1_002, LeadState::new("reminded", crate::lead::Phase::Settled).unwrap()),
            step(1_003, LeadState::REJECTED),
        ];
        store.record_steps("lead-1", "execution-1", &LeadFacts::default(), &steps).await.unwrap();
        let found = |states: &'static [&'static str]| {
            let store = store.clone();
            async move {
                store
                    .steps_between(states, 0, 2_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(lead, s)| (lead, s.at))
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(found(&["rejected"]).await, [("lead-1".to_string(), 1_003)]);
        assert_eq!(found(&["reminded", "escalated"]).await, [("lead-1".to_string(), 1_002)]);
        // Not a reported state: found all the same, by a scan.
        assert_eq!(found(&["received"]).await, [("lead-1".to_string(), 1_000)]);
        assert_eq!(found(&["received", "notified"]).await.len(), 2);
        // Every set of states `reports.rs` asks for is read through the index.
        for states in [
            &["rejected"][..],
            &["nurture", "recycled", "converted"],
            &["notified"],
            &["recycled", "converted", "nurture"],
            &["reminded", "escalated", "reassigned", "vp-review"],
        ] {
            assert!(super::super::all_reported(states), "{states:?} is not all reported states");
            let plan: Vec<String> = store
                .read_now(|c| {
                    let mut plan = c.prepare(&format!("EXPLAIN QUERY PLAN {STEPS_BETWEEN_REPORTED}"))?;
                    let rows = plan.query_map(params![serde_json::to_string(states)?, 0, 2_000], |r| r.get(3))?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                })
                .unwrap();
            assert!(plan.iter().any(|p| p.contains("lead_steps_reported")), "{states:?}: {plan:?}");
        }
    }

    #[tokio::test]
    async fn a_failed_write_leaves_nothing_alone_or_in_a_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ledger.db")).unwrap();
        // Alone in its transaction (no savepoint): rolled back, and says why.
        let error = store.write(put("alone-failed", true)).await.unwrap_err();
        assert!(error.to_string().contains("refused after writing"), "{error:#}");
        assert_eq!(meta(&store, "alone-failed"), None);
        store.write(put("alone-kept", false)).await.unwrap();
        assert_eq!(meta(&store, "alone-kept").as_deref(), Some("written"));
        // Queued while the writer is busy, so they share a transaction:
        // the failed one's write is undone, the others' kept.
        let busy = store.write(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ok(())
        });
        let writes =
            [("first", false), ("middle", true), ("last", false)].map(|(key, fail)| store.write(put(key, fail)));
        busy.await.unwrap();
        let results = futures_util::future::join_all(writes).await;
        assert!(results[0].is_ok() && results[1].is_err() && results[2].is_ok(), "{results:?}");
        assert_eq!(meta(&store, "first").as_deref(), Some("written"));
        assert_eq!(meta(&store, "middle"), None);
        assert_eq!(meta(&store, "last").as_deref(), Some("written"));
    }
}
