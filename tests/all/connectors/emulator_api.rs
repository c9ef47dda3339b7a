//! The sandbox over HTTP as a test or a person drives it, and connectors
//! wired to it through configuration.

use handoff::capabilities::Capabilities;
use handoff::record::ExecutionStatus;
use handoff_tests::{TestHost, emulator_connectors, emulators, pipeline_json};
use serde_json::{Value, json};

#[tokio::test]
async fn faults_are_injected_listed_and_cleared_over_http() {
    let sb = emulators().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", sb.http);
    let added = http
        .post(format!("{base}/_sandbox/faults"))
        .json(&json!({"provider": "hubspot", "endpoint": "/contacts/", "kind": {"type": "status", "status": 503}, "times": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 201);
    let contact = format!("{base}/hubspot/crm/v3/objects/contacts/1001");
    assert_eq!(http.get(&contact).bearer_auth("sandbox").send().await.unwrap().status(), 503);
    assert_eq!(http.get(&contact).bearer_auth("sandbox").send().await.unwrap().status(), 200, "times: 1 expired");

    http.post(format!("{base}/_sandbox/faults"))
        .json(&json!({"provider": "*", "kind": {"type": "latency", "ms": 1}}))
        .send()
        .await
        .unwrap();
    let listed: Value = http.get(format!("{base}/_sandbox/faults")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    http.delete(format!("{base}/_sandbox/faults")).send().await.unwrap();
    let listed: Value = http.get(format!("{base}/_sandbox/faults")).send().await.unwrap().json().await.unwrap();
    assert!(listed.as_array().unwrap().is_empty());

    let bad = http
        .post(format!("{base}/_sandbox/faults"))
        .json(&json!({"provider": "ftp", "kind": {"type": "hang"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn a_test_adds_a_contact_then_acts_as_a_rep() {
    let sb = emulators().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", sb.http);
    let created = http
        .post(format!("{base}/hubspot/crm/v3/objects/contacts"))
        .bearer_auth("sandbox")
        .json(&json!({"properties": {"email": "new.mql@acme-rockets.com", "lastname": "Rocket", "lifecyclestage": "marketingqualifiedlead"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let inspected: Value =
        http.get(format!("{base}/_sandbox/hubspot/contacts/{id}")).send().await.unwrap().json().await.unwrap();
    assert_eq!(inspected["properties"]["email"], "new.mql@acme-rockets.com");
    let duplicate = http
        .post(format!("{base}/hubspot/crm/v3/objects/contacts"))
        .bearer_auth("sandbox")
        .json(&json!({"properties": {"email": "new.mql@acme-rockets.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(duplicate.status(), 409);

    let changed = http
        .patch(format!("{base}/_sandbox/salesforce/Lead/00Q000000000001AAA"))
        .json(&json!({"Status": "Closed - Not Converted"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 204);
    let leads: Value = http.get(format!("{base}/_sandbox/salesforce/Lead")).send().await.unwrap().json().await.unwrap();
    assert_eq!(leads[0]["Status"], "Closed - Not Converted");
    let refused = http
        .patch(format!("{base}/_sandbox/salesforce/Lead/00Q000000000001AAA"))
        .json(&json!({"Status": "Maybe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn configuration_wires_every_connector_to_the_sandbox() {
    let sb = emulators().await;
    let host = TestHost::new().await;
    let capabilities = emulator_connectors(&sb).connect(Capabilities::none()).unwrap();
    assert!(capabilities.marketing.is_some() && capabilities.crm.is_some() && capabilities.chat.is_some());
    assert!(capabilities.email.is_some() && capabilities.llm.is_some());
    // A plugin's capability call now reaches the Salesforce emulator.
    let pipeline = pipeline_json(
        r#"[{"id": "lookup", "plugin": "sneaky", "capabilities": ["crm:read"]}]"#,
        r#"{"trigger": {"main": ["lookup"]}}"#,
    );
    let record = host.execute(&pipeline, json!({"email": "peter.gibbons@initech.com"}), capabilities).await;
    assert_eq!(record.status, ExecutionStatus::Completed);
    assert_eq!(record.runs[0].outputs[0].item, json!({"lead_id": "00Q000000000001AAA", "owner": "005000000000009AAA"}));
}
