//! What keeps one plugin from crowding out the rest: a cap on its runs in
//! flight, and a circuit breaker that pauses a plugin whose runs keep
//! hitting their deadline. While a plugin is paused its runs fail at once as
//! retryable, so its leads wait (the executor retries, then the event is
//! deferred) instead of burning CPU; ops hear of every pause.

use super::NodeFailure;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// When a plugin is paused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Deadline hits in a row (not caused by host load) that pause it.
    pub trip_after: u32,
    /// The first pause; each pause that follows a failed trial run doubles
    /// it, up to `max_pause`.
    pub pause: Duration,
    /// The longest pause.
    pub max_pause: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { trip_after: 5, pause: Duration::from_secs(60), max_pause: Duration::from_secs(30 * 60) }
    }
}

/// A plugin the breaker paused: what ops are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginPause {
    /// The plugin.
    pub plugin: String,
    /// Why, in words.
    pub reason: String,
    /// How long the pause lasts, in milliseconds.
    pub pause_ms: u64,
    /// The node and pipeline of the run that tripped it.
    pub last_node: String,
}

struct Gate {
    slots: Arc<Semaphore>,
    deadline_hits: u32,
    paused_until: Option<Instant>,
    next_pause: Duration,
    /// A run let through after a pause, to see whether the plugin is back.
    trial: bool,
    reason: String,
}

/// Per-plugin run caps and circuit breakers.
pub(crate) struct Gates {
    runs_per_plugin: usize,
    config: BreakerConfig,
    by_plugin: Mutex<HashMap<String, Gate>>,
    trips: Mutex<Vec<PluginPause>>,
}

impl Gates {
    pub(crate) fn new(runs_per_plugin: usize, config: BreakerConfig) -> Self {
        Gates { runs_per_plugin, config, by_plugin: Mutex::new(HashMap::new()), trips: Mutex::new(Vec::new()) }
    }

    fn with<T>(&self, plugin: &str, f: impl FnOnce(&mut Gate) -> T) -> T {
        let mut gates = self.by_plugin.lock().unwrap_or_else(PoisonError::into_inner);
        let gate = gates.entry(plugin.to_string()).or_insert_with(|| Gate {
            slots: Arc::new(Semaphore::new(self.runs_per_plugin)),
            deadline_hits: 0,
            paused_until: None,
            next_pause: self.config.pause,
            trial: false,
            reason: String::new(),
        });
        f(gate)
    }

    /// The plugin's own run slots.
    pub(crate) fn slots(&self, plugin: &str) -> Arc<Semaphore> {
        self.with(plugin, |gate| gate.slots.clone())
    }

    /// Lets a run of `plugin` start, unless the plugin is paused. After a
    /// pause one trial run goes through; the rest wait for its outcome.
    pub(crate) fn admit(&self, plugin: &str) -> Result<(), NodeFailure> {
        self.with(plugin, |gate| {
            let Some(until) = gate.paused_until else { return Ok(()) };
            let now = Instant::now();
            if now >= until && !gate.trial {
                gate.trial = true;
                return Ok(());
            }
            Err(NodeFailure::Paused {
                message: format!(
                    "plugin {plugin} is paused ({}); its leads wait and run again{}",
                    gate.reason,
                    if now < until {
                        format!(" in {} s", (until - now).as_secs().max(1))
                    } else {
                        " once its trial run succeeds".into()
                    }
                ),
            })
        })
    }

    /// Counts a finished run of `plugin` (at `node`) towards its breaker.
    pub(crate) fn observe(&self, plugin: &str, node: &str, result: Result<(), &NodeFailure>) {
        let tripped = self.with(plugin, |gate| {
            let hit = matches!(result, Err(failure @ NodeFailure::Timeout { .. }) if !failure.is_retryable());
            if !hit {
                if matches!(result, Err(NodeFailure::Paused { .. })) {
                    return None;
                }
                gate.deadline_hits = 0;
                if gate.trial {
                    gate.trial = false;
                    gate.paused_until = None;
                    gate.next_pause = self.config.pause;
                }
                return None;
            }
            gate.deadline_hits += 1;
            let trial_failed = std::mem::take(&mut gate.trial);
            if !trial_failed && gate.deadline_hits < self.config.trip_after {
                return None;
            }
            let pause = gate.next_pause;
            gate.next_pause = (pause * 2).min(self.config.max_pause);
            gate.paused_until = Some(Instant::now() + pause);
            gate.reason = if trial_failed {
                "its trial run after a pause hit its deadline too".to_string()
            } else {
                format!("{} runs in a row hit their deadline", gate.deadline_hits)
            };
            Some(PluginPause {
                plugin: plugin.to_string(),
                reason: gate.reason.clone(),
                pause_ms: u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                last_node: node.to_string(),
            })
        });
        if let Some(pause) = tripped {
            tracing::error!(plugin, reason = %pause.reason, pause_ms = pause.pause_ms, "plugin paused");
            self.trips.lock().unwrap_or_else(PoisonError::into_inner).push(pause);
        }
    }

    /// Pauses since the last call (for the ops channel).
    pub(crate) fn take_pauses(&self) -> Vec<PluginPause> {
        std::mem::take(&mut *self.trips.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Plugins paused now, with the time left.
    pub(crate) fn paused(&self) -> Vec<(String, Duration, String)> {
        let now = Instant::now();
        let gates = self.by_plugin.lock().unwrap_or_else(PoisonError::into_inner);
        let mut paused: Vec<_> = gates
            .iter()
            .filter_map(|(name, gate)| {
                let until = gate.paused_until?;
                Some((name.clone(), until.saturating_duration_since(now), gate.reason.clone()))
            })
            .collect();
        paused.sort();
        paused
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> NodeFailure {
        NodeFailure::Timeout { limit_ms: 100, ran_ms: 100, waited_ms: 0 }
    }

    #[test]
    fn deadline_hits_in_a_row_pause_a_plugin_and_a_good_trial_closes_it() {
        let config =
            BreakerConfig { trip_after: 3, pause: Duration::from_millis(30), max_pause: Duration::from_secs(1) };
        let gates = Gates::new(4, config);
        for _ in 0..2 {
            gates.observe("spin", "n", Err(&timeout()));
        }
        gates.observe("spin", "n", Ok(()));
        for _ in 0..2 {
            gates.observe("spin", "n", Err(&timeout()));
        }
        assert!(gates.admit("spin").is_ok(), "a success in between resets the count");
        gates.observe("spin", "n", Err(&timeout()));
        let paused = gates.admit("spin").unwrap_err();
        assert!(paused.is_retryable(), "its leads wait");
        assert!(paused.to_string().contains("3 runs in a row hit their deadline"), "{paused}");
        assert_eq!(gates.take_pauses().len(), 1, "ops hear once");
        assert!(gates.admit("echo").is_ok(), "other plugins go on");

        std::thread::sleep(Duration::from_millis(40));
        assert!(gates.admit("spin").is_ok(), "one trial run after the pause");
        assert!(gates.admit("spin").is_err(), "the rest wait for the trial");
        gates.observe("spin", "n", Ok(()));
        assert!(gates.admit("spin").is_ok() && gates.paused().is_empty(), "back");
    }

    #[test]
    fn a_failed_trial_pauses_again_for_twice_as_long() {
        let config =
            BreakerConfig { trip_after: 1, pause: Duration::from_millis(10), max_pause: Duration::from_secs(1) };
        let gates = Gates::new(4, config);
        gates.observe("spin", "n", Err(&timeout()));
        std::thread::sleep(Duration::from_millis(15));
        gates.admit("spin").unwrap();
        gates.observe("spin", "n", Err(&timeout()));
        let pauses = gates.take_pauses();
        assert_eq!(pauses.iter().map(|p| p.pause_ms).collect::<Vec<_>>(), [10, 20]);
        assert!(pauses[1].reason.contains("trial"));
    }

    #[test]
    fn timeouts_caused_by_host_load_do_not_count() {
        let gates = Gates::new(4, BreakerConfig { trip_after: 1, ..BreakerConfig::default() });
        let starved = NodeFailure::Timeout { limit_ms: 100, ran_ms: 20, waited_ms: 5_000 };
        gates.observe("route", "n", Err(&starved));
        assert!(gates.admit("route").is_ok());
    }
}
