//! The engagement summary's facts and its template: what `summarize`
//! writes when the language model does not answer, and what `notify` shows
//! until the model's summary arrives.

use crate::contact::{full_name, prop, prop_number};
use serde_json::Value;

/// The facts the summary is made of, as `key: value` lines (also the LLM
/// prompt's body).
pub fn facts(item: &Value) -> Vec<(String, String)> {
    let mut facts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            facts.push((k.to_string(), v));
        }
    };
    add("name", Some(full_name(item)));
    add("title", prop(item, "jobtitle").map(String::from));
    add("company", prop(item, "company").map(String::from));
    add("employees", prop(item, "numemployees").map(String::from));
    add("industry", prop(item, "industry").map(String::from));
    add("country", prop(item, "country").map(String::from));
    add("page views", prop(item, "hs_analytics_num_page_views").map(String::from));
    add("visits", prop(item, "hs_analytics_num_visits").map(String::from));
    add("pricing page views", prop(item, "pricing_page_views").map(String::from));
    add("downloads", prop(item, "content_downloads").map(String::from));
    add("email opens", prop(item, "hs_email_open").map(String::from));
    add("form submissions", prop(item, "num_conversion_events").map(String::from));
    add("latest conversion", prop(item, "recent_conversion_event_name").map(String::from));
    add("ICP fit", prop(item, "icp_fit").map(String::from));
    add("lead score", prop(item, "hubspotscore").map(String::from));
    facts
}

/// The template summary: who, what they did, how well they fit.
pub fn template(item: &Value) -> String {
    let name = full_name(item);
    let who = match (prop(item, "jobtitle"), prop(item, "company")) {
        (Some(t), Some(c)) => format!("{name} ({t}, {c})"),
        (None, Some(c)) => format!("{name} ({c})"),
        _ => name,
    };
    let count = |k: &str| prop_number(item, k).unwrap_or(0.0) as u64;
    let mut first = format!(
        "{who} viewed {} pages across {} visits",
        count("hs_analytics_num_page_views"),
        count("hs_analytics_num_visits")
    );
    let pricing = count("pricing_page_views");
    if pricing > 0 {
        first.push_str(&format!(
            ", including the pricing page {} time{}",
            pricing,
            if pricing == 1 { "" } else { "s" }
        ));
    }
    let downloads = count("content_downloads");
    if downloads > 0 {
        first.push_str(&format!(", and downloaded {downloads} asset{}", if downloads == 1 { "" } else { "s" }));
    }
    first.push('.');
    let mut sentences = vec![first];
    if let Some(latest) = prop(item, "recent_conversion_event_name") {
        sentences.push(format!("Latest action: {latest}."));
    }
    let fit = prop(item, "icp_fit").map(|f| format!("ICP fit {f}"));
    let score = prop(item, "hubspotscore").map(|s| format!("score {s}"));
    let tail: Vec<String> = [fit, score].into_iter().flatten().collect();
    if !tail.is_empty() {
        sentences.push(format!("{}.", capitalize(&tail.join(", "))));
    }
    sentences.join(" ")
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_template_reads_naturally() {
        let item = json!({"properties": {
            "firstname": "Greta", "lastname": "Holm", "jobtitle": "CFO", "company": "Umbrella Health",
            "hs_analytics_num_page_views": "40", "hs_analytics_num_visits": "12", "pricing_page_views": "1",
            "content_downloads": "2", "recent_conversion_event_name": "Pricing page chat", "icp_fit": "A", "hubspotscore": "88"
        }});
        assert_eq!(
            template(&item),
            "Greta Holm (CFO, Umbrella Health) viewed 40 pages across 12 visits, including the pricing page 1 time, and downloaded 2 assets. Latest action: Pricing page chat. ICP fit A, score 88."
        );
    }

    #[test]
    fn sparse_data_still_makes_a_sentence() {
        let item = json!({"properties": {"email": "x@y.com"}});
        assert_eq!(template(&item), "x@y.com viewed 0 pages across 0 visits.");
    }
}
