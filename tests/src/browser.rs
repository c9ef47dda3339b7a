//! A headless Chromium for the dashboard test: Debian's `chromium`,
//! installed by the test setup when it is missing and the machine allows.

use std::path::PathBuf;
use std::process::Command;

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| PathBuf::from(dir).join(name)).find(|p| p.is_file())
}

/// Chromium's path, installing Debian's `chromium` package (as root, with
/// apt) when it is missing; `Err` says why there is none.
///
/// # Errors
///
/// Why no Chromium can be had here.
pub fn chromium() -> Result<PathBuf, String> {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(path) = on_path(name) {
            return Ok(path);
        }
    }
    let Some(apt) = on_path("apt-get") else { return Err("no chromium, and no apt-get to install it".into()) };
    let root = Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root {
        return Err("no chromium, and not root to install it (apt-get install chromium)".into());
    }
    let install = |update: bool| {
        if update {
            let _ = Command::new(&apt).args(["update", "-qq"]).status();
        }
        Command::new(&apt)
            .args(["install", "-y", "-qq", "chromium"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install(false) && !install(true) {
        return Err("apt-get install chromium failed".into());
    }
    on_path("chromium").ok_or_else(|| "chromium was installed but is not on PATH".into())
}

/// Chromium, headless, with the flags a container needs.
pub fn headless(chromium: &std::path::Path) -> Command {
    let mut command = Command::new(chromium);
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        "--no-first-run",
        "--user-data-dir=/tmp/handoff-chromium-profile",
    ]);
    command
}

/// The DOM Chromium renders for `url`.
///
/// # Errors
///
/// When Chromium fails.
pub fn dump_dom(chromium: &std::path::Path, url: &str) -> Result<String, String> {
    let out = headless(chromium).arg("--dump-dom").arg(url).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A screenshot of `url` at `path` (PNG).
///
/// # Errors
///
/// When Chromium fails or writes nothing.
pub fn screenshot(chromium: &std::path::Path, url: &str, path: &std::path::Path, height: u32) -> Result<(), String> {
    let out = headless(chromium)
        .arg(format!("--screenshot={}", path.display()))
        .arg(format!("--window-size=1280,{height}"))
        .arg(url)
        .output()
        .map_err(|e| e.to_string())?;
    if !path.is_file() {
        return Err(format!("no screenshot: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}
