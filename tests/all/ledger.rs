//! The ledger's contract, run on both backends: embedded SQLite and the
//! PostgreSQL that several instances share (at `HANDOFF_TEST_DATABASE_URL`,
//! default the machine's `test` database; each test in a schema of its own).

use handoff::capabilities::{CapabilityError, Entry, StateQuota, SystemClock, Timer};
use handoff::lead::{LeadFacts, LeadState, Step};
use handoff::ledger::{Database, InboundEvent, Instance, Roles, WaitPolicy};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Where one test's ledger lives.
struct Backend {
    database: Database,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Backend { database: Database::Sqlite(dir.path().join("handoff.db")), _dir: Some(dir) }
    }

    fn postgres() -> Self {
        let url = std::env::var("HANDOFF_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("handoff_test_{}", uuid::Uuid::now_v7().simple());
        Backend { database: Database::Postgres { url, schema }, _dir: None }
    }

    /// The ledger as instance `id` (a new boot each call).
    async fn open(&self, id: &str, lease_ms: u64) -> Roles {
        let instance = Instance { lease: Duration::from_millis(lease_ms), ..Instance::named(id) };
        Roles::open(&self.database, instance, Arc::new(SystemClock)).await.unwrap()
    }

    async fn drop_schema(&self) {
        if let Database::Postgres { url, schema } = &self.database {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await.unwrap();
        }
    }
}

/// One test per backend for each scenario.
macro_rules! on_both {
    ($scenario:ident) => {
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                let backend = super::Backend::sqlite();
                super::$scenario(&backend).await;
            }

            #[tokio::test]
            async fn postgres() {
                let backend = super::Backend::postgres();
                super::$scenario(&backend).await;
                backend.drop_schema().await;
            }
        }
    };
}

fn event(id: &str) -> InboundEvent {
    InboundEvent {
        source: "hubspot".into(),
        event_id: id.into(),
        pipeline: "p".into(),
        lead_id: Some("1001".into()),
        payload: json!({"objectId": 1001}),
        received_at: id.parse().unwrap_or(1),
        node: None,
    }
}

fn ids(events: &[InboundEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_id.as_str()).collect()
}

on_both!(events_are_deduplicated_and_survive_a_reopen);
async fn events_are_deduplicated_and_survive_a_reopen(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    assert!(ledger.ledger.record_event(&event("1")).await.unwrap());
    assert!(!ledger.ledger.record_event(&event("1")).await.unwrap(), "a redelivery");
    assert!(ledger.ledger.record_event(&event("2")).await.unwrap());
    assert!(ledger.ledger.finish_event("hubspot", "1", "exec-1", false).await.unwrap());
    drop(ledger);
    let reopened = backend.open("a", 30_000).await;
    let unfinished = reopened.ledger.unfinished_events().await.unwrap();
    assert_eq!(ids(&unfinished), ["2"]);
    assert_eq!(unfinished[0].payload, json!({"objectId": 1001}));
    assert!(reopened.ledger.event("hubspot", "1").await.unwrap().unwrap().1, "1 is finished");
}

on_both!(a_claim_is_taken_over_when_its_lease_expires_and_at_once_by_a_restart);
async fn a_claim_is_taken_over_when_its_lease_expires_and_at_once_by_a_restart(backend: &Backend) {
    let a = backend.open("a", 400).await;
    let b = backend.open("b", 400).await;
    assert!(a.ledger.record_event(&event("1")).await.unwrap(), "stored, and claimed by a");
    assert!(b.ledger.claim_due(10).await.unwrap().is_empty(), "a's lease holds");
    assert!(a.ledger.claim_due(10).await.unwrap().is_empty(), "a runs it already");

    // a restarts: same id, new boot; it takes its own work back at once.
    let a2 = backend.open("a", 400).await;
    assert_eq!(ids(&a2.ledger.claim_due(10).await.unwrap()), ["1"]);
    assert!(b.ledger.claim_due(10).await.unwrap().is_empty());

    // a2 dies without renewing: b takes over after the lease.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(ids(&b.ledger.claim_due(10).await.unwrap()), ["1"]);
    assert!(!a2.ledger.finish_event("hubspot", "1", "x", false).await.unwrap(), "a2 lost it");
    assert!(b.ledger.finish_event("hubspot", "1", "x", false).await.unwrap());
    assert!(b.ledger.unfinished_events().await.unwrap().is_empty());
}

on_both!(renewing_a_lease_keeps_the_work);
async fn renewing_a_lease_keeps_the_work(backend: &Backend) {
    let a = backend.open("a", 1000).await;
    let b = backend.open("b", 1000).await;
    a.ledger.record_event(&event("1")).await.unwrap();
    a.ledger.record_event(&event("2")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    // a still runs event 1, and no longer runs event 2.
    assert!(a.ledger.renew_leases(&[("hubspot".into(), "1".into())]).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(ids(&b.ledger.claim_due(10).await.unwrap()), ["2"], "1 is renewed; 2 lapsed");
    // Had a still been running 2, renewing tells it that 2 is b's now.
    let both = [("hubspot".to_string(), "1".to_string()), ("hubspot".to_string(), "2".to_string())];
    assert_eq!(a.ledger.renew_leases(&both).await.unwrap(), [("hubspot".to_string(), "2".to_string())]);
}

on_both!(concurrent_claims_never_hand_out_an_event_twice);
async fn concurrent_claims_never_hand_out_an_event_twice(backend: &Backend) {
    let a = backend.open("a", 300).await;
    for i in 0..200 {
        a.ledger.record_event(&event(&i.to_string())).await.unwrap();
    }
    // a died; once its leases lapse, four instances race for its work.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut racers = Vec::new();
    for n in 0..4 {
        racers.push(backend.open(&format!("r{n}"), 60_000).await);
    }
    let claims: Vec<_> = racers
        .iter()
        .map(|r| {
            let store = r.ledger.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(7).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|e| e.event_id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claim in claims {
        all.extend(claim.await.unwrap());
    }
    assert_eq!(all.len(), 200, "each event handed out once");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 200);
}

on_both!(a_waiting_event_comes_due_backs_off_and_gives_up);
async fn a_waiting_event_comes_due_backs_off_and_gives_up(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let policy = WaitPolicy {
        first: Duration::from_millis(200),
        max: Duration::from_millis(300),
        give_up_after: Duration::from_millis(700),
    };
    ledger.ledger.record_event(&event("1")).await.unwrap();
    let first = ledger.ledger.defer_event("hubspot", "1", policy).await.unwrap().unwrap();
    assert_eq!(first.attempts, 1);
    assert!(ledger.ledger.claim_due(10).await.unwrap().is_empty(), "not due yet");
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(ids(&ledger.ledger.claim_due(10).await.unwrap()), ["1"], "due after the first wait");
    let second = ledger.ledger.defer_event("hubspot", "1", policy).await.unwrap().unwrap();
    assert_eq!(second.attempts, 2);
    assert!(second.next_attempt_ms - first.next_attempt_ms > 250, "the second wait is longer");
    assert!(ledger.ledger.defer_event("hubspot", "1", policy).await.is_err(), "released: no longer this instance's");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(ids(&ledger.ledger.claim_due(10).await.unwrap()), ["1"]);
    assert_eq!(ledger.ledger.defer_event("hubspot", "1", policy).await.unwrap(), None, "waited too long");
    assert_eq!(policy.delay_ms(0), 200);
    assert_eq!(policy.delay_ms(5), 300, "capped");
}

on_both!(concurrent_writes_are_all_committed);
async fn concurrent_writes_are_all_committed(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let writes: Vec<_> = (0..300)
        .map(|i| {
            let store = ledger.ledger.clone();
            tokio::spawn(async move { store.record_event(&event(&i.to_string())).await.unwrap() })
        })
        .collect();
    for write in writes {
        assert!(write.await.unwrap());
    }
    drop(ledger);
    assert_eq!(backend.open("a", 30_000).await.ledger.unfinished_events().await.unwrap().len(), 300);
}

on_both!(a_plugin_at_its_state_quota_is_refused_until_it_deletes);
async fn a_plugin_at_its_state_quota_is_refused_until_it_deletes(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let state = &ledger.state;
    let quota = StateQuota { max_keys: 3, max_bytes: 64 };
    for key in ["a", "b", "c"] {
        state.set("hoard", key, "1", 0, quota).await.unwrap();
    }
    let refused = state.set("hoard", "d", "1", 0, quota).await;
    assert!(matches!(&refused, Err(CapabilityError::Invalid(m)) if m.contains("holds 3 keys")), "{refused:?}");
    assert!(matches!(state.increment("hoard", "n", 1, 0, None, quota).await, Err(CapabilityError::Invalid(_))));
    state.set("hoard", "a", "2", 0, quota).await.expect("overwriting at the key limit");
    state.set("other", "d", "1", 0, quota).await.expect("another plugin has its own quota");
    let big = format!("\"{}\"", "x".repeat(80));
    let refused = state.set("hoard", "a", &big, 0, quota).await;
    assert!(matches!(&refused, Err(CapabilityError::Invalid(m)) if m.contains("the limit is 64")), "{refused:?}");
    state.delete("hoard", "c").await.unwrap();
    state.set("hoard", "d", "1", 0, quota).await.expect("room again after a delete");
    assert_eq!(state.get("hoard", "a", 0).await.unwrap().as_deref(), Some("2"));
}

on_both!(an_increment_commits_with_its_journal_record);
async fn an_increment_commits_with_its_journal_record(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let (state, journal) = (&ledger.state, &ledger.journal);
    assert_eq!(state.increment("route", "n", 2, 0, Some("e/1"), StateQuota::default()).await.unwrap(), 2);
    assert_eq!(journal.entry("e/1").await.unwrap(), Some(Entry::Done(json!(2))));
    assert_eq!(
        state.increment("route", "n", 2, 0, Some("e/1"), StateQuota::default()).await.unwrap(),
        2,
        "a repeat returns the record"
    );
    assert_eq!(state.increment("route", "n", 1, 0, None, StateQuota::default()).await.unwrap(), 3);
    state.set("route", "s", "\"x\"", 0, StateQuota::default()).await.unwrap();
    assert!(matches!(
        state.increment("route", "s", 1, 0, Some("e/2"), StateQuota::default()).await,
        Err(CapabilityError::Invalid(_))
    ));
    assert_eq!(journal.entry("e/2").await.unwrap(), None, "a refused increment records nothing");
    assert_eq!(state.get("other", "n", 0).await.unwrap(), None, "scopes are separate");
    state.delete("route", "n").await.unwrap();
    assert_eq!(state.get("route", "n", 0).await.unwrap(), None);
    assert_eq!(journal.entry("e/3").await.unwrap(), None);
    journal.start("e/3", 5).await.unwrap();
    assert_eq!(journal.entry("e/3").await.unwrap(), Some(Entry::Started { at_ms: 5 }));
    journal.record("e/3", &json!("done").to_string()).await.unwrap();
    assert_eq!(journal.entry("e/3").await.unwrap(), Some(Entry::Done(json!("done"))));

    // Concurrent increments lose nothing.
    let adds: Vec<_> = (0..50)
        .map(|i| {
            let state = ledger.state.clone();
            tokio::spawn(async move {
                state.increment("route", "c", 1, 0, Some(&format!("c/{i}")), StateQuota::default()).await.unwrap()
            })
        })
        .collect();
    for add in adds {
        add.await.unwrap();
    }
    assert_eq!(state.get("route", "c", 0).await.unwrap().as_deref(), Some("50"));
}

on_both!(a_later_duplicate_or_wait_does_not_undo_a_notified_lead);
async fn a_later_duplicate_or_wait_does_not_undo_a_notified_lead(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let facts = LeadFacts { email: Some("a@b.co".into()), ..Default::default() };
    let steps = [
        Step { at: 1, state: LeadState::VALIDATED, detail: String::new(), data: None },
        Step { at: 2, state: LeadState::NOTIFIED, detail: "told x".into(), data: None },
    ];
    ledger.ledger.record_steps("1001", "exec-1", &facts, &steps).await.unwrap();
    ledger.ledger.record_steps("1001", "exec-1", &facts, &steps).await.unwrap();
    for later in [LeadState::DUPLICATE, LeadState::WAITING] {
        let execution = format!("exec-{later}");
        let step = Step { at: 3, detail: format!("later {later}"), state: later, data: None };
        ledger.ledger.record_steps("1001", &execution, &LeadFacts::default(), &[step]).await.unwrap();
    }
    let lead = ledger.ledger.lead("1001").await.unwrap().unwrap();
    assert_eq!(lead.state, LeadState::NOTIFIED);
    assert_eq!(lead.email.as_deref(), Some("a@b.co"));
    assert_eq!(lead.timeline.len(), 4, "a replayed step is not written twice");
    assert_eq!(ledger.ledger.leads(Some(&LeadState::NOTIFIED), 10).await.unwrap().len(), 1);
    assert!(ledger.ledger.leads(Some(&LeadState::FAILED), 10).await.unwrap().is_empty());
}

fn timer(id: &str, plugin: &str, key: Option<&str>, at: i64) -> Timer {
    Timer {
        id: id.into(),
        pipeline: "sla".into(),
        node: "ladder".into(),
        plugin: plugin.into(),
        at,
        payload: json!({"label": format!("step {id}"), "n": id}).to_string(),
        key: key.map(str::to_string),
        lead_id: Some("1001".into()),
        execution_id: "exec".into(),
    }
}

on_both!(large_payloads_come_back_whole_and_sqlite_keeps_them_small);
async fn large_payloads_come_back_whole_and_sqlite_keeps_them_small(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    // A lead event carries the whole item: kilobytes of JSON, much of it repeated.
    let item: Vec<serde_json::Value> = (0..200)
        .map(|i| json!({"property": format!("hs_analytics_{i}"), "value": null, "note": "a \"quoted\" line\nand é ✓"}))
        .collect();
    let large = InboundEvent { payload: json!({"name": "lead.notified", "item": item}), ..event("7") };
    assert!(ledger.ledger.record_event(&large).await.unwrap());
    let mut timer = timer("t9", "escalate", None, 1_000);
    timer.payload = json!({"label": "step t9", "n": "t9", "item": item}).to_string();
    ledger.timers.schedule(timer, None).await.unwrap();
    let fired = ledger.ledger.fire_due_timers(2_000, 10, None).await.unwrap();
    assert_eq!(fired[0].payload["item"], json!(item), "a fired timer's payload, whole");
    drop(ledger);
    let reopened = backend.open("a", 30_000).await;
    let unfinished = reopened.ledger.unfinished_events().await.unwrap();
    let stored = unfinished.iter().find(|e| e.event_id == "7").unwrap();
    assert_eq!(stored.payload, large.payload, "the event's payload, whole");
    let from_timer = unfinished.iter().find(|e| e.event_id == "t9").unwrap();
    assert_eq!(from_timer.payload["item"], json!(item));
    if let Database::Sqlite(path) = &backend.database {
        let db = rusqlite::Connection::open(path).unwrap();
        let stored: i64 =
            db.query_row("SELECT length(payload) FROM events WHERE event_id = '7'", [], |r| r.get(0)).unwrap();
        let written = i64::try_from(large.payload.to_string().len()).unwrap();
        assert!(stored * 4 < written, "kept deflated: {stored} bytes of {written}");
    }
}

on_both!(a_due_timer_fires_once_whichever_instance_claims_it);
async fn a_due_timer_fires_once_whichever_instance_claims_it(backend: &Backend) {
    let (a, b) = (backend.open("a", 30_000).await, backend.open("b", 30_000).await);
    a.timers.schedule(timer("t2", "escalate", None, 2_000), None).await.unwrap();
    a.timers.schedule(timer("t1", "escalate", None, 1_000), None).await.unwrap();
    a.timers.schedule(timer("t3", "escalate", None, 9_000), None).await.unwrap();
    assert_eq!(a.ledger.next_timer_due(None).await.unwrap(), Some(1_000));
    assert!(b.ledger.fire_due_timers(999, 10, None).await.unwrap().is_empty(), "nothing due yet");
    // Both instances reach for the due timers at once: each fires once.
    let (x, y) = tokio::join!(a.ledger.fire_due_timers(5_000, 10, None), b.ledger.fire_due_timers(5_000, 10, None));
    let mut fired: Vec<String> = x.unwrap().into_iter().chain(y.unwrap()).map(|e| e.event_id).collect();
    fired.sort();
    assert_eq!(fired, ["t1", "t2"]);
    let events = a.ledger.unfinished_events().await.unwrap();
    let t1 = events.iter().find(|e| e.event_id == "t1").expect("a fired timer is an event");
    assert_eq!(
        (t1.source.as_str(), t1.node.as_deref(), t1.payload["n"].as_str()),
        ("timer", Some("ladder"), Some("t1"))
    );
    assert!(b.ledger.fire_due_timers(5_000, 10, None).await.unwrap().is_empty(), "fired once");
    let shown = a.ledger.lead_timers("1001").await.unwrap();
    let states: Vec<(&str, &str)> = shown.iter().map(|t| (t.id.as_str(), t.state.as_str())).collect();
    assert_eq!(states, [("t1", "fired"), ("t2", "fired"), ("t3", "pending")]);
    assert_eq!((shown[0].label.as_deref(), shown[0].settled_at), (Some("step t1"), Some(5_000)));
}

on_both!(an_instance_fires_only_the_timers_of_pipelines_it_serves);
async fn an_instance_fires_only_the_timers_of_pipelines_it_serves(backend: &Backend) {
    let (old, new) = (backend.open("old", 30_000).await, backend.open("new", 30_000).await);
    let recycle = Timer { pipeline: "rejection-recycle".into(), ..timer("r1", "recycle", None, 1_000) };
    old.timers.schedule(recycle, None).await.unwrap();
    old.timers.schedule(timer("s1", "escalate", None, 2_000), None).await.unwrap();
    // An instance from before the recycle pipeline existed serves only `sla`.
    let served = ["sla".to_string()];
    assert_eq!(old.ledger.next_timer_due(Some(&served)).await.unwrap(), Some(2_000));
    let fired = old.ledger.fire_due_timers(5_000, 10, Some(&served)).await.unwrap();
    assert_eq!(fired.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["s1"]);
    // The recycle timer waits, pending, for an instance that serves it.
    let both = ["sla".to_string(), "rejection-recycle".to_string()];
    assert_eq!(new.ledger.next_timer_due(Some(&both)).await.unwrap(), Some(1_000));
    let fired = new.ledger.fire_due_timers(5_000, 10, Some(&both)).await.unwrap();
    assert_eq!(fired.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["r1"]);
}

on_both!(a_key_replaces_the_pending_timer_and_only_its_plugin_cancels);
async fn a_key_replaces_the_pending_timer_and_only_its_plugin_cancels(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    ledger.timers.schedule(timer("old", "escalate", Some("sla:1"), 1_000), None).await.unwrap();
    ledger.timers.schedule(timer("new", "escalate", Some("sla:1"), 2_000), None).await.unwrap();
    ledger.timers.schedule(timer("theirs", "recycle", Some("sla:1"), 3_000), None).await.unwrap();
    let states = |timers: Vec<handoff::ledger::TimerRecord>| -> Vec<(String, String)> {
        timers.into_iter().map(|t| (t.id, t.state)).collect()
    };
    let strs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| ((*a).to_string(), (*b).to_string())).collect()
    };
    assert_eq!(
        states(ledger.ledger.lead_timers("1001").await.unwrap()),
        strs(&[("old", "replaced"), ("new", "pending"), ("theirs", "pending")])
    );
    assert!(matches!(ledger.timers.cancel("recycle", "new", "x").await, Err(CapabilityError::NotFound(_))));
    assert!(ledger.timers.cancel_key("escalate", "sla:1", "accepted").await.unwrap());
    assert!(!ledger.timers.cancel_key("escalate", "sla:1", "accepted").await.unwrap(), "nothing pending now");
    ledger.timers.cancel("escalate", "new", "again").await.unwrap();
    let shown = ledger.ledger.lead_timers("1001").await.unwrap();
    assert_eq!(states(shown.clone()), strs(&[("old", "replaced"), ("new", "cancelled"), ("theirs", "pending")]));
    assert_eq!(shown[1].reason.as_deref(), Some("accepted"));
    assert_eq!(ledger.ledger.next_timer_due(None).await.unwrap(), Some(3_000));
}

on_both!(a_timer_commits_with_its_journal_record);
async fn a_timer_commits_with_its_journal_record(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let first =
        ledger.timers.schedule(timer("one", "escalate", None, 1_000), Some("exec/ladder/1/1:schedule.at")).await;
    assert_eq!(first.unwrap(), "one");
    assert_eq!(ledger.journal.recorded("exec/ladder/1/1:schedule.at").await.unwrap(), Some(json!("one")));
    // A rerun of the same call (a new id drawn) gets the first timer back.
    let again =
        ledger.timers.schedule(timer("two", "escalate", None, 1_000), Some("exec/ladder/1/1:schedule.at")).await;
    assert_eq!(again.unwrap(), "one");
    assert_eq!(ledger.ledger.lead_timers("1001").await.unwrap().len(), 1, "one timer");
}

on_both!(paused_reps_are_kept_until_resumed);
async fn paused_reps_are_kept_until_resumed(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    ledger.ledger.set_rep_paused("005A", Some("3 leads in a row reached reassignment")).await.unwrap();
    let reopened = backend.open("b", 30_000).await;
    let paused = reopened.ledger.paused_reps().await.unwrap();
    assert_eq!(paused.len(), 1);
    assert_eq!(
        (paused[0].rep_id.as_str(), paused[0].reason.as_str()),
        ("005A", "3 leads in a row reached reassignment")
    );
    reopened.ledger.set_rep_paused("005A", None).await.unwrap();
    assert!(ledger.ledger.paused_reps().await.unwrap().is_empty());
}

on_both!(settled_work_is_pruned_and_work_that_may_run_again_is_not);
async fn settled_work_is_pruned_and_work_that_may_run_again_is_not(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let (events, journal) = (&ledger.ledger, &ledger.journal);
    // Execution ids are `pipeline:source:event id`.
    for id in ["1", "2", "3"] {
        events.record_event(&event(id)).await.unwrap();
        journal.record(&format!("p:hubspot:{id}/notify/1/1"), &json!({"ts": id}).to_string()).await.unwrap();
        journal.record(&format!("p:hubspot:{id}/route/1:outputs"), &json!([]).to_string()).await.unwrap();
    }
    journal.start("p:hubspot:2/notify/1/2", 5).await.unwrap();
    events.flush().await.unwrap();
    assert!(events.finish_event("hubspot", "1", "p:hubspot:1", false).await.unwrap(), "1 completed");
    assert!(events.finish_event("hubspot", "3", "p:hubspot:3", true).await.unwrap(), "3 failed");
    // 2 is still running.
    assert_eq!(
        journal.entry("p:hubspot:1/route/1:outputs").await.unwrap(),
        None,
        "a completed execution's resume points go at once"
    );
    assert!(journal.entry("p:hubspot:1/notify/1/1").await.unwrap().is_some(), "its effects stay until the retention");
    assert!(journal.entry("p:hubspot:3/route/1:outputs").await.unwrap().is_some(), "a failed one may be retried");

    let nothing_old = events.prune(0, 100).await.unwrap();
    assert_eq!(nothing_old.total(), 0, "nothing is older than the epoch");
    let pruned = events.prune(i64::MAX, 100).await.unwrap();
    assert_eq!(pruned.effects, 1, "{pruned:?}");
    assert_eq!(pruned.payloads, 1, "{pruned:?}");
    assert_eq!(journal.entry("p:hubspot:1/notify/1/1").await.unwrap(), None);
    for kept in ["p:hubspot:2/notify/1/1", "p:hubspot:2/route/1:outputs", "p:hubspot:3/notify/1/1"] {
        assert!(journal.entry(kept).await.unwrap().is_some(), "{kept} belongs to work that may run again");
    }
    assert!(journal.entry("p:hubspot:2/notify/1/2").await.unwrap().is_some(), "and so does its intent");
    let (finished, done) = events.event("hubspot", "1").await.unwrap().unwrap();
    assert!(done);
    assert_eq!(finished.payload, json!({}), "the finished event's payload is emptied, its row kept");
    assert!(!events.record_event(&event("1")).await.unwrap(), "so a redelivery is still recognised");
    assert_eq!(events.unfinished_events().await.unwrap()[0].payload, json!({"objectId": 1001}));
}

on_both!(traces_and_shadow_decisions_are_kept_found_and_replaced);
async fn traces_and_shadow_decisions_are_kept_found_and_replaced(backend: &Backend) {
    use handoff::lead::Decision;
    use handoff::ledger::{ShadowDecision, Trace};
    let roles = backend.open("a", 30_000).await;
    let ledger = &roles.ledger;
    for (id, at) in [("1", 100), ("2", 200), ("3", 300)] {
        let event = InboundEvent { received_at: at, ..event(id) };
        assert!(ledger.record_event(&event).await.unwrap());
    }
    let other = InboundEvent { pipeline: "q".into(), received_at: 150, ..event("4") };
    ledger.record_event(&other).await.unwrap();

    // Events in a window, in order of arrival, of one pipeline or all.
    assert_eq!(ids(&ledger.events_between(Some("p"), 100, 300).await.unwrap()), ["1", "2"]);
    assert_eq!(ids(&ledger.events_between(None, 0, i64::MAX).await.unwrap()), ["1", "4", "2", "3"]);
    let found = ledger.event_of_execution("p:hubspot:2").await.unwrap().unwrap();
    assert_eq!((found.event_id.as_str(), found.payload.clone()), ("2", json!({"objectId": 1001})));
    assert!(ledger.event_of_execution("p:hubspot:9").await.unwrap().is_none());

    // A trace is kept, and a rerun's replaces it.
    let decision =
        |owner: &str| Decision { state: "notified".into(), owner: Some(owner.into()), ..Decision::default() };
    let mut trace = Trace {
        execution_id: "p:hubspot:2".into(),
        pipeline: "p".into(),
        lead_id: Some("1001".into()),
        at: 200,
        decision: decision("Lena Fischer"),
        reads: vec![handoff::record::CallRecord {
            call: "marketing.get-contact".into(),
            args: json!(["1001", ["email"]]),
            answer: json!({"id": "1001", "properties": "{\"email\":\"a@b.co\"}"}),
        }],
        effects: Vec::new(),
    };
    ledger.record_trace(&trace).await.unwrap();
    assert_eq!(ledger.trace("p:hubspot:2").await.unwrap().as_ref(), Some(&trace));
    trace.decision = decision("Tom Dubois");
    ledger.record_trace(&trace).await.unwrap();
    assert_eq!(ledger.trace("p:hubspot:2").await.unwrap().unwrap().decision.owner.as_deref(), Some("Tom Dubois"));
    assert!(ledger.trace("p:hubspot:3").await.unwrap().is_none());

    // Shadow decisions: by lead, by shadow pipeline, newest first; a rerun
    // of the live execution replaces its shadow's decision.
    let shadow = |execution: &str, lead: &str, at: i64, owner: &str| ShadowDecision {
        pipeline: "p-try".into(),
        shadows: "p".into(),
        execution_id: execution.into(),
        lead_id: Some(lead.into()),
        at,
        live: decision("Lena Fischer"),
        shadow: decision(owner),
        differs: owner != "Lena Fischer",
    };
    ledger.record_shadow(&shadow("p:hubspot:1", "1001", 100, "Lena Fischer")).await.unwrap();
    ledger.record_shadow(&shadow("p:hubspot:2", "1002", 200, "Aisha Khan")).await.unwrap();
    ledger.record_shadow(&shadow("p:hubspot:2", "1002", 200, "Tom Dubois")).await.unwrap();
    let all = ledger.shadow_decisions(None, None, 10).await.unwrap();
    let owners: Vec<_> = all.iter().map(|d| d.shadow.owner.clone().unwrap()).collect();
    assert_eq!(owners, ["Tom Dubois", "Lena Fischer"]);
    assert_eq!(ledger.shadow_decisions(Some("1001"), None, 10).await.unwrap().len(), 1);
    assert_eq!(ledger.shadow_decisions(None, Some("p-try"), 1).await.unwrap()[0].execution_id, "p:hubspot:2");
    assert!(ledger.shadow_decisions(None, Some("other"), 10).await.unwrap().is_empty());
}

on_both!(an_execution_ends_in_one_settlement);
async fn an_execution_ends_in_one_settlement(backend: &Backend) {
    use handoff::ledger::{LeadSteps, Settlement, Trace};
    let ledger = backend.open("a", 30_000).await;
    let (events, journal) = (&ledger.ledger, &ledger.journal);
    events.record_event(&event("7")).await.unwrap();
    journal.record("p:hubspot:7/notify/1/1:chat.send-dm", &json!({"ts": "1.2"}).to_string()).await.unwrap();
    journal.record("p:hubspot:7/route/1:outputs", &json!([]).to_string()).await.unwrap();
    let notified = Step { at: 7, state: LeadState::NOTIFIED, detail: "told lena".into(), data: None };
    let raised = InboundEvent {
        source: "lead".into(),
        event_id: "p:hubspot:7:notify:notified".into(),
        pipeline: "sla".into(),
        payload: json!({"name": "lead.notified"}),
        ..event("7")
    };
    let settlement = Settlement {
        event: ("hubspot".into(), "7".into()),
        execution_id: "p:hubspot:7".into(),
        failed: false,
        lead: Some(LeadSteps { lead_id: "1001".into(), facts: LeadFacts::default(), steps: vec![notified] }),
        trace: Some(Trace {
            execution_id: "p:hubspot:7".into(),
            pipeline: "p".into(),
            lead_id: Some("1001".into()),
            at: 7,
            decision: handoff::lead::Decision::default(),
            reads: Vec::new(),
            effects: Vec::new(),
        }),
        raised: vec![raised.clone()],
    };
    let settled = events.settle(&settlement).await.unwrap();
    assert!(settled.finished);
    assert_eq!(settled.raised, vec![true], "the lead event is new");

    let lead = events.lead("1001").await.unwrap().unwrap();
    assert_eq!((lead.state, lead.timeline.len()), (LeadState::NOTIFIED, 1));
    assert!(events.event("hubspot", "7").await.unwrap().unwrap().1, "the event is finished");
    let (stored, finished) = events.event("lead", &raised.event_id).await.unwrap().unwrap();
    assert!(!finished && stored.pipeline == "sla", "the lead event waits for its pipeline");
    assert!(
        backend.open("b", 30_000).await.ledger.claim_due(10).await.unwrap().is_empty(),
        "and is this instance's to run"
    );
    // What the execution did is kept: in its trace or in the journal.
    let trace = events.trace("p:hubspot:7").await.unwrap().unwrap();
    let in_trace = trace.effects.contains(&("notify/1/1:chat.send-dm".to_string(), json!({"ts": "1.2"})));
    let in_journal = journal.entry("p:hubspot:7/notify/1/1:chat.send-dm").await.unwrap().is_some();
    assert!(in_trace || in_journal, "{trace:?}");
    assert_eq!(journal.entry("p:hubspot:7/route/1:outputs").await.unwrap(), None, "no resume point is kept");

    // The same settlement again (a rerun after a crash): nothing twice.
    let again = events.settle(&settlement).await.unwrap();
    assert_eq!(again, handoff::ledger::Settled { finished: false, raised: vec![false] });
    assert_eq!(events.lead("1001").await.unwrap().unwrap().timeline.len(), 1, "no step twice");
}

/// A lead event as the SLA pipeline gets it: what every lead's has in
/// common (keys, config) and what is its own (names, ids, times).
fn lead_event(n: usize) -> InboundEvent {
    let names = ["Lena Fischer", "Marcus Webb", "Aisha Khan", "Tom Dubois", "Greta Holm", "Carlos Ruiz"];
    let countries = ["Germany", "Canada", "United States"];
    let item = json!({
        "properties": {"email": format!("lead{n}@company{}.com", n * 7), "firstname": format!("First{n}"),
            "lastname": format!("Last{}", n * 13), "company": format!("Company {}", n * 31), "numemployees": (n * 37) % 3000,
            "country": countries[n % 3], "lifecyclestage": "marketingqualifiedlead", "hubspotscore": 50 + n % 50},
        "routing": {"owner_id": format!("005{:015}", n % 9), "owner_name": names[n % names.len()], "team": "emea",
            "rule": "EMEA enterprise", "why": "matched EMEA; chose by weighted round-robin"},
        "salesforce": {"lead_id": format!("00Q{:015}", n), "url": format!("https://acme.lightning.force.com/lightning/r/Lead/00Q{n:015}/view")},
        "summary": {"text": format!("{} from Company {} read the pricing page {} times this week.", names[n % 6], n * 31, n % 7)},
        "notification": {"dm": {"channel": format!("D{:08}", n % 9), "ts": format!("1796616639.{n:06}")}, "at": 1_796_616_639_000_i64 + n as i64},
    });
    InboundEvent {
        source: "lead".into(),
        event_id: format!("mql-handoff:hubspot:{n}:notify:notified"),
        pipeline: "sla-enforcement".into(),
        payload: json!({"name": "lead.notified", "lead_id": n.to_string(), "state": "notified", "item": item}),
        ..event("1")
    }
}

#[tokio::test]
async fn the_sqlite_ledger_learns_a_dictionary_from_its_own_documents() {
    let backend = Backend::sqlite();
    let Database::Sqlite(path) = &backend.database else { unreachable!() };
    let ledger = backend.open("a", 30_000).await;
    let size = |id: &str| -> i64 {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row("SELECT length(payload) FROM events WHERE event_id = ?1", [id], |r| r.get(0)).unwrap()
    };
    let dictionaries = || -> i64 {
        let db = rusqlite::Connection::open(path).unwrap();
        db.query_row("SELECT COUNT(*) FROM dictionaries", [], |r| r.get(0)).unwrap()
    };
    // Until it has seen enough documents to train on, each is compressed alone.
    for n in 0..1_000 {
        assert!(ledger.ledger.record_event(&lead_event(n)).await.unwrap());
    }
    let alone = size(&lead_event(999).event_id);
    // The dictionary is trained off the writer, and stored with a later write.
    let mut n = 1_000;
    while dictionaries() == 0 {
        assert!(n < 5_000, "a dictionary is trained");
        ledger.ledger.record_event(&lead_event(n)).await.unwrap();
        n += 1;
    }
    for m in n..n + 10 {
        ledger.ledger.record_event(&lead_event(m)).await.unwrap();
    }
    let with_dictionary = size(&lead_event(n + 9).event_id);
    let text = i64::try_from(lead_event(n + 9).payload.to_string().len()).unwrap();
    assert!(with_dictionary * 3 < alone, "{with_dictionary} bytes with the dictionary, {alone} alone, {text} as text");
    // Read back whole, before and after, also by a new process (which reads
    // the dictionary from the ledger).
    drop(ledger);
    let reopened = backend.open("b", 30_000).await;
    for m in [0, 999, n, n + 9] {
        let expected = lead_event(m);
        let (stored, _) = reopened.ledger.event("lead", &expected.event_id).await.unwrap().unwrap();
        assert_eq!(stored.payload, expected.payload, "document {m}");
    }
}

on_both!(state_writes_are_read_back_at_once_and_kept);
async fn state_writes_are_read_back_at_once_and_kept(backend: &Backend) {
    let ledger = backend.open("a", 30_000).await;
    let state = &ledger.state;
    let quota = StateQuota::default();
    state.set("route", "a", "1", 0, quota).await.unwrap();
    state.set("route", "b", "2", 0, quota).await.unwrap();
    state.set("route", "a", "3", 0, quota).await.unwrap();
    state.delete("route", "b").await.unwrap();
    assert_eq!(state.get("route", "a", 0).await.unwrap().as_deref(), Some("3"), "the newest write, at once");
    assert_eq!(state.get("route", "b", 0).await.unwrap(), None, "deleted");
    // Another process sees them once they are committed, with no write of
    // their own to carry them (on SQLite within moments, on PostgreSQL at once).
    let other = backend.open("b", 30_000).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while other.state.get("route", "a", 0).await.unwrap().as_deref() != Some("3") {
        assert!(std::time::Instant::now() < deadline, "the writes were committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(other.state.get("route", "b", 0).await.unwrap(), None);
    // And they count toward the quota before they are committed.
    let tight = StateQuota { max_keys: 3, max_bytes: 1 << 20 };
    state.set("tight", "k1", "x", 0, tight).await.unwrap();
    state.set("tight", "k2", "x", 0, tight).await.unwrap();
    state.set("tight", "k3", "x", 0, tight).await.unwrap();
    assert!(matches!(state.set("tight", "k4", "x", 0, tight).await, Err(CapabilityError::Invalid(_))));
    state.set("tight", "k1", "overwritten", 0, tight).await.expect("an overwrite does not grow the keys");
}

on_both!(expired_state_reads_as_absent_until_the_pruner_frees_its_quota);
async fn expired_state_reads_as_absent_until_the_pruner_frees_its_quota(backend: &Backend) {
    use handoff::capabilities::Clock;
    let ledger = backend.open("a", 30_000).await;
    let state = &ledger.state;
    let quota = StateQuota { max_keys: 4, max_bytes: 1 << 20 };
    // Business times a minute back, so every expiry below has come by the
    // ledger's own clock when it prunes.
    let t = SystemClock.now_ms() - 60_000;
    state.set("dedupe", "a", "1", t, quota).await.unwrap();
    assert!(state.expire("dedupe", "a", t + 1_000, t).await.unwrap());
    assert!(!state.expire("dedupe", "missing", t + 1_000, t).await.unwrap(), "no such key");
    state.set("dedupe", "a", "2", t + 500, quota).await.unwrap();
    assert_eq!(state.get("dedupe", "a", t + 999).await.unwrap().as_deref(), Some("2"), "set keeps the expiry");
    assert_eq!(state.get("dedupe", "a", t + 1_000).await.unwrap(), None, "expired at its time");
    assert!(!state.expire("dedupe", "a", t + 9_000, t + 1_000).await.unwrap(), "too late to extend");

    state.increment("dedupe", "n", 1, t, None, quota).await.unwrap();
    state.expire("dedupe", "n", t + 1_000, t).await.unwrap();
    assert_eq!(state.increment("dedupe", "n", 1, t + 1, None, quota).await.unwrap(), 2);
    assert_eq!(state.get("dedupe", "n", t + 1_000).await.unwrap(), None, "increment keeps the expiry");
    assert_eq!(
        state.increment("dedupe", "n", 1, t + 1_000, None, quota).await.unwrap(),
        1,
        "an expired counter starts again from zero"
    );
    assert_eq!(state.get("dedupe", "n", i64::MAX).await.unwrap().as_deref(), Some("1"), "as a key that never expires");

    state.set("dedupe", "gone", "1", t, quota).await.unwrap();
    assert!(state.expire("dedupe", "gone", t, t).await.unwrap(), "a time already come deletes at once");
    assert_eq!(state.get("dedupe", "gone", t).await.unwrap(), None);

    state.set("dedupe", "later", "1", t, quota).await.unwrap();
    state.expire("dedupe", "later", t + 5_000, t).await.unwrap();
    state.set("dedupe", "kept", "1", t, quota).await.unwrap();
    // Another process sees the expiry once it is committed.
    let other = backend.open("b", 30_000).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while other.state.get("dedupe", "kept", t).await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the writes were committed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(other.state.get("dedupe", "later", t + 4_999).await.unwrap().as_deref(), Some("1"));
    assert_eq!(other.state.get("dedupe", "later", t + 5_000).await.unwrap(), None);

    // a, n, later and kept: expired keys count until they are pruned.
    let full = state.set("dedupe", "new", "1", t + 6_000, quota).await;
    assert!(matches!(&full, Err(CapabilityError::Invalid(m)) if m.contains("holds 4 keys")), "{full:?}");
    let pruned = ledger.ledger.prune(0, 100).await.unwrap();
    assert_eq!(pruned.state, 2, "a and later: {pruned:?}");
    state.set("dedupe", "new", "1", t + 6_000, quota).await.expect("room once the expired keys are pruned");
    assert_eq!(state.get("dedupe", "kept", i64::MAX).await.unwrap().as_deref(), Some("1"), "kept never expires");
}
