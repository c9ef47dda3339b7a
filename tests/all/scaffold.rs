//! `handoff plugin new` makes a plugin that builds with its language's real
//! toolchain and runs in the host.

use handoff::capabilities::Capabilities;
use handoff::record::ExecutionStatus;
use handoff::scaffold::{Lang, create};
use handoff_tests::toolchains::{build_js, build_python, root};
use handoff_tests::{TestHost, load_program};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

fn build_rust(dir: &Path, name: &str) -> PathBuf {
    let target = root().join("scaffold-target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(dir)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo build failed:\n{}", String::from_utf8_lossy(&output.stderr));
    target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")))
}

async fn tags_an_item(lang: Lang, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join(name);
    let files = create(name, lang, &project).unwrap();
    assert!(files.iter().any(|f| f.ends_with("wit/deps/handoff-plugin/world.wit")), "the WIT is vendored");
    let wasm = match lang {
        Lang::Rust => build_rust(&project, name),
        Lang::Python => build_python(&project, "plugin", "app"),
        Lang::Js => build_js(&project, "plugin", "plugin.js"),
    };
    let host = TestHost::new().await;
    let mut registry = host.registry.clone();
    registry.insert(load_program(&host.runtime, wasm.to_str().unwrap()).await);
    let pipeline = format!(
        r#"{{"name": "t", "version": 1, "trigger": {{"type": "event", "name": "test"}},
            "nodes": [{{"id": "tag", "plugin": "{name}", "config": {{"tag": "hot"}}, "memory_mb": 256, "timeout": "10s"}}],
            "connections": {{"trigger": {{"main": ["tag"]}}}}}}"#
    );
    let prepared = handoff::pipeline::check(Path::new("t.json"), &pipeline, &registry)
        .unwrap_or_else(|d| panic!("{}", handoff_tests::render(&d)));
    let record = handoff::pipeline::Executor::new(host.runtime.clone(), std::sync::Arc::new(Capabilities::none()))
        .execute(&prepared, json!({"lead": 1}), handoff::pipeline::Start::Trigger, None)
        .await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{:?}", record.runs[0].error);
    let out = &record.runs[0].outputs[0].item;
    assert_eq!((out["lead"].as_i64(), out["tag"].as_str()), (Some(1), Some("hot")));
    assert!(out["tagged_at"].as_i64().is_some_and(|t| t > 0), "it called the clock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_scaffold_builds_and_runs() {
    tags_an_item(Lang::Rust, "tagger-rs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_scaffold_builds_and_runs() {
    tags_an_item(Lang::Python, "tagger-py").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_scaffold_builds_and_runs() {
    tags_an_item(Lang::Js, "tagger-js").await;
}

#[test]
fn scaffolding_refuses_bad_names_and_non_empty_directories() {
    let dir = tempfile::tempdir().unwrap();
    assert!(create("Bad Name", Lang::Rust, &dir.path().join("x")).is_err());
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let err = create("ok", Lang::Js, dir.path()).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}
