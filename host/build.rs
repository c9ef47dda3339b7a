//! Compiles the standard plugins (`plugins/*`) to components and embeds them
//! in the binary via `$OUT_DIR/standard_plugins.rs`.

// Paths are written as Rust string literals: `{:?}` quotes and escapes them.
#![allow(clippy::unnecessary_debug_formatting)]

use std::path::PathBuf;

/// Standard plugins: (name pipelines use, Cargo package).
const STANDARD: &[(&str, &str)] = &[
    ("validate", "handoff-plugin-validate"),
    ("fetch-contact", "handoff-plugin-fetch-contact"),
    ("dedupe", "handoff-plugin-dedupe"),
    ("route", "handoff-plugin-route"),
    ("assign", "handoff-plugin-assign"),
    ("summarize", "handoff-plugin-summarize"),
    ("notify", "handoff-plugin-notify"),
    ("escalate", "handoff-plugin-escalate"),
    ("recycle", "handoff-plugin-recycle"),
    ("digest", "handoff-plugin-digest"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let packages: Vec<&str> = STANDARD.iter().map(|(_, package)| *package).collect();
    let built = handoff_plugin_build::build(&root, &packages, &[root.join("plugins"), root.join("wit")]);

    let mut code = String::from("/// Standard plugins compiled into the binary: (name, component bytes).\n");
    code.push_str("pub const STANDARD_PLUGINS: &[(&str, &[u8])] = &[\n");
    for ((name, _), plugin) in STANDARD.iter().zip(&built) {
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", plugin.wasm));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("standard_plugins.rs");
    std::fs::write(out, code).unwrap();
}
