//! The louder path for high-priority leads: a push to the owner's
//! Salesforce mobile app (a custom notification on the lead) beside the
//! priority channel post; never twice, and a failed push costs the lead
//! nothing else.

use handoff::ledger::{Ledger, SqliteStore};
use handoff_tests::*;
use serde_json::{Map, Value, json};
use std::time::Duration;

/// A contact in `running`'s HubSpot: `employees` decides the priority
/// (1,000 and up is an enterprise account).
async fn contact(running: &Running, email: &str, employees: &str) -> u64 {
    let properties = json!({"email": email, "firstname": "Greta", "lastname": "Brandt", "company": "Kessler Maschinenbau",
        "country": "Germany", "numemployees": employees, "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "70"});
    handoff_emulators::drive::create_contact(&reqwest::Client::new(), running.emulators.http, &properties)
        .await
        .unwrap()
        .parse()
        .unwrap()
}

/// The custom notifications the Salesforce emulator sent.
fn pushes(running: &Running) -> Vec<Map<String, Value>> {
    let world = running.emulators.state.world();
    world.salesforce.objects.get(handoff_emulators::SENT_NOTIFICATIONS).cloned().unwrap_or_default()
}

fn channel_posts(running: &Running, channel: &str) -> Vec<String> {
    let world = running.emulators.state.world();
    let id = world
        .slack
        .channels
        .values()
        .find(|c| c.name.as_deref() == Some(channel.trim_start_matches('#')))
        .map(|c| c.id.clone());
    world.slack.messages.iter().filter(|m| Some(&m.channel) == id.as_ref()).map(|m| m.text.clone()).collect()
}

#[tokio::test]
async fn a_high_priority_lead_is_pushed_to_its_owner_once_and_posted_once() {
    let running = start_handoff().await;
    let id = contact(&running, "greta.brandt@kessler-maschinenbau.de", "2400").await;
    deliver(&running, json!([mql_event(2201, id)])).await;
    let lead = sf_lead(&running, "greta.brandt@kessler-maschinenbau.de");

    let pushes = pushes(&running);
    assert_eq!(pushes.len(), 1, "{pushes:#?}");
    let push = &pushes[0];
    assert_eq!(push["RecipientIds"], json!([lead["OwnerId"]]), "to the owner");
    assert_eq!(push["TargetId"], lead["Id"], "it opens the lead");
    assert_eq!(push["DeveloperName"], "Handoff_Priority_MQL");
    assert_eq!(push["Title"], "Priority MQL: Kessler Maschinenbau");
    assert!(push["Body"].as_str().unwrap().contains("enterprise account (2400 employees)"), "{push:?}");
    let posts = channel_posts(&running, "#sales-priority");
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].contains("Kessler Maschinenbau"));
}

#[tokio::test]
async fn a_normal_lead_is_not_pushed() {
    let running = start_handoff().await;
    let id = contact(&running, "greta.brandt@kessler-maschinenbau.de", "300").await;
    deliver(&running, json!([mql_event(2202, id)])).await;
    assert_eq!(lead_state(&running, &id.to_string()).await, "notified");
    assert!(pushes(&running).is_empty());
    assert!(channel_posts(&running, "#sales-priority").is_empty());
}

#[tokio::test]
async fn a_crash_between_the_push_and_its_record_pushes_no_second_time() {
    let running = start_handoff().await;
    let id = contact(&running, "greta.brandt@kessler-maschinenbau.de", "2400").await;
    deliver(&running, json!([mql_event(2203, id)])).await;
    assert_eq!(pushes(&running).len(), 1);

    // The process "died" after the push, before the execution ended: the
    // journal holds the push's intent (made durable before the push) and no
    // record, and the event is unfinished.
    running.app.server.flush().await.unwrap();
    let db = running.state_dir.path().join("handoff.db");
    let execution = "mql-handoff:hubspot:2203";
    let trace = SqliteStore::open(&db).unwrap().trace(execution).await.unwrap().unwrap();
    let push: Vec<&String> =
        trace.effects.iter().map(|(key, _)| key).filter(|key| key.ends_with("crm.send-notification")).collect();
    assert_eq!(push.len(), 1, "the push was journaled: {:?}", trace.effects);
    let ledger = rusqlite::Connection::open(&db).unwrap();
    ledger
        .execute("INSERT INTO effect_intents (key, started_at) VALUES (?1, 0)", [format!("{execution}/{}", push[0])])
        .unwrap();
    ledger.execute_batch("DELETE FROM traces; DELETE FROM effects; UPDATE events SET finished_at = NULL").unwrap();
    drop(ledger);

    let options = handoff_options(&running.emulators, running.clock.clone(), running.state_dir.path());
    let restarted = handoff::app::App::launch(options).await.unwrap();
    assert!(restarted.server.settle(Duration::from_secs(60)).await);
    let rerun = &restarted.server.finished()[0].record;
    assert!(rerun.runs.iter().any(|r| r.node == "notify" && !r.replayed), "notify ran again");
    assert_eq!(pushes(&running).len(), 1, "no second push");
    assert_eq!(lead_state(&running, &id.to_string()).await, "notified");
}

#[tokio::test]
async fn an_unknown_notification_type_is_a_clear_error_and_the_dm_still_goes() {
    let running = start_handoff().await;
    running.emulators.state.world().salesforce.objects.get_mut("CustomNotificationType").unwrap().clear();
    let id = contact(&running, "greta.brandt@kessler-maschinenbau.de", "2400").await;
    deliver(&running, json!([mql_event(2204, id)])).await;

    assert!(pushes(&running).is_empty());
    let lead = handoff::ledger::Ledger::lead(&ledger(&running), &id.to_string()).await.unwrap().unwrap();
    assert_eq!(lead.state.as_str(), "notified", "the lead is handed off");
    let owner_id = sf_lead(&running, "greta.brandt@kessler-maschinenbau.de")["OwnerId"].clone();
    let owner_email = running.emulators.state.world().salesforce.objects["User"]
        .iter()
        .find(|u| u["Id"] == owner_id)
        .map(|u| u["Email"].as_str().unwrap().to_string())
        .unwrap();
    assert_eq!(dms_to(&running, &owner_email).len(), 1, "the DM was sent");
    // In the ledger, with the lead's step: what is wrong and how to fix it.
    let step = lead.timeline.iter().rev().find(|s| s.state.as_str() == "notified").unwrap();
    let problem = step.data.as_ref().unwrap()["push_error"].as_str().unwrap().to_string();
    assert!(problem.contains("no custom notification type 'Handoff_Priority_MQL'"), "{problem}");
    assert!(problem.contains("Setup → Custom Notifications"), "{problem}");
    // RevOps is told.
    let alerts = channel_posts(&running, "#revops-alerts");
    assert!(
        alerts.iter().any(|a| a.contains("Salesforce mobile push") && a.contains("Handoff_Priority_MQL")),
        "{alerts:?}"
    );
}
