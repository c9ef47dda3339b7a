//! `handoff validate`: every class of problem is found, and each diagnostic
//! names the JSON pointer, the line and what to do.

use handoff::pipeline::Diagnostic;
use handoff_tests::{TestHost, pipeline_json, render};

/// Checks `json` and returns its diagnostics, which must not be empty.
async fn problems(json: &str) -> Vec<Diagnostic> {
    let host = TestHost::new().await;
    host.check(json).expect_err("the pipeline should be invalid")
}

/// The one diagnostic at `pointer`.
fn at<'a>(diagnostics: &'a [Diagnostic], pointer: &str) -> &'a Diagnostic {
    diagnostics
        .iter()
        .find(|d| d.pointer == pointer)
        .unwrap_or_else(|| panic!("no diagnostic at {pointer}:\n{}", render(diagnostics)))
}

const TRIGGER: &str = r#""trigger": {"main": ["a"]}"#;

#[tokio::test]
async fn every_shipped_pipeline_is_valid() {
    let host = TestHost::new().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let is_pipeline = text.contains("\"$schema\": \"./pipeline.schema.json\"");
        if path.extension().is_some_and(|e| e == "json") && is_pipeline {
            if let Err(d) = handoff::pipeline::load_file(&path, &host.registry) {
                panic!("{} is invalid:\n{}", path.display(), render(&d));
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "mql-intake and mql-handoff");
}

#[test]
fn the_shipped_roster_is_valid() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/roster.json")).unwrap();
    let roster = handoff::roster::RosterFile::parse(&text).unwrap();
    assert!(roster.teams.iter().all(|t| !t.members.is_empty()));
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/pipeline.schema.json")).unwrap();
    assert!(
        committed == handoff::cli::pipeline_schema_text(),
        "pipelines/pipeline.schema.json is stale: run `handoff schema -o pipelines/pipeline.schema.json`"
    );
}

#[tokio::test]
async fn malformed_json_reports_line_and_column() {
    let d = problems("{\n  \"name\": \"x\",\n  \"version\": 1,\n}").await;
    assert_eq!(d.len(), 1);
    let position = d[0].position.unwrap();
    assert_eq!((position.line, position.column), (4, 1));
    assert!(d[0].message.starts_with("not valid JSON"), "{}", d[0].message);
    assert!(d[0].to_string().starts_with("pipeline.json:4:1: error"), "{}", d[0]);
}

#[tokio::test]
async fn a_stray_bracket_or_deep_nesting_is_an_error_not_a_hang() {
    // `[}` once spun the line locator forever; 50,000 `[` overflowed its stack.
    for text in ["[}".to_string(), "{\"name\": [}".to_string(), "[".repeat(50_000), "{\"a\":".repeat(50_000)] {
        let d = problems(&text).await;
        assert!(d[0].message.starts_with("not valid JSON"), "{}", d[0]);
        assert_eq!(d[0].position.map(|p| p.line), Some(1), "{}", d[0]);
    }
}

#[tokio::test]
async fn a_webhook_cannot_take_a_route_the_server_owns() {
    // `/api/sweep` once passed here, then made `serve` panic at start.
    for (path, owner) in [
        ("/api/sweep", "the API"),
        ("/api", "the API"),
        ("/", "the dashboard"),
        ("/leads/42", "the dashboard's lead pages"),
        ("/healthz", "the health check"),
        ("/readyz", "the readiness check"),
        ("/metrics", "the Prometheus metrics"),
    ] {
        let json = pipeline_json(r#"[{"id": "a", "plugin": "echo"}]"#, &format!("{{{TRIGGER}}}"))
            .replace("\"path\": \"/hook\"", &format!("\"path\": \"{path}\""));
        let d = problems(&json).await;
        let problem = at(&d, "/trigger/path");
        assert!(problem.message.contains(owner), "{path}: {problem}");
        assert_eq!(problem.position.map(|p| p.line), Some(4), "{problem}");
    }
    let host = TestHost::new().await;
    for path in ["/apis", "/leadsx", "/webhooks/api", "/metrics2"] {
        let json = pipeline_json(r#"[{"id": "a", "plugin": "echo"}]"#, &format!("{{{TRIGGER}}}"))
            .replace("\"path\": \"/hook\"", &format!("\"path\": \"{path}\""));
        if let Err(d) = host.check(&json) {
            panic!("{path} is free:\n{}", render(&d));
        }
    }
}

#[tokio::test]
async fn schema_violations_point_at_the_field_and_its_line() {
    let json = pipeline_json(r#"[{"id": "a", "plugin": "echo", "retyr": {}}]"#, &format!("{{{TRIGGER}}}"));
    let d = problems(&json).await;
    let problem = at(&d, "/nodes/0");
    assert!(problem.message.contains("retyr"), "{}", render(&d));
    assert!(problem.help.contains("'retyr'"), "{}", problem.help);
    assert_eq!(problem.position.unwrap().line, 5, "the line of the node");

    let json = r#"{"name": "Bad Name", "version": 0, "trigger": {"type": "webhook", "path": "/x", "signature": "hubspot-v9"}, "nodes": []}"#;
    let d = problems(json).await;
    for pointer in ["/name", "/version", "/trigger", "/nodes"] {
        at(&d, pointer);
    }
}

#[tokio::test]
async fn a_missing_required_field_says_what_to_add() {
    let d = problems(r#"{"name": "x", "trigger": {"type": "timer"}, "nodes": [{"id": "a", "plugin": "echo"}]}"#).await;
    let problem = at(&d, "");
    assert!(problem.help.contains("version"), "{}", render(&d));
}

#[tokio::test]
async fn unknown_plugins_list_what_is_loaded() {
    let d = problems(&pipeline_json(r#"[{"id": "a", "plugin": "valdate"}]"#, &format!("{{{TRIGGER}}}"))).await;
    let problem = at(&d, "/nodes/0/plugin");
    assert!(problem.message.contains("unknown plugin 'valdate'"));
    assert!(problem.help.contains("validate") && problem.help.contains("--plugins"), "{}", problem.help);
}

#[tokio::test]
async fn unknown_ports_sources_and_targets() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "validate"}, {"id": "b", "plugin": "echo"}]"#,
        r#"{"trigger": {"main": ["a"]}, "a": {"valid": ["b", "c"], "maybe": ["b"], "error": ["b"]}, "ghost": {"main": ["b"]}}"#,
    );
    let d = problems(&json).await;
    let port = at(&d, "/connections/a/maybe");
    assert!(port.message.contains("no output port 'maybe'") && port.help.contains("valid, invalid"), "{}", render(&d));
    let error_port = at(&d, "/connections/a/error");
    assert!(error_port.message.contains("on_error"), "{}", error_port.message);
    assert!(at(&d, "/connections/a/valid/1").message.contains("'c'"));
    assert!(at(&d, "/connections/ghost").message.contains("'ghost'"));
}

#[tokio::test]
async fn cycles_are_named_node_by_node() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo"}, {"id": "b", "plugin": "echo"}, {"id": "c", "plugin": "echo"}]"#,
        r#"{"trigger": {"main": ["a"]}, "a": {"main": ["b"]}, "b": {"main": ["c"]}, "c": {"other": ["a"]}}"#,
    );
    let d = problems(&json).await;
    assert_eq!(d.len(), 1, "{}", render(&d));
    assert!(d[0].message.contains("a → b → c → a"), "{}", d[0].message);
    assert!(d[0].help.contains("schedule"), "{}", d[0].help);
}

#[tokio::test]
async fn unreachable_nodes_and_an_unconnected_trigger() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo"}, {"id": "island", "plugin": "echo"}]"#,
        &format!("{{{TRIGGER}}}"),
    );
    let d = problems(&json).await;
    assert!(at(&d, "/nodes/1").message.contains("'island' is unreachable"));

    let json = pipeline_json(r#"[{"id": "a", "plugin": "echo"}]"#, "{}");
    let d = problems(&json).await;
    assert!(at(&d, "/connections").message.contains("nothing is connected to the trigger"));
}

#[tokio::test]
async fn duplicate_and_reserved_node_ids() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo"}, {"id": "a", "plugin": "echo"}, {"id": "trigger", "plugin": "echo"}]"#,
        &format!("{{{TRIGGER}}}"),
    );
    let d = problems(&json).await;
    assert!(at(&d, "/nodes/1/id").message.contains("already used by /nodes/0"));
    assert!(at(&d, "/nodes/2/id").message.contains("reserved"));
}

#[tokio::test]
async fn node_config_is_checked_against_the_plugin_schema() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "validate", "config": {"min_score": "high", "free_mail": "sometimes", "min_scor": 1}}]"#,
        &format!("{{{TRIGGER}}}"),
    );
    let d = problems(&json).await;
    assert!(at(&d, "/nodes/0/config/min_score").message.contains("config for plugin 'validate'"));
    at(&d, "/nodes/0/config/free_mail");
    assert!(at(&d, "/nodes/0/config").message.contains("min_scor"), "{}", render(&d));
    assert!(d.iter().all(|p| p.help.contains("handoff plugin schema validate")));
    assert_eq!(at(&d, "/nodes/0/config/min_score").position.unwrap().line, 5);
}

#[tokio::test]
async fn bad_durations_cron_and_backoff() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo", "timeout": "2 seconds"}, {"id": "b", "plugin": "echo", "timeout": "10m"},
            {"id": "c", "plugin": "echo", "retry": {"backoff": {"initial": "1m", "max": "1s"}}}]"#,
        r#"{"trigger": {"main": ["a", "b", "c"]}}"#,
    );
    let d = problems(&json).await;
    at(&d, "/nodes/0/timeout");

    let json = pipeline_json(
        r#"[{"id": "b", "plugin": "echo", "timeout": "10m"}, {"id": "c", "plugin": "echo", "retry": {"backoff": {"initial": "1m", "max": "1s"}}}]"#,
        r#"{"trigger": {"main": ["b", "c"]}}"#,
    );
    let d = problems(&json).await;
    assert!(at(&d, "/nodes/0/timeout").help.contains("at most 300s"));
    assert!(at(&d, "/nodes/1/retry/backoff").message.contains("longer than max"));

    let json = r#"{"name": "t", "version": 1, "trigger": {"type": "schedule", "cron": "*/5 * * *"},
        "nodes": [{"id": "a", "plugin": "echo"}], "connections": {"trigger": {"main": ["a"]}}}"#;
    let d = problems(json).await;
    assert!(at(&d, "/trigger/cron").message.contains("4 fields"), "{}", render(&d));
}

#[tokio::test]
async fn unknown_capability_names_are_schema_errors() {
    let json =
        pipeline_json(r#"[{"id": "a", "plugin": "echo", "capabilities": ["crm:delete"]}]"#, &format!("{{{TRIGGER}}}"));
    let d = problems(&json).await;
    let problem = at(&d, "/nodes/0/capabilities/0");
    assert!(problem.help.contains("crm:read"), "{}", problem.help);
}

#[tokio::test]
async fn all_problems_are_reported_at_once() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "nope"}, {"id": "b", "plugin": "echo", "config": {"copies": -1}}, {"id": "c", "plugin": "echo"}]"#,
        r#"{"trigger": {"main": ["a", "b"]}, "b": {"main": ["zzz"]}}"#,
    );
    let d = problems(&json).await;
    let pointers: Vec<&str> = d.iter().map(|p| p.pointer.as_str()).collect();
    for expected in ["/nodes/0/plugin", "/nodes/1/config/copies", "/connections/b/main/0", "/nodes/2"] {
        assert!(pointers.contains(&expected), "{expected} missing from {pointers:?}");
    }
}

#[tokio::test]
async fn a_merge_names_its_inputs_by_the_nodes_that_feed_it() {
    let json = pipeline_json(
        r#"[
            {"id": "a", "plugin": "echo"},
            {"id": "b", "plugin": "echo"},
            {"id": "c", "plugin": "echo"},
            {"id": "join", "plugin": "merge", "retry": {"max_attempts": 2}, "config": {"inputs": [
                {"name": "first", "from": ["a"]}, {"name": "second", "from": ["nowhere"]}]}}
        ]"#,
        r#"{"trigger": {"main": ["a", "b", "c"]}, "a": {"main": ["join"]}, "b": {"main": ["join"]}, "c": {"main": ["join"]}}"#,
    );
    let diagnostics = problems(&json).await;
    let missing = at(&diagnostics, "/nodes/3/config/inputs/1/from/0");
    assert!(missing.message.contains("'nowhere' sends nothing to 'join'"), "{}", missing.message);
    let unlisted = at(&diagnostics, "/connections/b");
    assert!(unlisted.message.contains("none of its inputs lists 'b'"), "{}", unlisted.message);
    at(&diagnostics, "/connections/c");
    let retry = at(&diagnostics, "/nodes/3/retry");
    assert!(retry.message.contains("runs no plugin"), "{}", retry.message);
}

#[tokio::test]
async fn a_bad_merge_config_is_named_and_a_merge_cannot_wait_on_itself() {
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo"},
            {"id": "join", "plugin": "merge", "config": {"inputs": [{"name": "x", "from": ["a"]}], "mode": "sometimes"}}]"#,
        r#"{"trigger": {"main": ["a"]}, "a": {"main": ["join"]}}"#,
    );
    let diagnostics = problems(&json).await;
    assert!(at(&diagnostics, "/nodes/1/config").message.contains("sometimes"), "{}", render(&diagnostics));

    // An input fed from downstream of the merge would wait forever: a cycle.
    let json = pipeline_json(
        r#"[{"id": "a", "plugin": "echo"}, {"id": "b", "plugin": "echo"},
            {"id": "join", "plugin": "merge", "config": {"inputs": [{"name": "x", "from": ["a"]}, {"name": "y", "from": ["b"]}]}}]"#,
        r#"{"trigger": {"main": ["a"]}, "a": {"main": ["join"]}, "join": {"main": ["b"]}, "b": {"main": ["join"]}}"#,
    );
    let diagnostics = problems(&json).await;
    assert!(diagnostics.iter().any(|d| d.message.contains("cycle")), "{}", render(&diagnostics));
}

#[tokio::test]
async fn a_shadow_pipeline_names_a_served_live_pipeline() {
    let base = || pipeline_json(r#"[{"id": "a", "plugin": "echo"}]"#, &format!("{{{TRIGGER}}}"));
    let with = |fields: &str| base().replace("\"version\": 1,", &format!("\"version\": 1, {fields}"));
    let d = problems(&with(r#""mode": "shadow","#)).await;
    assert!(at(&d, "/mode").help.contains("\"shadows\""), "{}", render(&d));
    let d = problems(&with(r#""shadows": "live","#)).await;
    assert!(at(&d, "/shadows").help.contains("\"mode\": \"shadow\""), "{}", render(&d));
    let d = problems(&with(r#""mode": "shadow", "shadows": "test","#)).await;
    assert!(at(&d, "/shadows").message.contains("cannot shadow itself"), "{}", render(&d));

    // Served together: the live pipeline must be there, and the shadow may
    // share its webhook path (it never listens).
    let host = TestHost::new().await;
    let live = host.prepare(&base().replace("\"name\": \"test\"", "\"name\": \"live\""));
    let shadow = host
        .prepare(&with(r#""mode": "shadow", "shadows": "live","#).replace("\"name\": \"test\"", "\"name\": \"try\""));
    assert!(handoff::pipeline::check_together(&[live, shadow], None).is_empty());
    let live = host.prepare(&base().replace("\"name\": \"test\"", "\"name\": \"other\""));
    let shadow = host
        .prepare(&with(r#""mode": "shadow", "shadows": "live","#).replace("\"name\": \"test\"", "\"name\": \"try\""));
    let d = handoff::pipeline::check_together(&[live, shadow], None);
    let problem = at(&d, "/shadows");
    assert!(problem.message.contains("'live', which is not among the pipelines served"), "{problem}");
    assert!(problem.help.contains("other"), "{problem}");
}
