//! Changing routing without fear: `simulate` over recorded leads gives what
//! the changed pipeline gives live; nothing is sent.

use handoff::capabilities::Clock;
use handoff::dry_run::{DryRun, Missing};
use handoff::pipeline::model::Pipeline;
use handoff_tests::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Leads in the tests: a spread of countries, sizes and scores.
const LEADS: usize = 1000;

fn lead_properties(i: usize) -> Value {
    let countries = ["Germany", "Netherlands", "United States", "United Kingdom", "Canada", "Singapore", "France"];
    json!({
        "email": format!("sim.lead{i}@company{}.com", i % 700), "firstname": "Sim", "lastname": format!("Lead {i}"),
        "company": format!("Company {}", i % 700), "country": countries[i % countries.len()], "state": "NY",
        "numemployees": (50 + i * 37 % 3000).to_string(), "lifecyclestage": "marketingqualifiedlead",
        "hubspotscore": if i.is_multiple_of(11) { "20" } else { "75" },
    })
}

/// Creates the test's contacts in `running`'s HubSpot and delivers their
/// MQL events one by one (each settles before the next: round-robin order
/// is the order of arrival), returning the contact ids by lead number.
async fn deliver_leads(running: &Running, count: usize) -> Vec<u64> {
    // Straight into the emulator's store: a thousand creations over its
    // API would wait on HubSpot's rate limit.
    let now = running.clock.now_ms();
    let ids: Vec<u64> = {
        let mut world = running.emulators.state.world();
        (0..count)
            .map(|i| {
                let Value::Object(properties) = lead_properties(i) else { unreachable!() };
                let properties = properties.into_iter().map(|(k, v)| (k, v.as_str().unwrap().to_string())).collect();
                world.hubspot.create(properties, now).parse().unwrap()
            })
            .collect()
    };
    for (i, id) in ids.iter().enumerate() {
        deliver(running, json!([mql_event(9_000_000 + i as u64, *id)])).await;
    }
    ids
}

/// The shipped MQL pipeline with a new territory rule first: the
/// Netherlands go to EMEA enterprise whatever their size.
fn changed_pipeline(dir: &Path) -> PathBuf {
    changed_pipeline_as(dir, |_| {})
}

/// [`changed_pipeline`], then `adjust`ed.
fn changed_pipeline_as(dir: &Path, adjust: impl FnOnce(&mut Pipeline)) -> PathBuf {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/mql-handoff.json");
    let mut pipeline: Pipeline = serde_json::from_str(&std::fs::read_to_string(&shipped).unwrap()).unwrap();
    pipeline.version += 1;
    pipeline.schema = None;
    let route = pipeline.nodes.iter_mut().find(|n| n.id == "route").unwrap();
    let rules = route.config["rules"].as_array_mut().unwrap();
    rules.insert(
        0,
        json!({"name": "Netherlands to enterprise", "when": {"countries": ["Netherlands"]}, "team": "emea-enterprise"}),
    );
    adjust(&mut pipeline);
    let path = dir.join(format!("{}.json", pipeline.name));
    std::fs::write(&path, serde_json::to_string_pretty(&pipeline).unwrap()).unwrap();
    path
}

/// Owners by lead number, as the ledger of `running` recorded them.
async fn live_owners(running: &Running, ids: &[u64]) -> Vec<Option<String>> {
    let ledger = ledger(running);
    let mut owners = Vec::new();
    for id in ids {
        let lead = handoff::ledger::Ledger::lead(&ledger, &id.to_string()).await.unwrap().expect("the lead");
        owners.push(lead.owner);
    }
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rules_change_simulated_over_recorded_leads_gives_the_owners_the_changed_pipeline_gives_live() {
    let recorded = start_handoff_on(unlimited(), tempfile::tempdir().unwrap(), test_clock(), |o| o).await;
    deliver_leads(&recorded, LEADS).await;
    let requests_before = recorded.emulators.state.world().requests.len();

    // The change, simulated over what the ledger recorded.
    let dir = tempfile::tempdir().unwrap();
    let changed = changed_pipeline(dir.path());
    let host = TestHost::new().await;
    let prepared = Arc::new(handoff::pipeline::load_file(&changed, &host.registry).unwrap().tried_once());
    let set = handoff::simulate::leads_from_ledger(&ledger(&recorded), "mql-handoff", 0, i64::MAX).await.unwrap();
    let extra: Vec<_> = set
        .leads
        .iter()
        .filter(|l| !l.event_id.starts_with("hubspot:900"))
        .map(|l| (&l.event_id, &l.input))
        .take(3)
        .collect();
    assert_eq!(set.leads.len(), LEADS, "every recorded lead is simulated: {:?} {extra:?}", set.skipped.first());
    let roster_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/roster.json");
    let roster = Arc::new(handoff::roster::FileRoster::load(&roster_path).unwrap());
    let dry = DryRun::new(Some(roster.clone() as Arc<dyn handoff::capabilities::Roster>), Missing::Unavailable);
    let simulated = handoff::simulate::run(&host.runtime, &prepared, &set.leads, &dry).await;
    let not_simulated: Vec<_> = simulated.leads.iter().filter_map(|l| l.not_simulated.clone()).collect();
    assert!(not_simulated.is_empty(), "{} not simulated, e.g. {:?}", not_simulated.len(), not_simulated.first());

    // Nothing was sent: the providers saw no request from the simulation.
    assert_eq!(recorded.emulators.state.world().requests.len(), requests_before);
    assert!(simulated.would_send.get("chat.send-dm").is_some_and(|&n| n > 0), "{:?}", simulated.would_send);

    // The change moves leads: compared with what was decided live.
    let live: Vec<_> = set.leads.iter().map(|l| l.live.clone()).collect();
    let comparison = handoff::simulate::compare("live", &live, &simulated, Some(&roster.current()));
    assert_eq!(comparison.compared, LEADS);
    assert!(!comparison.changed.is_empty(), "the new rule changes some owners");
    // Dutch leads change team; others at most change rep within their team
    // (the round-robin turns differently once the Dutch leave it).
    let number =
        |lead: &str| -> usize { lead.split("Lead ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap() };
    for change in &comparison.changed {
        let dutch = lead_properties(number(&change.lead))["country"] == "Netherlands";
        if dutch {
            assert_eq!(change.after.team.as_deref(), Some("emea-enterprise"), "{change:?}");
        } else {
            assert_eq!(change.after.team, change.before.team, "only Dutch leads change team: {change:?}");
        }
    }
    assert!(comparison.changed.iter().any(|c| lead_properties(number(&c.lead))["country"] == "Netherlands"));
    let emea_enterprise = comparison.teams.iter().find(|t| t.name == "emea-enterprise").unwrap();
    assert!(emea_enterprise.after > emea_enterprise.before, "{emea_enterprise:?}");

    // The changed pipeline run live on the same inputs, from the same start.
    let live_changed = start_handoff_on(unlimited(), tempfile::tempdir().unwrap(), test_clock(), |options| {
        handoff::app::AppOptions { pipelines: vec![changed.clone()], ..options }
    })
    .await;
    let changed_ids = deliver_leads(&live_changed, LEADS).await;
    let owners = live_owners(&live_changed, &changed_ids).await;
    let simulated_owners: Vec<Option<String>> = simulated.leads.iter().map(|l| l.decision.owner.clone()).collect();
    let differing: Vec<_> = (0..LEADS).filter(|&i| owners[i] != simulated_owners[i]).collect();
    assert!(
        differing.is_empty(),
        "{} leads differ, e.g. lead {}: live {:?}, simulated {:?}",
        differing.len(),
        differing[0],
        owners[differing[0]],
        simulated_owners[differing[0]]
    );
    // The same holds for the states (invalid, duplicate, notified...).
    let states = |leads: &[handoff::simulate::Simulated]| {
        leads.iter().fold(BTreeMap::<String, usize>::new(), |mut m, l| {
            *m.entry(l.decision.state.clone()).or_default() += 1;
            m
        })
    };
    let ledger_changed = ledger(&live_changed);
    let mut live_states = BTreeMap::<String, usize>::new();
    for id in &changed_ids {
        let lead = handoff::ledger::Ledger::lead(&ledger_changed, &id.to_string()).await.unwrap().unwrap();
        *live_states.entry(lead.state.as_str().to_string()).or_default() += 1;
    }
    assert_eq!(states(&simulated.leads), live_states);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_with_a_changed_route_plugin_shows_the_change_at_the_route_node_only() {
    let running = start_handoff().await;
    let properties = json!({
        "email": "greta.brandt@kessler-maschinenbau.de", "firstname": "Greta", "lastname": "Brandt",
        "company": "Kessler Maschinenbau", "country": "Germany", "numemployees": "2400",
        "lifecyclestage": "marketingqualifiedlead", "hubspotscore": "80",
    });
    let id = handoff_emulators::drive::create_contact(&reqwest::Client::new(), running.emulators.http, &properties)
        .await
        .unwrap();
    deliver(&running, json!([mql_event(4242, id.parse().unwrap())])).await;
    let live_owner = handoff::ledger::Ledger::lead(&ledger(&running), &id).await.unwrap().unwrap().owner.unwrap();
    assert_ne!(live_owner, "Tom Dubois", "EMEA enterprise has no Tom");

    let host = TestHost::new().await;
    let mut changed_plugins = host.registry.clone();
    changed_plugins.insert(load_program(&host.runtime, programs::REROUTE).await);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/mql-handoff.json");
    let original = Arc::new(handoff::pipeline::load_file(&shipped, &host.registry).unwrap().tried_once());
    let changed = Arc::new(handoff::pipeline::load_file(&shipped, &changed_plugins).unwrap().tried_once());
    let roster_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines/roster.json");
    let roster: Arc<dyn handoff::capabilities::Roster> =
        Arc::new(handoff::roster::FileRoster::load(&roster_path).unwrap());
    let requests_before = running.emulators.state.world().requests.len();

    let (event, trace) = handoff::replay::recorded(&ledger(&running), "mql-handoff:hubspot:4242").await.unwrap();
    let report =
        handoff::replay::replay(&host.runtime, &event, &trace, &original, &changed, "route v2", Some(roster)).await;

    assert!(report.reproduced, "the original replays as it ran: {:?} vs {:?}", report.before, report.recorded);
    assert_eq!(report.before.owner.as_deref(), Some(live_owner.as_str()));
    assert_eq!(report.after.owner.as_deref(), Some("Tom Dubois"));
    let verdicts: BTreeMap<&str, handoff::replay::Verdict> =
        report.nodes.iter().map(|n| (n.node.as_str(), n.verdict)).collect();
    use handoff::replay::Verdict::*;
    let changed_nodes: Vec<&str> = verdicts.iter().filter(|(_, v)| **v == Changed).map(|(n, _)| *n).collect();
    assert_eq!(changed_nodes, ["route"], "{verdicts:?}");
    for node in ["fetch", "validate", "dedupe", "summarize"] {
        assert_eq!(verdicts[node], Same, "{node}: {verdicts:?}");
    }
    assert_eq!(verdicts["assign"], InputChanged, "{verdicts:?}");
    let route = report.nodes.iter().find(|n| n.node == "route").unwrap();
    assert_eq!(route.fields, ["routing"]);
    assert!(report.effects_only_after.iter().any(|e| e.contains("DM to tom.dubois@handoff-demo.com")), "{report:?}");
    assert!(report.effects_only_before.iter().any(|e| e.starts_with("chat.send-dm")), "{report:?}");
    assert_eq!(running.emulators.state.world().requests.len(), requests_before, "a replay sends nothing");
    let text = handoff::replay::render(&report);
    assert!(text.contains("route            CHANGED (same input): routing"), "{text}");
}

/// Requests the emulators answered, by provider and method, but for Slack
/// `chat.update`: whether the summary joins the DM or updates it after is
/// a race the live pipeline runs (the merge takes what is there), so the
/// number of updates varies from run to run.
fn requests_by_kind(running: &Running) -> BTreeMap<(String, String), usize> {
    let world = running.emulators.state.world();
    world.requests.iter().filter(|r| !r.path.ends_with("chat.update")).fold(BTreeMap::new(), |mut m, r| {
        *m.entry((r.provider.to_string(), r.method.clone())).or_default() += 1;
        m
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_pipeline_beside_the_live_one_sends_nothing_and_its_decisions_are_kept() {
    const EVENTS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let shadow = changed_pipeline_as(dir.path(), |p| {
        p.name = "mql-handoff-shadow".into();
        p.mode = handoff::pipeline::model::Mode::Shadow;
        p.shadows = Some("mql-handoff".into());
    });
    let with_shadow = start_handoff_on(unlimited(), tempfile::tempdir().unwrap(), test_clock(), |options| {
        let mut pipelines = options.pipelines.clone();
        pipelines.push(shadow.clone());
        handoff::app::AppOptions { pipelines, ..options }
    })
    .await;
    let ids = deliver_leads(&with_shadow, EVENTS).await;
    let alone = start_handoff_on(unlimited(), tempfile::tempdir().unwrap(), test_clock(), |o| o).await;
    deliver_leads(&alone, EVENTS).await;

    // The shadow sent nothing: every provider saw exactly the requests the
    // live pipeline alone makes, and Slack holds the same messages.
    assert_eq!(requests_by_kind(&with_shadow), requests_by_kind(&alone));
    let messages = |r: &Running| r.emulators.state.world().slack.messages.len();
    assert_eq!(messages(&with_shadow), messages(&alone));

    // Its decisions are kept, one per lead, beside the live ones.
    let report = handoff::reports::shadow_report(&ledger(&with_shadow), None, None, 10_000).await.unwrap();
    assert_eq!(report.decisions.len(), EVENTS);
    assert_eq!(report.pipelines.len(), 1);
    let summary = &report.pipelines[0];
    assert_eq!((summary.pipeline.as_str(), summary.shadows.as_str()), ("mql-handoff-shadow", "mql-handoff"));
    assert!(summary.differ > 0 && summary.differ < EVENTS, "{summary:?}");
    for d in &report.decisions {
        let i = ids.iter().position(|id| Some(id.to_string()) == d.lead_id).unwrap();
        let live = handoff::ledger::Ledger::lead(&ledger(&with_shadow), &ids[i].to_string()).await.unwrap().unwrap();
        assert_eq!(d.live.owner, live.owner, "the live decision is the one made");
        if lead_properties(i)["country"] == "Netherlands" && d.shadow.state == "notified" {
            assert_eq!(d.shadow.team.as_deref(), Some("emea-enterprise"), "{d:?}");
        }
    }

    // Over the API, and on the lead.
    let base = format!("http://{}", with_shadow.app.server.addr);
    let api: Value = reqwest::get(format!("{base}/api/shadow?pipeline=mql-handoff-shadow&limit=5"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(api["decisions"].as_array().unwrap().len(), 5);
    assert_eq!(api["pipelines"][0]["pipeline"], "mql-handoff-shadow");
    let differing = report.decisions.iter().find(|d| d.differs).unwrap();
    let lead_id = differing.lead_id.clone().unwrap();
    let detail: Value = reqwest::get(format!("{base}/api/leads/{lead_id}")).await.unwrap().json().await.unwrap();
    assert_eq!(detail["shadow"][0]["shadow"]["owner"], json!(differing.shadow.owner));
    let page = reqwest::get(format!("{base}/leads/{lead_id}")).await.unwrap().text().await.unwrap();
    assert!(page.contains("Shadow pipelines") && page.contains("mql-handoff-shadow"), "{page}");
}
