//! `handoff-plugin`: write Handoff plugins in Rust.
//!
//! A plugin implements [`Plugin`] (what it is, and what it does with one
//! item) and exports itself with [`export!`]. The SDK does the rest: the
//! WIT bindings are generated once here, the node's config is parsed into
//! your type, the item into JSON, and capability errors become node errors
//! with `?` (an outage is retried, a refusal is not).
//!
//! ```ignore
//! use handoff_plugin::{Describe, Plugin, Run, emit, json, Value, NodeError, Emit};
//! use handoff_plugin::roster;
//!
//! struct Tag;
//!
//! impl Plugin for Tag {
//!     type Config = Value;
//!     fn describe() -> Describe {
//!         Describe { name: "tag", version: env!("CARGO_PKG_VERSION"), ..Describe::default() }
//!     }
//!     fn run(run: &Run<Value>, mut item: Value) -> Result<Vec<Emit>, NodeError> {
//!         item["tag"] = run.config["tag"].clone();
//!         Ok(vec![emit("main", &item)])
//!     }
//! }
//!
//! handoff_plugin::export!(Tag);
//! ```

pub mod contact;
pub mod rejection;
pub mod summary;
pub mod time;

// The generated code names this crate by its path, also from inside it.
extern crate self as handoff_plugin;

/// The bindings of the `handoff:plugin` `node` world, generated once. Their
/// documentation is the WIT's (`wit/`).
#[allow(missing_docs, clippy::pedantic)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "node",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "export_node",
        default_bindings_module: "handoff_plugin::bindings",
        runtime_path: "handoff_plugin::wit_bindgen::rt",
    });
}

pub use bindings::handoff::plugin::types::{CapabilityError, Context, Descriptor, Emit, NodeError};
pub use bindings::handoff::plugin::{
    chat, clock, crm, email, llm, log, marketing, reports, roster, schedule, state, types,
};
pub use serde_json::{self, Value, json};
#[doc(hidden)]
pub use wit_bindgen;

/// What a plugin says about itself (`handoff plugin list` shows it).
#[derive(Debug, Clone, Copy)]
pub struct Describe {
    /// The name pipelines refer to it by: lower-case letters, digits, '-'.
    pub name: &'static str,
    /// Semantic version, usually `env!("CARGO_PKG_VERSION")`.
    pub version: &'static str,
    /// One line for `handoff plugin list`.
    pub description: &'static str,
    /// Input ports; `["main"]` by default.
    pub inputs: &'static [&'static str],
    /// Output ports; `run` may emit only on these. `["main"]` by default.
    pub outputs: &'static [&'static str],
    /// Grants the plugin needs, e.g. `["crm:read"]`.
    pub capabilities: &'static [&'static str],
    /// JSON Schema (draft 2020-12) of the node's config.
    pub config_schema: &'static str,
    /// What an item on each output port means for its lead, as a JSON
    /// object: port (or `*`) → `{"state", "detail", "phase", "owner",
    /// "crm_id"}`. `{}` when the plugin moves no lead.
    pub lead: &'static str,
}

impl Default for Describe {
    fn default() -> Self {
        Describe {
            name: "",
            version: "0.0.0",
            description: "",
            inputs: &["main"],
            outputs: &["main"],
            capabilities: &[],
            config_schema: r#"{"type": "object"}"#,
            lead: "{}",
        }
    }
}

/// The config-schema annotation that carries the lead declaration.
pub const LEAD_ANNOTATION: &str = "x-handoff-lead";

impl From<Describe> for Descriptor {
    fn from(d: Describe) -> Self {
        let owned = |list: &[&str]| list.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        // The lead declaration travels in the config schema, as an
        // annotation the host reads; a schema that is not JSON goes as it
        // is, for the host to report.
        let lead: Value = serde_json::from_str(d.lead).unwrap_or_else(|_| json!({}));
        let config_schema = match serde_json::from_str::<Value>(d.config_schema) {
            Ok(Value::Object(mut schema)) if lead.as_object().is_some_and(|l| !l.is_empty()) => {
                schema.insert(LEAD_ANNOTATION.into(), lead);
                Value::Object(schema).to_string()
            }
            _ => d.config_schema.to_string(),
        };
        Descriptor {
            name: d.name.into(),
            version: d.version.into(),
            description: d.description.into(),
            inputs: owned(d.inputs),
            outputs: owned(d.outputs),
            capabilities: owned(d.capabilities),
            config_schema,
        }
    }
}

/// One run: the host's context and the node's config, parsed.
pub struct Run<C> {
    /// Pipeline, node, execution, lead, attempt, and the raw config.
    pub ctx: Context,
    /// The node's config as your type.
    pub config: C,
}

/// A Handoff plugin.
pub trait Plugin {
    /// The node config, parsed from the pipeline's JSON (`serde_json::Value`
    /// to take it as it is).
    type Config: serde::de::DeserializeOwned;

    /// What the plugin is.
    fn describe() -> Describe;

    /// Handles one item; returns what to emit, each on a declared port.
    ///
    /// # Errors
    ///
    /// `invalid-input` (not retried), `retryable` (retried with the node's
    /// backoff) or `fatal`.
    fn run(run: &Run<Self::Config>, item: Value) -> Result<Vec<Emit>, NodeError>;
}

/// A capability error as the node error a plugin usually returns: an
/// outage or rate limit is retried; a refusal, a missing object or a
/// missing grant stops the item.
impl From<CapabilityError> for NodeError {
    fn from(e: CapabilityError) -> Self {
        match e {
            CapabilityError::Unavailable(m) => NodeError::Retryable(m),
            CapabilityError::Invalid(m) => NodeError::InvalidInput(m),
            CapabilityError::NotFound(m) => NodeError::Fatal(format!("not found: {m}")),
            CapabilityError::Denied(m) => NodeError::Fatal(format!("denied: {m}")),
        }
    }
}

/// `item` on `port`.
pub fn emit(port: &str, item: &Value) -> Emit {
    // Straight into bytes: `Value`'s `Display` goes through the formatting
    // machinery write by write, which costs plugins a good share of a run.
    let item = serde_json::to_string(item).expect("a JSON value serializes");
    Emit { port: port.to_string(), item }
}

/// Parses the config and the item, then runs `P`: what [`export!`] calls.
///
/// # Errors
///
/// `invalid-input` naming the problem when the config does not match
/// `P::Config` or the item is not JSON; otherwise what `P::run` returns.
pub fn run<P: Plugin>(ctx: Context, item: &str) -> Result<Vec<Emit>, NodeError> {
    let config: P::Config =
        serde_json::from_str(&ctx.config).map_err(|e| NodeError::InvalidInput(format!("config: {e}")))?;
    let item: Value =
        serde_json::from_str(item).map_err(|e| NodeError::InvalidInput(format!("item is not JSON: {e}")))?;
    P::run(&Run { ctx, config }, item)
}

/// Exports a [`Plugin`] as the component's `describe` and `run`.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        struct __HandoffNode;

        impl $crate::bindings::Guest for __HandoffNode {
            fn describe() -> $crate::Descriptor {
                <$plugin as $crate::Plugin>::describe().into()
            }

            fn run(ctx: $crate::Context, item: String) -> Result<Vec<$crate::Emit>, $crate::NodeError> {
                $crate::run::<$plugin>(ctx, &item)
            }
        }

        $crate::bindings::export_node!(__HandoffNode with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_declaration_travels_in_the_config_schema() {
        let d: Descriptor = Describe {
            name: "x",
            config_schema: r#"{"type": "object"}"#,
            lead: r#"{"main": {"state": "scored"}}"#,
            ..Describe::default()
        }
        .into();
        let schema: Value = serde_json::from_str(&d.config_schema).unwrap();
        assert_eq!(schema[LEAD_ANNOTATION]["main"]["state"], "scored");
        assert_eq!(d.inputs, ["main"]);
        let plain: Descriptor = Describe { name: "y", ..Describe::default() }.into();
        assert_eq!(plain.config_schema, r#"{"type": "object"}"#, "no declaration, schema untouched");
    }

    #[test]
    fn outages_are_retried_and_refusals_are_not() {
        assert!(matches!(NodeError::from(CapabilityError::Unavailable("429".into())), NodeError::Retryable(_)));
        assert!(matches!(NodeError::from(CapabilityError::Invalid("bad".into())), NodeError::InvalidInput(_)));
        assert!(matches!(NodeError::from(CapabilityError::Denied("crm:write".into())), NodeError::Fatal(_)));
    }
}
