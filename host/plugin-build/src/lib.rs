//! Compiles plugin crates to WebAssembly components, for build scripts.
//!
//! The host's build script uses this to embed the standard plugins in the
//! `handoff` binary, and the test crate's build script uses it to build the
//! guest programs its tests load. Plugins are ordinary workspace crates with
//! `crate-type = ["cdylib", "rlib"]`; for `wasm32-wasip2` rustc emits a
//! component directly, so no separate componentize step is needed.
//!
//! The nested `cargo` gets a target directory of its own so it never waits on
//! the lock of the build that runs the build script.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Rust target plugins are compiled for.
pub const TARGET: &str = "wasm32-wasip2";

/// The Cargo profile (defined in the workspace manifest) plugins are built with.
pub const PROFILE: &str = "plugin";

/// A plugin crate compiled to a component.
#[derive(Debug, Clone)]
pub struct BuiltPlugin {
    /// The Cargo package name, e.g. `handoff-plugin-validate`.
    pub package: String,
    /// Absolute path of the `.wasm` component: a copy in the calling build
    /// script's `OUT_DIR`, its own.
    pub wasm: PathBuf,
}

/// Builds `packages` (Cargo package names in the workspace at
/// `workspace_root`) as components and returns where each landed.
///
/// Prints `cargo:rerun-if-changed` lines for `watch` so the calling build
/// script re-runs only when plugin sources or the WIT contract change.
///
/// # Panics
///
/// Panics with cargo's output when the build fails: that is how a build
/// script reports an error.
pub fn build(workspace_root: &Path, packages: &[&str], watch: &[PathBuf]) -> Vec<BuiltPlugin> {
    for path in watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rerun-if-changed={}", workspace_root.join("Cargo.lock").display());

    ensure_target_installed();
    let target_dir = plugin_target_dir();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root)
        .arg("build")
        .arg("--quiet")
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        cmd.arg("-p").arg(package);
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("failed to run cargo for the plugin build");
    assert!(
        output.status.success(),
        "building plugins {packages:?} for {TARGET} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    // Copied into this build's own OUT_DIR: the shared guest target holds
    // whichever checkout built last, and a build of another checkout (a
    // before/after pair on one target directory) must not change what this
    // one embeds or loads.
    let own = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts")).join("plugins");
    std::fs::create_dir_all(&own).expect("creating OUT_DIR/plugins");
    packages
        .iter()
        .map(|package| {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let built = target_dir.join(TARGET).join(PROFILE).join(&file);
            assert!(built.exists(), "cargo built {package} but {} is missing", built.display());
            let wasm = own.join(&file);
            std::fs::copy(&built, &wasm)
                .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), wasm.display()));
            BuiltPlugin { package: package.to_string(), wasm }
        })
        .collect()
}

/// Installs the wasm32-wasip2 standard library with rustup when the active
/// toolchain lacks it, so a fresh clone builds with plain `cargo build`
/// (rustup does not add a toolchain file's targets to an installed
/// toolchain by itself).
fn ensure_target_installed() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let sysroot = Command::new(&rustc).args(["--print", "sysroot"]).output().expect("running rustc --print sysroot");
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    if sysroot.join("lib/rustlib").join(TARGET).exists() {
        return;
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    let status = rustup.status().unwrap_or_else(|e| {
        panic!("the {TARGET} target is missing and rustup could not be run ({e}); install it with `rustup target add {TARGET}`")
    });
    assert!(status.success(), "`rustup target add {TARGET}` failed");
}

/// `<target dir>/plugins`, next to `debug/` and `release/`, so the guest build
/// is incremental across host builds and shared by every build script.
fn plugin_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out, or with --target,
    // <target>/<triple>/<profile>/build/<pkg>-<hash>/out.
    let target = out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").exists())
        .map_or_else(|| out_dir.join("plugin-target"), Path::to_path_buf);
    target.join("plugins")
}
