//! The dashboard in a real browser (headless Chromium): the numbers shown
//! equal the API's, a lead's timeline opens, and a screenshot of each page
//! is written for review.

use handoff::capabilities::Clock;
use handoff_tests::{Running, browser, choose, deliver, dms_to, mql_event, sf_lead, start_handoff_with};
use serde_json::{Value, json};
use std::path::Path;

const MINUTE: i64 = 60_000;

async fn start() -> Running {
    let pipelines = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
    let standard: Vec<_> = handoff::app::STANDARD_PIPELINES.iter().map(|p| pipelines.join(p)).collect();
    let dir = tempfile::tempdir().unwrap();
    let roster = handoff_tests::open_roster(dir.path());
    let running = start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |o| {
        handoff::app::AppOptions { pipelines: standard, roster, ..o }
    })
    .await;
    std::mem::forget(dir);
    running
}

/// The text of the element with `data-metric="<key>"`.
fn shown(dom: &str, key: &str) -> String {
    let marker = format!("data-metric=\"{key}\">");
    let start = dom.find(&marker).unwrap_or_else(|| panic!("no {key} on the page")) + marker.len();
    dom[start..].split('<').next().unwrap().to_string()
}

fn percent(value: &Value) -> String {
    value.as_f64().map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

#[tokio::test]
async fn the_dashboard_shows_the_apis_numbers_and_each_leads_timeline() {
    let chromium = match browser::chromium() {
        Ok(path) => path,
        Err(why) => {
            eprintln!("SKIPPED: the dashboard's browser test needs Chromium: {why}");
            return;
        }
    };
    let running = start().await;
    let t0 = running.clock.now_ms();
    // Three leads: accepted at 4 minutes, rejected at 12, left alone.
    deliver(&running, json!([mql_event(1, 1002), mql_event(2, 1003), mql_event(3, 1001)])).await;
    let carlos = "carlos.ruiz@handoff-demo.com";
    assert_eq!(dms_to(&running, carlos).len(), 1);
    running.clock.set(t0 + 4 * MINUTE);
    assert_eq!(handoff_tests::click(&running, carlos, "accept_lead").await.status(), 200);
    running.clock.set(t0 + 12 * MINUTE);
    let sofia = sf_lead(&running, "sofia.moreno@tidewater-energy.co.uk");
    let owner = {
        let world = running.emulators.state.world();
        let id = sofia["OwnerId"].as_str().unwrap().to_string();
        world.salesforce.objects["User"].iter().find(|u| u["Id"] == id).unwrap()["Email"].as_str().unwrap().to_string()
    };
    let option = format!("{}:budget", sofia["Id"].as_str().unwrap());
    assert_eq!(choose(&running, &owner, "reject_lead", Some(&option)).await.status(), 200);
    running.clock.set(t0 + 20 * MINUTE);

    let base = format!("http://{}", running.app.server.addr);
    let now = running.clock.now_ms();
    let api: Value = reqwest::get(format!("{base}/api/metrics?from={}&to={}&by=rep", now - 7 * 1440 * MINUTE, now + 1))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (chromium_path, url) = (chromium.clone(), format!("{base}/"));
    let dom = tokio::task::spawn_blocking(move || browser::dump_dom(&chromium_path, &url)).await.unwrap().unwrap();
    let overall = &api["overall"];
    assert_eq!(shown(&dom, "sla_compliance"), percent(&overall["sla_compliance"]), "{dom}");
    assert_eq!(shown(&dom, "acceptance_rate"), percent(&overall["acceptance_rate"]));
    assert_eq!(shown(&dom, "acceptance_rate"), "50.0%", "one accepted, one rejected");
    assert_eq!(shown(&dom, "speed_to_contact"), "4.0 min");
    assert_eq!(shown(&dom, "drop_rate"), "-", "nobody's 48 hours are up yet");
    assert!(dom.contains("No budget"), "the rejection reason is shown");
    assert!(dom.contains("Carlos Ruiz"), "the reps table");
    assert!(dom.contains("<svg"), "the charts");

    let (chromium_path, url) = (chromium.clone(), format!("{base}/leads/1002"));
    let lead = tokio::task::spawn_blocking(move || browser::dump_dom(&chromium_path, &url)).await.unwrap().unwrap();
    assert!(lead.contains("Marcus Webb") && lead.contains("accepted by Carlos Ruiz in Slack"), "{lead}");
    assert!(lead.contains("id=\"lead-state\">accepted<"), "{lead}");

    let shots = std::env::temp_dir().join("handoff-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for (page, name, height) in [("/", "dashboard.png", 2200), ("/leads/1002", "lead-timeline.png", 900)] {
        let (chromium_path, url, path) = (chromium.clone(), format!("{base}{page}"), shots.join(name));
        let written = path.clone();
        tokio::task::spawn_blocking(move || browser::screenshot(&chromium_path, &url, &path, height))
            .await
            .unwrap()
            .unwrap();
        assert!(std::fs::metadata(&written).unwrap().len() > 10_000, "a real picture at {}", written.display());
        eprintln!("screenshot: {}", written.display());
    }
}

#[tokio::test]
async fn the_dashboard_is_behind_the_api_token() {
    let running = start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |o| {
        handoff::app::AppOptions { api_token: Some(handoff::connectors::Secret::new("s3cret")), ..o }
    })
    .await;
    let base = format!("http://{}", running.app.server.addr);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    assert_eq!(http.get(format!("{base}/")).send().await.unwrap().status(), 401);
    let login = http.get(format!("{base}/?token=s3cret")).send().await.unwrap();
    assert_eq!(login.status(), 303);
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{base}/")).header("cookie", cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Handoff health"));
    let bearer = http.get(format!("{base}/")).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(bearer.status(), 200);
}
