//! The server under attack from spinning plugins, with wasm on its own
//! thread pool (the default) and on the server's own threads (yielding
//! every tick): `/healthz` latency, webhook acknowledgement latency, and
//! how many normal leads were notified and how fast, while two runs at a
//! time spin for their whole 2 s deadline (as many as there are cores
//! here). Also how long past its deadline a spinning run is stopped.
//!
//! `cargo bench -p handoff-tests --bench containment`

use handoff::capabilities::SystemClock;
use handoff_tests::{mql_event, programs};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

async fn scenario(plugin_threads: usize) {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(programs::SPIN, plugins.join("spin.wasm")).unwrap();
    let spin = json!({
        "name": "spin", "version": 1,
        "trigger": {"type": "webhook", "path": "/webhooks/spin", "signature": "none"},
        "nodes": [{"id": "spin", "plugin": "spin", "timeout": "2s", "retry": {"max_attempts": 1}}],
        "connections": {"trigger": {"main": ["spin"]}}
    });
    let spin_file = dir.path().join("spin.json");
    std::fs::write(&spin_file, spin.to_string()).unwrap();
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let roster = handoff_tests::open_roster(dir.path());
    let emulators =
        handoff::emulated::start(handoff_emulators::Settings::default(), Arc::new(SystemClock)).await.unwrap();
    let mut options = handoff_tests::handoff_options(&emulators, handoff_tests::test_clock(), dir.path());
    options.pipelines = vec![pipelines.join("mql-handoff.json"), spin_file];
    options.plugin_dirs = vec![plugins];
    options.roster = roster;
    options.limits.plugin_threads = Some(plugin_threads);
    // Keep attacking: the breaker would otherwise pause `spin` after five.
    options.limits.breaker.trip_after = u32::MAX;
    let app = handoff::app::App::launch(options).await.unwrap();
    let base = format!("http://{}", app.server.addr);
    let http = reqwest::Client::new();

    // Normal leads: new contacts, so each is routed and notified.
    let mut contacts = Vec::new();
    for i in 0..25 {
        let properties = json!({"email": format!("buyer{i}@bench-co{i}.com"), "firstname": "Pat", "lastname": format!("Bench{i}"),
            "company": format!("Bench Co {i}"), "country": "United States", "state": "IL", "numemployees": "300",
            "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
        contacts.push(handoff_emulators::drive::create_contact(&http, emulators.http, &properties).await.unwrap());
    }

    let probe = |http: reqwest::Client, base: String, until: Instant| async move {
        let mut latencies = Vec::new();
        while Instant::now() < until {
            let started = Instant::now();
            let ok = http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status() == 200);
            if ok {
                latencies.push(started.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        latencies
    };
    // Quiet: no attack.
    let mut quiet = probe(http.clone(), base.clone(), Instant::now() + Duration::from_secs(2)).await;
    quiet.sort();

    // Time to stop: one spinning run on a quiet server.
    http.post(format!("{base}/webhooks/spin")).json(&json!([mql_event(40_000, 40_000)])).send().await.unwrap();
    assert!(app.server.settle(Duration::from_secs(30)).await);
    let stop = app.server.finished()[0].record.runs[0].duration_us;
    let overrun = Duration::from_micros(stop).saturating_sub(Duration::from_secs(2));

    // Attack: two spinning runs at any time for 10 s, normal leads
    // arriving every 400 ms.
    let until = Instant::now() + Duration::from_secs(10);
    let attack = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < until {
                let events: Vec<Value> = (0..2).map(|i| mql_event(50_000 + n * 2 + i, 60_000 + n * 2 + i)).collect();
                http.post(format!("{base}/webhooks/spin")).json(&events).send().await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(2_000)).await;
            }
        })
    };
    let probes = tokio::spawn(probe(http.clone(), base.clone(), until));
    let mut acks = Vec::new();
    for (i, contact) in contacts.iter().enumerate() {
        let events = json!([mql_event(70_000 + i as u64, contact.parse().unwrap())]);
        let url = format!("{base}/webhooks/hubspot");
        let started = Instant::now();
        let response =
            handoff_emulators::drive::send_hubspot_webhook(&http, &url, handoff_emulators::SECRET, events.to_string())
                .await
                .unwrap();
        assert_eq!(response.status(), 200);
        acks.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let mut under_attack = probes.await.unwrap();
    attack.await.unwrap();
    assert!(app.server.settle(Duration::from_secs(120)).await);
    under_attack.sort();
    acks.sort();
    let finished = app.server.finished();
    let mut notified: Vec<Duration> = finished
        .iter()
        .filter(|f| f.record.pipeline == "mql-handoff")
        .filter_map(|f| f.notified_us.map(Duration::from_micros))
        .collect();
    notified.sort();
    let spun = finished.iter().filter(|f| f.record.pipeline == "spin").count() - 1;
    let mode = if plugin_threads == 0 { "shared threads".to_string() } else { format!("pool of {plugin_threads}") };
    println!(
        "{mode:<15} healthz quiet p50/p99 {}/{} ms | under attack p50/p99/max {}/{}/{} ms ({} probes) | webhook ack p50/max {}/{} ms | notified {}/25, p50/p99 {}/{} ms ({} spinning runs) | a lone spinner stopped {} ms past its deadline",
        ms(percentile(&quiet, 0.5)),
        ms(percentile(&quiet, 0.99)),
        ms(percentile(&under_attack, 0.5)),
        ms(percentile(&under_attack, 0.99)),
        ms(under_attack.last().copied().unwrap_or_default()),
        under_attack.len(),
        ms(percentile(&acks, 0.5)),
        ms(acks.last().copied().unwrap_or_default()),
        notified.len(),
        ms(percentile(&notified, 0.5)),
        ms(percentile(&notified, 0.99)),
        spun,
        ms(overrun),
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for threads in [2, 0] {
        rt.block_on(scenario(threads));
    }
}
