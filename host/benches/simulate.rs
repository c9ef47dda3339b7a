//! `handoff simulate` over 1,000 recorded leads: how long a rules change
//! takes to preview. The leads are first handed off live (the shipped MQL
//! pipeline on the emulators, in process) so the ledger holds their events
//! and traces; then the shipped pipeline and a changed one (a new territory
//! rule) are each simulated over them, and compared, as `handoff simulate
//! --compare` does. Prints the time of each phase and leads per second.
//!
//! `cargo bench -p handoff --bench simulate` (`LEADS=N` to change the count).

use handoff::app::{App, AppOptions, Host, HostOptions, PluginLimits};
use handoff::capabilities::Clock;
use handoff::dry_run::{DryRun, Missing};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let leads: usize = std::env::var("LEADS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(leads));
}

async fn run(count: usize) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    // Virtual time at the demo's Wednesday afternoon: reps are at work.
    let clock = handoff::demo::demo_clock();
    let settings = handoff_emulators::Settings {
        hubspot_per_ten_seconds: 0,
        hubspot_search_per_second: 0,
        slack_channel_burst: 0,
        ..handoff_emulators::Settings::default()
    };
    let emulators = handoff::emulated::start(settings, clock.clone()).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let database = handoff::ledger::Database::Sqlite(data.path().join("handoff.db"));
    let app = App::launch(AppOptions {
        database: Some(database.clone()),
        ..AppOptions::mql_handoff(
            &repo.join("pipelines"),
            data.path().to_path_buf(),
            handoff::emulated::connectors(&emulators),
            clock.clone() as Arc<dyn Clock>,
        )
    })
    .await
    .unwrap();

    let countries = ["Germany", "Netherlands", "United States", "United Kingdom", "Canada", "Singapore", "France"];
    let ids: Vec<u64> = {
        let mut world = emulators.state.world();
        (0..count)
            .map(|i| {
                let properties = [
                    ("email", format!("bench.lead{i}@company{}.com", i % 700)),
                    ("firstname", "Bench".into()),
                    ("lastname", format!("Lead {i}")),
                    ("company", format!("Company {}", i % 700)),
                    ("country", countries[i % countries.len()].into()),
                    ("numemployees", (50 + i * 37 % 3000).to_string()),
                    ("lifecyclestage", "marketingqualifiedlead".into()),
                    ("hubspotscore", if i % 11 == 0 { "20".into() } else { "75".to_string() }),
                ];
                let properties = properties.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                world.hubspot.create(properties, clock.now_ms()).parse().unwrap()
            })
            .collect()
    };
    let recording = Instant::now();
    let url = format!("http://{}/webhooks/hubspot", app.server.addr);
    let http = reqwest::Client::new();
    for (n, chunk) in ids.chunks(50).enumerate() {
        let events: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| {
                json!({"eventId": 5_000_000 + n * 50 + i, "subscriptionType": "contact.propertyChange",
                "objectId": id, "propertyName": "lifecyclestage", "propertyValue": "marketingqualifiedlead",
                "occurredAt": 1_795_000_000_000_i64})
            })
            .collect();
        let body = Value::Array(events).to_string();
        handoff_emulators::drive::send_hubspot_webhook(&http, &url, handoff_emulators::SECRET, body).await.unwrap();
        assert!(app.server.settle(Duration::from_secs(120)).await);
    }
    println!("handed off {count} leads live in {:.1} s (to record them)", recording.elapsed().as_secs_f64());
    app.server.flush().await.unwrap();

    let host = Host::start(HostOptions {
        data_dir: data.path().to_path_buf(),
        plugin_dirs: Vec::new(),
        limits: PluginLimits::default(),
    })
    .await
    .unwrap();
    let ledger = handoff::ledger::SqliteStore::open(&data.path().join("handoff.db")).unwrap();
    let reading = Instant::now();
    let set = handoff::simulate::leads_from_ledger(&ledger, "mql-handoff", 0, i64::MAX).await.unwrap();
    println!("read {} leads and their traces from the ledger in {} ms", set.leads.len(), reading.elapsed().as_millis());

    let shipped = repo.join("pipelines/mql-handoff.json");
    let mut changed: Value = serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    let route = changed["nodes"].as_array_mut().unwrap().iter_mut().find(|n| n["id"] == "route").unwrap();
    route["config"]["rules"].as_array_mut().unwrap().insert(
        0,
        json!({"name": "Netherlands to enterprise", "when": {"countries": ["Netherlands"]}, "team": "emea-enterprise"}),
    );
    changed.as_object_mut().unwrap().remove("$schema");
    let changed_path = data.path().join("changed.json");
    std::fs::write(&changed_path, changed.to_string()).unwrap();
    let roster = Arc::new(handoff::roster::FileRoster::load(&repo.join("pipelines/roster.json")).unwrap());
    let dry = || DryRun::new(Some(roster.clone() as Arc<dyn handoff::capabilities::Roster>), Missing::Unavailable);
    let load =
        |path: &std::path::Path| Arc::new(handoff::pipeline::load_file(path, &host.registry).unwrap().tried_once());
    let (before_pipeline, after_pipeline) = (load(&shipped), load(&changed_path));

    let started = Instant::now();
    let before = handoff::simulate::run(&host.runtime, &before_pipeline, &set.leads, &dry()).await;
    let after = handoff::simulate::run(&host.runtime, &after_pipeline, &set.leads, &dry()).await;
    let decisions: Vec<_> = before.leads.iter().map(|l| Some(l.decision.clone())).collect();
    let comparison = handoff::simulate::compare("shipped", &decisions, &after, Some(&roster.current()));
    let total = started.elapsed();
    let per_run = |ms: u64| count as f64 / (ms.max(1) as f64 / 1000.0);
    println!(
        "simulated the shipped pipeline over {count} leads in {} ms ({:.0} leads/s), the changed one in {} ms ({:.0} leads/s)",
        before.elapsed_ms,
        per_run(before.elapsed_ms),
        after.elapsed_ms,
        per_run(after.elapsed_ms)
    );
    println!(
        "--compare in all: {:.2} s; {} of {} leads change, {} not simulated",
        total.as_secs_f64(),
        comparison.changed.len(),
        comparison.compared,
        before.leads.iter().filter(|l| l.not_simulated.is_some()).count()
    );
}
