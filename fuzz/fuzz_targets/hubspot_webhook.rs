//! Fuzz target `hubspot_webhook`: see `handoff_tests::fuzz::hubspot_webhook`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| handoff_tests::fuzz::hubspot_webhook(data));
