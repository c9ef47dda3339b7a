//! `handoff:plugin/email`: outbound email.

use super::RunContext;
use super::journal::Guard;
use super::{CapabilityError, EmailMessage, Grant};
use crate::bindings::handoff::plugin::email::Host;

/// An email transport (SMTP or an HTTP email API).
#[async_trait::async_trait]
pub trait Email: Send + Sync {
    /// Sends one message.
    async fn send(&self, message: EmailMessage) -> Result<(), CapabilityError>;
}

impl Host for RunContext {
    async fn send(&mut self, message: EmailMessage) -> Result<(), CapabilityError> {
        if message.to.is_empty() {
            return Err(CapabilityError::Invalid("an email needs at least one recipient".into()));
        }
        let email = self.provider(Grant::EmailSend, |c| &c.email)?;
        // SMTP has no way to ask whether a message went out: a crash between
        // the server's 250 and the journal's commit sends it again. Email is
        // the backup channel, so at-least-once there is the right side to err.
        self.effect("email.send", Guard::Idempotent, |_| async move { email.send(message).await }).await
    }
}
