//! What an execution leaves behind: every node run with its input,
//! outputs, logs and error, and where each branch ended. The executor
//! writes these records; the lead timeline, the ledger, the API and the
//! CLI read them. Nothing here depends on the rest of the host.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::sync::{Arc, OnceLock};

/// An item flowing through a pipeline: JSON text, checked once, parsed only
/// when something reads its fields (a lead mark, a test, the CLI). A large
/// item a plugin emits is carried and routed as the bytes it is, never
/// blown up into a tree nobody reads.
#[derive(Clone)]
pub struct Item {
    raw: Arc<RawValue>,
    parsed: Arc<OnceLock<Value>>,
}

impl Item {
    /// An item from JSON text.
    ///
    /// # Errors
    ///
    /// When the text is not JSON.
    pub fn from_json(text: String) -> Result<Item, serde_json::Error> {
        let raw: Box<RawValue> = RawValue::from_string(text)?;
        Ok(Item { raw: Arc::from(raw), parsed: Arc::new(OnceLock::new()) })
    }

    /// An item from a JSON value.
    pub fn from_value(value: Value) -> Item {
        // Serialized straight into the raw value: not formatted through
        // `Display`, and not parsed again to check what was just written.
        let raw = serde_json::value::to_raw_value(&value).expect("a value serializes to JSON");
        let parsed = OnceLock::new();
        let _ = parsed.set(value);
        Item { raw: Arc::from(raw), parsed: Arc::new(parsed) }
    }

    /// The JSON text.
    pub fn json(&self) -> &str {
        self.raw.get()
    }

    /// Its size in bytes of JSON.
    pub fn len(&self) -> usize {
        self.raw.get().len()
    }

    /// Whether it is empty JSON text (never, for a checked item).
    pub fn is_empty(&self) -> bool {
        self.raw.get().is_empty()
    }

    /// The item as a value, parsed on first use.
    pub fn value(&self) -> &Value {
        self.parsed.get_or_init(|| serde_json::from_str(self.raw.get()).unwrap_or(Value::Null))
    }

    /// The item, or a stand-in naming its size and hash when it is larger
    /// than `max_bytes` (for records kept in memory).
    #[must_use]
    pub fn bounded(&self, max_bytes: usize) -> Item {
        if self.len() <= max_bytes {
            return self.clone();
        }
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(self.raw.get().as_bytes()));
        let head: String = self.raw.get().chars().take(256).collect();
        Item::from_value(serde_json::json!({"truncated": true, "bytes": self.len(), "sha256": hash, "head": head}))
    }
}

impl std::ops::Index<&str> for Item {
    type Output = Value;
    fn index(&self, key: &str) -> &Value {
        &self.value()[key]
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        self.raw.get() == other.raw.get() || self.value() == other.value()
    }
}

impl PartialEq<Value> for Item {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl std::fmt::Debug for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.raw.get())
    }
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.raw.get())
    }
}

impl JsonSchema for Item {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Item".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"description": "An item: any JSON value (a node's input or output)."})
    }
}

impl Serialize for Item {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Item, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(Item::from_value(value))
    }
}

/// One item a run emitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Emitted {
    /// The output port it was emitted on.
    pub port: String,
    /// The item.
    pub item: Item,
}

/// One answer a provider gave a node run: what was asked and what came
/// back. Kept with the run and in the ledger, so a simulation or a replay
/// can answer the same question the same way without asking again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CallRecord {
    /// The capability call (`marketing.get-contact`, `state.get`).
    pub call: String,
    /// Its arguments, as JSON.
    pub args: Value,
    /// What it answered, as JSON.
    pub answer: Value,
}

impl CallRecord {
    /// The key a recorded answer is found by: the call and its arguments.
    pub fn key(&self) -> String {
        read_key(&self.call, &self.args)
    }
}

/// The length of `value` as JSON text, counted without writing the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The key of the answer to `call` with `args`.
pub fn read_key(call: &str, args: &Value) -> String {
    format!("{call}{args}")
}

/// Where a plugin log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// `log` at debug level.
    Debug,
    /// `log` at info level.
    Info,
    /// `log` at warn level.
    Warn,
    /// `log` at error level.
    Error,
    /// What the plugin printed to stdout.
    Stdout,
    /// What the plugin printed to stderr.
    Stderr,
}

/// One line a plugin logged or printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct LogLine {
    /// Where it came from.
    pub stream: LogStream,
    /// The text (cut at the per-line limit).
    pub message: String,
}

/// A failed node run, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct RunError {
    /// The failure class (`timeout`, `trap`, `retryable`, ...).
    pub kind: &'static str,
    /// What happened, in words.
    pub message: String,
    /// Whether the executor would retry it.
    pub retryable: bool,
}

/// How an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Every branch ended (some may have ended in a recorded failure under
    /// `"on_error": "continue"`).
    Completed,
    /// A node failed under `"on_error": "stop"`, or a guard tripped.
    Failed,
}

/// One node run: what went in, what came out, how long it took.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NodeRunRecord {
    /// Order within the execution, from 1.
    pub seq: usize,
    /// The node id in the pipeline.
    pub node: String,
    /// The plugin the node runs.
    pub plugin: String,
    /// The plugin's version.
    pub plugin_version: String,
    /// 1 for the first attempt; 0 for a run replayed from the journal.
    pub attempt: u32,
    /// The item the node received.
    pub input: Item,
    /// What it emitted.
    pub outputs: Vec<Emitted>,
    /// How long the run took.
    pub duration_us: u64,
    /// When the run ended, in microseconds since the execution started.
    pub finished_at_us: u64,
    /// Why it failed, when it did.
    pub error: Option<RunError>,
    /// What the plugin logged.
    pub logs: Vec<LogLine>,
    /// Grants the plugin tried to use without having them.
    pub denied: Vec<String>,
    /// What its providers answered (reads only; writes are in the journal).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<CallRecord>,
    /// The run completed in an earlier run of this execution; its recorded
    /// outputs were used instead of running it again.
    pub replayed: bool,
}

/// Where a branch of the execution ended.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum BranchEnd {
    /// An item was emitted on a port nothing is connected to.
    Unconnected {
        /// The node that emitted it.
        node: String,
        /// The unconnected port.
        port: String,
        /// The item.
        item: Item,
    },
    /// A node failed on an item under `"on_error": "continue"`.
    Failed {
        /// The node that failed.
        node: String,
        /// Why.
        error: RunError,
    },
    /// A merge node's group never went on: a required input never came.
    Incomplete {
        /// The merge node.
        node: String,
        /// The inputs that had an item.
        present: Vec<String>,
        /// The required inputs that had none.
        missing: Vec<String>,
    },
}

/// The full record of one execution.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExecutionRecord {
    /// Stable across reruns of the same work (after a crash).
    pub execution_id: String,
    /// The pipeline's name.
    pub pipeline: String,
    /// The pipeline's version.
    pub pipeline_version: u32,
    /// The lead it is about, when known.
    pub lead_id: Option<String>,
    /// How it ended.
    pub status: ExecutionStatus,
    /// Why the execution failed, when it did.
    pub error: Option<String>,
    /// Whether the failure that stopped it may pass on a later attempt (a
    /// provider that stayed unavailable through the node's retries).
    pub retryable: bool,
    /// Host clock, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// How long it took.
    pub duration_us: u64,
    /// Every node run, in order.
    pub runs: Vec<NodeRunRecord>,
    /// Where each branch ended.
    pub ends: Vec<BranchEnd>,
}

impl ExecutionRecord {
    /// Marks the execution failed with `error`.
    pub fn fail(&mut self, error: String) {
        self.status = ExecutionStatus::Failed;
        self.error = Some(error);
    }

    /// Marks the execution failed by a node run's failure, which another
    /// attempt later may not meet (`retryable`: a provider outage or rate
    /// limit that outlasted the node's retries).
    pub fn fail_by(&mut self, error: String, retryable: bool) {
        self.fail(error);
        self.retryable = retryable;
    }

    /// When a run that finished `finished_at_us` into the execution ended,
    /// on the host clock (ms).
    pub fn at_ms(&self, finished_at_us: u64) -> i64 {
        self.started_at_ms + i64::try_from(finished_at_us / 1000).unwrap_or(0)
    }
}
