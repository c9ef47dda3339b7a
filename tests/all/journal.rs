//! The effect journal makes side effects exactly-once across retries and
//! reruns of an execution.

use handoff::capabilities::Capabilities;
use handoff::ledger::{Ledger, SqliteStore};
use handoff::pipeline::{Executor, Start};
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
    /// the DM's intent is there, its result and the node's outputs are not.
    CrashAfterSend,
    /// As if no intent had been written either.
    NoTrace,
}

async fn dms_after_a_retry(journal: bool, runs: usize) -> usize {
    dms_after(journal, runs, Between::Intact).await
}

async fn dms_after(journal: bool, runs: usize, between: Between) -> usize {
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
        let record = executor
            .execute_as(
                &prepared,
                json!({"email": "lena.fischer@handoff-demo.com"}),
                Start::Trigger,
                None,
                "exec-1".into(),
            )
            .await;
        assert_eq!(record.status, ExecutionStatus::Completed);
        if let Some(ledger) = ledger {
            ledger.flush().await.unwrap();
        }
        if between != Between::Intact {
            let ledger = rusqlite::Connection::open(dir.path().join("handoff.db")).unwrap();
            if between == Between::CrashAfterSend {
                ledger
                    .execute("INSERT INTO effect_intents (key, started_at) SELECT key, recorded_at FROM effects", [])
                    .unwrap();
            }
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
    // intent tells the rerun to look, and the DM is there.
    assert_eq!(dms_after(true, 2, Between::CrashAfterSend).await, 1);
    // Without the intent the rerun could not know, and sends again: the
    // contrast that shows what the intent does.
    assert_eq!(dms_after(true, 2, Between::NoTrace).await, 2);
}
