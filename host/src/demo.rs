//! `handoff demo`: the whole handoff on the embedded default, end to end.
//! Starts the sandbox (a demo sales org) and the server in-process, creates
//! HubSpot contacts, sends ~50 signed MQL webhooks (valid, invalid,
//! duplicate deliveries, existing accounts, open opportunities, enterprise
//! and high-intent leads, a rep out of office, leads outside every team's
//! hours) and prints what happened to each lead.

use crate::app::{App, AppOptions};
use crate::capabilities::{Clock, ManualClock};
use crate::emulated::{Emulators, Settings};
use crate::server::Finished;
use anyhow::Result;
use handoff_emulators::drive::{create_contact, send_hubspot_webhook};
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the demo finds the pipeline and roster.
pub struct DemoOptions {
    /// Where the compiled-component cache lives.
    pub data_dir: PathBuf,
    /// More plugin directories.
    pub plugin_dirs: Vec<PathBuf>,
    /// Where `mql-handoff.json` and `roster.json` are.
    pub pipelines_dir: PathBuf,
    /// Leave the server (and its dashboard) up after the story, until
    /// interrupted.
    pub keep_running: bool,
}

/// The demo's fixed "now": Wednesday 2026-11-25, 15:00 UTC (afternoon in
/// Europe, morning in the Americas, night in APAC).
pub const DEMO_NOW: &str = "2026-11-25T15:00:00Z";

/// The shipped roster with every rep always available and no daily cap,
/// written to `path`: for load and durability runs, where every lead must
/// reach a rep's DMs whatever the time of day.
///
/// # Errors
///
/// When the shipped roster cannot be read or `path` written.
pub fn write_open_roster(pipelines_dir: &std::path::Path, path: &std::path::Path) -> Result<()> {
    let mut roster: Value = serde_json::from_str(&std::fs::read_to_string(pipelines_dir.join("roster.json"))?)?;
    for rep in roster["reps"].as_array_mut().into_iter().flatten() {
        rep["daily_capacity"] = json!(0);
        rep["out_of_office"] = json!([]);
        rep["working_hours"] =
            json!({"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "start": "00:00", "end": "24:00"});
    }
    std::fs::write(path, roster.to_string())?;
    Ok(())
}

/// A clock standing at [`DEMO_NOW`].
pub fn demo_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(DEMO_NOW.parse::<jiff::Timestamp>().expect("DEMO_NOW is a timestamp").as_millisecond()))
}

/// One lead the demo sends.
struct Lead {
    label: &'static str,
    contact_id: String,
    event_id: u64,
}

/// A generated MQL: first, last, company, domain, title, country, state,
/// employees, score, pricing-page views.
type Mql =
    (&'static str, &'static str, &'static str, &'static str, &'static str, &'static str, &'static str, u32, u32, u32);

const NEW_MQLS: &[Mql] = &[
    ("Jonas", "Weber", "Kraftwerk Analytics", "kraftwerk-analytics.de", "Head of Data", "Germany", "", 450, 72, 1),
    ("Elise", "Laurent", "Maison Digitale", "maison-digitale.fr", "CMO", "France", "", 180, 66, 0),
    ("Oscar", "Bennett", "Thames Freight", "thamesfreight.co.uk", "Ops Director", "United Kingdom", "", 620, 70, 2),
    ("Sanne", "de Vries", "Polder Systems", "poldersystems.nl", "CTO", "Netherlands", "", 140, 61, 1),
    ("Matteo", "Conti", "Conti Robotics", "contirobotics.it", "VP Engineering", "Italy", "", 2400, 77, 2),
    ("Ingrid", "Larsen", "Fjord Energy", "fjordenergy.no", "Procurement", "Norway", "", 3100, 68, 0),
    ("Lucas", "Moreau", "Atelier Cloud", "ateliercloud.fr", "IT Manager", "France", "", 95, 58, 0),
    ("Hannah", "Schulz", "Bergmann Pharma", "bergmann-pharma.de", "Head of IT", "Germany", "", 8800, 81, 3),
    ("Emily", "Carter", "Redwood Labs", "redwoodlabs.io", "Founder", "United States", "CA", 40, 74, 4),
    ("Noah", "Brooks", "Hudson Health", "hudsonhealth.com", "CIO", "United States", "NY", 1900, 79, 1),
    ("Ava", "Nguyen", "Lone Star Logistics", "lonestarlogistics.com", "COO", "United States", "TX", 760, 63, 0),
    ("Liam", "Walsh", "Maple Fintech", "maplefintech.ca", "VP Product", "Canada", "ON", 210, 69, 2),
    ("Mia", "Rossi", "Great Lakes Foods", "greatlakesfoods.com", "Director IT", "United States", "IL", 1300, 71, 0),
    ("Ethan", "Price", "Cascade Software", "cascadesoftware.com", "Eng Manager", "United States", "WA", 85, 57, 1),
    ("Olivia", "Hughes", "Peachtree Insurance", "peachtreeins.com", "CFO", "United States", "GA", 4200, 92, 5),
    ("James", "Foster", "Mile High Media", "milehighmedia.com", "Marketing Lead", "United States", "CO", 60, 55, 0),
    ("Sophia", "Reed", "Beacon Retail", "beaconretail.com", "Head of Ecommerce", "United States", "MA", 520, 65, 3),
    ("Benjamin", "Kim", "Harbor AI", "harborai.com", "CTO", "United States", "CA", 120, 88, 2),
    ("Yui", "Sato", "Sakura Mobility", "sakuramobility.jp", "Manager", "Japan", "", 700, 67, 1),
    ("Chen", "Wei", "Pearl River Tech", "pearlrivertech.cn", "Director", "China", "", 3500, 73, 0),
    ("Olivia", "Brown", "Koala Cloud", "koalacloud.com.au", "CEO", "Australia", "", 45, 62, 1),
    ("Rafael", "Souza", "Amazonia Agro", "amazoniaagro.com.br", "CIO", "Brazil", "", 900, 70, 0),
    ("Freya", "Nilsson", "Nordic Grid", "nordicgrid.se", "Head of Ops", "Sweden", "", 330, 64, 1),
    ("Aidan", "Murphy", "Liffey Data", "liffeydata.ie", "Analytics Lead", "Ireland", "", 75, 59, 0),
    ("Zara", "Ahmed", "Crescent Health", "crescenthealth.ae", "CIO", "United Arab Emirates", "", 1500, 76, 2),
    ("Pierre", "Girard", "Lumiere Optics", "lumiereoptics.fr", "R&D Director", "France", "", 260, 71, 1),
    ("Grace", "Lee", "Golden Gate Bio", "goldengatebio.com", "VP Research", "United States", "CA", 310, 66, 0),
    ("Daniel", "Ortiz", "Alamo Builders", "alamobuilders.com", "Owner", "United States", "TX", 55, 60, 0),
    ("Clara", "Hoffmann", "Rhein Chemie Digital", "rheinchemie-digital.de", "CDO", "Germany", "", 5600, 84, 2),
    ("Marco", "Bianchi", "Milano Moda", "milanomoda.it", "E-commerce Lead", "Italy", "", 410, 63, 1),
];

fn props(row: &Mql) -> Value {
    let (first, last, company, domain, title, country, state, employees, score, pricing) = *row;
    json!({
        "email": format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase().replace(' ', "")),
        "firstname": first, "lastname": last, "company": company, "jobtitle": title, "country": country, "state": state,
        "numemployees": employees.to_string(), "industry": "Technology", "lifecyclestage": "marketingqualifiedlead",
        "hubspotscore": score.to_string(), "hs_analytics_num_page_views": (score / 3).to_string(), "hs_analytics_num_visits": (score / 10).to_string(),
        "pricing_page_views": pricing.to_string(), "content_downloads": (pricing % 3).to_string(), "hs_email_open": (score / 8).to_string(),
        "num_conversion_events": "1", "recent_conversion_event_name": if pricing > 2 { "Pricing demo request" } else { "Whitepaper download" },
        "icp_fit": if employees >= 1000 { "A" } else if employees >= 200 { "B" } else { "C" },
    })
}

/// Runs the demo and returns the report.
///
/// # Errors
///
/// When the sandbox or the server cannot start.
pub async fn run(options: DemoOptions) -> Result<String> {
    let (pipelines_dir, _) = crate::shipped::directory(&options.pipelines_dir, &options.data_dir)?;
    let options = DemoOptions { pipelines_dir, ..options };
    let clock = demo_clock();
    let now = clock.now_ms();
    let sandbox = crate::emulated::start(Settings::default(), clock.clone()).await?;
    let state_dir = tempfile_dir(&options.data_dir)?;
    let app = App::launch(AppOptions {
        plugin_dirs: options.plugin_dirs.clone(),
        database: Some(crate::ledger::Database::Sqlite(state_dir.join("handoff.db"))),
        ..AppOptions::standard(
            &options.pipelines_dir,
            options.data_dir.clone(),
            crate::emulated::connectors(&sandbox),
            clock.clone(),
        )
    })
    .await?;

    let http = reqwest::Client::new();
    let mut leads: Vec<Lead> = Vec::new();
    let mut next_event = 9_100_000_000u64;
    let mut event = |label: &'static str, contact_id: &str| {
        next_event += 1;
        Lead { label, contact_id: contact_id.to_string(), event_id: next_event }
    };

    // The demo org's own HubSpot contacts: known accounts, opportunities,
    // an existing lead whose owner left, and invalid MQLs.
    let seeded = [
        ("EMEA enterprise", "1001"),
        ("new, North America", "1002"),
        ("EMEA enterprise", "1003"),
        ("company has an open deal", "1004"),
        ("enterprise, open deal", "1005"),
        ("existing account", "1006"),
        ("free-mail address", "1007"),
        ("not an MQL yet", "1008"),
        ("existing lead, owner left", "1009"),
        ("disposable address", "1010"),
    ];
    for (label, id) in seeded {
        leads.push(event(label, id));
    }
    for row in NEW_MQLS {
        let id = create_contact(&http, sandbox.http, &props(row)).await?;
        let label = match (row.5, row.7) {
            ("France", _) => "new, France (rep away)",
            ("Japan" | "China" | "Australia", _) => "new, APAC (after hours)",
            ("Brazil", _) => "new, no territory",
            (_, e) if e >= 1000 => "new, enterprise",
            _ => "new",
        };
        leads.push(event(label, &id));
    }
    // Invalid MQLs at the same companies, from people of their own (a name
    // seen routed above is that same lead, sent again).
    for (label, mut p, (first, last)) in [
        ("score too low", props(&NEW_MQLS[0]), ("Tariq", "Haddad")),
        ("missing company", props(&NEW_MQLS[1]), ("Nora", "Lindqvist")),
        ("not an MQL yet", props(&NEW_MQLS[2]), ("Felix", "Brandt")),
    ] {
        let domain = p["email"].as_str().and_then(|e| e.split_once('@')).map_or("example.com", |(_, d)| d).to_string();
        p["firstname"] = json!(first);
        p["lastname"] = json!(last);
        p["email"] = json!(format!("{}.{}@{domain}", first.to_lowercase(), last.to_lowercase()));
        match label {
            "score too low" => p["hubspotscore"] = json!("22"),
            "missing company" => p["company"] = json!(""),
            _ => p["lifecyclestage"] = json!("lead"),
        }
        let id = create_contact(&http, sandbox.http, &p).await?;
        leads.push(event(label, &id));
    }

    // Send: HubSpot batches events, so some requests carry several.
    let url = format!("http://{}/webhooks/hubspot", app.server.addr);
    let body_of = |lead: &Lead| {
        json!({"eventId": lead.event_id, "subscriptionId": 686627, "portalId": 891472211, "appId": 7906213,
               "occurredAt": now, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
               "objectId": lead.contact_id.parse::<u64>().unwrap_or(0), "propertyName": "lifecyclestage",
               "propertyValue": "marketingqualifiedlead", "changeSource": "CRM_UI", "sourceId": "userId:882761034"})
    };
    let secret = handoff_emulators::SECRET;
    let send = |events: Vec<Value>| {
        let http = http.clone();
        let url = url.clone();
        async move { send_hubspot_webhook(&http, &url, secret, Value::Array(events).to_string()).await }
    };
    for chunk in leads.chunks(3) {
        let response = send(chunk.iter().map(body_of).collect()).await?;
        anyhow::ensure!(
            response.status().is_success(),
            "webhook refused: {}",
            response.text().await.unwrap_or_default()
        );
    }
    app.server.settle(Duration::from_secs(120)).await;
    // HubSpot retries deliveries, and an MQL can fire twice: neither may route twice.
    for lead in leads.iter().skip(10).take(3) {
        send(vec![body_of(lead)]).await?;
    }
    let mut repeat = event("duplicate", &leads[11].contact_id);
    repeat.label = "second event, same MQL";
    send(vec![body_of(&repeat)]).await?;
    let resent = leads
        .iter()
        .skip(10)
        .take(3)
        .map(|l| Lead { label: "redelivered webhook", contact_id: l.contact_id.clone(), event_id: l.event_id })
        .collect::<Vec<_>>();
    leads.extend(resent);
    leads.push(repeat);

    app.server.settle(Duration::from_secs(120)).await;
    let finished = app.server.finished();
    let mut report = render(&leads, &finished, &sandbox);
    report.push_str(&sla_story(&app, &sandbox, &clock, &state_dir).await?);
    report.push_str(&health_story(&sandbox, &clock, &state_dir).await?);
    if options.keep_running {
        print!("{report}");
        println!(
            "\nThe server is still up: the dashboard for the demo's week at http://{}/?from={} , the API at /api/metrics, /api/rejections, /api/leads; the sandbox at http://{}/_sandbox/stats. Ctrl-C to stop.",
            app.server.addr,
            &DEMO_NOW[..10],
            sandbox.http
        );
        tokio::signal::ctrl_c().await?;
        let _ = std::fs::remove_dir_all(&state_dir);
        return Ok(String::new());
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(report)
}

/// The lead whose rep never responds in the demo: Marcus Webb, Carlos
/// Ruiz's.
const UNTOUCHED: &str = "1002";

/// The lead its rep rejects in the demo ("Timing not right"), and which
/// comes back to sales 90 days later.
const REJECTED: &str = "1003";

/// The follow-up half of the demo, on virtual time: every rep accepts their
/// new lead within minutes but one, whose lead walks the SLA ladder
/// (reminder, manager, reassignment, VP review).
async fn sla_story(app: &App, sandbox: &Emulators, clock: &ManualClock, state_dir: &std::path::Path) -> Result<String> {
    use crate::ledger::Ledger;
    let ledger = crate::ledger::SqliteStore::open(&state_dir.join("handoff.db"))?;
    let t0 = clock.now_ms();
    let mut out =
        String::from("\nSLA enforcement, on virtual time (each step only if the rep has not touched the lead):\n");
    let http = reqwest::Client::new();
    let url = format!("http://{}/slack/interactions", app.server.addr);
    // Ten minutes on, every rep accepts their new lead in Slack but one.
    clock.set(t0 + 10 * 60_000);
    let clicks: Vec<Value> = {
        let world = sandbox.state.world();
        let slack = &world.slack;
        slack
            .messages
            .iter()
            .filter(|m| m.recipient.is_some())
            .filter(|m| {
                let blocks = m.blocks.as_ref().map(ToString::to_string).unwrap_or_default();
                !blocks.contains(&format!("lead:{UNTOUCHED}")) && !blocks.contains(&format!("lead:{REJECTED}\""))
            })
            .filter_map(|m| slack.block_action(m, "accept_lead", None, clock.now_ms()))
            .collect()
    };
    // One rep rejects theirs instead: not now, budget is next year.
    let rejection: Option<Value> = {
        let world = sandbox.state.world();
        let slack = &world.slack;
        slack.messages.iter().filter(|m| m.recipient.is_some()).find_map(|m| {
            let blocks = m.blocks.as_ref()?;
            if !blocks.to_string().contains(&format!("lead:{REJECTED}\"")) {
                return None;
            }
            let option = blocks
                .as_array()?
                .iter()
                .flat_map(|b| b["elements"].as_array().into_iter().flatten())
                .find(|e| e["action_id"] == "reject_lead")?["options"]
                .as_array()?
                .iter()
                .filter_map(|o| o["value"].as_str())
                .find(|v| v.ends_with(":timing"))?
                .to_string();
            slack.block_action(m, "reject_lead", Some(&option), clock.now_ms())
        })
    };
    let now_secs = crate::capabilities::SystemClock.now_ms() / 1000;
    for payload in clicks.iter().chain(&rejection) {
        handoff_emulators::drive::send_slack_interaction(&http, &url, handoff_emulators::SECRET, payload, now_secs)
            .await?;
    }
    app.server.settle(Duration::from_secs(60)).await;
    let mut accepted = ledger.leads(Some(&crate::lead::LeadState::ACCEPTED), 1000).await?;
    accepted.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(first) = accepted.first() {
        let _ = writeln!(
            out,
            "  +10 min   {} accepts {} in Slack: accepted, 'Working - Contacted' in Salesforce, the DM updated, its ladder stopped",
            first.owner.as_deref().unwrap_or("the rep"),
            first.name.as_deref().unwrap_or(&first.id)
        );
    }
    let _ = writeln!(out, "            {} leads accepted within 10 minutes in all", accepted.len());
    let mut rejected_shown = 0;
    if let Some(lead) = ledger.lead(REJECTED).await? {
        let name = lead.name.clone().unwrap_or_else(|| REJECTED.to_string());
        let from = lead.timeline.iter().position(|s| s.state.as_str() == "rejected").unwrap_or(lead.timeline.len());
        for step in &lead.timeline[from..] {
            let _ = writeln!(out, "  +10 min   {name}: {} ({})", step.detail, step.state);
        }
        rejected_shown = lead.timeline.len();
    }
    let mut shown = ledger.lead(UNTOUCHED).await?.map_or(0, |l| l.timeline.len());
    for (minutes, label) in [(30, "+30 min"), (120, "+2 h"), (240, "+4 h"), (28 * 60, "+28 h")] {
        advance(app, &ledger, clock, t0 + minutes * 60_000).await?;
        let Some(lead) = ledger.lead(UNTOUCHED).await? else { break };
        let name = lead.name.clone().unwrap_or_else(|| UNTOUCHED.to_string());
        for step in lead.timeline.iter().skip(shown).filter(|s| s.state.as_str() != "routed") {
            let _ = writeln!(out, "  {label:<9} {name}: {} ({})", step.detail, step.state);
        }
        shown = lead.timeline.len();
    }
    let timers = ledger.lead_timers(UNTOUCHED).await?;
    let on_time = timers.iter().filter(|t| t.state == "fired" && t.settled_at == Some(t.due_at)).count();
    let _ = writeln!(out, "  {on_time} of {} ladder timers fired exactly at their deadline", timers.len());

    // Ninety days on, the rejected lead is looked at again.
    let _ = writeln!(out, "\nRejection recycling, on virtual time:");
    advance(app, &ledger, clock, t0 + 90 * 86_400_000 + 10 * 60_000).await?;
    if let Some(lead) = ledger.lead(REJECTED).await? {
        let name = lead.name.clone().unwrap_or_else(|| REJECTED.to_string());
        for step in lead.timeline.iter().skip(rejected_shown).filter(|s| s.state.as_str() != "routed") {
            let _ = writeln!(out, "  +90 days  {name}: {} ({})", step.detail, step.state);
        }
    }
    let report = crate::reports::rejections(&ledger, t0, t0 + 91 * 86_400_000).await?;
    let _ = writeln!(
        out,
        "  rejections: {} in all, {} recycled to sales, {} converted (`handoff rejections`, GET /api/rejections)",
        report.total.rejected, report.total.recycled, report.total.converted
    );
    Ok(out)
}

/// The end of the story: the five metrics for the demo's week, and the
/// weekly digest as it was posted to Slack on the Monday after.
async fn health_story(sandbox: &Emulators, clock: &ManualClock, state_dir: &std::path::Path) -> Result<String> {
    let ledger = crate::ledger::SqliteStore::open(&state_dir.join("handoff.db"))?;
    let start = crate::reports::parse_time(DEMO_NOW).map_err(anyhow::Error::msg)?;
    let week = crate::reports::metrics(
        &ledger,
        start,
        start + 7 * 86_400_000,
        clock.now_ms(),
        Some(crate::reports::GroupBy::Team),
        crate::reports::MetricRules::default(),
    )
    .await?;
    let mut out = String::from("\n");
    out.push_str(&crate::reports::render_metrics(&week));
    let digest = {
        let world = sandbox.state.world();
        let channel =
            world.slack.channels.values().find(|c| c.name.as_deref() == Some("handoff-digest")).map(|c| c.id.clone());
        world.slack.messages.iter().find(|m| Some(&m.channel) == channel.as_ref()).map(|m| m.text.clone())
    };
    if let Some(text) = digest {
        let _ =
            writeln!(out, "\nThe weekly digest, as posted to #handoff-digest on Monday at 09:00 (Berlin):\n  {text}");
    }
    Ok(out)
}

/// Moves the clock to `at` and waits for every timer due by then to fire
/// and what it started to finish.
async fn advance(app: &App, ledger: &crate::ledger::SqliteStore, clock: &ManualClock, at: i64) -> Result<()> {
    use crate::ledger::Ledger;
    clock.set(at);
    for _ in 0..400 {
        let due = ledger.next_timer_due(None).await?;
        if due.is_none_or(|d| d > at) && app.server.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if app.server.in_flight() == 0 {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    anyhow::bail!("the timers due by {at} did not settle")
}

fn tempfile_dir(data_dir: &std::path::Path) -> Result<PathBuf> {
    let dir = data_dir.join(format!("demo-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Why `validate` found an item invalid: its reasons' messages.
const INVALID_REASONS: &str = "{/validation/reasons/*/message}";

/// What happened to one execution, in words: (outcome, owner, why).
pub fn outcome(finished: &Finished) -> (String, String, String) {
    let record = &finished.record;
    if let Some(error) = &record.error {
        return ("FAILED".into(), String::new(), error.clone());
    }
    for end in &record.ends {
        if let crate::record::BranchEnd::Unconnected { node, port, item } = end {
            match (node.as_str(), port.as_str()) {
                ("validate", "invalid") => {
                    return (
                        "invalid".into(),
                        String::new(),
                        crate::lead::render_detail(INVALID_REASONS, item.value(), "invalid"),
                    );
                }
                ("dedupe", "duplicate") => {
                    return (
                        "duplicate".into(),
                        String::new(),
                        format!("already handed off ({})", item["dedupe"]["key"].as_str().unwrap_or_default()),
                    );
                }
                _ => {}
            }
        }
    }
    // notify's output goes on (to the late-summary merge): read its run.
    let notified =
        record.runs.iter().filter(|r| r.node == "notify").find_map(|r| r.outputs.iter().find(|o| o.port == "notified"));
    if let Some(out) = notified {
        return told(out.item.value());
    }
    ("ended".into(), String::new(), String::new())
}

/// The words for a lead `notify` told someone about.
fn told(item: &serde_json::Value) -> (String, String, String) {
    let n = &item["notification"];
    if n["kind"] == "opportunity-owner" {
        let opp = &item["dedupe"]["opportunity"];
        return (
            "opp owner told".into(),
            n["to"].as_str().unwrap_or_default().into(),
            format!("open deal: {}", opp["name"].as_str().unwrap_or_default()),
        );
    }
    let routing = &item["routing"];
    let kind = if routing["fallback"] == true {
        "to queue"
    } else if n["priority"].is_string() {
        "routed (priority)"
    } else {
        "routed"
    };
    (
        kind.into(),
        routing["owner_name"].as_str().unwrap_or_default().into(),
        routing["explanation"].as_str().unwrap_or_default().into(),
    )
}

fn render(leads: &[Lead], finished: &[Finished], sandbox: &Emulators) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Handoff demo: {} MQL webhooks into the sandbox org (now = {DEMO_NOW})\n", leads.len());
    let _ = writeln!(
        out,
        "{:>3}  {:<18} {:<26} {:<17} {:<21} {:>10}  why",
        "#", "lead", "scenario", "outcome", "owner", "to DM"
    );
    // The "why" column starts here; longer reasons wrap under it.
    let why_at = 3 + 2 + 18 + 1 + 26 + 1 + 17 + 1 + 21 + 1 + 10 + 2;
    let mut dm_times = Vec::new();
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    let mut used = vec![false; finished.len()];
    for (i, lead) in leads.iter().enumerate() {
        let index = finished.iter().enumerate().position(|(k, f)| !used[k] && f.event_id == lead.event_id.to_string());
        let (outcome, owner, why, dm) = match index {
            Some(k) => {
                used[k] = true;
                let (o, w, y) = outcome(&finished[k]);
                (o, w, y, finished[k].notified_us)
            }
            None => (
                "duplicate".into(),
                String::new(),
                "redelivered event already in the ledger; not run again".into(),
                None,
            ),
        };
        *counts.entry(outcome.clone()).or_default() += 1;
        let contact = sandbox.state.world().hubspot.find(&lead.contact_id, false).map(|c| {
            format!(
                "{} {}",
                c.properties.get("firstname").cloned().unwrap_or_default(),
                c.properties.get("lastname").cloned().unwrap_or_default()
            )
        });
        let dm_text = dm.map(|us| {
            dm_times.push(us);
            format!("{:.1} ms", us as f64 / 1000.0)
        });
        // An opportunity's owner is told by email: name them as the others.
        let owner = if owner.contains('@') {
            let world = sandbox.state.world();
            let user = world.salesforce.objects["User"].iter().find(|u| u["Email"].as_str() == Some(owner.as_str()));
            user.and_then(|u| u["Name"].as_str()).map_or(owner.clone(), str::to_string)
        } else {
            owner
        };
        let mut why_lines = wrap(&why, 90).into_iter();
        let _ = writeln!(
            out,
            "{:>3}  {:<18} {:<26} {:<17} {:<21} {:>10}  {}",
            i + 1,
            clip(&contact.unwrap_or_default(), 18),
            clip(lead.label, 26),
            clip(&outcome, 17),
            clip(&owner, 21),
            dm_text.unwrap_or_else(|| "-".into()),
            why_lines.next().unwrap_or_default()
        );
        for line in why_lines {
            let _ = writeln!(out, "{:why_at$}{line}", "");
        }
    }
    dm_times.sort_unstable();
    let world = sandbox.state.world();
    let _ =
        writeln!(out, "\nOutcomes: {}", counts.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", "));
    let _ = writeln!(
        out,
        "Sandbox: {} Slack messages ({} DMs), {} Salesforce leads, {} tasks, {} backup emails",
        world.slack.messages.len(),
        world.slack.messages.iter().filter(|m| m.recipient.is_some()).count(),
        world.salesforce.objects["Lead"].len(),
        world.salesforce.objects["Task"].len(),
        world.emails.len()
    );
    if !dm_times.is_empty() {
        let pct = |p: f64| dm_times[((dm_times.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
        let _ = writeln!(
            out,
            "Webhook to DM: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms (debug builds are slower; see BENCHMARKS.md)",
            pct(0.5),
            pct(0.9),
            pct(1.0)
        );
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces (a
/// word longer than a line is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&clip(word, width));
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}
