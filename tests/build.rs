//! Builds the guest programs in `tests/programs` and exposes their paths as
//! constants (`PROGRAMS`), so tests never shell out to build.

use std::path::PathBuf;

const PROGRAMS: &[&str] = &["echo", "spin", "hog", "trap", "sneaky", "overreach", "shadow", "blurt"];

fn main() {
    let here = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = here.join("programs");
    let packages: Vec<String> = PROGRAMS.iter().map(|p| format!("test-{p}")).collect();
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    let built = handoff_plugin_build::build(&workspace, &packages, &[workspace.clone(), here.join("../wit")]);
    let mut code = String::new();
    for (name, plugin) in PROGRAMS.iter().zip(&built) {
        code.push_str(&format!("pub const {}: &str = {:?};\n", name.to_uppercase(), plugin.wasm));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("programs.rs");
    std::fs::write(out, code).unwrap();
}
