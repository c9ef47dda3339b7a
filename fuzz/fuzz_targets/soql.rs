//! Fuzz target `soql`: see `handoff_tests::fuzz::soql`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::soql(data));
