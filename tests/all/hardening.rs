//! The server against hostile and careless clients: slow or stalled
//! requests, too many connections, too much work at once, and pages on
//! other origins. Each test reproduces a failure the landed build had.

use handoff_tests::{Running, deliver, mql_event, new_contacts, post_webhook, start_handoff_with, test_clock};
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "sandbox-secret";

async fn start(limits: handoff::server::ServerLimits) -> Running {
    start_handoff_with(tempfile::tempdir().unwrap(), test_clock(), |o| handoff::app::AppOptions {
        server_limits: limits,
        ..o
    })
    .await
}

fn quick() -> handoff::server::ServerLimits {
    handoff::server::ServerLimits {
        header_read: Duration::from_millis(300),
        body_read: Duration::from_millis(300),
        ..handoff::server::ServerLimits::default()
    }
}

/// Everything the server sends until it closes the connection (or 10 s
/// pass: then the connection was held open, and the test fails on it).
async fn until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_that_stops_mid_header_or_mid_body_is_cut_off() {
    let running = start(quick()).await;
    let addr = running.app.server.addr;
    // Once held open forever: a few thousand of these used up the descriptors.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(b"POST /webhooks/hubspot HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty").await.unwrap();
    assert!(until_closed(&mut stalled).await.is_some(), "a stalled header is cut off");

    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(b"POST /webhooks/hubspot HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n[{\"event")
        .await
        .unwrap();
    let answer = until_closed(&mut slow_body).await.expect("a stalled body is cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");

    // The server goes on answering.
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_told_to_come_back() {
    let running =
        start(handoff::server::ServerLimits { max_connections: 3, ..handoff::server::ServerLimits::default() }).await;
    let addr = running.app.server.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
        held.push(idle);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut one_more = TcpStream::connect(addr).await.unwrap();
    let answer = until_closed(&mut one_more).await.expect("answered and closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 5"), "{answer}");

    drop(held);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200, "slots free again once the idle clients leave");
}

#[tokio::test]
async fn webhooks_beyond_the_in_flight_cap_are_refused_before_anything_is_stored() {
    let running =
        start(handoff::server::ServerLimits { max_in_flight: 0, ..handoff::server::ServerLimits::default() }).await;
    let response = post_webhook(&running, &json!([mql_event(9_001, 1002)]), SECRET).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "busy");
    let db = rusqlite::Connection::open(running.state_dir.path().join("handoff.db")).unwrap();
    let stored: i64 = db.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, 0, "HubSpot delivers it again; nothing half-taken");
}

#[tokio::test]
async fn a_burst_is_worked_lead_by_lead_in_the_order_it_came() {
    // One execution at a time: a burst waits its turn instead of starting
    // every lead at once (once every lead of a burst was fetched before
    // the first DM went out, and all their DMs came at the end).
    let roster_dir = tempfile::tempdir().unwrap();
    let roster = handoff_tests::open_roster(roster_dir.path());
    let running = start_handoff_with(tempfile::tempdir().unwrap(), test_clock(), |o| handoff::app::AppOptions {
        roster,
        server_limits: handoff::server::ServerLimits { max_running: 1, ..handoff::server::ServerLimits::default() },
        ..o
    })
    .await;
    let contacts = new_contacts(&running, 4).await;
    let events: Vec<_> = contacts.iter().zip(9_200..).map(|(id, event)| mql_event(event, *id)).collect();
    let before = running.emulators.state.world().requests.len();
    deliver(&running, json!(events)).await;
    // What reached the providers, in order: each lead's contact fetched
    // from HubSpot, then its DM (and anything else) before the next fetch.
    let world = running.emulators.state.world();
    let order: Vec<&str> = world.requests[before..]
        .iter()
        .filter_map(|r| match (r.provider, r.method.as_str()) {
            ("hubspot", "GET") if r.path.contains("/objects/contacts/") => Some("fetch"),
            ("slack", _) if r.path.ends_with("chat.postMessage") => Some("post"),
            _ => None,
        })
        .collect();
    let fetches: Vec<usize> = order.iter().enumerate().filter(|(_, s)| **s == "fetch").map(|(i, _)| i).collect();
    assert_eq!(fetches.len(), 4, "{order:?}");
    for pair in fetches.windows(2) {
        assert!(
            order[pair[0]..pair[1]].contains(&"post"),
            "a lead's DM goes out before the next lead is fetched: {order:?}"
        );
    }
    assert_eq!(order.last(), Some(&"post"), "{order:?}");
    assert_eq!(running.app.server.in_flight(), 0, "every lead ran");
}

#[tokio::test]
async fn a_page_on_another_origin_cannot_drive_a_loopback_server() {
    let running = start(handoff::server::ServerLimits::default()).await;
    let base = format!("http://{}", running.app.server.addr);
    let http = reqwest::Client::new();
    // What any web page the operator visits could once send: accepted.
    let forged = http
        .post(format!("{base}/api/retry-failed"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let plain =
        http.post(format!("{base}/api/sweep")).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(plain.status(), 403, "a body must be JSON");
    // DNS rebinding: a foreign name resolved to 127.0.0.1 reads nothing.
    let rebound = http.get(format!("{base}/api/leads")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(rebound.status(), 403);
    let dashboard = http.get(format!("{base}/")).header("host", "evil.example").send().await.unwrap();
    assert_eq!(dashboard.status(), 403);

    // `handoff retry` and the dashboard itself go through.
    let cli = http.post(format!("{base}/api/retry-failed")).send().await.unwrap();
    assert_eq!(cli.status(), 200);
    let same_origin = http.post(format!("{base}/api/retry-failed")).header("origin", &base).send().await.unwrap();
    assert_eq!(same_origin.status(), 200);
}

/// Why Handoff refuses to start on the shipped MQL pipeline with `from`
/// replaced by `to`.
async fn refusal_to_start_with(from: &str, to: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let text = std::fs::read_to_string(pipelines.join("mql-handoff.json")).unwrap();
    let changed = dir.path().join("mql-handoff.json");
    std::fs::write(&changed, text.replace(from, to)).unwrap();
    let emulators = handoff::emulated::start(handoff_emulators::Settings::default(), test_clock()).await.unwrap();
    let options = handoff::app::AppOptions {
        pipelines: vec![changed],
        ..handoff_tests::handoff_options(&emulators, test_clock(), dir.path())
    };
    format!("{:#}", handoff::app::App::launch(options).await.err().expect("refused"))
}

#[tokio::test]
async fn a_pipeline_on_a_route_the_server_owns_is_refused_at_start_not_a_panic() {
    let error = refusal_to_start_with("\"/webhooks/hubspot\"", "\"/api/sweep\"").await;
    assert!(error.contains("/api/sweep' is the server's own (the API)"), "{error}");
}

#[tokio::test]
async fn a_route_rule_naming_no_roster_team_is_refused() {
    let error = refusal_to_start_with("\"team\": \"emea\"", "\"team\": \"emae\"").await;
    assert!(error.contains("team 'emae' is not in the roster"), "{error}");
    assert!(error.contains("/nodes/") && error.contains("/config/rules/"), "names where: {error}");
    assert!(error.contains("emea-enterprise, emea"), "lists the teams: {error}");
}

#[tokio::test]
async fn one_client_hammering_the_api_is_slowed_and_others_are_not() {
    let running =
        start(handoff::server::ServerLimits { api_per_second: 5, ..handoff::server::ServerLimits::default() }).await;
    let url = format!("http://{}/api/leads", running.app.server.addr);
    let hammer = reqwest::Client::new();
    let mut limited = None;
    for _ in 0..40 {
        let response = hammer.get(&url).send().await.unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("a client far over its rate is refused");
    assert!(limited.headers().contains_key("retry-after"));
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    // Another address (loopback has them all) is served as before.
    let other =
        reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    // Webhooks are not /api: HubSpot is never slowed by it.
    let response = post_webhook(&running, &json!([mql_event(9_101, 1002)]), SECRET).await;
    assert_eq!(response.status(), 200);
}
