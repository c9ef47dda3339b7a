//! `handoff doctor` against the emulators: a setup as it should be passes
//! every check and changes nothing; each thing that can be wrong with a
//! real setup (scopes, properties, options, lists, fields, picklist values,
//! notification types, channels, credentials, the relay, the public URL,
//! the ledger) is reported alone, with its fix.

use handoff::connectors::ConnectorsConfig;
use handoff::doctor::{Finding, Level, Needs, Options, check};
use handoff::ledger::Database;
use handoff_emulators::{EmulatorState, Emulators, Fixture, Settings};
use handoff_tests::TestHost;
use std::path::Path;

const PUBLIC_URL: &str = "https://handoff.acme.example";

fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// What the shipped pipelines need, as `handoff doctor` reads them.
async fn shipped_needs() -> Needs {
    let host = TestHost::new().await;
    let pipelines: Vec<_> = handoff::shipped::SERVED
        .iter()
        .map(|p| handoff::pipeline::load_file(&repo(p), &host.registry).expect("the shipped pipelines are valid"))
        .collect();
    Needs::of(&pipelines, &host.registry, "#revops-alerts")
}

async fn start(fixture: Fixture, settings: Settings) -> Emulators {
    let any = "127.0.0.1:0".parse().unwrap();
    let state = EmulatorState::new(fixture, settings, handoff_emulators::system_clock());
    Emulators::start_with(any, any, state).await.unwrap()
}

/// A way the setup can be wrong.
#[derive(Default)]
struct Case {
    fixture: Option<fn(&mut Fixture)>,
    settings: Option<fn(&mut Settings)>,
    connectors: Option<fn(&mut ConnectorsConfig)>,
    /// `Some("")`: none given.
    public_url: Option<&'static str>,
}

async fn doctor(case: &Case, needs: &Needs, ledger_dir: &Path) -> (Vec<Finding>, Emulators) {
    let mut fixture = Fixture::builtin();
    let mut settings = Settings::default();
    if let Some(change) = case.fixture {
        change(&mut fixture);
    }
    if let Some(change) = case.settings {
        change(&mut settings);
    }
    let emulators = start(fixture, settings).await;
    let mut connectors = handoff_tests::emulator_connectors(&emulators);
    if let Some(change) = case.connectors {
        change(&mut connectors);
    }
    let options = Options {
        connectors,
        needs: needs.clone(),
        // `Some("")`: no --public-url.
        public_url: match case.public_url {
            Some("") => None,
            given => Some(given.unwrap_or(PUBLIC_URL).to_string()),
        },
        database: Database::Sqlite(ledger_dir.join("handoff.db")),
    };
    (check(&options).await, emulators)
}

fn failures(findings: &[Finding]) -> Vec<&Finding> {
    findings.iter().filter(|f| f.level == Level::Fail).collect()
}

#[tokio::test]
async fn the_shipped_pipelines_needs_are_read_from_their_configs() {
    let needs = shipped_needs().await;
    let statuses: Vec<&str> = needs.lead_statuses.keys().map(String::as_str).collect();
    assert_eq!(statuses, ["Closed - Not Converted", "Working - Contacted"]);
    let (labels, _) = &needs.lead_fields["Rejection_Reason__c"];
    assert_eq!(labels.len(), 8, "the Reject menu's labels are written to the reason field: {labels:?}");
    assert!(labels.contains(&"Timing not right".to_string()));
    assert_eq!(needs.lists.keys().map(String::as_str).collect::<Vec<_>>(), ["501", "502", "503", "504", "505", "506"]);
    for property in ["handoff_rejection_reason", "handoff_recycle_count", "recent_conversion_event_name"] {
        assert!(needs.contact_properties.contains_key(property), "{property}: {:?}", needs.contact_properties);
    }
    for option in [("hs_lead_status", "BAD_TIMING"), ("hs_lead_status", "UNQUALIFIED"), ("lifecyclestage", "lead")] {
        assert!(
            needs.property_options.contains_key(&(option.0.to_string(), option.1.to_string())),
            "{option:?}: {:?}",
            needs.property_options
        );
    }
    assert!(needs.notification_types.contains_key("Handoff_Priority_MQL"));
    let channels: Vec<&str> = needs.channels.keys().map(String::as_str).collect();
    assert_eq!(channels, ["#handoff-digest", "#revops-alerts", "#sales-priority"]);
    assert!(needs.email.is_some() && needs.llm.is_some() && needs.marketing_write.is_some());
    assert_eq!(needs.hubspot_paths, ["/webhooks/hubspot"]);
    assert_eq!(needs.slack_paths, ["/slack/interactions"]);
}

#[tokio::test]
async fn a_setup_as_it_should_be_passes_every_check_and_nothing_is_written() {
    let needs = shipped_needs().await;
    let dir = tempfile::tempdir().unwrap();
    let (findings, emulators) = doctor(&Case::default(), &needs, dir.path()).await;
    let text = handoff::doctor::render(&findings);
    assert!(failures(&findings).is_empty() && !findings.iter().any(|f| f.level == Level::Warn), "{text}");
    for needle in [
        "token accepted (portal 44000001)",
        "the 6 nurture lists exist",
        "contact properties the pipelines use exist, with their options",
        "HubSpot's webhook target URL: https://handoff.acme.example/webhooks/hubspot",
        "Slack's interactivity request URL: https://handoff.acme.example/slack/interactions",
        "Lead and Task fields the pipelines write exist and are editable",
        "the custom notification type Handoff_Priority_MQL exists",
        "channels exist: #handoff-digest, #revops-alerts, #sales-priority",
        "the model claude-sandbox is available",
        "greets",
        "created when the server starts",
        "nothing was changed",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
    // Read-only: no record made or changed, no message sent, no email.
    let world = emulators.state.world();
    let writes: Vec<String> = world
        .requests
        .iter()
        .filter(|r| match r.method.as_str() {
            "GET" => false,
            "POST" => ![
                "/oauth/v2/private-apps/get/access-token-info",
                "/services/oauth2/token",
                "/auth.test",
                "/conversations.list",
            ]
            .contains(&r.path.as_str()),
            _ => true,
        })
        .map(|r| format!("{} {} {}", r.provider, r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "doctor wrote: {writes:?}");
    assert!(world.emails.is_empty() && world.slack.messages.is_empty());
    assert!(!dir.path().join("handoff.db").exists(), "the ledger is not created by a check");
}

#[tokio::test]
async fn each_problem_is_reported_alone_with_its_fix() {
    let needs = shipped_needs().await;
    let cases: Vec<(&str, Case, &str, &str)> = vec![
        (
            "a HubSpot scope the app lacks",
            Case { settings: Some(|s| s.hubspot_scopes.retain(|s| s != "crm.lists.write")), ..Case::default() },
            "the private app lacks the scope crm.lists.write",
            "Private Apps",
        ),
        (
            "a HubSpot token it refuses",
            Case {
                connectors: Some(|c| {
                    c.hubspot.as_mut().unwrap().token = Some(handoff::connectors::Secret::new("pat-old"));
                }),
                ..Case::default()
            },
            "the private app token: refused",
            "HANDOFF_HUBSPOT_TOKEN",
        ),
        (
            "a contact property nobody created",
            Case {
                fixture: Some(|f| f.hubspot.properties.retain(|p| p.name != "handoff_rejection_reason")),
                ..Case::default()
            },
            "the contact property handoff_rejection_reason does not exist",
            "Create property",
        ),
        (
            "a lead status option HubSpot lacks",
            Case {
                fixture: Some(|f| {
                    let status = f.hubspot.properties.iter_mut().find(|p| p.name == "hs_lead_status").unwrap();
                    status.options.retain(|o| o != "BAD_TIMING");
                }),
                ..Case::default()
            },
            "hs_lead_status has no option BAD_TIMING",
            "add the option BAD_TIMING",
        ),
        (
            "a count property nobody created",
            Case {
                fixture: Some(|f| f.hubspot.properties.retain(|p| p.name != "handoff_recycle_count")),
                ..Case::default()
            },
            "the contact property handoff_recycle_count does not exist",
            "internal name handoff_recycle_count (Number)",
        ),
        (
            "an active list where a static one belongs",
            Case {
                fixture: Some(|f| {
                    f.hubspot.lists.iter_mut().find(|l| l.list_id == "502").unwrap().processing_type =
                        Some("DYNAMIC".into());
                }),
                ..Case::default()
            },
            "list 502 ('Nurture - No budget (re-evaluate in 90 days)') is an active list",
            "create a static contact list",
        ),
        (
            "a nurture list that was deleted",
            Case { fixture: Some(|f| f.hubspot.lists.retain(|l| l.list_id != "505")), ..Case::default() },
            "list 505 does not exist",
            "create a static contact list",
        ),
        (
            "no public URL",
            Case { connectors: None, public_url: Some(""), ..Case::default() },
            "no public URL: HubSpot signs each webhook with the URL it calls",
            "--public-url",
        ),
        (
            "a Salesforce secret it refuses",
            Case {
                connectors: Some(|c| {
                    c.salesforce.as_mut().unwrap().auth = handoff::connectors::SalesforceAuth::ClientCredentials {
                        client_id: "sandbox-client".into(),
                        client_secret: handoff::connectors::Secret::new("rotated"),
                    };
                }),
                ..Case::default()
            },
            "refused",
            "Client Credentials",
        ),
        (
            "the reason field missing",
            Case {
                fixture: Some(|f| {
                    f.salesforce_fields.get_mut("Lead").unwrap().retain(|x| x.name != "Rejection_Reason__c");
                }),
                ..Case::default()
            },
            "Lead has no field Rejection_Reason__c",
            "Fields & Relationships: create Rejection_Reason__c (Picklist with the values Timing not right",
        ),
        (
            "a reason the picklist lacks",
            Case {
                fixture: Some(|f| {
                    let field = &mut f.salesforce_fields.get_mut("Lead").unwrap()[0];
                    field.values.retain(|v| v != "No budget");
                }),
                ..Case::default()
            },
            "Lead.Rejection_Reason__c has no picklist value 'No budget'",
            "Values: add 'No budget'",
        ),
        (
            "a field the integration user cannot edit",
            Case {
                fixture: Some(|f| f.salesforce_fields.get_mut("Lead").unwrap()[0].updateable = false),
                ..Case::default()
            },
            "Lead.Rejection_Reason__c cannot be written by this user",
            "Field-Level Security",
        ),
        (
            "no custom notification type",
            Case {
                fixture: Some(|f| f.salesforce.get_mut("CustomNotificationType").unwrap().clear()),
                ..Case::default()
            },
            "pushes the custom notification type Handoff_Priority_MQL",
            "Setup › Custom Notifications › New: API name Handoff_Priority_MQL",
        ),
        (
            "a Slack scope the bot lacks",
            Case { settings: Some(|s| s.slack_scopes.retain(|s| s != "users:read.email")), ..Case::default() },
            "the bot lacks the scope users:read.email (users.lookupByEmail needs it)",
            "reinstall the app",
        ),
        (
            "a Slack token it refuses",
            Case {
                connectors: Some(|c| {
                    c.slack.as_mut().unwrap().bot_token = Some(handoff::connectors::Secret::new("xoxb-old"));
                }),
                ..Case::default()
            },
            "the bot token: refused",
            "Bot User OAuth Token",
        ),
        (
            "no Slack signing secret",
            Case { connectors: Some(|c| c.slack.as_mut().unwrap().signing_secret = None), ..Case::default() },
            "no signing secret",
            "HANDOFF_SLACK_SIGNING_SECRET",
        ),
        (
            "a channel that does not exist",
            Case { fixture: Some(|f| f.slack.channels.retain(|c| c.name != "sales-priority")), ..Case::default() },
            "the channel #sales-priority does not exist",
            "create #sales-priority",
        ),
        (
            "a model the key cannot use",
            Case { connectors: Some(|c| c.anthropic.as_mut().unwrap().model = "claude-2.0".into()), ..Case::default() },
            "the model claude-2.0 is not available to this key",
            "HANDOFF_ANTHROPIC_MODEL",
        ),
        (
            "an SMTP login it refuses",
            Case {
                connectors: Some(|c| {
                    let smtp = c.smtp.as_mut().unwrap();
                    smtp.username = Some("handoff".into());
                    smtp.password = Some(handoff::connectors::Secret::new("wrong"));
                }),
                ..Case::default()
            },
            "535",
            "HANDOFF_SMTP_PASSWORD",
        ),
        (
            "an SMTP relay that is not there",
            Case { connectors: Some(|c| c.smtp.as_mut().unwrap().port = 1), ..Case::default() },
            "the relay 127.0.0.1:1",
            "smtp.port",
        ),
        (
            "no [salesforce] at all",
            Case { connectors: Some(|c| c.salesforce = None), ..Case::default() },
            "[salesforce] is not configured",
            "HANDOFF_SALESFORCE_CLIENT_ID",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (name, case, what, fix) in &cases {
        let (findings, _emulators) = doctor(case, &needs, dir.path()).await;
        let failed = failures(&findings);
        let text = handoff::doctor::render(&findings);
        assert_eq!(failed.len(), 1, "{name}: one problem, reported once:\n{text}");
        assert!(failed[0].what.contains(what), "{name}: {what:?} in:\n{text}");
        assert!(failed[0].fix.as_deref().unwrap_or_default().contains(fix), "{name}: fix {fix:?} in:\n{text}");
    }
    // The login that works passes.
    let (findings, _emulators) = doctor(
        &Case {
            connectors: Some(|c| {
                let smtp = c.smtp.as_mut().unwrap();
                smtp.username = Some("handoff".into());
                smtp.password = Some(handoff::connectors::Secret::new(handoff_emulators::SECRET));
            }),
            ..Case::default()
        },
        &needs,
        dir.path(),
    )
    .await;
    assert!(failures(&findings).is_empty(), "{}", handoff::doctor::render(&findings));
    assert!(findings.iter().any(|f| f.what.contains("greets and takes the login")));
}

#[tokio::test]
async fn a_public_url_hubspot_cannot_reach_is_a_warning_and_no_model_or_relay_is_one_too() {
    let needs = shipped_needs().await;
    let dir = tempfile::tempdir().unwrap();
    let case = Case {
        public_url: Some("http://127.0.0.1:8080"),
        connectors: Some(|c| {
            c.anthropic = None;
            c.smtp = None;
        }),
        // Scopes the server does without: only checks are lost.
        settings: Some(|s| {
            s.hubspot_scopes.retain(|s| s != "crm.lists.read");
            s.slack_scopes.retain(|s| s != "chat:write.public");
        }),
        ..Case::default()
    };
    let (findings, _emulators) = doctor(&case, &needs, dir.path()).await;
    let text = handoff::doctor::render(&findings);
    assert!(failures(&findings).is_empty(), "{text}");
    for needle in [
        "is not https",
        "is not reachable from the internet",
        "writes engagement summaries from its template",
        "sends no email backup",
        "without the scope crm.lists.read, the nurture lists cannot be checked",
        "without the scope chat:write.public the bot posts only to channels it was invited to",
    ] {
        assert!(
            findings.iter().any(|f| f.level == Level::Warn && f.what.contains(needle)),
            "{needle:?} as a warning in:\n{text}"
        );
    }
}

#[tokio::test]
async fn the_ledger_is_checked_where_the_server_would_open_it() {
    let needs = Needs::default();
    let run = |database: Database| {
        let needs = needs.clone();
        async move {
            let options = Options { connectors: ConnectorsConfig::default(), needs, public_url: None, database };
            check(&options).await.into_iter().filter(|f| f.area == "Ledger").collect::<Vec<_>>()
        }
    };
    // A directory the server cannot write.
    let found = run(Database::Sqlite("/proc/handoff/handoff.db".into())).await;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].level, Level::Fail);
    assert!(found[0].what.contains("is not writable") && found[0].fix.as_deref().unwrap().contains("--data-dir"));

    // A ledger written by a newer binary.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("handoff.db");
    {
        let connection = rusqlite::Connection::open(&path).unwrap();
        connection
            .execute_batch(
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 INSERT INTO meta VALUES ('schema_version', '999');",
            )
            .unwrap();
    }
    let found = run(Database::Sqlite(path.clone())).await;
    assert_eq!(found[0].level, Level::Fail, "{found:?}");
    assert!(found[0].what.contains("newer than this binary"), "{found:?}");

    // One this binary made is up to date.
    drop(handoff::ledger::SqliteStore::open(&dir.path().join("current.db")).unwrap());
    let found = run(Database::Sqlite(dir.path().join("current.db"))).await;
    assert_eq!(found[0].level, Level::Ok, "{found:?}");
    assert!(found[0].what.contains("is up to date"), "{found:?}");

    // PostgreSQL that is not there, and a role that may not migrate.
    let url =
        std::env::var("HANDOFF_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let found =
        run(Database::Postgres { url: "postgres://postgres@127.0.0.1:1/test".into(), schema: "handoff".into() }).await;
    assert_eq!(found[0].level, Level::Fail);
    assert!(found[0].what.contains("connecting to PostgreSQL"), "{found:?}");
    assert!(found[0].fix.as_deref().unwrap().contains("HANDOFF_DATABASE_URL"));

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'handoff_doctor_reader') THEN
                 CREATE ROLE handoff_doctor_reader LOGIN;
               END IF;
             END $$;",
        )
        .await
        .unwrap();
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(host) => host.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    };
    let reader = format!(
        "postgres://handoff_doctor_reader@{host}:{}/{}",
        config.get_ports().first().copied().unwrap_or(5432),
        config.get_dbname().unwrap_or("test")
    );
    let schema = format!("handoff_doctor_{}", uuid::Uuid::now_v7().simple());
    let found = run(Database::Postgres { url: reader.clone(), schema: schema.clone() }).await;
    assert_eq!(found[0].level, Level::Fail, "{found:?}");
    assert!(found[0].what.contains("may not create the schema"), "{found:?}");
    assert!(found[0].fix.as_deref().unwrap().contains("GRANT CREATE ON DATABASE"), "{found:?}");

    // A schema it may use but not create tables in.
    let used = format!("handoff_doctor_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {used}; GRANT USAGE ON SCHEMA {used} TO handoff_doctor_reader;"))
        .await
        .unwrap();
    let found = run(Database::Postgres { url: reader, schema: used.clone() }).await;
    client.batch_execute(&format!("DROP SCHEMA {used}")).await.unwrap();
    assert_eq!(found[0].level, Level::Fail, "USAGE alone does not let migrations run: {found:?}");
    assert!(found[0].what.contains(&format!("may not create tables in the schema {used}")), "{found:?}");
    assert!(
        found[0]
            .fix
            .as_deref()
            .unwrap()
            .contains(&format!("GRANT USAGE, CREATE ON SCHEMA {used} TO handoff_doctor_reader"))
    );

    let found = run(Database::Postgres { url: url.clone(), schema }).await;
    assert_eq!(found[0].level, Level::Ok, "the owner may: {found:?}");
    assert!(found[0].what.contains("migrations to apply when the server starts"), "{found:?}");
}
