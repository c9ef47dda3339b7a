use handoff::capabilities::{CapabilityError, Email, EmailMessage};
use handoff::connectors::smtp::{Smtp, SmtpSecurity};
use handoff_emulators::{Emulators, Fault, FaultKind};
use handoff_tests::{emulators, fast_policy};

fn mailer(sandbox: &Emulators) -> Smtp {
    Smtp::new(
        "127.0.0.1",
        sandbox.smtp.port(),
        SmtpSecurity::None,
        None,
        "Handoff <handoff@sandbox.test>",
        fast_policy(),
    )
    .unwrap()
}

fn message(subject: &str) -> EmailMessage {
    EmailMessage {
        to: vec!["lena.fischer@handoff-demo.com".into()],
        cc: vec!["marco.rossi@handoff-demo.com".into()],
        subject: subject.into(),
        text: "Greta Holm (Umbrella Health) is yours.".into(),
        html: Some("<p>Greta Holm (Umbrella Health) is yours.</p>".into()),
    }
}

#[tokio::test]
async fn delivers_text_and_html_to_every_recipient() {
    let sb = emulators().await;
    mailer(&sb).send(message("New MQL: Greta Holm")).await.unwrap();
    let world = sb.state.world();
    let email = &world.emails[0];
    assert_eq!(email.from, "handoff@sandbox.test");
    assert_eq!(email.to, ["lena.fischer@handoff-demo.com", "marco.rossi@handoff-demo.com"]);
    assert_eq!(email.subject, "New MQL: Greta Holm");
    assert!(email.data.contains("text/html") && email.data.contains("text/plain"));
}

#[tokio::test]
async fn transient_smtp_failures_are_retried_and_permanent_ones_are_not() {
    let sb = emulators().await;
    let fault = |status| Fault {
        id: 0,
        provider: "smtp".into(),
        endpoint: None,
        method: None,
        kind: FaultKind::Status { status, retry_after: None },
        rate: 1.0,
        times: Some(1),
    };
    sb.state.world().faults.add(fault(451));
    mailer(&sb).send(message("after a 451")).await.unwrap();
    assert_eq!(sb.state.world().emails.len(), 1);

    sb.state.world().faults.add(fault(550));
    let error = mailer(&sb).send(message("refused")).await.unwrap_err();
    assert!(matches!(error, CapabilityError::Invalid(_)), "{error:?}");
    assert_eq!(sb.state.world().emails.len(), 1);
}

#[tokio::test]
async fn a_bad_address_is_invalid() {
    let sb = emulators().await;
    let mut bad = message("x");
    bad.to = vec!["not an address".into()];
    assert!(matches!(mailer(&sb).send(bad).await, Err(CapabilityError::Invalid(_))));
}

#[tokio::test]
async fn emails_go_out_on_one_kept_connection_and_a_broken_one_is_replaced() {
    let sb = emulators().await;
    let mailer = mailer(&sb);
    for n in 1..=3 {
        mailer.send(message(&format!("lead {n}"))).await.unwrap();
    }
    assert_eq!(sb.state.world().emails.len(), 3);
    assert_eq!(sb.state.world().smtp_connections, 1, "one connection: no greeting, EHLO or login per email");

    // The relay refuses on the kept connection (421: closing): the retry
    // opens a new one and the email goes.
    sb.state.world().faults.add(Fault {
        id: 0,
        provider: "smtp".into(),
        endpoint: None,
        method: None,
        kind: FaultKind::Status { status: 421, retry_after: None },
        rate: 1.0,
        times: Some(1),
    });
    mailer.send(message("after a 421")).await.unwrap();
    assert_eq!(sb.state.world().emails.len(), 4);
    assert_eq!(sb.state.world().smtp_connections, 2);
}
