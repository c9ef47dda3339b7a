//! The effect journal makes side effects exactly-once across retries and
//! reruns of an execution.

use handoff::capabilities::Capabilities;
use handoff::pipeline::{ExecutionStatus, Executor, Start};
use handoff::store::SqliteStore;
use handoff_tests::{TestHost, load_program, programs, sandbox, sandbox_connectors};
use serde_json::json;
use std::sync::Arc;

const PIPELINE: &str = r#"{"name": "blurt", "version": 1, "trigger": {"type": "event", "name": "test"},
    "nodes": [{"id": "dm", "plugin": "blurt", "capabilities": ["chat:write"],
               "retry": {"max_attempts": 3, "backoff": {"initial": "1ms", "max": "5ms"}}}],
    "connections": {"trigger": {"main": ["dm"]}}}"#;

async fn dms_after_a_retry(journal: bool, runs: usize) -> usize {
    let host = TestHost::new().await;
    let mut registry = host.registry.clone();
    registry.insert(load_program(&host.runtime, programs::BLURT).await);
    let sb = sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut local = Capabilities::none();
    if journal {
        local.journal = Some(Arc::new(SqliteStore::open(&dir.path().join("handoff.db")).unwrap()));
    }
    let capabilities = sandbox_connectors(&sb).connect(local).unwrap();
    let prepared = handoff::pipeline::check(std::path::Path::new("blurt.json"), PIPELINE, &registry).unwrap();
    let executor = Executor::new(host.runtime.clone(), Arc::new(capabilities));
    for run in 0..runs {
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
        if run == 0 {
            assert_eq!(record.runs.len(), 2, "failed once, then succeeded");
        } else {
            assert!(record.runs.len() == 1 && record.runs[0].replayed, "the completed node is not run again");
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
