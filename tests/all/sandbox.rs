//! Misbehaving plugins are stopped, reported, and do not take the host down.

use handoff::capabilities::Capabilities;
use handoff::record::ExecutionStatus;
use handoff_tests::{TestHost, pipeline_json};
use serde_json::json;

fn single(plugin: &str, extra: &str) -> String {
    pipeline_json(
        &format!(r#"[{{"id": "n", "plugin": "{plugin}", "retry": {{"max_attempts": 1}} {extra}}}]"#),
        r#"{"trigger": {"main": ["n"]}}"#,
    )
}

/// Runs `echo` and checks it still works: the host keeps serving.
async fn host_still_serves(host: &TestHost) {
    let record = host.execute(&single("echo", ""), json!({"still": "alive"}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    assert_eq!(record.runs[0].outputs[0].item, json!({"still": "alive"}));
}

#[tokio::test]
async fn a_plugin_that_loops_forever_is_stopped_at_its_deadline() {
    let host = TestHost::new().await;
    let record = host.execute(&single("spin", r#", "timeout": "150ms""#), json!({}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Failed);
    let error = record.runs[0].error.as_ref().expect("the run failed");
    assert_eq!(error.kind, "timeout");
    assert!(error.message.contains("150 ms"), "{}", error.message);
    assert!(record.error.as_ref().unwrap().contains("node 'n'"), "{:?}", record.error);
    host_still_serves(&host).await;
}

#[tokio::test]
async fn a_plugin_that_allocates_without_end_is_stopped_at_its_memory_cap() {
    let host = TestHost::new().await;
    let record = host.execute(&single("hog", r#", "memory_mb": 16"#), json!({}), Capabilities::none()).await;
    let error = record.runs[0].error.as_ref().expect("the run failed");
    assert_eq!(error.kind, "memory-limit", "{}", error.message);
    assert!(error.message.contains("cap is 16 MiB"), "{}", error.message);
    assert!(!error.retryable);
    host_still_serves(&host).await;
}

#[tokio::test]
async fn pool_slots_are_recycled_after_memory_cap_hits() {
    // More failed runs than the test runtime has pool slots (32): a leak of
    // slots would make the later runs fail to instantiate.
    let host = TestHost::new().await;
    let pipeline = single("hog", r#", "memory_mb": 4"#);
    for _ in 0..40 {
        let record = host.execute(&pipeline, json!({}), Capabilities::none()).await;
        assert_eq!(record.runs[0].error.as_ref().unwrap().kind, "memory-limit");
    }
    host_still_serves(&host).await;
}

#[tokio::test]
async fn a_plugin_that_traps_becomes_a_node_error() {
    let host = TestHost::new().await;
    let record = host.execute(&single("trap", ""), json!({}), Capabilities::none()).await;
    let error = record.runs[0].error.as_ref().expect("the run failed");
    assert_eq!(error.kind, "trap");
    assert!(error.message.contains("unreachable"), "{}", error.message);
    host_still_serves(&host).await;
}

#[tokio::test]
async fn a_stuck_plugin_does_not_hold_up_other_runs() {
    let host = TestHost::new().await;
    let spin = host.prepare(&single("spin", r#", "timeout": "1s""#));
    let executor = handoff::pipeline::Executor::new(host.runtime.clone(), std::sync::Arc::new(Capabilities::none()));
    let stuck = {
        let executor = executor.clone();
        tokio::spawn(async move { executor.execute(&spin, json!({}), handoff::pipeline::Start::Trigger, None).await })
    };
    // While `spin` burns its second, echo runs finish on the other worker.
    for i in 0..5 {
        let record = host.execute(&single("echo", ""), json!({"i": i}), Capabilities::none()).await;
        assert_eq!(record.status, ExecutionStatus::Completed);
    }
    assert!(!stuck.is_finished(), "echo runs completed while spin was still running");
    let record = stuck.await.unwrap();
    assert_eq!(record.runs[0].error.as_ref().unwrap().kind, "timeout");
}

#[tokio::test]
async fn plugin_output_is_captured_and_tagged() {
    let host = TestHost::new().await;
    let record = host
        .execute(&single("echo", r#", "config": {"print": "hello from wasm"}"#), json!({}), Capabilities::none())
        .await;
    let logs = &record.runs[0].logs;
    let lines: Vec<(String, &str)> = logs.iter().map(|l| (format!("{:?}", l.stream), l.message.as_str())).collect();
    assert!(lines.contains(&("Stdout".into(), "hello from wasm")), "{lines:?}");
    assert!(lines.contains(&("Info".into(), "n attempt 1")), "{lines:?}");
}

#[tokio::test]
async fn plugins_get_no_filesystem_environment_stdin_or_network() {
    let host = TestHost::new().await;
    let record = host.execute(&single("echo", r#", "config": {"probe": true}"#), json!({}), Capabilities::none()).await;
    let probe = &record.runs[0].outputs[0].item;
    assert!(probe["fs"].as_str().unwrap().starts_with("error"), "{probe}");
    assert_eq!(probe["env"], 0, "{probe}");
    assert_eq!(probe["args"], 0, "{probe}");
    assert!(probe["net"].as_str().unwrap().starts_with("error"), "{probe}");
    assert_eq!(probe["stdin"], "0", "{probe}");
}
