//! The pipeline file format: what RevOps writes.
//!
//! A pipeline is a trigger, a list of nodes (each running one plugin), and
//! connections from a node's named output port to the nodes that take its
//! items, in the spirit of n8n's workflow JSON but with named ports. The
//! trigger is the source `trigger` in `connections`, with one port, `main`.
//!
//! The JSON Schema in `pipelines/pipeline.schema.json` is generated from
//! these types (`handoff schema`), so editors complete and check files.

use crate::capabilities::Grant;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

/// The source name of the trigger in `connections`.
pub const TRIGGER: &str = "trigger";
/// The trigger's only output port.
pub const TRIGGER_PORT: &str = "main";
/// The output port a node with `"on_error": "error-port"` emits failures on.
pub const ERROR_PORT: &str = "error";

/// A Handoff pipeline: a trigger and the nodes its items flow through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Handoff pipeline")]
pub struct Pipeline {
    /// Path or URL of this schema, for editors.
    #[serde(rename = "$schema", default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Unique name: lower-case letters, digits and '-'.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*$"), length(max = 64))]
    pub name: String,
    /// Bump it on every change; each execution records the version it ran.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// What the pipeline is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `live` (the default) or `shadow`: a shadow pipeline runs beside the
    /// live pipeline it `shadows`, on the same events, with dry-run
    /// capabilities (it reads what the live run read and sends nothing);
    /// its decisions are kept beside the live ones (`handoff shadow
    /// report`, `GET /api/shadow`).
    #[serde(default, skip_serializing_if = "Mode::is_live")]
    pub mode: Mode,
    /// For a shadow pipeline: the name of the live pipeline it runs beside.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*$"))]
    pub shadows: Option<String>,
    /// What starts an execution.
    pub trigger: Trigger,
    /// The steps, each running one plugin.
    #[schemars(length(min = 1))]
    pub nodes: Vec<Node>,
    /// Source (a node id, or `trigger`) → output port → ids of the nodes
    /// that receive each item emitted there. An output port with no entry
    /// ends that branch.
    #[serde(default)]
    pub connections: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Whether a pipeline acts (`live`) or only shows what it would do
/// (`shadow`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// It runs on its trigger and acts.
    #[default]
    Live,
    /// It runs beside the pipeline it `shadows`, and never sends anything.
    Shadow,
}

impl Mode {
    /// Whether this is [`Mode::Live`].
    pub fn is_live(&self) -> bool {
        *self == Mode::Live
    }
}

/// What starts an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Trigger {
    /// An HTTP POST to `path` on `handoff serve`.
    Webhook {
        /// URL path, starting with '/'.
        #[schemars(regex(pattern = r"^/[A-Za-z0-9/_.-]*$"))]
        path: String,
        /// How the request's signature is verified.
        signature: SignatureScheme,
        /// Lead events that also start the pipeline (e.g. `lead.recycled`:
        /// a rejected lead re-evaluated comes back through the handoff);
        /// the item is `{"event": {"name", "lead_id", "state", "detail", "item"}}`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        events: Vec<String>,
    },
    /// A cron schedule (5 fields: minute hour day-of-month month day-of-week).
    Schedule {
        /// The cron expression.
        cron: String,
        /// IANA time zone the cron expression is read in; UTC by default.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A named event raised inside Handoff (e.g. `lead.rejected`).
    Event {
        #[schemars(regex(pattern = r"^[a-z][a-z0-9_.-]*$"))]
        /// The event's name.
        name: String,
    },
    /// Started only by durable timers that plugins set with `schedule`.
    Timer {},
}

/// How a webhook proves it comes from the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    /// HubSpot v3: HMAC-SHA256 over method, URI, body and timestamp.
    HubspotV3,
    /// HubSpot v2: SHA-256 of secret, method, URI and body.
    HubspotV2,
    /// HubSpot v1: SHA-256 of secret and body.
    HubspotV1,
    /// Slack's v0 request signature.
    Slack,
    /// No verification (only for local testing).
    None,
}

impl SignatureScheme {
    /// Whether HubSpot signs requests this way.
    pub fn is_hubspot(self) -> bool {
        matches!(self, SignatureScheme::HubspotV3 | SignatureScheme::HubspotV2 | SignatureScheme::HubspotV1)
    }
}

/// One step of a pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Unique within the pipeline; used in `connections`.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9-]*$"), length(max = 64))]
    pub id: String,
    /// The plugin's name (see `handoff plugin list`).
    pub plugin: String,
    /// What this step is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings for the plugin; checked against the plugin's config schema.
    #[serde(default = "empty_object")]
    #[schemars(schema_with = "object_schema")]
    pub config: Value,
    /// What the plugin may do beyond computing: e.g. `crm:read`, `chat:write`.
    #[serde(default)]
    pub capabilities: Vec<Grant>,
    /// Retries for transient (`retryable`) failures.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Deadline for one run of this node; `2s` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Memory cap for one run, in MiB; 64 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 512))]
    pub memory_mb: Option<u32>,
    /// What happens to an item this node fails on.
    #[serde(default)]
    pub on_error: OnError,
    /// What an item on each output port means for its lead (`*`: every
    /// port not named), replacing what the plugin declares for that port.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub lead: crate::lead::LeadMarks,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

fn object_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object", "description": "Settings for the plugin; checked against the plugin's config schema." })
}

/// Retries with exponential backoff.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; 1 means no retry.
    #[schemars(range(min = 1, max = 20))]
    pub max_attempts: u32,
    /// Waits between attempts.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { max_attempts: 3, backoff: Backoff::default() }
    }
}

/// Exponential backoff: `initial`, then × `multiplier` each time, at most
/// `max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// The first wait.
    pub initial: HumanDuration,
    /// The longest wait.
    pub max: HumanDuration,
    #[schemars(range(min = 1.0, max = 10.0))]
    /// How much each wait grows.
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: HumanDuration(Duration::from_millis(500)),
            max: HumanDuration(Duration::from_secs(30)),
            multiplier: 2.0,
        }
    }
}

impl Backoff {
    /// The wait before attempt `attempt + 1` (after `attempt` failures).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX));
        let delay = self.initial.0.mul_f64(factor.min(1e6));
        delay.min(self.max.0)
    }
}

/// What happens to an item a node fails on (after retries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// The execution fails; no further node runs.
    #[default]
    Stop,
    /// This branch ends; other branches go on; the failure is recorded.
    Continue,
    /// The node emits `{"error": {...}, "item": <input>}` on its `error`
    /// port, which can be connected like any other.
    ErrorPort,
}

/// A duration written for people: `250ms`, `2s`, `5m`, `4h`, `90d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `<digits><unit>` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Option<Self> {
        let split = text.find(|c: char| !c.is_ascii_digit())?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits.parse().ok()?;
        let ms = match unit {
            "ms" => n,
            "s" => n.checked_mul(1000)?,
            "m" => n.checked_mul(60_000)?,
            "h" => n.checked_mul(3_600_000)?,
            "d" => n.checked_mul(86_400_000)?,
            _ => return None,
        };
        Some(HumanDuration(Duration::from_millis(ms)))
    }
}

impl std::fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let units = [(86_400_000, "d"), (3_600_000, "h"), (60_000, "m"), (1000, "s")];
        match units.iter().find(|(size, _)| ms >= *size && ms.is_multiple_of(*size)) {
            Some((size, unit)) => write!(f, "{}{unit}", ms / size),
            None => write!(f, "{ms}ms"),
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        HumanDuration::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("'{text}' is not a duration like 250ms, 2s, 5m, 4h or 90d"))
        })
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h|d)$",
            "description": "A duration: a whole number and a unit (ms, s, m, h, d), e.g. 250ms, 2s, 5m, 4h, 90d.",
            "examples": ["250ms", "2s", "5m"]
        })
    }
}

impl Pipeline {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The targets of `source`'s output `port`.
    pub fn targets(&self, source: &str, port: &str) -> &[String] {
        self.connections.get(source).and_then(|ports| ports.get(port)).map_or(&[], Vec::as_slice)
    }

    /// The generated JSON Schema for pipeline files.
    pub fn json_schema() -> Value {
        let generated = schemars::schema_for!(Pipeline).to_value();
        let Value::Object(mut generated) = generated else { unreachable!("a schema is an object") };
        // Identification first, so the file reads top-down.
        let mut schema = serde_json::Map::new();
        for key in ["$schema", "title", "description"] {
            if let Some(value) = generated.remove(key) {
                schema.insert(key.to_string(), value);
            }
        }
        schema.extend(generated);
        Value::Object(schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        for (text, ms) in [("250ms", 250), ("2s", 2000), ("5m", 300_000), ("4h", 14_400_000), ("90d", 7_776_000_000)] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.0, Duration::from_millis(ms));
            assert_eq!(d.to_string(), text);
        }
        for bad in ["", "2", "s", "2 s", "1.5s", "-1s", "2w"] {
            assert!(HumanDuration::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_and_caps() {
        let b = Backoff::default();
        assert_eq!(b.delay(1), Duration::from_millis(500));
        assert_eq!(b.delay(2), Duration::from_secs(1));
        assert_eq!(b.delay(3), Duration::from_secs(2));
        assert_eq!(b.delay(30), Duration::from_secs(30));
    }

    #[test]
    fn minimal_node_gets_defaults() {
        let node: Node = serde_json::from_str(r#"{"id": "a", "plugin": "validate"}"#).unwrap();
        assert_eq!(node.config, serde_json::json!({}));
        assert_eq!(node.retry.max_attempts, 3);
        assert_eq!(node.on_error, OnError::Stop);
        assert!(node.capabilities.is_empty());
    }
}
