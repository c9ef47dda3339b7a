//! Contract tests: every connector call against the emulators, each error
//! class and the retry behaviour, and the signature schemes against their
//! published vectors.

mod anthropic;
mod emulator_api;
mod hubspot;
mod salesforce;
mod signatures;
mod slack;
mod smtp;
