//! Host-side bindings generated from `wit/` (the `node` world).
//!
//! Every import is async, so a capability call can await network I/O
//! without blocking a thread; exports are async so a run can be cancelled.

// The generated code's documentation is the WIT's.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    world: "node",
    path: "../wit",
    imports: { default: async },
    exports: { default: async },
    additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
});
