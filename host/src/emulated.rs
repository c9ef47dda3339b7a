//! Handoff beside its emulators (`handoff sandbox`, `--sandbox`, the demo
//! and the tests): the connector settings that point at running emulators,
//! and the host's clock lent to them so both run on the same (virtual)
//! time. Built only with the `emulators` feature (on by default): without
//! it, the product has no emulator in its build at all.

use crate::capabilities::Clock;
use crate::connectors::{
    AnthropicConfig, CallPolicy, ConnectorsConfig, HubSpotConfig, SalesforceAuth, SalesforceConfig, Secret,
    SlackConfig, SmtpConfig, SmtpSecurity,
};
pub use handoff_emulators::{Emulators, Settings};
use std::net::SocketAddr;
use std::sync::Arc;

/// Every connector pointed at emulators serving HTTP on `http` and SMTP on
/// `smtp`, with their token and secrets.
pub fn connectors_at(http: SocketAddr, smtp: SocketAddr) -> ConnectorsConfig {
    let base = format!("http://{http}");
    let token = || Secret::new(handoff_emulators::TOKEN);
    let secret = || Secret::new(handoff_emulators::SECRET);
    ConnectorsConfig {
        hubspot: Some(HubSpotConfig {
            base_url: format!("{base}/hubspot"),
            token: Some(token()),
            app_secret: Some(secret()),
        }),
        salesforce: Some(SalesforceConfig {
            login_url: format!("{base}/salesforce"),
            api_version: crate::connectors::default_api_version(),
            auth: SalesforceAuth::ClientCredentials { client_id: "sandbox-client".into(), client_secret: secret() },
        }),
        slack: Some(SlackConfig {
            base_url: format!("{base}/slack/api"),
            bot_token: Some(token()),
            signing_secret: Some(secret()),
        }),
        anthropic: Some(AnthropicConfig {
            base_url: format!("{base}/anthropic"),
            api_key: Some(token()),
            model: "claude-sandbox".into(),
        }),
        smtp: Some(SmtpConfig {
            host: smtp.ip().to_string(),
            port: smtp.port(),
            security: SmtpSecurity::None,
            username: None,
            password: None,
            from: "Handoff <handoff@sandbox.test>".into(),
        }),
        policy: CallPolicy::default(),
    }
}

/// [`connectors_at`] as the `--config` file `handoff serve` reads, for a
/// server in a process apart from the emulators (`handoff sandbox`): the
/// load tool and the durability tests. Without `model`, no `[anthropic]`:
/// summaries come from the template.
pub fn config_toml(http: SocketAddr, smtp: SocketAddr, model: bool) -> String {
    let (token, secret) = (handoff_emulators::TOKEN, handoff_emulators::SECRET);
    let anthropic = if model {
        format!(
            "[anthropic]\nbase_url = \"http://{http}/anthropic\"\napi_key = \"{token}\"\nmodel = \"claude-sandbox\"\n"
        )
    } else {
        String::new()
    };
    format!(
        r#"[hubspot]
base_url = "http://{http}/hubspot"
token = "{token}"
app_secret = "{secret}"
[salesforce]
login_url = "http://{http}/salesforce"
auth = {{ flow = "client-credentials", client_id = "sandbox-client", client_secret = "{secret}" }}
[slack]
base_url = "http://{http}/slack/api"
bot_token = "{token}"
signing_secret = "{secret}"
{anthropic}[smtp]
host = "{}"
port = {}
security = "none"
from = "Handoff <handoff@sandbox.test>"
"#,
        smtp.ip(),
        smtp.port()
    )
}

/// Every connector pointed at `emulators`.
pub fn connectors(emulators: &Emulators) -> ConnectorsConfig {
    connectors_at(emulators.http, emulators.smtp)
}

/// The host's clock, as the emulators read it.
pub fn clock(clock: Arc<dyn Clock>) -> Arc<dyn handoff_emulators::Clock> {
    Arc::new(move || clock.now_ms())
}

/// Emulators on free loopback ports with `settings`, on the host's `clock`.
///
/// # Errors
///
/// When no port can be bound.
pub async fn start(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Emulators> {
    Emulators::start_loopback(settings, self::clock(clock)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_file_says_what_connectors_at_builds() {
        let (http, smtp): (SocketAddr, SocketAddr) =
            ("127.0.0.1:8090".parse().unwrap(), "127.0.0.1:2525".parse().unwrap());
        let read = |model| toml::from_str::<ConnectorsConfig>(&config_toml(http, smtp, model)).unwrap();
        assert_eq!(read(true), connectors_at(http, smtp));
        assert_eq!(read(false), ConnectorsConfig { anthropic: None, ..connectors_at(http, smtp) });
    }
}
