//! The `handoff` binary as a person or a script uses it: exit codes, what
//! it prints, and the compiled-component cache across restarts.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod durability;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn handoff(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .expect("handoff runs")
}

/// The built binary copied into `dir/bin`, as an operator installs it:
/// nothing of the checkout beside it.
fn standalone(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("handoff");
    std::fs::copy(env!("CARGO_BIN_EXE_handoff"), &copy).unwrap();
    copy
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_has_help_with_examples_and_only_the_options_it_takes() {
    let dir = tempfile::tempdir().unwrap();
    let top = handoff(dir.path(), &["--help"]);
    assert!(top.status.success());
    // (command, whether it keeps state, whether it loads plugins)
    for (command, state, plugins) in [
        ("validate", true, true),
        ("run", true, true),
        ("serve", true, true),
        ("demo", true, true),
        ("doctor", true, true),
        ("simulate", true, true),
        ("replay", true, true),
        ("plugin list", true, true),
        ("plugin schema", true, true),
        ("plugin new", false, false),
        ("lead list", true, false),
        ("lead show", true, false),
        ("metrics", true, false),
        ("rejections", true, false),
        ("roster", true, false),
        ("shadow report", true, false),
        ("sandbox", false, false),
        ("retry", false, false),
        ("init", false, false),
        ("schema", false, false),
    ] {
        let words: Vec<&str> = command.split(' ').collect();
        assert!(text(&top.stdout).contains(&format!("\n  {} ", words[0])), "{command} missing from --help");
        let mut args = words.clone();
        args.push("--help");
        let help = Command::new(env!("CARGO_BIN_EXE_handoff")).args(&args).output().unwrap();
        assert!(help.status.success(), "{command} --help");
        let help = text(&help.stdout);
        assert!(help.contains("Examples:\n  handoff "), "{command} --help has examples:\n{help}");
        assert_eq!(help.contains("--data-dir"), state, "{command} --help and --data-dir:\n{help}");
        assert_eq!(help.contains("--plugins"), plugins, "{command} --help and --plugins:\n{help}");
    }
    // The older spellings still work, out of sight.
    for old in ["plugins", "leads"] {
        assert!(!text(&top.stdout).contains(&format!("\n  {old} ")), "{old} is hidden");
    }
    assert!(handoff(dir.path(), &["plugins", "--json"]).status.success());
    let lead = handoff(dir.path(), &["lead", "1005"]);
    assert!(text(&lead.stderr).contains("no ledger"), "`lead ID` is `lead show ID`: {}", text(&lead.stderr));
}

#[test]
fn validate_accepts_the_shipped_pipeline_and_rejects_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = repo("pipelines/mql-intake.json");
    let ok = handoff(dir.path(), &["validate", shipped.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("ok: "));

    let broken = dir.path().join("broken.json");
    std::fs::write(
        &broken,
        r#"{
  "name": "broken",
  "version": 1,
  "trigger": {"type": "webhook", "path": "/h", "signature": "hubspot-v3"},
  "nodes": [
    {"id": "check", "plugin": "validat"}
  ],
  "connections": {"trigger": {"main": ["check"]}}
}"#,
    )
    .unwrap();
    let bad = handoff(dir.path(), &["validate", shipped.to_str().unwrap(), broken.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = text(&bad.stderr);
    assert!(stderr.contains("broken.json:6:21: error at /nodes/0/plugin: unknown plugin 'validat'"), "{stderr}");
    assert!(
        stderr.contains(
            "help: loaded plugins are: assign, dedupe, digest, escalate, fetch-contact, notify, recycle, route, summarize, validate;"
        ),
        "{stderr}"
    );
}

#[test]
fn validate_ends_on_hostile_files_and_checks_files_together() {
    let dir = tempfile::tempdir().unwrap();
    // `[}` once spun forever at 100% CPU; 50,000 `[` aborted on the stack.
    for (name, content) in [("stray.json", "[}".to_string()), ("deep.json", "[".repeat(50_000))] {
        let file = dir.path().join(name);
        std::fs::write(&file, content).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["validate", file.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                child.kill().unwrap();
                panic!("validate {name} never ends");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(&format!("{name}:1:")), "{name}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains("not valid JSON"), "{name}: {}", text(&out.stderr));
    }

    // Two pipelines at one path, and a rule naming a team the roster lacks.
    let handoff_file = dir.path().join("mql-handoff.json");
    let shipped = std::fs::read_to_string(repo("pipelines/mql-handoff.json")).unwrap();
    std::fs::write(&handoff_file, shipped.replace("\"team\": \"apac\"", "\"team\": \"apak\"")).unwrap();
    let intake = repo("pipelines/mql-intake.json");
    let roster = repo("pipelines/roster.json");
    let args =
        ["validate", "--roster", roster.to_str().unwrap(), intake.to_str().unwrap(), handoff_file.to_str().unwrap()];
    let out = handoff(dir.path(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("mql-intake.json listens at /webhooks/hubspot too"), "{stderr}");
    assert!(stderr.contains("team 'apak' is not in the roster"), "{stderr}");
    assert!(text(&out.stdout).contains("roster: "), "says which roster: {}", text(&out.stdout));
}

#[test]
fn run_prints_a_trace_and_json_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = repo("pipelines/mql-intake.json");
    let sample = repo("pipelines/samples/mql-valid.json");
    let args = ["run", pipeline.to_str().unwrap(), "--input", sample.to_str().unwrap()];

    let trace = handoff(dir.path(), &args);
    assert!(trace.status.success(), "{}", text(&trace.stderr));
    let stdout = text(&trace.stdout);
    assert!(stdout.contains("mql-intake v1 · execution"), "{stdout}");
    assert!(stdout.contains("✓ #1 validate (validate 0.1.0)  attempt 1"), "{stdout}");
    assert!(stdout.contains("out   valid"), "{stdout}");
    assert!(stdout.contains("validate:valid (no connection)"), "{stdout}");

    let json = handoff(dir.path(), &[&args[..], &["--json"]].concat());
    let record: Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(record["execution"]["status"], "completed");
    assert_eq!(record["execution"]["runs"][0]["outputs"][0]["port"], "valid");
    assert_eq!(record["execution"]["runs"][0]["input"]["id"], "90210");
}

#[test]
fn run_refuses_an_invalid_pipeline_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("p.json");
    std::fs::write(&pipeline, "{ nope").unwrap();
    let sample = repo("pipelines/samples/mql-valid.json");
    let out = handoff(dir.path(), &["run", pipeline.to_str().unwrap(), "--input", sample.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not valid JSON"));

    let input = dir.path().join("item.json");
    std::fs::write(&input, "not json").unwrap();
    let shipped = repo("pipelines/mql-intake.json");
    let out = handoff(dir.path(), &["run", shipped.to_str().unwrap(), "--input", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not valid JSON"), "{}", text(&out.stderr));
}

#[test]
fn plugins_lists_ports_and_a_restart_uses_the_compiled_cache() {
    let dir = tempfile::tempdir().unwrap();
    let first: Value = serde_json::from_slice(&handoff(dir.path(), &["plugin", "list", "--json"]).stdout).unwrap();
    let validate = first.as_array().unwrap().iter().find(|p| p["name"] == "validate").unwrap();
    assert_eq!(validate["outputs"], serde_json::json!(["valid", "invalid"]));
    assert_eq!(validate["cache"]["outcome"], "compiled");

    let second: Value = serde_json::from_slice(&handoff(dir.path(), &["plugin", "list", "--json"]).stdout).unwrap();
    assert_eq!(second[0]["cache"]["outcome"], "hit", "a restart loads the compiled component");

    let listing = text(&handoff(dir.path(), &["plugin", "list"]).stdout);
    assert!(listing.contains("validate 0.1.0  (built-in)"), "{listing}");
    assert!(listing.contains("outputs: valid, invalid"), "{listing}");

    let schema: Value = serde_json::from_slice(&handoff(dir.path(), &["plugin", "schema", "validate"]).stdout).unwrap();
    assert!(schema["properties"]["min_score"].is_object());
}

#[test]
fn run_with_the_sandbox_serves_plugins_real_connectors() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = repo("pipelines/mql-intake.json");
    let sample = repo("pipelines/samples/mql-valid.json");
    let out =
        handoff(dir.path(), &["run", pipeline.to_str().unwrap(), "--input", sample.to_str().unwrap(), "--sandbox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("validate:valid"));
}

#[test]
fn a_connector_config_with_missing_secrets_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("handoff.toml");
    std::fs::write(&config, "[slack]\n[hubspot]\n").unwrap();
    let pipeline = repo("pipelines/mql-intake.json");
    let sample = repo("pipelines/samples/mql-valid.json");
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "run",
            pipeline.to_str().unwrap(),
            "--input",
            sample.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .env_remove("HANDOFF_SLACK_BOT_TOKEN")
        .env_remove("HANDOFF_HUBSPOT_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("hubspot.token") && stderr.contains("slack.bot_token"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_credentials_and_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .current_dir(repo(""))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("HANDOFF_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("[hubspot]")
            && stderr.contains("[salesforce]")
            && stderr.contains("[slack]")
            && stderr.contains("--sandbox"),
        "{stderr}"
    );
}

#[test]
fn the_demo_hands_off_every_kind_of_lead() {
    // A copy of the binary, run in an empty directory: it carries its
    // pipelines, roster and plugins.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(standalone(dir.path()))
        .current_dir(dir.path())
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("demo")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for needle in [
        "opp owner told: 2",
        "duplicate: 4",
        "invalid: 6",
        "to queue: 4",
        "routed (priority)",
        "Tom Dubois skipped: out of office",
        // The SLA half, on virtual time: one Accept, one lead up the ladder.
        "in Slack: accepted, 'Working - Contacted' in Salesforce",
        "flagged for VP review by Vera Voss",
        "4 of 4 ladder timers fired exactly at their deadline",
        // Rejection recycling: rejected for timing, back to sales at day 90.
        "Sofia Moreno: rejected by",
        ": Timing not right (rejected)",
        "back to marketing (Timing not right): nurture list 501",
        "an MQL again, back to sales (recycle #1) (recycled)",
        "+90 days  Sofia Moreno: told",
        "rejections: 1 in all, 1 recycled to sales",
        // Handoff health for the week, and the digest as posted.
        "Speed to contact (median)",
        "SLA ladder steps fired: escalated 1, reassigned 1, reminded 1, vp-review 1",
        "The weekly digest, as posted to #handoff-digest",
        "Top rejection reasons: Timing not right (1)",
    ] {
        assert!(report.contains(needle), "{needle:?} missing from:\n{report}");
    }
    assert!(!report.contains("FAILED"), "{report}");
    // The lead nobody touches walks the ladder of the rep it was routed to
    // (which rep that is depends on the order the leads arrived in).
    let owner = report
        .lines()
        .find(|l| l.contains("Marcus Webb") && l.contains(" routed "))
        .and_then(|l| l.split(" routed ").nth(1))
        .map_or_else(
            || panic!("Marcus Webb's row names his rep:\n{report}"),
            |rest| rest.trim_start().split("  ").next().unwrap_or_default().to_string(),
        );
    for needle in [
        format!("Marcus Webb: {owner} reminded after 30 min without activity"),
        format!("Marcus Webb: {owner}'s manager"),
        format!("Marcus Webb: reassigned from {owner} to"),
    ] {
        assert!(report.contains(&needle), "{needle:?} missing from:\n{report}");
    }
}

#[test]
fn serve_sandbox_runs_from_any_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let sandbox = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let smtp = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = standalone(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let mut child = Command::new(binary)
        .current_dir(&work)
        .args(["serve", "--sandbox", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--sandbox-listen",
            &format!("127.0.0.1:{sandbox}"),
            "--sandbox-smtp-listen",
            &format!("127.0.0.1:{smtp}"),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let ready = loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            break answer;
        }
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            break String::new();
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}\n{}", text(&out.stderr));
    for pipeline in ["mql-handoff", "sla-enforcement", "slack-interactions", "weekly-digest"] {
        assert!(ready.contains(pipeline), "{pipeline} served: {ready}");
    }
    assert!(text(&out.stdout).contains("serving the built-in pipelines and roster"), "{}", text(&out.stdout));
    assert!(work.join(".handoff/shipped/roster.json").exists(), "copies kept in the data dir");
}

#[test]
fn validate_names_the_built_in_copy_it_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .current_dir(dir.path())
        .args(["--data-dir", dir.path().join("data").to_str().unwrap(), "validate", "pipelines/mql-handoff.json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("pipeline 'mql-handoff'") && stdout.contains("the built-in copy"), "{stdout}");
    assert!(stdout.contains("data/shipped/mql-handoff.json"), "names the file it read: {stdout}");
}

#[test]
fn init_writes_a_starter_that_validates_and_doctor_checks_as_written() {
    // The binary alone in an empty directory, as an operator starts.
    let dir = tempfile::tempdir().unwrap();
    let binary = standalone(dir.path());
    let data = dir.path().join("data");
    let run = |cwd: &Path, args: &[&str]| {
        // Nothing from this environment: no stray HANDOFF_* variable.
        Command::new(&binary).current_dir(cwd).arg("--data-dir").arg(&data).args(args).env_clear().output().unwrap()
    };
    let out = run(dir.path(), &["init", "acme-handoff"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("handoff serve --sandbox"), "{}", text(&out.stdout));
    let starter = dir.path().join("acme-handoff");
    let env = std::fs::read_to_string(starter.join(".env.example")).unwrap();
    for variable in
        ["HANDOFF_HUBSPOT_APP_SECRET=", "HANDOFF_SLACK_BOT_TOKEN=", "HANDOFF_API_TOKEN=", "HANDOFF_DATABASE_URL="]
    {
        assert!(env.contains(&format!("# {variable}")), "{variable} in .env.example");
    }
    let mut args = vec!["validate".to_string()];
    args.extend(handoff::shipped::SERVED.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let validated = run(&starter, &args);
    assert!(validated.status.success(), "{}", text(&validated.stderr));
    assert!(text(&validated.stdout).contains("roster: pipelines/roster.json"), "{}", text(&validated.stdout));
    assert!(!text(&validated.stdout).contains("built-in copy"), "the starter's own files are checked");
    // Serving on the starter's own settings names what is still to fill in.
    let serve = run(&starter, &["serve", "--config", "handoff.toml", "--listen", "127.0.0.1:0"]);
    assert_eq!(serve.status.code(), Some(1));
    assert!(text(&serve.stderr).contains("HANDOFF_HUBSPOT_TOKEN"), "{}", text(&serve.stderr));
    // So does doctor, with how to fix each.
    let doctor = run(&starter, &["doctor", "--config", "handoff.toml"]);
    assert_eq!(doctor.status.code(), Some(1), "{}", text(&doctor.stdout));
    let report = text(&doctor.stdout);
    for needle in
        ["FAIL  [hubspot] is not configured", "FAIL  [salesforce] is not configured", "handoff init writes one"]
    {
        assert!(report.contains(needle), "{needle:?} in:\n{report}");
    }
    // Against providers that are set up as they should be (the emulators),
    // every check passes; the JSON says the same per check.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let emulators = runtime.block_on(handoff::emulated::start(
        handoff_emulators::Settings::default(),
        std::sync::Arc::new(handoff::capabilities::SystemClock),
    ));
    let emulators = emulators.unwrap();
    std::fs::write(starter.join("sandbox.toml"), handoff::emulated::config_toml(emulators.http, emulators.smtp, true))
        .unwrap();
    let doctor = run(
        &starter,
        &["doctor", "--config", "sandbox.toml", "--public-url", "https://handoff.acme.example", "--json"],
    );
    let findings: Vec<Value> =
        serde_json::from_slice(&doctor.stdout).unwrap_or_else(|_| panic!("{}", text(&doctor.stderr)));
    assert!(doctor.status.success(), "{findings:#?}");
    assert!(findings.len() > 10 && findings.iter().all(|f| f["level"] == "ok"), "{findings:#?}");
    let again = run(dir.path(), &["init", "acme-handoff"]);
    assert_eq!(again.status.code(), Some(1), "an existing starter is never overwritten");
}

#[test]
fn the_deployment_files_match_the_binary() {
    // The Slack manifest grants every scope the connector's calls need, and
    // its interactivity URL is the shipped pipeline's trigger path.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("slack-app-manifest.json")).unwrap()).unwrap();
    let scopes: Vec<&str> =
        manifest["oauth_config"]["scopes"]["bot"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    // Every method the connector calls is in its scope table (which
    // `handoff doctor` checks a token against), and the manifest grants it.
    let connector = std::fs::read_to_string(repo("host/src/connectors/slack.rs")).unwrap();
    let table = handoff::connectors::slack::METHOD_SCOPES;
    // The scopes Slack's method reference gives (api.slack.com/methods),
    // written out here so that the table doctor checks against is checked too.
    let documented: &[(&str, &[&str])] = &[
        ("chat.postMessage", &["chat:write"]),
        ("chat.update", &["chat:write"]),
        ("conversations.open", &["im:write"]),
        ("conversations.history", &["im:history", "channels:history"]),
        ("conversations.list", &["channels:read", "groups:read"]),
        ("users.lookupByEmail", &["users:read", "users:read.email"]),
        ("views.open", &[]),
    ];
    assert_eq!(table, documented, "connectors::slack::METHOD_SCOPES against Slack's method reference");
    for method in
        connector.split('"').filter(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_alphabetic() || c == '.'))
    {
        if !["chat", "conversations", "users", "views"].iter().any(|api| method.starts_with(&format!("{api}."))) {
            continue;
        }
        let (_, needed) = table.iter().find(|(m, _)| *m == method).unwrap_or_else(|| panic!("{method}: which scope?"));
        for scope in *needed {
            assert!(scopes.contains(scope), "{method} needs {scope}");
        }
    }
    let interactions: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("pipelines/slack-interactions.json")).unwrap()).unwrap();
    let url = manifest["settings"]["interactivity"]["request_url"].as_str().unwrap();
    assert!(url.ends_with(interactions["trigger"]["path"].as_str().unwrap()), "{url}");

    // Every option the systemd unit passes is one the binary takes.
    let unit = std::fs::read_to_string(repo("deploy/handoff.service")).unwrap();
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let help =
        text(&handoff(dir.path(), &["serve", "--help"]).stdout) + &text(&handoff(dir.path(), &["--help"]).stdout);
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "{flag} is not an option of handoff serve");
    }
    assert!(unit.contains("KillSignal=SIGINT"), "the server stops gracefully on SIGINT");
}

#[test]
fn plugin_new_scaffolds_a_project() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("lead-tagger");
    let args = ["plugin", "new", "lead-tagger", "--lang", "python", "--dir", project.to_str().unwrap()];
    let out = handoff(dir.path(), &args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(project.join("app.py").exists());
    assert!(project.join("wit/deps/handoff-plugin/types.wit").exists());
    let again = handoff(dir.path(), &args);
    assert_eq!(again.status.code(), Some(1), "an existing project is never overwritten");
}

#[test]
fn leads_and_lead_read_the_ledger() {
    use handoff::lead::{LeadFacts, LeadState, Step};
    use handoff::ledger::{Ledger, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let missing = handoff(dir.path(), &["lead", "list"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("no ledger"), "{}", text(&missing.stderr));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&dir.path().join("handoff.db")).unwrap();
        let facts = LeadFacts {
            name: Some("Greta Holm".into()),
            company: Some("Umbrella Health".into()),
            owner: Some("Lena Fischer".into()),
            ..Default::default()
        };
        let steps = [
            Step {
                at: 1_795_000_000_000,
                state: LeadState::VALIDATED,
                detail: "meets the MQL criteria".into(),
                data: None,
            },
            Step {
                at: 1_795_000_000_020,
                state: LeadState::NOTIFIED,
                detail: "told lena.fischer@handoff-demo.com".into(),
                data: None,
            },
        ];
        store.record_steps("1005", "exec-1", &facts, &steps).await.unwrap();
    });
    let list = text(&handoff(dir.path(), &["lead", "list", "--state", "notified"]).stdout);
    assert!(list.contains("1005") && list.contains("Greta Holm") && list.contains("Lena Fischer"), "{list}");
    let timeline = text(&handoff(dir.path(), &["lead", "show", "1005"]).stdout);
    assert!(timeline.contains("validated") && timeline.contains("told lena.fischer@handoff-demo.com"), "{timeline}");
    assert_eq!(handoff(dir.path(), &["lead", "show", "999"]).status.code(), Some(1));
}

#[test]
fn serve_with_the_sandbox_takes_a_signed_webhook_to_a_notified_lead() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_handoff"))
        .current_dir(repo(""))
        .arg("--data-dir")
        .arg(dir.path())
        .args([
            "serve",
            "--sandbox",
            "--listen",
            "127.0.0.1:0",
            "--sandbox-listen",
            "127.0.0.1:0",
            "--sandbox-smtp-listen",
            "127.0.0.1:0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("serve prints its address").unwrap();
        if let Some(rest) = line.strip_prefix("handoff: listening on http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let url = format!("http://{addr}/webhooks/hubspot");
    let body = r#"[{"eventId":42,"subscriptionType":"contact.propertyChange","objectId":1002,"propertyName":"lifecyclestage","propertyValue":"marketingqualifiedlead","occurredAt":1795000000000}]"#;
    let ts = handoff::capabilities::Clock::now_ms(&handoff::capabilities::SystemClock);
    let signature = handoff::connectors::hubspot::sign_v3(handoff_emulators::SECRET, "POST", &url, body.as_bytes(), ts);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let state = rt.block_on(async {
        let http = reqwest::Client::new();
        let response = http
            .post(&url)
            .header("x-hubspot-request-timestamp", ts.to_string())
            .header("x-hubspot-signature-v3", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        for _ in 0..200 {
            let lead: Value = http
                .get(format!("http://{addr}/api/leads/1002"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            if lead["state"] == "notified" {
                return lead;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the lead was never notified");
    });
    child.kill().unwrap();
    let _ = child.wait();
    let timeline: Vec<&str> =
        state["timeline"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(timeline, ["received", "validated", "deduped", "routed", "assigned", "notified"]);
    assert!(dir.path().join("handoff.db").exists(), "the ledger is in the data dir");
}

#[test]
fn simulate_runs_a_hubspot_csv_export_without_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let leads = dir.path().join("hubspot-export.csv");
    std::fs::write(
        &leads,
        "Record ID,First Name,Last Name,Email,Company Name,Country/Region,Number of Employees,Lifecycle Stage,HubSpot Score,Became a Marketing Qualified Lead Date\n\
         101,Greta,Brandt,greta.brandt@kessler-maschinenbau.de,Kessler Maschinenbau,Germany,\"2,400\",Marketing Qualified Lead,80,2026-11-25 15:00\n\
         102,Jordan,Lee,jordan.lee@northwind-freight.com,Northwind Freight,United States,300,Marketing Qualified Lead,75,2026-11-25 15:01\n\
         103,Pat,Quinn,pat.quinn@gmail.com,Quinn Consulting,United States,20,Marketing Qualified Lead,90,2026-11-25 15:02\n\
         104,Lou,Marsh,lou.marsh@acme-tools.co.uk,Acme Tools,United Kingdom,500,Marketing Qualified Lead,10,2026-11-25 15:03\n",
    )
    .unwrap();
    let report = dir.path().join("report.html");
    let pipeline = repo("pipelines/mql-handoff.json");
    let out = handoff(
        dir.path(),
        &[
            "simulate",
            pipeline.to_str().unwrap(),
            "--leads",
            leads.to_str().unwrap(),
            "--json",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("handoff.db").exists(), "no ledger is made or needed");
    let json: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let leads = json["run"]["leads"].as_array().unwrap();
    let by_name = |name: &str| leads.iter().find(|l| l["lead"].as_str().unwrap().starts_with(name)).unwrap();
    let greta = &by_name("Greta Brandt")["decision"];
    assert_eq!(
        (greta["state"].as_str(), greta["team"].as_str()),
        (Some("notified"), Some("emea-enterprise")),
        "{greta}"
    );
    let jordan = &by_name("Jordan Lee")["decision"];
    assert_eq!((jordan["state"].as_str(), jordan["team"].as_str()), (Some("notified"), Some("na")), "{jordan}");
    assert_eq!(by_name("Pat Quinn")["decision"]["state"], "invalid", "free mail is turned away");
    assert_eq!(by_name("Lou Marsh")["decision"]["state"], "invalid", "a score under 50 is not an MQL");
    assert!(json["run"]["would_send"]["chat.send-dm"].as_u64().unwrap() >= 2, "{}", json["run"]["would_send"]);
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        page.contains("Leads per owner") && page.contains("Greta Brandt"),
        "the report has the chart and the leads"
    );
}

#[test]
fn cargo_install_puts_a_working_handoff_on_the_path() {
    // `cargo install --path host` from a clean install root, as
    // docs/deploy.md says. A debug build (a release build of wasmtime takes
    // 15-25 minutes on 2 cores), in a target directory of its own beside
    // the tests' (cargo locks a target directory while it builds), kept
    // between runs so that only what changed is rebuilt.
    let root = tempfile::tempdir().unwrap();
    let targets = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo("target"), PathBuf::from);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let installed = Command::new(cargo)
        .args(["install", "--path"])
        .arg(repo("host"))
        .args(["--locked", "--debug", "--root"])
        .arg(root.path())
        .env("CARGO_TARGET_DIR", targets.join("cargo-install"))
        .output()
        .unwrap();
    assert!(installed.status.success(), "{}", text(&installed.stderr));
    let bin = root.path().join("bin");
    assert!(bin.join("handoff").is_file(), "cargo install put handoff in {}", bin.display());
    // On the PATH, in an empty directory: init, then validate what it wrote.
    let work = tempfile::tempdir().unwrap();
    let on_path = |args: &[&str], cwd: &Path| {
        Command::new("handoff")
            .current_dir(cwd)
            .args(args)
            .env("PATH", &bin)
            .env_remove("HANDOFF_CONFIG")
            .output()
            .unwrap()
    };
    let version = on_path(&["--version"], work.path());
    assert_eq!(text(&version.stdout).trim(), format!("handoff {}", env!("CARGO_PKG_VERSION")));
    let init = on_path(&["init", "starter"], work.path());
    assert!(init.status.success(), "{}", text(&init.stderr));
    let validated = on_path(&["validate", "pipelines/mql-handoff.json"], &work.path().join("starter"));
    assert!(validated.status.success(), "{}", text(&validated.stderr));
    assert!(text(&validated.stdout).contains("ok: pipelines/mql-handoff.json"), "{}", text(&validated.stdout));
}

/// The options `handoff ARGS --help` lists.
fn options_of(args: &[&str]) -> std::collections::BTreeSet<String> {
    let mut with_help = args.to_vec();
    with_help.push("--help");
    let help = Command::new(env!("CARGO_BIN_EXE_handoff")).args(&with_help).output().unwrap();
    assert!(help.status.success(), "handoff {} is a command", args.join(" "));
    text(&help.stdout)
        .lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let line = line.strip_prefix("-o, ").unwrap_or(line);
            line.starts_with("--").then(|| line.split([' ', '=', '\t']).next().unwrap_or_default().to_string())
        })
        .filter(|o| o != "--help" && o != "--version")
        .collect()
}

/// Every command the binary shows (the leaves of `help`'s tree).
fn commands(path: &[&str]) -> Vec<Vec<String>> {
    let mut with_help: Vec<&str> = path.to_vec();
    with_help.push("--help");
    let help = text(&Command::new(env!("CARGO_BIN_EXE_handoff")).args(&with_help).output().unwrap().stdout);
    let Some(list) = help.split("\nCommands:\n").nth(1) else {
        return vec![path.iter().map(ToString::to_string).collect()];
    };
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.strip_prefix("  ").filter(|l| !l.starts_with(' ')))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|n| n != "help")
        .collect();
    names
        .iter()
        .flat_map(|name| {
            let mut sub: Vec<&str> = path.to_vec();
            sub.push(name);
            commands(&sub)
        })
        .collect()
}

#[test]
fn the_readme_and_the_deployment_guide_show_the_binarys_commands_and_options() {
    // The options commands share by kind (the README says which take them).
    let shared = [
        "--data-dir",
        "--plugins",
        "--max-runs-per-plugin",
        "--plugin-threads",
        "--state-max-keys",
        "--state-max-bytes",
    ];
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let mut documented = Vec::new();
    // The command table: each usage lists every option of its command.
    for row in readme.lines().filter(|l| l.starts_with("| `handoff ")) {
        let cell = row.split(" | ").next().unwrap().trim_start_matches("| ");
        for usage in cell.split("`, `").map(|u| u.trim_matches('`')) {
            let words: Vec<&str> = usage.split_whitespace().skip(1).collect();
            let path: Vec<&str> =
                words.iter().take_while(|w| w.chars().all(|c| c.is_ascii_lowercase())).copied().collect();
            let shown: std::collections::BTreeSet<String> = usage
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--"))
                .map(String::from)
                .collect();
            let takes: std::collections::BTreeSet<String> =
                options_of(&path).into_iter().filter(|o| !shared.contains(&o.as_str())).collect();
            assert_eq!(shown, takes, "README's `{usage}` against `handoff {} --help`", path.join(" "));
            documented.push(path.join(" "));
        }
    }
    for command in commands(&[]) {
        let command = command.join(" ");
        assert!(documented.contains(&command), "the README's command table lacks `handoff {command}`");
    }
    // Code blocks here and in docs/deploy.md: every handoff command line
    // names a command and options it takes.
    let guide = std::fs::read_to_string(repo("docs/deploy.md")).unwrap();
    let mut checked = 0;
    for doc in [&readme, &guide] {
        let mut in_block = false;
        for line in doc.lines() {
            if line.starts_with("```") {
                in_block = !in_block;
                continue;
            }
            if !in_block {
                continue;
            }
            // `handoff` where a command starts: first on the line, after
            // variables or `&&`, or after `cargo run -p handoff --`.
            let tokens: Vec<&str> = line.split('#').next().unwrap_or_default().split_whitespace().collect();
            let Some(at) = tokens.iter().enumerate().position(|(i, t)| {
                *t == "handoff" && (i == 0 || tokens[i - 1].contains('=') || tokens[i - 1] == "&&")
                    || *t == "--" && i >= 3 && tokens[i - 3..i] == ["run", "-p", "handoff"]
            }) else {
                continue;
            };
            let mut words: Vec<&str> = tokens[at + 1..].to_vec();
            // `--data-dir DIR` before the command is the older place for it.
            if words.first() == Some(&"--data-dir") {
                words.drain(..2);
            }
            let path: Vec<&str> =
                words.iter().take_while(|w| w.chars().all(|c| c.is_ascii_lowercase())).copied().collect();
            if path.is_empty() {
                continue;
            }
            let takes = options_of(&path);
            for option in words.iter().filter(|w| w.starts_with("--")) {
                assert!(takes.contains(*option), "`{line}`: handoff {} takes no {option}", path.join(" "));
            }
            checked += 1;
        }
    }
    assert!(checked >= 6, "the code blocks' commands were found ({checked})");
}

#[test]
fn the_data_dir_is_the_commands_option_then_the_older_one_then_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let names = |args: &[&str], variable: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_handoff"));
        command.args(args).env_remove("HANDOFF_DATA_DIR").env_remove("HANDOFF_DATABASE_URL");
        if let Some(v) = variable {
            command.env("HANDOFF_DATA_DIR", v);
        }
        text(&command.output().unwrap().stderr)
    };
    // `lead list` on an empty directory names the ledger it looked for.
    let (a, b, c) = (path("a"), path("b"), path("c"));
    assert!(names(&["lead", "list", "--data-dir", &a], Some(&c)).contains(&format!("{a}/handoff.db")));
    assert!(names(&["--data-dir", &b, "lead", "list"], Some(&c)).contains(&format!("{b}/handoff.db")));
    assert!(names(&["--data-dir", &b, "lead", "list", "--data-dir", &a], None).contains(&format!("{a}/handoff.db")));
    assert!(names(&["lead", "list"], Some(&c)).contains(&format!("{c}/handoff.db")));
}
