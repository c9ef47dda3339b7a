//! Connectors: the real HubSpot, Salesforce, Slack, Anthropic and SMTP
//! clients behind the capability traits, one shared call policy, and their
//! configuration. Base URLs and credentials are configuration, which is how
//! `--sandbox` points every connector at the local emulators: the
//! connectors know nothing else of them.

pub mod anthropic;
pub mod hubspot;
pub mod policy;
pub mod salesforce;
pub mod secret;
pub mod slack;
pub mod smtp;
pub mod time;

use crate::capabilities::Capabilities;
use anyhow::{Context, Result, bail};
pub use policy::{CallPolicy, ErrorClass, ProviderError};
pub use salesforce::SalesforceAuth;
pub use secret::Secret;
use serde::Deserialize;
pub use smtp::SmtpSecurity;
use std::path::Path;
use std::sync::Arc;

/// Connector settings, from the `[connectors]`-level TOML file and the
/// environment. A provider that is absent is not configured.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsConfig {
    /// HubSpot (marketing).
    pub hubspot: Option<HubSpotConfig>,
    /// Salesforce (CRM).
    pub salesforce: Option<SalesforceConfig>,
    /// Slack (chat).
    pub slack: Option<SlackConfig>,
    /// Anthropic (LLM).
    pub anthropic: Option<AnthropicConfig>,
    /// SMTP (email).
    pub smtp: Option<SmtpConfig>,
    /// Timeouts and retries shared by every connector.
    #[serde(default)]
    pub policy: CallPolicy,
}

/// The model summaries use when only `HANDOFF_ANTHROPIC_API_KEY` is given.
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-haiku-4-5";

/// Every environment variable the connectors read, with what it sets. A
/// setting in the `--config` file wins over its variable.
pub const ENV_VARIABLES: &[(&str, &str)] = &[
    ("HANDOFF_HUBSPOT_TOKEN", "hubspot.token: the private app's access token"),
    ("HANDOFF_HUBSPOT_APP_SECRET", "hubspot.app_secret: the app's client secret, which signs webhooks"),
    ("HANDOFF_SALESFORCE_LOGIN_URL", "salesforce.login_url (default https://login.salesforce.com)"),
    ("HANDOFF_SALESFORCE_CLIENT_ID", "salesforce.auth.client_id: the connected app's consumer key"),
    ("HANDOFF_SALESFORCE_CLIENT_SECRET", "salesforce.auth.client_secret (client-credentials flow)"),
    ("HANDOFF_SALESFORCE_USERNAME", "salesforce.auth.username: chooses the JWT bearer flow"),
    ("HANDOFF_SALESFORCE_PRIVATE_KEY", "salesforce.auth.private_key_pem (JWT bearer flow)"),
    ("HANDOFF_SALESFORCE_AUDIENCE", "salesforce.auth.audience (JWT bearer flow; default the login URL)"),
    ("HANDOFF_SLACK_BOT_TOKEN", "slack.bot_token: xoxb-..."),
    ("HANDOFF_SLACK_SIGNING_SECRET", "slack.signing_secret: verifies button clicks"),
    ("HANDOFF_ANTHROPIC_API_KEY", "anthropic.api_key: turns on model-written summaries"),
    ("HANDOFF_ANTHROPIC_MODEL", "anthropic.model (default claude-haiku-4-5)"),
    ("HANDOFF_SMTP_HOST", "smtp.host: turns on email"),
    ("HANDOFF_SMTP_PORT", "smtp.port (default 587, STARTTLS; 465 means TLS)"),
    ("HANDOFF_SMTP_FROM", "smtp.from: the sender address"),
    ("HANDOFF_SMTP_USERNAME", "smtp.username"),
    ("HANDOFF_SMTP_PASSWORD", "smtp.password"),
];

/// HubSpot: a private app's token, and the app secret that signs webhooks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    #[serde(default = "default_hubspot_url")]
    /// The API base URL.
    pub base_url: String,
    /// Private-app access token (or `HANDOFF_HUBSPOT_TOKEN`).
    pub token: Option<Secret>,
    /// App client secret for webhook signatures (or `HANDOFF_HUBSPOT_APP_SECRET`).
    pub app_secret: Option<Secret>,
}

/// Salesforce: where to sign in, the API version, and the OAuth flow.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SalesforceConfig {
    #[serde(default = "default_salesforce_url")]
    /// Where to sign in.
    pub login_url: String,
    #[serde(default = "default_api_version")]
    /// The REST API version (`v59.0`).
    pub api_version: String,
    /// How to sign in.
    pub auth: SalesforceAuth,
}

/// Slack: the bot token, and the signing secret of interactivity callbacks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    #[serde(default = "default_slack_url")]
    /// The Web API base URL.
    pub base_url: String,
    /// Bot token `xoxb-...` (or `HANDOFF_SLACK_BOT_TOKEN`).
    pub bot_token: Option<Secret>,
    /// Signing secret (or `HANDOFF_SLACK_SIGNING_SECRET`).
    pub signing_secret: Option<Secret>,
}

/// Anthropic, for natural-language summaries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnthropicConfig {
    #[serde(default = "default_anthropic_url")]
    /// The API base URL.
    pub base_url: String,
    /// API key (or `HANDOFF_ANTHROPIC_API_KEY`).
    pub api_key: Option<Secret>,
    /// The model (`claude-...`).
    pub model: String,
}

/// An SMTP relay for email.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// The relay's host.
    pub host: String,
    /// The relay's port.
    pub port: u16,
    #[serde(default)]
    /// TLS: none, STARTTLS or implicit.
    pub security: SmtpSecurity,
    /// The login user, if the relay needs one.
    pub username: Option<String>,
    /// Password (or `HANDOFF_SMTP_PASSWORD`).
    pub password: Option<Secret>,
    /// The sender address, e.g. `Handoff <handoff@example.com>`.
    pub from: String,
}

fn default_hubspot_url() -> String {
    "https://api.hubapi.com".into()
}
fn default_salesforce_url() -> String {
    "https://login.salesforce.com".into()
}
pub(crate) fn default_api_version() -> String {
    "v59.0".into()
}
fn default_slack_url() -> String {
    "https://slack.com/api".into()
}
fn default_anthropic_url() -> String {
    "https://api.anthropic.com".into()
}

impl ConnectorsConfig {
    /// Reads a TOML file, then applies secrets from the environment.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or does not match the format (the
    /// message names the field).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut config: ConnectorsConfig = toml::from_str(&text).with_context(|| format!("in {}", path.display()))?;
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// [`Self::load`] when a file is given; otherwise the settings the
    /// environment alone gives.
    ///
    /// # Errors
    ///
    /// As [`Self::load`].
    pub fn from_file_and_env(path: Option<&Path>) -> Result<Self> {
        if let Some(path) = path {
            return Self::load(path);
        }
        let mut config = ConnectorsConfig::default();
        config.apply_env(|name| std::env::var(name).ok());
        Ok(config)
    }

    /// Fills what the file leaves out from `HANDOFF_*` variables (see
    /// [`ENV_VARIABLES`]): a provider the file does not name is configured
    /// from the environment alone when its variables are set.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let secret = |name: &str| env(name).map(Secret::new);
        if self.hubspot.is_none()
            && (env("HANDOFF_HUBSPOT_TOKEN").is_some() || env("HANDOFF_HUBSPOT_APP_SECRET").is_some())
        {
            self.hubspot = Some(HubSpotConfig { base_url: default_hubspot_url(), token: None, app_secret: None });
        }
        if let Some(h) = &mut self.hubspot {
            h.token = h.token.take().or_else(|| secret("HANDOFF_HUBSPOT_TOKEN"));
            h.app_secret = h.app_secret.take().or_else(|| secret("HANDOFF_HUBSPOT_APP_SECRET"));
        }
        // A secret without its client id still makes the section, so that
        // `missing` names the id.
        let salesforce_secret =
            env("HANDOFF_SALESFORCE_CLIENT_SECRET").is_some() || env("HANDOFF_SALESFORCE_PRIVATE_KEY").is_some();
        if self.salesforce.is_none()
            && let Some(client_id) = env("HANDOFF_SALESFORCE_CLIENT_ID").or_else(|| salesforce_secret.then(String::new))
        {
            let auth = match env("HANDOFF_SALESFORCE_USERNAME") {
                Some(username) => SalesforceAuth::JwtBearer {
                    client_id,
                    username,
                    private_key_pem: Secret::new(""),
                    audience: env("HANDOFF_SALESFORCE_AUDIENCE"),
                },
                None => SalesforceAuth::ClientCredentials { client_id, client_secret: Secret::new("") },
            };
            self.salesforce = Some(SalesforceConfig {
                login_url: env("HANDOFF_SALESFORCE_LOGIN_URL").unwrap_or_else(default_salesforce_url),
                api_version: default_api_version(),
                auth,
            });
        }
        if let Some(s) = &mut self.salesforce {
            match &mut s.auth {
                SalesforceAuth::ClientCredentials { client_secret, .. } if client_secret.expose().is_empty() => {
                    if let Some(v) = secret("HANDOFF_SALESFORCE_CLIENT_SECRET") {
                        *client_secret = v;
                    }
                }
                SalesforceAuth::JwtBearer { private_key_pem, .. } if private_key_pem.expose().is_empty() => {
                    if let Some(v) = secret("HANDOFF_SALESFORCE_PRIVATE_KEY") {
                        *private_key_pem = v;
                    }
                }
                _ => {}
            }
        }
        if self.slack.is_none()
            && (env("HANDOFF_SLACK_BOT_TOKEN").is_some() || env("HANDOFF_SLACK_SIGNING_SECRET").is_some())
        {
            self.slack = Some(SlackConfig { base_url: default_slack_url(), bot_token: None, signing_secret: None });
        }
        if let Some(s) = &mut self.slack {
            s.bot_token = s.bot_token.take().or_else(|| secret("HANDOFF_SLACK_BOT_TOKEN"));
            s.signing_secret = s.signing_secret.take().or_else(|| secret("HANDOFF_SLACK_SIGNING_SECRET"));
        }
        if self.anthropic.is_none() && env("HANDOFF_ANTHROPIC_API_KEY").is_some() {
            self.anthropic = Some(AnthropicConfig {
                base_url: default_anthropic_url(),
                api_key: None,
                model: env("HANDOFF_ANTHROPIC_MODEL").unwrap_or_else(|| DEFAULT_ANTHROPIC_MODEL.into()),
            });
        }
        if let Some(a) = &mut self.anthropic {
            a.api_key = a.api_key.take().or_else(|| secret("HANDOFF_ANTHROPIC_API_KEY"));
        }
        if self.smtp.is_none()
            && let Some(host) = env("HANDOFF_SMTP_HOST")
        {
            let port = env("HANDOFF_SMTP_PORT").and_then(|p| p.trim().parse().ok());
            self.smtp = Some(SmtpConfig {
                host,
                port: port.unwrap_or(587),
                security: match port {
                    Some(465) => SmtpSecurity::Tls,
                    _ => SmtpSecurity::Starttls,
                },
                username: env("HANDOFF_SMTP_USERNAME"),
                password: None,
                // Empty until given: `missing` names it.
                from: env("HANDOFF_SMTP_FROM").unwrap_or_default(),
            });
        }
        if let Some(m) = &mut self.smtp {
            m.password = m.password.take().or_else(|| secret("HANDOFF_SMTP_PASSWORD"));
        }
    }

    /// Settings that are needed but missing, by name (`slack.bot_token`).
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if let Some(h) = &self.hubspot
            && h.token.is_none()
        {
            missing.push("hubspot.token (or HANDOFF_HUBSPOT_TOKEN)");
        }
        if let Some(s) = &self.salesforce {
            let (SalesforceAuth::ClientCredentials { client_id, .. } | SalesforceAuth::JwtBearer { client_id, .. }) =
                &s.auth;
            if client_id.is_empty() {
                missing.push("salesforce.auth.client_id (or HANDOFF_SALESFORCE_CLIENT_ID)");
            }
            match &s.auth {
                SalesforceAuth::ClientCredentials { client_secret, .. } if client_secret.expose().is_empty() => {
                    missing.push("salesforce.auth.client_secret (or HANDOFF_SALESFORCE_CLIENT_SECRET)");
                }
                SalesforceAuth::JwtBearer { private_key_pem, .. } if private_key_pem.expose().is_empty() => {
                    missing.push("salesforce.auth.private_key_pem (or HANDOFF_SALESFORCE_PRIVATE_KEY)");
                }
                _ => {}
            }
        }
        if let Some(s) = &self.slack
            && s.bot_token.is_none()
        {
            missing.push("slack.bot_token (or HANDOFF_SLACK_BOT_TOKEN)");
        }
        if let Some(a) = &self.anthropic
            && a.api_key.is_none()
        {
            missing.push("anthropic.api_key (or HANDOFF_ANTHROPIC_API_KEY)");
        }
        if let Some(m) = &self.smtp
            && m.from.trim().is_empty()
        {
            missing.push("smtp.from (or HANDOFF_SMTP_FROM)");
        }
        missing
    }

    /// The HubSpot client, when HubSpot is configured with a token.
    pub fn hubspot_client(&self, http: &reqwest::Client) -> Option<hubspot::HubSpot> {
        let h = self.hubspot.as_ref()?;
        Some(hubspot::HubSpot::new(http.clone(), &h.base_url, h.token.clone()?, self.policy.clone()))
    }

    /// The Salesforce client, when Salesforce is configured.
    pub fn salesforce_client(&self, http: &reqwest::Client) -> Option<salesforce::Salesforce> {
        let s = self.salesforce.as_ref()?;
        Some(salesforce::Salesforce::new(
            http.clone(),
            &s.login_url,
            &s.api_version,
            s.auth.clone(),
            self.policy.clone(),
        ))
    }

    /// Builds the configured connectors into capability providers (state,
    /// schedule, roster and clock stay as given in `base`).
    ///
    /// # Errors
    ///
    /// When a configured connector lacks a credential or is malformed.
    pub fn connect(&self, base: Capabilities) -> Result<Capabilities> {
        let missing = self.missing();
        if !missing.is_empty() {
            bail!("missing settings: {}", missing.join(", "));
        }
        let http = policy::http_client();
        let policy = self.policy.clone();
        let mut caps = base;
        if let Some(client) = self.hubspot_client(&http) {
            caps.marketing = Some(Arc::new(client));
        }
        if let Some(client) = self.salesforce_client(&http) {
            caps.crm = Some(Arc::new(client));
        }
        if let Some(s) = &self.slack {
            let token = s.bot_token.clone().expect("checked by missing()");
            caps.chat = Some(Arc::new(slack::Slack::new(http.clone(), &s.base_url, token, policy.clone())));
        }
        if let Some(a) = &self.anthropic {
            let key = a.api_key.clone().expect("checked by missing()");
            caps.llm =
                Some(Arc::new(anthropic::Anthropic::new(http.clone(), &a.base_url, key, &a.model, policy.clone())));
        }
        if let Some(m) = &self.smtp {
            let credentials = match (&m.username, &m.password) {
                (Some(user), Some(password)) => Some((user.clone(), password.clone())),
                _ => None,
            };
            caps.email =
                Some(Arc::new(smtp::Smtp::new(&m.host, m.port, m.security, credentials, &m.from, policy.clone())?));
        }
        Ok(caps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_toml_and_secrets_from_the_environment() {
        let text = r#"
            [hubspot]
            [salesforce]
            auth = { flow = "client-credentials", client_id = "abc", client_secret = "" }
            [slack]
            bot_token = "xoxb-file"
            [policy]
            timeout = 2000
        "#;
        let mut config: ConnectorsConfig = toml::from_str(text).unwrap();
        assert_eq!(config.hubspot.as_ref().unwrap().base_url, "https://api.hubapi.com");
        assert_eq!(config.policy.timeout, std::time::Duration::from_secs(2));
        assert_eq!(config.missing().len(), 2, "{:?}", config.missing());
        config.apply_env(|name| match name {
            "HANDOFF_HUBSPOT_TOKEN" => Some("pat-env".into()),
            "HANDOFF_SALESFORCE_CLIENT_SECRET" => Some("sf-env".into()),
            "HANDOFF_SLACK_BOT_TOKEN" => Some("xoxb-env".into()),
            _ => None,
        });
        assert!(config.missing().is_empty());
        assert_eq!(config.hubspot.unwrap().token.unwrap().expose(), "pat-env");
        assert_eq!(config.slack.unwrap().bot_token.unwrap().expose(), "xoxb-file", "the file wins");
        let debug = format!("{:?}", config.salesforce);
        assert!(!debug.contains("sf-env"), "secrets are redacted: {debug}");
    }

    #[test]
    fn the_environment_alone_configures_every_provider() {
        // Once reported missing, with a message naming these very variables.
        let vars = [
            ("HANDOFF_HUBSPOT_TOKEN", "pat-env"),
            ("HANDOFF_HUBSPOT_APP_SECRET", "hub-secret"),
            ("HANDOFF_SALESFORCE_CLIENT_ID", "consumer-key"),
            ("HANDOFF_SALESFORCE_CLIENT_SECRET", "sf-env"),
            ("HANDOFF_SLACK_BOT_TOKEN", "xoxb-env"),
            ("HANDOFF_ANTHROPIC_API_KEY", "sk-ant"),
            ("HANDOFF_SMTP_HOST", "smtp.example.com"),
            ("HANDOFF_SMTP_PORT", "465"),
            ("HANDOFF_SMTP_FROM", "Handoff <handoff@example.com>"),
        ];
        let mut config = ConnectorsConfig::default();
        config.apply_env(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()));
        assert!(config.missing().is_empty(), "{:?}", config.missing());
        assert!(crate::app::require_for_serve(&config).is_ok());
        let hubspot = config.hubspot.as_ref().unwrap();
        assert_eq!(hubspot.app_secret.as_ref().unwrap().expose(), "hub-secret");
        assert_eq!(hubspot.base_url, "https://api.hubapi.com");
        let salesforce = config.salesforce.as_ref().unwrap();
        assert!(matches!(&salesforce.auth, SalesforceAuth::ClientCredentials { client_id, client_secret }
            if client_id == "consumer-key" && client_secret.expose() == "sf-env"));
        assert_eq!(config.anthropic.as_ref().unwrap().model, DEFAULT_ANTHROPIC_MODEL);
        let smtp = config.smtp.as_ref().unwrap();
        assert_eq!((smtp.port, smtp.security), (465, SmtpSecurity::Tls));

        // A username chooses the JWT flow, whose key is then what is missing.
        let mut config = ConnectorsConfig::default();
        config.apply_env(|name| match name {
            "HANDOFF_SALESFORCE_CLIENT_ID" => Some("consumer-key".into()),
            "HANDOFF_SALESFORCE_USERNAME" => Some("handoff@acme.example".into()),
            _ => None,
        });
        assert_eq!(config.missing(), ["salesforce.auth.private_key_pem (or HANDOFF_SALESFORCE_PRIVATE_KEY)"]);

        // Half a provider is named by the variable it lacks.
        let mut config = ConnectorsConfig::default();
        config.apply_env(|name| match name {
            "HANDOFF_SALESFORCE_CLIENT_SECRET" | "HANDOFF_SMTP_HOST" => Some("x".into()),
            _ => None,
        });
        let missing = config.missing().join(", ");
        assert!(missing.contains("HANDOFF_SALESFORCE_CLIENT_ID") && missing.contains("HANDOFF_SMTP_FROM"), "{missing}");
    }

    #[test]
    fn every_variable_read_is_listed() {
        let source = include_str!("mod.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        for read in code.split("env(\"").skip(1).chain(code.split("secret(\"").skip(1)) {
            let name = &read[..read.find('"').unwrap()];
            assert!(ENV_VARIABLES.iter().any(|(n, _)| *n == name), "{name} is read but not listed");
        }
    }

    #[test]
    fn unknown_settings_are_named() {
        let err = toml::from_str::<ConnectorsConfig>("[slack]\nbot_tokn = \"x\"").unwrap_err();
        assert!(err.to_string().contains("bot_tokn"), "{err}");
    }
}
