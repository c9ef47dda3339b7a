use handoff::capabilities::{CapabilityError, Marketing};
use handoff::connectors::hubspot::HubSpot;
use handoff::connectors::policy::http_client;
use handoff::connectors::{ErrorClass, Secret};
use handoff_emulators::{Emulators, Fault, FaultKind};
use handoff_tests::{emulators, fast_policy, statuses};
use serde_json::{Value, json};

fn client(sandbox: &Emulators, token: &str) -> HubSpot {
    HubSpot::new(http_client(), &format!("http://{}/hubspot", sandbox.http), Secret::new(token), fast_policy())
}

fn props(contact: &handoff::capabilities::Contact) -> Value {
    serde_json::from_str(&contact.properties).unwrap()
}

#[tokio::test]
async fn reads_a_contact_by_id_and_by_email() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    let fields = vec!["email".to_string(), "hubspotscore".to_string(), "nosuchproperty".to_string()];
    let by_id = hubspot.get_contact("1001", &fields).await.unwrap();
    assert_eq!(by_id.id, "1001");
    let p = props(&by_id);
    assert_eq!(p["email"], "priya.raman@northwind-logistics.com");
    assert_eq!(p["hubspotscore"], "78", "values are strings");
    assert_eq!(p["nosuchproperty"], Value::Null, "unset properties are null");

    let by_email =
        hubspot.find_contact_by_email("PRIYA.RAMAN@northwind-logistics.com", &fields).await.unwrap().unwrap();
    assert_eq!(by_email.id, "1001");
    assert_eq!(hubspot.find_contact_by_email("nobody@nowhere.com", &fields).await.unwrap(), None);
    assert!(matches!(hubspot.get_contact("999999", &fields).await, Err(CapabilityError::NotFound(_))));
}

#[tokio::test]
async fn moves_lifecycle_stage_back_by_clearing_it_first() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    // The emulator, like HubSpot, refuses a direct move backwards.
    let direct = reqwest::Client::new()
        .patch(format!("http://{}/hubspot/crm/v3/objects/contacts/1001", sb.http))
        .bearer_auth("sandbox")
        .json(&json!({"properties": {"lifecyclestage": "lead"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 400);
    let body: Value = direct.json().await.unwrap();
    assert_eq!(body["category"], "VALIDATION_ERROR");

    let updated =
        hubspot.update_contact("1001", r#"{"lifecyclestage": "lead", "hs_lead_status": "BAD_TIMING"}"#).await.unwrap();
    assert_eq!(props(&updated)["lifecyclestage"], "lead");
    let stored = sb.state.world().hubspot.find("1001", false).unwrap().properties.clone();
    assert_eq!(stored["lifecyclestage"], "lead");
    assert_eq!(stored["hs_lead_status"], "BAD_TIMING");
}

#[tokio::test]
async fn adds_a_contact_to_a_list() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    hubspot.add_to_list("501", "1001").await.unwrap();
    assert!(sb.state.world().hubspot.lists["501"].1.contains("1001"));
    assert!(matches!(hubspot.add_to_list("501", "424242").await, Err(CapabilityError::NotFound(_))));
    assert!(matches!(hubspot.add_to_list("999", "1001").await, Err(CapabilityError::NotFound(_))));
}

#[tokio::test]
async fn searches_with_filter_groups_sorting_and_paging() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    let request = json!({
        "filterGroups": [{"filters": [
            {"propertyName": "lifecyclestage", "operator": "EQ", "value": "marketingqualifiedlead"},
            {"propertyName": "hubspotscore", "operator": "GTE", "value": "60"}
        ]}],
        "properties": ["email", "hubspotscore"],
        "sorts": [{"propertyName": "hubspotscore", "direction": "DESCENDING"}],
        "limit": 3
    });
    let first = hubspot.search_contacts(&request).await.unwrap();
    assert_eq!(first.total, 7);
    let scores: Vec<String> =
        first.results.iter().map(|c| props(c)["hubspotscore"].as_str().unwrap().to_string()).collect();
    assert_eq!(scores, ["90", "88", "78"]);
    let mut next = request.clone();
    next["after"] = json!(first.next_after.clone().expect("more pages"));
    let second = hubspot.search_contacts(&next).await.unwrap();
    assert_eq!(second.results.len(), 3);
    assert!(second.results.iter().all(|c| !first.results.contains(c)));

    let too_many = json!({"filterGroups": (0..6).map(|_| json!({"filters": []})).collect::<Vec<_>>()});
    let error = hubspot.search_contacts(&too_many).await.unwrap_err();
    assert_eq!((error.class, error.code.as_str()), (ErrorClass::Invalid, "VALIDATION_ERROR"));
}

#[tokio::test]
async fn batch_reads_and_reports_missing_ids() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    let ids = vec!["greta.holm@umbrellahealth.de".to_string(), "ghost@nowhere.com".to_string()];
    let found = hubspot.batch_read(&ids, Some("email"), &["company".to_string()]).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(props(&found[0])["company"], "Umbrella Health");
    assert_eq!(sb.state.world().requests.last().unwrap().status, 207, "partial success is HubSpot's 207");
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_error_and_not_retried() {
    let sb = emulators().await;
    let error = client(&sb, "wrong").get_contact("1001", &[]).await.unwrap_err();
    assert!(
        matches!(&error, CapabilityError::Unavailable(m) if m.contains("INVALID_AUTHENTICATION") && m.contains("HTTP 401")),
        "{error:?}"
    );
    assert_eq!(statuses(&sb, "hubspot"), [401]);
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "hubspot".into(),
        endpoint: Some("/contacts/1001".into()),
        method: None,
        kind: FaultKind::Status { status: 429, retry_after: None },
        rate: 1.0,
        times: Some(2),
    });
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "hubspot".into(),
        endpoint: Some("/contacts/1002".into()),
        method: None,
        kind: FaultKind::Status { status: 502, retry_after: None },
        rate: 1.0,
        times: Some(1),
    });
    hubspot.get_contact("1001", &[]).await.unwrap();
    hubspot.get_contact("1002", &[]).await.unwrap();
    assert_eq!(statuses(&sb, "hubspot"), [429, 429, 200, 502, 200]);
}

#[tokio::test]
async fn the_emulators_own_rolling_limit_answers_429_with_hubspots_body() {
    let settings = handoff_emulators::Settings { hubspot_per_ten_seconds: 2, ..Default::default() };
    let sb = handoff_tests::emulators_with(settings).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/hubspot/crm/v3/objects/contacts/1001", sb.http);
    for _ in 0..2 {
        let ok = http.get(&url).bearer_auth("sandbox").send().await.unwrap();
        assert_eq!(ok.headers()["x-hubspot-ratelimit-max"], "2");
    }
    let limited = http.get(&url).bearer_auth("sandbox").send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(body["errorType"], "RATE_LIMIT");
}

#[tokio::test]
async fn validation_errors_are_not_retried() {
    let sb = emulators().await;
    let hubspot = client(&sb, "sandbox");
    let error = hubspot.update_contact("1001", r#"{"lifecyclestage": "prospectish"}"#).await.unwrap_err();
    assert!(
        matches!(&error, CapabilityError::Invalid(m) if m.contains("VALIDATION_ERROR") && m.contains("prospectish")),
        "{error:?}"
    );
    assert_eq!(statuses(&sb, "hubspot"), [200, 400], "one read of the current stage, one refused write");
}

#[tokio::test]
async fn a_hung_request_times_out_and_is_retried() {
    let sb = emulators().await;
    let policy = handoff::connectors::CallPolicy { timeout: std::time::Duration::from_millis(200), ..fast_policy() };
    let hubspot = HubSpot::new(http_client(), &format!("http://{}/hubspot", sb.http), Secret::new("sandbox"), policy);
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "hubspot".into(),
        endpoint: None,
        method: None,
        kind: FaultKind::Hang,
        rate: 1.0,
        times: Some(1),
    });
    hubspot.get_contact("1001", &[]).await.unwrap();
    assert_eq!(statuses(&sb, "hubspot"), [200], "the hung request never answered; the retry did");
}
