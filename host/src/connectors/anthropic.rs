//! The Anthropic Messages API behind `llm`.

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError, retry_after, transport_error};
use super::secret::Secret;
use crate::capabilities::{CapabilityError, CompletionRequest, Llm};
use serde_json::{Value, json};

const PROVIDER: &str = "anthropic";
/// The API version header every request carries.
pub const API_VERSION: &str = "2023-06-01";

/// An Anthropic client.
pub struct Anthropic {
    http: reqwest::Client,
    base_url: String,
    api_key: Secret,
    model: String,
    policy: CallPolicy,
}

impl Anthropic {
    /// A client for `base_url` (`https://api.anthropic.com`) using `model`.
    pub fn new(http: reqwest::Client, base_url: &str, api_key: Secret, model: &str, policy: CallPolicy) -> Self {
        Anthropic {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key,
            model: model.to_string(),
            policy,
        }
    }

    /// Whether the key is accepted and the configured model is one it may
    /// use (`GET /v1/models/{model}`).
    ///
    /// # Errors
    ///
    /// `authentication_error` (`Auth`), `not_found_error` (`NotFound`), ...
    pub async fn check_model(&self) -> Result<(), ProviderError> {
        let url = format!("{}/v1/models/{}", self.base_url, self.model);
        self.policy
            .run(PROVIDER, |_| {
                let request = self
                    .http
                    .get(&url)
                    .header("x-api-key", self.api_key.expose())
                    .header("anthropic-version", API_VERSION);
                async move {
                    match request.send().await {
                        Err(e) => transport_error(PROVIDER, &e),
                        Ok(response) => classify(response).await,
                    }
                }
            })
            .await
            .map(|_| ())
    }
}

async fn classify(response: reqwest::Response) -> Attempt<Value> {
    let status = response.status();
    let after = retry_after(response.headers());
    let body: Value = response.json().await.unwrap_or_default();
    if status.is_success() {
        return Attempt::Done(body);
    }
    let error = |class| {
        ProviderError::new(
            PROVIDER,
            Some(status.as_u16()),
            body["error"]["type"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or_default(),
            class,
        )
    };
    match status.as_u16() {
        408 | 409 | 429 | 500..=599 => Attempt::Retry { error: error(ErrorClass::Transient), after },
        401 | 403 => Attempt::Fail(error(ErrorClass::Auth)),
        404 => Attempt::Fail(error(ErrorClass::NotFound)),
        _ => Attempt::Fail(error(ErrorClass::Invalid)),
    }
}

#[async_trait::async_trait]
impl Llm for Anthropic {
    async fn complete(&self, request: CompletionRequest) -> Result<String, CapabilityError> {
        let mut body = json!({
            "model": self.model,
            "max_tokens": request.max_tokens.max(1),
            "messages": [{"role": "user", "content": request.prompt}],
        });
        if let Some(system) = request.system {
            body["system"] = json!(system);
        }
        let url = format!("{}/v1/messages", self.base_url);
        let answer = self
            .policy
            .run(PROVIDER, |_| {
                let request = self
                    .http
                    .post(&url)
                    .header("x-api-key", self.api_key.expose())
                    .header("anthropic-version", API_VERSION)
                    .json(&body);
                async move {
                    match request.send().await {
                        Err(e) => transport_error(PROVIDER, &e),
                        Ok(response) => classify(response).await,
                    }
                }
            })
            .await?;
        let text: Vec<&str> = answer["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .collect();
        Ok(text.join(""))
    }
}
