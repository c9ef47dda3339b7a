//! A running Handoff: the plugin runtime, the pipelines, the roster, the
//! connectors and the HTTP server, wired together. `handoff serve`,
//! `handoff demo` and the end-to-end tests all start one here.

use crate::capabilities::{Capabilities, Clock, FileStateStore, TimerBook};
use crate::connectors::ConnectorsConfig;
use crate::pipeline::{self, Executor};
use crate::roster::FileRoster;
use crate::runtime::{PluginRegistry, Runtime, RuntimeConfig};
use crate::server::{Server, ServerConfig};
use anyhow::{Context, Result, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Settings every subcommand shares.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Where the host keeps state and the compiled-component cache.
    pub data_dir: PathBuf,
    /// Extra plugin directories (`--plugins DIR`).
    pub plugin_dirs: Vec<PathBuf>,
    /// What plugins are held to, beyond each node's own limits.
    pub limits: PluginLimits,
}

/// What plugins are held to as a whole, beyond each node's own deadline,
/// memory and output limits: so one plugin cannot crowd out the others.
#[derive(Debug, Clone, Copy)]
pub struct PluginLimits {
    /// Runs of one plugin in flight at once (`--max-runs-per-plugin`).
    pub max_runs_per_plugin: u32,
    /// Threads wasm runs on (`--plugin-threads`); default: one per CPU but
    /// one, at least one ([`crate::runtime::default_plugin_threads`]).
    pub plugin_threads: Option<usize>,
    /// When a plugin that keeps hitting its deadline is paused.
    pub breaker: crate::runtime::BreakerConfig,
    /// State each plugin may keep (`--state-max-keys`, `--state-max-bytes`).
    pub state_quota: crate::capabilities::StateQuota,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits {
            max_runs_per_plugin: 64,
            plugin_threads: None,
            breaker: crate::runtime::BreakerConfig::default(),
            state_quota: crate::capabilities::StateQuota::default(),
        }
    }
}

impl PluginLimits {
    /// The runtime's sizing with these limits applied.
    pub fn runtime_config(&self, data_dir: &std::path::Path) -> RuntimeConfig {
        let mut config = RuntimeConfig::new(data_dir);
        config.max_runs_per_plugin = self.max_runs_per_plugin;
        config.breaker = self.breaker;
        if let Some(threads) = self.plugin_threads {
            config.plugin_threads = threads;
        }
        config
    }
}

/// A started runtime with its plugins loaded.
pub struct Host {
    /// The plugin sandbox.
    pub runtime: Arc<Runtime>,
    /// The loaded plugins.
    pub registry: PluginRegistry,
    /// How it was started.
    pub options: HostOptions,
}

impl Host {
    /// Starts the runtime and loads the standard plugins plus
    /// `--plugins` directories. Components that fail to load are reported on
    /// stderr and left out.
    ///
    /// # Errors
    ///
    /// When the runtime cannot start.
    pub async fn start(options: HostOptions) -> Result<Host> {
        let runtime =
            Runtime::new(options.limits.runtime_config(&options.data_dir)).context("starting the plugin runtime")?;
        let (registry, problems) = PluginRegistry::load(&runtime, &options.plugin_dirs).await;
        for problem in problems {
            eprintln!("warning: plugin not loaded: {problem}");
        }
        Ok(Host { runtime, registry, options })
    }

    /// Capability providers for a one-shot run: plugin state on disk under
    /// the data dir, timers listed rather than fired, system clock. CRM,
    /// marketing, chat, email, LLM and roster are not configured here yet, so
    /// calls to them answer `unavailable`.
    pub fn local_capabilities(&self, timers: Arc<TimerBook>) -> Capabilities {
        Capabilities {
            state: Some(Arc::new(FileStateStore::new(self.options.data_dir.join("state")))),
            schedule: Some(timers),
            state_quota: self.options.limits.state_quota,
            ..Capabilities::none()
        }
    }
}

/// How to start.
pub struct AppOptions {
    /// Compiled-component cache and, unless `database` says otherwise,
    /// the ledger.
    pub data_dir: PathBuf,
    /// More plugin directories (`--plugins`).
    pub plugin_dirs: Vec<PathBuf>,
    /// Pipeline files to serve.
    pub pipelines: Vec<PathBuf>,
    /// The roster file.
    pub roster: PathBuf,
    /// Where the providers are, and their credentials.
    pub connectors: ConnectorsConfig,
    /// Where the server listens.
    pub listen: SocketAddr,
    /// The URL HubSpot calls, for signatures.
    pub public_url: Option<String>,
    /// Where the ledger lives; SQLite at `<data_dir>/handoff.db` when unset.
    pub database: Option<crate::ledger::Database>,
    /// Who this server is when claiming work in the ledger.
    pub instance: crate::ledger::Instance,
    /// Slack channel for failed-lead alerts (`#revops-alerts`).
    pub ops_channel: Option<String>,
    /// How often the reconciliation sweep runs (default 5 minutes).
    pub sweep_every: Option<std::time::Duration>,
    /// How long settled work's journal is kept (default 30 days).
    pub retention: std::time::Duration,
    /// Bearer token for `/api/*` (required when not listening on loopback).
    pub api_token: Option<crate::connectors::Secret>,
    /// "Now" for plugins.
    pub clock: Arc<dyn Clock>,
    /// How leads wait while a provider is down.
    pub waiting: crate::ledger::WaitPolicy,
    /// What plugins are held to as a whole.
    pub limits: PluginLimits,
    /// What the server accepts of its clients.
    pub server_limits: crate::server::ServerLimits,
}

/// The shipped pipelines `handoff serve` runs by default: the MQL
/// handoff, the SLA ladder, Slack's buttons, rejection recycling, the
/// Salesforce rejection poll and the weekly digest.
pub const STANDARD_PIPELINES: [&str; 6] = [
    "mql-handoff.json",
    "sla-enforcement.json",
    "slack-interactions.json",
    "rejection-recycle.json",
    "salesforce-rejections.json",
    "weekly-digest.json",
];

impl AppOptions {
    /// The shipped pipelines ([`STANDARD_PIPELINES`]) and roster from
    /// `pipelines_dir`, otherwise as [`AppOptions::mql_handoff`].
    pub fn standard(
        pipelines_dir: &std::path::Path,
        data_dir: PathBuf,
        connectors: ConnectorsConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AppOptions {
            pipelines: STANDARD_PIPELINES.iter().map(|p| pipelines_dir.join(p)).collect(),
            ..AppOptions::mql_handoff(pipelines_dir, data_dir, connectors, clock)
        }
    }

    /// The shipped MQL handoff (`mql-handoff.json` and `roster.json` from
    /// `pipelines_dir`) on `connectors`, on a free loopback port, with its
    /// ledger and state under `data_dir`; callers adjust the rest.
    pub fn mql_handoff(
        pipelines_dir: &std::path::Path,
        data_dir: PathBuf,
        connectors: ConnectorsConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        AppOptions {
            data_dir,
            plugin_dirs: Vec::new(),
            pipelines: vec![pipelines_dir.join("mql-handoff.json")],
            roster: pipelines_dir.join("roster.json"),
            connectors,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            database: None,
            instance: crate::ledger::Instance::from_env(),
            ops_channel: Some("#revops-alerts".into()),
            sweep_every: None,
            retention: crate::server::DEFAULT_RETENTION,
            api_token: None,
            clock,
            waiting: crate::ledger::WaitPolicy::default(),
            limits: PluginLimits::default(),
            server_limits: crate::server::ServerLimits::default(),
        }
    }
}

/// A running Handoff.
pub struct App {
    /// The HTTP server and its worker.
    pub server: Server,
    /// The roster behind the `roster` capability.
    pub roster: Arc<FileRoster>,
}

impl App {
    /// Loads and checks everything, then starts the server.
    ///
    /// # Errors
    ///
    /// Every pipeline problem (file, pointer, line), a bad roster, missing
    /// connector settings, or a port in use.
    pub async fn launch(options: AppOptions) -> Result<App> {
        let host = Host::start(HostOptions {
            data_dir: options.data_dir.clone(),
            plugin_dirs: options.plugin_dirs.clone(),
            limits: options.limits,
        })
        .await?;
        let mut pipelines = Vec::new();
        let mut problems = Vec::new();
        for path in &options.pipelines {
            match pipeline::load_file(path, &host.registry) {
                Ok(p) => pipelines.push(p),
                Err(diagnostics) => problems.extend(diagnostics.iter().map(ToString::to_string)),
            }
        }
        if !problems.is_empty() {
            bail!("invalid pipelines:\n{}", problems.join("\n"));
        }

        let database = options
            .database
            .clone()
            .unwrap_or_else(|| crate::ledger::Database::Sqlite(options.data_dir.join("handoff.db")));
        let ledger = crate::ledger::Roles::open(&database, options.instance.clone(), options.clock.clone()).await?;
        let roster = Arc::new(FileRoster::load(&options.roster)?.with_pauses_in(ledger.ledger.clone()));
        let together = pipeline::check_together(&pipelines, Some(&roster.current()));
        if !together.is_empty() {
            let problems: Vec<String> = together.iter().map(ToString::to_string).collect();
            bail!(
                "the pipelines do not fit together or with the roster {}:\n{}",
                options.roster.display(),
                problems.join("\n")
            );
        }
        let local = Capabilities {
            journal: Some(ledger.journal.clone()),
            state: Some(ledger.state.clone()),
            schedule: Some(ledger.timers.clone()),
            roster: Some(roster.clone()),
            reports: Some(Arc::new(crate::reports::LedgerReports {
                ledger: ledger.ledger.clone(),
                clock: options.clock.clone(),
            })),
            clock: options.clock.clone(),
            state_quota: options.limits.state_quota,
            ..Capabilities::none()
        };
        let capabilities = options.connectors.connect(local).context("configuring connectors")?;
        if let Some(salesforce) = options.connectors.salesforce_client(&crate::connectors::policy::http_client()) {
            sync_roster(&salesforce, &roster).await;
            // Reps deactivated in Salesforce stop getting leads within
            // minutes; one client, so one sign-in, serves every sync.
            let roster = roster.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(300)).await;
                    sync_roster(&salesforce, &roster).await;
                }
            });
        }

        let executor = Executor::new(host.runtime.clone(), Arc::new(capabilities));
        let hubspot_app_secret = options.connectors.hubspot.as_ref().and_then(|h| h.app_secret.clone());
        let slack_signing_secret = options.connectors.slack.as_ref().and_then(|s| s.signing_secret.clone());
        let server = Server::start(ServerConfig {
            listen: options.listen,
            pipelines,
            executor,
            ledger: ledger.ledger.clone(),
            hubspot_app_secret,
            slack_signing_secret,
            public_url: options.public_url,
            ops_channel: options.ops_channel,
            api_token: options.api_token.clone(),
            waiting: options.waiting,
            retention: options.retention,
            limits: options.server_limits,
            sweep: options
                .connectors
                .hubspot_client(&crate::connectors::policy::http_client())
                .map(|client| (client, options.sweep_every.unwrap_or(std::time::Duration::from_secs(300)))),
        })
        .await?;
        Ok(App { server, roster })
    }
}

/// Marks reps Salesforce reports inactive. A failure is logged: routing
/// then trusts the roster file alone until the next sync.
async fn sync_roster(salesforce: &crate::connectors::salesforce::Salesforce, roster: &FileRoster) {
    match salesforce.users().await {
        Ok(users) => {
            roster.set_inactive_in_crm(users.into_iter().filter(|(_, _, _, active)| !active).map(|(id, ..)| id));
        }
        Err(e) => tracing::warn!(error = %e, "could not read Salesforce users; the roster's active flags stand alone"),
    }
}

/// A setting `handoff serve` cannot start without that the connector
/// settings lack.
pub struct Unmet {
    /// The provider section (`[hubspot]`), when the whole section is absent.
    pub section: Option<&'static str>,
    /// What is missing, with the variables that set it instead.
    pub setting: String,
}

/// Everything `handoff serve` requires of the connector settings and they
/// lack: absent provider sections, then missing settings (what `serve`
/// refuses to start without, and what `handoff doctor` reports first).
pub fn unmet_for_serve(connectors: &ConnectorsConfig) -> Vec<Unmet> {
    let section = |name, setting: &str| Unmet { section: Some(name), setting: setting.to_string() };
    let mut unmet = Vec::new();
    if connectors.hubspot.is_none() {
        unmet.push(section(
            "[hubspot]",
            "[hubspot] token and app_secret (or HANDOFF_HUBSPOT_TOKEN and HANDOFF_HUBSPOT_APP_SECRET)",
        ));
    } else if connectors.hubspot.as_ref().is_some_and(|h| h.app_secret.is_none()) {
        unmet.push(Unmet { section: None, setting: "hubspot.app_secret (or HANDOFF_HUBSPOT_APP_SECRET)".into() });
    }
    if connectors.salesforce.is_none() {
        unmet.push(section(
            "[salesforce]",
            "[salesforce] auth (or HANDOFF_SALESFORCE_CLIENT_ID and HANDOFF_SALESFORCE_CLIENT_SECRET)",
        ));
    }
    if connectors.slack.is_none() {
        unmet.push(section("[slack]", "[slack] bot_token (or HANDOFF_SLACK_BOT_TOKEN)"));
    }
    unmet.extend(connectors.missing().into_iter().map(|m| Unmet { section: None, setting: m.to_string() }));
    unmet
}

/// What `handoff serve` requires of the connector settings.
///
/// # Errors
///
/// Names every missing provider or credential.
pub fn require_for_serve(connectors: &ConnectorsConfig) -> Result<()> {
    let missing: Vec<String> = unmet_for_serve(connectors).into_iter().map(|u| u.setting).collect();
    if !missing.is_empty() {
        bail!(
            "cannot serve without credentials; missing settings: {}. Pass --config FILE (see README), set the HANDOFF_* variables, or use --sandbox.",
            missing.join(", ")
        );
    }
    Ok(())
}
