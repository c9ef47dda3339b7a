//! The reconciliation sweep: asks HubSpot for contacts that became MQLs
//! since the last sweep and starts the ones the ledger never saw (a webhook
//! lost, or sent while Handoff was down). Runs on a schedule and on demand.

use super::{AppState, worker};
use crate::connectors::hubspot::HubSpot;
use crate::ledger::InboundEvent;
use crate::pipeline::History;
use anyhow::Result;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// How far back the first sweep looks when the ledger has no watermark.
pub const FIRST_LOOKBACK_MS: i64 = 24 * 3_600_000;
/// Pages of 100 read per sweep at most (HubSpot caps a search at 10,000).
const MAX_PAGES: usize = 100;
/// Each sweep looks this far behind the last one, for contacts HubSpot's
/// search index had not caught up with; event-id dedup makes it safe.
const OVERLAP_MS: i64 = 5 * 60_000;

/// Runs one sweep; returns the event ids it started.
///
/// # Errors
///
/// When HubSpot or the ledger cannot be read.
pub async fn sweep_once(state: &Arc<AppState>, hubspot: &HubSpot) -> Result<Vec<String>> {
    // Missed MQLs start the pipeline HubSpot's webhooks start.
    let hubspot_signed = |p: &&Arc<crate::pipeline::PreparedPipeline>| matches!(&p.pipeline.trigger, crate::pipeline::Trigger::Webhook { signature, .. } if signature.is_hubspot());
    let Some(pipeline) = state.pipelines.iter().find(hubspot_signed).cloned() else {
        return Ok(Vec::new());
    };
    let now = state.clock.now_ms();
    let since = match state.ledger.setting("last_sweep_at").await? {
        Some(value) => value.parse::<i64>().map_or(now - FIRST_LOOKBACK_MS, |t| t - OVERLAP_MS),
        None => now - FIRST_LOOKBACK_MS,
    };
    let mut newest = since;
    let mut truncated = true;
    let mut started = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut request = json!({
            "filterGroups": [{"filters": [
                {"propertyName": "lifecyclestage", "operator": "EQ", "value": "marketingqualifiedlead"},
                {"propertyName": "hs_lifecyclestage_marketingqualifiedlead_date", "operator": "GTE", "value": since.to_string()}
            ]}],
            "properties": ["email", "lifecyclestage", "hs_lifecyclestage_marketingqualifiedlead_date"],
            "sorts": [{"propertyName": "hs_lifecyclestage_marketingqualifiedlead_date", "direction": "ASCENDING"}],
            "limit": 100,
        });
        if let Some(cursor) = &after {
            request["after"] = json!(cursor);
        }
        let page = hubspot.search_contacts(&request).await?;
        for contact in &page.results {
            let mql_at = serde_json::from_str::<serde_json::Value>(&contact.properties).ok().and_then(|p| {
                let date = p["hs_lifecyclestage_marketingqualifiedlead_date"].as_str()?.to_string();
                date.parse::<i64>().ok().or_else(|| crate::connectors::time::parse(&date))
            });
            let became_mql = mql_at.unwrap_or(since);
            newest = newest.max(became_mql);
            // Seen by the ledger since it became an MQL: handled already.
            if state.ledger.has_event_since(&contact.id, became_mql).await? {
                continue;
            }
            let day = crate::connectors::time::date(now);
            let event = InboundEvent {
                source: "hubspot-sweep".into(),
                event_id: format!("sweep:{}:{day}", contact.id),
                pipeline: pipeline.pipeline.name.clone(),
                lead_id: Some(contact.id.clone()),
                payload: json!({"eventId": format!("sweep:{}:{day}", contact.id), "subscriptionType": "reconciliation", "objectId": contact.id, "occurredAt": now}),
                received_at: now,
                node: None,
            };
            if state.ledger.record_event(&event).await? {
                started.push(event.event_id.clone());
                worker::start(state.clone(), pipeline.clone(), event, History::New, Instant::now());
            }
        }
        if let Some(next) = page.next_after {
            after = Some(next);
        } else {
            truncated = false;
            break;
        }
    }
    // When the search was cut off, the next sweep starts from the newest
    // MQL date seen, not from now, so nothing past the cut is skipped.
    let watermark = if truncated { newest } else { now };
    state.ledger.set_setting("last_sweep_at", &watermark.to_string()).await?;
    if !started.is_empty() {
        tracing::warn!(count = started.len(), "reconciliation sweep found MQLs no webhook delivered");
    }
    Ok(started)
}
