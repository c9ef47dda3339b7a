//! Items flow along connections: fan-out, unconnected ports, retries and the
//! three `on_error` behaviours, each run recorded.

use handoff::capabilities::Capabilities;
use handoff::record::{BranchEnd, ExecutionStatus};
use handoff_tests::{TestHost, pipeline_json};
use serde_json::json;

const FAST_RETRY: &str = r#""retry": {"max_attempts": 3, "backoff": {"initial": "1ms", "max": "5ms"}}"#;

#[tokio::test]
async fn items_fan_out_and_unconnected_ports_end_their_branch() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[
            {"id": "first", "plugin": "echo", "config": {"copies": 2}},
            {"id": "left", "plugin": "echo"},
            {"id": "right", "plugin": "echo", "config": {"port": "other"}}
        ]"#,
        r#"{"trigger": {"main": ["first"]}, "first": {"main": ["left", "right"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"n": 1}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed);
    let order: Vec<&str> = record.runs.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(order, ["first", "left", "right", "left", "right"], "each item runs each target once");
    assert_eq!(record.ends.len(), 4);
    let ends: Vec<String> = record
        .ends
        .iter()
        .map(|e| match e {
            BranchEnd::Unconnected { node, port, item } => {
                assert_eq!(item, &json!({"n": 1}));
                format!("{node}:{port}")
            }
            other @ BranchEnd::Failed { .. } => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(ends, ["left:main", "right:other", "left:main", "right:other"]);
    for (i, run) in record.runs.iter().enumerate() {
        assert_eq!(run.seq, i + 1);
        assert_eq!(run.input, json!({"n": 1}));
        assert!(run.error.is_none());
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_until_they_succeed() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        &format!(r#"[{{"id": "flaky", "plugin": "echo", "config": {{"fail_until_attempt": 3}}, {FAST_RETRY}}}]"#),
        r#"{"trigger": {"main": ["flaky"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"x": 1}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    let attempts: Vec<(u32, Option<&str>)> =
        record.runs.iter().map(|r| (r.attempt, r.error.as_ref().map(|e| e.kind))).collect();
    assert_eq!(attempts, [(1, Some("retryable")), (2, Some("retryable")), (3, None)]);
}

#[tokio::test]
async fn exhausted_retries_fail_the_execution_under_stop() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        &format!(
            r#"[{{"id": "down", "plugin": "echo", "config": {{"fail": "retryable"}}, {FAST_RETRY}}},
                {{"id": "never", "plugin": "echo"}}]"#
        ),
        r#"{"trigger": {"main": ["down"]}, "down": {"main": ["never"]}}"#,
    );
    let record = host.execute(&pipeline, json!({}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Failed);
    assert_eq!(record.runs.len(), 3, "three attempts, then stop");
    assert!(record.runs.iter().all(|r| r.node == "down"));
    assert!(record.error.as_ref().unwrap().contains("after 3 attempt(s)"), "{:?}", record.error);
}

#[tokio::test]
async fn permanent_failures_are_not_retried() {
    let host = TestHost::new().await;
    for fail in ["fatal", "invalid"] {
        let pipeline = pipeline_json(
            &format!(r#"[{{"id": "n", "plugin": "echo", "config": {{"fail": "{fail}"}}, {FAST_RETRY}}}]"#),
            r#"{"trigger": {"main": ["n"]}}"#,
        );
        let record = host.execute(&pipeline, json!({}), Capabilities::none()).await;
        assert_eq!(record.runs.len(), 1, "{fail} is not retried");
        assert_eq!(record.status, ExecutionStatus::Failed);
    }
}

#[tokio::test]
async fn continue_ends_only_the_failing_branch() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[
            {"id": "split", "plugin": "echo"},
            {"id": "bad", "plugin": "echo", "config": {"fail": "fatal"}, "on_error": "continue"},
            {"id": "good", "plugin": "echo"}
        ]"#,
        r#"{"trigger": {"main": ["split"]}, "split": {"main": ["bad", "good"]}}"#,
    );
    let record = host.execute(&pipeline, json!({}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert!(matches!(&record.ends[0], BranchEnd::Failed { node, error } if node == "bad" && error.kind == "fatal"));
    assert!(matches!(&record.ends[1], BranchEnd::Unconnected { node, .. } if node == "good"));
}

#[tokio::test]
async fn error_port_routes_the_failure_and_the_item_onward() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[
            {"id": "bad", "plugin": "echo", "config": {"fail": "invalid"}, "on_error": "error-port"},
            {"id": "handler", "plugin": "echo"}
        ]"#,
        r#"{"trigger": {"main": ["bad"]}, "bad": {"error": ["handler"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"lead": 7}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed);
    let handled = &record.runs[1];
    assert_eq!(handled.node, "handler");
    assert_eq!(handled.input["item"], json!({"lead": 7}));
    assert_eq!(handled.input["error"]["kind"], "invalid-input");
    assert_eq!(handled.input["error"]["node"], "bad");
}

#[tokio::test]
async fn emitting_on_an_undeclared_port_is_a_contract_error() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[{"id": "n", "plugin": "echo", "config": {"port": "nowhere"}}]"#,
        r#"{"trigger": {"main": ["n"]}}"#,
    );
    let record = host.execute(&pipeline, json!({}), Capabilities::none()).await;
    let error = record.runs[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "bad-output");
    assert!(error.message.contains("'nowhere'") && error.message.contains("main, other"), "{}", error.message);
}
