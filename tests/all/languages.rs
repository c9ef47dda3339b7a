//! Plugins in Python and JavaScript, built with the real toolchains, routing
//! leads in a pipeline beside the Rust plugins, against the sandbox.

use handoff::capabilities::Capabilities;
use handoff::pipeline::{Executor, Start};
use handoff::record::ExecutionStatus;
use handoff::roster::FileRoster;
use handoff::runtime::{CacheOutcome, PluginSource};
use handoff_tests::toolchains::{build_js, build_python, example};
use handoff_tests::{TestHost, emulator_connectors, emulators, load_program, runtime};
use serde_json::json;
use std::sync::Arc;

fn pipeline(router: &str) -> String {
    let config = json!({
        "threshold": 60,
        "teams": {
            "EMEA": {"enterprise": "emea-enterprise", "standard": "emea"},
            "NA": {"enterprise": "na-enterprise", "standard": "na"},
            "APAC": {"enterprise": "apac", "standard": "apac"}
        },
        "fallback_owner_id": "00G000000000001AAA",
        "fallback_owner_name": "Unassigned MQL Queue"
    });
    format!(
        r#"{{"name": "custom-routing", "version": 1,
        "trigger": {{"type": "webhook", "path": "/hook", "signature": "none"}},
        "nodes": [
            {{"id": "fetch", "plugin": "fetch-contact", "capabilities": ["marketing:read"]}},
            {{"id": "validate", "plugin": "validate"}},
            {{"id": "route", "plugin": "{router}", "capabilities": ["roster:read", "state:read", "state:write"], "timeout": "10s", "config": {config}}},
            {{"id": "assign", "plugin": "assign", "capabilities": ["crm:write"]}},
            {{"id": "notify", "plugin": "notify", "capabilities": ["chat:write", "email:send", "crm:read", "crm:write", "state:read", "state:write"]}}
        ],
        "connections": {{"trigger": {{"main": ["fetch"]}}, "fetch": {{"main": ["validate"]}}, "validate": {{"valid": ["route"]}},
            "route": {{"routed": ["assign"]}}, "assign": {{"assigned": ["notify"]}}}}}}"#
    )
}

async fn route_one_lead(component: &str, router: &str) {
    let host = TestHost::new().await;
    let mut registry = host.registry.clone();
    registry.insert(load_program(&host.runtime, component).await);
    let sb = emulators().await;
    let roster =
        FileRoster::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/roster.json")).unwrap();
    let state = tempfile::tempdir().unwrap();
    let local = Capabilities {
        roster: Some(Arc::new(roster)),
        state: Some(Arc::new(handoff::capabilities::FileStateStore::new(state.path()))),
        clock: handoff::demo::demo_clock(),
        ..Capabilities::none()
    };
    let capabilities = emulator_connectors(&sb).connect(local).unwrap();
    let prepared = handoff::pipeline::check(std::path::Path::new("custom.json"), &pipeline(router), &registry)
        .unwrap_or_else(|d| panic!("{}", handoff_tests::render(&d)));
    // No `memory_mb` on the node: the interpreter's plugin gets the cap it
    // needs (256 MiB), a Rust plugin the standard 64 MiB.
    let language = registry.get(router).unwrap().info.language.clone();
    assert!(matches!(language.as_deref(), Some("python" | "javascript")), "{language:?}");
    assert_eq!(prepared.node("route").unwrap().limits.memory_bytes, 256 * 1024 * 1024);
    assert_eq!(prepared.node("fetch").unwrap().limits.memory_bytes, 64 * 1024 * 1024);
    assert_eq!(host.registry.get("fetch-contact").unwrap().info.language, None);
    let executor = Executor::new(host.runtime.clone(), Arc::new(capabilities));
    // Priya Raman: Germany, 1200 employees, score 78: the EMEA enterprise team.
    let record = executor.execute(&prepared, json!({"event": {"objectId": 1001}}), Start::Trigger, None).await;
    assert_eq!(
        record.status,
        ExecutionStatus::Completed,
        "{:#?}",
        record.runs.iter().map(|r| (&r.node, &r.error, &r.logs)).collect::<Vec<_>>()
    );
    let routed = record.runs.iter().find(|r| r.node == "route").unwrap();
    let routing = &routed.outputs[0].item["routing"];
    assert!(routing["explanation"].as_str().unwrap().contains("enterprise tier"), "{routing}");
    assert!(routed.logs.iter().any(|l| l.message.contains("fit score")), "the plugin's log line reached the host");
    let email = routing["owner_email"].as_str().unwrap();
    assert!(["lena.fischer@handoff-demo.com", "aisha.khan@handoff-demo.com"].contains(&email), "{routing}");
    let world = sb.state.world();
    assert!(world.slack.messages.iter().any(|m| m.recipient.as_deref() == Some(email)), "the routed rep got the DM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_routes_a_lead_in_a_pipeline() {
    let wasm = build_python(&example("score-router-py"), "score-router", "app");
    route_one_lead(wasm.to_str().unwrap(), "score-router-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_routes_a_lead_in_a_pipeline() {
    let wasm = build_js(&example("score-router-js"), "score-router", "router.js");
    route_one_lead(wasm.to_str().unwrap(), "score-router-js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_components_are_compiled_once_then_cached() {
    let dir = tempfile::tempdir().unwrap();
    for wasm in [
        build_python(&example("score-router-py"), "score-router", "app"),
        build_js(&example("score-router-js"), "score-router", "router.js"),
    ] {
        let bytes = std::fs::read(&wasm).unwrap();
        let first = runtime(dir.path()).load(PluginSource::File(wasm.clone()), bytes.clone()).await.unwrap();
        assert!(matches!(first.info.cache, CacheOutcome::Compiled { .. }));
        let second = runtime(dir.path()).load(PluginSource::File(wasm.clone()), bytes).await.unwrap();
        assert_eq!(second.info.cache, CacheOutcome::Hit, "{} was not recompiled", wasm.display());
        assert_eq!(second.info.imports.len(), 4, "roster, state, clock, log: {:?}", second.info.imports);
    }
}
