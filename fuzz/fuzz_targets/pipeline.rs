//! Fuzz target `pipeline`: see `handoff_tests::fuzz::pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::pipeline(data));
