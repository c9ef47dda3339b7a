//! Handoff: the marketing-to-sales lead handoff host.
//!
//! The host loads sandboxed WebAssembly plugins (`runtime`), serves them the
//! outside world through brokered capabilities (`capabilities`), and chains
//! them as pipeline JSON says (`pipeline`). `ARCHITECTURE.md` at the
//! repository root is the map.

pub mod allocator;
pub mod app;
pub mod bindings;
pub mod capabilities;
pub mod charts;
pub mod cli;
pub mod connectors;
#[cfg(feature = "emulators")]
pub mod demo;
pub mod doctor;
pub mod dry_run;
#[cfg(feature = "emulators")]
pub mod emulated;
pub mod lead;
pub mod ledger;
pub mod logging;
pub mod pipeline;
pub mod record;
pub mod replay;
pub mod reports;
pub mod roster;
pub mod runtime;
pub mod scaffold;
pub mod server;
pub mod shipped;
pub mod simulate;
pub mod telemetry;
