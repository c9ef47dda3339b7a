//! Outbound email over SMTP (lettre's SMTP client, on tokio) behind `email`.
//!
//! Connections are ours: opened with `TCP_NODELAY` (lettre sends a message
//! and its closing `.` in two writes, and without it Nagle's algorithm holds
//! the `.` until the relay's delayed ACK, 40 ms on Linux, for every email),
//! secured and signed in once, and kept for the next email.

use super::policy::{Attempt, CallPolicy, ErrorClass, ProviderError};
use super::secret::Secret;
use crate::capabilities::{CapabilityError, Email, EmailMessage};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use std::time::{Duration, Instant};

const PROVIDER: &str = "smtp";
/// Connections kept for reuse.
const MAX_IDLE: usize = 8;
/// A connection idle this long is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection idle longer than this is checked (NOOP) before it is used.
const CHECK_AFTER: Duration = Duration::from_secs(2);

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
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<Credentials>,
    from: Mailbox,
    policy: CallPolicy,
    /// Connections ready for the next email, with when each was last used.
    idle: std::sync::Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl Smtp {
    /// A sender through `host:port` as `from`.
    ///
    /// # Errors
    ///
    /// When `from` is not an address or the relay's name is not one TLS can
    /// check.
    pub fn new(
        host: &str,
        port: u16,
        security: SmtpSecurity,
        credentials: Option<(String, Secret)>,
        from: &str,
        policy: CallPolicy,
    ) -> anyhow::Result<Self> {
        if security != SmtpSecurity::None {
            TlsParameters::new(host.to_string())
                .map_err(|e| anyhow::anyhow!("smtp.host '{host}' cannot be used for TLS: {e}"))?;
        }
        let from = from.parse().map_err(|e| anyhow::anyhow!("smtp.from '{from}' is not an address: {e}"))?;
        Ok(Smtp {
            host: host.to_string(),
            port,
            security,
            credentials: credentials.map(|(user, password)| Credentials::new(user, password.expose().to_string())),
            from,
            policy,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Connects, greets (EHLO), secures and signs in as sending would, and
    /// sends nothing: what `handoff doctor` checks.
    ///
    /// # Errors
    ///
    /// The relay's refusal, or why it could not be reached.
    pub async fn check(&self) -> Result<(), ProviderError> {
        let mut connection = self.connect().await.map_err(|e| match e {
            Failure::Connect(message) => {
                ProviderError::new(PROVIDER, None, "connection", message, ErrorClass::Transient)
            }
            Failure::Smtp(e) => provider_error(&e, ErrorClass::Invalid),
        })?;
        let _ = connection.quit().await;
        Ok(())
    }

    /// A connection ready to send: a kept one (checked first when it sat
    /// idle a while), or a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let kept = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let Some((mut connection, since)) = kept else { break };
            let idle = since.elapsed();
            if idle < CHECK_AFTER || (idle < IDLE_TIMEOUT && connection.test_connected().await) {
                return Ok(connection);
            }
            connection.abort().await;
        }
        self.connect().await
    }

    /// Opens a connection: TCP with no Nagle delay, TLS when asked
    /// (implicit or STARTTLS), EHLO, and the login.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let timeout = self.policy.timeout;
        let address = (self.host.as_str(), self.port);
        let tcp = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(Failure::Connect(format!("cannot reach {}:{}: {e}", self.host, self.port))),
            Err(_) => {
                return Err(Failure::Connect(format!("{}:{} did not answer within {timeout:?}", self.host, self.port)));
            }
        };
        tcp.set_nodelay(true).map_err(|e| Failure::Connect(format!("cannot set TCP_NODELAY: {e}")))?;
        let hello = ClientId::default();
        let tls = || TlsParameters::new(self.host.clone()).map_err(Failure::Smtp);
        let setup = async {
            let mut connection = match self.security {
                SmtpSecurity::Tls => {
                    let stream = implicit_tls(tcp, &self.host).await.map_err(Failure::Connect)?;
                    AsyncSmtpConnection::connect_with_transport(stream, &hello).await.map_err(Failure::Smtp)?
                }
                SmtpSecurity::None | SmtpSecurity::Starttls => {
                    AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &hello).await.map_err(Failure::Smtp)?
                }
            };
            if self.security == SmtpSecurity::Starttls {
                connection.starttls(tls()?, &hello).await.map_err(Failure::Smtp)?;
            }
            if let Some(credentials) = &self.credentials {
                connection.auth(&[Mechanism::Plain, Mechanism::Login], credentials).await.map_err(Failure::Smtp)?;
            }
            Ok(connection)
        };
        match tokio::time::timeout(timeout, setup).await {
            Ok(done) => done,
            Err(_) => {
                Err(Failure::Connect(format!("{}:{} did not finish greeting within {timeout:?}", self.host, self.port)))
            }
        }
    }

    /// Sends one email on a kept or new connection, keeping the connection
    /// when it is still good.
    async fn send_once(&self, envelope: &lettre::address::Envelope, bytes: &[u8]) -> Attempt<()> {
        let mut connection = match self.connection().await {
            Ok(connection) => connection,
            Err(Failure::Connect(message)) => {
                let error = ProviderError::new(PROVIDER, None, "connection", message, ErrorClass::Transient);
                return Attempt::Retry { error, after: None };
            }
            Err(Failure::Smtp(e)) => return classify(&e),
        };
        match connection.send(envelope, bytes).await {
            Ok(_) => {
                let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if idle.len() < MAX_IDLE && !connection.has_broken() {
                    idle.push((connection, Instant::now()));
                }
                Attempt::Done(())
            }
            Err(e) => classify(&e),
        }
    }
}

/// Why a connection could not be had.
enum Failure {
    /// No TCP or TLS connection.
    Connect(String),
    /// The relay refused (greeting, STARTTLS, login).
    Smtp(SmtpError),
}

/// TLS from the first byte (SMTPS, port 465), checked against the web's
/// root certificates.
async fn implicit_tls(tcp: tokio::net::TcpStream, host: &str) -> Result<Box<dyn AsyncTokioStream>, String> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("TLS: {host}: {e}"))?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
    Ok(Box::new(Tls(stream)))
}

/// A TLS stream as lettre's client takes one.
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn provider_error(e: &SmtpError, class: ErrorClass) -> ProviderError {
    let code = e.status().map_or_else(|| "connection".into(), |c| c.to_string());
    ProviderError::new(PROVIDER, None, code, e.to_string(), class)
}

/// A refusal that retrying will not change fails; anything else is tried again.
fn classify(e: &SmtpError) -> Attempt<()> {
    if e.is_permanent() {
        Attempt::Fail(provider_error(e, ErrorClass::Invalid))
    } else {
        Attempt::Retry { error: provider_error(e, ErrorClass::Transient), after: None }
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
        let (envelope, bytes) = (email.envelope().clone(), email.formatted());
        self.policy.run(PROVIDER, |_| self.send_once(&envelope, &bytes)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_can_be_dropped_outside_the_runtime_it_was_made_on() {
        // The last reference to the connectors may go on a thread outside
        // any runtime: lettre's own pool once panicked dropping there ("no
        // reactor running"), and a panic in a drop aborts the process.
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let smtp = runtime
            .block_on(async {
                Smtp::new("127.0.0.1", 2525, SmtpSecurity::None, None, "handoff@example.com", CallPolicy::default())
            })
            .unwrap();
        std::thread::spawn(move || drop(smtp)).join().expect("dropping the sender on a plain thread does not panic");
    }
}
