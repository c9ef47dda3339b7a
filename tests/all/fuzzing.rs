//! The smoke run of every fuzz target (`handoff_tests::fuzz`): its
//! committed corpus, then mutations of it. The long, coverage-guided runs
//! are `cargo fuzz` commands (BENCHMARKS.md); inputs they find that crash
//! go into the corpus and become tests here.

use handoff_tests::fuzz::{TARGETS, mutate, standard_plugins};
use std::path::Path;
use std::time::Duration;

/// Mutations per target: seconds of work in all.
const MUTATIONS: u64 = 3_000;
/// Longer than any target should take for the whole run: past it, a target
/// hangs, and the test says so instead of holding up the suite.
const WATCHDOG: Duration = Duration::from_secs(300);

#[test]
fn every_fuzz_target_survives_its_corpus_and_mutations() {
    standard_plugins();
    let corpus_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = corpus_root.join(name);
        let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.unwrap().path();
                (path.display().to_string(), std::fs::read(&path).unwrap())
            })
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "{name} has a corpus");
        let (done, finished) = std::sync::mpsc::channel();
        let run = std::thread::Builder::new()
            .stack_size(8 << 20)
            .spawn(move || {
                let attempt = |label: &str, input: &[u8]| {
                    if std::panic::catch_unwind(|| target(input)).is_err() {
                        let saved = std::env::temp_dir().join(format!("handoff-fuzz-{name}-crash"));
                        let _ = std::fs::write(&saved, input);
                        panic!("{name} panicked on {label} (input saved to {})", saved.display());
                    }
                };
                for (path, seed) in &seeds {
                    attempt(path, seed);
                }
                for round in 0..MUTATIONS {
                    let (path, seed) = &seeds[usize::try_from(round).unwrap() % seeds.len()];
                    attempt(&format!("mutation {round} of {path}"), &mutate(seed, round));
                }
                let _ = done.send(());
            })
            .unwrap();
        match finished.recv_timeout(WATCHDOG) {
            Ok(()) => run.join().unwrap(),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::panic::resume_unwind(run.join().unwrap_err());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{name} hangs (over {WATCHDOG:?})"),
        }
    }
}
