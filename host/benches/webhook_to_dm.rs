//! Webhook receipt to Slack DM, through the whole `mql-handoff` pipeline on
//! the sandbox (loopback), one lead at a time. Prints p50/p90/p99 of
//! receipt → notify finished, and leads per second.
//!
//! `cargo bench -p handoff --bench webhook_to_dm` (`LEADS=N` to change the
//! count). The emulators' rate limits are off here: Slack's one message
//! per second per channel would measure Slack, not us.

use handoff::app::{App, AppOptions};
use handoff::capabilities::Clock;
use handoff_emulators::Settings;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() {
    let leads: usize = std::env::var("LEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(leads));
}

async fn run(leads: usize) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let clock = handoff::demo::demo_clock();
    let now = clock.now_ms();
    let settings = Settings {
        hubspot_per_ten_seconds: 0,
        hubspot_search_per_second: 0,
        slack_channel_burst: 0,
        ..Default::default()
    };
    let sandbox = handoff::emulated::start(settings, clock.clone()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let app = App::launch(AppOptions::mql_handoff(
        &repo.join("pipelines"),
        data.path().to_path_buf(),
        handoff::emulated::connectors(&sandbox),
        clock,
    ))
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let countries = ["Germany", "United Kingdom", "United States", "Netherlands", "Canada"];
    let mut ids = Vec::new();
    for i in 0..leads {
        let body = json!({"properties": {
            "email": format!("bench.lead{i}@company{i}.com"), "firstname": "Bench", "lastname": format!("Lead {i}"),
            "company": format!("Company {i}"), "country": countries[i % countries.len()], "state": "NY",
            "numemployees": (100 + i * 37 % 3000).to_string(), "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70",
            "hs_analytics_num_page_views": "12", "hs_analytics_num_visits": "4", "pricing_page_views": "1"}});
        let id = handoff_emulators::drive::create_contact(&http, sandbox.http, &body["properties"]).await.unwrap();
        ids.push(id.parse::<u64>().unwrap());
    }

    let url = format!("http://{}/webhooks/hubspot", app.server.addr);
    let started = Instant::now();
    for (n, id) in ids.iter().enumerate() {
        let body = json!([{"eventId": 7_000_000 + n, "subscriptionType": "contact.propertyChange", "objectId": id,
            "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead", "occurredAt": now}])
        .to_string();
        let response =
            handoff_emulators::drive::send_hubspot_webhook(&http, &url, handoff_emulators::SECRET, body).await.unwrap();
        assert!(response.status().is_success());
        while app.server.finished().len() <= n {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let elapsed = started.elapsed();
    let finished = app.server.finished();
    let failed = finished.iter().filter(|f| f.record.error.is_some()).count();
    let mut notified: Vec<u64> = finished.iter().filter_map(|f| f.notified_us).collect();
    notified.sort_unstable();
    let pct = |p: f64| notified[((notified.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
    println!("webhook_to_dm: {} leads, {} notified, {} failed", leads, notified.len(), failed);
    println!(
        "  receipt -> notification: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    println!("  sequential throughput: {:.0} leads/s", leads as f64 / elapsed.as_secs_f64());
}
