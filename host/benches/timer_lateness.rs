//! Timer lateness on real time: 10,000 timers due within the same minute,
//! fired by `handoff serve`'s worker from the ledger (SQLite, or PostgreSQL
//! with `HANDOFF_DATABASE_URL`). Each timer starts a short execution (the
//! `validate` node of the MQL pipeline). Prints p50/p99/max of fired-at
//! minus due-at, and how long the last execution took to finish after its
//! timer's deadline.
//!
//! `cargo bench -p handoff --bench timer_lateness` (`TIMERS=N` to change
//! the count).

use handoff::app::{App, AppOptions};
use handoff::capabilities::{Clock, SystemClock, Timer};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let timers: usize = std::env::var("TIMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(timers));
}

async fn run(count: usize) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let emulators = handoff::emulated::start(handoff_emulators::Settings::default(), clock.clone()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let database = handoff::ledger::Database::from_env(data.path());
    let app = App::launch(AppOptions {
        database: Some(database.clone()),
        ..AppOptions::mql_handoff(
            &repo.join("pipelines"),
            data.path().to_path_buf(),
            handoff::emulated::connectors(&emulators),
            clock.clone(),
        )
    })
    .await
    .unwrap();
    let roles = handoff::ledger::Roles::open(&database, handoff::ledger::Instance::named("bench"), clock.clone())
        .await
        .unwrap();

    // Deadlines spread over one minute, starting 20 s from now.
    let start = clock.now_ms() + 20_000;
    let scheduling = Instant::now();
    for i in 0..count {
        let due = start + i64::try_from(i * 60_000 / count).unwrap();
        let timer = Timer {
            id: format!("bench-{i}"),
            pipeline: "mql-handoff".into(),
            node: "validate".into(),
            plugin: "bench".into(),
            at: due,
            payload: r#"{"properties": {}}"#.into(),
            key: None,
            lead_id: Some("bench".into()),
            execution_id: "bench".into(),
        };
        roles.timers.schedule(timer, None).await.unwrap();
    }
    println!("scheduled {count} timers in {:.1} s", scheduling.elapsed().as_secs_f64());

    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if clock.now_ms() > start + 60_000
            && roles.ledger.next_timer_due(None).await.unwrap().is_none()
            && app.server.in_flight() == 0
        {
            break;
        }
        assert!(Instant::now() < deadline, "timers still pending after 5 minutes");
    }
    let finished_after_last_due = clock.now_ms() - (start + 60_000);
    let fired = roles.ledger.lead_timers("bench").await.unwrap();
    let mut lateness: Vec<i64> = fired.iter().filter_map(|t| Some(t.settled_at? - t.due_at)).collect();
    lateness.sort_unstable();
    assert_eq!(lateness.len(), count, "every timer fired");
    let pct = |p: f64| lateness[((lateness.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "timer lateness (fired − due) over {count} timers due within one minute: p50 {} ms, p99 {} ms, max {} ms; \
         all work done {} ms after the last deadline (polled every 500 ms)",
        pct(0.5),
        pct(0.99),
        pct(1.0),
        finished_after_last_due
    );
    println!("executions finished: {}", app.server.finished().len());
}
