//! Compiled components are cached on disk by content and engine.

use handoff::runtime::{CacheOutcome, PluginSource};
use handoff_tests::{programs, runtime};

#[tokio::test]
async fn a_second_load_does_not_recompile() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(programs::ECHO).unwrap();

    let first = runtime(dir.path()).load(PluginSource::Standard, bytes.clone()).await.unwrap();
    assert!(matches!(first.info.cache, CacheOutcome::Compiled { .. }), "{:?}", first.info.cache);

    // A new runtime, as after a restart, on the same data directory.
    let second = runtime(dir.path()).load(PluginSource::Standard, bytes).await.unwrap();
    assert_eq!(second.info.cache, CacheOutcome::Hit);
    assert_eq!(first.info.sha256, second.info.sha256);
}

#[tokio::test]
async fn a_corrupt_cache_entry_is_replaced_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(programs::ECHO).unwrap();
    let rt = runtime(dir.path());
    let plugin = rt.load(PluginSource::Standard, bytes.clone()).await.unwrap();
    let entry = rt.cache().entry_path(&plugin.info.sha256);
    std::fs::write(&entry, b"not a compiled component").unwrap();

    let reloaded = runtime(dir.path()).load(PluginSource::Standard, bytes.clone()).await.unwrap();
    assert!(matches!(reloaded.info.cache, CacheOutcome::Compiled { .. }));
    let again = runtime(dir.path()).load(PluginSource::Standard, bytes).await.unwrap();
    assert_eq!(again.info.cache, CacheOutcome::Hit, "the entry was rewritten");
}

#[tokio::test]
async fn bytes_that_are_not_a_component_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let err = runtime(dir.path()).load(PluginSource::Standard, b"\0asm garbage".to_vec()).await.unwrap_err();
    assert!(format!("{err:#}").contains("not a valid WebAssembly component"), "{err:#}");
}
