//! Handoff health on a hand-computed fixture: every metric, overall and by
//! team, with the edge cases (no decisions, a lead reassigned and accepted
//! after its SLA ran out, a lead whose SLA has not run out yet).

use handoff::lead::{LeadFacts, LeadState, Phase, Step};
use handoff::ledger::{Ledger, SqliteStore};
use handoff::reports::{GroupBy, MetricRules, metrics};
use serde_json::{Value, json};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const T: i64 = 1_795_000_000_000;

fn state(name: &str, phase: Phase) -> LeadState {
    LeadState::new(name, phase).unwrap()
}

fn step(at: i64, name: &str, data: Option<Value>) -> Step {
    let phase = match name {
        "notified" | "accepted" | "rejected" | "contacted" | "reassigned" => Phase::Settled,
        "nurture" | "converted" => Phase::Ended,
        _ => Phase::InFlight,
    };
    let detail =
        if name == "nurture" { "re-evaluated after 90d (Timing not right): stays".into() } else { name.into() };
    Step { at, state: state(name, phase), detail, data }
}

fn notified(at: i64, team: &str, rep: &str) -> Step {
    step(
        at,
        "notified",
        Some(json!({"team": team, "owner": rep, "source": "PAID_SEARCH", "campaign": "ROI calculator"})),
    )
}

async fn fixture() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteStore::open(&dir.path().join("handoff.db")).unwrap();
    let leads: Vec<(&str, Vec<Step>)> = vec![
        // Accepted in 5 minutes.
        ("L1", vec![notified(T, "na", "Carlos Ruiz"), step(T + 6 * MIN, "accepted", Some(json!({"at": T + 5 * MIN})))]),
        // A call logged at 20 minutes, found by the ladder's 30-minute check; no decision.
        (
            "L2",
            vec![notified(T, "na", "Carlos Ruiz"), step(T + 30 * MIN, "contacted", Some(json!({"at": T + 20 * MIN})))],
        ),
        // Reassigned at 4 h, accepted by the new rep at 5 h: after the SLA ran out.
        (
            "L3",
            vec![
                notified(T, "na", "Jake Miller"),
                step(T + 4 * HOUR, "reassigned", None),
                step(T + 5 * HOUR, "accepted", None),
            ],
        ),
        // Rejected at 10 minutes: a decision and activity, but no contact.
        (
            "L4",
            vec![
                notified(T, "emea", "Lena Fischer"),
                step(T + 10 * MIN, "rejected", Some(json!({"label": "No budget"}))),
            ],
        ),
        // Never touched: dropped.
        ("L5", vec![notified(T, "emea", "Lena Fischer")]),
        // Handed off two hours before "now": its SLA has not run out.
        ("L6", vec![notified(T + 70 * HOUR, "emea", "Lena Fischer")]),
        // Re-evaluations of recycled leads: back to sales, converted, stays.
        ("L7", vec![step(T + HOUR, "recycled", None)]),
        ("L8", vec![step(T + HOUR, "converted", None)]),
        ("L9", vec![step(T + HOUR, "nurture", None)]),
    ];
    for (lead, steps) in leads {
        for (n, s) in steps.into_iter().enumerate() {
            ledger.record_steps(lead, &format!("{lead}-{n}"), &LeadFacts::default(), &[s]).await.unwrap();
        }
    }
    ledger.flush().await.unwrap();
    (dir, ledger)
}

fn close(value: Option<f64>, expected: f64) -> bool {
    value.is_some_and(|v| (v - expected).abs() < 1e-9)
}

#[tokio::test]
async fn the_five_metrics_match_the_hand_computed_values() {
    let (_dir, ledger) = fixture().await;
    let now = T + 72 * HOUR;
    let m = metrics(&ledger, T, T + 80 * HOUR, now, Some(GroupBy::Team), MetricRules::default()).await.unwrap();
    let o = &m.overall;
    // Touches: 5 min, 20 min, 5 h: the median is 20 min.
    assert_eq!(o.speed_to_contact_ms, Some(20 * MIN));
    // Within 4 h: L1, L2; breached: L3 (accepted after), L4, L5; L6 not yet due.
    assert_eq!(o.leads.within_sla, ["L1", "L2"]);
    assert_eq!(o.leads.breached, ["L3", "L4", "L5"]);
    assert!(close(o.sla_compliance, 2.0 / 5.0), "{:?}", o.sla_compliance);
    // Accepted L1, L3; rejected L4.
    assert!(close(o.acceptance_rate, 2.0 / 3.0), "{:?}", o.acceptance_rate);
    // Of the five handed off 48 h ago or more, only L5 had no activity.
    assert_eq!(o.leads.dropped, ["L5"]);
    assert!(close(o.drop_rate, 1.0 / 5.0));
    // Three re-evaluated, one converted.
    assert!(close(o.recycle_conversion, 1.0 / 3.0));
    assert_eq!(o.leads.notified.len(), 6);

    let na = &m.groups["na"];
    assert_eq!(na.speed_to_contact_ms, Some(20 * MIN));
    assert!(close(na.sla_compliance, 2.0 / 3.0));
    assert!(close(na.acceptance_rate, 1.0));
    assert!(close(na.drop_rate, 0.0));
    let emea = &m.groups["emea"];
    assert_eq!(emea.speed_to_contact_ms, None, "nobody in EMEA was contacted");
    assert!(close(emea.sla_compliance, 0.0));
    assert!(close(emea.acceptance_rate, 0.0));
    assert!(close(emea.drop_rate, 1.0 / 2.0));
    assert_eq!(m.rejection_reasons["No budget"], 1);
    assert_eq!(m.ladder_steps["reassigned"], 1);
}

#[tokio::test]
async fn a_period_without_decisions_or_touches_has_no_rate_rather_than_zero() {
    let (_dir, ledger) = fixture().await;
    // Only L6 was handed off in this window, two hours before "now".
    let m = metrics(&ledger, T + 60 * HOUR, T + 80 * HOUR, T + 72 * HOUR, None, MetricRules::default()).await.unwrap();
    assert_eq!(m.overall.leads.notified, ["L6"]);
    assert_eq!(m.overall.speed_to_contact_ms, None);
    assert_eq!(m.overall.sla_compliance, None);
    assert_eq!(m.overall.acceptance_rate, None);
    assert_eq!(m.overall.drop_rate, None);
    let table = handoff::reports::render_metrics(&m);
    assert!(table.contains("Acceptance rate") && table.contains(" - "), "{table}");
}
