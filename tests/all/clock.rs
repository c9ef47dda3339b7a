//! The suite does not depend on today's date: the end-to-end tests run
//! again with their virtual time a year ahead of, and a year behind, the
//! wall clock. Times the ledger writes and times plugins see must agree
//! whatever the wall clock says.

use handoff::capabilities::{Clock, SystemClock};
use handoff_tests::{SHIFT_DAYS_VAR, test_now_ms};
use std::process::Command;

const WEEK_MS: i64 = 7 * 86_400_000;

/// Days to shift the tests' virtual time so it lands `weeks` weeks from the
/// wall clock: whole weeks from [`handoff::demo::DEMO_NOW`], so the weekday
/// and the hour (and with them the roster's working hours) stay the same.
fn shift_days_to(weeks: i64) -> i64 {
    let wall = SystemClock.now_ms();
    let from_demo_to_wall = (wall - test_now_ms()).div_euclid(WEEK_MS);
    (from_demo_to_wall + weeks) * 7
}

/// Runs this test binary's end-to-end tests (`handoff::`) with the virtual
/// time shifted by `days`.
fn run_end_to_end_shifted(days: i64) {
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["handoff::", "--test-threads", "2"])
        .env(SHIFT_DAYS_VAR, days.to_string())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "with the virtual time shifted {days} days from {}:\n{stdout}\n{}",
        handoff::demo::DEMO_NOW,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("test result: ok") && !stdout.contains("running 0 tests"), "{stdout}");
}

#[test]
fn the_end_to_end_tests_pass_with_the_virtual_time_a_year_ahead_of_the_wall_clock() {
    if std::env::var(SHIFT_DAYS_VAR).is_ok() {
        return; // Already a shifted run: no recursion.
    }
    run_end_to_end_shifted(shift_days_to(52));
}

#[test]
fn the_end_to_end_tests_pass_with_the_virtual_time_a_year_behind_the_wall_clock() {
    if std::env::var(SHIFT_DAYS_VAR).is_ok() {
        return;
    }
    run_end_to_end_shifted(shift_days_to(-52));
}
