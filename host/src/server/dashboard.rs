//! The dashboard at `/`: the five metrics against their targets, their
//! trend by week, rejection reasons, leads at risk of breaching their SLA
//! right now, each rep's load and response, and each lead's timeline
//! (`/leads/{id}`). Server-rendered HTML (maud) with SVG charts (plotters):
//! no script, no build step. Behind the API token rule: a bearer token, or
//! the cookie `/?token=` sets.

use super::AppState;
use crate::charts::{bar_chart, line_chart};
use crate::reports::{Figures, GroupBy, MetricRules, Metrics};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use plotters::style::RGBColor;
use std::sync::Arc;

const WEEK: i64 = 7 * 86_400_000;
/// Weeks the trend charts show.
const TREND_WEEKS: i64 = 8;
/// A lead whose SLA runs out within this is at risk.
const AT_RISK_WITHIN: i64 = 3_600_000;

/// The dashboard's routes.
pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(overview))
        .route("/leads/{id}", get(lead_page))
        .layer(axum::middleware::from_fn_with_state(state.clone(), require_viewer))
        .layer(axum::middleware::from_fn_with_state(state, super::origin::same_origin_only))
}

#[derive(Debug, serde::Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

fn token_matches(given: &str, expected: &str) -> bool {
    given.len() == expected.len() && given.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// The API token rule for a browser: the bearer header, or the cookie that
/// `/?token=...` sets (HttpOnly, SameSite=Strict) before redirecting.
async fn require_viewer(
    State(state): State<Arc<AppState>>,
    Query(query): Query<TokenQuery>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(token) = &state.api_token else { return next.run(request).await };
    let expected = token.expose();
    if let Some(given) = &query.token {
        if token_matches(given, expected) {
            let cookie = format!("handoff_token={given}; HttpOnly; SameSite=Strict; Path=/");
            return ([(header::SET_COOKIE, cookie)], Redirect::to(request.uri().path())).into_response();
        }
        return (StatusCode::UNAUTHORIZED, "wrong token").into_response();
    }
    let headers: &HeaderMap = request.headers();
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("handoff_token="));
    if bearer.or(cookie).is_some_and(|g| token_matches(g, expected)) {
        return next.run(request).await;
    }
    (StatusCode::UNAUTHORIZED, "open /?token=<api token> once, or send Authorization: Bearer <api token>")
        .into_response()
}

fn page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Handoff" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { a href="/" { "Handoff" } span { " · handoff health" } }
                main { (body) }
            }
        }
    }
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:12px 24px;font-size:18px}header a{color:#fff;text-decoration:none;font-weight:600}
main{padding:20px 24px;max-width:1200px}h1{font-size:22px;margin:8px 0 4px}h2{font-size:17px;margin:28px 0 8px}
.cards{display:grid;grid-template-columns:repeat(5,1fr);gap:12px}.card{background:#fff;border-radius:8px;padding:14px;box-shadow:0 1px 2px #0002}
.card .name{font-size:13px;color:#5b6478}.card .value{font-size:28px;font-weight:650;margin:6px 0}.card .target{font-size:13px}
.met{color:#137333}.missed{color:#b3261e}.nodata{color:#5b6478}
table{border-collapse:collapse;background:#fff;width:100%;box-shadow:0 1px 2px #0002}th,td{padding:7px 10px;border-bottom:1px solid #e6e8ec;text-align:left;font-size:14px}
th{background:#eef0f4;font-weight:600}.charts{display:grid;grid-template-columns:1fr 1fr;gap:12px}.chart{background:#fff;padding:8px;border-radius:8px;box-shadow:0 1px 2px #0002}
.muted{color:#5b6478;font-size:13px}a{color:#0b57d0}
";

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

fn speed(value: Option<i64>) -> String {
    value.map_or_else(|| "-".into(), crate::reports::human_ms)
}

/// The five metrics as cards, each with its target and verdict.
fn cards(figures: &Figures) -> Markup {
    let keys = ["speed_to_contact", "sla_compliance", "acceptance_rate", "drop_rate", "recycle_conversion"];
    html! {
        div.cards {
            @for ((name, value, target, met), key) in crate::reports::scorecard(figures).into_iter().zip(keys) {
                div.card {
                    div.name { (name) }
                    div.value data-metric=(key) { (value) }
                    div.target {
                        "target " (target) " · "
                        @match met {
                            Some(true) => span.met { "met" },
                            Some(false) => span.missed { "missed" },
                            None => span.nodata { "no data yet" },
                        }
                    }
                }
            }
        }
    }
}

/// A line chart of weekly series (values in `unit`), as SVG.
/// A lead in flight toward its SLA deadline.
struct AtRisk {
    lead: String,
    name: String,
    owner: String,
    state: String,
    deadline: i64,
}

async fn at_risk(state: &AppState, now: i64, sla_ms: i64) -> anyhow::Result<Vec<AtRisk>> {
    let mut risky = Vec::new();
    for name in ["notified", "reminded", "escalated", "reassigned"] {
        let Some(lead_state) =
            state.ledger.lead_states().await?.into_iter().map(|(s, _)| s).find(|s| s.as_str() == name)
        else {
            continue;
        };
        for lead in state.ledger.leads(Some(&lead_state), 500).await? {
            let Some(record) = state.ledger.lead(&lead.id).await? else { continue };
            let Some(notified) = record.timeline.iter().rev().find(|s| s.state.as_str() == "notified") else {
                continue;
            };
            let deadline = notified.at + sla_ms;
            // Due within the hour, or breached and not yet a drop.
            if deadline - now <= AT_RISK_WITHIN && now - deadline < MetricRules::default().drop_after_ms {
                risky.push(AtRisk {
                    lead: lead.id.clone(),
                    name: lead.name.clone().unwrap_or_else(|| lead.id.clone()),
                    owner: lead.owner.clone().unwrap_or_default(),
                    state: name.to_string(),
                    deadline,
                });
            }
        }
    }
    risky.sort_by_key(|r| r.deadline);
    Ok(risky)
}

fn when(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map_or_else(|_| ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
}

/// `/?from=2026-11-25`: the week starting then (default: the last 7 days).
#[derive(Debug, serde::Deserialize)]
struct WeekQuery {
    from: Option<String>,
}

async fn overview(State(state): State<Arc<AppState>>, Query(query): Query<WeekQuery>) -> Response {
    let now = state.clock.now_ms();
    let end = match query.from.as_deref().map(crate::reports::parse_time) {
        None => now + 1,
        Some(Ok(from)) => from + WEEK,
        Some(Err(e)) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match render_overview(&state, end).await {
        Ok(markup) => markup.into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("the ledger cannot be read: {e}")).into_response(),
    }
}

async fn render_overview(state: &AppState, period_end: i64) -> anyhow::Result<Markup> {
    let now = state.clock.now_ms();
    let rules = MetricRules::default();
    let this_week: Metrics =
        crate::reports::metrics(&*state.ledger, period_end - WEEK, period_end, now, Some(GroupBy::Rep), rules).await?;
    let mut weeks = Vec::new();
    let mut trend: Vec<Figures> = Vec::new();
    for back in (0..TREND_WEEKS).rev() {
        let end = period_end - back * WEEK;
        let m = crate::reports::metrics(&*state.ledger, end - WEEK, end, now, None, rules).await?;
        weeks.push(crate::connectors::time::date(end - WEEK)[5..].to_string());
        trend.push(m.overall);
    }
    let rates = line_chart(
        "SLA compliance, acceptance and drop rate by week (%)",
        &weeks,
        &[
            (
                "SLA compliance",
                RGBColor(19, 115, 51),
                trend.iter().map(|f| f.sla_compliance.map(|v| v * 100.0)).collect(),
            ),
            ("Acceptance", RGBColor(11, 87, 208), trend.iter().map(|f| f.acceptance_rate.map(|v| v * 100.0)).collect()),
            ("Drop rate", RGBColor(179, 38, 30), trend.iter().map(|f| f.drop_rate.map(|v| v * 100.0)).collect()),
        ],
        100.0,
    );
    let speeds: Vec<Option<f64>> = trend.iter().map(|f| f.speed_to_contact_ms.map(|ms| ms as f64 / 60_000.0)).collect();
    let top_speed = speeds.iter().flatten().copied().fold(10.0, f64::max) * 1.1;
    let speed_chart = line_chart(
        "Median speed to contact by week (minutes)",
        &weeks,
        &[("Speed to contact", RGBColor(11, 87, 208), speeds)],
        top_speed,
    );
    let mut reasons: Vec<(String, u64)> = this_week.rejection_reasons.iter().map(|(k, v)| (k.clone(), *v)).collect();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let reason_chart = bar_chart("Rejection reasons this week", &reasons);
    let risky = at_risk(state, now, rules.sla_ms).await?;
    let in_flight: u64 = state
        .ledger
        .lead_states()
        .await?
        .into_iter()
        .filter(|(s, _)| s.phase() == crate::lead::Phase::InFlight)
        .map(|(_, n)| n)
        .sum();
    let handed = this_week.overall.leads.notified.len();
    Ok(page(
        "Handoff health",
        html! {
            h1 {
                @if period_end > now { "Handoff health: the last 7 days" }
                @else { "Handoff health: the week of " (crate::connectors::time::date(period_end - WEEK)) }
            }
            p.muted {
                (handed) " leads handed to reps, " (in_flight) " in flight now · as of " (when(now))
                " · from the ledger, which saw every MQL, DM, click and timer"
            }
            (cards(&this_week.overall))
            h2 { "Trends" }
            div.charts {
                div.chart { (PreEscaped(rates)) }
                div.chart { (PreEscaped(speed_chart)) }
            }
            h2 { "At risk of breaching the SLA now" }
            @if risky.is_empty() {
                p.muted { "No lead is within an hour of its SLA deadline." }
            } @else {
                table #at-risk {
                    tr { th { "Lead" } th { "Owner" } th { "State" } th { "SLA deadline" } }
                    @for r in &risky {
                        tr {
                            td { a href=(format!("/leads/{}", r.lead)) { (r.name) } }
                            td { (r.owner) }
                            td { (r.state) }
                            td { (when(r.deadline)) @if r.deadline < now { " " span.missed { "(breached)" } } }
                        }
                    }
                }
            }
            h2 { "Reps: load and response" }
            table #reps {
                tr { th { "Rep" } th { "Leads" } th { "Speed to contact" } th { "SLA compliance" } th { "Acceptance" } th { "Dropped" } }
                @for (rep, f) in &this_week.groups {
                    tr {
                        td { (rep) }
                        td { (f.leads.notified.len()) }
                        td { (speed(f.speed_to_contact_ms)) }
                        td { (percent(f.sla_compliance)) }
                        td { (percent(f.acceptance_rate)) }
                        td { (f.leads.dropped.len()) }
                    }
                }
            }
            h2 { "Rejections" }
            div.charts {
                div.chart { (PreEscaped(reason_chart)) }
                div {
                    table #rejections {
                        tr { th { "Reason" } th { "Rejected" } }
                        @for (reason, n) in &reasons { tr { td { (reason) } td { (n) } } }
                    }
                    p.muted { "SLA ladder steps fired: "
                        @for (step, n) in &this_week.ladder_steps { (step) " " (n) "; " }
                    }
                }
            }
            h2 { "Leads handed to reps" }
            table #leads {
                tr { th { "Lead" } th { "Outcome" } }
                @for lead in &this_week.overall.leads.notified {
                    tr {
                        td { a href=(format!("/leads/{lead}")) { (lead) } }
                        td { (outcome_of(&this_week.overall, lead)) }
                    }
                }
            }
        },
    ))
}

fn outcome_of(figures: &Figures, lead: &str) -> &'static str {
    let has = |list: &Vec<String>| list.iter().any(|l| l == lead);
    let leads = &figures.leads;
    if has(&leads.accepted) {
        "accepted"
    } else if has(&leads.rejected) {
        "rejected"
    } else if has(&leads.dropped) {
        "dropped"
    } else if has(&leads.within_sla) {
        "contacted within the SLA"
    } else if has(&leads.breached) {
        "SLA breached"
    } else {
        "in flight"
    }
}

async fn lead_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let (lead, timers) = match (state.ledger.lead(&id).await, state.ledger.lead_timers(&id).await) {
        (Ok(Some(lead)), Ok(timers)) => (lead, timers),
        (Ok(None), _) => return (StatusCode::NOT_FOUND, format!("no lead {id}")).into_response(),
        (Err(e), _) | (_, Err(e)) => {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("the ledger cannot be read: {e}")).into_response();
        }
    };
    // Shadow decisions are an addition: a ledger that cannot list them
    // still shows the lead.
    let shadow = state.ledger.shadow_decisions(Some(&id), None, 100).await.unwrap_or_default();
    let name = lead.name.clone().unwrap_or_else(|| id.clone());
    page(
        &name,
        html! {
            h1 { (name) }
            p.muted {
                (lead.company.clone().unwrap_or_default()) " · " (lead.email.clone().unwrap_or_default())
                " · owner " (lead.owner.clone().unwrap_or_else(|| "none".into()))
                " · now " strong #lead-state { (lead.state.as_str()) }
            }
            h2 { "Timeline" }
            table #timeline {
                tr { th { "When" } th { "State" } th { "What happened, and why" } }
                @for step in &lead.timeline {
                    tr { td { (when(step.at)) } td { (step.state.as_str()) } td { (step.detail) } }
                }
            }
            @if !timers.is_empty() {
                h2 { "Timers" }
                table #timers {
                    tr { th { "Due" } th { "What" } th { "State" } }
                    @for t in &timers {
                        tr {
                            td { (when(t.due_at)) }
                            td { (t.label.clone().unwrap_or_default()) }
                            td { (t.state) @if let Some(reason) = &t.reason { " (" (reason) ")" } }
                        }
                    }
                }
            }
            @if !shadow.is_empty() {
                h2 { "Shadow pipelines" }
                p.muted { "What a pipeline in shadow mode would have decided, beside what was decided. Nothing was sent." }
                table #shadow {
                    tr { th { "When" } th { "Shadow pipeline" } th { "Live" } th { "Shadow" } th { "Why (shadow)" } }
                    @for d in &shadow {
                        tr {
                            td { (when(d.at)) }
                            td { (d.pipeline) }
                            td { (d.live.summary()) }
                            td { @if d.differs { strong { (d.shadow.summary()) } } @else { (d.shadow.summary()) } }
                            td { (d.shadow.why) }
                        }
                    }
                }
            }
            p { a href="/" { "← Handoff health" } }
        },
    )
    .into_response()
}
