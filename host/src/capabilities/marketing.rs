//! `handoff:plugin/marketing`: the marketing side (HubSpot contacts).

use super::RunContext;
use super::journal::Guard;
use super::{CapabilityError, Contact, Grant};
use crate::bindings::handoff::plugin::marketing::Host;

/// A marketing-automation system, as a connector implements it.
#[async_trait::async_trait]
pub trait Marketing: Send + Sync {
    /// A contact by id, with these properties.
    async fn get_contact(&self, id: &str, properties: &[String]) -> Result<Contact, CapabilityError>;
    /// A contact by email, with these properties.
    async fn find_contact_by_email(
        &self,
        email: &str,
        properties: &[String],
    ) -> Result<Option<Contact>, CapabilityError>;
    /// `properties` is a JSON object of strings.
    async fn update_contact(&self, id: &str, properties: &str) -> Result<Contact, CapabilityError>;
    /// Adds a contact to a static list.
    async fn add_to_list(&self, list_id: &str, contact_id: &str) -> Result<(), CapabilityError>;
}

impl Host for RunContext {
    async fn get_contact(&mut self, id: String, properties: Vec<String>) -> Result<Contact, CapabilityError> {
        let marketing = self.provider(Grant::MarketingRead, |c| &c.marketing)?;
        let answer = marketing.get_contact(&id, &properties).await;
        self.keep_read("marketing.get-contact", serde_json::json!([id, properties]), &answer);
        answer
    }

    async fn find_contact_by_email(
        &mut self,
        email: String,
        properties: Vec<String>,
    ) -> Result<Option<Contact>, CapabilityError> {
        let marketing = self.provider(Grant::MarketingRead, |c| &c.marketing)?;
        let answer = marketing.find_contact_by_email(&email, &properties).await;
        self.keep_read("marketing.find-contact-by-email", serde_json::json!([email, properties]), &answer);
        answer
    }

    async fn update_contact(&mut self, id: String, properties: String) -> Result<Contact, CapabilityError> {
        super::state::require_json(&properties, "properties")?;
        let marketing = self.provider(Grant::MarketingWrite, |c| &c.marketing)?;
        self.effect("marketing.update-contact", Guard::Idempotent, |_| async move {
            marketing.update_contact(&id, &properties).await
        })
        .await
    }

    async fn add_to_list(&mut self, list_id: String, contact_id: String) -> Result<(), CapabilityError> {
        let marketing = self.provider(Grant::MarketingWrite, |c| &c.marketing)?;
        self.effect("marketing.add-to-list", Guard::Idempotent, |_| async move {
            marketing.add_to_list(&list_id, &contact_id).await
        })
        .await
    }
}
