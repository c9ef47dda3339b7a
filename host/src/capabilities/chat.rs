//! `handoff:plugin/chat`: team chat (Slack).

use super::RunContext;
use super::journal::Guard;
use super::{CapabilityError, Grant, MessageRef};
use crate::bindings::handoff::plugin::chat::Host;

/// A chat service, as a connector implements it. `blocks` is a Block Kit
/// array as JSON.
#[async_trait::async_trait]
pub trait Chat: Send + Sync {
    /// Sends a direct message to the person with this email. `key`, the
    /// effect's journal key, goes with the message (Slack's message
    /// metadata) so that [`Chat::find_sent`] knows it again after an edit.
    async fn send_dm(
        &self,
        email: &str,
        text: &str,
        blocks: Option<&str>,
        key: Option<&str>,
    ) -> Result<MessageRef, CapabilityError>;
    /// Posts to a channel (id or name), with `key` as for [`Chat::send_dm`].
    async fn post(
        &self,
        channel: &str,
        text: &str,
        blocks: Option<&str>,
        key: Option<&str>,
    ) -> Result<MessageRef, CapabilityError>;
    /// Replaces a message posted earlier.
    async fn update(&self, message: &MessageRef, text: &str, blocks: Option<&str>) -> Result<(), CapabilityError>;
    /// A message sent since `since_ms` to `to` (an email address for a DM,
    /// or a channel id) that carries `key`, or else has exactly this text:
    /// how a rerun after a crash learns that its first attempt was
    /// delivered (the key still matches after the message was updated in
    /// place). `None` when there is none, or when the service cannot tell.
    async fn find_sent(
        &self,
        to: &str,
        text: &str,
        key: Option<&str>,
        since_ms: i64,
    ) -> Result<Option<MessageRef>, CapabilityError>;
    /// Opens a modal (a view, JSON) for the person whose interaction gave
    /// `trigger_id`.
    async fn open_view(&self, trigger_id: &str, view: &str) -> Result<(), CapabilityError>;
}

/// Sends unless an earlier attempt whose outcome is unknown already did.
async fn send_once<F: std::future::Future<Output = Result<MessageRef, CapabilityError>>>(
    chat: &dyn Chat,
    to: &str,
    text: &str,
    key: Option<&str>,
    earlier: Option<i64>,
    send: F,
) -> Result<MessageRef, CapabilityError> {
    if let Some(since) = earlier
        && let Some(sent) = chat.find_sent(to, text, key, since).await?
    {
        tracing::info!(to, ts = %sent.ts, "the earlier attempt was delivered; not sending again");
        return Ok(sent);
    }
    send.await
}

impl Host for RunContext {
    async fn send_dm(
        &mut self,
        email: String,
        text: String,
        blocks: Option<String>,
    ) -> Result<MessageRef, CapabilityError> {
        check_blocks(blocks.as_deref())?;
        let chat = self.provider(Grant::ChatWrite, |c| &c.chat)?;
        self.effect("chat.send-dm", Guard::Lookup, |attempt| async move {
            let key = attempt.key.as_deref();
            let send = chat.send_dm(&email, &text, blocks.as_deref(), key);
            send_once(&*chat, &email, &text, key, attempt.earlier, send).await
        })
        .await
    }

    async fn post(
        &mut self,
        channel: String,
        text: String,
        blocks: Option<String>,
    ) -> Result<MessageRef, CapabilityError> {
        check_blocks(blocks.as_deref())?;
        let chat = self.provider(Grant::ChatWrite, |c| &c.chat)?;
        self.effect("chat.post", Guard::Lookup, |attempt| async move {
            let key = attempt.key.as_deref();
            let send = chat.post(&channel, &text, blocks.as_deref(), key);
            send_once(&*chat, &channel, &text, key, attempt.earlier, send).await
        })
        .await
    }

    async fn update(
        &mut self,
        message: MessageRef,
        text: String,
        blocks: Option<String>,
    ) -> Result<(), CapabilityError> {
        check_blocks(blocks.as_deref())?;
        let chat = self.provider(Grant::ChatWrite, |c| &c.chat)?;
        self.effect("chat.update", Guard::Idempotent, |_| async move {
            chat.update(&message, &text, blocks.as_deref()).await
        })
        .await
    }

    async fn open_view(&mut self, trigger_id: String, view: String) -> Result<(), CapabilityError> {
        match serde_json::from_str::<serde_json::Value>(&view) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Err(CapabilityError::Invalid("a view must be a JSON object (Block Kit view)".into())),
            Err(e) => return Err(CapabilityError::Invalid(format!("the view is not valid JSON: {e}"))),
        }
        let chat = self.provider(Grant::ChatWrite, |c| &c.chat)?;
        // A trigger id opens one modal and expires in seconds: a replay
        // returns the recorded outcome rather than trying again.
        self.effect("chat.open-view", Guard::Idempotent, |_| async move { chat.open_view(&trigger_id, &view).await })
            .await
    }
}

/// Blocks must be a JSON array; catching it here names the mistake better
/// than the provider's `invalid_blocks`.
fn check_blocks(blocks: Option<&str>) -> Result<(), CapabilityError> {
    let Some(blocks) = blocks else { return Ok(()) };
    // Checked, not built into a tree nobody reads here.
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(blocks) {
        return Err(CapabilityError::Invalid(format!("blocks are not valid JSON: {e}")));
    }
    if !blocks.trim_start().starts_with('[') {
        return Err(CapabilityError::Invalid("blocks must be a JSON array of Block Kit blocks".into()));
    }
    Ok(())
}
