//! Lead states are declared, not coded in the host: a plugin the host has
//! never heard of says what its output means for a lead, and the ledger,
//! the API and `handoff lead list` show it.

use handoff::ledger::SqliteStore;
use handoff_tests::{Running, mql_event, programs, start_handoff_with};
use serde_json::{Value, json};
use std::time::Duration;

/// The emulators and a server running one pipeline: the webhook straight
/// into the `stamp` test program, loaded from a plugin directory.
async fn start_with_stamp() -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(programs::STAMP, plugins.join("stamp.wasm")).unwrap();
    let pipeline = dir.path().join("stamped.json");
    let json = json!({
        "name": "stamped", "version": 1,
        "trigger": {"type": "webhook", "path": "/hooks/stamp", "signature": "none"},
        "nodes": [{"id": "stamp", "plugin": "stamp"}],
        "connections": {"trigger": {"main": ["stamp"]}}
    });
    std::fs::write(&pipeline, json.to_string()).unwrap();
    let running = start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |options| {
        handoff::app::AppOptions { plugin_dirs: vec![plugins.clone()], pipelines: vec![pipeline.clone()], ..options }
    })
    .await;
    (running, dir)
}

#[tokio::test]
async fn a_state_a_plugin_declares_shows_in_the_ledger_the_api_and_handoff_leads() {
    let (running, _dir) = start_with_stamp().await;
    let url = format!("http://{}/hooks/stamp", running.app.server.addr);
    let response = reqwest::Client::new().post(&url).json(&json!([mql_event(9001, 4242)])).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(running.app.server.settle(Duration::from_secs(30)).await);

    let base = format!("http://{}", running.app.server.addr);
    let scored: Value = reqwest::get(format!("{base}/api/leads?state=scored")).await.unwrap().json().await.unwrap();
    assert_eq!(scored[0]["id"], "4242", "{scored}");
    let lead: Value = reqwest::get(format!("{base}/api/leads/4242")).await.unwrap().json().await.unwrap();
    assert_eq!(lead["state"], "scored");
    let detail = lead["timeline"][0]["detail"].as_str().unwrap();
    assert!(detail.starts_with("scored ") && detail.ends_with(" by stamp"), "{detail}");

    let ledger = SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap();
    let table = handoff::cli::leads_report(&ledger, Some("scored"), 10, false).await.unwrap();
    assert!(table.contains("4242") && table.contains("scored") && table.contains("1 lead(s)"), "{table}");
    let refused = handoff::cli::leads_report(&ledger, Some("bogus"), 10, false).await.unwrap_err();
    assert!(refused.to_string().contains("scored"), "the message lists the states there are: {refused}");
}

#[tokio::test]
async fn a_pipeline_node_can_say_what_a_port_means_instead_of_the_plugin() {
    let host = handoff_tests::TestHost::new().await;
    let json = handoff_tests::pipeline_json(
        r#"[{"id": "a", "plugin": "echo", "lead": {"other": {"state": "parked", "detail": "parked by {/who}", "phase": "ended"}}}]"#,
        r#"{"trigger": {"main": ["a"]}}"#,
    );
    let prepared = host.prepare(&json);
    let marks = prepared.lead_marks("a").unwrap();
    assert_eq!(marks["other"].lead_state().unwrap().as_str(), "parked");
    assert!(prepared.lead_states().iter().any(|s| s.as_str() == "parked" && s.is_final()));

    let check = |lead: &str| {
        let nodes = format!(r#"[{{"id": "a", "plugin": "echo", "lead": {lead}}}]"#);
        let json = handoff_tests::pipeline_json(&nodes, r#"{"trigger": {"main": ["a"]}}"#);
        handoff_tests::render(&host.check(&json).unwrap_err())
    };
    let unknown_port = check(r#"{"nowhere": {"state": "x"}}"#);
    assert!(
        unknown_port.contains("/nodes/0/lead/nowhere") && unknown_port.contains("no output port"),
        "{unknown_port}"
    );
    let bad_name = check(r#"{"main": {"state": "Bad Name"}}"#);
    assert!(bad_name.contains("/nodes/0/lead/main/state"), "{bad_name}");
    let bad_pointer = check(r#"{"main": {"state": "ok", "owner": "routing/owner"}}"#);
    assert!(bad_pointer.contains("is not a JSON pointer"), "{bad_pointer}");
}
