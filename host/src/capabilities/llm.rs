//! `handoff:plugin/llm`: a language model for summaries.

use super::RunContext;
use super::{CapabilityError, CompletionRequest, Grant};
use crate::bindings::handoff::plugin::llm::Host;
use std::time::Duration;

/// A language model, as a connector implements it.
#[async_trait::async_trait]
pub trait Llm: Send + Sync {
    /// The model's reply to `request`.
    async fn complete(&self, request: CompletionRequest) -> Result<String, CapabilityError>;
}

impl Host for RunContext {
    async fn complete(&mut self, request: CompletionRequest) -> Result<String, CapabilityError> {
        let llm = self.provider(Grant::LlmComplete, |c| &c.llm)?;
        // The plugin's time budget is enforced here, so a slow model can
        // never hold the node past what the plugin asked for.
        let budget = Duration::from_millis(u64::from(request.timeout_ms.max(1)));
        // The time budget is not part of the question.
        let args = serde_json::json!([request.system, request.prompt, request.max_tokens]);
        let answer = match tokio::time::timeout(budget, llm.complete(request)).await {
            Ok(result) => result,
            Err(_) => Err(CapabilityError::Unavailable(format!("no reply within {} ms", budget.as_millis()))),
        };
        self.keep_read("llm.complete", args, &answer);
        answer
    }
}
