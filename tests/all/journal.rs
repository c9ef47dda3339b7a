//! The effect journal makes side effects exactly-once across retries and
//! reruns of an execution.

use handoff::capabilities::Capabilities;
use handoff::ledger::{Ledger, SqliteStore};
use handoff::pipeline::{Executor, History, Start};
use handoff::record::ExecutionStatus;
use handoff_tests::{TestHost, emulator_connectors, emulators, load_program, programs};
use serde_json::json;
use std::sync::Arc;

const PIPELINE: &str = r#"{"name": "blurt", "version": 1, "trigger": {"type": "event", "name": "test"},
    "nodes": [{"id": "dm", "plugin": "blurt", "capabilities": ["chat:write"],
               "retry": {"max_attempts": 3, "backoff": {"initial": "1ms", "max": "5ms"}}},
              {"id": "after", "plugin": "echo"}],
    "connections": {"trigger": {"main": ["dm"]}, "dm": {"main": ["after"]}}}"#;

/// How the journal is left between runs of the execution.
#[derive(Clone, Copy, PartialEq)]
enum Between {
    /// As the run left it.
    Intact,
    /// As after a crash between Slack's answer and the journal's commit:
    /// neither the DM's result nor the node's outputs were recorded.
    Crash,
}

async fn dms_after_a_retry(journal: bool, runs: usize) -> usize {
    dms_after(journal, runs, Between::Intact, History::Resumed { since_ms: 0 }).await
}

/// DMs Slack holds after `runs` runs of one execution, each a new process on
/// the same ledger, the ones after the first run with `rerun`.
async fn dms_after(journal: bool, runs: usize, between: Between, rerun: History) -> usize {
    let host = TestHost::new().await;
    let mut registry = host.registry.clone();
    registry.insert(load_program(&host.runtime, programs::BLURT).await);
    let sb = emulators().await;
    let dir = tempfile::tempdir().unwrap();
    let prepared = handoff::pipeline::check(std::path::Path::new("blurt.json"), PIPELINE, &registry).unwrap();
    for run in 0..runs {
        // Each run is a new process on the same ledger.
        let ledger = journal.then(|| Arc::new(SqliteStore::open(&dir.path().join("handoff.db")).unwrap()));
        let local = Capabilities { journal: ledger.clone().map(|l| l as _), ..Capabilities::none() };
        let capabilities = emulator_connectors(&sb).connect(local).unwrap();
        let executor = Executor::new(host.runtime.clone(), Arc::new(capabilities));
        let history = if run == 0 { History::New } else { rerun };
        let input = json!({"email": "lena.fischer@handoff-demo.com"});
        let record = executor.execute_as(&prepared, input, Start::Trigger, None, "exec-1".into(), history).await;
        assert_eq!(record.status, ExecutionStatus::Completed);
        if let Some(ledger) = ledger {
            ledger.flush().await.unwrap();
        }
        if between == Between::Crash {
            let ledger = rusqlite::Connection::open(dir.path().join("handoff.db")).unwrap();
            ledger.execute("DELETE FROM effects", []).unwrap();
            continue;
        }
        let dm_runs: Vec<_> = record.runs.iter().filter(|r| r.node == "dm").collect();
        if run == 0 {
            assert_eq!(dm_runs.len(), 2, "failed once, then succeeded");
        } else {
            // Its outputs go on to `after`, so they were journaled.
            assert!(dm_runs.len() == 1 && dm_runs[0].replayed, "the completed node is not run again");
        }
    }
    sb.state.world().slack.messages.len()
}

#[tokio::test]
async fn a_retried_node_does_not_repeat_its_side_effects() {
    assert_eq!(dms_after_a_retry(true, 1).await, 1, "the retry replayed the recorded DM");
}

#[tokio::test]
async fn rerunning_an_execution_replays_instead_of_resending() {
    assert_eq!(dms_after_a_retry(true, 2).await, 1, "a second run of the same execution sends nothing new");
}

#[tokio::test]
async fn without_a_journal_the_retry_sends_again() {
    // The contrast that shows what the journal does (a one-shot `handoff
    // run` has no journal).
    assert_eq!(dms_after_a_retry(false, 1).await, 2);
}

#[tokio::test]
async fn a_dm_sent_just_before_a_crash_is_found_not_resent() {
    // Slack answered, the process died before the journal recorded it: the
    // rerun knows it may repeat an earlier run, looks, and the DM is there.
    let rerun = History::Resumed { since_ms: 0 };
    assert_eq!(dms_after(true, 2, Between::Crash, rerun).await, 1);
    // A run that takes itself for the first does not look, and sends again:
    // the contrast that shows what the lookup does.
    assert_eq!(dms_after(true, 2, Between::Crash, History::New).await, 2);
}

const TALLY_THEN_DM: &str = r#"{"name": "tally-then-dm", "version": 1, "trigger": {"type": "event", "name": "test"},
    "nodes": [{"id": "tally", "plugin": "tally", "capabilities": ["state:read", "state:write"]},
              {"id": "dm", "plugin": "blurt", "capabilities": ["chat:write"],
               "retry": {"max_attempts": 3, "backoff": {"initial": "1ms", "max": "5ms"}}}],
    "connections": {"trigger": {"main": ["tally"]}, "tally": {"main": ["dm"]}}}"#;

#[tokio::test]
async fn what_led_to_an_effect_is_on_the_disk_before_the_effect_leaves() {
    // `tally` decides from plugin state it also writes, as a router does:
    // run again from scratch, it decides otherwise. Its outputs must be on
    // the disk before the DM they lead to goes out, so that a rerun after a
    // crash replays its decision instead of making a new one.
    let host = TestHost::new().await;
    let mut registry = host.registry.clone();
    for program in [programs::TALLY, programs::BLURT] {
        registry.insert(load_program(&host.runtime, program).await);
    }
    let sb = emulators().await;
    let dir = tempfile::tempdir().unwrap();
    let prepared =
        Arc::new(handoff::pipeline::check(std::path::Path::new("t.json"), TALLY_THEN_DM, &registry).unwrap());
    let run = |history: History| {
        let prepared = prepared.clone();
        // Each run a new process on the same ledger: what the last one held
        // in memory and never wrote is gone, as after a crash.
        let ledger = Arc::new(SqliteStore::open(&dir.path().join("handoff.db")).unwrap());
        let local =
            Capabilities { journal: Some(ledger.clone() as _), state: Some(ledger as _), ..Capabilities::none() };
        let executor = Executor::new(host.runtime.clone(), Arc::new(emulator_connectors(&sb).connect(local).unwrap()));
        let input = json!({"email": "lena.fischer@handoff-demo.com"});
        async move { executor.execute_as(&prepared, input, Start::Trigger, None, "exec-1".into(), history).await }
    };
    let first = run(History::New).await;
    assert_eq!(first.status, ExecutionStatus::Completed);
    let rerun = run(History::Resumed { since_ms: 0 }).await;
    assert_eq!(rerun.status, ExecutionStatus::Completed);
    let tally = rerun.runs.iter().find(|r| r.node == "tally").unwrap();
    assert!(tally.replayed, "the decision was replayed, not made again");
    assert_eq!(tally.outputs[0].item["seen"], 1);
    assert_eq!(sb.state.world().slack.messages.len(), 1, "and the DM it led to was found, not sent again");
}
