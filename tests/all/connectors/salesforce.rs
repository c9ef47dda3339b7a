use handoff::capabilities::{CapabilityError, Crm, Lead, OwnerKind, Task};
use handoff::connectors::policy::http_client;
use handoff::connectors::salesforce::Salesforce;
use handoff::connectors::{SalesforceAuth, Secret};
use handoff_emulators::{Emulators, Fault, FaultKind, Settings};
use handoff_tests::{emulators, emulators_with, fast_policy, lead, statuses};
use serde_json::Value;

const KEY: &str = include_str!("../../fixtures/salesforce-jwt-test-key.pem");
const PUBLIC_KEY: &str = include_str!("../../fixtures/salesforce-jwt-test-key.pub.pem");

fn client_with(sandbox: &Emulators, auth: SalesforceAuth) -> Salesforce {
    Salesforce::new(http_client(), &format!("http://{}/salesforce", sandbox.http), "v59.0", auth, fast_policy())
}

fn client(sandbox: &Emulators) -> Salesforce {
    client_with(
        sandbox,
        SalesforceAuth::ClientCredentials {
            client_id: "handoff".into(),
            client_secret: Secret::new(handoff_emulators::SECRET),
        },
    )
}

fn records(sandbox: &Emulators, object: &str) -> Vec<serde_json::Map<String, Value>> {
    sandbox.state.world().salesforce.objects[object].clone()
}

fn new_lead(email: &str, company: &str) -> Lead {
    Lead { id: None, company: company.into(), owner_id: Some("005000000000008AAA".into()), ..lead("", email, "") }
}

#[tokio::test]
async fn finds_leads_contacts_accounts_and_open_opportunities() {
    let sb = emulators().await;
    let sf = client(&sb);
    let found = sf.find_lead_by_email("Peter.Gibbons@initech.com").await.unwrap().expect("seeded lead");
    assert_eq!(found.id.as_deref(), Some("00Q000000000001AAA"));
    assert_eq!(found.owner_id.as_deref(), Some("005000000000009AAA"));
    assert_eq!(
        sf.find_lead_by_email("yuki.tanaka@sakura-robotics.jp").await.unwrap(),
        None,
        "converted leads do not count"
    );

    let contact = sf.find_contact_by_email("hank.scorpio@globex.com").await.unwrap().unwrap();
    assert_eq!(contact.account_id.as_deref(), Some("001000000000001AAA"));

    let accounts = sf.find_accounts_by_domain("umbrellahealth.de").await.unwrap();
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].domain.as_deref(), Some("umbrellahealth.de"));
    assert_eq!(accounts[0].owner_id.as_deref(), Some("005000000000005AAA"));
    assert!(
        sf.find_accounts_by_domain("health.de").await.unwrap().is_empty(),
        "a domain is matched whole, not as a substring"
    );

    let opportunities = sf.find_open_opportunities_by_domain("initech.com").await.unwrap();
    assert_eq!(opportunities.len(), 1);
    assert_eq!(opportunities[0].owner_id, "005000000000009AAA");
    assert!(sf.find_open_opportunities_by_domain("globex.com").await.unwrap().is_empty(), "closed ones do not count");
}

#[tokio::test]
async fn looks_up_users_and_queues() {
    let sb = emulators().await;
    let sf = client(&sb);
    let user = sf.get_owner("005000000000005AAA").await.unwrap().unwrap();
    assert_eq!((user.name.as_str(), user.kind), ("Lena Fischer", OwnerKind::User));
    let queue = sf.get_owner("00G000000000001AAA").await.unwrap().unwrap();
    assert_eq!(queue.kind, OwnerKind::Queue);
    assert_eq!(sf.get_owner("005999999999999AAA").await.unwrap(), None);
}

#[tokio::test]
async fn creates_updates_and_assigns_a_lead_and_its_task() {
    let sb = emulators().await;
    let sf = client(&sb);
    let id = sf.upsert_lead(new_lead("new.person@brightline-analytics.com", "Brightline Analytics")).await.unwrap();
    assert!(id.starts_with("00Q"));
    let mut updated = new_lead("new.person@brightline-analytics.com", "Brightline Analytics Inc");
    updated.id = Some(id.clone());
    assert_eq!(sf.upsert_lead(updated).await.unwrap(), id);
    sf.assign_owner(&id, "005000000000009AAA").await.unwrap();
    let task_id = sf
        .create_task(Task {
            who_id: id.clone(),
            owner_id: "005000000000009AAA".into(),
            subject: "Follow up on MQL".into(),
            description: Some("Pricing page x3".into()),
            due_date: "2026-11-26".into(),
            priority: "High".into(),
        })
        .await
        .unwrap();

    let leads = records(&sb, "Lead");
    let stored = leads.iter().find(|l| l["Id"] == id.as_str()).unwrap();
    assert_eq!(stored["Company"], "Brightline Analytics Inc");
    assert_eq!(stored["OwnerId"], "005000000000009AAA");
    assert_eq!(stored["Status"], "Open - Not Contacted");
    let tasks = records(&sb, "Task");
    let task = tasks.iter().find(|t| t["Id"] == task_id.as_str()).unwrap();
    assert_eq!(
        (task["WhoId"].as_str(), task["ActivityDate"].as_str(), task["Priority"].as_str()),
        (Some(id.as_str()), Some("2026-11-26"), Some("High"))
    );
    assert_eq!(task["Status"], "Not Started");
}

#[tokio::test]
async fn salesforce_validation_errors_keep_code_and_are_not_retried() {
    let sb = emulators().await;
    let sf = client(&sb);
    let error = sf.upsert_lead(new_lead("x@y.com", "")).await.unwrap_err();
    assert_eq!(
        error,
        CapabilityError::Invalid(
            "salesforce REQUIRED_FIELD_MISSING (HTTP 400): Required fields are missing: [Company]".into()
        )
    );
    let inactive = Lead { owner_id: Some("005000000000013AAA".into()), ..new_lead("z@y.com", "Y") };
    let error = sf.upsert_lead(inactive).await.unwrap_err();
    assert!(matches!(&error, CapabilityError::Invalid(m) if m.contains("INACTIVE_OWNER_OR_USER")), "{error:?}");
    let error = sf.create_task(Task {
        who_id: "00Q000000000001AAA".into(),
        owner_id: "005000000000009AAA".into(),
        subject: "x".into(),
        description: None,
        due_date: "2026-11-26".into(),
        priority: "Urgent".into(),
    });
    assert!(
        matches!(error.await, Err(CapabilityError::Invalid(m)) if m.contains("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"))
    );
    assert_eq!(statuses(&sb, "salesforce"), [200, 400, 400, 400], "token, then three refused writes, none retried");
    let malformed = sf.query("SELECT FROM Lead").await.unwrap_err();
    assert_eq!(malformed.code, "MALFORMED_QUERY");
}

#[tokio::test]
async fn lists_activities_a_rep_logged_since_a_time() {
    let sb = emulators().await;
    let sf = client(&sb);
    let before = handoff::capabilities::Clock::now_ms(&handoff::capabilities::SystemClock);
    let http = reqwest::Client::new();
    for (kind, subject) in [("task", "Called, left voicemail"), ("event", "Discovery meeting")] {
        let response = http
            .post(format!("http://{}/_sandbox/salesforce/activities", sb.http))
            .json(&serde_json::json!({"who_id": "00Q000000000001AAA", "kind": kind, "subject": subject, "owner_id": "005000000000009AAA"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let activities = sf.list_activities("00Q000000000001AAA", before - 1000).await.unwrap();
    let subjects: Vec<&str> = activities.iter().map(|a| a.subject.as_str()).collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.contains(&"Called, left voicemail") && subjects.contains(&"Discovery meeting"));
    assert!(
        sf.list_activities("00Q000000000001AAA", before + 60_000).await.unwrap().is_empty(),
        "none after the cutoff"
    );
    let lead = records(&sb, "Lead").into_iter().find(|l| l["Id"] == "00Q000000000001AAA").unwrap();
    assert!(lead["LastActivityDate"].is_string(), "an activity touches the lead");
}

#[tokio::test]
async fn follows_next_records_url_to_the_last_page() {
    let sb = emulators_with(Settings { salesforce_batch_size: 4, ..Default::default() }).await;
    let users = client(&sb).users().await.unwrap();
    assert_eq!(users.len(), 13);
    assert!(users.iter().any(|(_, name, _, active)| name == "Sam Former" && !active));
    let query_calls = sb.state.world().requests.iter().filter(|r| r.path.contains("/query")).count();
    assert_eq!(query_calls, 4, "13 users in pages of 4");
}

#[tokio::test]
async fn an_expired_session_is_refreshed_once() {
    let sb = emulators().await;
    let sf = client(&sb);
    sf.get_owner("005000000000005AAA").await.unwrap();
    sb.state.expire_salesforce_tokens();
    sf.get_owner("005000000000005AAA").await.unwrap();
    assert_eq!(statuses(&sb, "salesforce"), [200, 200, 401, 200, 200], "token, query, expired, new token, query");
}

#[tokio::test]
async fn the_request_limit_and_outages_are_retried() {
    let sb = emulators().await;
    let sf = client(&sb);
    for status in [403, 503] {
        sb.state.world().faults.add(Fault {
            id: 0,
            provider: "salesforce".into(),
            endpoint: Some("/query".into()),
            method: None,
            kind: FaultKind::Status { status, retry_after: None },
            rate: 1.0,
            times: Some(1),
        });
        sf.get_owner("005000000000005AAA").await.unwrap();
    }
    assert_eq!(statuses(&sb, "salesforce"), [200, 403, 200, 503, 200]);
    let limited = sb.state.world().requests.iter().filter(|r| r.status == 403).count();
    assert_eq!(limited, 1);
}

#[tokio::test]
async fn the_org_api_limit_answers_403_request_limit_exceeded() {
    let sb = emulators_with(Settings { salesforce_api_limit: 1, ..Default::default() }).await;
    let policy = handoff::connectors::CallPolicy { max_attempts: 2, ..fast_policy() };
    let sf = Salesforce::new(
        http_client(),
        &format!("http://{}/salesforce", sb.http),
        "v59.0",
        SalesforceAuth::ClientCredentials {
            client_id: "handoff".into(),
            client_secret: Secret::new(handoff_emulators::SECRET),
        },
        policy,
    );
    sf.get_owner("005000000000005AAA").await.unwrap();
    let error = sf.get_owner("005000000000005AAA").await.unwrap_err();
    assert!(
        matches!(&error, CapabilityError::Unavailable(m) if m.contains("REQUEST_LIMIT_EXCEEDED") && m.contains("HTTP 403")),
        "{error:?}"
    );
}

#[tokio::test]
async fn signs_in_with_a_jwt_bearer_assertion() {
    let sb = emulators_with(Settings { jwt_public_key_pem: Some(PUBLIC_KEY.into()), ..Default::default() }).await;
    let auth = |username: &str| SalesforceAuth::JwtBearer {
        client_id: "3MVG9handoff".into(),
        username: username.into(),
        private_key_pem: Secret::new(KEY),
        audience: None,
    };
    let sf = client_with(&sb, auth("vera.voss@handoff-demo.com"));
    assert!(sf.get_owner("005000000000001AAA").await.unwrap().is_some());

    let stranger = client_with(&sb, auth("nobody@handoff-demo.com"));
    let error = stranger.get_owner("005000000000001AAA").await.unwrap_err();
    assert!(matches!(&error, CapabilityError::Unavailable(m) if m.contains("invalid_grant")), "{error:?}");

    let wrong_key = client_with(
        &sb,
        SalesforceAuth::ClientCredentials { client_id: "x".into(), client_secret: Secret::new("nope") },
    );
    let error = wrong_key.get_owner("005000000000001AAA").await.unwrap_err();
    assert!(matches!(&error, CapabilityError::Unavailable(m) if m.contains("invalid_client")), "{error:?}");
}

#[tokio::test]
async fn one_composite_request_finds_what_the_four_lookups_find() {
    let sb = emulators().await;
    let sf = client(&sb);
    for (email, domain) in [
        ("peter.gibbons@initech.com", "initech.com"),
        ("hank.scorpio@globex.com", "globex.com"),
        ("someone@umbrellahealth.de", "umbrellahealth.de"),
        ("nobody@nowhere.example", "nowhere.example"),
    ] {
        let before = sb.state.api_usage();
        let matches = sf.find_matches(email, Some(domain)).await.unwrap();
        assert_eq!(sb.state.api_usage() - before, 1, "one API call for {email}");
        assert_eq!(matches.lead, sf.find_lead_by_email(email).await.unwrap(), "{email}");
        assert_eq!(matches.contact, sf.find_contact_by_email(email).await.unwrap(), "{email}");
        assert_eq!(matches.accounts, sf.find_accounts_by_domain(domain).await.unwrap(), "{domain}");
        assert_eq!(matches.opportunities, sf.find_open_opportunities_by_domain(domain).await.unwrap(), "{domain}");
    }
    let found = sf.find_matches("peter.gibbons@initech.com", Some("initech.com")).await.unwrap();
    assert!(found.lead.is_some() && found.opportunities.len() == 1, "the seeded lead and open opportunity");
    let without_domain = sf.find_matches("peter.gibbons@initech.com", None).await.unwrap();
    assert!(without_domain.accounts.is_empty() && without_domain.opportunities.is_empty());
}

#[tokio::test]
async fn a_failed_composite_subrequest_is_the_error_its_own_request_would_be() {
    let sb = emulators().await;
    let sf = client(&sb);
    let error = sf.queries(&["SELECT Id FROM Lead".into(), "SELECT Nonsense FROM Lead".into()]).await.unwrap_err();
    assert_eq!(error.code, "INVALID_FIELD", "{error}");
    assert_eq!(error.status, Some(400));
    let body = serde_json::json!({"compositeRequest": [{"method": "POST", "url": "/services/data/v59.0/sobjects/Lead", "referenceId": "x"}]});
    let answer =
        sf.request(reqwest::Method::POST, "/services/data/v59.0/composite", Some(&body)).await.unwrap().unwrap();
    assert_eq!(answer["compositeResponse"][0]["httpStatusCode"], 400, "{answer}");
}

fn push(type_name: &str, to: &str) -> handoff::capabilities::CustomNotification {
    handoff::capabilities::CustomNotification {
        type_name: type_name.into(),
        recipient_ids: vec![to.into()],
        title: "Priority MQL: Initech".into(),
        body: "Peter Gibbons at Initech: high score (90).".into(),
        target_id: "00Q000000000001AAA".into(),
    }
}

#[tokio::test]
async fn a_custom_notification_is_sent_its_type_looked_up_once() {
    let sb = emulators().await;
    let sf = client(&sb);
    sf.send_notification(push("Handoff_Priority_MQL", "005000000000009AAA")).await.unwrap();
    sf.send_notification(push("Handoff_Priority_MQL", "005000000000008AAA")).await.unwrap();
    let sent = records(&sb, handoff_emulators::SENT_NOTIFICATIONS);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0]["CustomNotifTypeId"], "0ML000000000001AAA");
    assert_eq!(sent[0]["RecipientIds"], serde_json::json!(["005000000000009AAA"]));
    assert_eq!(sent[0]["TargetId"], "00Q000000000001AAA");
    assert_eq!(sent[1]["Title"], "Priority MQL: Initech");
    let lookups = sb.state.world().requests.iter().filter(|r| r.path.contains("/query")).count();
    assert_eq!(lookups, 1, "the type's id is remembered");
}

#[tokio::test]
async fn a_custom_notification_salesforce_refuses_says_why() {
    let sb = emulators_with(Settings { salesforce_notifications_per_day: 1, ..Default::default() }).await;
    let sf = client(&sb);
    let unknown = sf.send_notification(push("No_Such_Type", "005000000000009AAA")).await.unwrap_err();
    assert!(
        matches!(&unknown, CapabilityError::Invalid(m) if m.contains("no custom notification type 'No_Such_Type'") && m.contains("Setup")),
        "{unknown:?}"
    );
    let nobody = sf.send_notification(push("Handoff_Priority_MQL", "005999999999999AAA")).await.unwrap_err();
    assert!(
        matches!(&nobody, CapabilityError::Invalid(m) if m.contains("INSUFFICIENT_ACCESS_OR_READONLY") && m.contains("005999999999999AAA")),
        "{nobody:?}"
    );
    sf.send_notification(push("Handoff_Priority_MQL", "005000000000009AAA")).await.unwrap();
    let spent = sf.send_notification(push("Handoff_Priority_MQL", "005000000000009AAA")).await.unwrap_err();
    assert!(matches!(&spent, CapabilityError::Invalid(m) if m.contains("LIMIT_EXCEEDED")), "{spent:?}");
    assert_eq!(records(&sb, handoff_emulators::SENT_NOTIFICATIONS).len(), 1);
}
