//! `schedule` triggers: each slot fires once across instances, and a slot
//! missed while every instance was down fires once at start, not once per
//! missed slot.

use handoff::capabilities::{Clock, ManualClock};
use handoff::ledger::{Ledger, SqliteStore};
use handoff_tests::{handoff_options, programs};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// A directory with the `echo` test program and a pipeline running it every
/// Monday at 09:00 Berlin time.
fn weekly(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(programs::ECHO, plugins.join("echo.wasm")).unwrap();
    let pipeline = dir.join("weekly.json");
    let json = json!({
        "name": "weekly", "version": 1,
        "trigger": {"type": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Berlin"},
        "nodes": [{"id": "digest", "plugin": "echo"}],
        "connections": {"trigger": {"main": ["digest"]}}
    });
    std::fs::write(&pipeline, json.to_string()).unwrap();
    (plugins, pipeline)
}

async fn launch(
    emulators: &handoff_emulators::Emulators,
    clock: &Arc<ManualClock>,
    state: &std::path::Path,
    dir: &std::path::Path,
) -> handoff::app::App {
    let (plugins, pipeline) = weekly(dir);
    let options = handoff::app::AppOptions {
        plugin_dirs: vec![plugins],
        pipelines: vec![pipeline],
        ..handoff_options(emulators, clock.clone(), state)
    };
    handoff::app::App::launch(options).await.unwrap()
}

fn runs(apps: &[&handoff::app::App]) -> Vec<i64> {
    let mut slots: Vec<i64> = apps
        .iter()
        .flat_map(|app| app.server.finished())
        .filter(|f| f.record.pipeline == "weekly")
        .map(|f| f.record.runs[0].input["event"]["scheduled_for"].as_i64().unwrap())
        .collect();
    slots.sort_unstable();
    slots
}

async fn wait_for(apps: &[&handoff::app::App], count: usize) {
    for _ in 0..200 {
        if runs(apps).len() >= count && apps.iter().all(|a| a.server.in_flight() == 0) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn each_slot_fires_once_across_instances_and_a_missed_one_once_at_start() {
    // Wednesday 15:00 UTC: the next slot is Monday 08:00 UTC (09:00 Berlin).
    let now = handoff_tests::test_now_ms();
    let monday = now + 4 * DAY + 17 * HOUR;
    let clock = Arc::new(ManualClock::new(now));
    let emulators = handoff::emulated::start(handoff_emulators::Settings::default(), clock.clone()).await.unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = launch(&emulators, &clock, state.path(), dir.path()).await;
    let b = launch(&emulators, &clock, state.path(), dir.path()).await;
    let ledger = SqliteStore::open(&state.path().join("handoff.db")).unwrap();
    assert_eq!(ledger.next_timer_due(None).await.unwrap(), Some(monday), "the next slot is armed, once");

    clock.set(monday);
    wait_for(&[&a, &b], 1).await;
    assert_eq!(runs(&[&a, &b]), [monday], "two instances, one run");
    assert_eq!(ledger.next_timer_due(None).await.unwrap(), Some(monday + 7 * DAY), "the next Monday is armed");

    // Every instance stops; three Mondays pass; one starts again.
    drop((a, b));
    clock.set(monday + 3 * 7 * DAY + HOUR);
    let c = launch(&emulators, &clock, state.path(), dir.path()).await;
    wait_for(&[&c], 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(runs(&[&c]), [monday + 7 * DAY], "the missed slot runs once at start, not three times");
    assert_eq!(
        ledger.next_timer_due(None).await.unwrap(),
        Some(monday + 4 * 7 * DAY),
        "then the schedule goes on from now"
    );
    assert_eq!(c.server.finished()[0].record.runs[0].input["event"]["cron"], "0 9 * * 1");
    let _ = clock.now_ms();
}
