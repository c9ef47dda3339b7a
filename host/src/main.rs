//! The `handoff` command line: parses arguments and calls the library.

use clap::{Parser, Subcommand};
use handoff::app::{Host, HostOptions};
use handoff::cli::{self, RunOptions};
use std::path::PathBuf;
use std::process::ExitCode;

/// Handoff: marketing-to-sales lead handoff on sandboxed WebAssembly pipelines.
#[derive(Debug, Parser)]
#[command(name = "handoff", version, about, propagate_version = true)]
struct Args {
    /// `--data-dir DIR` before the subcommand (older spelling; each
    /// command that keeps state takes it itself).
    #[arg(long = "data-dir", value_name = "DIR", hide = true)]
    data_dir: Option<PathBuf>,

    /// `--plugins DIR` before the subcommand (older spelling).
    #[arg(long = "plugins", value_name = "DIR", hide = true)]
    plugin_dirs: Vec<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

/// Where state lives: for the commands that read or write the ledger or
/// the compiled-component cache.
#[derive(Debug, Clone, clap::Args)]
struct DataDir {
    /// Where the host keeps its state (the SQLite ledger, plugin state) and
    /// the compiled-component cache [env: HANDOFF_DATA_DIR; default: .handoff].
    #[arg(long = "data-dir", value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

/// Plugins beside the standard ones: for the commands that load plugins.
#[derive(Debug, Clone, clap::Args)]
struct PluginDirs {
    #[command(flatten)]
    data: DataDir,
    /// A directory of plugin components (*.wasm) to load besides the
    /// standard ones; a plugin with a standard plugin's name replaces it.
    /// May be given more than once.
    #[arg(long = "plugins", value_name = "DIR")]
    plugin_dirs: Vec<PathBuf>,
}

/// What plugins are held to as a whole (each node's own deadline, memory
/// and output limits are in the pipeline).
#[derive(Debug, Clone, clap::Args)]
struct LimitArgs {
    /// Runs of one plugin in flight at once, so one plugin cannot take
    /// every slot.
    #[arg(long, default_value_t = 64, env = "HANDOFF_MAX_RUNS_PER_PLUGIN")]
    max_runs_per_plugin: u32,
    /// Threads plugins run on, apart from those serving HTTP, the ledger
    /// and timers (default: one per CPU but one, at least one; 0 runs them
    /// on the server's own).
    #[arg(long, env = "HANDOFF_PLUGIN_THREADS")]
    plugin_threads: Option<usize>,
    /// Most state keys one plugin may keep.
    #[arg(long, default_value_t = handoff::capabilities::StateQuota::DEFAULT_MAX_KEYS, env = "HANDOFF_STATE_MAX_KEYS")]
    state_max_keys: u64,
    /// Most state bytes (keys and values) one plugin may keep.
    #[arg(long, default_value_t = handoff::capabilities::StateQuota::DEFAULT_MAX_BYTES, env = "HANDOFF_STATE_MAX_BYTES")]
    state_max_bytes: u64,
}

impl LimitArgs {
    fn limits(&self) -> handoff::app::PluginLimits {
        handoff::app::PluginLimits {
            max_runs_per_plugin: self.max_runs_per_plugin,
            plugin_threads: self.plugin_threads,
            state_quota: handoff::capabilities::StateQuota {
                max_keys: self.state_max_keys,
                max_bytes: self.state_max_bytes,
            },
            ..handoff::app::PluginLimits::default()
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check pipeline files: schema, plugins, ports, cycles, reachability,
    /// capability grants and each node's config. Exits 1 on any error.
    #[command(
        after_help = "Examples:\n  handoff validate pipelines/*.json\n  handoff validate new-rules.json --roster pipelines/roster.json"
    )]
    Validate {
        #[command(flatten)]
        host: PluginDirs,

        /// Pipeline JSON files, checked one by one and then as served
        /// together.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The roster the pipelines will run on: the teams and reps their
        /// rules name must be in it. Default: roster.json beside the first
        /// file, when there is one.
        #[arg(long, value_name = "FILE")]
        roster: Option<PathBuf>,
    },
    /// Run a pipeline once on one input item and print a trace of each node.
    #[command(
        after_help = "Examples:\n  handoff run pipelines/mql-intake.json --input pipelines/samples/mql-valid.json --sandbox\n  handoff run pipelines/mql-intake.json --input lead.json --config handoff.toml --json"
    )]
    Run {
        #[command(flatten)]
        host: PluginDirs,
        #[command(flatten)]
        limits: LimitArgs,

        /// The pipeline JSON file.
        pipeline: PathBuf,
        /// The input item (JSON file; `-` reads stdin).
        #[arg(long, value_name = "ITEM.json")]
        input: PathBuf,
        /// Print the execution record as JSON.
        #[arg(long)]
        json: bool,
        /// Print items whole instead of shortened.
        #[arg(long)]
        full: bool,
        /// The lead id to tag the execution with.
        #[arg(long)]
        lead_id: Option<String>,
        /// Run against in-process emulators of HubSpot, Salesforce, Slack,
        /// Anthropic and SMTP (seeded with a demo sales org).
        #[arg(long, conflicts_with = "config")]
        sandbox: bool,
        /// Connector settings (TOML): base URLs and credentials.
        #[arg(long, value_name = "FILE", env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Serve the emulators (HubSpot, Salesforce, Slack, Anthropic, SMTP)
    /// for connectors, tests or a person to use, until interrupted.
    #[cfg(feature = "emulators")]
    #[command(
        after_help = "Examples:\n  handoff sandbox\n  handoff sandbox --listen 127.0.0.1:9090 --fixture my-org.json"
    )]
    Sandbox {
        /// HTTP address for every provider (path prefixes /hubspot,
        /// /salesforce, /slack/api, /anthropic) and /_sandbox.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// SMTP sink address.
        #[arg(long, default_value = "127.0.0.1:2525")]
        smtp_listen: std::net::SocketAddr,
        /// Seed data (JSON) instead of the built-in demo org.
        #[arg(long, value_name = "FILE")]
        fixture: Option<PathBuf>,
    },
    /// Serve the webhook triggers of pipelines over HTTP.
    #[command(after_help = handoff::cli::serve_environment_help())]
    Serve {
        #[command(flatten)]
        host: PluginDirs,
        #[command(flatten)]
        limits: LimitArgs,

        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Run against the emulators (served on --sandbox-listen so a person
        /// or a test can inspect them); secrets default to sandbox-secret.
        #[arg(long, conflicts_with = "config")]
        sandbox: bool,
        /// Where the emulators listen in --sandbox mode.
        #[arg(long, default_value = "127.0.0.1:8090")]
        sandbox_listen: std::net::SocketAddr,
        /// Where the SMTP sink listens in --sandbox mode.
        #[arg(long, default_value = "127.0.0.1:2525")]
        sandbox_smtp_listen: std::net::SocketAddr,
        /// Connector settings (TOML): base URLs and credentials.
        #[arg(long, value_name = "FILE", env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
        /// Pipeline files to serve (repeatable). A default one missing here
        /// (no pipelines/ directory) is served from the binary's built-in copy.
        #[arg(long = "pipeline", value_name = "FILE", default_values = handoff::shipped::SERVED)]
        pipelines: Vec<PathBuf>,
        /// The roster file.
        #[arg(long, value_name = "FILE", default_value = "pipelines/roster.json")]
        roster: PathBuf,
        /// The URL HubSpot calls (for request signatures), e.g. https://handoff.acme.com.
        #[arg(long)]
        public_url: Option<String>,
        /// Slack channel told when a lead fails after its retries.
        #[arg(long, default_value = "#revops-alerts")]
        ops_channel: String,
        /// How long the effect journal of settled leads, settled timers and
        /// finished events' payloads are kept (lead timelines are kept for
        /// the metrics); pruned every 10 minutes.
        #[arg(long, env = "HANDOFF_RETENTION", default_value = "30d", value_parser = parse_duration)]
        retention: handoff::pipeline::model::HumanDuration,
        /// Connections held at once; one more is answered 503 and closed.
        #[arg(long, env = "HANDOFF_MAX_CONNECTIONS", default_value_t = handoff::server::ServerLimits::default().max_connections)]
        max_connections: usize,
        /// Leads running or waiting to run at once; beyond it webhooks are
        /// answered 503 with Retry-After (the provider delivers them again).
        #[arg(long, env = "HANDOFF_MAX_IN_FLIGHT", default_value_t = handoff::server::ServerLimits::default().max_in_flight)]
        max_in_flight: usize,
        /// Leads whose executions run at once; the others in flight wait
        /// their turn, in the order they came.
        #[arg(long, env = "HANDOFF_MAX_RUNNING", default_value_t = handoff::server::ServerLimits::default().max_running)]
        max_running: usize,
        // The /api bearer token comes from HANDOFF_API_TOKEN (never a flag,
        // so it stays out of process listings); it is required when
        // listening beyond loopback.
    },
    /// Check a real setup without changing anything: each provider's
    /// credentials and scopes, the fields, picklist values, properties,
    /// lists and channels the pipelines write, the public URL and the
    /// ledger. Prints what is missing and how to fix it; exits 1 on any
    /// problem.
    #[command(
        after_help = "Examples:\n  handoff doctor --config handoff.toml --public-url https://handoff.acme.com\n  HANDOFF_HUBSPOT_TOKEN=... HANDOFF_SLACK_BOT_TOKEN=... handoff doctor --json"
    )]
    Doctor {
        #[command(flatten)]
        host: PluginDirs,

        /// Connector settings (TOML); the HANDOFF_* variables fill in (or
        /// replace) what it leaves out.
        #[arg(long, value_name = "FILE", env = "HANDOFF_CONFIG")]
        config: Option<PathBuf>,
        /// The pipeline files the server will serve (repeatable; default:
        /// the shipped ones, as `handoff serve`).
        #[arg(long = "pipeline", value_name = "FILE")]
        pipelines: Vec<PathBuf>,
        /// The URL HubSpot and Slack call, as `handoff serve --public-url`.
        #[arg(long)]
        public_url: Option<String>,
        /// The Slack channel failed leads are reported to.
        #[arg(long, default_value = "#revops-alerts")]
        ops_channel: String,
        /// Print the findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run failed leads again on a running server (effects that already
    /// happened are replayed, not repeated). Sends HANDOFF_API_TOKEN when set.
    #[command(
        after_help = "Examples:\n  handoff retry 1005\n  handoff retry --all-failed --server http://127.0.0.1:8080"
    )]
    Retry {
        /// The lead (HubSpot contact id) to retry.
        #[arg(required_unless_present = "all_failed", conflicts_with = "all_failed")]
        lead: Option<String>,
        /// Retry every failed lead.
        #[arg(long)]
        all_failed: bool,
        /// The server's address.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
    },
    /// Run the end-to-end demo: sandbox org, server, ~50 signed MQL webhooks,
    /// and a table of what happened to each lead.
    #[cfg(feature = "emulators")]
    #[command(after_help = "Examples:\n  handoff demo\n  handoff demo --keep-running")]
    Demo {
        #[command(flatten)]
        host: PluginDirs,

        /// Where the shipped pipelines and roster are; without a
        /// pipelines/ directory here, the ones built into the binary.
        #[arg(long, default_value = "pipelines")]
        pipelines_dir: PathBuf,
        /// Leave the server and its dashboard up afterwards (prints the URL).
        #[arg(long)]
        keep_running: bool,
    },
    /// Leads from the ledger: a list by state, or one lead's timeline.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  handoff lead list --state notified\n  handoff lead show 1005\n  handoff lead show 1005 --json"
    )]
    Lead {
        #[command(subcommand)]
        action: Option<LeadCommand>,
        /// (older spelling: `handoff lead ID` is `handoff lead show ID`)
        #[arg(hide = true, value_name = "HUBSPOT_CONTACT_ID")]
        id: Option<String>,
        #[arg(long, hide = true)]
        json: bool,
        #[arg(long = "data-dir", value_name = "DIR", hide = true)]
        data_dir: Option<PathBuf>,
    },
    /// (older spelling of `handoff lead list`)
    #[command(hide = true)]
    Leads {
        #[command(flatten)]
        list: LeadList,
    },
    /// Show the roster: each team's reps, who can take a lead now and why
    /// not, and who is paused by the SLA ladder.
    #[command(after_help = "Examples:\n  handoff roster\n  handoff roster --roster pipelines/roster.json --json")]
    Roster {
        #[command(flatten)]
        data: DataDir,

        /// The roster file.
        #[arg(long, value_name = "FILE", default_value = "pipelines/roster.json")]
        roster: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Handoff health: speed to contact, SLA compliance, acceptance rate,
    /// drop rate and recycle conversion, overall and by a grouping (reads
    /// the ledger).
    #[command(after_help = "Examples:\n  handoff metrics\n  handoff metrics --from 2026-11-01 --by rep --json")]
    Metrics {
        #[command(flatten)]
        data: DataDir,

        /// From this date (2026-11-01), timestamp or milliseconds; default
        /// 7 days ago.
        #[arg(long)]
        from: Option<String>,
        /// Up to (not including) this date; default now.
        #[arg(long)]
        to: Option<String>,
        /// Also by team, rep, source or campaign.
        #[arg(long)]
        by: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What sales sent back to marketing, by reason, source, campaign and
    /// rep, and what became of each lead (reads the ledger).
    #[command(after_help = "Examples:\n  handoff rejections\n  handoff rejections --from 2026-10-01 --json")]
    Rejections {
        #[command(flatten)]
        data: DataDir,

        /// From this date (2026-11-01), timestamp or milliseconds; default
        /// 30 days ago.
        #[arg(long)]
        from: Option<String>,
        /// Up to (not including) this date; default now.
        #[arg(long)]
        to: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a pipeline over past leads (the ledger) or exported ones (a
    /// HubSpot CSV export, JSON lines) with nothing sent, and print what
    /// each lead would get; with --compare or --baseline live, what a
    /// change does: owners that change, load per rep and team, round-robin
    /// fairness, the fallback queue, new failures.
    #[command(
        after_help = "Examples:\n  handoff simulate pipelines/mql-handoff.json --from-ledger --since 30d --baseline live\n  handoff simulate new-rules.json --from-ledger --compare pipelines/mql-handoff.json --report change.html\n  handoff simulate pipelines/mql-handoff.json --leads hubspot-export.csv"
    )]
    Simulate {
        #[command(flatten)]
        host: PluginDirs,
        #[command(flatten)]
        limits: LimitArgs,

        /// The pipeline file to simulate.
        pipeline: PathBuf,
        /// The leads the ledger (`--data-dir`, or HANDOFF_DATABASE_URL)
        /// received, with the answers their executions got.
        #[arg(long, conflicts_with = "leads", required_unless_present = "leads")]
        from_ledger: bool,
        /// How far back --from-ledger looks.
        #[arg(long, value_parser = parse_duration, default_value = "30d")]
        since: handoff::pipeline::model::HumanDuration,
        /// Whose events --from-ledger takes (default: the simulated
        /// pipeline's name).
        #[arg(long, value_name = "PIPELINE_NAME")]
        events_of: Option<String>,
        /// Leads from a file instead: a HubSpot contact export (.csv) or
        /// JSON lines (.jsonl); their Salesforce side is taken as empty.
        #[arg(long, value_name = "FILE")]
        leads: Option<PathBuf>,
        /// The roster routing reads (default: pipelines/roster.json, or the
        /// built-in one).
        #[arg(long, value_name = "FILE")]
        roster: Option<PathBuf>,
        /// Compare with this pipeline run over the same leads.
        #[arg(long, value_name = "PIPELINE", conflicts_with = "baseline")]
        compare: Option<PathBuf>,
        /// Compare with what was decided live (`live`; --from-ledger only).
        #[arg(long, value_parser = ["live"], requires = "from_ledger")]
        baseline: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also write the report as an HTML page with the per-rep chart.
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
        /// Answer reads the recording lacks from the real providers (reads
        /// only; writes are never sent), with this connector config.
        #[arg(long, value_name = "FILE")]
        live_reads: Option<PathBuf>,
    },
    /// Run one past execution again from its recording (the same input,
    /// provider answers and state reads) with a new plugin version or
    /// pipeline, nothing sent, and print the difference node by node.
    #[command(
        after_help = "Examples:\n  handoff replay mql-handoff:hubspot:4242 --plugin route=target/route-v2.wasm\n  handoff replay mql-handoff:hubspot:4242 --pipeline new-rules.json --json\n\nExecution ids are in `handoff lead show HUBSPOT_CONTACT_ID --json` and GET /api/executions."
    )]
    Replay {
        #[command(flatten)]
        host: PluginDirs,
        #[command(flatten)]
        limits: LimitArgs,

        /// The execution (`<pipeline>:<source>:<event id>`).
        execution_id: String,
        /// Replace a plugin: NAME=FILE.wasm (the component must call itself
        /// NAME). May be given more than once.
        #[arg(long = "plugin", value_name = "NAME=FILE.wasm")]
        plugins: Vec<String>,
        /// The changed pipeline (default: the original with --plugin).
        #[arg(long, value_name = "FILE")]
        pipeline: Option<PathBuf>,
        /// The original pipeline (default: pipelines/<name>.json, or the
        /// built-in one).
        #[arg(long, value_name = "FILE")]
        original: Option<PathBuf>,
        /// The roster (default: pipelines/roster.json, or the built-in one).
        #[arg(long, value_name = "FILE")]
        roster: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What shadow pipelines would have decided, beside the live ones.
    #[command(
        after_help = "Examples:\n  handoff shadow report\n  handoff shadow report --pipeline mql-handoff-next --lead 1005 --json"
    )]
    Shadow {
        #[command(subcommand)]
        action: ShadowCommand,
    },
    /// Plugins: the ones loaded, a plugin's config schema, a new one of your own.
    #[command(
        after_help = "Examples:\n  handoff plugin list\n  handoff plugin schema route\n  handoff plugin new lead-tagger --lang python"
    )]
    Plugin {
        #[command(subcommand)]
        action: PluginCommand,
    },
    /// (older spelling of `handoff plugin list` and `plugin schema`)
    #[command(hide = true)]
    Plugins {
        #[command(flatten)]
        host: PluginDirs,
        #[arg(long)]
        json: bool,
        #[arg(long, value_name = "PLUGIN")]
        schema: Option<String>,
    },
    /// Write an editable starter into DIR: handoff.toml (every setting,
    /// commented), pipelines/ with the roster, and .env.example.
    #[command(
        after_help = "Examples:\n  handoff init acme-handoff\n  cd acme-handoff && handoff validate pipelines/*.json && handoff serve --sandbox"
    )]
    Init {
        /// Where (created if missing; nothing in it is overwritten).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print the JSON Schema of pipeline files (or write it to a file).
    #[command(after_help = "Examples:\n  handoff schema -o pipelines/pipeline.schema.json\n  handoff schema --openapi")]
    Schema {
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// The server's OpenAPI 3.1 document instead (docs/openapi.json).
        #[arg(long)]
        openapi: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ShadowCommand {
    /// Per shadow pipeline, how often it disagrees with the live one, and
    /// the leads where it does (newest first).
    #[command(
        after_help = "Examples:\n  handoff shadow report\n  handoff shadow report --pipeline mql-handoff-next --json"
    )]
    Report {
        #[command(flatten)]
        data: DataDir,
        /// Only this shadow pipeline.
        #[arg(long)]
        pipeline: Option<String>,
        /// Only this lead (its HubSpot contact id).
        #[arg(long)]
        lead: Option<String>,
        /// At most this many decisions.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// List loaded plugins: version, source, ports, capabilities.
    #[command(after_help = "Examples:\n  handoff plugin list\n  handoff plugin list --plugins my-plugins/ --json")]
    List {
        #[command(flatten)]
        host: PluginDirs,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the config JSON Schema of a loaded plugin.
    #[command(
        after_help = "Examples:\n  handoff plugin schema route\n  handoff plugin schema score-router --plugins my-plugins/"
    )]
    Schema {
        /// The plugin's name (`route`, or one of yours).
        name: String,
        #[command(flatten)]
        host: PluginDirs,
    },
    /// Create a buildable starter plugin (with the Handoff WIT vendored).
    #[command(
        after_help = "Examples:\n  handoff plugin new lead-tagger --lang rust\n  handoff plugin new fit-score --lang python --dir plugins/fit-score"
    )]
    New {
        /// The plugin's name (lower-case letters, digits, '-').
        name: String,
        /// The language to write it in.
        #[arg(long, value_enum)]
        lang: handoff::scaffold::Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum LeadCommand {
    /// Leads from the ledger, most recently updated first.
    #[command(after_help = "Examples:\n  handoff lead list\n  handoff lead list --state failed --json")]
    List {
        #[command(flatten)]
        list: LeadList,
    },
    /// One lead's timeline, with its timers (each SLA step: due, fired,
    /// cancelled, and why).
    #[command(after_help = "Examples:\n  handoff lead show 1005\n  handoff lead show 1005 --json")]
    Show {
        /// The lead: its HubSpot contact id (as in `handoff lead list`).
        #[arg(value_name = "HUBSPOT_CONTACT_ID")]
        contact_id: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
}

/// What `handoff lead list` takes.
#[derive(Debug, Clone, clap::Args)]
struct LeadList {
    /// Only leads in this state (received, validated, deduped, routed,
    /// assigned, notified, waiting, invalid, duplicate, failed, accepted,
    /// rejected, recycled, ..., or a state a plugin declares).
    #[arg(long)]
    state: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    data: DataDir,
}

/// Where state lives: the subcommand's `--data-dir`, the older one before
/// the subcommand, `HANDOFF_DATA_DIR`, or `.handoff`.
fn data_dir(given: &DataDir, before: Option<&PathBuf>) -> PathBuf {
    given
        .data_dir
        .clone()
        .or_else(|| before.cloned())
        .or_else(|| std::env::var_os("HANDOFF_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".handoff"))
}

/// A multi-threaded runtime for one command.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => report(rt.block_on(work)),
        Err(e) => report(Err(anyhow::anyhow!("cannot start the async runtime: {e}"))),
    }
}

fn main() -> ExitCode {
    handoff::allocator::tune();
    let args = Args::parse();
    // Colour only on a terminal; one line per record whatever its fields hold.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    // The demo's report says what happened; a provider's rate limit it
    // waits out (the sandbox's Slack, as the real one, limits channel
    // posts) is not news above it. Errors still show.
    #[cfg(feature = "emulators")]
    let quiet = if matches!(args.command, Command::Demo { .. }) { "error" } else { "warn" };
    #[cfg(not(feature = "emulators"))]
    let quiet = "warn";
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("HANDOFF_LOG").unwrap_or_else(|_| quiet.into()))
        .with_ansi(ansi)
        .with_writer(handoff::logging::OneLine::new(std::io::stderr, ansi))
        .init();

    let before = args.data_dir.as_ref();
    let plugins_before = &args.plugin_dirs;
    // The options of a command that loads plugins.
    let host_options = |host: &PluginDirs, limits: Option<&LimitArgs>| HostOptions {
        data_dir: data_dir(&host.data, before),
        plugin_dirs: plugins_before.iter().chain(&host.plugin_dirs).cloned().collect(),
        limits: limits.map(LimitArgs::limits).unwrap_or_default(),
    };

    match args.command {
        Command::Plugin { action: PluginCommand::New { name, lang, dir } } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            match handoff::scaffold::create(&name, lang, &dir) {
                Ok(files) => {
                    println!(
                        "created {} ({} files); see {}/README.md to build it",
                        dir.display(),
                        files.len(),
                        dir.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => report(Err(e)),
            }
        }
        Command::Leads { list } | Command::Lead { action: Some(LeadCommand::List { list }), .. } => {
            let dir = data_dir(&list.data, before);
            block_on(async move { cli::leads(&dir, list.state.as_deref(), list.limit, list.json).await })
        }
        Command::Lead { action: Some(LeadCommand::Show { contact_id, json, data }), .. } => {
            let dir = data_dir(&data, before);
            block_on(async move { cli::lead(&dir, &contact_id, json).await })
        }
        Command::Lead { action: None, id: Some(id), json, data_dir: given } => {
            let dir = data_dir(&DataDir { data_dir: given }, before);
            block_on(async move { cli::lead(&dir, &id, json).await })
        }
        Command::Lead { action: None, id: None, .. } => {
            eprintln!("error: say what: `handoff lead list` or `handoff lead show HUBSPOT_CONTACT_ID` (see --help)");
            ExitCode::from(2)
        }
        Command::Metrics { data, from, to, by, json } => {
            let dir = data_dir(&data, before);
            block_on(async move { cli::metrics(&dir, from.as_deref(), to.as_deref(), by.as_deref(), json).await })
        }
        Command::Rejections { data, from, to, json } => {
            let dir = data_dir(&data, before);
            block_on(async move { cli::rejections(&dir, from.as_deref(), to.as_deref(), json).await })
        }
        Command::Roster { data, roster, json } => {
            let dir = data_dir(&data, before);
            block_on(async move { cli::roster(&dir, &roster, json).await })
        }
        Command::Shadow { action: ShadowCommand::Report { data, pipeline, lead, limit, json } } => {
            let dir = data_dir(&data, before);
            block_on(async move { cli::shadow_report(&dir, pipeline.as_deref(), lead.as_deref(), limit, json).await })
        }
        Command::Schema { output, openapi } => report(cli::schema(output.as_deref(), openapi)),
        Command::Init { dir } => report(cli::init(&dir)),
        #[cfg(feature = "emulators")]
        Command::Demo { host, pipelines_dir, keep_running } => {
            let host = host_options(&host, None);
            let options = handoff::demo::DemoOptions {
                data_dir: host.data_dir,
                plugin_dirs: host.plugin_dirs,
                pipelines_dir,
                keep_running,
            };
            block_on(async move {
                let text = handoff::demo::run(options).await?;
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            })
        }
        Command::Retry { lead, all_failed: _, server } => {
            block_on(async move { cli::retry(&server, lead.as_deref()).await })
        }
        Command::Serve {
            host,
            limits,
            listen,
            sandbox,
            sandbox_listen,
            sandbox_smtp_listen,
            config,
            pipelines,
            roster,
            public_url,
            ops_channel,
            retention,
            max_connections,
            max_in_flight,
            max_running,
        } => {
            let host = host_options(&host, Some(&limits));
            let options = cli::ServeOptions {
                data_dir: host.data_dir,
                plugin_dirs: host.plugin_dirs,
                listen,
                sandbox: sandbox.then_some((sandbox_listen, sandbox_smtp_listen)),
                config,
                pipelines,
                roster,
                public_url,
                ops_channel,
                retention: retention.0,
                limits: host.limits,
                server_limits: handoff::server::ServerLimits {
                    max_connections,
                    max_in_flight,
                    max_running,
                    ..handoff::server::ServerLimits::default()
                },
            };
            block_on(cli::serve(options))
        }
        #[cfg(feature = "emulators")]
        Command::Sandbox { listen, smtp_listen, fixture } => {
            block_on(async move { cli::sandbox(listen, smtp_listen, fixture.as_deref()).await })
        }
        // Commands that load plugins run on a started host.
        Command::Validate { host, files, roster } => {
            let options = host_options(&host, None);
            block_on(async move { Ok(cli::validate(&Host::start(options).await?, &files, roster.as_deref())) })
        }
        Command::Run { host, limits, pipeline, input, json, full, lead_id, sandbox, config } => {
            let options = host_options(&host, Some(&limits));
            let run = RunOptions { pipeline, input, json, full, lead_id, sandbox, config };
            block_on(async move { cli::run(&Host::start(options).await?, &run).await })
        }
        Command::Plugins { host, json, schema } => {
            let options = host_options(&host, None);
            block_on(async move { cli::plugins(&Host::start(options).await?, json, schema.as_deref()) })
        }
        Command::Plugin { action: PluginCommand::List { host, json } } => {
            let options = host_options(&host, None);
            block_on(async move { cli::plugins(&Host::start(options).await?, json, None) })
        }
        Command::Plugin { action: PluginCommand::Schema { name, host } } => {
            let options = host_options(&host, None);
            block_on(async move { cli::plugins(&Host::start(options).await?, false, Some(&name)) })
        }
        Command::Doctor { host, config, pipelines, public_url, ops_channel, json } => {
            let options = host_options(&host, None);
            let doctor = cli::DoctorOptions { config, pipelines, public_url, ops_channel, json };
            block_on(async move { cli::doctor(&Host::start(options).await?, &doctor).await })
        }
        Command::Replay { host, limits, execution_id, plugins, pipeline, original, roster, json } => {
            let options = host_options(&host, Some(&limits));
            let replay = cli::ReplayOptions { execution_id, plugins, pipeline, original, roster, json };
            block_on(async move { cli::replay(&Host::start(options).await?, &replay).await })
        }
        Command::Simulate {
            host,
            limits,
            pipeline,
            from_ledger,
            since,
            events_of,
            leads,
            roster,
            compare,
            baseline,
            json,
            report: html,
            live_reads,
        } => {
            let options = host_options(&host, Some(&limits));
            let simulate = cli::SimulateOptions {
                pipeline,
                leads: if from_ledger {
                    cli::SimulateLeads::Ledger {
                        since_ms: i64::try_from(since.0.as_millis()).unwrap_or(i64::MAX),
                        events_of,
                    }
                } else {
                    cli::SimulateLeads::File(leads.expect("clap requires --leads without --from-ledger"))
                },
                roster,
                compare,
                baseline_live: baseline.is_some(),
                json,
                html,
                live_reads,
            };
            block_on(async move { cli::simulate(&Host::start(options).await?, &simulate).await })
        }
    }
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn parse_duration(text: &str) -> Result<handoff::pipeline::model::HumanDuration, String> {
    handoff::pipeline::model::HumanDuration::parse(text)
        .ok_or_else(|| format!("'{text}' is not a duration like 12h, 30d or 90d"))
}
