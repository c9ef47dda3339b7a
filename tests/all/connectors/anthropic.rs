use handoff::capabilities::{CapabilityError, CompletionRequest, Llm};
use handoff::connectors::Secret;
use handoff::connectors::anthropic::Anthropic;
use handoff::connectors::policy::http_client;
use handoff_emulators::{Fault, FaultKind};
use handoff_tests::{emulators, fast_policy, statuses};

fn request(prompt: &str) -> CompletionRequest {
    CompletionRequest {
        system: Some("Summarize for a sales rep.".into()),
        prompt: prompt.into(),
        max_tokens: 200,
        timeout_ms: 1500,
    }
}

#[tokio::test]
async fn completes_deterministically_and_retries_overload() {
    let sb = emulators().await;
    let llm = Anthropic::new(
        http_client(),
        &format!("http://{}/anthropic", sb.http),
        Secret::new("sandbox"),
        "claude-sandbox",
        fast_policy(),
    );
    let prompt = "- company: Umbrella Health\n- pricing page views: 5";
    let first = llm.complete(request(prompt)).await.unwrap();
    assert_eq!(first, "Sandbox summary: company Umbrella Health; pricing page views 5.");
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "anthropic".into(),
        endpoint: None,
        method: None,
        kind: FaultKind::Status { status: 529, retry_after: None },
        rate: 1.0,
        times: Some(1),
    });
    assert_eq!(llm.complete(request(prompt)).await.unwrap(), first);
    assert_eq!(statuses(&sb, "anthropic"), [200, 529, 200]);
}

#[tokio::test]
async fn a_bad_key_is_an_authentication_error() {
    let sb = emulators().await;
    let llm = Anthropic::new(
        http_client(),
        &format!("http://{}/anthropic", sb.http),
        Secret::new("sk-wrong"),
        "m",
        fast_policy(),
    );
    let error = llm.complete(request("x")).await.unwrap_err();
    assert!(
        matches!(&error, CapabilityError::Unavailable(m) if m.contains("authentication_error") && m.contains("HTTP 401")),
        "{error:?}"
    );
    assert_eq!(statuses(&sb, "anthropic"), [401]);
}
