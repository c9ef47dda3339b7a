//! Reports read from the ledger's lead steps: handoff health (the five
//! metrics, `/api/metrics`, `handoff metrics`, the digest and the
//! dashboard) and what sales sent back to marketing and what became of it
//! (`/api/rejections`, `handoff rejections`). They read the `data` the plugins' lead marks keep with a
//! step (a rejection's reason, source and rep; a recycle's campaign), so a
//! report needs no plugin-specific table.

use crate::lead::Step;
use crate::ledger::Ledger;
use anyhow::Result;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// One rejection and what became of its lead.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Rejection {
    /// The lead (marketing contact id).
    pub lead: String,
    /// When it was rejected (host clock, ms).
    pub at: i64,
    /// Reason code (`timing`).
    pub reason: String,
    /// Reason as people read it.
    pub label: String,
    /// `slack` or `salesforce`.
    pub source: String,
    /// The rep who rejected it.
    pub by: String,
    /// The note given with "Other".
    pub note: Option<String>,
    /// The campaign the contact came from (its HubSpot property).
    pub campaign: Option<String>,
    /// Where it is now: `rejected` (not back with marketing yet), `nurture`,
    /// `recycled` (back to sales), `converted`.
    pub outcome: String,
    /// When it is (or was) re-evaluated.
    pub reevaluate_at: Option<i64>,
}

/// Counts of one group (a reason, a source, a campaign, a rep).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Tally {
    /// Rejections.
    pub rejected: u64,
    /// Of those, recycled back to sales.
    pub recycled: u64,
    /// Of those, converted (an opportunity or a customer).
    pub converted: u64,
}

/// The rejection report for a period.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RejectionReport {
    /// From (inclusive), host clock ms.
    pub from: i64,
    /// To (exclusive), host clock ms.
    pub to: i64,
    /// Every rejection in the period, oldest first.
    pub rejections: Vec<Rejection>,
    /// By reason label.
    pub by_reason: BTreeMap<String, Tally>,
    /// By source (`slack`, `salesforce`).
    pub by_source: BTreeMap<String, Tally>,
    /// By campaign (`(none)` when unknown).
    pub by_campaign: BTreeMap<String, Tally>,
    /// By rep.
    pub by_rep: BTreeMap<String, Tally>,
    /// All of them.
    pub total: Tally,
}

fn text(data: &Value, key: &str) -> String {
    data[key].as_str().unwrap_or_default().to_string()
}

/// Rejections made from `from` up to `to` (host clock, ms) and what became
/// of each lead since.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn rejections(ledger: &dyn Ledger, from: i64, to: i64) -> Result<RejectionReport> {
    let rejected = ledger.steps_between(&["rejected"], from, to).await?;
    let later = ledger.steps_between(&["nurture", "recycled", "converted"], from, i64::MAX).await?;
    let mut after: HashMap<&str, Vec<&Step>> = HashMap::new();
    for (lead, step) in &later {
        after.entry(lead.as_str()).or_default().push(step);
    }
    let mut report = RejectionReport {
        from,
        to,
        rejections: Vec::new(),
        by_reason: BTreeMap::new(),
        by_source: BTreeMap::new(),
        by_campaign: BTreeMap::new(),
        by_rep: BTreeMap::new(),
        total: Tally::default(),
    };
    for (index, (lead, step)) in rejected.iter().enumerate() {
        let data = step.data.clone().unwrap_or_default();
        // What followed this rejection, up to the lead's next rejection.
        let next_rejection =
            rejected.iter().skip(index + 1).find(|(other, _)| other == lead).map_or(i64::MAX, |(_, s)| s.at);
        let followed: Vec<&&Step> = after
            .get(lead.as_str())
            .map(|steps| steps.iter().filter(|s| s.at >= step.at && s.at < next_rejection).collect())
            .unwrap_or_default();
        let nurture = followed.iter().find(|s| s.state.as_str() == "nurture").and_then(|s| s.data.clone());
        let outcome = followed.last().map_or("rejected", |s| s.state.as_str()).to_string();
        let campaign = nurture.as_ref().and_then(|n| n["campaign"].as_str().map(str::to_string));
        let rejection = Rejection {
            lead: lead.clone(),
            at: step.at,
            reason: text(&data, "reason"),
            label: text(&data, "label"),
            source: text(&data, "source"),
            by: text(&data, "by"),
            note: data["note"].as_str().map(str::to_string),
            campaign,
            reevaluate_at: nurture.as_ref().and_then(|n| n["reevaluate_at"].as_i64()),
            outcome,
        };
        let recycled = followed.iter().any(|s| s.state.as_str() == "recycled");
        let converted = followed.iter().any(|s| s.state.as_str() == "converted");
        let campaign_key = rejection.campaign.clone().unwrap_or_else(|| "(none)".into());
        for tally in [
            report.by_reason.entry(rejection.label.clone()).or_default(),
            report.by_source.entry(rejection.source.clone()).or_default(),
            report.by_campaign.entry(campaign_key).or_default(),
            report.by_rep.entry(rejection.by.clone()).or_default(),
            &mut report.total,
        ] {
            tally.rejected += 1;
            tally.recycled += u64::from(recycled);
            tally.converted += u64::from(converted);
        }
        report.rejections.push(rejection);
    }
    Ok(report)
}

/// A time in a query: milliseconds, or an RFC 3339 date or timestamp
/// (`2026-11-01`, `2026-11-01T00:00:00Z`).
///
/// # Errors
///
/// What is wrong with it.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>() {
        return date
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map(|z| z.timestamp().as_millisecond())
            .map_err(|e| e.to_string());
    }
    text.parse::<jiff::Timestamp>()
        .map(jiff::Timestamp::as_millisecond)
        .map_err(|_| format!("'{text}' is not a date (2026-11-01), a timestamp (2026-11-01T09:00:00Z) or milliseconds"))
}

/// The report as `handoff rejections` prints it.
pub fn render_rejections(report: &RejectionReport) -> String {
    let mut out = String::new();
    let day = |ms: i64| crate::connectors::time::date(ms);
    let _ = writeln!(
        out,
        "Rejections {} to {}: {} rejected, {} recycled to sales, {} converted",
        day(report.from),
        day(report.to.min(i64::from(i32::MAX) * 1000)),
        report.total.rejected,
        report.total.recycled,
        report.total.converted
    );
    for (title, groups) in [
        ("reason", &report.by_reason),
        ("source", &report.by_source),
        ("campaign", &report.by_campaign),
        ("rep", &report.by_rep),
    ] {
        if groups.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{:<36} {:>8} {:>8} {:>9}", format!("by {title}"), "rejected", "recycled", "converted");
        for (name, tally) in groups {
            let _ = writeln!(out, "{name:<36} {:>8} {:>8} {:>9}", tally.rejected, tally.recycled, tally.converted);
        }
    }
    if !report.rejections.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<12} {:<11} {:<26} {:<11} {:<20} {:<10}",
            "lead", "date", "reason", "source", "by", "now"
        );
        for r in &report.rejections {
            let _ = writeln!(
                out,
                "{:<12} {:<11} {:<26} {:<11} {:<20} {:<10}{}",
                r.lead,
                day(r.at),
                r.label,
                r.source,
                r.by,
                r.outcome,
                r.note.as_deref().map(|n| format!("  \"{n}\"")).unwrap_or_default()
            );
        }
    }
    out
}

/// The five handoff health targets.
pub mod targets {
    /// Median MQL → first sales touch, at most (10 minutes).
    pub const SPEED_TO_CONTACT_MS: i64 = 10 * 60_000;
    /// Share of leads touched within the SLA, at least.
    pub const SLA_COMPLIANCE: f64 = 0.95;
    /// Accepted among decided, at least.
    pub const ACCEPTANCE_RATE: f64 = 0.60;
    /// Leads with no sales activity 48 h after assignment, at most.
    pub const DROP_RATE: f64 = 0.02;
    /// Re-evaluated recycled leads that converted, at least.
    pub const RECYCLE_CONVERSION: f64 = 0.10;
}

/// How the metrics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// The team the lead was routed to.
    Team,
    /// The rep it was first handed to.
    Rep,
    /// Its HubSpot source (`hs_analytics_source`).
    Source,
    /// Its campaign (`recent_conversion_event_name`).
    Campaign,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "team" => Ok(GroupBy::Team),
            "rep" => Ok(GroupBy::Rep),
            "source" => Ok(GroupBy::Source),
            "campaign" => Ok(GroupBy::Campaign),
            other => Err(format!("'{other}' is not a grouping; use team, rep, source or campaign")),
        }
    }
}

/// What the metrics count as in time.
#[derive(Debug, Clone, Copy)]
pub struct MetricRules {
    /// Touched within this after assignment meets the SLA (4 h).
    pub sla_ms: i64,
    /// No activity this long after assignment is a drop (48 h).
    pub drop_after_ms: i64,
}

impl Default for MetricRules {
    fn default() -> Self {
        MetricRules { sla_ms: 4 * 3_600_000, drop_after_ms: 48 * 3_600_000 }
    }
}

/// The leads behind each number, so each can be opened.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct MetricLeads {
    /// Handed to a rep in the period.
    pub notified: Vec<String>,
    /// Touched (accepted, or activity logged) within the SLA.
    pub within_sla: Vec<String>,
    /// Not touched within the SLA.
    pub breached: Vec<String>,
    /// Accepted.
    pub accepted: Vec<String>,
    /// Rejected.
    pub rejected: Vec<String>,
    /// No sales activity 48 h after assignment.
    pub dropped: Vec<String>,
    /// Recycled leads re-evaluated in the period.
    pub reevaluated: Vec<String>,
    /// Of those, converted.
    pub converted: Vec<String>,
}

/// The five numbers for a set of leads.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
pub struct Figures {
    /// Median MQL → first sales touch, ms (none when nobody was touched).
    pub speed_to_contact_ms: Option<i64>,
    /// Share touched within the SLA (of leads whose SLA has run out or who
    /// were touched).
    pub sla_compliance: Option<f64>,
    /// Accepted / (accepted + rejected).
    pub acceptance_rate: Option<f64>,
    /// Share with no sales activity 48 h after assignment (of leads
    /// assigned at least 48 h ago).
    pub drop_rate: Option<f64>,
    /// Converted / re-evaluated, of recycled leads.
    pub recycle_conversion: Option<f64>,
    /// The leads behind them.
    pub leads: MetricLeads,
}

/// Handoff health for a period.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Metrics {
    /// From (inclusive), host clock ms.
    pub from: i64,
    /// To (exclusive), host clock ms.
    pub to: i64,
    /// Everything.
    pub overall: Figures,
    /// By the grouping asked for.
    pub by: Option<GroupBy>,
    /// Each group's figures.
    pub groups: BTreeMap<String, Figures>,
    /// Rejections by reason (label).
    pub rejection_reasons: BTreeMap<String, u64>,
    /// SLA ladder steps that fired, by state (`reminded`, `escalated`,
    /// `reassigned`, `vp-review`).
    pub ladder_steps: BTreeMap<String, u64>,
}

/// One notified lead, as the metrics see it.
struct Handoff {
    lead: String,
    notified_at: i64,
    group: BTreeMap<&'static str, String>,
    touched_at: Option<i64>,
    decision: Option<(&'static str, i64)>,
    active_at: Option<i64>,
}

fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    Some(if values.len().is_multiple_of(2) { i64::midpoint(values[mid - 1], values[mid]) } else { values[mid] })
}

fn share(part: usize, whole: usize) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// Handoff health from the ledger for leads handed to a rep from `from` up
/// to `to`, as of `now` (host clock, ms): the five metrics overall and by
/// `by`, rejection reasons and ladder steps.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn metrics(
    ledger: &dyn Ledger,
    from: i64,
    to: i64,
    now: i64,
    by: Option<GroupBy>,
    rules: MetricRules,
) -> Result<Metrics> {
    let notified = ledger.steps_between(&["notified"], from, to).await?;
    let mut seen = std::collections::HashSet::new();
    let mut handoffs = Vec::new();
    for (lead, step) in notified {
        // A lead handed off twice in the period (recycled) counts per handoff.
        if !seen.insert((lead.clone(), step.at)) {
            continue;
        }
        let Some(record) = ledger.lead(&lead).await? else { continue };
        let data = step.data.clone().unwrap_or_default();
        let mut group = BTreeMap::new();
        for (key, field) in [("team", "team"), ("rep", "owner"), ("source", "source"), ("campaign", "campaign")] {
            group.insert(key, data[field].as_str().filter(|v| !v.is_empty()).unwrap_or("(none)").to_string());
        }
        // What followed, up to the lead's next handoff.
        let next = record
            .timeline
            .iter()
            .filter(|s| s.state.as_str() == "notified" && s.at > step.at)
            .map(|s| s.at)
            .min()
            .unwrap_or(i64::MAX);
        let after = record.timeline.iter().filter(|s| s.at >= step.at && s.at < next);
        let (mut touched_at, mut decision, mut active_at) = (None::<i64>, None, None::<i64>);
        for s in after {
            let at = s.data.as_ref().and_then(|d| d["at"].as_i64()).unwrap_or(s.at);
            match s.state.as_str() {
                "accepted" => {
                    touched_at = Some(touched_at.map_or(at, |t| t.min(at)));
                    decision.get_or_insert(("accepted", at));
                }
                "contacted" => touched_at = Some(touched_at.map_or(at, |t| t.min(at))),
                "rejected" => {
                    decision.get_or_insert(("rejected", at));
                }
                _ => continue,
            }
            active_at = Some(active_at.map_or(at, |a| a.min(at)));
        }
        handoffs.push(Handoff { lead, notified_at: step.at, group, touched_at, decision, active_at });
    }

    let figures = |set: &[&Handoff], reevaluated: &[(String, bool)]| {
        let mut leads = MetricLeads::default();
        let mut speeds = Vec::new();
        let (mut sla_known, mut drop_known) = (0, 0);
        for h in set {
            leads.notified.push(h.lead.clone());
            if let Some(t) = h.touched_at {
                speeds.push(t - h.notified_at);
            }
            let within = h.touched_at.is_some_and(|t| t - h.notified_at <= rules.sla_ms);
            if within {
                leads.within_sla.push(h.lead.clone());
                sla_known += 1;
            } else if now - h.notified_at > rules.sla_ms || h.touched_at.is_some() {
                leads.breached.push(h.lead.clone());
                sla_known += 1;
            }
            match h.decision {
                Some(("accepted", _)) => leads.accepted.push(h.lead.clone()),
                Some(_) => leads.rejected.push(h.lead.clone()),
                None => {}
            }
            if now - h.notified_at >= rules.drop_after_ms {
                drop_known += 1;
                if h.active_at.is_none_or(|a| a - h.notified_at > rules.drop_after_ms) {
                    leads.dropped.push(h.lead.clone());
                }
            }
        }
        for (lead, converted) in reevaluated {
            leads.reevaluated.push(lead.clone());
            if *converted {
                leads.converted.push(lead.clone());
            }
        }
        Figures {
            speed_to_contact_ms: median(&mut speeds),
            sla_compliance: share(leads.within_sla.len(), sla_known),
            acceptance_rate: share(leads.accepted.len(), leads.accepted.len() + leads.rejected.len()),
            drop_rate: share(leads.dropped.len(), drop_known),
            recycle_conversion: share(leads.converted.len(), leads.reevaluated.len()),
            leads,
        }
    };

    // Re-evaluations in the period, grouped by the lead's last handoff.
    let outcomes = ledger.steps_between(&["recycled", "converted", "nurture"], from, to).await?;
    let reevaluated: Vec<(String, bool)> = outcomes
        .iter()
        .filter(|(_, s)| s.state.as_str() != "nurture" || s.detail.starts_with("re-evaluated"))
        .map(|(lead, s)| (lead.clone(), s.state.as_str() == "converted"))
        .collect();
    let all: Vec<&Handoff> = handoffs.iter().collect();
    let overall = figures(&all, &reevaluated);
    let mut groups = BTreeMap::new();
    if let Some(by) = by {
        let key = match by {
            GroupBy::Team => "team",
            GroupBy::Rep => "rep",
            GroupBy::Source => "source",
            GroupBy::Campaign => "campaign",
        };
        let mut names: Vec<&String> = handoffs.iter().map(|h| &h.group[key]).collect();
        names.sort();
        names.dedup();
        for name in names {
            let set: Vec<&Handoff> = handoffs.iter().filter(|h| &h.group[key] == name).collect();
            let leads: std::collections::HashSet<&str> = set.iter().map(|h| h.lead.as_str()).collect();
            let mine: Vec<(String, bool)> =
                reevaluated.iter().filter(|(l, _)| leads.contains(l.as_str())).cloned().collect();
            groups.insert(name.clone(), figures(&set, &mine));
        }
    }
    let mut rejection_reasons = BTreeMap::new();
    for (_, step) in ledger.steps_between(&["rejected"], from, to).await? {
        let label = step.data.as_ref().and_then(|d| d["label"].as_str()).unwrap_or("(no reason)").to_string();
        *rejection_reasons.entry(label).or_insert(0) += 1;
    }
    let mut ladder_steps = BTreeMap::new();
    for (_, step) in ledger.steps_between(&["reminded", "escalated", "reassigned", "vp-review"], from, to).await? {
        *ladder_steps.entry(step.state.as_str().to_string()).or_insert(0) += 1;
    }
    Ok(Metrics { from, to, overall, by, groups, rejection_reasons, ladder_steps })
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// A duration for people: `4 min`, `2.5 h`.
pub fn human_ms(ms: i64) -> String {
    match ms {
        ms if ms < 59_500 => format!("{} s", (ms + 500) / 1000),
        // Below ten minutes (the speed-to-contact target) a tenth matters.
        ms if ms < 597_000 => format!("{:.1} min", ms as f64 / 60_000.0),
        ms if ms < 3_570_000 => format!("{} min", (ms + 30_000) / 60_000),
        ms if ms < 86_400_000 => format!("{:.1} h", ms as f64 / 3_600_000.0),
        ms => format!("{:.1} d", ms as f64 / 86_400_000.0),
    }
}

/// The five metrics with their targets, as lines: (name, value, target,
/// met).
pub fn scorecard(figures: &Figures) -> Vec<(&'static str, String, &'static str, Option<bool>)> {
    use targets::{ACCEPTANCE_RATE, DROP_RATE, RECYCLE_CONVERSION, SLA_COMPLIANCE, SPEED_TO_CONTACT_MS};
    vec![
        (
            "Speed to contact (median)",
            figures.speed_to_contact_ms.map_or_else(|| "-".into(), human_ms),
            "< 10 min",
            figures.speed_to_contact_ms.map(|s| s < SPEED_TO_CONTACT_MS),
        ),
        (
            "SLA compliance",
            percent(figures.sla_compliance),
            "> 95%",
            figures.sla_compliance.map(|v| v > SLA_COMPLIANCE),
        ),
        (
            "Acceptance rate",
            percent(figures.acceptance_rate),
            "> 60%",
            figures.acceptance_rate.map(|v| v > ACCEPTANCE_RATE),
        ),
        ("Drop rate", percent(figures.drop_rate), "< 2%", figures.drop_rate.map(|v| v < DROP_RATE)),
        (
            "Recycle conversion",
            percent(figures.recycle_conversion),
            "> 10%",
            figures.recycle_conversion.map(|v| v > RECYCLE_CONVERSION),
        ),
    ]
}

/// The metrics as `handoff metrics` prints them.
pub fn render_metrics(metrics: &Metrics) -> String {
    let mut out = String::new();
    let day = |ms: i64| crate::connectors::time::date(ms);
    let _ = writeln!(
        out,
        "Handoff health {} to {}: {} leads handed to reps",
        day(metrics.from),
        day(metrics.to),
        metrics.overall.leads.notified.len()
    );
    let _ = writeln!(out, "\n{:<28} {:>10} {:>8}  ", "metric", "value", "target");
    for (name, value, target, met) in scorecard(&metrics.overall) {
        let mark = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        let _ = writeln!(out, "{name:<28} {value:>10} {target:>8}  {mark}");
    }
    if let Some(by) = metrics.by {
        let title = serde_json::to_value(by).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let _ = writeln!(
            out,
            "\n{:<24} {:>6} {:>10} {:>8} {:>9} {:>7} {:>8}",
            format!("by {title}"),
            "leads",
            "speed",
            "SLA",
            "accepted",
            "drops",
            "recycle"
        );
        for (name, f) in &metrics.groups {
            let _ = writeln!(
                out,
                "{name:<24} {:>6} {:>10} {:>8} {:>9} {:>7} {:>8}",
                f.leads.notified.len(),
                f.speed_to_contact_ms.map_or_else(|| "-".into(), human_ms),
                percent(f.sla_compliance),
                percent(f.acceptance_rate),
                percent(f.drop_rate),
                percent(f.recycle_conversion)
            );
        }
    }
    if !metrics.rejection_reasons.is_empty() {
        let _ = writeln!(out, "\nRejection reasons:");
        let mut reasons: Vec<_> = metrics.rejection_reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (reason, n) in reasons {
            let _ = writeln!(out, "  {n:>4}  {reason}");
        }
    }
    if !metrics.ladder_steps.is_empty() {
        let steps: Vec<String> = metrics.ladder_steps.iter().map(|(s, n)| format!("{s} {n}")).collect();
        let _ = writeln!(out, "\nSLA ladder steps fired: {}", steps.join(", "));
    }
    out
}

/// The `reports` capability over a ledger: what the digest plugin reads.
pub struct LedgerReports {
    /// The ledger.
    pub ledger: std::sync::Arc<dyn Ledger>,
    /// "Now" for the metrics that depend on it (SLA and drops still due).
    pub clock: std::sync::Arc<dyn crate::capabilities::Clock>,
}

#[async_trait::async_trait]
impl crate::capabilities::Reports for LedgerReports {
    async fn metrics(&self, from: i64, to: i64) -> Result<String, crate::capabilities::CapabilityError> {
        let now = self.clock.now_ms();
        let report = metrics(&*self.ledger, from, to, now, Some(GroupBy::Team), MetricRules::default())
            .await
            .map_err(|e| crate::capabilities::CapabilityError::Unavailable(format!("the ledger: {e}")))?;
        serde_json::to_string(&report)
            .map_err(|e| crate::capabilities::CapabilityError::Unavailable(format!("encoding the metrics: {e}")))
    }
}

/// Shadow pipelines' decisions beside the live ones: how often each
/// disagrees, and the decisions themselves, newest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShadowReport {
    /// Per shadow pipeline, over the decisions listed.
    pub pipelines: Vec<ShadowSummary>,
    /// The decisions, newest first.
    pub decisions: Vec<crate::ledger::ShadowDecision>,
}

/// How one shadow pipeline compares with the live one it shadows.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShadowSummary {
    /// The shadow pipeline.
    pub pipeline: String,
    /// The live pipeline.
    pub shadows: String,
    /// Leads it decided.
    pub decisions: usize,
    /// Leads where its decision differs (state, owner, team or fallback).
    pub differ: usize,
    /// Leads it would give another owner.
    pub owners_changed: usize,
}

/// The latest `limit` shadow decisions, of one shadow pipeline or about
/// one lead when given, with a summary per shadow pipeline.
///
/// # Errors
///
/// When the ledger cannot be read.
pub async fn shadow_report(
    ledger: &dyn Ledger,
    pipeline: Option<&str>,
    lead: Option<&str>,
    limit: usize,
) -> Result<ShadowReport> {
    let decisions = ledger.shadow_decisions(lead, pipeline, limit).await?;
    let mut summaries: BTreeMap<(String, String), ShadowSummary> = BTreeMap::new();
    for d in &decisions {
        let summary = summaries.entry((d.pipeline.clone(), d.shadows.clone())).or_insert_with(|| ShadowSummary {
            pipeline: d.pipeline.clone(),
            shadows: d.shadows.clone(),
            decisions: 0,
            differ: 0,
            owners_changed: 0,
        });
        summary.decisions += 1;
        summary.differ += usize::from(d.differs);
        summary.owners_changed += usize::from(d.live.owner != d.shadow.owner);
    }
    Ok(ShadowReport { pipelines: summaries.into_values().collect(), decisions })
}

/// The report as `handoff shadow report` prints it.
pub fn render_shadow_report(report: &ShadowReport) -> String {
    let mut out = String::new();
    if report.pipelines.is_empty() {
        out.push_str("No shadow decisions yet: serve a pipeline with \"mode\": \"shadow\" and \"shadows\": \"<live pipeline>\" beside the live one.\n");
        return out;
    }
    for s in &report.pipelines {
        let _ = writeln!(
            out,
            "{} (shadowing {}): {} leads, {} decided differently, {} to another owner. Nothing was sent.",
            s.pipeline, s.shadows, s.decisions, s.differ, s.owners_changed
        );
    }
    let differing: Vec<_> = report.decisions.iter().filter(|d| d.differs).collect();
    if !differing.is_empty() {
        let _ = writeln!(out, "\n{:<12} {:<20} {:<34} SHADOW", "LEAD", "WHEN", "LIVE");
        for d in differing {
            let _ = writeln!(
                out,
                "{:<12} {:<20} {:<34} {}",
                d.lead_id.as_deref().unwrap_or("-"),
                &crate::connectors::time::iso8601(d.at)[..19],
                d.live.summary(),
                d.shadow.summary()
            );
        }
    }
    out
}
