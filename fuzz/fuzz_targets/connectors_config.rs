//! Fuzz target `connectors_config`: see `handoff_tests::fuzz::connectors_config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::connectors_config(data));
