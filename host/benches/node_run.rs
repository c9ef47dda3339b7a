//! Cost of running plugins: one node run (fresh instance, call, checked
//! result) and a pipeline of several nodes. `cargo bench -p handoff`;
//! numbers are in BENCHMARKS.md.

use criterion::{Criterion, criterion_group, criterion_main};
use handoff::capabilities::Capabilities;
use handoff::capabilities::RunIdentity;
use handoff::pipeline::{self, Executor, Start};
use handoff::runtime::{Invocation, PluginRegistry, RunLimits, Runtime, RuntimeConfig};
use std::path::Path;
use std::sync::Arc;

const CHAIN: &str = r#"{
  "name": "bench-chain", "version": 1,
  "trigger": {"type": "webhook", "path": "/b", "signature": "none"},
  "nodes": [
    {"id": "first", "plugin": "validate"},
    {"id": "second", "plugin": "validate"},
    {"id": "third", "plugin": "validate"}
  ],
  "connections": {"trigger": {"main": ["first"]}, "first": {"valid": ["second"]}, "second": {"valid": ["third"]}}
}"#;

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut config = RuntimeConfig::new(data.path());
    if let Ok(bytes) = std::env::var("KEEP_RESIDENT") {
        config.keep_resident_bytes = bytes.parse().unwrap();
    }
    // A server runs each execution on the plugin pool, so its node runs
    // run in place there; measured in place here (no pool, no hop).
    // POOL_HOP=1 measures a run called from outside the pool instead.
    if std::env::var_os("POOL_HOP").is_none() {
        config.plugin_threads = 0;
    }
    let runtime = Runtime::new(config).unwrap();
    let (registry, problems) = rt.block_on(PluginRegistry::load(&runtime, &[]));
    assert!(problems.is_empty(), "{problems:?}");
    let validate = registry.get("validate").unwrap().clone();
    let capabilities = Arc::new(Capabilities::none());
    let sample =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/samples/mql-valid.json")).unwrap();
    let item: serde_json::Value = serde_json::from_str(&sample).unwrap();
    let invocation = Invocation {
        identity: Arc::new(RunIdentity {
            pipeline: "bench".into(),
            node: "validate".into(),
            plugin: "validate".into(),
            execution_id: "bench".into(),
            lead_id: None,
            effect_scope: "bench/validate/1".into(),
            journal_empty: true,
            effects_since_ms: 0,
        }),
        attempt: 1,
        config: Arc::from("{}"),
        item: handoff::record::Item::from_value(item.clone()),
        grants: Default::default(),
        limits: RunLimits::default(),
    };

    c.bench_function("node_run/validate", |b| {
        b.to_async(&rt).iter(|| async {
            let outcome = runtime.run(&validate, &capabilities, invocation.clone()).await;
            assert!(outcome.result.is_ok(), "{:?}", outcome.result);
        });
    });

    let prepared = pipeline::check(Path::new("chain.json"), CHAIN, &registry).unwrap();
    let executor = Executor::new(runtime.clone(), capabilities.clone());
    c.bench_function("pipeline/validate_x3", |b| {
        b.to_async(&rt).iter(|| async {
            let record = executor.execute(&prepared, item.clone(), Start::Trigger, None).await;
            assert_eq!(record.runs.len(), 3);
        });
    });
}

criterion_group!(node_run, benches);
criterion_main!(node_run);
