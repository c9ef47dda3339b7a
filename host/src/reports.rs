//! Reports read from the ledger's lead steps: what sales sent back to
//! marketing and what became of it (`/api/rejections`, `handoff
//! rejections`). They read the `data` the plugins' lead marks keep with a
//! step (a rejection's reason, source and rep; a recycle's campaign), so a
//! report needs no plugin-specific table.

use crate::lead::Step;
use crate::ledger::Ledger;
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// One rejection and what became of its lead.
#[derive(Debug, Clone, Serialize)]
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct Tally {
    /// Rejections.
    pub rejected: u64,
    /// Of those, recycled back to sales.
    pub recycled: u64,
    /// Of those, converted (an opportunity or a customer).
    pub converted: u64,
}

/// The rejection report for a period.
#[derive(Debug, Clone, Serialize)]
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
