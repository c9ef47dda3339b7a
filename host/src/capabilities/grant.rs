//! Grants: the names pipeline nodes use to give a plugin a capability, and the
//! WIT interfaces they open.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A capability interface the host provides (`handoff:plugin/<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interface {
    /// `handoff:plugin/marketing`
    Marketing,
    /// `handoff:plugin/crm`
    Crm,
    /// `handoff:plugin/chat`
    Chat,
    /// `handoff:plugin/email`
    Email,
    /// `handoff:plugin/llm`
    Llm,
    /// `handoff:plugin/roster`
    Roster,
    /// `handoff:plugin/state`
    State,
    /// `handoff:plugin/schedule`
    Schedule,
    /// `handoff:plugin/reports`
    Reports,
    /// `handoff:plugin/clock`
    Clock,
    /// `handoff:plugin/log`
    Log,
}

impl Interface {
    /// Every interface, in WIT order.
    pub const ALL: [Interface; 11] = [
        Interface::Marketing,
        Interface::Crm,
        Interface::Chat,
        Interface::Email,
        Interface::Llm,
        Interface::Roster,
        Interface::State,
        Interface::Schedule,
        Interface::Reports,
        Interface::Clock,
        Interface::Log,
    ];

    /// The WIT package every capability interface belongs to.
    pub const PACKAGE: &'static str = "handoff:plugin";

    /// The interface name inside the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            Interface::Marketing => "marketing",
            Interface::Crm => "crm",
            Interface::Chat => "chat",
            Interface::Email => "email",
            Interface::Llm => "llm",
            Interface::Roster => "roster",
            Interface::State => "state",
            Interface::Schedule => "schedule",
            Interface::Reports => "reports",
            Interface::Clock => "clock",
            Interface::Log => "log",
        }
    }

    /// Parses a component import name such as `handoff:plugin/crm@0.1.0`.
    /// Returns `None` for imports that are not capabilities: those outside
    /// the Handoff package (WASI) and the shared `types` interface.
    pub fn from_import(import: &str) -> Option<Result<Interface, String>> {
        let rest = import.strip_prefix(Self::PACKAGE)?.strip_prefix('/')?;
        let name = rest.split('@').next().unwrap_or(rest);
        if name == "types" {
            return None;
        }
        Some(
            Self::ALL
                .into_iter()
                .find(|i| i.name() == name)
                .ok_or_else(|| format!("{import} is not an interface this host provides")),
        )
    }

    /// The grants that open this interface; empty when it needs none.
    pub fn grants(self) -> &'static [Grant] {
        match self {
            Interface::Marketing => &[Grant::MarketingRead, Grant::MarketingWrite],
            Interface::Crm => &[Grant::CrmRead, Grant::CrmWrite],
            Interface::Chat => &[Grant::ChatWrite],
            Interface::Email => &[Grant::EmailSend],
            Interface::Llm => &[Grant::LlmComplete],
            Interface::Roster => &[Grant::RosterRead, Grant::RosterWrite],
            Interface::State => &[Grant::StateRead, Grant::StateWrite],
            Interface::Schedule => &[Grant::ScheduleWrite],
            Interface::Reports => &[Grant::ReportsRead],
            Interface::Clock | Interface::Log => &[],
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Self::PACKAGE, self.name())
    }
}

/// One permission a pipeline node grants its plugin, written as
/// `interface:access` in pipeline JSON (`"capabilities": ["crm:read"]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub enum Grant {
    /// Read HubSpot contacts.
    #[serde(rename = "marketing:read")]
    MarketingRead,
    /// Update HubSpot contacts and list memberships.
    #[serde(rename = "marketing:write")]
    MarketingWrite,
    /// Read Salesforce leads, contacts, accounts, opportunities, activities.
    #[serde(rename = "crm:read")]
    CrmRead,
    /// Create and update Salesforce leads and tasks, assign owners.
    #[serde(rename = "crm:write")]
    CrmWrite,
    /// Send Slack DMs and channel messages, update them.
    #[serde(rename = "chat:write")]
    ChatWrite,
    /// Send email.
    #[serde(rename = "email:send")]
    EmailSend,
    /// Ask the language model for a completion.
    #[serde(rename = "llm:complete")]
    LlmComplete,
    /// Read the sales roster.
    #[serde(rename = "roster:read")]
    RosterRead,
    /// Pause and resume reps.
    #[serde(rename = "roster:write")]
    RosterWrite,
    /// Read the plugin's own durable key-value state.
    #[serde(rename = "state:read")]
    StateRead,
    /// Write the plugin's own durable key-value state.
    #[serde(rename = "state:write")]
    StateWrite,
    /// Set and cancel durable timers.
    #[serde(rename = "schedule:write")]
    ScheduleWrite,
    /// Read the handoff health metrics.
    #[serde(rename = "reports:read")]
    ReportsRead,
}

impl Grant {
    /// Every grant, in a stable order.
    pub const ALL: [Grant; 13] = [
        Grant::MarketingRead,
        Grant::MarketingWrite,
        Grant::CrmRead,
        Grant::CrmWrite,
        Grant::ChatWrite,
        Grant::EmailSend,
        Grant::LlmComplete,
        Grant::RosterRead,
        Grant::RosterWrite,
        Grant::StateRead,
        Grant::StateWrite,
        Grant::ScheduleWrite,
        Grant::ReportsRead,
    ];

    /// The name used in pipeline JSON, e.g. `crm:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::MarketingRead => "marketing:read",
            Grant::MarketingWrite => "marketing:write",
            Grant::CrmRead => "crm:read",
            Grant::CrmWrite => "crm:write",
            Grant::ChatWrite => "chat:write",
            Grant::EmailSend => "email:send",
            Grant::LlmComplete => "llm:complete",
            Grant::RosterRead => "roster:read",
            Grant::RosterWrite => "roster:write",
            Grant::StateRead => "state:read",
            Grant::StateWrite => "state:write",
            Grant::ScheduleWrite => "schedule:write",
            Grant::ReportsRead => "reports:read",
        }
    }

    /// Parses a grant name.
    pub fn parse(name: &str) -> Option<Grant> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }

    /// The interface this grant opens.
    pub fn interface(self) -> Interface {
        Interface::ALL.into_iter().find(|i| i.grants().contains(&self)).expect("every grant belongs to an interface")
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The grants of one pipeline node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantSet(u32);

impl GrantSet {
    /// Whether `grant` is in the set.
    pub fn allows(self, grant: Grant) -> bool {
        self.0 & grant.bit() != 0
    }

    /// Whether an import of `interface` is allowed: it needs no grant, or at
    /// least one of its grants is in the set.
    pub fn opens(self, interface: Interface) -> bool {
        let grants = interface.grants();
        grants.is_empty() || grants.iter().any(|g| self.allows(*g))
    }

    /// The grants in the set, in stable order.
    pub fn iter(self) -> impl Iterator<Item = Grant> {
        Grant::ALL.into_iter().filter(move |g| self.allows(*g))
    }
}

impl FromIterator<Grant> for GrantSet {
    fn from_iter<I: IntoIterator<Item = Grant>>(iter: I) -> Self {
        GrantSet(iter.into_iter().fold(0, |bits, g| bits | g.bit()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_parse() {
        for grant in Grant::ALL {
            let json = serde_json::to_string(&grant).unwrap();
            assert_eq!(json, format!("\"{}\"", grant.as_str()));
            assert_eq!(Grant::parse(grant.as_str()), Some(grant));
            assert!(grant.as_str().starts_with(grant.interface().name()));
        }
    }

    #[test]
    fn imports_parse_with_and_without_version() {
        assert_eq!(Interface::from_import("handoff:plugin/crm@0.1.0"), Some(Ok(Interface::Crm)));
        assert_eq!(Interface::from_import("handoff:plugin/log"), Some(Ok(Interface::Log)));
        assert!(matches!(Interface::from_import("handoff:plugin/ftp@0.1.0"), Some(Err(_))));
        assert_eq!(Interface::from_import("wasi:cli/stdout@0.2.6"), None);
        assert_eq!(Interface::from_import("handoff:plugin/types@0.1.0"), None);
    }

    #[test]
    fn a_read_grant_opens_the_interface_but_not_writes() {
        let set: GrantSet = [Grant::CrmRead].into_iter().collect();
        assert!(set.opens(Interface::Crm));
        assert!(set.allows(Grant::CrmRead));
        assert!(!set.allows(Grant::CrmWrite));
        assert!(!set.opens(Interface::Chat));
        assert!(set.opens(Interface::Clock), "clock needs no grant");
    }
}
