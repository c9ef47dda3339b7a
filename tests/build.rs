//! Builds every guest program in `tests/programs` (each directory with a
//! `Cargo.toml`, package `test-<dir>`) and exposes their paths as constants
//! (`ECHO`, `SPIN`, ...), so tests never shell out to build and a new
//! program needs no edit here.

// Paths are written as Rust string literals: `{:?}` quotes and escapes them.
#![allow(clippy::unnecessary_debug_formatting)]

use std::path::PathBuf;

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = here.join("programs");
    let mut programs: Vec<String> = std::fs::read_dir(&workspace)
        .expect("tests/programs exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .filter_map(|dir| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    programs.sort();
    let packages: Vec<String> = programs.iter().map(|p| format!("test-{p}")).collect();
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    let watch = [workspace.clone(), here.join("../wit"), here.join("../plugins/sdk")];
    let built = handoff_plugin_build::build(&workspace, &packages, &watch);
    let mut code = String::new();
    for (name, plugin) in programs.iter().zip(&built) {
        let constant = name.to_uppercase().replace('-', "_");
        code.push_str(&format!(
            "/// The `{name}` test program's component.\npub const {constant}: &str = {:?};\n",
            plugin.wasm
        ));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("programs.rs");
    std::fs::write(out, code).unwrap();
}
