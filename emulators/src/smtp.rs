//! An SMTP sink: accepts mail on a loopback port, keeps every message for
//! inspection, and answers with injected SMTP faults (`provider: "smtp"`).

use super::faults::FaultKind;
use super::{EmulatorState, RequestRecord};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// A message the sink received.
#[derive(Debug, Clone, Serialize)]
pub struct ReceivedEmail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The Subject header.
    pub subject: String,
    /// The whole message as received (headers and body).
    pub data: String,
}

/// Accepts connections until the task is aborted.
pub async fn serve(listener: TcpListener, state: Arc<EmulatorState>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = session(stream, state).await {
                tracing::debug!(error = %e, "smtp session ended");
            }
        });
    }
}

async fn session(stream: TcpStream, state: Arc<EmulatorState>) -> std::io::Result<()> {
    state.world().smtp_connections += 1;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sandbox.handoff ESMTP ready\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" => "250-sandbox.handoff\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 10485760\r\n".into(),
            "HELO" => "250 sandbox.handoff\r\n".into(),
            // AUTH PLAIN takes the sandbox secret as the password.
            "AUTH" => match command.split_whitespace().nth(2).map(plain_password) {
                Some(Some(password)) if password != state.settings().client_secret => {
                    "535 5.7.8 Authentication credentials invalid\r\n".into()
                }
                _ => "235 2.7.0 Authentication successful\r\n".into(),
            },
            "MAIL" => {
                let fault = state.world().faults.take("smtp", "MAIL", "MAIL");
                match fault {
                    Some(FaultKind::Status { status, .. }) => {
                        record(&state, "MAIL", status);
                        format!("{status} sandbox fault\r\n")
                    }
                    Some(FaultKind::Hang) => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        continue;
                    }
                    Some(FaultKind::Latency { ms }) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        from = address(&command);
                        "250 2.1.0 OK\r\n".into()
                    }
                    None => {
                        from = address(&command);
                        "250 2.1.0 OK\r\n".into()
                    }
                }
            }
            "RCPT" => {
                to.push(address(&command));
                "250 2.1.5 OK\r\n".into()
            }
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    data.push_str(line.strip_prefix('.').filter(|_| line.starts_with("..")).unwrap_or(&line));
                }
                let subject = data.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or_default().to_string();
                state.world().emails.push(ReceivedEmail {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    subject,
                    data,
                });
                record(&state, "DATA", 250);
                "250 2.0.0 OK queued\r\n".into()
            }
            "RSET" => {
                from.clear();
                to.clear();
                "250 2.0.0 OK\r\n".into()
            }
            "NOOP" => "250 2.0.0 OK\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => "502 5.5.2 Command not recognized\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

fn record(state: &EmulatorState, method: &str, status: u16) {
    state.world().requests.push(RequestRecord { provider: "smtp", method: method.into(), path: String::new(), status });
}

fn address(command: &str) -> String {
    command
        .split_once(':')
        .map(|(_, rest)| rest.trim().trim_start_matches('<').split('>').next().unwrap_or_default().to_string())
        .unwrap_or_default()
}

/// The password of an `AUTH PLAIN` argument (`base64(authzid NUL user NUL password)`).
fn plain_password(argument: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD.decode(argument).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split('\0').nth(2).map(str::to_string)
}
