//! A run's deadline, counted in the time the run was given, not the time
//! it waited for a CPU.
//!
//! Wasm code never holds a thread for long: every [`EPOCH_TICK`] the epoch
//! callback ends the run's slice and yields to the scheduler, so other runs,
//! and on a shared runtime HTTP, the ledger and timers, get their turn. The
//! time from a slice's start (or resumption) to its yield is what the run
//! used; the time it then waits to be polled again is not. A run that
//! waited so long it never used its deadline was starved by host load; its
//! timeout is retryable.

use super::EPOCH_TICK;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The time one run may use and has used.
#[derive(Debug)]
pub(crate) struct Budget {
    start: Instant,
    limit: Duration,
    /// Nanoseconds used by the slices that ended.
    used_ns: AtomicU64,
    /// When the current slice started, nanoseconds after `start`.
    slice_from_ns: AtomicU64,
    /// Between a yield and the poll that resumes the run.
    waiting: AtomicBool,
    /// Slices ended so far (yields).
    slices: AtomicU64,
    /// Ledger waits in progress (the clock stands while above zero).
    paused: std::sync::atomic::AtomicU32,
}

impl Budget {
    pub(crate) fn new(limit: Duration) -> Arc<Self> {
        Arc::new(Budget {
            start: Instant::now(),
            limit,
            used_ns: AtomicU64::new(0),
            slice_from_ns: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            slices: AtomicU64::new(0),
            paused: std::sync::atomic::AtomicU32::new(0),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Time used: the ended slices, and the current one unless the run is
    /// waiting to be resumed. Time inside host calls counts (the run is
    /// being served), time waiting for a thread does not.
    pub(crate) fn used(&self) -> Duration {
        let mut used = self.used_ns.load(Ordering::Acquire);
        if !self.waiting.load(Ordering::Acquire) {
            used += self.now_ns().saturating_sub(self.slice_from_ns.load(Ordering::Acquire));
        }
        Duration::from_nanos(used)
    }

    /// What is left of the deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.limit.saturating_sub(self.used())
    }

    /// The deadline.
    pub(crate) fn limit(&self) -> Duration {
        self.limit
    }

    /// Slices the run was cut into.
    pub(crate) fn slices(&self) -> u64 {
        self.slices.load(Ordering::Relaxed)
    }

    /// The epoch callback: ends the slice; stops the run when its deadline
    /// is used up, otherwise yields and resumes when polled again.
    pub(crate) fn tick(self: &Arc<Self>) -> wasmtime::UpdateDeadline {
        let now = self.now_ns();
        let slice = now.saturating_sub(self.slice_from_ns.load(Ordering::Acquire));
        let used = self.used_ns.fetch_add(slice, Ordering::AcqRel) + slice;
        self.slice_from_ns.store(now, Ordering::Release);
        self.slices.fetch_add(1, Ordering::Relaxed);
        if Duration::from_nanos(used) >= self.limit {
            return wasmtime::UpdateDeadline::Interrupt;
        }
        self.waiting.store(true, Ordering::Release);
        let budget = self.clone();
        wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                budget.slice_from_ns.store(budget.now_ns(), Ordering::Release);
                budget.waiting.store(false, Ordering::Release);
            }),
        )
    }

    /// How long to sleep before checking the run again: until its deadline
    /// would be used up if it ran all the while, plus a tick.
    pub(crate) fn next_check(&self) -> Duration {
        self.remaining() + EPOCH_TICK
    }
}

impl crate::connectors::policy::TimeLeft for Budget {
    fn time_left(&self) -> Duration {
        self.remaining()
    }
}

impl crate::capabilities::RunClock for Budget {
    /// The slice so far counts; then the clock stands, as while the run
    /// waits to be resumed.
    fn pause(&self) {
        if self.paused.fetch_add(1, Ordering::AcqRel) == 0 {
            let now = self.now_ns();
            let slice = now.saturating_sub(self.slice_from_ns.load(Ordering::Acquire));
            self.used_ns.fetch_add(slice, Ordering::AcqRel);
            self.slice_from_ns.store(now, Ordering::Release);
            self.waiting.store(true, Ordering::Release);
        }
    }

    fn resume(&self) {
        if self.paused.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.slice_from_ns.store(self.now_ns(), Ordering::Release);
            self.waiting.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ledger_wait_does_not_count() {
        use crate::capabilities::RunClock;
        let budget = Budget::new(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(10));
        budget.pause();
        budget.pause();
        let before = budget.used();
        std::thread::sleep(Duration::from_millis(40));
        budget.resume();
        assert_eq!(budget.used(), before, "still inside the outer wait");
        budget.resume();
        std::thread::sleep(Duration::from_millis(5));
        let after = budget.used();
        assert!(after >= before + Duration::from_millis(5) && after < before + Duration::from_millis(40), "{after:?}");
    }

    #[test]
    fn time_spent_waiting_to_resume_is_not_used() {
        let budget = Budget::new(Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(20));
        let _ = budget.tick();
        let after_slice = budget.used();
        assert!(after_slice >= Duration::from_millis(20), "{after_slice:?}");
        // Waiting to be resumed: the clock stops.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(budget.used(), after_slice);
        assert_eq!(budget.slices(), 1);
    }

    #[test]
    fn the_slice_that_uses_up_the_deadline_interrupts() {
        let budget = Budget::new(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(15));
        assert!(matches!(budget.tick(), wasmtime::UpdateDeadline::Interrupt));
        assert!(budget.used() >= budget.limit());
    }
}
