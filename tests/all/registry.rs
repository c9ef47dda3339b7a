//! `--plugins DIR` adds to and overrides the standard set; a broken file is
//! reported and skipped.

use handoff::runtime::{PluginRegistry, PluginSource};
use handoff_tests::{programs, runtime, shared_cache_dir};

/// validate, fetch-contact, dedupe, route, assign, summarize, notify.
const STANDARD_COUNT: usize = 10;

#[tokio::test]
async fn a_plugin_directory_adds_and_overrides_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(programs::SHADOW, dir.path().join("shadow.wasm")).unwrap();
    std::fs::copy(programs::ECHO, dir.path().join("echo.wasm")).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"nope").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"ignored").unwrap();

    let rt = runtime(&shared_cache_dir());
    let (registry, problems) = PluginRegistry::load(&rt, &[dir.path().to_path_buf()]).await;

    let names = registry.names();
    assert!(names.contains(&"echo") && names.contains(&"validate"), "{names:?}");
    assert_eq!(names.len(), STANDARD_COUNT + 1, "echo added, validate replaced: {names:?}");
    let validate = registry.get("validate").unwrap();
    assert_eq!(validate.info.version, "9.9.9-test", "the directory's validate replaced the built-in one");
    assert_eq!(validate.info.source, PluginSource::File(dir.path().join("shadow.wasm")));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].source.ends_with("broken.wasm"));
}

#[tokio::test]
async fn without_directories_the_standard_set_is_built_in() {
    let rt = runtime(&shared_cache_dir());
    let (registry, problems) = PluginRegistry::load(&rt, &[]).await;
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(
        registry.names(),
        [
            "assign",
            "dedupe",
            "digest",
            "escalate",
            "fetch-contact",
            "notify",
            "recycle",
            "route",
            "summarize",
            "validate"
        ]
    );
    let validate = registry.get("validate").expect("validate is standard");
    assert_eq!(validate.info.source, PluginSource::Standard);
    assert_eq!(validate.info.outputs, ["valid", "invalid"]);
    assert!(validate.info.imports.is_empty(), "validate needs no capability: {:?}", validate.info.imports);
}

#[tokio::test]
async fn a_missing_plugin_directory_is_a_problem_not_a_crash() {
    let rt = runtime(&shared_cache_dir());
    let (registry, problems) = PluginRegistry::load(&rt, &["/no/such/dir".into()]).await;
    assert!(registry.get("validate").is_some());
    assert_eq!(problems.len(), 1);
}

#[tokio::test]
async fn a_plugin_built_against_contract_0_1_0_still_loads_and_runs() {
    use handoff::capabilities::{Capabilities, FileStateStore};
    use handoff::record::ExecutionStatus;
    use handoff_tests::{TestHost, load_program, pipeline_json};

    // The fixture really imports the old version (import names are in the
    // component's bytes).
    let bytes = std::fs::read(programs::CONTRACT_0_1_0).unwrap();
    let holds = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(holds("handoff:plugin/state@0.1.0") && !holds("@0.1.1"), "built against handoff:plugin@0.1.0");

    let mut host = TestHost::new().await;
    host.registry.insert(load_program(&host.runtime, programs::CONTRACT_0_1_0).await);
    let dir = tempfile::tempdir().unwrap();
    let state = std::sync::Arc::new(FileStateStore::new(dir.path()));
    let pipeline = pipeline_json(
        r#"[{"id": "old", "plugin": "contract-0-1-0", "capabilities": ["state:read", "state:write"]}]"#,
        r#"{"trigger": {"main": ["old"]}}"#,
    );
    for runs in 1..=2 {
        let capabilities = Capabilities { state: Some(state.clone()), ..Capabilities::none() };
        let record = host.execute(&pipeline, serde_json::json!({"n": runs}), capabilities).await;
        assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
        let item = &record.runs[0].outputs[0].item;
        assert_eq!(item["runs"], runs, "its state calls reach the host: {item}");
        assert_eq!(item["item"]["n"], runs);
    }
}
