//! Rejection recycling on virtual time: a reason picked in Slack (or set in
//! Salesforce) sends the lead back to marketing with its reason, into the
//! reason's nurture, and brings it back to sales when it is re-evaluated;
//! the rejection report counts what became of each.

use handoff::capabilities::Clock;
use handoff::ledger::Ledger;
use handoff_tests::{
    Running, advance_to, choose, deliver, dms_to, lead_state, ledger, mql_event, sf_lead, start_handoff_with, timers,
};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const MINUTE: i64 = 60_000;
const DAY: i64 = 24 * 60 * MINUTE;
const CARLOS: &str = "carlos.ruiz@handoff-demo.com";
const MARCUS: &str = "marcus.webb@brightline-analytics.com";

/// Handoff with every shipped pipeline on virtual time, and a roster on
/// which every rep is always available (the test spans months).
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

/// Marcus Webb (contact 1002) is handed to Carlos Ruiz; returns his
/// Salesforce lead id.
async fn marcus_to_carlos(running: &Running) -> String {
    deliver(running, json!([mql_event(1, 1002)])).await;
    assert_eq!(dms_to(running, CARLOS).len(), 1);
    sf_lead(running, MARCUS)["Id"].as_str().unwrap().to_string()
}

fn contact(running: &Running, id: &str) -> serde_json::Map<String, Value> {
    let world = running.emulators.state.world();
    let contact = world.hubspot.find(id, false).expect("the contact");
    contact.properties.iter().map(|(k, v)| (k.clone(), json!(v))).collect()
}

fn in_list(running: &Running, list: &str, contact: &str) -> bool {
    running.emulators.state.world().hubspot.lists.get(list).is_some_and(|(_, members)| members.contains(contact))
}

async fn reject(running: &Running, crm_id: &str, code: &str) {
    let option = format!("{crm_id}:{code}");
    assert_eq!(choose(running, CARLOS, "reject_lead", Some(&option)).await.status(), 200);
}

async fn report(running: &Running) -> Value {
    let url = format!("http://{}/api/rejections?from=0&to={}", running.app.server.addr, i64::MAX);
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn timing_goes_to_nurture_and_comes_back_to_sales_after_ninety_days() {
    let running = start().await;
    let t0 = running.clock.now_ms();
    let crm_id = marcus_to_carlos(&running).await;
    reject(&running, &crm_id, "timing").await;

    assert_eq!(lead_state(&running, "1002").await, "nurture");
    let hubspot = contact(&running, "1002");
    assert_eq!(hubspot["handoff_rejection_reason"], "Timing not right");
    assert_eq!(hubspot["handoff_rejected_by"], "Carlos Ruiz");
    assert_eq!(hubspot["lifecyclestage"], "lead");
    assert_eq!(hubspot["hs_lead_status"], "BAD_TIMING");
    assert!(in_list(&running, "501", "1002"), "in the timing nurture");
    let sf = sf_lead(&running, MARCUS);
    assert_eq!(
        (sf["Status"].as_str(), sf["Rejection_Reason__c"].as_str()),
        (Some("Closed - Not Converted"), Some("Timing not right"))
    );
    let dm = dms_to(&running, CARLOS);
    assert_eq!(dm.len(), 1, "the DM is updated, not a new one");
    assert!(dm[0].contains("Rejected by Carlos Ruiz") && dm[0].contains("Timing not right"), "{}", dm[0]);
    let all = timers(&running, "1002").await;
    let ladder: Vec<_> = all.iter().filter(|t| t.plugin == "escalate").collect();
    assert!(ladder.iter().all(|t| t.state == "cancelled"), "the ladder stopped: {ladder:?}");
    let reevaluation = all.iter().find(|t| t.plugin == "recycle").expect("a re-evaluation timer");
    assert_eq!((reevaluation.state.as_str(), reevaluation.due_at), ("pending", t0 + 90 * DAY));

    // Nothing before day 90.
    advance_to(&running, t0 + 89 * DAY).await;
    assert_eq!(lead_state(&running, "1002").await, "nurture");
    advance_to(&running, t0 + 90 * DAY).await;
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    let record = ledger(&running).lead("1002").await.unwrap().unwrap();
    let states: Vec<&str> = record.timeline.iter().map(|s| s.state.as_str()).collect();
    let recycled = states.iter().position(|s| *s == "recycled").expect("recycled at day 90");
    assert!(states[recycled..].contains(&"notified"), "routed and notified again: {states:?}");
    assert!(record.timeline[recycled].detail.contains("recycle #1"), "{}", record.timeline[recycled].detail);
    let dms = dms_to(&running, CARLOS);
    assert_eq!(dms.len(), 2, "one new DM: {dms:?}");
    assert_eq!(contact(&running, "1002")["lifecyclestage"], "marketingqualifiedlead");

    let report = report(&running).await;
    assert_eq!(report["total"]["rejected"], 1, "{report:#}");
    assert_eq!(report["total"]["recycled"], 1);
    assert_eq!(report["by_reason"]["Timing not right"]["rejected"], 1);
    assert_eq!(report["by_campaign"]["ROI calculator"]["rejected"], 1, "{report:#}");
    assert_eq!(report["by_rep"]["Carlos Ruiz"]["rejected"], 1);
    assert_eq!(report["rejections"][0]["source"], "slack");
}

#[tokio::test]
async fn wrong_persona_is_nurtured_and_never_re_evaluated() {
    let running = start().await;
    let crm_id = marcus_to_carlos(&running).await;
    reject(&running, &crm_id, "wrong-persona").await;
    assert_eq!(lead_state(&running, "1002").await, "nurture");
    assert!(in_list(&running, "503", "1002"));
    assert!(timers(&running, "1002").await.iter().all(|t| t.plugin != "recycle"), "no re-evaluation");
}

#[tokio::test]
async fn other_asks_for_a_note_in_a_modal_and_keeps_it() {
    let running = start().await;
    let crm_id = marcus_to_carlos(&running).await;
    reject(&running, &crm_id, "other").await;
    assert_eq!(lead_state(&running, "1002").await, "notified", "nothing yet: the modal asks first");
    assert_eq!(running.emulators.state.world().slack.views.len(), 1, "the modal opened");

    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let values = json!({"note": {"note": {"type": "plain_text_input", "value": "Student project, not a buyer"}}});
    let response =
        handoff_emulators::drive::submit_view(&reqwest::Client::new(), &url, &running.emulators.state, CARLOS, &values)
            .await
            .unwrap();
    assert_eq!(response.status(), 200);
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    assert_eq!(lead_state(&running, "1002").await, "nurture");
    assert_eq!(contact(&running, "1002")["handoff_rejection_note"], "Student project, not a buyer");
    let report = report(&running).await;
    assert_eq!(report["rejections"][0]["note"], "Student project, not a buyer");
    assert!(dms_to(&running, CARLOS)[0].contains("Student project"));
}

#[tokio::test]
async fn forged_rejections_are_refused_and_change_nothing() {
    let running = start().await;
    let crm_id = marcus_to_carlos(&running).await;
    let option = format!("{crm_id}:timing");
    let payload =
        handoff_emulators::drive::click_payload(&running.emulators.state, CARLOS, "reject_lead", Some(&option))
            .unwrap();
    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let now = jiff::Timestamp::now().as_second();
    let forged = handoff_emulators::drive::send_slack_interaction(
        &reqwest::Client::new(),
        &url,
        "not-the-secret",
        &payload,
        now,
    )
    .await
    .unwrap();
    assert_eq!(forged.status(), 401);
    assert!(running.app.server.settle(Duration::from_secs(10)).await);
    assert_eq!(lead_state(&running, "1002").await, "notified");
    assert!(!in_list(&running, "501", "1002"));
}

/// A rep sets Marcus Webb's lead to the rejected status in Salesforce, with
/// `reason` in the reason field (or none).
fn reject_in_salesforce(running: &Running, crm_id: &str, reason: Option<&str>) {
    let now = running.clock.now_ms();
    let mut fields = serde_json::Map::new();
    fields.insert("Status".into(), json!("Closed - Not Converted"));
    if let Some(reason) = reason {
        fields.insert("Rejection_Reason__c".into(), json!(reason));
    }
    running.emulators.state.world().salesforce.update("Lead", crm_id, fields, now).unwrap();
}

#[tokio::test]
async fn a_rejection_in_salesforce_with_a_reason_is_recycled_the_same_way() {
    let running = start().await;
    let t0 = running.clock.now_ms();
    let crm_id = marcus_to_carlos(&running).await;
    running.clock.set(t0 + MINUTE);
    reject_in_salesforce(&running, &crm_id, Some("No budget"));
    // The poll runs every 5 minutes; the lead's own execution a minute on.
    advance_to(&running, t0 + 5 * MINUTE).await;
    advance_to(&running, t0 + 6 * MINUTE).await;
    assert_eq!(lead_state(&running, "1002").await, "nurture");
    assert!(in_list(&running, "502", "1002"), "the budget nurture");
    let first = report(&running).await;
    assert_eq!(first["rejections"][0]["source"], "salesforce");
    assert_eq!(first["rejections"][0]["label"], "No budget");
    // The next polls find nothing new: one rejection, not one per poll.
    advance_to(&running, t0 + 30 * MINUTE).await;
    assert_eq!(report_total(&running).await, 1);
}

#[tokio::test]
async fn a_rejection_in_salesforce_without_a_reason_asks_the_rep_in_slack() {
    let running = start().await;
    let t0 = running.clock.now_ms();
    let crm_id = marcus_to_carlos(&running).await;
    running.clock.set(t0 + MINUTE);
    reject_in_salesforce(&running, &crm_id, None);
    advance_to(&running, t0 + 5 * MINUTE).await;
    let dms = dms_to(&running, CARLOS);
    assert!(dms.iter().any(|d| d.contains("without a reason")), "Carlos is asked: {dms:?}");
    assert_eq!(lead_state(&running, "1002").await, "notified", "not rejected without a reason");

    let option = format!("{crm_id}:no-response");
    assert_eq!(choose(&running, CARLOS, "reject_reason", Some(&option)).await.status(), 200);
    assert_eq!(lead_state(&running, "1002").await, "nurture");
    assert!(in_list(&running, "505", "1002"), "the no-response nurture");
    assert_eq!(sf_lead(&running, MARCUS)["Rejection_Reason__c"], "No response");
    assert_eq!(report(&running).await["rejections"][0]["source"], "salesforce");
    // The reason written back is not taken for a second rejection.
    advance_to(&running, t0 + 15 * MINUTE).await;
    assert_eq!(report_total(&running).await, 1);
}

async fn report_total(running: &Running) -> u64 {
    report(running).await["total"]["rejected"].as_u64().unwrap()
}

#[tokio::test]
async fn a_recycled_lead_with_an_open_opportunity_counts_as_a_recycled_conversion() {
    let running = start().await;
    let t0 = running.clock.now_ms();
    let crm_id = marcus_to_carlos(&running).await;
    reject(&running, &crm_id, "timing").await;
    // Meanwhile Brightline Analytics buys through another contact.
    {
        let now = running.clock.now_ms();
        let mut world = running.emulators.state.world();
        let account: serde_json::Map<String, Value> = serde_json::from_value(
            json!({"Name": "Brightline Analytics", "Website": "https://brightline-analytics.com"}),
        )
        .unwrap();
        let account_id = world.salesforce.create("Account", account, now).unwrap();
        let opportunity: serde_json::Map<String, Value> = serde_json::from_value(json!({
            "Name": "Brightline - Platform", "AccountId": account_id, "StageName": "Prospecting", "CloseDate": "2027-03-31"
        }))
        .unwrap();
        world.salesforce.create("Opportunity", opportunity, now).unwrap();
    }
    advance_to(&running, t0 + 90 * DAY).await;
    assert_eq!(lead_state(&running, "1002").await, "converted");
    assert_eq!(dms_to(&running, CARLOS).len(), 1, "not handed to sales again");
    let report = report(&running).await;
    assert_eq!(report["total"]["converted"], 1);
    assert_eq!(report["rejections"][0]["outcome"], "converted");
}

#[test]
fn the_report_table_lists_groups_and_rejections() {
    let report = handoff::reports::RejectionReport {
        from: 0,
        to: 1_000,
        rejections: vec![handoff::reports::Rejection {
            lead: "1002".into(),
            at: 1_795_000_000_000,
            reason: "timing".into(),
            label: "Timing not right".into(),
            source: "slack".into(),
            by: "Carlos Ruiz".into(),
            note: None,
            campaign: Some("ROI calculator".into()),
            outcome: "nurture".into(),
            reevaluate_at: None,
        }],
        by_reason: [(
            "Timing not right".to_string(),
            handoff::reports::Tally { rejected: 1, recycled: 0, converted: 0 },
        )]
        .into(),
        by_source: Default::default(),
        by_campaign: Default::default(),
        by_rep: Default::default(),
        total: handoff::reports::Tally { rejected: 1, recycled: 0, converted: 0 },
    };
    let table = handoff::reports::render_rejections(&report);
    assert!(table.contains("1 rejected, 0 recycled to sales, 0 converted"), "{table}");
    assert!(
        table.contains("Timing not right") && table.contains("Carlos Ruiz") && table.contains("nurture"),
        "{table}"
    );
}

#[tokio::test]
async fn the_weekly_digest_posts_the_metrics_the_api_reports() {
    let running = start().await;
    let t0 = running.clock.now_ms();
    let crm_id = marcus_to_carlos(&running).await;
    running.clock.set(t0 + 5 * MINUTE);
    reject(&running, &crm_id, "budget").await;
    // The demo's "now" is Wednesday 2026-11-25 15:00 UTC; the digest runs
    // on Monday at 09:00 in Berlin, 08:00 UTC.
    let monday = t0 + 4 * DAY + 17 * 60 * MINUTE;
    advance_to(&running, monday).await;
    let posts: Vec<(String, Value)> = {
        let world = running.emulators.state.world();
        let channel =
            world.slack.channels.values().find(|c| c.name.as_deref() == Some("handoff-digest")).unwrap().id.clone();
        world
            .slack
            .messages
            .iter()
            .filter(|m| m.channel == channel)
            .map(|m| (m.text.clone(), m.blocks.clone().unwrap_or_default()))
            .collect()
    };
    assert_eq!(posts.len(), 1, "one digest: {posts:?}");
    let (text, blocks) = &posts[0];
    assert!(text.starts_with("Handoff health, week of 2026-11-23"), "{text}");
    assert!(text.contains("Acceptance rate 0.0% (> 60%) :x: target missed"), "{text}");
    assert!(text.contains("Drop rate 0.0% (< 2%) :white_check_mark: target met"), "a rejection is a response: {text}");
    assert!(text.contains("Top rejection reasons: No budget (1)"), "{text}");
    assert_eq!(blocks[0]["type"], "header");
    // The same numbers as the API for the same week.
    let url = format!("http://{}/api/metrics?from={}&to={}", running.app.server.addr, monday - 7 * DAY, monday);
    let api: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(api["overall"]["acceptance_rate"], 0.0);
    assert_eq!(api["overall"]["leads"]["rejected"], json!(["1002"]));
}
