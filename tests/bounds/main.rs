//! Process-wide bounds under abuse, measured in a process of their own:
//! a thousand runs that each emit 1 MiB leave the server's memory where it
//! was, and floods of plugin logs and errors reach the host's log only as a
//! trickle. One test, its phases in order, so nothing else moves the
//! numbers. The process allocates as `handoff serve` does (the host
//! library's allocator, tuned as `main` tunes it).

use handoff_tests::{Running, mql_event, programs, start_handoff_with};
use serde_json::{Value, json};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Counts the bytes written to the host's log.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(buf.len(), Ordering::Relaxed);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

fn webhook_pipeline(name: &str, node: Value) -> Value {
    json!({
        "name": name, "version": 1,
        "trigger": {"type": "webhook", "path": format!("/webhooks/{name}"), "signature": "none"},
        "nodes": [node],
        "connections": {"trigger": {"main": [node["id"]]}}
    })
}

async fn post(running: &Running, path: &str, events: &Value) {
    let url = format!("http://{}{path}", running.app.server.addr);
    let response = reqwest::Client::new().post(url).json(events).send().await.unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// Posts `count` events to `path`, `batch` at a time, and waits for them.
async fn drive(running: &Running, path: &str, first: u64, count: u64, batch: u64) {
    let mut next = first;
    while next < first + count {
        let n = batch.min(first + count - next);
        let events: Vec<Value> = (next..next + n).map(|i| mql_event(i, i)).collect();
        post(running, path, &json!(events)).await;
        next += n;
        assert!(running.app.server.settle(Duration::from_secs(300)).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_under_abuse_keeps_its_memory_and_its_log() {
    handoff::allocator::tune();
    let log = Counted::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
        .init();

    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(programs::ABUSE, plugins.join("abuse.wasm")).unwrap();
    let grants = json!(["state:read", "state:write"]);
    let pipelines = [
        (
            "big",
            json!({"id": "big", "plugin": "abuse", "capabilities": grants, "config": {"mode": "output", "n": 1_000_000}}),
        ),
        (
            "chatty",
            json!({"id": "chatty", "plugin": "abuse", "capabilities": grants, "timeout": "60s",
                          "config": {"mode": "log", "n": 100_000}, "retry": {"max_attempts": 1}}),
        ),
        (
            "loud",
            json!({"id": "loud", "plugin": "abuse", "capabilities": grants, "memory_mb": 256,
                        "config": {"mode": "error", "n": 50_000_000}, "retry": {"max_attempts": 1}}),
        ),
    ];
    let mut files = Vec::new();
    for (name, node) in pipelines {
        let path = dir.path().join(format!("{name}.json"));
        std::fs::write(&path, webhook_pipeline(name, node).to_string()).unwrap();
        files.push(path);
    }
    let running = start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |o| {
        handoff::app::AppOptions { pipelines: files, plugin_dirs: vec![plugins], ..o }
    })
    .await;

    // Memory: warm up until what the server keeps by design is full (pool
    // slots, caches, the ledger's, and the recent executions, which hold
    // up to RECENT_EXECUTIONS records and RECENT_BYTES), then a thousand
    // runs of 1 MiB each. Kept, even a thirty-second of each output would
    // be 32 MiB.
    let warm_up = handoff::server::RECENT_EXECUTIONS as u64;
    drive(&running, "/webhooks/big", 1, warm_up, 25).await;
    let before = rss_bytes();
    drive(&running, "/webhooks/big", 1 + warm_up, 1_000, 25).await;
    let after = rss_bytes();
    let grew = after.saturating_sub(before);
    eprintln!("rss: {} MiB before, {} MiB after 1,000 runs of 1 MiB", before >> 20, after >> 20);
    assert!(grew < 32 << 20, "RSS grew by {} MiB over 1,000 runs of 1 MiB", grew >> 20);

    // The host's log: 100 MB of plugin log lines (and as much on
    // stderr), then a 50 MB error, reach it as a trickle.
    let logged_before = log.0.load(Ordering::Relaxed);
    drive(&running, "/webhooks/chatty", 5_000, 1, 1).await;
    drive(&running, "/webhooks/loud", 6_000, 1, 1).await;
    let logged = log.0.load(Ordering::Relaxed) - logged_before;
    eprintln!("host log: {logged} bytes for 200 MB of plugin output and a 50 MB error");
    assert!(logged < 1 << 20, "the host's log took {logged} bytes");
    let finished = running.app.server.finished();
    let chatty = finished.iter().find(|f| f.record.pipeline == "chatty").expect("the chatty run finished");
    let kept: usize = chatty.record.runs[0].logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= handoff::capabilities::MAX_LOG_BYTES, "{kept}");
}
