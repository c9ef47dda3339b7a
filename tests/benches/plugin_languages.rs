//! What a plugin costs by language: the same starter plugin (`handoff
//! plugin new`) in Rust, Python and JavaScript, measured for its first load
//! (compile, empty cache), a cached load (new runtime, same cache) and one
//! node run (fresh instance, call, checked result).
//!
//! `cargo bench -p handoff-tests --bench plugin_languages`

use handoff::capabilities::Capabilities;
use handoff::capabilities::RunIdentity;
use handoff::runtime::{Invocation, PluginSource, RunLimits};
use handoff::scaffold::{Lang, create};
use handoff_tests::toolchains::{build_js, build_python, root};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn build(lang: Lang, dir: &Path, name: &str) -> PathBuf {
    match lang {
        Lang::Rust => {
            let target = root().join("scaffold-target");
            let status = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(dir)
                .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2", "--target-dir"])
                .arg(&target)
                .status()
                .unwrap();
            assert!(status.success());
            target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")))
        }
        Lang::Python => build_python(dir, "plugin", "app"),
        Lang::Js => build_js(dir, "plugin", "plugin.js"),
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    println!("{:<8} {:>10} {:>12} {:>12} {:>10}", "plugin", "size", "first load", "cached load", "per run");
    for (lang, name) in [(Lang::Rust, "bench-rs"), (Lang::Python, "bench-py"), (Lang::Js, "bench-js")] {
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join(name);
        create(name, lang, &project).unwrap();
        let wasm = build(lang, &project, name);
        let bytes = std::fs::read(&wasm).unwrap();
        let cache = tempfile::tempdir().unwrap();
        rt.block_on(async {
            let started = Instant::now();
            let runtime = handoff_tests::runtime(cache.path());
            runtime.load(PluginSource::File(wasm.clone()), bytes.clone()).await.unwrap();
            let first = started.elapsed();
            drop(runtime);

            let started = Instant::now();
            let runtime = handoff_tests::runtime(cache.path());
            let plugin = runtime.load(PluginSource::File(wasm.clone()), bytes.clone()).await.unwrap();
            let cached = started.elapsed();

            let capabilities = Arc::new(Capabilities::none());
            let invocation = Invocation {
                identity: Arc::new(RunIdentity {
                    pipeline: "bench".into(),
                    node: "tag".into(),
                    plugin: name.into(),
                    ..Default::default()
                }),
                attempt: 1,
                config: Arc::from(r#"{"tag": "hot"}"#),
                item: handoff::record::Item::from_value(serde_json::json!({"lead": 1})),
                grants: Default::default(),
                limits: RunLimits { memory_bytes: 256 << 20, ..RunLimits::default() },
            };
            for _ in 0..20 {
                assert!(runtime.run(&plugin, &capabilities, invocation.clone()).await.result.is_ok());
            }
            let runs = 200;
            let started = Instant::now();
            for _ in 0..runs {
                runtime.run(&plugin, &capabilities, invocation.clone()).await;
            }
            let per_run = started.elapsed() / runs;
            println!(
                "{:<8} {:>8.1}MB {:>10.0}ms {:>10.0}ms {:>8.0}µs",
                name,
                bytes.len() as f64 / 1e6,
                first.as_secs_f64() * 1000.0,
                cached.as_secs_f64() * 1000.0,
                per_run.as_secs_f64() * 1e6
            );
        });
    }
}
