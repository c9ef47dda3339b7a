//! Operational metrics for Prometheus (`GET /metrics`): what the process
//! counts as it works (webhooks, node runs, retries, provider calls, ledger
//! commits, timers) plus what the ledger holds at scrape time (leads by
//! state). One registry per process, like the log: the counters are
//! process-wide, whichever `Host` or server did the work.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::LazyLock;
use std::time::Duration;

/// A label set of one label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    /// What happened.
    pub outcome: String,
}

/// Plugin and outcome of a node run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginOutcome {
    /// The plugin.
    pub plugin: String,
    /// `ok` or the failure class (`timeout`, `trap`, ...).
    pub outcome: String,
}

/// A plugin.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabel {
    /// The plugin.
    pub plugin: String,
}

/// A provider and the outcome of a call to it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOutcome {
    /// `hubspot`, `salesforce`, `slack`, `anthropic`, `smtp`.
    pub provider: String,
    /// `ok`, `transient`, `permanent`.
    pub outcome: String,
}

/// A lead state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// The state.
    pub state: String,
}

/// Every metric the process keeps.
pub struct Telemetry {
    registry: Registry,
    /// Webhook requests by outcome.
    pub webhooks: Family<Outcome, Counter>,
    /// Node runs by plugin and outcome.
    pub node_runs: Family<PluginOutcome, Counter>,
    /// Node run duration by plugin (waiting for slots included).
    pub node_run_seconds: Family<PluginLabel, Histogram>,
    /// Node runs retried, by plugin.
    pub retries: Family<PluginLabel, Counter>,
    /// Provider calls by provider and outcome (after the connector's own
    /// retries).
    pub provider_calls: Family<ProviderOutcome, Counter>,
    /// Provider call latency (all attempts) by provider and outcome.
    pub provider_call_seconds: Family<ProviderOutcome, Histogram>,
    /// SQLite group commits: time from BEGIN to COMMIT.
    pub ledger_commit_seconds: Histogram,
    /// Timers fired.
    pub timers_fired: Counter,
    /// Writes shadow pipelines would have made, withheld.
    pub shadow_writes_withheld: Counter,
    /// Leads by state, as of the last scrape.
    pub leads: Family<StateLabel, Gauge>,
    /// Executions this process runs now.
    pub executions_in_flight: Gauge,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 100 µs to ~52 s.
    exponential_buckets(0.000_1, 2.0, 20)
}

/// The process's metrics.
pub static TELEMETRY: LazyLock<Telemetry> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("handoff");
    let webhooks = Family::<Outcome, Counter>::default();
    registry.register("webhooks", "Webhook requests by outcome", webhooks.clone());
    let node_runs = Family::<PluginOutcome, Counter>::default();
    registry.register("node_runs", "Node runs by plugin and outcome (ok or the failure class)", node_runs.clone());
    let node_run_seconds = Family::<PluginLabel, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
    registry.register("node_run_seconds", "Node run duration by plugin", node_run_seconds.clone());
    let retries = Family::<PluginLabel, Counter>::default();
    registry.register("node_retries", "Node runs retried after a retryable failure, by plugin", retries.clone());
    let provider_calls = Family::<ProviderOutcome, Counter>::default();
    registry.register("provider_calls", "Provider calls by provider and outcome", provider_calls.clone());
    let provider_call_seconds =
        Family::<ProviderOutcome, Histogram>::new_with_constructor(|| Histogram::new(seconds_buckets()));
    registry.register(
        "provider_call_seconds",
        "Provider call latency, retries included",
        provider_call_seconds.clone(),
    );
    let ledger_commit_seconds = Histogram::new(seconds_buckets());
    registry.register("ledger_commit_seconds", "SQLite ledger group commit latency", ledger_commit_seconds.clone());
    let timers_fired = Counter::default();
    registry.register("timers_fired", "Durable timers fired by this process", timers_fired.clone());
    let shadow_writes_withheld = Counter::default();
    registry.register(
        "shadow_writes_withheld",
        "Writes shadow pipelines would have made (DMs, CRM writes, emails), recorded and never sent",
        shadow_writes_withheld.clone(),
    );
    let leads = Family::<StateLabel, Gauge>::default();
    registry.register("leads", "Leads by state in the ledger, as of this scrape", leads.clone());
    let executions_in_flight = Gauge::default();
    registry.register("executions_in_flight", "Executions this process runs now", executions_in_flight.clone());
    Telemetry {
        registry,
        webhooks,
        node_runs,
        node_run_seconds,
        retries,
        provider_calls,
        provider_call_seconds,
        ledger_commit_seconds,
        timers_fired,
        shadow_writes_withheld,
        leads,
        executions_in_flight,
    }
});

impl Telemetry {
    /// Counts a webhook request.
    pub fn webhook(&self, outcome: &str) {
        self.webhooks.get_or_create(&Outcome { outcome: outcome.to_string() }).inc();
    }

    /// Counts a node run.
    pub fn node_run(&self, plugin: &str, outcome: &str, took: Duration) {
        self.node_runs.get_or_create(&PluginOutcome { plugin: plugin.to_string(), outcome: outcome.to_string() }).inc();
        self.node_run_seconds.get_or_create(&PluginLabel { plugin: plugin.to_string() }).observe(took.as_secs_f64());
    }

    /// Counts a provider call.
    pub fn provider_call(&self, provider: &str, outcome: &str, took: Duration) {
        let labels = ProviderOutcome { provider: provider.to_string(), outcome: outcome.to_string() };
        self.provider_calls.get_or_create(&labels).inc();
        self.provider_call_seconds.get_or_create(&labels).observe(took.as_secs_f64());
    }

    /// The exposition text (OpenMetrics), with `leads` set from `by_state`.
    ///
    /// # Errors
    ///
    /// When encoding fails (it writes to a string, so only on a bug).
    pub fn encode(&self, by_state: &[(String, u64)]) -> Result<String, std::fmt::Error> {
        self.leads.clear();
        for (state, count) in by_state {
            self.leads
                .get_or_create(&StateLabel { state: state.clone() })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}
