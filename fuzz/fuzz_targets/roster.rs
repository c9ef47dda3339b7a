//! Fuzz target `roster`: see `handoff_tests::fuzz::roster`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::roster(data));
