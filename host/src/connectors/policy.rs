//! The one call policy every connector uses: a timeout per attempt, retries
//! with exponential backoff and jitter for transient failures (timeouts,
//! 5xx, rate limits, honouring the provider's own wait), no retry for
//! anything else. Every error keeps the provider's code and message.

use crate::capabilities::CapabilityError;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A caller's own deadline, which provider calls made on its behalf must
/// leave room for: a plugin run's, counted in the time it was given.
pub trait TimeLeft: Send + Sync {
    /// What is left of the caller's deadline.
    fn time_left(&self) -> Duration;
}

tokio::task_local! {
    static CALLER: Arc<dyn TimeLeft>;
}

/// What a call keeps of its caller's time, so the caller can take in the
/// error and return it before its own deadline stops it.
const CALLER_MARGIN: Duration = Duration::from_millis(100);

/// Runs `work` on behalf of a caller with a deadline: a provider call in it
/// neither waits for an answer nor sleeps before a retry past what the
/// caller has left; it returns a transient error instead, so the caller's
/// own (durable) retry takes over. Without this, a provider's rate limit
/// (HubSpot's rolling window asks ten seconds a time) would use up a
/// plugin's deadline, and a run stopped at its deadline is not retried.
pub async fn within_deadline<F: Future>(caller: Arc<dyn TimeLeft>, work: F) -> F::Output {
    CALLER.scope(caller, work).await
}

/// What the caller has left for calls, if it has a deadline.
fn caller_left() -> Option<Duration> {
    CALLER.try_with(|caller| caller.time_left().saturating_sub(CALLER_MARGIN)).ok()
}

/// How a failed call should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Timeout, outage, rate limit: worth retrying later.
    Transient,
    /// The object does not exist.
    NotFound,
    /// The provider rejected the request; retrying will not help.
    Invalid,
    /// Credentials are wrong or lack a scope: an operator must act. Leads
    /// wait (the plugin sees `unavailable`) rather than being dropped.
    Auth,
}

/// A provider's error, with its own code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    /// `hubspot`, `salesforce`, ...
    pub provider: &'static str,
    /// HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The provider's error code (`REQUIRED_FIELD_MISSING`, `ratelimited`,
    /// `OBJECT_NOT_FOUND`, ...), or ours (`timeout`, `connect`).
    pub code: String,
    /// What went wrong, with the provider's own message.
    pub message: String,
    /// Whether retrying may help.
    pub class: ErrorClass,
}

impl ProviderError {
    /// An error of `class` with the provider's code and message.
    pub fn new(
        provider: &'static str,
        status: Option<u16>,
        code: impl Into<String>,
        message: impl Into<String>,
        class: ErrorClass,
    ) -> Self {
        ProviderError { provider, status, code: code.into(), message: message.into(), class }
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.provider, self.code)?;
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

impl From<ProviderError> for CapabilityError {
    fn from(e: ProviderError) -> Self {
        let text = e.to_string();
        match e.class {
            ErrorClass::Transient => CapabilityError::Unavailable(text),
            ErrorClass::NotFound => CapabilityError::NotFound(text),
            ErrorClass::Invalid => CapabilityError::Invalid(text),
            ErrorClass::Auth => CapabilityError::Unavailable(format!("{text} (check the credentials)")),
        }
    }
}

/// What one attempt came to.
pub enum Attempt<T> {
    /// Success.
    Done(T),
    /// A transient failure; `after` is the provider's requested wait.
    Retry {
        /// What went wrong.
        error: ProviderError,
        /// How long the provider asked us to wait.
        after: Option<Duration>,
    },
    /// A failure retrying will not fix.
    Fail(ProviderError),
}

/// Retry and timeout settings shared by all connectors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallPolicy {
    /// Time one attempt may take.
    #[serde(with = "millis")]
    pub timeout: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// First backoff; doubles each attempt, with jitter.
    #[serde(with = "millis")]
    pub base_backoff: Duration,
    /// Longest wait between attempts. A provider asking for a longer wait
    /// gets an `unavailable` error instead, so the node's own (durable) retry
    /// takes over.
    #[serde(with = "millis")]
    pub max_wait: Duration,
    /// Wait per attempt for HubSpot's rolling ten-second limit, which sends
    /// no Retry-After (HubSpot advises ten seconds).
    #[serde(with = "millis")]
    pub rolling_limit_wait: Duration,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicy {
            timeout: Duration::from_secs(10),
            max_attempts: 4,
            base_backoff: Duration::from_millis(250),
            max_wait: Duration::from_secs(30),
            rolling_limit_wait: Duration::from_secs(10),
        }
    }
}

mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

impl CallPolicy {
    /// Runs `attempt` (given the attempt number, from 1) until it succeeds,
    /// fails permanently, or the attempts run out.
    ///
    /// # Errors
    ///
    /// The last attempt's error.
    pub async fn run<T, F, Fut>(&self, provider: &'static str, mut attempt: F) -> Result<T, ProviderError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        use tracing::Instrument;
        // One span per provider call, inside the node run's span (pipeline,
        // node, execution, lead) when a plugin made it.
        let span = tracing::debug_span!("provider_call", provider);
        let started = std::time::Instant::now();
        let result = async move {
        let mut n = 1;
        loop {
            let left = caller_left();
            let timeout = left.map_or(self.timeout, |left| left.min(self.timeout));
            if timeout.is_zero() {
                return Err(out_of_caller_time(provider, "the caller's deadline left no time for the call".into()));
            }
            let outcome = match tokio::time::timeout(timeout, attempt(n)).await {
                Ok(outcome) => outcome,
                Err(_) if timeout < self.timeout => {
                    return Err(out_of_caller_time(
                        provider,
                        format!("no answer within the {} ms the caller's deadline left", timeout.as_millis()),
                    ));
                }
                Err(_) => Attempt::Retry {
                    error: ProviderError::new(
                        provider,
                        None,
                        "timeout",
                        format!("no answer within {} ms", self.timeout.as_millis()),
                        ErrorClass::Transient,
                    ),
                    after: None,
                },
            };
            match outcome {
                Attempt::Done(value) => return Ok(value),
                Attempt::Fail(error) => return Err(error),
                Attempt::Retry { error, after } => {
                    if n >= self.max_attempts {
                        return Err(error);
                    }
                    let wait = after.unwrap_or_else(|| self.backoff(n));
                    if wait > self.max_wait {
                        let mut error = error;
                        error.message = format!("{} (asked to wait {} s)", error.message, wait.as_secs());
                        return Err(error);
                    }
                    if let Some(left) = caller_left()
                        && wait >= left
                    {
                        let mut error = error;
                        error.message = format!(
                            "{} (asked to wait {} ms, more than the caller's deadline leaves: {} ms)",
                            error.message,
                            wait.as_millis(),
                            left.as_millis()
                        );
                        return Err(error);
                    }
                    tracing::debug!(provider, attempt = n, wait_ms = wait.as_millis() as u64, error = %error, "retrying");
                    tokio::time::sleep(wait).await;
                    n += 1;
                }
            }
        }
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => match e.class {
                ErrorClass::Transient => "transient",
                ErrorClass::NotFound => "not-found",
                ErrorClass::Invalid => "invalid",
                ErrorClass::Auth => "auth",
            },
        };
        crate::telemetry::TELEMETRY.provider_call(provider, outcome, started.elapsed());
        result
    }

    /// Exponential backoff with jitter: between half and all of
    /// `base × 2^(attempt-1)`, capped at `max_wait`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_backoff.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_wait);
        capped.mul_f64(0.5 + fastrand::f64() * 0.5)
    }
}

/// The transient error of a call its caller's deadline cut short.
fn out_of_caller_time(provider: &'static str, message: String) -> ProviderError {
    ProviderError::new(provider, None, "timeout", message, ErrorClass::Transient)
}

/// The wait a response asks for: `retry-after-ms` (milliseconds), or
/// `Retry-After` (seconds).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    // Duration::try_from_secs_f64 refuses NaN, infinity and overflow, which
    // a misbehaving server could send.
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()) {
        return Duration::try_from_secs_f64(ms.max(0.0) / 1000.0).ok();
    }
    text("retry-after").and_then(|v| v.parse::<f64>().ok()).and_then(|s| Duration::try_from_secs_f64(s.max(0.0)).ok())
}

/// The attempt outcome for a request that got no response.
pub fn transport_error<T>(provider: &'static str, error: &reqwest::Error) -> Attempt<T> {
    let code = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else {
        "transport"
    };
    Attempt::Retry {
        error: ProviderError::new(provider, None, code, error.to_string(), ErrorClass::Transient),
        after: None,
    }
}

/// The shared HTTP client: rustls, connection pooling.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("handoff/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("the HTTP client builds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> CallPolicy {
        CallPolicy { base_backoff: Duration::from_millis(1), ..CallPolicy::default() }
    }

    fn transient() -> ProviderError {
        ProviderError::new("test", Some(503), "unavailable", "down", ErrorClass::Transient)
    }

    #[tokio::test]
    async fn retries_transient_failures_then_succeeds() {
        let calls = AtomicU32::new(0);
        let result = fast()
            .run("test", |n| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move { if n < 3 { Attempt::Retry { error: transient(), after: None } } else { Attempt::Done(n) } }
            })
            .await;
        assert_eq!(result, Ok(3));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = fast()
            .run("test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Attempt::Fail(ProviderError::new("test", Some(400), "INVALID", "bad", ErrorClass::Invalid)) }
            })
            .await;
        assert_eq!(result.unwrap_err().code, "INVALID");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_with_the_last_error() {
        let policy = CallPolicy { max_attempts: 2, ..fast() };
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = policy
            .run("test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Attempt::Retry { error: transient(), after: None } }
            })
            .await;
        assert_eq!(result.unwrap_err().status, Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wait_longer_than_allowed_returns_instead_of_sleeping() {
        let policy = CallPolicy { max_wait: Duration::from_secs(5), ..fast() };
        let result: Result<(), _> = policy
            .run("test", |_| async { Attempt::Retry { error: transient(), after: Some(Duration::from_secs(60)) } })
            .await;
        assert!(result.unwrap_err().message.contains("asked to wait 60 s"));
    }

    #[tokio::test]
    async fn a_hung_attempt_times_out_and_is_retried() {
        let policy = CallPolicy { timeout: Duration::from_millis(20), ..fast() };
        let result = policy
            .run("test", |n| async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Attempt::Done(n)
            })
            .await;
        assert_eq!(result, Ok(2));
    }

    /// A caller with a fixed time left.
    struct Left(Duration);
    impl TimeLeft for Left {
        fn time_left(&self) -> Duration {
            self.0
        }
    }

    #[tokio::test]
    async fn a_wait_past_the_callers_deadline_returns_a_transient_error_at_once() {
        // HubSpot's rolling limit asks ten seconds; the run has one left.
        let started = std::time::Instant::now();
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = within_deadline(Arc::new(Left(Duration::from_secs(1))), async {
            fast()
                .run("hubspot", |_| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    async { Attempt::Retry { error: transient(), after: Some(Duration::from_secs(10)) } }
                })
                .await
        })
        .await;
        let error = result.unwrap_err();
        assert_eq!(error.class, ErrorClass::Transient, "the caller retries later: {error:?}");
        assert!(error.message.contains("asked to wait 10000 ms, more than the caller's deadline leaves"), "{error:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert!(started.elapsed() < Duration::from_secs(10), "it did not sleep the ten seconds");
        // Outside a caller with a deadline, the same wait is slept.
        let policy = CallPolicy { max_attempts: 2, ..fast() };
        let slept = tokio::time::timeout(
            Duration::from_millis(200),
            policy.run("hubspot", |n| async move {
                if n == 1 {
                    Attempt::Retry { error: transient(), after: Some(Duration::from_secs(10)) }
                } else {
                    Attempt::Done(())
                }
            }),
        )
        .await;
        assert!(slept.is_err(), "without a caller's deadline the provider's wait is honoured");
    }

    #[tokio::test]
    async fn a_hung_attempt_stops_short_of_the_callers_deadline() {
        let result: Result<(), _> = within_deadline(Arc::new(Left(Duration::from_millis(300))), async {
            fast()
                .run("salesforce", |_| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Attempt::Done(())
                })
                .await
        })
        .await;
        let error = result.unwrap_err();
        assert_eq!((error.class, error.code.as_str()), (ErrorClass::Transient, "timeout"));
        assert!(error.message.contains("no answer within the 200 ms the caller's deadline left"), "{error:?}");
    }

    #[test]
    fn retry_after_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(1500)), "the precise header wins");
        headers.insert("retry-after-ms", "inf".parse().unwrap());
        assert_eq!(retry_after(&headers), None, "nonsense is ignored, not a panic");
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let policy = CallPolicy::default();
        for attempt in 1..6 {
            let full = policy.base_backoff * (1 << (attempt - 1));
            let wait = policy.backoff(attempt);
            assert!(wait >= full / 2 && wait <= full, "{attempt}: {wait:?}");
        }
        assert!(policy.backoff(30) <= policy.max_wait);
    }

    #[test]
    fn errors_map_to_capability_errors_with_code_and_message() {
        let e = ProviderError::new(
            "salesforce",
            Some(400),
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [Company]",
            ErrorClass::Invalid,
        );
        assert_eq!(
            CapabilityError::from(e),
            CapabilityError::Invalid(
                "salesforce REQUIRED_FIELD_MISSING (HTTP 400): Required fields are missing: [Company]".into()
            )
        );
        let e = ProviderError::new("slack", Some(200), "invalid_auth", "", ErrorClass::Auth);
        assert!(matches!(CapabilityError::from(e), CapabilityError::Unavailable(m) if m.contains("invalid_auth")));
    }
}
