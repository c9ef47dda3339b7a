//! Handoff: the marketing-to-sales lead handoff host.
//!
//! The host loads sandboxed WebAssembly plugins (`runtime`), serves them the
//! outside world through brokered capabilities (`capabilities`), and chains
//! them as pipeline JSON says (`pipeline`). `ARCHITECTURE.md` at the
//! repository root is the map.

pub mod app;
pub mod capabilities;
pub mod cli;
pub mod connectors;
pub mod demo;
pub mod pipeline;
pub mod roster;
pub mod runtime;
pub mod sandbox;
pub mod scaffold;
pub mod server;
pub mod store;
