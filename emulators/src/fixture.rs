//! The seed data a sandbox starts from: a sales org in Salesforce, contacts
//! with engagement data and nurture lists in HubSpot, channels in Slack.

use super::World;
use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A sandbox fixture file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    #[serde(default)]
    /// What the fixture is, for people.
    pub description: String,
    /// Salesforce records by object type (`User`, `Lead`, `Account`, ...).
    pub salesforce: BTreeMap<String, Vec<Map<String, Value>>>,
    /// Custom fields the org has by object (`Lead`: `Rejection_Reason__c`),
    /// as `describe` shows them; standard fields are built in.
    #[serde(default)]
    pub salesforce_fields: BTreeMap<String, Vec<SeedField>>,
    /// HubSpot's contacts.
    pub hubspot: HubSpotFixture,
    /// Slack's channels and users.
    pub slack: SlackFixture,
}

/// HubSpot seed data.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotFixture {
    pub contacts: Vec<SeedContact>,
    #[serde(default)]
    pub lists: Vec<SeedList>,
    /// Contact properties beyond those the contacts carry (which exist as
    /// text): custom ones and the picklists' options.
    #[serde(default)]
    pub properties: Vec<SeedProperty>,
}

/// A HubSpot contact property.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedProperty {
    pub name: String,
    /// `string`, `number`, `datetime`, `enumeration`, ...
    #[serde(rename = "type", default = "text_type")]
    pub kind: String,
    /// An enumeration's option values.
    #[serde(default)]
    pub options: Vec<String>,
}

fn text_type() -> String {
    "string".into()
}

/// A Salesforce custom field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedField {
    pub name: String,
    /// `string`, `picklist`, `textarea`, ...
    #[serde(rename = "type", default = "text_type")]
    pub kind: String,
    /// A picklist's active values.
    #[serde(default)]
    pub values: Vec<String>,
    /// Whether only `values` are accepted.
    #[serde(default)]
    pub restricted: bool,
    /// Whether the integration user may write it (field-level security).
    #[serde(default = "yes")]
    pub updateable: bool,
}

fn yes() -> bool {
    true
}

/// A HubSpot contact.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedContact {
    pub id: String,
    pub properties: Map<String, Value>,
}

/// A static HubSpot list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SeedList {
    pub list_id: String,
    pub name: String,
    /// `MANUAL` (static, the default), `SNAPSHOT` or `DYNAMIC` (active).
    #[serde(default)]
    pub processing_type: Option<String>,
}

/// Slack seed data. Every Salesforce user also gets a Slack account with
/// the same email.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackFixture {
    pub channels: Vec<SeedChannel>,
    #[serde(default)]
    pub users: Vec<SeedSlackUser>,
}

/// A Slack channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedChannel {
    pub id: String,
    pub name: String,
}

/// A Slack user without a Salesforce account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSlackUser {
    pub id: String,
    pub email: String,
    pub name: String,
}

impl Fixture {
    /// The demo org shipped with Handoff (`host/src/sandbox/seed.json`).
    pub fn builtin() -> Self {
        serde_json::from_str(include_str!("seed.json")).expect("the built-in fixture is valid")
    }

    /// Reads a fixture file.
    ///
    /// # Errors
    ///
    /// When it cannot be read or does not match the format.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a sandbox fixture", path.display()))
    }

    /// Fresh emulator data from this fixture.
    pub fn world(&self, now_ms: i64) -> World {
        let salesforce = super::salesforce::Data::seed(&self.salesforce, &self.salesforce_fields, now_ms);
        let mut slack_users: Vec<SeedSlackUser> = self.slack.users.clone();
        for user in self.salesforce.get("User").into_iter().flatten() {
            if let (Some(email), Some(name)) =
                (user.get("Email").and_then(Value::as_str), user.get("Name").and_then(Value::as_str))
            {
                let id = format!("U{:08X}", fnv(email));
                slack_users.push(SeedSlackUser { id, email: email.to_string(), name: name.to_string() });
            }
        }
        World {
            hubspot: super::hubspot::Data::seed(&self.hubspot, now_ms),
            salesforce,
            slack: super::slack::Data::seed(&self.slack.channels, &slack_users),
            ..World::default()
        }
    }
}

/// A small stable hash for deterministic ids.
pub fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}
