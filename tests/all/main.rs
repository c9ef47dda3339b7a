//! Integration tests of the Handoff host, in one binary (one link step).

mod cache;
mod clock;
mod connectors;
mod containment;
mod dashboard;
mod executor;
mod fuzzing;
mod grants;
mod handoff;
mod hardening;
mod journal;
mod languages;
mod lead_states;
mod ledger;
mod metrics;
mod openapi;
mod pipeline_checks;
mod push;
mod recycling;
mod registry;
mod sandbox;
mod scaffold;
mod schedules;
mod simulate;
mod sla;
mod validate_plugin;
