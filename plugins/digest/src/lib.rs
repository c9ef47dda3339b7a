//! `digest`: the weekly handoff health post. On its schedule it reads the
//! five metrics for the week that ended and the week before from the host
//! (`reports`), and posts them to a Slack channel in Block Kit: each metric
//! with its target (met or missed) and its change on the week, and the top
//! rejection reasons.

use handoff_plugin::time::utc_date;
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, chat, clock, emit, json, reports};

struct Digest;

const WEEK: i64 = 7 * 86_400_000;

/// One metric: (name, JSON key, target text, higher is better, a percent).
const METRICS: [(&str, &str, &str, bool, bool); 5] = [
    ("Speed to contact (median)", "speed_to_contact_ms", "< 10 min", false, false),
    ("SLA compliance", "sla_compliance", "> 95%", true, true),
    ("Acceptance rate", "acceptance_rate", "> 60%", true, true),
    ("Drop rate", "drop_rate", "< 2%", false, true),
    ("Recycle conversion", "recycle_conversion", "> 10%", true, true),
];

/// Whether a value meets its target.
fn met(key: &str, value: f64) -> bool {
    match key {
        "speed_to_contact_ms" => value < 600_000.0,
        "sla_compliance" => value > 0.95,
        "acceptance_rate" => value > 0.60,
        "drop_rate" => value < 0.02,
        _ => value > 0.10,
    }
}

fn show(value: f64, percent: bool) -> String {
    if percent {
        return format!("{:.1}%", value * 100.0);
    }
    let minutes = value / 60_000.0;
    if minutes < 60.0 { format!("{minutes:.0} min") } else { format!("{:.1} h", minutes / 60.0) }
}

/// The change on the week, in words: `▲ 4.2 pts` or `▼ 3 min`, and whether
/// it is for the better.
fn change(now: f64, before: f64, percent: bool, higher_is_better: bool) -> String {
    let delta = now - before;
    if delta.abs() < f64::EPSILON {
        return "no change".into();
    }
    let arrow = if delta > 0.0 { "▲" } else { "▼" };
    let better = (delta > 0.0) == higher_is_better;
    let size = if percent { format!("{:.1} pts", delta.abs() * 100.0) } else { show(delta.abs(), false) };
    format!("{arrow} {size} {}", if better { "better" } else { "worse" })
}

/// The digest's Block Kit blocks and fallback text.
pub fn compose(week: &Value, before: &Value, week_start: i64) -> (String, Value) {
    let handed = week["overall"]["leads"]["notified"].as_array().map_or(0, Vec::len);
    let title = format!("Handoff health, week of {}", utc_date(week_start));
    let mut fields = Vec::new();
    let mut lines = Vec::new();
    for (name, key, target, higher, percent) in METRICS {
        let value = week["overall"][key].as_f64();
        let previous = before["overall"][key].as_f64();
        let text = match value {
            None => format!("*{name}*\nno data yet (target {target})"),
            Some(v) => {
                let verdict = if met(key, v) { ":white_check_mark: target met" } else { ":x: target missed" };
                let trend = previous.map_or_else(|| "new this week".to_string(), |p| change(v, p, percent, higher));
                format!("*{name}*\n{} ({target}) {verdict}\n{trend}", show(v, percent))
            }
        };
        lines.push(text.replace('\n', " ").replace('*', ""));
        fields.push(json!({"type": "mrkdwn", "text": text}));
    }
    let mut reasons: Vec<(String, u64)> = week["rejection_reasons"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default();
    reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let top: Vec<String> = reasons.iter().take(3).map(|(r, n)| format!("{r} ({n})")).collect();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": title}}),
        json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{handed} leads handed to reps this week")}]}),
        json!({"type": "section", "fields": fields[..4].to_vec()}),
        json!({"type": "section", "fields": fields[4..].to_vec()}),
    ];
    let rejections = if top.is_empty() { "none this week".to_string() } else { top.join(", ") };
    blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*Top rejection reasons:* {rejections}")}}));
    let text = format!("{title}: {}. Top rejection reasons: {rejections}.", lines.join("; "));
    (text, Value::Array(blocks))
}

impl Plugin for Digest {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "digest",
            version: env!("CARGO_PKG_VERSION"),
            description: "Posts the weekly handoff health digest (the five metrics against their targets, week over week, top rejection reasons) to Slack",
            outputs: &["posted"],
            capabilities: &["reports:read", "chat:write"],
            config_schema: r##"{"type": "object", "additionalProperties": false, "required": ["channel"], "properties": {
                "channel": {"type": "string", "description": "Where the digest is posted, e.g. #sales-leadership."}
            }}"##,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, item: Value) -> Result<Vec<Emit>, NodeError> {
        let channel = run.config["channel"].as_str().unwrap_or("#revops-alerts");
        // The slot the schedule fired for, so a rerun posts the same week.
        let end = item["event"]["scheduled_for"].as_i64().unwrap_or_else(clock::now);
        let parse = |text: String| serde_json::from_str::<Value>(&text).map_err(|e| NodeError::Fatal(e.to_string()));
        let week = parse(reports::metrics(end - WEEK, end)?)?;
        let before = parse(reports::metrics(end - 2 * WEEK, end - WEEK)?)?;
        let (text, blocks) = compose(&week, &before, end - WEEK);
        let posted = chat::post(channel, &text, Some(&blocks.to_string()))?;
        Ok(vec![emit("posted", &json!({"channel": posted.channel, "ts": posted.ts, "text": text}))])
    }
}

handoff_plugin::export!(Digest);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_shows_its_target_verdict_and_change() {
        let week = json!({"overall": {"speed_to_contact_ms": 240000.0, "sla_compliance": 0.9, "acceptance_rate": 0.7,
                                      "drop_rate": 0.0, "recycle_conversion": null, "leads": {"notified": ["a", "b"]}},
                          "rejection_reasons": {"No budget": 2, "Timing not right": 5}});
        let before = json!({"overall": {"speed_to_contact_ms": 600000.0, "sla_compliance": 0.95}});
        let (text, blocks) = compose(&week, &before, 0);
        assert!(
            text.contains("Speed to contact (median) 4 min (< 10 min) :white_check_mark: target met ▼ 6 min better"),
            "{text}"
        );
        assert!(text.contains("SLA compliance 90.0% (> 95%) :x: target missed ▼ 5.0 pts worse"), "{text}");
        assert!(text.contains("Recycle conversion no data yet"), "{text}");
        assert!(text.contains("Top rejection reasons: Timing not right (5), No budget (2)"), "{text}");
        assert_eq!(blocks[2]["fields"].as_array().unwrap().len(), 4);
    }
}
