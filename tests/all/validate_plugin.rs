//! The standard `validate` plugin, run as a component in a pipeline.

use handoff::capabilities::Capabilities;
use handoff::record::ExecutionStatus;
use handoff_tests::TestHost;
use serde_json::{Value, json};

fn shipped_pipeline() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../pipelines/mql-intake.json")).unwrap()
}

fn sample(name: &str) -> Value {
    let path = format!("{}/../pipelines/samples/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn a_qualified_contact_leaves_on_valid_with_its_normalized_email() {
    let host = TestHost::new().await;
    let mut contact = sample("mql-valid.json");
    contact["properties"]["email"] = json!("  Priya.Raman@Northwind-Logistics.COM ");
    let record = host.execute(&shipped_pipeline(), contact, Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Completed, "{record:?}");
    let out = &record.runs[0].outputs[0];
    assert_eq!(out.port, "valid");
    assert_eq!(out.item["validation"]["email"], "priya.raman@northwind-logistics.com");
    assert_eq!(out.item["validation"]["email_domain"], "northwind-logistics.com");
    assert_eq!(out.item["validation"]["score"], 78.0);
    assert_eq!(out.item["id"], "90210", "the contact travels on");
}

#[tokio::test]
async fn an_unqualified_contact_leaves_on_invalid_with_every_reason() {
    let host = TestHost::new().await;
    let record = host.execute(&shipped_pipeline(), sample("mql-invalid.json"), Capabilities::none()).await;
    let out = &record.runs[0].outputs[0];
    assert_eq!(out.port, "invalid");
    let codes: Vec<&str> =
        out.item["validation"]["reasons"].as_array().unwrap().iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["not_mql", "missing_field", "missing_field", "free_mail_domain", "score_below_threshold"]);
}

#[tokio::test]
async fn the_pipelines_own_disposable_list_applies() {
    let host = TestHost::new().await;
    let mut contact = sample("mql-valid.json");
    contact["properties"]["email"] = json!("x@mail.example-burner.io");
    let record = host.execute(&shipped_pipeline(), contact, Capabilities::none()).await;
    let out = &record.runs[0].outputs[0];
    assert_eq!(out.port, "invalid");
    assert_eq!(out.item["validation"]["reasons"][0]["code"], "disposable_email_domain");
}

#[tokio::test]
async fn an_item_that_is_not_a_contact_is_invalid_input() {
    let host = TestHost::new().await;
    let record = host.execute(&shipped_pipeline(), json!({"email": "a@b.co"}), Capabilities::none()).await;
    assert_eq!(record.status, ExecutionStatus::Failed);
    let error = record.runs[0].error.as_ref().unwrap();
    assert_eq!(error.kind, "invalid-input");
    assert!(error.message.contains("no `properties` object"), "{}", error.message);
}
