//! `summarize`: one to three sentences on why this lead matters, from its
//! engagement data. Uses the language model when it answers within the
//! time budget; otherwise (not configured, slow, failing) a deterministic
//! template. Never fails the item.
//!
//! Output on `main`: the item plus `"summary": {"text", "source"}`.

use handoff_plugin::log::{Level, log};
use handoff_plugin::summary::{facts, template};
use handoff_plugin::{Describe, Emit, NodeError, Plugin, Run, Value, emit, json, llm};

struct Summarize;

impl Plugin for Summarize {
    type Config = Value;

    fn describe() -> Describe {
        Describe {
            name: "summarize",
            version: env!("CARGO_PKG_VERSION"),
            description: "Writes a short engagement summary: language model within a time budget, template otherwise",
            capabilities: &["llm:complete"],
            config_schema: r#"{"type": "object", "additionalProperties": false, "properties": {
                "use_llm": {"type": "boolean", "default": true},
                "budget_ms": {"type": "integer", "minimum": 100, "maximum": 10000, "default": 1500, "description": "Hard time budget for the model; the template answers when it runs out."},
                "max_tokens": {"type": "integer", "minimum": 16, "maximum": 1024, "default": 200}
            }}"#,
            ..Describe::default()
        }
    }

    fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
        let config = &run.config;
        let mut summary = json!({"text": template(&item), "source": "template"});
        if config["use_llm"].as_bool().unwrap_or(true) {
            let prompt = facts(&item).iter().map(|(k, v)| format!("- {k}: {v}")).collect::<Vec<_>>().join("\n");
            let request = llm::CompletionRequest {
                system: Some("You brief B2B sales reps. In one to three plain sentences, say who this lead is, what they did and why it matters. No greetings, no lists.".into()),
                prompt: format!("Summarize this marketing-qualified lead for the rep who now owns it:\n{prompt}"),
                max_tokens: config["max_tokens"].as_u64().unwrap_or(200) as u32,
                timeout_ms: config["budget_ms"].as_u64().unwrap_or(1500) as u32,
            };
            match llm::complete(&request) {
                Ok(text) if !text.trim().is_empty() => summary = json!({"text": text.trim(), "source": "llm"}),
                Ok(_) => log(Level::Warn, "the model returned nothing; using the template"),
                Err(e) => log(Level::Info, &format!("using the template: {e:?}")),
            }
        }
        item["summary"] = summary;
        Ok(vec![emit("main", &item)])
    }
}

handoff_plugin::export!(Summarize);
