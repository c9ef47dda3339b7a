//! A plugin that stays inside its own run's limits cannot hurt its
//! neighbours: spinning plugins do not starve normal leads, a plugin that
//! keeps hitting its deadline is paused (ops told, its leads waiting),
//! floods of logs and errors are cut before they reach anything, outputs
//! kept in memory are bounded, `describe()` is bounded and cached, and state
//! has a quota. Figures (time to stop, memory, `/healthz` under attack) are
//! in BENCHMARKS.md; these tests assert counts and bounds.

use handoff::capabilities::{Capabilities, StateQuota};
use handoff::ledger::{Ledger, SqliteStore};
use handoff::record::ExecutionStatus;
use handoff::runtime::{PluginSource, Runtime, RuntimeConfig};
use handoff_tests::{
    Running, TestHost, load_program, mql_event, new_contacts, pipeline_json, programs, start_handoff_with,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One `abuse` node doing `mode` sized `n`.
fn abuse(mode: &str, n: u64, extra: &str) -> String {
    pipeline_json(
        &format!(
            r#"[{{"id": "n", "plugin": "abuse", "capabilities": ["state:read", "state:write"],
                 "config": {{"mode": "{mode}", "n": {n}}}, "retry": {{"max_attempts": 1}} {extra}}}]"#
        ),
        r#"{"trigger": {"main": ["n"]}}"#,
    )
}

async fn abuse_host() -> TestHost {
    let mut host = TestHost::new().await;
    host.registry.insert(load_program(&host.runtime, programs::ABUSE).await);
    host
}

fn error_of(record: &handoff::record::ExecutionRecord) -> (&'static str, String) {
    let error = record.runs[0].error.as_ref().expect("the run failed");
    (error.kind, error.message.clone())
}

#[tokio::test]
async fn a_fifty_megabyte_error_is_cut_before_it_is_recorded() {
    let host = abuse_host().await;
    let record =
        host.execute(&abuse("error", 50_000_000, r#", "memory_mb": 256"#), json!({}), Capabilities::none()).await;
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "fatal");
    assert!(message.len() < handoff::runtime::MAX_ERROR_BYTES + 200, "{} bytes", message.len());
    assert!(message.contains("50000000 bytes, cut"), "says how much there was");
    assert!(record.error.as_ref().unwrap().len() < handoff::runtime::MAX_ERROR_BYTES + 400);
}

#[tokio::test]
async fn a_megabyte_port_name_and_a_megabyte_panic_are_cut() {
    let host = abuse_host().await;
    let record = host.execute(&abuse("port", 500_000, ""), json!({}), Capabilities::none()).await;
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "bad-output");
    assert!(message.len() < 400, "{message}");

    let record = host.execute(&abuse("panic", 1 << 20, ""), json!({}), Capabilities::none()).await;
    assert_eq!(error_of(&record).0, "trap");
    let logged: usize = record.runs[0].logs.iter().map(|l| l.message.len()).sum();
    assert!(logged <= handoff::capabilities::MAX_LOG_BYTES, "the panic text kept is bounded: {logged}");
}

#[tokio::test]
async fn a_log_flood_keeps_a_bounded_record_and_counts_the_rest() {
    let host = abuse_host().await;
    // 20,000 lines of 1 KiB through `log`, as many to stderr.
    let record = host.execute(&abuse("log", 20_000, ""), json!({}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{:?}", record.error);
    let logs = &record.runs[0].logs;
    let bytes: usize = logs.iter().map(|l| l.message.len()).sum();
    assert!(logs.len() <= handoff::capabilities::MAX_LOG_LINES, "{} lines", logs.len());
    assert!(bytes <= handoff::capabilities::MAX_LOG_BYTES, "{bytes} bytes");
}

#[tokio::test]
async fn exit_is_reported_as_such_and_runaway_recursion_is_called_a_stack_overflow() {
    let host = abuse_host().await;
    let record = host.execute(&abuse("exit", 42, ""), json!({}), Capabilities::none()).await;
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "exit");
    assert!(message.contains("exited with a failure status"), "{message}");

    let record = host.execute(&abuse("deep", 0, ""), json!({}), Capabilities::none()).await;
    let (kind, message) = error_of(&record);
    assert_eq!(kind, "trap");
    assert!(message.starts_with("trapped: stack overflow"), "{message}");
}

#[tokio::test]
async fn a_plugin_filling_its_state_stops_at_its_quota_with_a_clear_error() {
    let host = abuse_host().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteStore::open(&dir.path().join("handoff.db")).unwrap());
    let capabilities = Capabilities {
        state: Some(ledger.clone()),
        state_quota: StateQuota { max_keys: 300, max_bytes: 1 << 20 },
        ..Capabilities::none()
    };
    let record = host.execute(&abuse("hoard", 100, r#", "timeout": "60s""#), json!({}), capabilities).await;
    let out = &record.runs[0].outputs[0].item;
    assert_eq!(out["kept"], 300, "{out:?}");
    assert!(out["stopped"].as_str().unwrap().contains("state quota: plugin abuse holds 300 keys"), "{out:?}");

    // Bytes too: 2 KiB values stop at 512 KiB.
    let capabilities = Capabilities {
        state: Some(ledger),
        state_quota: StateQuota { max_keys: 10_000, max_bytes: 512 * 1024 },
        ..Capabilities::none()
    };
    let record = host.execute(&abuse("hoard", 2048, r#", "timeout": "60s""#), json!({}), capabilities).await;
    let out = &record.runs[0].outputs[0].item;
    assert!(out["stopped"].as_str().unwrap().contains("the limit is 524288"), "{out:?}");
    let kept = out["kept"].as_u64().unwrap();
    assert!((200..=256).contains(&kept), "the first 300 keys are overwritten, then room for the rest: {kept}");
}

#[tokio::test]
async fn a_plugin_that_keeps_hitting_its_deadline_is_paused_and_others_go_on() {
    let mut config = RuntimeConfig::new(handoff_tests::shared_cache_dir());
    config.max_concurrent_runs = 32;
    config.breaker = handoff::runtime::BreakerConfig {
        trip_after: 3,
        pause: Duration::from_secs(60),
        max_pause: Duration::from_secs(60),
    };
    let runtime = Runtime::new(config).unwrap();
    let host = {
        let mut host = TestHost::new().await;
        host.runtime = runtime.clone();
        for path in [programs::SPIN, programs::ECHO] {
            host.registry.insert(load_program(&runtime, path).await);
        }
        host
    };
    let spin = pipeline_json(
        r#"[{"id": "n", "plugin": "spin", "timeout": "50ms", "retry": {"max_attempts": 1}}]"#,
        r#"{"trigger": {"main": ["n"]}}"#,
    );
    for _ in 0..3 {
        let record = host.execute(&spin, json!({}), Capabilities::none()).await;
        assert_eq!(error_of(&record).0, "timeout");
    }
    let pauses = runtime.take_pauses();
    assert_eq!(pauses.len(), 1, "one pause, for ops: {pauses:?}");
    assert_eq!((pauses[0].plugin.as_str(), pauses[0].pause_ms), ("spin", 60_000));
    let record = host.execute(&spin, json!({}), Capabilities::none()).await;
    let error = record.runs[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "paused");
    assert!(error.retryable, "its leads wait instead of failing: {}", error.message);
    assert_eq!(runtime.paused_plugins().len(), 1);
    let echo = pipeline_json(r#"[{"id": "n", "plugin": "echo"}]"#, r#"{"trigger": {"main": ["n"]}}"#);
    let record = host.execute(&echo, json!({"ok": true}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "other plugins are not paused");
}

/// Loads a component into a runtime with its own cache in `dir`.
/// The load's error, in full.
async fn load_error(dir: &Path, path: &str) -> String {
    let runtime = handoff_tests::runtime(dir);
    let bytes = std::fs::read(path).unwrap();
    let loaded = runtime.load(PluginSource::File(path.into()), bytes).await;
    format!("{:#}", loaded.expect_err("the load is refused"))
}

#[tokio::test]
async fn a_huge_describe_is_refused_before_its_schema_is_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_error(dir.path(), programs::VAST).await;
    assert!(error.contains("describe() returned") && error.contains("the limit is 262144"), "{error}");
}

#[tokio::test]
async fn a_describe_that_loops_is_stopped_at_two_seconds_and_not_asked_again() {
    let dir = tempfile::tempdir().unwrap();
    let error = load_error(dir.path(), programs::STALL).await;
    assert!(error.contains("describe() did not return within 2 s"), "{error}");
    let cached: Vec<PathBuf> = std::fs::read_dir(dir.path().join("cache/components"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".describe.json"))
        .collect();
    assert_eq!(cached.len(), 1, "the refusal is cached with the compiled component");
    // A second load (a restart) reads the answer instead of running the
    // loop again: the stored refusal is what it reports.
    std::fs::write(
        &cached[0],
        serde_json::to_vec(&json!({"Err": "describe() did not return within 2 s (cached)"})).unwrap(),
    )
    .unwrap();
    assert!(load_error(dir.path(), programs::STALL).await.contains("(cached)"));
}

/// A Handoff server with the shipped MQL pipeline plus `extra` pipelines,
/// loading the test programs in `programs`.
async fn server_with(extra: &[(&str, Value)], programs: &[(&str, &str)]) -> (Running, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (name, path) in programs {
        std::fs::copy(path, plugins.join(format!("{name}.wasm"))).unwrap();
    }
    let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/mql-handoff.json")];
    for (name, pipeline) in extra {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, pipeline.to_string()).unwrap();
        files.push(path);
    }
    let roster = handoff_tests::open_roster(dir.path());
    let running = start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |o| {
        handoff::app::AppOptions { pipelines: files, plugin_dirs: vec![plugins], roster, ..o }
    })
    .await;
    (running, dir)
}

/// A webhook pipeline (no signature) at `/webhooks/<name>` running one node.
fn webhook_pipeline(name: &str, node: Value) -> Value {
    json!({
        "name": name, "version": 1,
        "trigger": {"type": "webhook", "path": format!("/webhooks/{name}"), "signature": "none"},
        "nodes": [node],
        "connections": {"trigger": {"main": [node["id"]]}}
    })
}

async fn post(running: &Running, path: &str, events: &Value) {
    let url = format!("http://{}{path}", running.app.server.addr);
    let response = reqwest::Client::new().post(url).json(events).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn state_of(running: &Running, lead: u64) -> String {
    let ledger = SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap();
    ledger.lead(&lead.to_string()).await.unwrap().map(|l| l.state.as_str().to_string()).unwrap_or_default()
}

#[tokio::test]
async fn spinning_plugins_do_not_starve_normal_leads_or_the_server() {
    let spin = webhook_pipeline(
        "spin",
        json!({"id": "spin", "plugin": "spin", "timeout": "2s", "retry": {"max_attempts": 1}}),
    );
    let (running, _dir) = server_with(&[("spin", spin)], &[("spin", programs::SPIN)]).await;
    let contacts = new_contacts(&running, 8).await;

    // Three runs that spin for their whole 2 s, then eight normal leads.
    post(&running, "/webhooks/spin", &json!((0..3).map(|i| mql_event(7_000 + i, 90_000 + i)).collect::<Vec<_>>()))
        .await;
    let events: Vec<Value> = contacts.iter().enumerate().map(|(i, c)| mql_event(8_000 + i as u64, *c)).collect();
    let response = handoff_tests::post_webhook(&running, &json!(events), handoff_emulators::SECRET).await;
    assert_eq!(response.status(), 200);
    // The server answers while they spin.
    let http = reqwest::Client::new();
    let mut answered = 0;
    for _ in 0..20 {
        let health = http.get(format!("http://{}/healthz", running.app.server.addr)).send().await.unwrap();
        answered += usize::from(health.status() == 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered, 20, "/healthz answers every time");
    assert!(running.app.server.settle(Duration::from_secs(120)).await);
    for contact in &contacts {
        assert_eq!(state_of(&running, *contact).await, "notified", "lead {contact}");
    }
    for spinner in 90_000..90_003 {
        assert_eq!(state_of(&running, spinner).await, "failed", "the spinners hit their deadline");
    }
}

#[tokio::test]
async fn a_paused_plugin_alerts_ops_once_and_its_next_lead_waits() {
    let spin = webhook_pipeline(
        "spin",
        json!({"id": "spin", "plugin": "spin", "timeout": "50ms", "retry": {"max_attempts": 1}}),
    );
    let (running, _dir) = server_with(&[("spin", spin)], &[("spin", programs::SPIN)]).await;
    for i in 0..5 {
        post(&running, "/webhooks/spin", &json!([mql_event(7_100 + i, 91_000 + i)])).await;
        assert!(running.app.server.settle(Duration::from_secs(30)).await);
    }
    let alerts = || {
        let world = running.emulators.state.world();
        world.slack.messages.iter().filter(|m| m.text.contains("Plugin `spin` is paused")).count()
    };
    for _ in 0..100 {
        if alerts() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(alerts(), 1, "ops hear of the pause");
    let ready: Value =
        reqwest::get(format!("http://{}/readyz", running.app.server.addr)).await.unwrap().json().await.unwrap();
    assert_eq!(ready["paused_plugins"][0]["plugin"], "spin", "{ready}");
    post(&running, "/webhooks/spin", &json!([mql_event(7_200, 91_100)])).await;
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    assert_eq!(state_of(&running, 91_100).await, "waiting", "not failed: it runs again when the plugin is back");
    assert_eq!(alerts(), 1, "once");
}

#[tokio::test]
async fn the_executions_api_pages_within_its_byte_cap_and_keeps_large_items_as_their_hash() {
    let big = webhook_pipeline(
        "big",
        json!({"id": "big", "plugin": "abuse", "capabilities": ["state:read", "state:write"],
        "config": {"mode": "output", "n": 1_000_000}}),
    );
    let (running, _dir) = server_with(&[("big", big)], &[("abuse", programs::ABUSE)]).await;
    for chunk in 0..4u64 {
        let events: Vec<Value> = (0..5).map(|i| mql_event(7_300 + chunk * 5 + i, 92_000 + chunk * 5 + i)).collect();
        post(&running, "/webhooks/big", &json!(events)).await;
    }
    assert!(running.app.server.settle(Duration::from_secs(60)).await);
    let http = reqwest::Client::new();
    let base = format!("http://{}/api/executions", running.app.server.addr);
    let (mut seen, mut next, mut pages) = (0, None::<u64>, 0);
    loop {
        let url = match next {
            Some(before) => format!("{base}?limit=50&before={before}"),
            None => format!("{base}?limit=50"),
        };
        let body = http.get(url).send().await.unwrap().bytes().await.unwrap();
        assert!(body.len() <= 4 * 1024 * 1024, "a page is at most 4 MiB: {}", body.len());
        let page: Value = serde_json::from_slice(&body).unwrap();
        for entry in page["executions"].as_array().unwrap() {
            let end = &entry["execution"]["record"]["ends"][0]["item"];
            assert_eq!(end["truncated"], true, "{end}");
            assert_eq!(end["bytes"], 1_000_000);
            assert_eq!(end["sha256"].as_str().map(str::len), Some(64));
            seen += 1;
        }
        pages += 1;
        match page["next"].as_u64() {
            Some(before) => next = Some(before),
            None => break,
        }
    }
    assert_eq!(seen, 20, "every execution, over {pages} page(s)");
}
