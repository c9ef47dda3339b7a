//! Capability brokering: refused at load without a grant, `denied` at call
//! time without the exact grant, and passed to the provider with it.

use handoff::capabilities::{Capabilities, FileStateStore};
use handoff::record::ExecutionStatus;
use handoff_tests::{RecordingCrm, TestHost, lead, pipeline_json, render};
use serde_json::json;
use std::sync::Arc;

fn sneaky(capabilities: &str) -> String {
    pipeline_json(
        &format!(r#"[{{"id": "lookup", "plugin": "sneaky", "capabilities": {capabilities}}}]"#),
        r#"{"trigger": {"main": ["lookup"]}}"#,
    )
}

#[tokio::test]
async fn a_component_importing_an_ungranted_interface_is_refused_at_load() {
    let host = TestHost::new().await;
    let diagnostics = host.check(&sneaky(r#"["chat:write"]"#)).expect_err("must be refused");
    let text = render(&diagnostics);
    assert_eq!(diagnostics.len(), 1, "{text}");
    let d = &diagnostics[0];
    assert_eq!(d.pointer, "/nodes/0/capabilities");
    for needle in ["pipeline 'test'", "node 'lookup'", "plugin 'sneaky'", "handoff:plugin/crm", "crm:read"] {
        assert!(d.message.contains(needle) || d.help.contains(needle), "missing {needle:?} in {text}");
    }
}

#[tokio::test]
async fn a_granted_call_reaches_the_provider() {
    let host = TestHost::new().await;
    let crm = Arc::new(RecordingCrm { leads: vec![lead("00Q1", "ann@acme.com", "005A")], ..Default::default() });
    let capabilities = Capabilities { crm: Some(crm.clone()), ..Capabilities::none() };
    let record = host.execute(&sneaky(r#"["crm:read"]"#), json!({"email": "ann@acme.com"}), capabilities).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    assert_eq!(record.runs[0].outputs[0].item, json!({"lead_id": "00Q1", "owner": "005A"}));
    assert_eq!(crm.calls(), ["find_lead_by_email ann@acme.com"]);
}

#[tokio::test]
async fn an_unconfigured_provider_answers_unavailable() {
    let host = TestHost::new().await;
    let record = host.execute(&sneaky(r#"["crm:read"]"#), json!({"email": "ann@acme.com"}), Capabilities::none()).await;
    let error = record.runs[0].outputs[0].item["error"].as_str().unwrap().to_string();
    assert!(error.contains("Unavailable") && error.contains("crm is not configured"), "{error}");
}

#[tokio::test]
async fn a_write_without_the_write_grant_is_denied_and_recorded() {
    let host = TestHost::new().await;
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(FileStateStore::new(dir.path()));
    let capabilities = Capabilities { state: Some(state.clone()), ..Capabilities::none() };
    let pipeline = pipeline_json(
        r#"[{"id": "counter", "plugin": "overreach", "capabilities": ["state:read"]}]"#,
        r#"{"trigger": {"main": ["counter"]}}"#,
    );
    let record = host.execute(&pipeline, json!({}), capabilities).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    let item = &record.runs[0].outputs[0].item;
    assert_eq!(item["read"], "Ok(None)", "the read grant works");
    let write = item["write"].as_str().unwrap();
    assert!(write.starts_with("denied: state:write is not granted to node 'counter' of pipeline 'test'"), "{write}");
    assert_eq!(record.runs[0].denied, ["state:write"]);
    use handoff::capabilities::StateStore;
    assert_eq!(state.get("overreach", "counter", 0).await.unwrap(), None, "nothing was written");
}

#[tokio::test]
async fn a_plugin_missing_a_declared_grant_is_reported_with_the_grant_to_add() {
    let host = TestHost::new().await;
    let pipeline = pipeline_json(
        r#"[{"id": "counter", "plugin": "overreach", "capabilities": []}]"#,
        r#"{"trigger": {"main": ["counter"]}}"#,
    );
    let diagnostics = host.check(&pipeline).expect_err("must be refused");
    assert_eq!(diagnostics.len(), 1, "{}", render(&diagnostics));
    assert!(diagnostics[0].message.contains("plugin 'overreach' needs state:read"), "{}", render(&diagnostics));
    assert_eq!(diagnostics[0].help, "add \"state:read\" to the node's capabilities");
}
