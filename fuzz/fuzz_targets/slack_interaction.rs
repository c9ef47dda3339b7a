//! Fuzz target `slack_interaction`: see `handoff_tests::fuzz::slack_interaction`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::slack_interaction(data));
