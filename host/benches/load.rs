//! Load: signed MQL webhooks to `handoff serve` (the release binary in its
//! own process, its ledger on disk with full sync). By default the
//! emulators run as a process of their own (`handoff sandbox`), so the
//! server's CPU and memory are the host's alone; `SPLIT=0` runs them inside
//! the server (`serve --sandbox`), as before. `LATENCY_MS` makes every
//! provider answer that much later and `LLM_MS` the language model, to
//! measure webhook → DM against real providers' round trips.
//!
//! Two phases:
//! - throughput: `LEADS` webhooks from `CONCURRENCY` senders as fast as the
//!   server acknowledges them; reports acknowledgement latency and how many
//!   leads per second the server takes and finishes;
//! - latency: `PACED_LEADS` webhooks sent at `RATE` per second (open loop);
//!   reports acknowledgement and webhook → DM latency at that rate.
//!
//! Reported besides: the server's CPU per lead (utime + stime from /proc
//! over the paced phase), provider API calls per lead (the emulators'
//! request log), ledger bytes per lead (pages in use, and bytes the ledger's
//! writer wrote to disk), and peak RSS (VmHWM). The CPU is
//! also given by thread (the plugin pool, the ledger's writer, the HTTP
//! workers), which is steadier than the total when one part changes.
//!
//! `LEADS=2000 CONCURRENCY=32 PACED_LEADS=1000 RATE=100 cargo bench -p handoff --bench load`
//! `LEADS=0 PACED_LEADS=300 RATE=10 LATENCY_MS=100 LLM_MS=800 cargo bench -p handoff --bench load`
//!
//! `LEDGER_COPY=FILE` keeps a copy of the ledger (checkpointed) to look into;
//! `HANDOFF_BIN=FILE` loads another build of `handoff` (a before/after pair
//! measured back to back); `SERVE_LOG=FILE` keeps the server's log.

use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `handoff` binary to load: this build's, or `HANDOFF_BIN` (another
/// build's, to compare two back to back on the same machine).
fn handoff_bin() -> PathBuf {
    std::env::var_os("HANDOFF_BIN")
        .filter(|b| !b.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_handoff")), PathBuf::from)
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Server {
    child: Child,
    /// The emulators' own process, when they run apart.
    sandbox_child: Option<Child>,
    api: String,
    sandbox: SocketAddr,
    db: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.child).chain(self.sandbox_child.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn up(url: &str) -> bool {
    for _ in 0..1200 {
        if reqwest::get(url).await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Starts `handoff serve` (and, with `split`, `handoff sandbox` beside it)
/// with every rep always available and no daily capacity, so every lead
/// reaches a rep's DMs.
async fn serve(dir: &Path, split: bool) -> Server {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    handoff::demo::write_open_roster(&repo.join("pipelines"), &dir.join("roster.json")).unwrap();
    let (listen, sandbox, smtp) = (free_port(), free_port(), free_port());
    let mut sandbox_child = None;
    let mut command = Command::new(handoff_bin());
    command.current_dir(&repo).arg("--data-dir").arg(dir.join("data"));
    if split {
        sandbox_child = Some(
            Command::new(handoff_bin())
                .args(["sandbox", "--listen", &sandbox.to_string(), "--smtp-listen", &smtp.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        assert!(up(&format!("http://{sandbox}/_sandbox/health")).await, "handoff sandbox did not come up");
        std::fs::write(dir.join("connectors.toml"), handoff::emulated::config_toml(sandbox, smtp, true)).unwrap();
        command.args(["serve", "--listen", &listen.to_string(), "--config"]).arg(dir.join("connectors.toml"));
    } else {
        command.args(["serve", "--sandbox", "--listen", &listen.to_string()]).args([
            "--sandbox-listen",
            &sandbox.to_string(),
            "--sandbox-smtp-listen",
            &smtp.to_string(),
        ]);
    }
    // `SERVE_LOG=FILE` keeps the server's log.
    let log = std::env::var_os("SERVE_LOG").map_or_else(Stdio::null, |f| std::fs::File::create(f).unwrap().into());
    let child = command.arg("--roster").arg(dir.join("roster.json")).stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let server =
        Server { child, sandbox_child, api: format!("http://{listen}"), sandbox, db: dir.join("data/handoff.db") };
    assert!(up(&format!("{}/healthz", server.api)).await, "handoff serve did not come up");
    let limits = json!({"hubspot_per_ten_seconds": 0, "hubspot_search_per_second": 0,
        "salesforce_api_limit": u64::MAX, "slack_channel_burst": 0});
    let url = format!("http://{sandbox}/_sandbox/limits");
    reqwest::Client::new().patch(url).json(&limits).send().await.unwrap().error_for_status().unwrap();
    server
}

/// Makes `provider` (or `*`) answer `ms` later.
async fn slow(server: &Server, provider: &str, ms: usize) {
    let fault = json!({"provider": provider, "kind": {"type": "latency", "ms": ms}});
    let url = format!("http://{}/_sandbox/faults", server.sandbox);
    reqwest::Client::new().post(url).json(&fault).send().await.unwrap().error_for_status().unwrap();
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// CPU seconds (user + system) in a `/proc/.../stat` file (a process's or
/// one thread's); 0 when it cannot be read (the thread ended).
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
    // SC_CLK_TCK is 100 on Linux.
    ticks / 100.0
}

/// What `read` finds in each thread's `/proc/<pid>/task/<tid>`, summed by
/// thread name (`handoff-plugin`, `handoff-ledger`, `tokio-rt-worker`, ...).
/// A thread that ended takes what it had with it.
fn by_thread<T: std::ops::AddAssign + Default>(
    pid: u32,
    read: impl Fn(&Path) -> T,
) -> std::collections::BTreeMap<String, T> {
    let mut by_name = std::collections::BTreeMap::new();
    for (name, task) in threads(pid) {
        *by_name.entry(name).or_default() += read(&task);
    }
    by_name
}

/// The process's threads now: each one's name and `/proc/<pid>/task/<tid>`.
fn threads(pid: u32) -> Vec<(String, PathBuf)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .map(|task| {
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default().trim().to_string();
            (name, task.path())
        })
        .collect()
}

/// The sum of the values of `keys` in a `/proc` file of `key: value` lines
/// (`status`, `io`); 0 when it cannot be read (the thread ended).
fn proc_values(path: &Path, keys: &[&str]) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| keys.iter().find_map(|key| line.strip_prefix(key)?.strip_prefix(':')))
        .filter_map(|value| value.trim().parse::<u64>().ok())
        .sum()
}

/// CPU seconds each thread of the process has used, by thread name.
fn cpu_seconds_by_thread(pid: u32) -> std::collections::BTreeMap<String, f64> {
    by_thread(pid, |task| stat_cpu_seconds(&task.join("stat").to_string_lossy()))
}

/// Context switches (voluntary and not) each thread of the process has
/// made, by thread name: how often its threads hand work to one another
/// and wait.
fn switches_by_thread(pid: u32) -> std::collections::BTreeMap<String, u64> {
    by_thread(pid, |task| proc_values(&task.join("status"), &["voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"]))
}

/// Bytes the ledger's writer thread has written to files (its `wchar` in
/// `/proc/<pid>/task/<tid>/io`): WAL frames and checkpoints. It writes to
/// nothing else, so this is what the ledger costs the disk.
fn ledger_bytes_written(pid: u32) -> u64 {
    by_thread(pid, |task| proc_values(&task.join("io"), &["wchar"])).get("handoff-ledger").copied().unwrap_or(0)
}

/// The emulators' request log, counted by provider.
async fn calls_by_provider(server: &Server) -> std::collections::BTreeMap<String, usize> {
    let url = format!("http://{}/_sandbox/requests", server.sandbox);
    let log: Vec<Value> = reqwest::get(url).await.unwrap().json().await.unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for request in &log {
        *counts.entry(request["provider"].as_str().unwrap_or("?").to_string()).or_insert(0) += 1;
    }
    counts
}

async fn clear_requests(server: &Server) {
    let url = format!("http://{}/_sandbox/requests", server.sandbox);
    reqwest::Client::new().delete(url).send().await.unwrap();
}

/// The ledger's pages in use, by table and index: after a checkpoint (so
/// what sits in the WAL counts once), without free pages (which later
/// writes reuse). A file's size would count a WAL of up to 4 MB and the
/// pages freed by completed executions' resume points.
fn ledger_bytes(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let db = rusqlite::Connection::open(&server.db).unwrap();
    let _ = db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    let mut statement = db.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").unwrap();
    statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|row| row.map(|(name, bytes)| (name, u64::try_from(bytes).unwrap_or_default())).unwrap())
        .collect()
}

async fn contacts(server: &Server, from: usize, count: usize) -> Vec<u64> {
    let http = reqwest::Client::new();
    let countries = ["Germany", "United Kingdom", "United States", "Netherlands", "Canada"];
    let mut ids = Vec::with_capacity(count);
    for i in from..from + count {
        let properties = json!({
            "email": format!("load.lead{i}@company{i}.com"), "firstname": "Load", "lastname": format!("Lead {i}"),
            "company": format!("Company {i}"), "country": countries[i % countries.len()], "state": "NY",
            "numemployees": (100 + i * 37 % 3000).to_string(), "lifecyclestage": "marketingqualifiedlead",
            "hubspotscore": "70"});
        let id = handoff_emulators::drive::create_contact(&http, server.sandbox, &properties).await.unwrap();
        ids.push(id.parse().unwrap());
    }
    ids
}

fn webhook(n: usize, contact: u64) -> String {
    json!([{"eventId": 8_000_000 + n, "subscriptionType": "contact.propertyChange", "objectId": contact,
        "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead", "occurredAt": 1_795_000_000_000_i64}])
    .to_string()
}

fn wall_us() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(now.as_micros()).unwrap()
}

/// Sends one webhook; returns its acknowledgement latency in µs.
async fn send(http: &reqwest::Client, url: &str, n: usize, contact: u64) -> u64 {
    let sent = Instant::now();
    let response =
        handoff_emulators::drive::send_hubspot_webhook(http, url, handoff_emulators::SECRET, webhook(n, contact))
            .await
            .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    u64::try_from(sent.elapsed().as_micros()).unwrap()
}

/// Waits until `count` events are finished in the ledger.
/// Waits until `count` webhook events (the leads; not the lead events
/// they raise for the SLA pipeline, nor timers) are finished.
async fn finished(server: &Server, count: usize) {
    let ledger = rusqlite::Connection::open(&server.db).unwrap();
    loop {
        let done: usize = ledger
            .query_row("SELECT COUNT(*) FROM events WHERE source = 'hubspot' AND finished_at IS NOT NULL", [], |r| {
                r.get(0)
            })
            .unwrap();
        if done >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    let leads = env("LEADS", 2000);
    let concurrency = env("CONCURRENCY", 32);
    let paced = env("PACED_LEADS", 1000);
    let rate = env("RATE", 100);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(run(leads, concurrency, paced, rate));
}

async fn run(leads: usize, concurrency: usize, paced: usize, rate: usize) {
    let split = env("SPLIT", 1) == 1;
    let (latency, llm_latency) = (env("LATENCY_MS", 0), env("LLM_MS", 0));
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), split).await;
    let ids = contacts(&server, 0, leads + paced).await;
    // Providers' round trips, when asked for (the model first: the first
    // matching fault applies).
    if llm_latency > 0 {
        slow(&server, "anthropic", llm_latency).await;
    }
    if latency > 0 {
        slow(&server, "*", latency).await;
    }
    clear_requests(&server).await;
    let url = format!("{}/webhooks/hubspot", server.api);
    let http = reqwest::Client::new();

    // Throughput. The line below marks when it starts, for a profiler.
    eprintln!("load: throughput phase starts (serve pid {})", server.child.id());
    let burst_cpu_before =
        (cpu_seconds(server.child.id()), server.sandbox_child.as_ref().map_or(0.0, |c| cpu_seconds(c.id())));
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids[..leads].iter().copied().enumerate().collect::<Vec<_>>()));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (queue, http, url) = (queue.clone(), http.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((n, id)) = next else { break };
                acks.push(send(&http, &url, n, id).await);
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for sender in senders {
        acks.extend(sender.await.unwrap());
    }
    let acked = started.elapsed();
    finished(&server, leads).await;
    let done = started.elapsed();
    let burst_cpu = (
        cpu_seconds(server.child.id()) - burst_cpu_before.0,
        server.sandbox_child.as_ref().map_or(0.0, |c| cpu_seconds(c.id())) - burst_cpu_before.1,
    );
    acks.sort_unstable();

    // Latency at a steady rate. The line below marks when it starts, for a
    // profiler to attach (`perf record -p <serve pid>`; see BENCHMARKS.md).
    eprintln!("load: paced phase starts (serve pid {})", server.child.id());
    let calls_before = calls_by_provider(&server).await;
    let bytes_before = ledger_bytes(&server);
    let cpu_before = cpu_seconds(server.child.id());
    let threads_before = cpu_seconds_by_thread(server.child.id());
    let switches_before = switches_by_thread(server.child.id());
    let written_before = ledger_bytes_written(server.child.id());
    let sandbox_pid = server.sandbox_child.as_ref().map(Child::id);
    let sandbox_cpu_before = sandbox_pid.map(cpu_seconds);
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let mut ticker = tokio::time::interval(gap);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::new();
    let mut sent_at = Vec::new();
    let paced_started = Instant::now();
    for (i, id) in ids[leads..].iter().copied().enumerate() {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        sent_at.push(wall_us());
        sends.push(tokio::spawn(async move { send(&http, &url, leads + i, id).await }));
    }
    let mut paced_acks = Vec::new();
    for s in sends {
        paced_acks.push(s.await.unwrap());
    }
    let paced_sent = paced_started.elapsed();
    finished(&server, leads + paced).await;
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    let threads_after = cpu_seconds_by_thread(server.child.id());
    let switches_after = switches_by_thread(server.child.id());
    let written = ledger_bytes_written(server.child.id()).saturating_sub(written_before);
    let sandbox_cpu = sandbox_pid.zip(sandbox_cpu_before).map(|(pid, before)| cpu_seconds(pid) - before);
    let bytes_after = ledger_bytes(&server);
    let grown = |name: &str| bytes_after[name].saturating_sub(bytes_before.get(name).copied().unwrap_or(0));
    let bytes: u64 = bytes_after.keys().map(|name| grown(name)).sum();
    let mut by_table: Vec<(&String, u64)> = bytes_after.keys().map(|name| (name, grown(name))).collect();
    by_table.sort_by_key(|(_, grown)| std::cmp::Reverse(*grown));
    let calls_after = calls_by_provider(&server).await;
    paced_acks.sort_unstable();

    let timings: Vec<Value> =
        http.get(format!("{}/api/executions/timings", server.api)).send().await.unwrap().json().await.unwrap();
    let paced_ids: std::collections::HashSet<String> =
        (leads..leads + paced).map(|n| (8_000_000 + n).to_string()).collect();
    let failed = timings.iter().filter(|t| t["failed"] == true).count();
    let mut to_notified: Vec<u64> = timings
        .iter()
        .filter(|t| paced_ids.contains(t["event_id"].as_str().unwrap_or_default()))
        .filter_map(|t| t["notified_us"].as_u64())
        .collect();
    to_notified.sort_unstable();
    // The DM as Slack took it: its receipt time in the emulator against the
    // moment the webhook was sent (one machine, one wall clock).
    let messages: Vec<Value> = http
        .get(format!("http://{}/_sandbox/slack/messages", server.sandbox))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let dm_at: std::collections::HashMap<String, i64> = messages
        .iter()
        .filter(|m| !m["recipient"].is_null())
        .filter_map(|m| {
            let text = m["text"].as_str()?;
            let company = text.split(" (").nth(1)?.split(')').next()?;
            Some((company.to_string(), m["received_at_us"].as_i64()?))
        })
        .collect();
    let mut to_dm: Vec<u64> = (0..paced)
        .filter_map(|i| {
            let at = dm_at.get(&format!("Company {}", leads + i))?;
            u64::try_from(at - sent_at[i]).ok()
        })
        .collect();
    to_dm.sort_unstable();
    let mut notified_all: Vec<u64> = timings.iter().filter_map(|t| t["notified_us"].as_u64()).collect();
    notified_all.sort_unstable();

    let where_emulators = if split { "in their own process (handoff sandbox)" } else { "inside the server" };
    println!("load: handoff serve (release), ledger on disk, full sync; emulators {where_emulators}");
    if latency + llm_latency > 0 {
        println!("injected latency: {latency} ms per provider call, language model {llm_latency} ms");
    }
    println!("throughput: {leads} leads from {concurrency} senders");
    println!(
        "  webhook ack: p50 {:.2} ms, p99 {:.2} ms; {:.0} webhooks/s acknowledged",
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        leads as f64 / acked.as_secs_f64()
    );
    println!(
        "  finished: {:.0} leads/s end to end ({:.1} s for all {leads})",
        leads as f64 / done.as_secs_f64(),
        done.as_secs_f64()
    );
    if leads > 0 {
        println!(
            "  CPU per lead in the burst: server {:.2} ms, emulators {:.2} ms",
            burst_cpu.0 * 1000.0 / leads as f64,
            burst_cpu.1 * 1000.0 / leads as f64
        );
    }
    println!("latency: {paced} leads at {rate}/s (sent at {:.0}/s)", paced as f64 / paced_sent.as_secs_f64());
    println!("  webhook ack: p50 {:.2} ms, p99 {:.2} ms", pct(&paced_acks, 0.5), pct(&paced_acks, 0.99));
    println!(
        "  webhook sent -> DM at Slack: p50 {:.1} ms, p99 {:.1} ms ({} DMs)",
        pct(&to_dm, 0.5),
        pct(&to_dm, 0.99),
        to_dm.len()
    );
    println!(
        "  webhook received -> notify done (DM, task, email): p50 {:.1} ms, p99 {:.1} ms",
        pct(&to_notified, 0.5),
        pct(&to_notified, 0.99)
    );
    let mut per_node: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for t in timings.iter().filter(|t| paced_ids.contains(t["event_id"].as_str().unwrap_or_default())) {
        for run in t["nodes"].as_array().into_iter().flatten() {
            let entry = per_node.entry(run[0].as_str().unwrap_or_default().to_string()).or_default();
            entry.0 += run[1].as_u64().unwrap_or(0);
            entry.1 += 1;
        }
    }
    let breakdown: Vec<String> =
        per_node.iter().map(|(node, (us, n))| format!("{node} {:.1} ms", *us as f64 / *n as f64 / 1000.0)).collect();
    println!("  mean node run (calls to providers included): {}", breakdown.join(", "));
    let per_lead: Vec<String> = calls_after
        .iter()
        .map(|(provider, n)| {
            let before = calls_before.get(provider).copied().unwrap_or(0);
            format!("{provider} {:.2}", (n - before) as f64 / paced.max(1) as f64)
        })
        .collect();
    let api_calls: usize = calls_after
        .iter()
        .filter(|(p, _)| p.as_str() != "smtp")
        .map(|(p, n)| n - calls_before.get(p).copied().unwrap_or(0))
        .sum();
    println!(
        "  provider calls per lead: {:.2} API calls ({}); SMTP counted apart",
        api_calls as f64 / paced.max(1) as f64,
        per_lead.join(", ")
    );
    println!("  server CPU per lead: {:.2} ms ({cpu:.2} s for {paced} leads)", cpu * 1000.0 / paced.max(1) as f64);
    // By thread: the plugin pool (executions, node runs, provider calls),
    // the ledger's writer, the HTTP workers; threads that ended in between
    // (blocking reads) are the rest.
    let mut by_thread: Vec<(String, f64)> = threads_after
        .iter()
        .map(|(name, after)| (name.clone(), after - threads_before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, used)| *used > 0.0)
        .collect();
    by_thread.sort_by(|a, b| b.1.total_cmp(&a.1));
    let rest = cpu - by_thread.iter().map(|(_, used)| used).sum::<f64>();
    let per = |seconds: f64| seconds * 1000.0 / paced.max(1) as f64;
    let mut shown: Vec<String> = by_thread.iter().map(|(name, used)| format!("{name} {:.2}", per(*used))).collect();
    shown.push(format!("ended threads {:.2}", per(rest.max(0.0))));
    println!("  by thread, ms a lead: {}", shown.join(", "));
    let mut switches: Vec<(String, u64)> = switches_after
        .iter()
        .map(|(name, after)| (name.clone(), after.saturating_sub(switches_before.get(name).copied().unwrap_or(0))))
        .filter(|(_, n)| *n > 0)
        .collect();
    switches.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    let per_lead_switches = |n: u64| n as f64 / paced.max(1) as f64;
    println!(
        "  context switches a lead (live threads): {:.1} ({})",
        per_lead_switches(switches.iter().map(|(_, n)| n).sum()),
        switches.iter().map(|(name, n)| format!("{name} {:.1}", per_lead_switches(*n))).collect::<Vec<_>>().join(", ")
    );
    if let Some(sandbox_cpu) = sandbox_cpu {
        println!("  emulators' CPU per lead (their own process): {:.2} ms", sandbox_cpu * 1000.0 / paced.max(1) as f64);
    }
    let per_lead = |bytes: u64| bytes as f64 / 1024.0 / paced.max(1) as f64;
    let largest: Vec<String> =
        by_table.iter().take(6).map(|(name, grown)| format!("{name} {:.2}", per_lead(*grown))).collect();
    println!("  ledger growth per lead: {:.1} KB in pages in use ({} KB, ...)", per_lead(bytes), largest.join(", "));
    println!("  ledger writes per lead: {:.0} KB (the writer thread's WAL frames and checkpoints)", per_lead(written));
    println!("all: {} notified, {failed} failed", notified_all.len());
    println!("peak RSS of the server process: {:.0} MiB", peak_rss_mib(server.child.id()));
    // A copy of the ledger to look into (`LEDGER_COPY=/tmp/ledger.db`).
    if let Ok(copy) = std::env::var("LEDGER_COPY") {
        std::fs::copy(&server.db, &copy).unwrap();
        println!("ledger copied to {copy}");
    }
}
