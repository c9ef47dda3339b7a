//! Items flow along connections: fan-out, unconnected ports, retries and the
//! three `on_error` behaviours, each run recorded.

use handoff::capabilities::Capabilities;
use handoff::pipeline::{Executor, Start};
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
    let mut order: Vec<&str> = record.runs.iter().map(|r| r.node.as_str()).collect();
    assert_eq!(order[0], "first");
    order.sort_unstable();
    assert_eq!(order, ["first", "left", "left", "right", "right"], "each item runs each target once");
    assert_eq!(record.ends.len(), 4);
    let mut ends: Vec<String> = record
        .ends
        .iter()
        .map(|e| match e {
            BranchEnd::Unconnected { node, port, item } => {
                assert_eq!(item, &json!({"n": 1}));
                format!("{node}:{port}")
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    ends.sort();
    assert_eq!(ends, ["left:main", "left:main", "right:other", "right:other"]);
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
    // The two branches run at once: their ends come in either order.
    assert_eq!(record.ends.len(), 2);
    assert!(
        record
            .ends
            .iter()
            .any(|e| matches!(e, BranchEnd::Failed { node, error } if node == "bad" && error.kind == "fatal"))
    );
    assert!(record.ends.iter().any(|e| matches!(e, BranchEnd::Unconnected { node, .. } if node == "good")));
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

/// A language model that answers only once `parties` calls are waiting at
/// once: a pipeline that ran its branches one after the other would never
/// get an answer (its summaries fall back to the template).
struct Rendezvous {
    barrier: tokio::sync::Barrier,
    delay: std::time::Duration,
}

#[async_trait::async_trait]
impl handoff::capabilities::Llm for Rendezvous {
    async fn complete(
        &self,
        request: handoff::capabilities::CompletionRequest,
    ) -> Result<String, handoff::capabilities::CapabilityError> {
        self.barrier.wait().await;
        tokio::time::sleep(self.delay).await;
        Ok(format!("model says: {}", request.prompt.lines().count()))
    }
}

fn model(parties: usize, delay_ms: u64) -> Capabilities {
    let mut capabilities = Capabilities::none();
    capabilities.llm = Some(std::sync::Arc::new(Rendezvous {
        barrier: tokio::sync::Barrier::new(parties),
        delay: std::time::Duration::from_millis(delay_ms),
    }));
    capabilities
}

const SUMMARIZE: &str =
    r#""plugin": "summarize", "capabilities": ["llm:complete"], "config": {"budget_ms": 3000}, "timeout": "5s""#;

#[tokio::test]
async fn branches_of_one_execution_run_at_the_same_time() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        &format!(r#"[{{"id": "left", {SUMMARIZE}}}, {{"id": "right", {SUMMARIZE}}}]"#),
        r#"{"trigger": {"main": ["left", "right"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"properties": {"email": "a@b.co"}}), model(2, 0)).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    for run in &record.runs {
        let out = run.outputs[0].item.value();
        assert_eq!(out["summary"]["source"], "llm", "{}: both calls were waiting at once", run.node);
    }
}

/// Two branches joined: `info` (echo) and `summary` (the model), then
/// `after` sees the merged item; `late` items go to `late-sink`.
fn joined(timeout: &str) -> String {
    pipeline_json(
        &format!(
            r#"[
            {{"id": "info", "plugin": "echo"}},
            {{"id": "summarize", {SUMMARIZE}}},
            {{"id": "join", "plugin": "merge", "timeout": "{timeout}", "config": {{"inputs": [
                {{"name": "lead", "from": ["info"]}},
                {{"name": "summary", "from": ["summarize"], "required": false, "fields": ["summary"]}}]}}}},
            {{"id": "after", "plugin": "echo"}},
            {{"id": "late-sink", "plugin": "echo"}}
        ]"#
        ),
        r#"{"trigger": {"main": ["info", "summarize"]}, "info": {"main": ["join"]}, "summarize": {"main": ["join"]},
            "join": {"main": ["after"], "late": ["late-sink"]}}"#,
    )
}

#[tokio::test]
async fn a_merge_waits_for_every_input_and_lays_them_together() {
    let host = TestHost::new().await;
    let record =
        host.execute(&joined("5s"), json!({"properties": {"email": "a@b.co"}, "owner": "ann"}), model(1, 50)).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    let after = record.runs.iter().find(|r| r.node == "after").expect("the merged item went on");
    let input = after.input.value();
    assert_eq!(input["owner"], "ann", "the lead's fields");
    assert_eq!(input["summary"]["source"], "llm", "and the summary, which came 50 ms later");
    let merge = record.runs.iter().find(|r| r.node == "join").unwrap();
    assert_eq!(merge.plugin, "merge");
    assert_eq!(merge.input.value()["merged"], json!(["lead", "summary"]));
    assert_eq!(merge.input.value()["why"], "every input arrived");
    assert!(record.runs.iter().all(|r| r.node != "late-sink"));
}

#[tokio::test]
async fn an_optional_input_that_misses_the_timeout_goes_out_late() {
    let host = TestHost::new().await;
    let record =
        host.execute(&joined("0ms"), json!({"properties": {"email": "a@b.co"}, "owner": "ann"}), model(1, 300)).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    let after = record.runs.iter().find(|r| r.node == "after").unwrap();
    assert!(after.input.value().get("summary").is_none(), "the lead went on without waiting");
    let merge = record.runs.iter().find(|r| r.node == "join" && r.outputs[0].port == "main").unwrap();
    assert_eq!(merge.input.value()["missing"], json!(["summary"]));
    let late = record.runs.iter().find(|r| r.node == "late-sink").expect("the summary still went somewhere");
    assert_eq!(late.input.value()["summary"]["source"], "llm");
    let order: Vec<&str> = record.runs.iter().map(|r| r.node.as_str()).collect();
    let at = |n: &str| order.iter().position(|x| *x == n).unwrap();
    assert!(at("after") < at("late-sink"), "{order:?}");
}

#[tokio::test]
async fn a_merge_whose_required_input_never_comes_ends_its_branch_saying_so() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[
            {"id": "gate", "plugin": "echo", "config": {"port": "other"}},
            {"id": "other", "plugin": "echo"},
            {"id": "join", "plugin": "merge", "config": {"inputs": [
                {"name": "lead", "from": ["gate"]}, {"name": "extra", "from": ["other"], "required": false}]}},
            {"id": "after", "plugin": "echo"}
        ]"#,
        r#"{"trigger": {"main": ["gate", "other"]}, "gate": {"main": ["join"]}, "other": {"main": ["join"]}, "join": {"main": ["after"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"n": 1}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert!(record.runs.iter().all(|r| r.node != "after"));
    assert!(
        record.ends.contains(&BranchEnd::Incomplete {
            node: "join".into(),
            present: vec!["extra".into()],
            missing: vec!["lead".into()]
        }),
        "{:?}",
        record.ends
    );
}

/// A journal on one shared "connection": a rerun's lookups queue for it.
struct OneConnectionJournal {
    connection: std::sync::Arc<tokio::sync::Semaphore>,
}

#[async_trait::async_trait]
impl handoff::capabilities::EffectJournal for OneConnectionJournal {
    async fn entry(&self, _: &str) -> anyhow::Result<Option<handoff::capabilities::Entry>> {
        let _connection = self.connection.acquire().await?;
        Ok(None)
    }
    async fn start(&self, _: &str, _: i64) -> anyhow::Result<()> {
        Ok(())
    }
    async fn persist(&self, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
    async fn record(&self, _: &str, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A model whose first call holds the same connection for a while, as a
/// run waiting on the ledger's answer does; later calls just take a moment.
struct HoldingModel {
    connection: std::sync::Arc<tokio::sync::Semaphore>,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl handoff::capabilities::Llm for HoldingModel {
    async fn complete(
        &self,
        _: handoff::capabilities::CompletionRequest,
    ) -> Result<String, handoff::capabilities::CapabilityError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let _connection = self.connection.acquire().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        } else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok("model says: hello".into())
    }
}

#[tokio::test]
async fn a_merge_reading_the_journal_does_not_starve_the_runs_in_flight() {
    // Once, on a rerun the merge awaited its journal lookup while the other
    // branch's run (holding the one connection the lookup needed) was not
    // polled: the execution, and with it every ledger connection, stalled
    // for good (two instances on PostgreSQL, after one died).
    let host = TestHost::new().await;
    let connection = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let mut capabilities = Capabilities::none();
    capabilities.llm = Some(std::sync::Arc::new(HoldingModel { connection: connection.clone(), calls: 0.into() }));
    capabilities.journal = Some(std::sync::Arc::new(OneConnectionJournal { connection }));
    let pipeline = pipeline_json(
        &format!(
            r#"[
            {{"id": "slow", {SUMMARIZE}}},
            {{"id": "quick", {SUMMARIZE}}},
            {{"id": "join", "plugin": "merge", "timeout": "5s", "config": {{"inputs": [
                {{"name": "slow", "from": ["slow"]}}, {{"name": "quick", "from": ["quick"]}}]}}}},
            {{"id": "after", "plugin": "echo"}}
        ]"#
        ),
        r#"{"trigger": {"main": ["slow", "quick"]}, "slow": {"main": ["join"]}, "quick": {"main": ["join"]},
            "join": {"main": ["after"]}}"#,
    );
    let prepared = host.prepare(&pipeline);
    let executor = Executor::new(host.runtime.clone(), std::sync::Arc::new(capabilities));
    // On the plugin pool, as the server runs executions: node runs run in
    // place there, inside the execution's task.
    // A rerun: merges look in the journal for what they decided before.
    let rerun = handoff::pipeline::History::Resumed { since_ms: 0 };
    let run = host.runtime.spawn(async move {
        let input = json!({"properties": {"email": "a@b.co"}});
        executor.execute_as(&prepared, input, Start::Trigger, None, "exec-1".into(), rerun).await
    });
    let record = tokio::time::timeout(std::time::Duration::from_secs(20), run)
        .await
        .expect("the execution ends: the runs in flight are polled while the merge waits")
        .unwrap();
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    assert!(record.runs.iter().any(|r| r.node == "after"), "the merged item went on: {record:?}");
}
