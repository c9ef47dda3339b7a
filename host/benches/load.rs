//! Load: sends N signed MQL webhooks at a chosen concurrency to a server on
//! the sandbox (in-process, loopback, durable ledger on disk) and reports
//! webhook acknowledgement latency, webhook → notification latency,
//! sustained leads per second and the process's peak RSS (host and
//! emulators together).
//!
//! `LEADS=2000 CONCURRENCY=32 cargo bench -p handoff --bench load`

use handoff::app::{App, AppOptions};
use handoff::capabilities::Clock;
use handoff::sandbox::{Sandbox, SandboxSettings};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
}

fn main() {
    let leads = env("LEADS", 1000);
    let concurrency = env("CONCURRENCY", 32);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(leads, concurrency));
}

async fn run(leads: usize, concurrency: usize) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let clock = handoff::demo::demo_clock();
    let now = clock.now_ms();
    let settings = SandboxSettings {
        hubspot_per_ten_seconds: 0,
        hubspot_search_per_second: 0,
        slack_channel_burst: 0,
        salesforce_api_limit: u64::MAX,
        ..Default::default()
    };
    let sandbox = Sandbox::start_loopback(settings, clock.clone()).await.unwrap();
    // The roster's daily capacities would send most of a big run to the
    // queue; for load, reps take everything.
    let roster_dir = tempfile::tempdir().unwrap();
    let mut roster: Value =
        serde_json::from_str(&std::fs::read_to_string(repo.join("pipelines/roster.json")).unwrap()).unwrap();
    for rep in roster["reps"].as_array_mut().unwrap() {
        rep["daily_capacity"] = json!(0);
    }
    let roster_path = roster_dir.path().join("roster.json");
    std::fs::write(&roster_path, roster.to_string()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = App::launch(AppOptions {
        roster: roster_path,
        ops_channel: None,
        ..AppOptions::mql_handoff(&repo.join("pipelines"), data.path().to_path_buf(), sandbox.connectors(), clock)
    })
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let countries = ["Germany", "United Kingdom", "United States", "Netherlands", "Canada"];
    let mut ids = Vec::with_capacity(leads);
    for i in 0..leads {
        let body = json!({"properties": {
            "email": format!("load.lead{i}@company{i}.com"), "firstname": "Load", "lastname": format!("Lead {i}"),
            "company": format!("Company {i}"), "country": countries[i % countries.len()], "state": "NY",
            "numemployees": (100 + i * 37 % 3000).to_string(), "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"}});
        let id = handoff::demo::create_contact(&http, sandbox.http, &body["properties"]).await.unwrap();
        ids.push(id.parse::<u64>().unwrap());
    }

    let url = format!("http://{}/webhooks/hubspot", app.server.addr);
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids.into_iter().enumerate().collect::<Vec<_>>()));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (queue, http, url) = (queue.clone(), http.clone(), url.clone());
        senders.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            loop {
                let Some((n, id)) = queue.lock().unwrap().pop() else { break };
                let body =
                    json!([{"eventId": 8_000_000 + n, "subscriptionType": "contact.propertyChange", "objectId": id,
                    "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead", "occurredAt": now}])
                    .to_string();
                let sent = Instant::now();
                let response = handoff::demo::send_signed(&http, &url, "sandbox-secret", body).await.unwrap();
                assert!(response.status().is_success());
                acks.push(u64::try_from(sent.elapsed().as_micros()).unwrap());
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for sender in senders {
        acks.extend(sender.await.unwrap());
    }
    let acked = started.elapsed();
    assert!(app.server.settle(Duration::from_secs(600)).await, "every lead finishes");
    let elapsed = started.elapsed();
    let finished = app.server.finished();
    let failed = finished.iter().filter(|f| f.record.error.is_some()).count();
    let mut notified: Vec<u64> = finished.iter().filter_map(|f| f.notified_us).collect();
    acks.sort_unstable();
    notified.sort_unstable();
    println!("load: {leads} leads at concurrency {concurrency}: {} notified, {failed} failed", notified.len());
    println!(
        "  webhook ack: p50 {:.2} ms, p99 {:.2} ms ({:.0} acks/s)",
        pct(&acks, 0.5),
        pct(&acks, 0.99),
        leads as f64 / acked.as_secs_f64()
    );
    println!("  webhook -> notification: p50 {:.1} ms, p99 {:.1} ms", pct(&notified, 0.5), pct(&notified, 0.99));
    println!(
        "  sustained: {:.0} leads/s end to end ({:.1} s)",
        leads as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!("  peak RSS (host and emulators): {:.0} MiB", peak_rss_mib());
    let mut causes: std::collections::BTreeMap<String, usize> = Default::default();
    for f in finished.iter().filter_map(|f| f.record.error.as_ref()) {
        *causes.entry(f.chars().take(140).collect()).or_default() += 1;
    }
    for (cause, n) in causes {
        println!("  failed x{n}: {cause}");
    }
}
