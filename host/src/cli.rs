//! What the `handoff` subcommands do, and how their output reads. Argument
//! parsing lives in `main.rs`; everything here is callable from tests.

use crate::app::Host;
use crate::capabilities::TimerBook;
use crate::connectors::ConnectorsConfig;
use crate::pipeline::{self, Executor, Start};
use crate::record::{BranchEnd, ExecutionRecord, ExecutionStatus};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `handoff validate FILE...`: prints every problem, exits 1 if any.
pub fn validate(host: &Host, files: &[PathBuf], roster: Option<&Path>) -> ExitCode {
    let mut failed = false;
    let mut valid = Vec::new();
    for given in files {
        // A shipped pipeline named where there is no pipelines/ directory is
        // the binary's built-in copy, and says so.
        let (file, origin) = crate::shipped::file(given, &host.options.data_dir)
            .unwrap_or_else(|_| (given.clone(), crate::shipped::Origin::Disk));
        let copy = if origin == crate::shipped::Origin::Disk { "" } else { ", the built-in copy" };
        match pipeline::load_file(&file, &host.registry) {
            Ok(prepared) => {
                let p = &prepared.pipeline;
                println!(
                    "ok: {} (pipeline '{}' v{}, {} nodes{copy})",
                    file.display(),
                    p.name,
                    p.version,
                    p.nodes.len()
                );
                valid.push(prepared);
            }
            Err(diagnostics) => {
                failed = true;
                for d in &diagnostics {
                    eprintln!("{d}");
                }
                eprintln!("{}: {} error(s)", file.display(), diagnostics.len());
            }
        }
    }
    let beside = files.first().and_then(|f| f.parent()).map(|dir| dir.join("roster.json")).filter(|r| r.is_file());
    let roster_file = roster.map(Path::to_path_buf).or(beside);
    let roster = match &roster_file {
        Some(path) => match crate::roster::FileRoster::load(path).map(|r| r.current()) {
            Ok(roster) => {
                println!("roster: {}", path.display());
                Some(roster)
            }
            Err(e) => {
                eprintln!("{}: error: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let together = pipeline::check_together(&valid, roster.as_deref());
    for d in &together {
        eprintln!("{d}");
    }
    if failed || !together.is_empty() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

/// Options of `handoff doctor`.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The connector config file, if any (the environment fills in).
    pub config: Option<PathBuf>,
    /// The pipelines to check for; empty: the shipped ones.
    pub pipelines: Vec<PathBuf>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--ops-channel`.
    pub ops_channel: String,
    /// Print JSON.
    pub json: bool,
}

/// `handoff doctor`: every check of [`crate::doctor`], printed; exits 1 when
/// any fails.
///
/// # Errors
///
/// When the config file cannot be read, or a pipeline is invalid (named
/// with its diagnostics).
pub async fn doctor(host: &Host, options: &DoctorOptions) -> Result<ExitCode> {
    let connectors = ConnectorsConfig::from_file_and_env(options.config.as_deref())?;
    let given: Vec<PathBuf> = if options.pipelines.is_empty() {
        crate::shipped::SERVED.iter().map(PathBuf::from).collect()
    } else {
        options.pipelines.clone()
    };
    let mut pipelines = Vec::new();
    for path in &given {
        let (file, _) = crate::shipped::file(path, &host.options.data_dir)?;
        let prepared = pipeline::load_file(&file, &host.registry).map_err(|diagnostics| {
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            anyhow::anyhow!(
                "{} is not a valid pipeline (handoff validate says why):\n{}",
                file.display(),
                lines.join("\n")
            )
        })?;
        pipelines.push(prepared);
    }
    let needs = crate::doctor::Needs::of(&pipelines, &host.registry, &options.ops_channel);
    let findings = crate::doctor::check(&crate::doctor::Options {
        connectors,
        needs,
        public_url: options.public_url.clone(),
        database: crate::ledger::Database::from_env(&host.options.data_dir),
    })
    .await;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        print!("{}", crate::doctor::render(&findings));
    }
    let failed = findings.iter().any(|f| f.level == crate::doctor::Level::Fail);
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Options of `handoff run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The pipeline file.
    pub pipeline: PathBuf,
    /// The input item file, or `-` for stdin.
    pub input: PathBuf,
    /// Print the execution record as JSON.
    pub json: bool,
    /// Print items whole instead of shortened.
    pub full: bool,
    /// The lead to tag the execution with.
    pub lead_id: Option<String>,
    /// Run against in-process emulators of every provider.
    pub sandbox: bool,
    /// Connector settings (TOML), when not in the sandbox.
    pub config: Option<PathBuf>,
}

/// `handoff run PIPELINE --input ITEM.json`: one execution, then its trace.
/// Exits 1 when the pipeline is invalid or the execution failed.
///
/// # Errors
///
/// When the input cannot be read or is not JSON.
pub async fn run(host: &Host, options: &RunOptions) -> Result<ExitCode> {
    let prepared = match pipeline::load_file(&options.pipeline, &host.registry) {
        Ok(prepared) => prepared,
        Err(diagnostics) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let input = read_input(&options.input)?;
    let timers = Arc::new(TimerBook::default());
    let local = host.local_capabilities(timers.clone());
    let mut _emulators = None;
    let capabilities = if options.sandbox {
        let any = "127.0.0.1:0".parse().expect("an address");
        let (running, connectors) = start_emulators(any, any).await?;
        _emulators = Some(running);
        connectors.connect(local)?
    } else if let Some(path) = &options.config {
        ConnectorsConfig::load(path)?.connect(local)?
    } else {
        local
    };
    let executor = Executor::new(host.runtime.clone(), Arc::new(capabilities));
    let record = executor.execute(&prepared, input, Start::Trigger, options.lead_id.clone()).await;
    let pending = timers.pending();
    if options.json {
        let out = serde_json::json!({ "execution": record, "timers": pending });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", render_trace(&record, options.full));
        for timer in &pending {
            println!(
                "timer set: node '{}' at {} ms with {} (not fired: `handoff run` executes once)",
                timer.node,
                timer.at,
                shorten(&timer.payload, options.full)
            );
        }
    }
    Ok(match record.status {
        ExecutionStatus::Completed => ExitCode::SUCCESS,
        ExecutionStatus::Failed => ExitCode::FAILURE,
    })
}

fn read_input(path: &Path) -> Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the input item from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading the input item {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("the input item {} is not valid JSON", path.display()))
}

/// The human-readable trace of one execution.
pub fn render_trace(record: &ExecutionRecord, full: bool) -> String {
    let mut out = String::new();
    let status = match record.status {
        ExecutionStatus::Completed => "completed",
        ExecutionStatus::Failed => "FAILED",
    };
    let _ = writeln!(
        out,
        "{} v{} · execution {} · {status} in {}",
        record.pipeline,
        record.pipeline_version,
        record.execution_id,
        micros(record.duration_us)
    );
    if let Some(error) = &record.error {
        let _ = writeln!(out, "error: {error}");
    }
    for run in &record.runs {
        let mark = if run.error.is_some() { "✗" } else { "✓" };
        let _ = writeln!(
            out,
            "\n{mark} #{} {} ({} {})  attempt {}  {}",
            run.seq,
            run.node,
            run.plugin,
            run.plugin_version,
            run.attempt,
            micros(run.duration_us)
        );
        let _ = writeln!(out, "    in    {}", shorten(&run.input.to_string(), full));
        for emitted in &run.outputs {
            let _ = writeln!(
                out,
                "    out   {:<8} {}",
                emitted.port,
                shorten(&changes(run.input.value(), emitted.item.value()), full)
            );
        }
        if let Some(error) = &run.error {
            let retry = if error.retryable { " (retryable)" } else { "" };
            let _ = writeln!(out, "    error {}: {}{retry}", error.kind, error.message);
        }
        for denied in &run.denied {
            let _ = writeln!(out, "    denied {denied}");
        }
        for line in &run.logs {
            let _ = writeln!(out, "    log   [{:?}] {}", line.stream, line.message);
        }
    }
    if !record.ends.is_empty() {
        let _ = writeln!(out, "\nbranches ended:");
        for end in &record.ends {
            match end {
                BranchEnd::Unconnected { node, port, .. } => {
                    let _ = writeln!(out, "  {node}:{port} (no connection)");
                }
                BranchEnd::Failed { node, error } => {
                    let _ = writeln!(out, "  {node}: failed ({}), continued", error.kind);
                }
                BranchEnd::Incomplete { node, missing, .. } => {
                    let _ = writeln!(out, "  {node}: merge incomplete, no {}", missing.join(", "));
                }
            }
        }
    }
    out
}

/// Emulators running for `--sandbox` (dropping it stops them).
type RunningEmulators = Box<dyn std::any::Any + Send>;

/// Starts the emulators on `http` and `smtp` for `--sandbox`, on the system
/// clock; returns them and the connector settings that point at them.
#[cfg(feature = "emulators")]
async fn start_emulators(
    http: std::net::SocketAddr,
    smtp: std::net::SocketAddr,
) -> Result<(RunningEmulators, ConnectorsConfig)> {
    let emulators = crate::emulated::Emulators::start(http, smtp).await?;
    let connectors = crate::emulated::connectors(&emulators);
    Ok((Box::new(emulators), connectors))
}

#[cfg(not(feature = "emulators"))]
async fn start_emulators(
    _http: std::net::SocketAddr,
    _smtp: std::net::SocketAddr,
) -> Result<(RunningEmulators, ConnectorsConfig)> {
    anyhow::bail!("this build of handoff has no emulators (it was built without the `emulators` feature)")
}

/// `handoff sandbox`: serves the emulators until interrupted.
///
/// # Errors
///
/// When a port cannot be bound or the fixture cannot be read.
#[cfg(feature = "emulators")]
pub async fn sandbox(
    listen: std::net::SocketAddr,
    smtp: std::net::SocketAddr,
    fixture: Option<&Path>,
) -> Result<ExitCode> {
    use handoff_emulators::{EmulatorState, Emulators, Fixture, Settings};
    let fixture = match fixture {
        Some(path) => Fixture::load(path)?,
        None => Fixture::builtin(),
    };
    let state = EmulatorState::new(fixture, Settings::default(), handoff_emulators::system_clock());
    let emulators = Emulators::start_with(listen, smtp, state).await?;
    let base = format!("http://{}", emulators.http);
    println!("Handoff sandbox: emulators of HubSpot, Salesforce, Slack and Anthropic, and an SMTP sink");
    println!("  HubSpot      {base}/hubspot          (bearer token: sandbox)");
    println!("  Salesforce   {base}/salesforce       (OAuth: {base}/salesforce/services/oauth2/token)");
    println!("  Slack        {base}/slack/api");
    println!("  Anthropic    {base}/anthropic/v1/messages");
    println!("  SMTP         {}", emulators.smtp);
    println!(
        "  Inspect      {base}/_sandbox/stats, /_sandbox/slack/messages, /_sandbox/salesforce/Lead, /_sandbox/emails"
    );
    println!("  Faults       POST {base}/_sandbox/faults");
    println!("Ctrl-C stops it.");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::SUCCESS)
}

/// Options of `handoff serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the ledger and caches live.
    pub data_dir: PathBuf,
    /// More plugin directories.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where to listen.
    pub listen: std::net::SocketAddr,
    /// Emulator HTTP and SMTP addresses, in sandbox mode.
    pub sandbox: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// Connector settings (TOML).
    pub config: Option<PathBuf>,
    /// Pipeline files to serve.
    pub pipelines: Vec<PathBuf>,
    /// The roster file.
    pub roster: PathBuf,
    /// The URL HubSpot calls, for signatures.
    pub public_url: Option<String>,
    /// Slack channel told of failed leads.
    pub ops_channel: String,
    /// How long settled work's journal is kept (`--retention`).
    pub retention: std::time::Duration,
    /// What plugins are held to as a whole.
    pub limits: crate::app::PluginLimits,
    /// What the server accepts of its clients.
    pub server_limits: crate::server::ServerLimits,
}

/// `handoff serve`: webhooks in, handoffs out, until interrupted.
///
/// # Errors
///
/// Missing credentials (named), invalid pipelines or roster, ports in use.
pub async fn serve(options: ServeOptions) -> Result<ExitCode> {
    let mut _emulators = None;
    let connectors = if let Some((http, smtp)) = options.sandbox {
        let (running, connectors) = start_emulators(http, smtp).await?;
        println!("sandbox: emulators on http://{http} (SMTP {smtp}); inspect at /_sandbox/stats");
        _emulators = Some(running);
        connectors
    } else {
        let connectors = ConnectorsConfig::from_file_and_env(options.config.as_deref())?;
        crate::app::require_for_serve(&connectors)?;
        connectors
    };
    // The default files come from the binary when there is no pipelines/
    // directory here: the server runs from any directory.
    let mut built_in = None;
    let mut shipped = |path: &Path| -> Result<PathBuf> {
        let (path, origin) = crate::shipped::file(path, &options.data_dir)?;
        if let crate::shipped::Origin::BuiltIn(dir) = origin {
            built_in = Some(dir);
        }
        Ok(path)
    };
    let pipelines = options.pipelines.iter().map(|p| shipped(p)).collect::<Result<Vec<_>>>()?;
    let roster = shipped(&options.roster)?;
    if let Some(dir) = built_in {
        println!(
            "handoff: no {}/ here; serving the built-in pipelines and roster (copies in {})",
            crate::shipped::DIR,
            dir.display()
        );
    }
    let app = crate::app::App::launch(crate::app::AppOptions {
        database: Some(crate::ledger::Database::from_env(&options.data_dir)),
        instance: crate::ledger::Instance::from_env(),
        data_dir: options.data_dir,
        plugin_dirs: options.plugin_dirs,
        pipelines,
        roster,
        connectors,
        listen: options.listen,
        public_url: options.public_url,
        ops_channel: Some(options.ops_channel),
        sweep_every: None,
        retention: options.retention,
        api_token: std::env::var("HANDOFF_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(crate::connectors::Secret::new),
        clock: Arc::new(crate::capabilities::SystemClock),
        waiting: crate::ledger::WaitPolicy::from_env(|name| std::env::var(name).ok())?,
        limits: options.limits,
        server_limits: options.server_limits,
    })
    .await?;
    println!(
        "handoff: listening on http://{} (POST /webhooks/hubspot, GET /healthz, /readyz, /api/executions)",
        app.server.addr
    );
    tokio::signal::ctrl_c().await?;
    let mut app = app;
    app.server.stop_accepting();
    println!("handoff: stopped accepting; finishing {} execution(s) in flight", app.server.in_flight());
    if !app.server.settle(std::time::Duration::from_secs(30)).await {
        println!(
            "handoff: {} execution(s) still running; their events stay in the ledger and resume at the next start",
            app.server.in_flight()
        );
    }
    if let Err(e) = app.server.flush().await {
        eprintln!("handoff: the ledger could not commit its last writes: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The ledger `handoff serve` uses with these settings.
async fn open_ledger(data_dir: &Path) -> Result<Arc<dyn crate::ledger::Ledger>> {
    let database = crate::ledger::Database::from_env(data_dir);
    if let crate::ledger::Database::Sqlite(path) = &database {
        anyhow::ensure!(
            path.exists(),
            "no ledger at {}; `handoff serve` creates it (or pass --data-dir, or set HANDOFF_DATABASE_URL)",
            path.display()
        );
    }
    let clock = Arc::new(crate::capabilities::SystemClock);
    Ok(crate::ledger::Roles::open(&database, crate::ledger::Instance::from_env(), clock).await?.ledger)
}

fn when(ms: i64) -> String {
    let iso = crate::connectors::time::iso8601(ms);
    format!("{} {}", &iso[..10], &iso[11..19])
}

/// `handoff lead list`: the ledger's leads, optionally those in one state
/// (any state a lead in the ledger shows, or a well-known one).
///
/// # Errors
///
/// When the ledger cannot be read, or no lead can be in `state`.
pub async fn leads(data_dir: &Path, state: Option<&str>, limit: usize, json: bool) -> Result<ExitCode> {
    print!("{}", leads_report(&*open_ledger(data_dir).await?, state, limit, json).await?);
    Ok(ExitCode::SUCCESS)
}

/// `handoff metrics`: handoff health for a period (default: the last 7
/// days), overall and by a grouping.
///
/// # Errors
///
/// When the ledger cannot be read, a date is not one or the grouping is
/// unknown.
pub async fn metrics(
    data_dir: &Path,
    from: Option<&str>,
    to: Option<&str>,
    by: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
    let from = from.map_or(Ok(now - 7 * 86_400_000), crate::reports::parse_time).map_err(anyhow::Error::msg)?;
    let to = to.map_or(Ok(now + 1), crate::reports::parse_time).map_err(anyhow::Error::msg)?;
    let by = by.map(str::parse::<crate::reports::GroupBy>).transpose().map_err(anyhow::Error::msg)?;
    let ledger = open_ledger(data_dir).await?;
    let metrics = crate::reports::metrics(&*ledger, from, to, now, by, crate::reports::MetricRules::default()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&metrics)?);
    } else {
        print!("{}", crate::reports::render_metrics(&metrics));
    }
    Ok(ExitCode::SUCCESS)
}

/// `handoff rejections`: what sales sent back in a period, and what became
/// of it.
///
/// # Errors
///
/// When the ledger cannot be read or a date is not one.
pub async fn rejections(data_dir: &Path, from: Option<&str>, to: Option<&str>, json: bool) -> Result<ExitCode> {
    let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
    let from = from.map_or(Ok(now - 30 * 86_400_000), crate::reports::parse_time).map_err(anyhow::Error::msg)?;
    let to = to.map_or(Ok(now + 1), crate::reports::parse_time).map_err(anyhow::Error::msg)?;
    let report = crate::reports::rejections(&*open_ledger(data_dir).await?, from, to).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::reports::render_rejections(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// What `handoff lead list` prints: a table, or JSON.
///
/// # Errors
///
/// When the ledger cannot be read, or no lead can be in `state`.
pub async fn leads_report(
    ledger: &dyn crate::ledger::Ledger,
    state: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<String> {
    let filter = match state {
        None => None,
        Some(name) => {
            let present = ledger.lead_states().await?;
            let known = crate::lead::LeadState::well_known(name)
                .or_else(|| present.iter().map(|(s, _)| s.clone()).find(|s| s.as_str() == name));
            let Some(known) = known else {
                let mut names: Vec<String> =
                    crate::lead::LeadState::WELL_KNOWN.iter().map(|s| s.as_str().to_string()).collect();
                names.extend(present.iter().map(|(s, _)| s.as_str().to_string()));
                names.sort();
                names.dedup();
                anyhow::bail!("no lead can be in state '{name}'; states: {}", names.join(", "));
            };
            Some(known)
        }
    };
    let leads = ledger.leads(filter.as_ref(), limit).await?;
    Ok(if json { serde_json::to_string_pretty(&leads)? + "\n" } else { render_leads(&leads) })
}

/// The table `handoff lead list` prints.
pub fn render_leads(leads: &[crate::lead::LeadRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<12} {:<10} {:<24} {:<26} {:<20} updated", "lead", "state", "name", "company", "owner");
    for lead in leads {
        let _ = writeln!(
            out,
            "{:<12} {:<10} {:<24} {:<26} {:<20} {}",
            lead.id,
            lead.state.as_str(),
            lead.name.as_deref().unwrap_or("-"),
            lead.company.as_deref().unwrap_or("-"),
            lead.owner.as_deref().unwrap_or("-"),
            when(lead.updated_at)
        );
    }
    let _ = writeln!(out, "{} lead(s)", leads.len());
    out
}

/// `handoff lead show ID`: one lead's timeline.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn lead(data_dir: &Path, id: &str, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger(data_dir).await?;
    let Some(lead) = ledger.lead(id).await? else {
        eprintln!("no lead {id} in the ledger");
        return Ok(ExitCode::FAILURE);
    };
    let timers = ledger.lead_timers(id).await?;
    let shadow = ledger.shadow_decisions(Some(id), None, 100).await?;
    if json {
        let mut body = serde_json::json!(lead);
        body["timers"] = serde_json::json!(timers);
        body["shadow"] = serde_json::json!(shadow);
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render_lead(&lead, &timers));
    for (n, d) in shadow.iter().enumerate() {
        let verdict = if d.differs { "differs" } else { "agrees" };
        println!(
            "{}shadow {} {verdict}: live {}, shadow {}{}",
            if n == 0 { "\n" } else { "" },
            d.pipeline,
            d.live.summary(),
            d.shadow.summary(),
            if d.differs { format!(" ({})", d.shadow.why) } else { String::new() }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// What `handoff lead show ID` prints: the lead, its timeline, and its timers
/// (each step of the SLA ladder: due, fired or cancelled, and why).
pub fn render_lead(lead: &crate::lead::LeadRecord, timers: &[crate::ledger::TimerRecord]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "lead {} · {} · {}",
        lead.id,
        lead.name.as_deref().unwrap_or("-"),
        lead.company.as_deref().unwrap_or("-")
    );
    let _ = writeln!(
        out,
        "email {} · owner {} · salesforce {}",
        lead.email.as_deref().unwrap_or("-"),
        lead.owner.as_deref().unwrap_or("-"),
        lead.salesforce_id.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "state {}\n", lead.state.as_str());
    for step in &lead.timeline {
        let _ = writeln!(out, "  {}  {:<10} {}", when(step.at), step.state.as_str(), step.detail);
    }
    if !timers.is_empty() {
        let _ = writeln!(out, "\ntimers");
        for timer in timers {
            let what = timer.label.as_deref().unwrap_or(&timer.node);
            let settled = match (&timer.settled_at, &timer.reason) {
                (Some(at), Some(reason)) => format!(" at {}: {reason}", when(*at)),
                (Some(at), None) => format!(" at {}", when(*at)),
                _ => String::new(),
            };
            let _ = writeln!(out, "  {}  {:<9} {what}{settled}", when(timer.due_at), timer.state);
        }
    }
    out
}

/// `handoff roster`: each team's reps, who can take a lead now and why
/// not, and who is paused.
///
/// # Errors
///
/// When the roster or the ledger cannot be read.
pub async fn roster(data_dir: &Path, roster: &Path, json: bool) -> Result<ExitCode> {
    let ledger = open_ledger(data_dir).await?;
    let file = crate::roster::FileRoster::load(roster)?.with_pauses_in(ledger.clone());
    let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
    let view = crate::server::roster_view(&file, &*ledger, now).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", render_roster(&serde_json::to_value(&view)?));
    }
    Ok(ExitCode::SUCCESS)
}

/// The table `handoff roster` prints.
pub fn render_roster(view: &Value) -> String {
    let mut out = String::new();
    for team in view["teams"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "{} ({})",
            team["name"].as_str().unwrap_or_default(),
            team["id"].as_str().unwrap_or_default()
        );
        for rep in team["reps"].as_array().into_iter().flatten() {
            let now = if rep["available"] == true {
                "available".to_string()
            } else {
                rep["why_not"].as_str().unwrap_or("unavailable").to_string()
            };
            let paused = if rep["paused"].is_null() { "" } else { "  [PAUSED]" };
            let _ = writeln!(out, "  {:<20} {now}{paused}", rep["name"].as_str().unwrap_or_default());
        }
    }
    let paused = view["paused"].as_array().map_or(0, Vec::len);
    let _ = writeln!(out, "{paused} rep(s) paused");
    out
}

/// `handoff retry`: asks a running server to run failed leads again.
///
/// # Errors
///
/// When the server cannot be reached or refuses.
pub async fn retry(server: &str, lead: Option<&str>) -> Result<ExitCode> {
    let url = match lead {
        Some(id) => format!("{}/api/leads/{id}/retry", server.trim_end_matches('/')),
        None => format!("{}/api/retry-failed", server.trim_end_matches('/')),
    };
    let mut request = reqwest::Client::new().post(&url);
    if let Ok(token) = std::env::var("HANDOFF_API_TOKEN") {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.with_context(|| format!("reaching {server}; is `handoff serve` running?"))?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or_default();
    anyhow::ensure!(status.is_success(), "the server answered {status}: {body}");
    let retried = body["retried"].as_array().map_or(0, Vec::len);
    println!("retrying {retried} failed event(s){}", lead.map(|l| format!(" of lead {l}")).unwrap_or_default());
    Ok(ExitCode::SUCCESS)
}

/// `handoff plugin list` and `plugin schema`: what is loaded.
///
/// # Errors
///
/// When the output cannot be serialized.
pub fn plugins(host: &Host, json: bool, schema_of: Option<&str>) -> Result<ExitCode> {
    if let Some(name) = schema_of {
        let Some(plugin) = host.registry.get(name) else {
            eprintln!("no plugin '{name}'; loaded: {}", host.registry.names().join(", "));
            return Ok(ExitCode::FAILURE);
        };
        println!("{}", serde_json::to_string_pretty(&plugin.info.config_schema)?);
        return Ok(ExitCode::SUCCESS);
    }
    if json {
        let infos: Vec<_> = host.registry.iter().map(|p| &p.info).collect();
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(ExitCode::SUCCESS);
    }
    for plugin in host.registry.iter() {
        let info = &plugin.info;
        let list = |items: &[String]| if items.is_empty() { "-".to_string() } else { items.join(", ") };
        let grants: Vec<String> = info.capabilities.iter().map(ToString::to_string).collect();
        let imports: Vec<String> = info.imports.iter().map(|i| i.name().to_string()).collect();
        println!("{} {}  ({})", info.name, info.version, info.source);
        println!("    {}", info.description);
        println!("    inputs: {}   outputs: {}", list(&info.inputs), list(&info.outputs));
        println!("    needs: {}   imports: {}", list(&grants), list(&imports));
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's own `HANDOFF_*` variables (the connectors' are
/// [`crate::connectors::ENV_VARIABLES`]), beyond those that are an option's
/// `[env: ...]`.
const SERVER_ENV_VARIABLES: &[(&str, &str)] = &[
    ("HANDOFF_DATA_DIR", "where state and the compiled-component cache live (default .handoff; --data-dir wins)"),
    ("HANDOFF_API_TOKEN", "bearer token for /api and the dashboard; required beyond loopback"),
    ("HANDOFF_DATABASE_URL", "postgres://... to share one ledger between instances (default: SQLite in --data-dir)"),
    ("HANDOFF_DATABASE_SCHEMA", "the PostgreSQL schema (default handoff)"),
    ("HANDOFF_INSTANCE_ID", "this instance's name in claims (default the host name)"),
    ("HANDOFF_LEASE_SECS", "how long a claim on a running lead lasts without renewal"),
    ("HANDOFF_WAIT_FIRST_MS", "first wait before retrying a lead whose provider is down"),
    ("HANDOFF_WAIT_MAX_MS", "longest such wait"),
    ("HANDOFF_GIVE_UP_AFTER_S", "when a waiting lead is marked failed"),
    ("HANDOFF_LOG", "log filter, e.g. info or handoff=debug (default warn)"),
];

/// What `handoff serve --help` lists after its options: every `HANDOFF_*`
/// variable that is not already an option's `[env: ...]`.
pub fn serve_environment_help() -> String {
    let mut text = String::from(
        "Examples:\n  handoff serve --sandbox\n  handoff serve --config handoff.toml --public-url https://handoff.acme.com --listen 0.0.0.0:8080\n\n",
    );
    text.push_str("Environment (a setting in the --config file wins over its variable):\n");
    for (name, what) in SERVER_ENV_VARIABLES.iter().chain(crate::connectors::ENV_VARIABLES) {
        let _ = writeln!(text, "  {name}\n          {what}");
    }
    text
}

/// `handoff init [DIR]`: writes the starter and says what to do next.
///
/// # Errors
///
/// When a file it would write exists, or writing fails.
pub fn init(dir: &Path) -> Result<ExitCode> {
    let mut environment = String::from(
        "# Secrets and settings for `handoff serve`, as environment variables: copy to .env,\n\
         # fill in, and load it (systemd EnvironmentFile=, or `set -a; . ./.env; set +a`).\n\
         # Never commit the filled-in copy.\n",
    );
    for (name, what) in crate::connectors::ENV_VARIABLES.iter().chain(SERVER_ENV_VARIABLES) {
        let _ = write!(environment, "\n# {what}\n# {name}=\n");
    }
    let written = crate::shipped::init(dir, &environment)?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    let at = |name: &str| dir.join(name).display().to_string();
    println!(
        "\nNext:\n  cd {}\n  handoff validate pipelines/mql-handoff.json   # edit pipelines/ and roster.json, validate again\n  handoff serve --sandbox                      # try it against the emulators\n  handoff serve --config handoff.toml          # once {} (or .env) has real credentials",
        dir.display(),
        at("handoff.toml")
    );
    Ok(ExitCode::SUCCESS)
}

/// `handoff schema`: the pipeline JSON Schema, to stdout or a file.
///
/// # Errors
///
/// When the file cannot be written.
pub fn schema(output: Option<&Path>, openapi: bool) -> Result<ExitCode> {
    let text = if openapi { openapi_text() } else { pipeline_schema_text() };
    match output {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The committed form of the OpenAPI document of the shipped pipelines'
/// server (`docs/openapi.json`: pretty JSON, final newline).
pub fn openapi_text() -> String {
    let mut text = serde_json::to_string_pretty(&crate::server::openapi_document()).expect("the document serializes");
    text.push('\n');
    text
}

/// The committed form of the pipeline schema (pretty JSON, final newline).
pub fn pipeline_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&pipeline::Pipeline::json_schema()).expect("schema serializes");
    text.push('\n');
    text
}

/// An emitted item, shown as what changed when it is the input object with
/// fields added or replaced (the common case), else whole.
fn changes(input: &Value, output: &Value) -> String {
    let (Value::Object(before), Value::Object(after)) = (input, output) else {
        return output.to_string();
    };
    let changed: serde_json::Map<String, Value> = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let kept = after.len() - changed.len();
    let removed = before.keys().filter(|key| !after.contains_key(*key)).count();
    if kept == 0 || removed > 0 {
        return output.to_string();
    }
    if changed.is_empty() {
        return "(the input, unchanged)".to_string();
    }
    format!("(input + changes) {}", Value::Object(changed))
}

fn shorten(text: &str, full: bool) -> String {
    const WIDTH: usize = 320;
    if full || text.chars().count() <= WIDTH {
        text.to_string()
    } else {
        let cut: String = text.chars().take(WIDTH).collect();
        format!("{cut}… ({} bytes; --full shows all)", text.len())
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 { format!("{:.1} ms", us as f64 / 1000.0) } else { format!("{:.2} ms", us as f64 / 1000.0) }
}

/// Where `handoff simulate` takes its leads from.
#[derive(Debug, Clone)]
pub enum SimulateLeads {
    /// The ledger's events of the last `since_ms`, of `events_of` (default:
    /// the simulated pipeline's name).
    Ledger {
        /// How far back.
        since_ms: i64,
        /// Whose events.
        events_of: Option<String>,
    },
    /// A HubSpot export (.csv) or JSON lines (.jsonl).
    File(PathBuf),
}

/// Options of `handoff simulate`.
#[derive(Debug, Clone)]
pub struct SimulateOptions {
    /// The pipeline to simulate.
    pub pipeline: PathBuf,
    /// The leads.
    pub leads: SimulateLeads,
    /// The roster file (default: the shipped one).
    pub roster: Option<PathBuf>,
    /// A pipeline to compare with.
    pub compare: Option<PathBuf>,
    /// Compare with the decisions made live.
    pub baseline_live: bool,
    /// Print JSON.
    pub json: bool,
    /// Write an HTML report here.
    pub html: Option<PathBuf>,
    /// Connector config whose providers answer reads the recording lacks.
    pub live_reads: Option<PathBuf>,
}

/// `handoff simulate`: see [`crate::simulate`]. Exits 1 when a pipeline is
/// invalid.
///
/// # Errors
///
/// When the leads, the roster or the ledger cannot be read.
pub async fn simulate(host: &Host, options: &SimulateOptions) -> Result<ExitCode> {
    use crate::simulate;
    let load = |path: &Path| match pipeline::load_file(path, &host.registry) {
        Ok(prepared) => Ok(Arc::new(prepared.tried_once())),
        Err(diagnostics) => Err(diagnostics),
    };
    let (prepared, baseline) = match (load(&options.pipeline), options.compare.as_deref().map(load).transpose()) {
        (Ok(prepared), Ok(baseline)) => (prepared, baseline),
        (Err(diagnostics), _) | (_, Err(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let now = crate::capabilities::Clock::now_ms(&crate::capabilities::SystemClock);
    let set = match &options.leads {
        SimulateLeads::Ledger { since_ms, events_of } => {
            let ledger = open_ledger(&host.options.data_dir).await?;
            let events_of = events_of.as_deref().unwrap_or(&prepared.pipeline.name);
            simulate::leads_from_ledger(&*ledger, events_of, now.saturating_sub(*since_ms), i64::MAX).await?
        }
        SimulateLeads::File(path) => simulate::leads_from_file(path, now)?,
    };
    let roster_path = match &options.roster {
        Some(path) => path.clone(),
        None => crate::shipped::file(Path::new("pipelines/roster.json"), &host.options.data_dir)?.0,
    };
    let roster = Arc::new(crate::roster::FileRoster::load(&roster_path)?);
    let live = match &options.live_reads {
        Some(config) => {
            let connected = ConnectorsConfig::load(config)?.connect(crate::capabilities::Capabilities::none())?;
            crate::dry_run::LiveReads { marketing: connected.marketing, crm: connected.crm, llm: connected.llm }
        }
        None => crate::dry_run::LiveReads::default(),
    };
    let dry = || crate::dry_run::DryRun {
        live: live.clone(),
        ..crate::dry_run::DryRun::new(Some(roster.clone() as Arc<dyn crate::capabilities::Roster>), set.missing)
    };
    let run = simulate::run(&host.runtime, &prepared, &set.leads, &dry()).await;
    let roster_file = roster.current();
    let (baseline_run, comparison) = match &baseline {
        Some(baseline) => {
            let before = simulate::run(&host.runtime, baseline, &set.leads, &dry()).await;
            let decisions: Vec<_> =
                before.leads.iter().map(|l| l.not_simulated.is_none().then(|| l.decision.clone())).collect();
            let name =
                format!("{} ({})", before.pipeline, options.compare.as_deref().unwrap_or(Path::new("")).display());
            let comparison = simulate::compare(&name, &decisions, &run, Some(&roster_file));
            (Some(before), Some(comparison))
        }
        None if options.baseline_live => {
            let decisions: Vec<_> = set.leads.iter().map(|l| l.live.clone()).collect();
            (None, Some(simulate::compare("live", &decisions, &run, Some(&roster_file))))
        }
        None => (None, None),
    };
    let report = simulate::Report { source: set.source, skipped: set.skipped, run, baseline: baseline_run, comparison };
    if let Some(path) = &options.html {
        std::fs::write(path, simulate::html(&report)).with_context(|| format!("writing {}", path.display()))?;
    }
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", simulate::render(&report));
        if let Some(path) = &options.html {
            println!("Report: {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `handoff replay`.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The execution.
    pub execution_id: String,
    /// Plugins replaced: `NAME=FILE.wasm`.
    pub plugins: Vec<String>,
    /// The changed pipeline.
    pub pipeline: Option<PathBuf>,
    /// The original pipeline.
    pub original: Option<PathBuf>,
    /// The roster.
    pub roster: Option<PathBuf>,
    /// Print JSON.
    pub json: bool,
}

/// `handoff replay`: see [`crate::replay`]. Exits 1 when a pipeline is
/// invalid.
///
/// # Errors
///
/// When the execution, a plugin file or the roster cannot be read.
pub async fn replay(host: &Host, options: &ReplayOptions) -> Result<ExitCode> {
    let ledger = open_ledger(&host.options.data_dir).await?;
    let (event, trace) = crate::replay::recorded(&*ledger, &options.execution_id).await?;
    let mut registry = host.registry.clone();
    let mut change = Vec::new();
    for spec in &options.plugins {
        let (name, file) = spec.split_once('=').with_context(|| format!("--plugin {spec}: write NAME=FILE.wasm"))?;
        let bytes = std::fs::read(file).with_context(|| format!("--plugin {spec}: reading {file}"))?;
        let source = crate::runtime::PluginSource::File(PathBuf::from(file));
        let plugin =
            host.runtime.load(source, bytes).await.with_context(|| format!("--plugin {spec}: loading {file}"))?;
        anyhow::ensure!(
            plugin.name() == name,
            "--plugin {spec}: {file} calls itself '{}', not '{name}'",
            plugin.name()
        );
        change.push(format!("{name} = {file} (v{})", plugin.info.version));
        registry.insert(plugin);
    }
    let original_path = match &options.original {
        Some(path) => path.clone(),
        None => {
            crate::shipped::file(
                &Path::new("pipelines").join(format!("{}.json", event.pipeline)),
                &host.options.data_dir,
            )?
            .0
        }
    };
    let changed_path = options.pipeline.clone().unwrap_or_else(|| original_path.clone());
    if options.pipeline.is_some() {
        change.push(format!("pipeline {}", changed_path.display()));
    }
    anyhow::ensure!(!change.is_empty(), "nothing to change: give --plugin NAME=FILE.wasm or --pipeline FILE");
    let load = |path: &Path, registry: &crate::runtime::PluginRegistry| match pipeline::load_file(path, registry) {
        Ok(prepared) => Ok(Arc::new(prepared.tried_once())),
        Err(diagnostics) => Err(diagnostics),
    };
    let (original, changed) = match (load(&original_path, &host.registry), load(&changed_path, &registry)) {
        (Ok(original), Ok(changed)) => (original, changed),
        (Err(diagnostics), _) | (_, Err(diagnostics)) => {
            for d in &diagnostics {
                eprintln!("{d}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let roster_path = match &options.roster {
        Some(path) => path.clone(),
        None => crate::shipped::file(Path::new("pipelines/roster.json"), &host.options.data_dir)?.0,
    };
    let roster: Arc<dyn crate::capabilities::Roster> = Arc::new(crate::roster::FileRoster::load(&roster_path)?);
    let report =
        crate::replay::replay(&host.runtime, &event, &trace, &original, &changed, &change.join(", "), Some(roster))
            .await;
    if options.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::replay::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `handoff shadow report`: shadow pipelines' decisions beside the live
/// ones.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn shadow_report(
    data_dir: &Path,
    pipeline: Option<&str>,
    lead: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    let report = crate::reports::shadow_report(&*open_ledger(data_dir).await?, pipeline, lead, limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::reports::render_shadow_report(&report));
    }
    Ok(ExitCode::SUCCESS)
}
