//! Fuzz target `pipeline`: see `handoff_tests::fuzz::pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // Loading the standard plugins (compiling them, the first time) is set-up, not a unit.
    init: {
        handoff_tests::fuzz::standard_plugins();
    },
    |data: &[u8]| handoff_tests::fuzz::pipeline(data)
);
