//! `handoff:plugin/crm`: the sales side (Salesforce).

use super::RunContext;
use super::journal::Guard;
use super::{
    Account, Activity, CapabilityError, CrmContact, CustomNotification, Grant, Lead, Opportunity, Owner, Task,
};
use crate::bindings::handoff::plugin::crm::Host;
pub use crate::bindings::handoff::plugin::crm::{CrmMatches, LeadChange};
use crate::bindings::handoff::plugin::types::Timestamp;
use serde_json::json;

/// A sales CRM, as a connector implements it. Errors keep the provider's
/// code and message.
#[async_trait::async_trait]
pub trait Crm: Send + Sync {
    /// Leads in `status` changed after `since`, oldest change first, at
    /// most `limit`, each with `fields` in its `extra`.
    async fn changed_leads(
        &self,
        status: &str,
        since: Timestamp,
        fields: &[String],
        limit: u32,
    ) -> Result<Vec<LeadChange>, CapabilityError>;
    /// An unconverted lead with this email.
    async fn find_lead_by_email(&self, email: &str) -> Result<Option<Lead>, CapabilityError>;
    /// A contact with this email.
    async fn find_contact_by_email(&self, email: &str) -> Result<Option<CrmContact>, CapabilityError>;
    /// Accounts whose web domain is `domain`.
    async fn find_accounts_by_domain(&self, domain: &str) -> Result<Vec<Account>, CapabilityError>;
    /// Open opportunities on accounts with web domain `domain`.
    async fn find_open_opportunities_by_domain(&self, domain: &str) -> Result<Vec<Opportunity>, CapabilityError>;
    /// What the CRM holds for `email` and (when given) `domain`, in as few
    /// round trips as the provider allows; by default the four lookups at
    /// once.
    async fn find_matches(&self, email: &str, domain: Option<&str>) -> Result<CrmMatches, CapabilityError> {
        let (lead, contact) = tokio::try_join!(self.find_lead_by_email(email), self.find_contact_by_email(email))?;
        let (accounts, opportunities) = match domain {
            Some(domain) => {
                tokio::try_join!(self.find_accounts_by_domain(domain), self.find_open_opportunities_by_domain(domain))?
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(CrmMatches { lead, contact, accounts, opportunities })
    }
    /// A user or queue by id.
    async fn get_owner(&self, id: &str) -> Result<Option<Owner>, CapabilityError>;
    /// Tasks and events logged on a lead or contact since `since`.
    async fn list_activities(&self, who_id: &str, since: Timestamp) -> Result<Vec<Activity>, CapabilityError>;
    /// Creates the lead (no id) or updates it; returns its id.
    async fn upsert_lead(&self, lead: Lead) -> Result<String, CapabilityError>;
    /// Makes `owner_id` the lead's owner.
    async fn assign_owner(&self, lead_id: &str, owner_id: &str) -> Result<(), CapabilityError>;
    /// Creates a task; returns its id.
    async fn create_task(&self, task: Task) -> Result<String, CapabilityError>;
    /// A lead by id.
    async fn get_lead(&self, id: &str) -> Result<Option<Lead>, CapabilityError>;
    /// Sets fields (a JSON object of CRM field names) on a lead.
    async fn update_lead(&self, id: &str, fields: &str) -> Result<(), CapabilityError>;
    /// Sets fields (a JSON object of CRM field names) on a task.
    async fn update_task(&self, id: &str, fields: &str) -> Result<(), CapabilityError>;
    /// Sends a custom notification (a push to the CRM's mobile app).
    async fn send_notification(&self, notification: CustomNotification) -> Result<(), CapabilityError>;
}

impl Host for RunContext {
    async fn changed_leads(
        &mut self,
        status: String,
        since: Timestamp,
        fields: Vec<String>,
        limit: u32,
    ) -> Result<Vec<LeadChange>, CapabilityError> {
        if fields.iter().any(|f| f.is_empty() || !f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')) {
            return Err(CapabilityError::Invalid("field names are letters, digits and '_'".into()));
        }
        let limit = limit.clamp(1, 2000);
        let crm = self.provider(Grant::CrmRead, |c| &c.crm)?;
        let answer = crm.changed_leads(&status, since, &fields, limit).await;
        self.keep_read("crm.changed-leads", json!([status, since, fields, limit]), &answer);
        answer
    }

    async fn find_lead_by_email(&mut self, email: String) -> Result<Option<Lead>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.find_lead_by_email(&email).await;
        self.keep_read("crm.find-lead-by-email", json!([email]), &answer);
        answer
    }

    async fn find_contact_by_email(&mut self, email: String) -> Result<Option<CrmContact>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.find_contact_by_email(&email).await;
        self.keep_read("crm.find-contact-by-email", json!([email]), &answer);
        answer
    }

    async fn find_accounts_by_domain(&mut self, domain: String) -> Result<Vec<Account>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.find_accounts_by_domain(&domain).await;
        self.keep_read("crm.find-accounts-by-domain", json!([domain]), &answer);
        answer
    }

    async fn find_open_opportunities_by_domain(&mut self, domain: String) -> Result<Vec<Opportunity>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.find_open_opportunities_by_domain(&domain).await;
        self.keep_read("crm.find-open-opportunities-by-domain", json!([domain]), &answer);
        answer
    }

    async fn find_matches(&mut self, email: String, domain: Option<String>) -> Result<CrmMatches, CapabilityError> {
        let domain = domain.filter(|d| !d.trim().is_empty());
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.find_matches(&email, domain.as_deref()).await;
        self.keep_read("crm.find-matches", json!([email, domain]), &answer);
        answer
    }

    async fn get_owner(&mut self, id: String) -> Result<Option<Owner>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.get_owner(&id).await;
        self.keep_read("crm.get-owner", json!([id]), &answer);
        answer
    }

    async fn list_activities(&mut self, who_id: String, since: Timestamp) -> Result<Vec<Activity>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.list_activities(&who_id, since).await;
        self.keep_read("crm.list-activities", json!([who_id, since]), &answer);
        answer
    }

    async fn upsert_lead(&mut self, lead: Lead) -> Result<String, CapabilityError> {
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        self.effect("crm.upsert-lead", Guard::Lookup, |attempt| async move {
            let mut lead = lead;
            // A create whose outcome is unknown may have made the lead:
            // dedupe found none with this email before, so an unconverted
            // one now is ours (or a rep's, which is better updated than
            // doubled).
            if lead.id.is_none()
                && attempt.earlier.is_some()
                && let Some(existing) = crm.find_lead_by_email(&lead.email).await?
            {
                tracing::info!(lead = ?existing.id, "the earlier create went through; updating it instead");
                lead.id = existing.id;
            }
            crm.upsert_lead(lead).await
        })
        .await
    }

    async fn assign_owner(&mut self, lead_id: String, owner_id: String) -> Result<(), CapabilityError> {
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        self.effect(
            "crm.assign-owner",
            Guard::Idempotent,
            |_| async move { crm.assign_owner(&lead_id, &owner_id).await },
        )
        .await
    }

    async fn create_task(&mut self, task: Task) -> Result<String, CapabilityError> {
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        self.effect("crm.create-task", Guard::Lookup, |attempt| async move {
            if let Some(since) = attempt.earlier {
                let done = crm.list_activities(&task.who_id, since.saturating_sub(60_000)).await?;
                if let Some(found) = done.into_iter().find(|a| a.subject == task.subject) {
                    tracing::info!(task = %found.id, "the earlier create went through; not creating it again");
                    return Ok(found.id);
                }
            }
            crm.create_task(task).await
        })
        .await
    }

    async fn get_lead(&mut self, id: String) -> Result<Option<Lead>, CapabilityError> {
        let answer = self.provider(Grant::CrmRead, |c| &c.crm)?.get_lead(&id).await;
        self.keep_read("crm.get-lead", json!([id]), &answer);
        answer
    }

    async fn update_lead(&mut self, id: String, fields: String) -> Result<(), CapabilityError> {
        require_object(&fields)?;
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        self.effect("crm.update-lead", Guard::Idempotent, |_| async move { crm.update_lead(&id, &fields).await }).await
    }

    async fn update_task(&mut self, id: String, fields: String) -> Result<(), CapabilityError> {
        require_object(&fields)?;
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        self.effect("crm.update-task", Guard::Idempotent, |_| async move { crm.update_task(&id, &fields).await }).await
    }

    async fn send_notification(&mut self, notification: CustomNotification) -> Result<(), CapabilityError> {
        if notification.recipient_ids.is_empty() {
            return Err(CapabilityError::Invalid("a custom notification needs at least one recipient".into()));
        }
        let notification = CustomNotification {
            title: at_most(notification.title, NOTIFICATION_TITLE_MAX),
            body: at_most(notification.body, NOTIFICATION_BODY_MAX),
            ..notification
        };
        let crm = self.provider(Grant::CrmWrite, |c| &c.crm)?;
        // At most once: an earlier attempt whose outcome is unknown (a crash
        // between the push and its record) may have pushed, and nothing in
        // Salesforce tells; a second buzz on the rep's phone is worse than
        // none, and the DM and the task carry the lead anyway.
        self.effect("crm.send-notification", Guard::AtMostOnce, |attempt| async move {
            if attempt.earlier.is_some() {
                tracing::warn!(target_id = %notification.target_id, "an earlier attempt at this push may have gone out; not pushing again");
                return Ok(());
            }
            crm.send_notification(notification).await
        })
        .await
    }
}

/// Longest custom notification title and body Salesforce takes.
const NOTIFICATION_TITLE_MAX: usize = 250;
const NOTIFICATION_BODY_MAX: usize = 750;

/// `text` in at most `max` characters, ending in `…` when cut.
fn at_most(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// Field updates must be a JSON object; naming the mistake here beats the
/// provider's error.
fn require_object(fields: &str) -> Result<(), CapabilityError> {
    match serde_json::from_str::<serde_json::Value>(fields) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        _ => Err(CapabilityError::Invalid("fields must be a JSON object of CRM field names".into())),
    }
}
