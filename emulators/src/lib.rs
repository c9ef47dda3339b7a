//! Loopback emulators of HubSpot, Salesforce, Slack, Anthropic and an SMTP
//! sink that speak the real wire formats, auth, errors and rate limits,
//! seeded from a fixture of a sales org. Tests and the demo run against
//! them (`handoff sandbox`, `handoff serve --sandbox`); fault injection and
//! inspection live under `/_sandbox`. The product's connectors know nothing
//! of this crate: the host points them here by configuration only.
//!
//! One HTTP port serves every provider under a path prefix: `/hubspot`
//! (HubSpot's API base), `/salesforce` (login and instance base),
//! `/slack/api` and `/anthropic`. SMTP listens on a second port.

// Handlers return the provider's error response as `Err`: clearer than
// boxing, and an emulator is not a hot path.
#![allow(clippy::result_large_err)]

mod anthropic;
pub mod drive;
mod faults;
mod fixture;
mod hubspot;
mod inspect;
mod salesforce;
pub mod slack;
mod smtp;
pub mod soql;
mod time;

pub use faults::{Fault, FaultKind};
pub use fixture::Fixture;
pub use salesforce::SENT_NOTIFICATIONS;
pub use smtp::ReceivedEmail;

use anyhow::{Context, Result};
use axum::Router;
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// The bearer token (and API key) the emulators accept and issue.
pub const TOKEN: &str = "sandbox";
/// The secret of the emulated apps: Salesforce's client secret, the key
/// HubSpot webhooks and Slack requests are signed with.
pub const SECRET: &str = "sandbox-secret";

/// Where the emulators' "now" comes from: the host's clock when they run
/// beside it on virtual time, the system clock otherwise.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

impl<F: Fn() -> i64 + Send + Sync> Clock for F {
    fn now_ms(&self) -> i64 {
        self()
    }
}

/// The system's wall clock.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(|| jiff::Timestamp::now().as_millisecond())
}

/// How strict the emulators are. Defaults follow the real services.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The bearer token (and Anthropic API key) the emulators accept.
    pub token: String,
    /// The Salesforce connected app's client secret (client credentials).
    pub client_secret: String,
    /// Public key (PEM) that verifies JWT-bearer assertions; JWT sign-in is
    /// refused without one.
    pub jwt_public_key_pem: Option<String>,
    /// HubSpot requests per rolling ten seconds (0: no limit).
    pub hubspot_per_ten_seconds: u32,
    /// HubSpot search requests per second (0: no limit).
    pub hubspot_search_per_second: u32,
    /// Salesforce API requests allowed in all (the org's daily limit).
    pub salesforce_api_limit: u64,
    /// Records per SOQL page before `nextRecordsUrl`.
    pub salesforce_batch_size: usize,
    /// Slack messages a channel takes in a burst, then one per second.
    pub slack_channel_burst: u32,
    /// Salesforce custom notifications the org may send (its daily allowance).
    pub salesforce_notifications_per_day: u64,
    /// The scopes HubSpot's private app was granted (access-token info).
    pub hubspot_scopes: Vec<String>,
    /// The scopes Slack's bot token has (`x-oauth-scopes` on every answer).
    pub slack_scopes: Vec<String>,
}

/// The scopes the emulated HubSpot app has by default: what Handoff needs.
pub const HUBSPOT_SCOPES: [&str; 5] = [
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.lists.read",
    "crm.lists.write",
];

/// The scopes the emulated Slack bot has by default: what Handoff needs.
pub const SLACK_SCOPES: [&str; 9] = [
    "chat:write",
    "chat:write.public",
    "im:write",
    "im:history",
    "channels:read",
    "groups:read",
    "channels:history",
    "users:read",
    "users:read.email",
];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            token: TOKEN.into(),
            client_secret: SECRET.into(),
            jwt_public_key_pem: None,
            hubspot_per_ten_seconds: 190,
            hubspot_search_per_second: 5,
            salesforce_api_limit: 100_000,
            salesforce_batch_size: 2000,
            slack_channel_burst: 10,
            salesforce_notifications_per_day: 10_000,
            hubspot_scopes: HUBSPOT_SCOPES.map(String::from).to_vec(),
            slack_scopes: SLACK_SCOPES.map(String::from).to_vec(),
        }
    }
}

/// Everything the emulators hold.
#[derive(Debug, Default)]
pub struct World {
    /// HubSpot's contacts and lists.
    pub hubspot: hubspot::Data,
    /// Salesforce's records and sessions.
    pub salesforce: salesforce::Data,
    /// Slack's users, channels and messages.
    pub slack: slack::Data,
    /// Emails the SMTP sink took.
    pub emails: Vec<ReceivedEmail>,
    /// SMTP connections the sink accepted.
    pub smtp_connections: u64,
    /// Faults to inject.
    pub faults: faults::Faults,
    /// Every request answered, in order.
    pub requests: Vec<RequestRecord>,
    /// How many completions Anthropic's emulator wrote.
    pub anthropic_calls: u64,
}

/// One request an emulator answered, for tests to count attempts.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    /// `hubspot`, `salesforce`, `slack`, `anthropic` or `smtp`.
    pub provider: &'static str,
    /// The HTTP method.
    pub method: String,
    /// The path under the provider's prefix.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

/// Shared state of running emulators.
pub struct EmulatorState {
    /// Rate limits and credentials, changeable while running.
    pub settings: Mutex<Settings>,
    world: Mutex<World>,
    fixture: Fixture,
    /// "Now" for the data the emulators write.
    pub clock: Arc<dyn Clock>,
}

impl EmulatorState {
    /// Emulators seeded from `fixture`.
    pub fn new(fixture: Fixture, settings: Settings, clock: Arc<dyn Clock>) -> Arc<Self> {
        let world = fixture.world(clock.now_ms());
        Arc::new(EmulatorState { settings: Mutex::new(settings), world: Mutex::new(world), fixture, clock })
    }

    /// Locks the emulated data.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current settings.
    pub fn settings(&self) -> Settings {
        self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Forgets every issued Salesforce token: the next call with one gets
    /// `INVALID_SESSION_ID`, as after a session timeout.
    pub fn expire_salesforce_tokens(&self) {
        salesforce::expire_tokens(&mut self.world().salesforce);
    }

    /// Salesforce API calls counted against the org's daily allowance.
    pub fn api_usage(&self) -> u64 {
        self.world().salesforce.api_usage
    }

    /// Back to the fixture: data, faults and request log.
    pub fn reset(&self) {
        *self.world() = self.fixture.world(self.clock.now_ms());
    }
}

/// Running emulators.
pub struct Emulators {
    /// The HTTP address of every provider and `/_sandbox`.
    pub http: SocketAddr,
    /// The SMTP sink's address.
    pub smtp: SocketAddr,
    /// What they hold.
    pub state: Arc<EmulatorState>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Emulators {
    /// Starts the emulators on `http` and `smtp` (port 0 picks a free one),
    /// seeded with the built-in fixture and default settings.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound.
    pub async fn start(http: SocketAddr, smtp: SocketAddr) -> Result<Emulators> {
        Self::start_with(http, smtp, EmulatorState::new(Fixture::builtin(), Settings::default(), system_clock())).await
    }

    /// Starts the emulators on free loopback ports, seeded with the built-in
    /// fixture, with `settings` and `clock`.
    ///
    /// # Errors
    ///
    /// When no port can be bound.
    pub async fn start_loopback(settings: Settings, clock: Arc<dyn Clock>) -> Result<Emulators> {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
        Self::start_with(any, any, EmulatorState::new(Fixture::builtin(), settings, clock)).await
    }

    /// Starts the emulators over `state`.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound.
    pub async fn start_with(http: SocketAddr, smtp: SocketAddr, state: Arc<EmulatorState>) -> Result<Emulators> {
        let listener =
            tokio::net::TcpListener::bind(http).await.with_context(|| format!("binding the emulators to {http}"))?;
        let http = listener.local_addr()?;
        let smtp_listener =
            tokio::net::TcpListener::bind(smtp).await.with_context(|| format!("binding the SMTP sink to {smtp}"))?;
        let smtp = smtp_listener.local_addr()?;
        let app = router(state.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "the emulators' HTTP server stopped");
            }
        });
        let sink = tokio::spawn(smtp::serve(smtp_listener, state.clone()));
        Ok(Emulators { http, smtp, state, tasks: vec![server, sink] })
    }
}

impl Drop for Emulators {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The HTTP routes of every emulator, each behind the fault and logging
/// layer of its provider.
pub fn router(state: Arc<EmulatorState>) -> Router {
    Router::new()
        .nest("/hubspot", faults::layered(hubspot::routes(), "hubspot", state.clone()))
        .nest("/salesforce", faults::layered(salesforce::routes(), "salesforce", state.clone()))
        .nest("/slack/api", faults::layered(slack::routes(), "slack", state.clone()))
        .nest("/anthropic", faults::layered(anthropic::routes(), "anthropic", state.clone()))
        .nest("/_sandbox", inspect::routes())
        .with_state(state)
}

/// `Authorization: Bearer <token>`, if present.
fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}
