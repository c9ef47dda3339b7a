//! End to end: signed HubSpot webhooks into `handoff serve` on the sandbox,
//! checked where a rep and RevOps would look (Slack, Salesforce).

use handoff::capabilities::{Clock, StateStore};
use handoff::ledger::{Ledger, SqliteStore};
use handoff_tests::{
    Running, handoff_options, mql_event, post_webhook, start_handoff, start_handoff_in, start_handoff_with,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const SECRET: &str = handoff_emulators::SECRET;

async fn deliver(running: &Running, events: Value) {
    let response = post_webhook(running, &events, SECRET).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert!(running.app.server.settle(Duration::from_secs(60)).await, "executions finish");
}

fn dms_to(running: &Running, email: &str) -> Vec<Value> {
    let world = running.emulators.state.world();
    world
        .slack
        .messages
        .iter()
        .filter(|m| m.recipient.as_deref() == Some(email))
        .map(|m| json!({"text": m.text, "blocks": m.blocks}))
        .collect()
}

async fn get_json(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn post_json(url: String) -> Value {
    reqwest::Client::new().post(url).send().await.unwrap().json().await.unwrap()
}

fn leads(running: &Running) -> Vec<serde_json::Map<String, Value>> {
    running.emulators.state.world().salesforce.objects["Lead"].clone()
}

#[tokio::test]
async fn a_signed_mql_reaches_the_right_rep_with_a_lead_and_a_task() {
    let running = start_handoff().await;
    // Marcus Webb: US (CA), 320 employees. Jake (Los Angeles) is outside his
    // hours at 07:00; weighted round-robin picks Carlos (weight 2) first.
    deliver(&running, json!([mql_event(1, 1002)])).await;
    let dms = dms_to(&running, "carlos.ruiz@handoff-demo.com");
    assert_eq!(dms.len(), 1, "one DM to the routed rep");
    let blocks = dms[0]["blocks"].to_string();
    assert!(
        blocks.contains("New MQL: Marcus Webb") && blocks.contains("accept_lead") && blocks.contains("reject_lead")
    );
    assert!(blocks.contains("Jake Miller skipped: outside working hours"), "the DM explains the routing");

    let lead = leads(&running)
        .into_iter()
        .find(|l| l["Email"] == "marcus.webb@brightline-analytics.com")
        .expect("a Salesforce lead");
    assert_eq!(lead["OwnerId"], "005000000000010AAA");
    assert_eq!(lead["Company"], "Brightline Analytics");
    let tasks = running.emulators.state.world().salesforce.objects["Task"].clone();
    let task = tasks.iter().find(|t| t["WhoId"] == lead["Id"]).expect("a follow-up task");
    assert_eq!(task["OwnerId"], "005000000000010AAA");
    let due = handoff::connectors::time::date(running.clock.now_ms() + 4 * 3_600_000);
    assert_eq!(task["ActivityDate"], due.as_str(), "due at the SLA deadline: 15:00 + 4h, same day");
    let emails = running.emulators.state.world().emails.clone();
    assert!(emails.iter().any(|e| e.to == ["carlos.ruiz@handoff-demo.com"]), "the email backup went out");
}

#[tokio::test]
async fn an_invalid_lead_is_not_routed_and_the_reason_is_recorded() {
    let running = start_handoff().await;
    let before = leads(&running).len();
    deliver(&running, json!([mql_event(2, 1007)])).await; // Chloe Martin, gmail.com
    let finished = running.app.server.finished();
    assert_eq!(finished.len(), 1);
    let end = serde_json::to_value(&finished[0].record.ends[0]).unwrap();
    assert_eq!((end["node"].as_str(), end["port"].as_str()), (Some("validate"), Some("invalid")));
    assert_eq!(end["item"]["validation"]["reasons"][0]["code"], "free_mail_domain");
    assert!(running.emulators.state.world().slack.messages.is_empty());
    assert_eq!(leads(&running).len(), before);
}

#[tokio::test]
async fn the_same_delivery_twice_sends_one_dm() {
    let running = start_handoff().await;
    let events = json!([mql_event(3, 1001)]);
    deliver(&running, events.clone()).await;
    let again: Value = post_webhook(&running, &events, SECRET).await.json().await.unwrap();
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "recognised at the door"
    );
    running.app.server.settle(Duration::from_secs(30)).await;
    assert_eq!(dms_to(&running, "lena.fischer@handoff-demo.com").len(), 1);
    let count = leads(&running).iter().filter(|l| l["Email"] == "priya.raman@northwind-logistics.com").count();
    assert_eq!(count, 1, "one Salesforce lead");
    assert_eq!(running.app.server.finished().len(), 1, "the redelivery did not run");

    // A second event for the same MQL (a new event id) is caught by dedupe.
    deliver(&running, json!([mql_event(33, 1001)])).await;
    let finished = running.app.server.finished();
    let second = serde_json::to_value(&finished[1].record.ends[0]).unwrap();
    assert_eq!(second["port"], "duplicate");
    assert_eq!(dms_to(&running, "lena.fischer@handoff-demo.com").len(), 1);
}

#[tokio::test]
async fn dedupe_forgets_an_mqls_keys_after_thirty_days() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(5, 1001)])).await;
    running.app.server.flush().await.unwrap();
    // A second connection, as another process would see the file.
    let store = SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap();
    let (now, day) = (running.clock.now_ms(), 86_400_000);
    let owner = store.get("dedupe", "event:5", now + 29 * day).await.unwrap();
    assert!(owner.is_some_and(|o| o.contains("hubspot:5")), "the event is remembered for 30 days");
    assert_eq!(store.get("dedupe", "event:5", now + 31 * day).await.unwrap(), None, "and then forgotten");

    running.clock.advance(31 * day);
    let pruned = handoff::server::prune(&running.app.server.state, handoff::server::DEFAULT_RETENTION).await;
    assert_eq!(pruned.state, 4, "the event's and the contact's day's keys, and their claims: {pruned:?}");
}

#[tokio::test]
async fn an_open_opportunity_tells_its_owner_and_creates_no_lead() {
    let running = start_handoff().await;
    let before = leads(&running).len();
    deliver(&running, json!([mql_event(4, 1004)])).await; // Dev Anand at Initech
    let dms = dms_to(&running, "priya.shah@handoff-demo.com");
    assert_eq!(dms.len(), 1);
    assert!(dms[0]["text"].as_str().unwrap().contains("Initech - Platform Expansion"));
    assert_eq!(leads(&running).len(), before, "no new lead");
}

#[tokio::test]
async fn when_every_rep_is_unavailable_the_lead_goes_to_the_fallback_queue() {
    let running = start_handoff().await;
    // A new APAC MQL at 23:00 in Shanghai and 02:00 in Sydney.
    let properties = json!({"email": "kai.tan@lionbridge-logistics.sg", "firstname": "Kai", "lastname": "Tan",
        "company": "Lionbridge Logistics", "country": "Singapore", "numemployees": "400", "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
    let id: u64 =
        handoff_emulators::drive::create_contact(&reqwest::Client::new(), running.emulators.http, &properties)
            .await
            .unwrap()
            .parse()
            .unwrap();
    deliver(&running, json!([mql_event(5, id)])).await;
    let lead = leads(&running).into_iter().find(|l| l["Email"] == "kai.tan@lionbridge-logistics.sg").expect("a lead");
    assert_eq!(lead["OwnerId"], "00G000000000001AAA", "the fallback queue owns it");
    let world = running.emulators.state.world();
    let posted = world.slack.messages.iter().find(|m| m.channel == "C0REVOPS01").expect("posted to the queue channel");
    assert!(posted.text.contains("Kai Tan"));
}

#[tokio::test]
async fn a_bad_signature_is_refused_and_nothing_is_stored() {
    let running = start_handoff().await;
    let response = post_webhook(&running, &json!([mql_event(6, 1001)]), "not-the-secret").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_signature");

    let url = format!("http://{}/webhooks/hubspot", running.app.server.addr);
    let unsigned = reqwest::Client::new().post(&url).body("[]").send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let stale_ts = handoff::capabilities::Clock::now_ms(&handoff::capabilities::SystemClock) - 301_000;
    let body = json!([mql_event(7, 1001)]).to_string();
    let stale = reqwest::Client::new()
        .post(&url)
        .header("x-hubspot-request-timestamp", stale_ts.to_string())
        .header(
            "x-hubspot-signature-v3",
            handoff::connectors::hubspot::sign_v3(SECRET, "POST", &url, body.as_bytes(), stale_ts),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 401, "a timestamp older than five minutes");

    assert!(running.app.server.finished().is_empty() && running.app.server.in_flight() == 0);
    assert!(running.emulators.state.world().slack.messages.is_empty());
    let ledger = SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap();
    for id in ["6", "7"] {
        assert!(ledger.event("hubspot", id).await.unwrap().is_none(), "a refused event is not stored");
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_naming_the_problem() {
    let running = start_handoff().await;
    for (body, needle) in
        [(json!([{"eventId": 1, "objectId": 2}]), "no subscriptionType"), (json!("text"), "JSON array")]
    {
        let response = post_webhook(&running, &body, SECRET).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert!(error["detail"].as_str().unwrap().contains(needle), "{error}");
    }
    let health: Value = get_json(format!("http://{}/healthz", running.app.server.addr)).await;
    assert_eq!(health["status"], "ok");
}

async fn create_contact(running: &Running, email: &str, country: &str, state: &str) -> u64 {
    let properties = json!({"email": email, "firstname": "Test", "lastname": email, "company": format!("Co {email}"),
        "country": country, "state": state, "numemployees": "300", "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
    handoff_emulators::drive::create_contact(&reqwest::Client::new(), running.emulators.http, &properties)
        .await
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_rep_at_daily_capacity_is_skipped() {
    let running = start_handoff().await;
    // North America: Jake is outside his hours; Priya (capacity 3) and
    // Carlos (weight 2) share. Twelve leads would give Priya four by
    // weight; her capacity stops her at three.
    let mut events = Vec::new();
    for i in 0..12 {
        let id = create_contact(&running, &format!("na{i}@capacity-test{i}.com"), "United States", "NY").await;
        events.push(mql_event(100 + i, id));
    }
    for event in events {
        deliver(&running, json!([event])).await;
    }
    let owners: Vec<String> = leads(&running)
        .iter()
        .filter(|l| l["Email"].as_str().unwrap_or_default().contains("capacity-test"))
        .map(|l| l["OwnerId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(owners.len(), 12);
    let priya = owners.iter().filter(|o| o.as_str() == "005000000000009AAA").count();
    assert_eq!(priya, 3, "{owners:?}");
    let trails =
        serde_json::to_string(&running.app.server.finished().iter().map(|f| &f.record).collect::<Vec<_>>()).unwrap();
    assert!(trails.contains("Priya Shah skipped: at daily capacity (3/3)"), "the trail says why");
}

#[tokio::test]
async fn a_slow_language_model_never_holds_up_the_notification() {
    let running = start_handoff().await;
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "anthropic".into(),
        endpoint: None,
        method: None,
        kind: handoff_emulators::FaultKind::Hang,
        rate: 1.0,
        times: None,
    });
    let started = std::time::Instant::now();
    deliver(&running, json!([mql_event(200, 1002)])).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    let dms = dms_to(&running, "carlos.ruiz@handoff-demo.com");
    assert_eq!(dms.len(), 1, "the DM went out");
    assert!(
        dms[0]["text"].as_str().unwrap().contains("Marcus Webb (Head of Data, Brightline Analytics) viewed"),
        "with the template summary"
    );
    let record = serde_json::to_value(&running.app.server.finished()[0].record).unwrap();
    let summarize = record["runs"].as_array().unwrap().iter().find(|r| r["node"] == "summarize").unwrap();
    assert_eq!(summarize["outputs"][0]["item"]["summary"]["source"], "template");
}

/// The model answers after the DM goes out: 700 ms, within the summary's
/// 1.5 s budget.
fn answer_late_from_the_model(running: &handoff_tests::Running) {
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "anthropic".into(),
        endpoint: None,
        method: None,
        kind: handoff_emulators::FaultKind::Latency { ms: 700 },
        rate: 1.0,
        times: None,
    });
}

#[tokio::test]
async fn the_dm_does_not_wait_for_the_model_and_its_summary_updates_the_dm_in_place() {
    let running = start_handoff().await;
    answer_late_from_the_model(&running);
    deliver(&running, json!([mql_event(202, 1002)])).await;
    let record = serde_json::to_value(&running.app.server.finished()[0].record).unwrap();
    let runs = record["runs"].as_array().unwrap();
    let position = |node: &str| runs.iter().position(|r| r["node"] == node).unwrap();
    assert!(position("notify") < position("summarize"), "the DM went out before the model answered");
    let join = &runs[position("join")];
    assert_eq!(join["input"]["missing"], json!(["summary"]), "{join}");
    let update = &runs[position("update-dm")];
    assert_eq!(update["outputs"][0]["item"]["notification"]["summary_update"], "updated");

    let world = running.emulators.state.world();
    let dm =
        world.slack.messages.iter().find(|m| m.recipient.as_deref() == Some("carlos.ruiz@handoff-demo.com")).unwrap();
    assert_eq!(dm.edits, 1, "one DM, updated in place");
    assert!(dm.text.contains("Sandbox summary: name Marcus Webb"), "{}", dm.text);
    let blocks = dm.blocks.as_ref().unwrap().to_string();
    assert!(blocks.contains("Sandbox summary") && blocks.contains("accept_lead"), "the buttons stay: {blocks}");
}

#[tokio::test]
async fn the_language_model_writes_the_summary_when_it_answers() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(201, 1002)])).await;
    let dms = dms_to(&running, "carlos.ruiz@handoff-demo.com");
    assert!(dms[0]["text"].as_str().unwrap().contains("Sandbox summary: name Marcus Webb"), "{}", dms[0]["text"]);
}

#[tokio::test]
async fn the_webhook_answers_only_after_the_event_is_on_disk() {
    let running = start_handoff().await;
    let response = post_webhook(&running, &json!([mql_event(300, 1002)]), SECRET).await;
    assert_eq!(response.status(), 200);
    // A second connection, as another process would see the file.
    let ledger = SqliteStore::open(&running.state_dir.path().join("handoff.db")).unwrap();
    let (event, _) = ledger.event("hubspot", "300").await.unwrap().expect("stored before the 200");
    assert_eq!(event.lead_id.as_deref(), Some("1002"));
    running.app.server.settle(Duration::from_secs(30)).await;
    assert!(ledger.event("hubspot", "300").await.unwrap().unwrap().1, "finished after the run");
}

#[tokio::test]
async fn the_ledger_shows_each_lead_and_its_timeline() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(301, 1002), mql_event(302, 1007)])).await;
    let base = format!("http://{}", running.app.server.addr);
    let lead: Value = get_json(format!("{base}/api/leads/1002")).await;
    assert_eq!(lead["state"], "notified");
    assert_eq!(lead["owner"], "Carlos Ruiz");
    let states: Vec<&str> = lead["timeline"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["received", "validated", "deduped", "routed", "assigned", "notified"]);
    let invalid: Value = get_json(format!("{base}/api/leads?state=invalid")).await;
    assert_eq!(invalid[0]["id"], "1007");
    assert_eq!(reqwest::get(format!("{base}/api/leads/424242")).await.unwrap().status(), 404);
    assert_eq!(reqwest::get(format!("{base}/api/leads?state=bogus")).await.unwrap().status(), 400);
}

#[tokio::test]
async fn events_received_before_a_crash_run_after_the_restart() {
    // An event was stored and acknowledged, then the process died before
    // running it: the next start runs it.
    let state_dir = tempfile::tempdir().unwrap();
    let ledger = SqliteStore::open(&state_dir.path().join("handoff.db")).unwrap();
    let event = handoff::ledger::InboundEvent {
        source: "hubspot".into(),
        event_id: "400".into(),
        pipeline: "mql-handoff".into(),
        lead_id: Some("1002".into()),
        payload: mql_event(400, 1002),
        received_at: 1,
        node: None,
    };
    assert!(ledger.record_event(&event).await.unwrap());
    let running = start_handoff_in(state_dir).await;
    assert!(running.app.server.settle(Duration::from_secs(60)).await);
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1, "the resumed lead reached its rep");
    assert!(ledger.event("hubspot", "400").await.unwrap().unwrap().1);
    assert!(ledger.unfinished_events().await.unwrap().is_empty());
}

/// A new instance on the same ledger and sandbox, once it has finished
/// what it resumed.
async fn restart(running: &Running) -> handoff::app::App {
    restart_with(running, |options| options).await
}

/// [`restart`] with the options changed by `adjust`.
async fn restart_with(
    running: &Running,
    adjust: impl FnOnce(handoff::app::AppOptions) -> handoff::app::AppOptions,
) -> handoff::app::App {
    let options = adjust(handoff_options(&running.emulators, running.clock.clone(), running.state_dir.path()));
    let restarted = handoff::app::App::launch(options).await.unwrap();
    assert!(restarted.server.settle(Duration::from_secs(60)).await);
    restarted
}

/// Salesforce leads with Marcus Webb's email (the lead of contact 1002).
fn marcus_leads(running: &Running) -> usize {
    leads(running).iter().filter(|l| l["Email"] == "marcus.webb@brightline-analytics.com").count()
}

#[tokio::test]
async fn a_rerun_after_a_crash_sends_no_second_dm_and_creates_no_second_lead() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(500, 1002)])).await;
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1);

    // The process "died" after every side effect but before the event was
    // marked finished: the ledger still has it as unfinished.
    running.app.server.flush().await.unwrap();
    let db = running.state_dir.path().join("handoff.db");
    rusqlite::Connection::open(&db).unwrap().execute("UPDATE events SET finished_at = NULL", []).unwrap();

    // A new instance on the same ledger and plugin state resumes it.
    let restarted = restart(&running).await;
    let rerun = &restarted.server.finished()[0].record;
    assert_eq!(rerun.execution_id, running.app.server.finished()[0].record.execution_id, "the same execution id");
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1, "no second DM");
    assert_eq!(marcus_leads(&running), 1, "no second Salesforce lead");
    let tasks = running.emulators.state.world().salesforce.objects["Task"].len();
    assert_eq!(tasks, 1, "no second task");
}

/// The worst crash: every effect of lead 1002's execution reached its
/// provider, but no result (and no node's outputs) reached the journal.
/// The rerun, knowing it may repeat an earlier run, must find each effect
/// at its provider.
/// Run with the host clock at `now_ms`, wherever the wall clock is. With
/// `late_model`, the model answers after the DM went out, so the DM Slack
/// holds was updated in place with the summary: its text is no longer the
/// one the rerun would send.
async fn crash_between_each_effect_and_its_record(now_ms: i64, late_model: bool) {
    let roster_dir = tempfile::tempdir().unwrap();
    let roster = handoff_tests::open_roster(roster_dir.path());
    let open = |options: handoff::app::AppOptions| handoff::app::AppOptions { roster: roster.clone(), ..options };
    let clock = Arc::new(handoff::capabilities::ManualClock::new(now_ms));
    let running = start_handoff_with(tempfile::tempdir().unwrap(), clock, open).await;
    if late_model {
        answer_late_from_the_model(&running);
    }
    deliver(&running, json!([mql_event(510, 1002)])).await;
    assert_eq!(dms(&running).len(), 1, "one DM for the lead");
    if late_model {
        let world = running.emulators.state.world();
        let dm = world.slack.messages.iter().find(|m| m.recipient.is_some()).unwrap();
        assert_eq!(dm.edits, 1, "the DM was updated with the summary");
    }

    // What the execution did is kept with its trace when it ends; had the
    // process died before then, the ledger would hold none of it. Undo the
    // end: no trace, no record (its state increments' records go too, which
    // can only raise the rerun's counts), and the event unfinished.
    running.app.server.flush().await.unwrap();
    let db = running.state_dir.path().join("handoff.db");
    let trace = SqliteStore::open(&db).unwrap().trace("mql-handoff:hubspot:510").await.unwrap().unwrap();
    let did: Vec<&str> = trace.effects.iter().map(|(key, _)| key.as_str()).collect();
    for effect in ["crm.upsert-lead", "chat.send-dm", "crm.create-task"] {
        assert!(did.iter().any(|key| key.ends_with(effect)), "{effect} is in the trace: {did:?}");
    }
    let ledger = rusqlite::Connection::open(&db).unwrap();
    ledger.execute_batch("DELETE FROM traces; DELETE FROM effects; UPDATE events SET finished_at = NULL").unwrap();

    let restarted = restart_with(&running, open).await;
    let rerun = &restarted.server.finished()[0].record;
    let plugin_runs = || rerun.runs.iter().filter(|r| r.node != "join");
    assert!(plugin_runs().all(|r| !r.replayed && r.error.is_none()), "every other node ran again, and succeeded");
    assert_eq!(dms(&running).len(), 1, "the DM was found at Slack, not resent");
    assert_eq!(marcus_leads(&running), 1, "the Salesforce lead was found, not created again");
    assert_eq!(running.emulators.state.world().salesforce.objects["Task"].len(), 1, "the task was found");
    let lead = SqliteStore::open(&db).unwrap().lead("1002").await.unwrap().unwrap();
    assert_eq!(lead.state, handoff::lead::LeadState::NOTIFIED);
}

/// The texts of the messages the sandbox's Slack took that `which` picks.
fn slack_texts(running: &Running, which: impl Fn(&handoff_emulators::slack::Message) -> bool) -> Vec<String> {
    running.emulators.state.world().slack.messages.iter().filter(|m| which(m)).map(|m| m.text.clone()).collect()
}

/// Every DM the sandbox's Slack took.
fn dms(running: &Running) -> Vec<String> {
    slack_texts(running, |m| m.recipient.is_some())
}

const WEEK_MS: i64 = 7 * 86_400_000;

#[tokio::test]
async fn a_crash_between_each_effect_and_its_record_repeats_none_of_them() {
    crash_between_each_effect_and_its_record(handoff_tests::test_now_ms(), false).await;
}

#[tokio::test]
async fn a_crash_after_the_dm_was_updated_with_the_summary_sends_no_second_dm() {
    crash_between_each_effect_and_its_record(handoff_tests::test_now_ms(), true).await;
}

#[tokio::test]
async fn a_crash_between_each_effect_and_its_record_repeats_none_with_the_host_clock_a_week_ahead() {
    crash_between_each_effect_and_its_record(handoff::capabilities::SystemClock.now_ms() + WEEK_MS, false).await;
}

#[tokio::test]
async fn a_crash_between_each_effect_and_its_record_repeats_none_with_the_host_clock_a_week_behind() {
    crash_between_each_effect_and_its_record(handoff::capabilities::SystemClock.now_ms() - WEEK_MS, false).await;
}

#[tokio::test]
async fn a_stopping_server_refuses_new_webhooks_and_finishes_what_it_took() {
    let mut running = start_handoff().await;
    let accepted = post_webhook(&running, &json!([mql_event(600, 1002)]), SECRET).await;
    assert_eq!(accepted.status(), 200);
    running.app.server.stop_accepting();
    assert!(running.app.server.settle(Duration::from_secs(60)).await, "in-flight work finishes");
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let url = format!("http://{}/webhooks/hubspot", running.app.server.addr);
    assert!(reqwest::Client::new().post(&url).body("[]").send().await.is_err(), "no longer accepting");
}

/// The ops channel's messages, once there are at least `count` of them
/// (or after 10 s).
async fn ops_alerts(running: &Running, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let alerts = slack_texts(running, |m| m.channel == "C0REVOPS01");
        if alerts.len() >= count || std::time::Instant::now() > deadline {
            return alerts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Salesforce fault that makes every lead fail: lead creation refused.
fn refuse_lead_creation(running: &Running) -> u64 {
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "salesforce".into(),
        endpoint: Some("/sobjects/Lead".into()),
        method: Some("POST".into()),
        kind: handoff_emulators::FaultKind::Status { status: 400, retry_after: None },
        rate: 1.0,
        times: None,
    })
}

#[tokio::test]
async fn a_burst_of_failures_is_one_alert_held_through_slack_rate_limits() {
    let running = start_handoff().await;
    refuse_lead_creation(&running);
    // Slack rate-limits every post: once, thousands of alerts were dropped here.
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "slack".into(),
        endpoint: Some("/chat.postMessage".into()),
        method: None,
        kind: handoff_emulators::FaultKind::Status { status: 429, retry_after: Some(0) },
        rate: 1.0,
        times: None,
    });
    let mut burst = Vec::new();
    for i in 0..30 {
        let id = create_contact(&running, &format!("buyer{i}@burst{i}.com"), "United States", "NY").await;
        burst.push(mql_event(7_100 + i, id));
    }
    deliver(&running, json!(burst)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(ops_alerts(&running, 0).await.is_empty(), "Slack took nothing");

    // Slack recovers; the next failure wakes the alerter, which tells all.
    running.emulators.state.world().faults.clear();
    refuse_lead_creation(&running);
    let one_more = create_contact(&running, "buyer@burst-after.com", "United States", "NY").await;
    deliver(&running, json!([mql_event(7_200, one_more)])).await;
    let alerts = ops_alerts(&running, 1).await;
    let failed_leads = |text: &str| -> u64 {
        match text.strip_prefix(":warning: ").and_then(|t| t.split_once(" leads failed")) {
            Some((count, _)) => count.parse().unwrap(),
            None => u64::from(text.contains(" failed in ")),
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let alerts = if alerts.is_empty() { alerts } else { ops_alerts(&running, alerts.len()).await };
    assert_eq!(alerts.len(), 1, "one message for the burst: {alerts:#?}");
    let db = rusqlite::Connection::open(running.state_dir.path().join("handoff.db")).unwrap();
    let failed: u64 = db.query_row("SELECT count(*) FROM events WHERE failed = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(failed, 31, "the burst and the one after it failed");
    let told: u64 = alerts.iter().map(|a| failed_leads(a)).sum();
    assert_eq!(told, failed, "every failure is told: {alerts:#?}");
    assert!(alerts[0].contains(&format!("and {} more", failed - 5)), "{}", alerts[0]);
    assert!(alerts[0].contains("handoff retry --all-failed"), "{}", alerts[0]);
    let untold: u64 =
        db.query_row("SELECT count(*) FROM events WHERE failed = 1 AND told_at IS NULL", [], |r| r.get(0)).unwrap();
    assert_eq!(untold, 0);
}

#[tokio::test]
async fn a_failed_lead_alerts_ops_and_a_retry_finishes_it() {
    let running = start_handoff().await;
    // Salesforce refuses lead creation: a permanent error, so the lead fails.
    assert!(refuse_lead_creation(&running) > 0);
    deliver(&running, json!([mql_event(700, 1002)])).await;
    let base = format!("http://{}", running.app.server.addr);
    let lead: Value = get_json(format!("{base}/api/leads/1002")).await;
    assert_eq!(lead["state"], "failed");
    let alerts = ops_alerts(&running, 1).await;
    assert!(alerts[0].contains("Lead 1002 failed") && alerts[0].contains("handoff retry 1002"), "{}", alerts[0]);
    assert!(
        running.emulators.state.world().slack.messages.iter().all(|m| m.recipient.is_none()),
        "no DM for a failed lead"
    );

    running.emulators.state.world().faults.clear();
    // Two retries at once: exactly one runs.
    let http = reqwest::Client::new();
    let (a, b) = tokio::join!(
        http.post(format!("{base}/api/leads/1002/retry")).send(),
        http.post(format!("{base}/api/retry-failed")).send()
    );
    let a: Value = a.unwrap().json().await.unwrap();
    let b: Value = b.unwrap().json().await.unwrap();
    let started = a["retried"].as_array().unwrap().len() + b["retried"].as_array().unwrap().len();
    assert_eq!(started, 1, "{a} {b}");
    assert!(running.app.server.settle(Duration::from_secs(60)).await);
    let lead: Value = get_json(format!("{base}/api/leads/1002")).await;
    assert_eq!(lead["state"], "notified");
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1);
    let nothing: Value = post_json(format!("{base}/api/retry-failed")).await;
    assert_eq!(nothing["retried"], json!([]), "nothing left to retry");
}

#[tokio::test]
async fn a_lead_whose_steps_the_ledger_refuses_is_not_finished_until_they_are_recorded() {
    let running = start_handoff().await;
    // The ledger refuses every lead step for a while (a lost connection, a
    // database at its connection limit): a trigger that aborts while the
    // flag is set.
    let db = rusqlite::Connection::open(running.state_dir.path().join("handoff.db")).unwrap();
    db.execute_batch(
        "CREATE TABLE refuse_steps (x); INSERT INTO refuse_steps VALUES (1);
         CREATE TRIGGER refuse BEFORE INSERT ON lead_steps WHEN EXISTS (SELECT 1 FROM refuse_steps)
         BEGIN SELECT RAISE(ABORT, 'the disk is away'); END;",
    )
    .unwrap();
    let response = post_webhook(&running, &json!([mql_event(710, 1002)]), SECRET).await;
    assert_eq!(response.status(), 200);
    // The execution ran (the rep has the DM), but its event is not finished
    // while the lead has no trace in the ledger.
    let ledger = handoff_tests::ledger(&running);
    for _ in 0..200 {
        if !dms_to(&running, "carlos.ruiz@handoff-demo.com").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(ledger.lead("1002").await.unwrap().is_none(), "no step could be recorded");
    let unfinished = ledger.unfinished_events().await.unwrap();
    assert!(unfinished.iter().any(|e| e.event_id == "710"), "the event is not finished without its lead's steps");

    db.execute_batch("DELETE FROM refuse_steps").unwrap();
    assert!(running.app.server.settle(Duration::from_secs(60)).await);
    let lead = ledger.lead("1002").await.unwrap().expect("the lead is in the ledger");
    assert_eq!(lead.state.as_str(), "notified");
    assert!(ledger.unfinished_events().await.unwrap().iter().all(|e| e.event_id != "710"));
    assert_eq!(dms_to(&running, "carlos.ruiz@handoff-demo.com").len(), 1, "one DM, however often it was tried");
}

#[tokio::test]
async fn the_sweep_finds_mqls_no_webhook_delivered() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(800, 1002)])).await;
    let base = format!("http://{}", running.app.server.addr);
    let swept: Value = post_json(format!("{base}/api/sweep")).await;
    let started: Vec<&str> = swept["started"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    // The seed org's other MQL contacts (1008 is only a lead).
    assert_eq!(started.len(), 8, "{started:?}");
    assert!(started.iter().all(|e| e.starts_with("sweep:") && !e.contains(":1002:")), "{started:?}");
    assert!(running.app.server.settle(Duration::from_secs(60)).await);
    let lead: Value = get_json(format!("{base}/api/leads/1001")).await;
    assert_eq!(lead["state"], "notified", "a missed MQL was handed off");
    let again: Value = post_json(format!("{base}/api/sweep")).await;
    assert_eq!(again["started"], json!([]), "nothing new since the last sweep");
}

#[tokio::test]
async fn the_api_requires_its_token_and_is_never_exposed_without_one() {
    let running = start_handoff().await;
    let options = |listen: &str, token: Option<&str>, dir: &std::path::Path| handoff::app::AppOptions {
        listen: listen.parse().unwrap(),
        ops_channel: None,
        api_token: token.map(handoff::connectors::Secret::new),
        ..handoff_options(&running.emulators, running.clock.clone(), dir)
    };
    let dir = tempfile::tempdir().unwrap();
    let exposed = handoff::app::App::launch(options("0.0.0.0:0", None, dir.path())).await;
    assert!(exposed.err().unwrap().to_string().contains("HANDOFF_API_TOKEN"), "no public /api without a token");

    let guarded = handoff::app::App::launch(options("127.0.0.1:0", Some("s3cret"), dir.path())).await.unwrap();
    let url = format!("http://{}/api/leads", guarded.server.addr);
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).bearer_auth("wrong!").send().await.unwrap().status(), 401);
    assert_eq!(http.get(&url).bearer_auth("s3cret").send().await.unwrap().status(), 200);
    let health = http.get(format!("http://{}/healthz", guarded.server.addr)).send().await.unwrap();
    assert_eq!(health.status(), 200, "probes stay open");
}

#[tokio::test]
async fn prometheus_metrics_parse_and_count_the_work() {
    let running = start_handoff().await;
    deliver(&running, json!([mql_event(310, 1002)])).await;
    let url = format!("http://{}/metrics", running.app.server.addr);
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"),
        "{:?}",
        response.headers()
    );
    let text = response.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("a Prometheus parser reads it");
    let value = |name: &str, label: (&str, &str)| {
        scrape.samples.iter().find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1)).map(|s| {
            match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            }
        })
    };
    // Counters are process-wide (other tests run in this process too).
    assert!(value("handoff_webhooks_total", ("outcome", "200")).is_some_and(|v| v >= 1.0), "{text}");
    assert!(value("handoff_node_runs_total", ("plugin", "notify")).is_some_and(|v| v >= 1.0), "{text}");
    assert!(value("handoff_provider_calls_total", ("provider", "slack")).is_some_and(|v| v >= 1.0), "{text}");
    // The leads gauge is this server's ledger at scrape time.
    assert_eq!(value("handoff_leads", ("state", "notified")), Some(1.0), "{text}");
    assert!(scrape.samples.iter().any(|s| s.metric == "handoff_node_run_seconds_count"), "histograms too");
}

/// Provider API calls one standard lead costs, by provider and endpoint
/// (the emulators' request log after the server's warm-up).
fn calls_since(running: &Running, from: usize) -> Vec<String> {
    running.emulators.state.world().requests[from..]
        .iter()
        .map(|r| format!("{} {} {}", r.provider, r.method, r.path))
        .collect()
}

#[tokio::test]
async fn a_standard_lead_costs_at_most_six_provider_calls() {
    let running = start_handoff().await;
    // The summary is ready when the owner is known: the model's call runs
    // beside the Composite lookup and the lead's creation, which Salesforce
    // answers 300 ms later here, so a loaded machine cannot reorder them. A
    // summary that comes after the DM adds a `chat.update` (the test above).
    running.emulators.state.world().faults.add(handoff_emulators::Fault {
        id: 0,
        provider: "salesforce".into(),
        endpoint: Some("/sobjects/Lead".into()),
        method: Some("POST".into()),
        kind: handoff_emulators::FaultKind::Latency { ms: 300 },
        rate: 1.0,
        times: None,
    });
    // New leads (no match in Salesforce, not high priority) until one goes
    // to a rep who already had one: a running server knows that rep's
    // Slack user id, as it knows every active rep's after their first lead.
    let mut seen = std::collections::HashSet::new();
    let mut calls = Vec::new();
    let mut measured = 0;
    for n in 0..10 {
        let contact = create_contact(&running, &format!("calls{n}@calls{n}.example"), "United States", "NY").await;
        let before = running.emulators.state.world().requests.len();
        deliver(&running, json!([mql_event(300 + n, contact)])).await;
        let to = running.emulators.state.world().slack.messages.last().and_then(|m| m.recipient.clone());
        let to = to.expect("the lead's DM was the last message");
        if !seen.insert(to) {
            calls = calls_since(&running, before);
            measured = contact;
            break;
        }
    }
    assert!(!calls.is_empty(), "some rep got a second lead");
    // The model's call runs beside the Salesforce ones: compare as sets.
    let mut api: Vec<&str> = calls.iter().map(String::as_str).filter(|c| !c.starts_with("smtp")).collect();
    api.sort_unstable();
    let fetch = format!("hubspot GET /crm/v3/objects/contacts/{measured}");
    assert_eq!(
        api,
        [
            "anthropic POST /v1/messages",
            &fetch,
            "salesforce POST /services/data/v59.0/composite",
            "salesforce POST /services/data/v59.0/sobjects/Lead",
            "salesforce POST /services/data/v59.0/sobjects/Task",
            "slack POST /chat.postMessage",
        ],
        "six API calls; then the backup email: {calls:#?}"
    );
    assert_eq!(calls.iter().filter(|c| c.starts_with("smtp")).count(), 1, "one email");
}
