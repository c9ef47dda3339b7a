use handoff::capabilities::{CapabilityError, Chat};
use handoff::connectors::Secret;
use handoff::connectors::policy::http_client;
use handoff::connectors::slack::Slack;
use handoff_emulators::{Emulators, Fault, FaultKind};
use handoff_tests::{emulators, fast_policy, statuses};
use serde_json::json;

fn client(sandbox: &Emulators, token: &str) -> Slack {
    Slack::new(http_client(), &format!("http://{}/slack/api", sandbox.http), Secret::new(token), fast_policy())
}

#[tokio::test]
async fn a_dm_reaches_the_person_with_that_email() {
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    let blocks = json!([{"type": "section", "text": {"type": "mrkdwn", "text": "*New MQL*"}},
        {"type": "actions", "elements": [{"type": "button", "text": {"type": "plain_text", "text": "Accept"}, "action_id": "accept", "value": "1", "style": "primary"}]}]);
    let sent = slack
        .send_dm("lena.fischer@handoff-demo.com", "New MQL: Greta Holm", Some(&blocks.to_string()), None)
        .await
        .unwrap();
    assert!(sent.channel.starts_with('D'));
    let again = slack.send_dm("LENA.FISCHER@handoff-demo.com", "Second", None, None).await.unwrap();
    assert_eq!(again.channel, sent.channel, "the same DM channel");

    let world = sb.state.world();
    let message = &world.slack.messages[0];
    assert_eq!(message.recipient.as_deref(), Some("lena.fischer@handoff-demo.com"));
    assert_eq!(message.blocks.as_ref(), Some(&blocks));
    let lookups = world.requests.iter().filter(|r| r.path.contains("lookupByEmail")).count();
    assert_eq!(lookups, 1, "the user id is cached");
}

#[tokio::test]
async fn posts_to_a_channel_and_updates_the_message() {
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    let posted = slack.post("#sales-priority", "Enterprise MQL", None, None).await.unwrap();
    assert_eq!(posted.channel, "C0PRIORITY1");
    slack.update(&posted, "Enterprise MQL (accepted by Lena)", None).await.unwrap();
    let world = sb.state.world();
    assert_eq!(world.slack.messages[0].text, "Enterprise MQL (accepted by Lena)");
    assert_eq!(world.slack.messages[0].edits, 1);
}

#[tokio::test]
async fn slack_errors_arrive_as_http_200_ok_false_and_are_classified() {
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    let error = slack.send_dm("nobody@nowhere.com", "x", None, None).await.unwrap_err();
    assert!(matches!(&error, CapabilityError::NotFound(m) if m.contains("users_not_found")), "{error:?}");
    let error = slack.post("#no-such-channel", "x", None, None).await.unwrap_err();
    assert!(matches!(&error, CapabilityError::NotFound(m) if m.contains("channel_not_found")));
    let error = slack.post("#sales-priority", "x", Some(r#"[{"type": "section"}]"#), None).await.unwrap_err();
    assert!(matches!(&error, CapabilityError::Invalid(m) if m.contains("invalid_blocks")), "{error:?}");
    let error = client(&sb, "xoxb-wrong").post("#sales-priority", "x", None, None).await.unwrap_err();
    assert!(matches!(&error, CapabilityError::Unavailable(m) if m.contains("invalid_auth")), "{error:?}");
    assert!(statuses(&sb, "slack").iter().all(|s| *s == 200), "none of these are HTTP errors");
    assert_eq!(statuses(&sb, "slack").len(), 4, "and none was retried");
}

#[tokio::test]
async fn a_rate_limit_waits_for_retry_after() {
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "slack".into(),
        endpoint: Some("chat.postMessage".into()),
        method: None,
        kind: FaultKind::Status { status: 429, retry_after: Some(1) },
        rate: 1.0,
        times: Some(1),
    });
    let started = std::time::Instant::now();
    slack.post("#sales-priority", "after the limit", None, None).await.unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After: 1 was honoured");
    assert_eq!(statuses(&sb, "slack"), [429, 200]);
}

#[tokio::test]
async fn the_emulator_limits_each_channel() {
    let settings = handoff_emulators::Settings { slack_channel_burst: 2, ..Default::default() };
    let sb = handoff_tests::emulators_with(settings).await;
    let http = reqwest::Client::new();
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = http
            .post(format!("http://{}/slack/api/chat.postMessage", sb.http))
            .bearer_auth("sandbox")
            .json(&json!({"channel": "C0PRIORITY1", "text": "x"}))
            .send()
            .await
            .unwrap();
        codes.push((r.status().as_u16(), r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string())));
    }
    assert_eq!(codes, [(200, None), (200, None), (429, Some("1".into()))]);
}

#[tokio::test]
async fn a_sent_message_is_found_by_its_text_for_a_dm_or_a_channel_by_name() {
    // How a rerun after a crash learns that its first attempt was delivered.
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    let since = handoff_emulators::Clock::now_ms(&*sb.state.clock);
    let dm = slack.send_dm("lena.fischer@handoff-demo.com", "New MQL: Greta & co <3", None, None).await.unwrap();
    let post = slack.post("#sales-priority", "Priority MQL: Greta Holm", None, None).await.unwrap();

    let found = slack.find_sent("lena.fischer@handoff-demo.com", "New MQL: Greta & co <3", None, since).await.unwrap();
    assert_eq!(found.map(|m| m.ts), Some(dm.ts));
    let found = slack.find_sent("#sales-priority", "Priority MQL: Greta Holm", None, since).await.unwrap();
    assert_eq!(found.map(|m| (m.channel, m.ts)), Some((post.channel.clone(), post.ts)));
    assert!(slack.find_sent("#sales-priority", "never sent", None, since).await.unwrap().is_none());
    assert!(slack.find_sent("#no-such-channel", "Priority MQL: Greta Holm", None, since).await.unwrap().is_none());
    let later = since + 3_600_000;
    assert!(
        slack.find_sent("#sales-priority", "Priority MQL: Greta Holm", None, later).await.unwrap().is_none(),
        "too old"
    );
}

#[tokio::test]
async fn a_message_sent_with_its_effect_key_is_found_by_it_after_an_update_in_place() {
    // A DM updated with the model's summary no longer has the text a rerun
    // would send: the key in its metadata still finds it.
    let sb = emulators().await;
    let slack = client(&sb, "sandbox");
    let since = handoff_emulators::Clock::now_ms(&*sb.state.clock);
    let key = "mql-handoff:hubspot:7/notify/0:chat.send-dm";
    let dm =
        slack.send_dm("lena.fischer@handoff-demo.com", "New MQL: Greta (template)", None, Some(key)).await.unwrap();
    slack.update(&dm, "New MQL: Greta (the model's summary)", None).await.unwrap();
    let found = slack.find_sent("lena.fischer@handoff-demo.com", "New MQL: Greta (template)", Some(key), since).await;
    assert_eq!(found.unwrap().map(|m| m.ts), Some(dm.ts.clone()), "found by its key");
    let other = slack
        .find_sent("lena.fischer@handoff-demo.com", "New MQL: Greta (template)", Some("another:key"), since)
        .await
        .unwrap();
    assert!(other.is_none(), "another effect's message, with other text, is not this one");
}
