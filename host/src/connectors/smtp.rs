//! Outbound email over SMTP (lettre, on tokio) behind `email`.

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError};
use super::secret::Secret;
use crate::capabilities::{CapabilityError, Email, EmailMessage};
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

const PROVIDER: &str = "smtp";

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection (a local relay or the sandbox sink).
    None,
    /// STARTTLS upgrade (port 587).
    #[default]
    Starttls,
    /// TLS from the start (port 465).
    Tls,
}

/// An SMTP sender.
pub struct Smtp {
    /// Always `Some` until dropped.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    policy: CallPolicy,
    /// The runtime the pool's connections live on: dropping the pool
    /// spawns their closing on it, and the last reference to the connector
    /// may go on a thread outside any runtime (the sandbox's store-drop
    /// thread, after a node run).
    runtime: Option<tokio::runtime::Handle>,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let transport = self.transport.take();
        match (&self.runtime, tokio::runtime::Handle::try_current()) {
            (Some(runtime), Err(_)) => {
                let _inside = runtime.enter();
                drop(transport);
            }
            _ => drop(transport),
        }
    }
}

impl Smtp {
    /// A sender through `host:port` as `from`.
    ///
    /// # Errors
    ///
    /// When `from` is not an address or the relay cannot be set up.
    pub fn new(
        host: &str,
        port: u16,
        security: SmtpSecurity,
        credentials: Option<(String, Secret)>,
        from: &str,
        policy: CallPolicy,
    ) -> anyhow::Result<Self> {
        let mut builder = match security {
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
        }
        .port(port)
        .timeout(Some(policy.timeout))
        // Connections are kept and reused (checked with NOOP first): a new
        // connection per email cost a TCP handshake and an SMTP greeting,
        // EHLO (and TLS and AUTH against a real relay) every time.
        .pool_config(
            lettre::transport::smtp::PoolConfig::new().max_size(4).idle_timeout(std::time::Duration::from_secs(30)),
        );
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password.expose().to_string()));
        }
        let from = from.parse().map_err(|e| anyhow::anyhow!("smtp.from '{from}' is not an address: {e}"))?;
        Ok(Smtp { transport: Some(builder.build()), from, policy, runtime: tokio::runtime::Handle::try_current().ok() })
    }
}

impl Smtp {
    /// Connects, greets (EHLO), secures and signs in as sending would, and
    /// sends nothing: what `handoff doctor` checks.
    ///
    /// # Errors
    ///
    /// The relay's refusal, or why it could not be reached.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let transport = self.transport.as_ref().expect("the transport lives until the sender is dropped");
        match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(ProviderError::new(PROVIDER, None, "connection", "the relay did not answer", ErrorClass::Transient))
            }
            Err(e) => {
                let code = e.status().map_or_else(|| "connection".into(), |c| c.to_string());
                Err(ProviderError::new(PROVIDER, None, code, e.to_string(), ErrorClass::Invalid))
            }
        }
    }
}

fn mailboxes(list: &[String]) -> Result<Vec<Mailbox>, CapabilityError> {
    list.iter()
        .map(|a| a.parse().map_err(|e| CapabilityError::Invalid(format!("'{a}' is not an email address: {e}"))))
        .collect()
}

#[async_trait::async_trait]
impl Email for Smtp {
    async fn send(&self, message: EmailMessage) -> Result<(), CapabilityError> {
        let mut builder = Message::builder().from(self.from.clone()).subject(message.subject.clone());
        for to in mailboxes(&message.to)? {
            builder = builder.to(to);
        }
        for cc in mailboxes(&message.cc)? {
            builder = builder.cc(cc);
        }
        let email = match &message.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(message.text.clone(), html.clone())),
            None => builder.header(ContentType::TEXT_PLAIN).body(message.text.clone()),
        }
        .map_err(|e| CapabilityError::Invalid(format!("cannot build the email: {e}")))?;
        self.policy
            .run(PROVIDER, |_| {
                let email = email.clone();
                async move {
                    let transport = self.transport.as_ref().expect("the transport lives until the sender is dropped");
                    match transport.send(email).await {
                        Ok(_) => Attempt::Done(()),
                        Err(e) => {
                            let code = e.status().map_or_else(|| "connection".into(), |c| c.to_string());
                            if e.is_permanent() {
                                Attempt::Fail(ProviderError::new(
                                    PROVIDER,
                                    None,
                                    code,
                                    e.to_string(),
                                    ErrorClass::Invalid,
                                ))
                            } else {
                                Attempt::Retry {
                                    error: ProviderError::new(
                                        PROVIDER,
                                        None,
                                        code,
                                        e.to_string(),
                                        ErrorClass::Transient,
                                    ),
                                    after: None,
                                }
                            }
                        }
                    }
                }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_can_be_dropped_outside_the_runtime_it_was_made_on() {
        // The sandbox drops a run's store (and with it, at times, the last
        // reference to the connectors) on a thread of its own: the SMTP
        // pool's drop once panicked there ("no reactor running"), and the
        // panic in a drop aborted the process.
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let smtp = runtime
            .block_on(async {
                Smtp::new("127.0.0.1", 2525, SmtpSecurity::None, None, "handoff@example.com", CallPolicy::default())
            })
            .unwrap();
        std::thread::spawn(move || drop(smtp)).join().expect("dropping the sender on a plain thread does not panic");
    }
}
