//! The SLA ladder on virtual time: timers that fire at their deadline,
//! steps that stop at the rep's first touch, Accept and Resume in Slack,
//! reassignment, VP review, pausing a rep, and Slack's signatures.

use handoff::capabilities::Clock;
use handoff::ledger::Ledger;
use handoff_tests::{
    Running, advance_to, click, deliver, dms_to, lead_state, ledger, mql_event, sf_lead, start_handoff_with, timers,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

const CARLOS: &str = "carlos.ruiz@handoff-demo.com";
const CARLOS_ID: &str = "005000000000010AAA";
const NINA: &str = "nina.patel@handoff-demo.com";
const VERA: &str = "vera.voss@handoff-demo.com";

fn pipelines_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines")
}

/// Handoff with the standard pipelines (MQL handoff, SLA ladder, Slack
/// buttons) on virtual time, the options changed by `adjust`.
async fn start_sla(adjust: impl FnOnce(handoff::app::AppOptions) -> handoff::app::AppOptions) -> Running {
    let standard = handoff::app::STANDARD_PIPELINES.map(|p| pipelines_dir().join(p)).to_vec();
    start_handoff_with(tempfile::tempdir().unwrap(), handoff_tests::test_clock(), |options| {
        adjust(handoff::app::AppOptions { pipelines: standard, ..options })
    })
    .await
}

/// Marcus Webb (contact 1002) is routed to Carlos Ruiz at the test's "now";
/// returns the time he was assigned.
async fn marcus_assigned_to_carlos(running: &Running) -> i64 {
    let t0 = running.clock.now_ms();
    deliver(running, json!([mql_event(1, 1002)])).await;
    assert_eq!(dms_to(running, CARLOS).len(), 1, "the first DM");
    let armed = timers(running, "1002").await;
    assert_eq!(armed.len(), 1, "the ladder's first step is armed: {armed:?}");
    assert_eq!((armed[0].state.as_str(), armed[0].due_at), ("pending", t0 + 30 * MINUTE));
    t0
}

#[tokio::test]
async fn an_unresponsive_rep_walks_the_whole_ladder_each_step_on_time_and_once() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;

    advance_to(&running, t0 + 30 * MINUTE).await;
    let reminders = dms_to(&running, CARLOS);
    assert_eq!(reminders.len(), 2, "one reminder: {reminders:?}");
    assert!(reminders[1].contains("Reminder") && reminders[1].contains("Marcus Webb"), "{}", reminders[1]);
    assert_eq!(lead_state(&running, "1002").await, "reminded");

    advance_to(&running, t0 + 2 * HOUR).await;
    let to_manager = dms_to(&running, NINA);
    assert_eq!(to_manager.len(), 1, "the manager hears once: {to_manager:?}");
    assert!(to_manager[0].contains("Carlos Ruiz has not touched"), "{}", to_manager[0]);
    assert_eq!(dms_to(&running, CARLOS).len(), 2, "no second reminder");

    advance_to(&running, t0 + 4 * HOUR).await;
    let lead = sf_lead(&running, "marcus.webb@brightline-analytics.com");
    let new_owner = lead["OwnerId"].as_str().unwrap().to_string();
    assert_ne!(new_owner, CARLOS_ID, "reassigned in Salesforce");
    let roster = handoff::roster::FileRoster::load(&pipelines_dir().join("roster.json")).unwrap().current();
    let new_rep = roster.reps.iter().find(|r| r.id == new_owner).expect("to a rep on the roster");
    assert_eq!(new_rep.team, "na", "of the same team");
    let to_new = dms_to(&running, &new_rep.email);
    assert_eq!(to_new.len(), 1, "{to_new:?}");
    assert!(to_new[0].contains("reassigned from Carlos Ruiz after 4 h"), "{}", to_new[0]);
    assert_eq!(dms_to(&running, NINA).len(), 2, "Carlos's manager hears of the reassignment");
    let task = {
        let world = running.emulators.state.world();
        world.salesforce.objects["Task"].iter().find(|t| t["WhoId"] == lead["Id"]).cloned().unwrap()
    };
    assert_eq!(task["OwnerId"].as_str(), Some(new_owner.as_str()), "the follow-up task moved too");
    let record = ledger(&running).lead("1002").await.unwrap().unwrap();
    assert_eq!((record.state.as_str(), record.owner.as_deref()), ("reassigned", Some(new_rep.name.as_str())));

    advance_to(&running, t0 + 28 * HOUR).await;
    let to_vp = dms_to(&running, VERA);
    assert_eq!(to_vp.len(), 1, "{to_vp:?}");
    assert!(to_vp[0].contains("VP review") && to_vp[0].contains("Marcus Webb"), "{}", to_vp[0]);
    let vp_task = {
        let world = running.emulators.state.world();
        world.salesforce.objects["Task"]
            .iter()
            .any(|t| t["WhoId"] == lead["Id"] && t["OwnerId"] == "005000000000001AAA")
    };
    assert!(vp_task, "a task for the VP on the lead");
    assert_eq!(lead_state(&running, "1002").await, "vp-review");

    // Every step fired at its exact offset, once.
    let ladder = timers(&running, "1002").await;
    let fired: Vec<(i64, Option<i64>)> = ladder
        .iter()
        .filter(|t| t.state == "fired")
        .map(|t| (t.due_at - t0, t.settled_at.map(|s| s - t.due_at)))
        .collect();
    assert_eq!(fired, [(30 * MINUTE, Some(0)), (2 * HOUR, Some(0)), (4 * HOUR, Some(0)), (28 * HOUR, Some(0))]);
    assert!(ladder.iter().all(|t| t.state == "fired"), "nothing left pending: {ladder:?}");
    let shown = handoff::cli::render_lead(&ledger(&running).lead("1002").await.unwrap().unwrap(), &ladder);
    assert!(
        shown.contains("SLA 30m after assignment: reminder to Carlos Ruiz") && shown.contains("VP review"),
        "{shown}"
    );
    advance_to(&running, t0 + 60 * HOUR).await;
    assert_eq!((dms_to(&running, CARLOS).len(), dms_to(&running, VERA).len()), (2, 1), "the ladder is over");
}

#[tokio::test]
async fn a_rep_who_logs_a_call_at_one_hour_gets_only_the_reminder() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    advance_to(&running, t0 + 30 * MINUTE).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 2);

    running.clock.set(t0 + HOUR);
    let lead_id = sf_lead(&running, "marcus.webb@brightline-analytics.com")["Id"].as_str().unwrap().to_string();
    let logged = reqwest::Client::new()
        .post(format!("http://{}/_sandbox/salesforce/activities", running.emulators.http))
        .json(&json!({"who_id": lead_id, "kind": "task", "subject": "Call: intro", "owner_id": CARLOS_ID}))
        .send()
        .await
        .unwrap();
    assert_eq!(logged.status(), 201);

    advance_to(&running, t0 + 6 * HOUR).await;
    assert!(dms_to(&running, NINA).is_empty(), "the manager is never told");
    assert_eq!(dms_to(&running, CARLOS).len(), 2, "no more reminders");
    assert_eq!(sf_lead(&running, "marcus.webb@brightline-analytics.com")["OwnerId"], CARLOS_ID, "not reassigned");
    let record = ledger(&running).lead("1002").await.unwrap().unwrap();
    assert_eq!(record.state.as_str(), "contacted");
    let last = record.timeline.last().unwrap();
    assert!(
        last.detail.contains("Carlos Ruiz logged a task 'Call: intro'") && last.detail.contains("1 h after assignment"),
        "{}",
        last.detail
    );
}

#[tokio::test]
async fn a_rep_who_accepts_at_ten_minutes_hears_nothing_more() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    running.clock.set(t0 + 10 * MINUTE);
    assert_eq!(click(&running, CARLOS, "accept_lead").await.status(), 200);

    let lead = sf_lead(&running, "marcus.webb@brightline-analytics.com");
    assert_eq!(lead["Status"], "Working - Contacted", "an SQL in Salesforce");
    let record = ledger(&running).lead("1002").await.unwrap().unwrap();
    assert_eq!(record.state.as_str(), "accepted");
    assert!(record.timeline.last().unwrap().detail.contains("accepted by Carlos Ruiz in Slack"));
    let dm = {
        let world = running.emulators.state.world();
        world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some(CARLOS)).cloned().unwrap()
    };
    assert!(
        dm.text.contains("Accepted by Carlos Ruiz at 15:10 UTC") || dm.text.contains("Accepted by Carlos Ruiz"),
        "{}",
        dm.text
    );
    assert!(!dm.blocks.unwrap().to_string().contains("accept_lead"), "the buttons are gone");
    let ladder = timers(&running, "1002").await;
    assert_eq!(ladder.len(), 1);
    assert_eq!(ladder[0].state, "cancelled", "{ladder:?}");

    advance_to(&running, t0 + 30 * HOUR).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 1, "no reminder");
    assert!(dms_to(&running, NINA).is_empty() && dms_to(&running, VERA).is_empty());
    assert_eq!(lead_state(&running, "1002").await, "accepted");
}

#[tokio::test]
async fn accept_after_reassignment_tells_the_rep_who_owns_the_lead_now() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    advance_to(&running, t0 + 4 * HOUR).await;
    let owner = sf_lead(&running, "marcus.webb@brightline-analytics.com")["OwnerId"].as_str().unwrap().to_string();
    assert_ne!(owner, CARLOS_ID);

    // Carlos clicks Accept on his first DM, hours late.
    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let payload = {
        let world = running.emulators.state.world();
        let first = world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some(CARLOS)).unwrap().clone();
        world.slack.block_action(&first, "accept_lead", None, running.clock.now_ms()).unwrap()
    };
    let response = handoff_emulators::drive::send_slack_interaction(
        &reqwest::Client::new(),
        &url,
        handoff_emulators::SECRET,
        &payload,
        jiff::Timestamp::now().as_second(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(running.app.server.settle(Duration::from_secs(30)).await);

    let first = {
        let world = running.emulators.state.world();
        world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some(CARLOS)).cloned().unwrap()
    };
    assert!(first.text.contains("reassigned and now belongs to"), "{}", first.text);
    assert_eq!(
        sf_lead(&running, "marcus.webb@brightline-analytics.com")["OwnerId"].as_str(),
        Some(owner.as_str()),
        "still the new owner's"
    );
    assert_eq!(lead_state(&running, "1002").await, "reassigned");
}

#[tokio::test]
async fn forged_stale_and_replayed_slack_requests_are_refused_and_nothing_is_stored() {
    let running = start_sla(|o| o).await;
    marcus_assigned_to_carlos(&running).await;
    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let http = reqwest::Client::new();
    let payload =
        handoff_emulators::drive::click_payload(&running.emulators.state, CARLOS, "accept_lead", None).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let send = |secret: &'static str, at: i64| {
        let (http, url, payload) = (http.clone(), url.clone(), payload.clone());
        async move { handoff_emulators::drive::send_slack_interaction(&http, &url, secret, &payload, at).await.unwrap() }
    };
    assert_eq!(send("not-the-secret", now).await.status(), 401, "forged");
    assert_eq!(send(handoff_emulators::SECRET, now - 600).await.status(), 401, "stale");
    let unsigned = http.post(&url).body(handoff_emulators::drive::slack_form(&payload)).send().await.unwrap();
    assert_eq!(unsigned.status(), 401, "unsigned");
    let events = ledger(&running).unfinished_events().await.unwrap();
    assert!(events.iter().all(|e| e.source != "slack"), "nothing stored");
    assert_eq!(lead_state(&running, "1002").await, "notified", "nothing changed");

    assert_eq!(send(handoff_emulators::SECRET, now).await.status(), 200, "the real click");
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    assert_eq!(send(handoff_emulators::SECRET, now).await.status(), 401, "the same request replayed");
    assert_eq!(lead_state(&running, "1002").await, "accepted");
}

/// The shipped SLA pipeline with its ladder config changed by `change`,
/// written into `dir`; returns the standard pipelines with it in place.
fn with_sla_config(dir: &Path, change: impl FnOnce(&mut Value)) -> Vec<PathBuf> {
    let mut sla: Value =
        serde_json::from_str(&std::fs::read_to_string(pipelines_dir().join("sla-enforcement.json")).unwrap()).unwrap();
    change(&mut sla["nodes"][0]["config"]);
    sla.as_object_mut().unwrap().remove("$schema");
    let path = dir.join("sla-enforcement.json");
    std::fs::write(&path, sla.to_string()).unwrap();
    vec![pipelines_dir().join("mql-handoff.json"), path, pipelines_dir().join("slack-interactions.json")]
}

#[tokio::test]
async fn a_business_hours_clock_skips_the_weekend_in_the_reps_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let pipelines = with_sla_config(dir.path(), |config| config["business_hours"] = json!(true));
    // Friday 23:55 UTC is 17:55 in Chicago, Carlos Ruiz's time zone.
    let friday = handoff_tests::test_now_ms() + 2 * 24 * HOUR + 8 * HOUR + 55 * MINUTE;
    let running = start_handoff_with(
        tempfile::tempdir().unwrap(),
        Arc::new(handoff::capabilities::ManualClock::new(friday)),
        |o| handoff::app::AppOptions { pipelines, ..o },
    )
    .await;
    let t0 = running.clock.now_ms();
    deliver(&running, json!([mql_event(1, 1002)])).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 1);
    // Five minutes on Friday, twenty-five on Monday from 08:00 Chicago:
    // Monday 08:25 there, 14:25 UTC.
    let monday = t0 + 2 * 24 * HOUR + 14 * HOUR + 30 * MINUTE;
    let armed = timers(&running, "1002").await;
    assert_eq!(armed[0].due_at, monday, "{armed:?}");
    advance_to(&running, monday - MINUTE).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 1, "nothing over the weekend");
    advance_to(&running, monday).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 2, "the reminder on Monday morning");
}

/// The shipped roster with Carlos Ruiz alone on both North American teams,
/// written into `dir`: every NA lead is his, and nobody can take it over.
fn carlos_alone(dir: &Path) -> PathBuf {
    let mut roster: Value =
        serde_json::from_str(&std::fs::read_to_string(pipelines_dir().join("roster.json")).unwrap()).unwrap();
    for team in roster["teams"].as_array_mut().unwrap() {
        if team["id"] == "na" || team["id"] == "na-enterprise" {
            team["members"] = json!([CARLOS_ID]);
        }
    }
    let path = dir.join("roster.json");
    std::fs::write(&path, roster.to_string()).unwrap();
    path
}

async fn new_na_lead(running: &Running, n: u64) -> u64 {
    let properties = json!({"email": format!("buyer{n}@na-prospect{n}.com"), "firstname": "Pat", "lastname": format!("Buyer{n}"),
        "company": format!("Prospect {n}"), "country": "United States", "state": "IL", "numemployees": "300",
        "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
    let id = handoff_emulators::drive::create_contact(&reqwest::Client::new(), running.emulators.http, &properties)
        .await
        .unwrap()
        .parse()
        .unwrap();
    deliver(running, json!([mql_event(1000 + n, id)])).await;
    id
}

#[tokio::test]
async fn a_rep_who_lets_three_leads_reach_reassignment_is_paused_until_resume() {
    let dir = tempfile::tempdir().unwrap();
    let roster = carlos_alone(dir.path());
    let running = start_sla(|o| handoff::app::AppOptions { roster, ..o }).await;
    let t0 = running.clock.now_ms();
    for n in 0..3 {
        new_na_lead(&running, n).await;
    }
    assert_eq!(dms_to(&running, CARLOS).len(), 3);
    advance_to(&running, t0 + 4 * HOUR).await;

    let base = format!("http://{}", running.app.server.addr);
    let view: Value = reqwest::get(format!("{base}/api/roster")).await.unwrap().json().await.unwrap();
    let paused = view["paused"].as_array().unwrap();
    assert_eq!(paused.len(), 1, "{view}");
    assert_eq!(paused[0]["rep_id"], CARLOS_ID);
    assert_eq!(paused[0]["reason"], "3 leads in a row reached reassignment");
    let carlos = view["teams"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["reps"].as_array().unwrap())
        .find(|r| r["id"] == CARLOS_ID)
        .unwrap();
    assert_eq!(carlos["available"], false);
    assert!(handoff::cli::render_roster(&view).contains("[PAUSED]"));
    let told = dms_to(&running, NINA);
    assert!(told.iter().any(|t| t.contains("Carlos Ruiz gets no new leads")), "the manager is told: {told:?}");
    assert!(dms_to(&running, CARLOS).iter().any(|t| t.contains("gets no new leads")), "and Carlos");

    // Paused: the next lead is not his.
    let next = new_na_lead(&running, 10).await;
    let record = ledger(&running).lead(&next.to_string()).await.unwrap().unwrap();
    let routed = record.timeline.iter().find(|s| s.state.as_str() == "routed").unwrap();
    assert!(routed.detail.contains("Carlos Ruiz skipped: paused: 3 leads in a row"), "{}", routed.detail);

    // Carlos clicks Resume: leads flow to him again.
    assert_eq!(click(&running, CARLOS, "resume_rep").await.status(), 200);
    let view: Value = reqwest::get(format!("{base}/api/roster")).await.unwrap().json().await.unwrap();
    assert!(view["paused"].as_array().unwrap().is_empty(), "{view}");
    let after = new_na_lead(&running, 11).await;
    assert_eq!(ledger(&running).lead(&after.to_string()).await.unwrap().unwrap().owner.as_deref(), Some("Carlos Ruiz"));
}

#[tokio::test]
async fn accept_survives_a_slack_outage_on_the_dm_update_and_is_recorded_once() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    running.clock.set(t0 + 10 * MINUTE);
    // Slack fails every try of the connector's first call to chat.update:
    // the node fails retryable after the Accept is written, and runs again.
    let tries = handoff_tests::fast_policy().max_attempts;
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "slack".into(),
        endpoint: Some("chat.update".into()),
        method: None,
        kind: handoff_emulators::FaultKind::Status { status: 503, retry_after: None },
        rate: 1.0,
        times: Some(tries),
    });
    assert_eq!(click(&running, CARLOS, "accept_lead").await.status(), 200);
    assert_eq!(lead_state(&running, "1002").await, "accepted", "the retry goes on as this click's Accept");
    let dm = {
        let world = running.emulators.state.world();
        world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some(CARLOS)).cloned().unwrap()
    };
    assert!(dm.text.contains("Accepted by Carlos Ruiz"), "not 'Already accepted': {}", dm.text);
    assert_eq!(timers(&running, "1002").await[0].state, "cancelled");
}

#[tokio::test]
async fn an_accept_from_an_earlier_handoff_does_not_stop_the_ladder_of_the_next() {
    let running = start_sla(|o| o).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    running.clock.set(t0 + 10 * MINUTE);
    assert_eq!(click(&running, CARLOS, "accept_lead").await.status(), 200);
    assert_eq!(lead_state(&running, "1002").await, "accepted");

    // A quarter later the same person qualifies again: same Salesforce lead.
    let t1 = t0 + 90 * 24 * HOUR;
    running.clock.set(t1);
    let mut again = mql_event(2, 1002);
    again["occurredAt"] = json!(t1);
    deliver(&running, json!([again])).await;
    assert_eq!(dms_to(&running, CARLOS).len(), 2, "the new handoff's DM");
    let lead = sf_lead(&running, "marcus.webb@brightline-analytics.com");
    assert_eq!(lead["Status"], "Open - Not Contacted", "open again for the new handoff");
    let record = ledger(&running).lead("1002").await.unwrap().unwrap();
    let notified = record.timeline.iter().filter(|s| s.state.as_str() == "notified").count();
    assert_eq!(notified, 2, "the timeline shows both handoffs: {:#?}", record.timeline);
    advance_to(&running, t1 + 30 * MINUTE).await;
    let dms = dms_to(&running, CARLOS);
    assert_eq!(dms.len(), 3, "the new ladder reminds: {dms:?}");
    assert!(dms[2].contains("Reminder"), "{}", dms[2]);
    assert_eq!(lead_state(&running, "1002").await, "reminded");
}

#[tokio::test]
async fn a_lead_in_the_queue_goes_to_the_rep_who_takes_it_there() {
    let dir = tempfile::tempdir().unwrap();
    let roster_path = carlos_alone(dir.path());
    let roster = handoff::roster::FileRoster::load(&roster_path).unwrap().current();
    let running = start_sla(|o| handoff::app::AppOptions { roster: roster_path, ..o }).await;
    let t0 = running.clock.now_ms();
    let lead = new_na_lead(&running, 1).await.to_string();
    advance_to(&running, t0 + 4 * HOUR).await;
    let record = ledger(&running).lead(&lead).await.unwrap().unwrap();
    assert_eq!(record.state.as_str(), "reassigned", "{:#?} {:#?}", record.timeline, timers(&running, &lead).await);
    let post = {
        let world = running.emulators.state.world();
        world.slack.messages.iter().rev().find(|m| m.recipient.is_none() && m.text.contains("needs an owner")).cloned()
    }
    .expect("the queue hears of the lead");

    // Carlos clicks his old DM: the lead is the queue's now, not his.
    let url = format!("http://{}/slack/interactions", running.app.server.addr);
    let send = |payload: Value| {
        let url = url.clone();
        async move {
            let response = handoff_emulators::drive::send_slack_interaction(
                &reqwest::Client::new(),
                &url,
                handoff_emulators::SECRET,
                &payload,
                jiff::Timestamp::now().as_second(),
            )
            .await
            .unwrap();
            assert_eq!(response.status(), 200);
        }
    };
    let now = running.clock.now_ms();
    let old_dm = {
        let world = running.emulators.state.world();
        let dm = world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some(CARLOS)).unwrap().clone();
        world.slack.block_action(&dm, "accept_lead", None, now).unwrap()
    };
    send(old_dm).await;
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    assert_eq!(lead_state(&running, &lead).await, "reassigned", "not accepted from an earlier owner's DM");

    // A rep of another team takes it from the queue's post.
    let taker = roster.reps.iter().find(|r| r.team == "emea").expect("an EMEA rep");
    let click = running.emulators.state.world().slack.block_action_by(&taker.email, &post, "accept_lead", None, now);
    send(click.expect("the post has Accept")).await;
    assert!(running.app.server.settle(Duration::from_secs(30)).await);
    assert_eq!(lead_state(&running, &lead).await, "accepted");
    let record = ledger(&running).lead(&lead).await.unwrap().unwrap();
    assert!(record.timeline.last().unwrap().detail.contains(&format!("accepted by {}", taker.name)));
    let sf = {
        let world = running.emulators.state.world();
        world.salesforce.objects["Lead"].iter().find(|l| l["Email"] == "buyer1@na-prospect1.com").cloned().unwrap()
    };
    assert_eq!(sf["OwnerId"].as_str(), Some(taker.id.as_str()), "the taker owns it in Salesforce");
}

#[tokio::test]
async fn a_ladder_step_set_to_push_also_reaches_the_salesforce_app() {
    let dir = tempfile::tempdir().unwrap();
    // The reminder and the manager's step push; the others do not.
    let pipelines = with_sla_config(dir.path(), |config| {
        config["steps"] = json!([
            {"after": "30m", "action": "remind", "push": true},
            {"after": "2h", "action": "notify-manager", "push": true},
            {"after": "4h", "action": "reassign"},
        ]);
    });
    let running = start_sla(|o| handoff::app::AppOptions { pipelines, ..o }).await;
    let t0 = marcus_assigned_to_carlos(&running).await;
    let pushes = |running: &Running| {
        let world = running.emulators.state.world();
        world.salesforce.objects.get(handoff_emulators::SENT_NOTIFICATIONS).cloned().unwrap_or_default()
    };
    let before = pushes(&running).len();
    let crm_lead = sf_lead(&running, "marcus.webb@brightline-analytics.com")["Id"].clone();

    advance_to(&running, t0 + 30 * MINUTE).await;
    let after_reminder = pushes(&running);
    assert_eq!(after_reminder.len(), before + 1, "{after_reminder:#?}");
    let reminder = after_reminder.last().unwrap();
    assert_eq!(reminder["RecipientIds"], json!([CARLOS_ID]));
    assert_eq!(reminder["TargetId"], crm_lead);
    assert!(reminder["Body"].as_str().unwrap().contains("Marcus Webb"), "{reminder:?}");

    advance_to(&running, t0 + 2 * HOUR).await;
    let after_manager = pushes(&running);
    assert_eq!(after_manager.len(), before + 2);
    let nina = handoff::roster::FileRoster::load(&pipelines_dir().join("roster.json"))
        .unwrap()
        .current()
        .leaders
        .iter()
        .find(|l| l.email == NINA)
        .map(|l| l.id.clone())
        .unwrap();
    assert_eq!(after_manager.last().unwrap()["RecipientIds"], json!([nina]));
    let lead = handoff::ledger::Ledger::lead(&ledger(&running), "1002").await.unwrap().unwrap();
    let escalated = lead.timeline.iter().find(|s| s.state.as_str() == "escalated").unwrap();
    assert!(escalated.detail.contains("pushed to the Salesforce app"), "{}", escalated.detail);

    advance_to(&running, t0 + 4 * HOUR).await;
    assert_eq!(pushes(&running).len(), before + 2, "the reassignment step does not push");
}
