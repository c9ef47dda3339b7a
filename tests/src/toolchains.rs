//! The Python and JavaScript component toolchains, installed by the tests
//! themselves (no manual step) into the Cargo target directory, and builds
//! of guest plugins with them, cached by the hash of their sources.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// componentize-py release the tests and the guide use.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// schemathesis release the API contract test runs.
pub const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// componentize-js release (0.23.0 with its preview2-shim pairing works on Node 20).
pub const COMPONENTIZE_JS: &str = "@bytecodealliance/componentize-js@0.23.0";

static INSTALL: Mutex<()> = Mutex::new(());

/// `<target>/toolchains`, shared by every test run.
pub fn root() -> PathBuf {
    let out = PathBuf::from(env!("OUT_DIR"));
    let target = out.ancestors().find(|d| d.join("CACHEDIR.TAG").exists()).map(Path::to_path_buf).unwrap_or(out);
    target.join("toolchains")
}

fn run(mut command: Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The componentize-py executable, installing it with pip on first use.
pub fn componentize_py() -> (PathBuf, PathBuf) {
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = root().join("python");
    let bin = dir.join("bin").join("componentize-py");
    if !bin.exists() {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(COMPONENTIZE_PY);
        run(pip, "pip install componentize-py");
    }
    (bin, dir)
}

/// The schemathesis executable and the directory to put on `PYTHONPATH`,
/// installing it with pip on first use.
pub fn schemathesis() -> (PathBuf, PathBuf) {
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = root().join("schemathesis");
    let bin = dir.join("bin").join("schemathesis");
    if !bin.exists() {
        let mut pip = Command::new("python3");
        pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(SCHEMATHESIS);
        run(pip, "pip install schemathesis");
    }
    (bin, dir)
}

/// The componentize-js executable, installing it with npm on first use.
pub fn componentize_js() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = root().join("js");
    let bin = dir.join("node_modules").join(".bin").join("componentize-js");
    if !bin.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let mut npm = Command::new("npm");
        npm.current_dir(&dir).args(["install", "--silent", "--no-audit", "--no-fund", "--save-exact", COMPONENTIZE_JS]);
        run(npm, "npm install componentize-js");
    }
    bin
}

/// A stable hash of the files under `dir` (names and contents, following
/// the WIT symlink), so a build is redone only when a source changes.
fn source_hash(dir: &Path) -> String {
    fn walk(dir: &Path, hash: &mut u64) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap_or_default().to_string_lossy().to_string();
            if name.starts_with('.')
                || name == "__pycache__"
                || Path::new(&name).extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm"))
                || name == "node_modules"
            {
                continue;
            }
            for b in name.bytes() {
                *hash = (*hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            if path.is_dir() {
                walk(&path, hash);
            } else if let Ok(bytes) = std::fs::read(&path) {
                for b in bytes {
                    *hash = (*hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    walk(dir, &mut hash);
    format!("{hash:016x}")
}

/// A copy of `dir` (symlinks followed) to build in, so a toolchain's
/// by-products (`__pycache__`) never land in the source tree.
fn build_copy(dir: &Path) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap().flatten() {
            let (path, target) = (entry.path(), to.join(entry.file_name()));
            let name = entry.file_name().to_string_lossy().to_string();
            if name == "__pycache__"
                || name == "node_modules"
                || Path::new(&name).extension().is_some_and(|e| e.eq_ignore_ascii_case("wasm"))
            {
                continue;
            }
            if path.is_dir() { copy(&path, &target) } else { std::fs::copy(&path, &target).map(drop).unwrap() }
        }
    }
    let work = tempfile::tempdir().unwrap();
    copy(dir, work.path());
    work
}

/// Builds a Python plugin (`module`.py in `dir`, world `world` in
/// `dir/wit`) with componentize-py; returns the component's path.
pub fn build_python(dir: &Path, world: &str, module: &str) -> PathBuf {
    let out = root().join("built").join(format!("{module}-{}.wasm", source_hash(dir)));
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let (bin, site) = componentize_py();
    let work = build_copy(dir);
    let mut build = Command::new(bin);
    build
        .current_dir(work.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONPATH", site)
        .args(["-d", "wit", "-w", world, "componentize", module, "-o"])
        .arg(&out);
    run(build, "componentize-py");
    out
}

/// Builds a JavaScript plugin (`source` in `dir`, world `world` in
/// `dir/wit`) with componentize-js; returns the component's path.
pub fn build_js(dir: &Path, world: &str, source: &str) -> PathBuf {
    let out = root().join("built").join(format!("{}-{}.wasm", source.trim_end_matches(".js"), source_hash(dir)));
    if out.exists() {
        return out;
    }
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let bin = componentize_js();
    let work = build_copy(dir);
    let mut build = Command::new(bin);
    build
        .current_dir(work.path())
        .args([source, "--wit", "wit", "-n", world, "-d", "http", "-d", "fetch-event", "-o"])
        .arg(&out);
    run(build, "componentize-js");
    out
}

/// The repository's `plugins/examples/<name>` directory.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples").join(name)
}
