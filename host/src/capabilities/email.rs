//! `handoff:plugin/email`: outbound email.

use super::{CapabilityError, EmailMessage, Grant};
use crate::runtime::RunState;
use crate::runtime::bindings::handoff::plugin::email::Host;

/// An email transport (SMTP or an HTTP email API).
#[async_trait::async_trait]
pub trait Email: Send + Sync {
    async fn send(&self, message: EmailMessage) -> Result<(), CapabilityError>;
}

impl Host for RunState {
    async fn send(&mut self, message: EmailMessage) -> Result<(), CapabilityError> {
        if message.to.is_empty() {
            return Err(CapabilityError::Invalid("an email needs at least one recipient".into()));
        }
        let email = self.provider(Grant::EmailSend, |c| &c.email)?;
        self.effect("email.send", || async move { email.send(message).await }).await
    }
}
