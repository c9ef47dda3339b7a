//! The pipelines, roster and pipeline schema that ship with Handoff,
//! embedded in the binary: `handoff demo` and `handoff serve --sandbox`
//! work from any directory, with no files around them. A `pipelines/`
//! directory in the working directory (the checkout, or an operator's own
//! edited copies) wins over the embedded files; `--pipeline` and `--roster`
//! name any file.

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The directory the shipped files are read from when it exists.
pub const DIR: &str = "pipelines";

/// Every shipped file, by name, as built into this binary.
pub const FILES: &[(&str, &str)] = &[
    ("mql-handoff.json", include_str!("../../pipelines/mql-handoff.json")),
    ("mql-intake.json", include_str!("../../pipelines/mql-intake.json")),
    ("sla-enforcement.json", include_str!("../../pipelines/sla-enforcement.json")),
    ("slack-interactions.json", include_str!("../../pipelines/slack-interactions.json")),
    ("rejection-recycle.json", include_str!("../../pipelines/rejection-recycle.json")),
    ("salesforce-rejections.json", include_str!("../../pipelines/salesforce-rejections.json")),
    ("weekly-digest.json", include_str!("../../pipelines/weekly-digest.json")),
    ("roster.json", include_str!("../../pipelines/roster.json")),
    ("pipeline.schema.json", include_str!("../../pipelines/pipeline.schema.json")),
];

/// The pipelines `handoff serve` (and `handoff doctor`) serve by default.
pub const SERVED: [&str; 6] = [
    "pipelines/mql-handoff.json",
    "pipelines/sla-enforcement.json",
    "pipelines/slack-interactions.json",
    "pipelines/rejection-recycle.json",
    "pipelines/salesforce-rejections.json",
    "pipelines/weekly-digest.json",
];

/// Where a shipped file was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A file on disk (given, or under `pipelines/`).
    Disk,
    /// The copy built into the binary, written out to this directory.
    BuiltIn(PathBuf),
}

/// The shipped files' directory: `dir` when it exists; otherwise, for the
/// default `pipelines`, the built-in files written to `<data_dir>/shipped`
/// (rewritten every time, so they are always this binary's).
///
/// # Errors
///
/// When the built-in files cannot be written, or a directory other than
/// the default does not exist.
pub fn directory(dir: &Path, data_dir: &Path) -> Result<(PathBuf, Origin)> {
    if dir.is_dir() {
        return Ok((dir.to_path_buf(), Origin::Disk));
    }
    if dir != Path::new(DIR) {
        anyhow::bail!("{}: no such directory", dir.display());
    }
    let written = data_dir.join("shipped");
    std::fs::create_dir_all(&written).with_context(|| format!("creating {}", written.display()))?;
    for (name, text) in FILES {
        let path = written.join(name);
        if std::fs::read_to_string(&path).ok().as_deref() != Some(*text) {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok((written.clone(), Origin::BuiltIn(written)))
}

/// `path` if it exists; otherwise, when it names a shipped file under the
/// default `pipelines/` directory, that file's built-in copy.
///
/// # Errors
///
/// When the built-in files cannot be written.
pub fn file(path: &Path, data_dir: &Path) -> Result<(PathBuf, Origin)> {
    let shipped = path.parent() == Some(Path::new(DIR))
        && path.file_name().is_some_and(|name| FILES.iter().any(|(n, _)| name == *n));
    if path.exists() || !shipped {
        return Ok((path.to_path_buf(), Origin::Disk));
    }
    let (dir, origin) = directory(Path::new(DIR), data_dir)?;
    Ok((dir.join(path.file_name().expect("a shipped file has a name")), origin))
}

/// The connector settings `handoff init` writes: every setting, commented
/// out, with what it means. As written it configures nothing (a server
/// started on it names what is missing); `--sandbox` needs none of it.
pub const STARTER_CONFIG: &str = r#"# Handoff connector settings: `handoff serve --config handoff.toml`.
# Every setting is here, commented out. Secrets may stay out of this file:
# each has a HANDOFF_* variable (see .env.example); a value here wins.
# `handoff doctor --config handoff.toml --public-url https://...` checks the
# whole setup (scopes, fields, lists, channels, the ledger) and changes nothing.

# [hubspot]
# base_url = "https://api.hubapi.com"
# token = "pat-na1-..."            # private app token (HANDOFF_HUBSPOT_TOKEN); scopes: crm.objects.contacts.read/write, crm.lists.read/write, crm.schemas.contacts.read
# app_secret = "..."               # signs webhooks (HANDOFF_HUBSPOT_APP_SECRET)

# [salesforce]
# login_url = "https://acme.my.salesforce.com"   # your My Domain URL
# api_version = "v59.0"
# auth = { flow = "client-credentials", client_id = "3MVG9...", client_secret = "" }   # secret: HANDOFF_SALESFORCE_CLIENT_SECRET
# auth = { flow = "jwt-bearer", client_id = "3MVG9...", username = "handoff@acme.com", private_key_pem = "" }   # key: HANDOFF_SALESFORCE_PRIVATE_KEY

# [slack]
# base_url = "https://slack.com/api"
# bot_token = "xoxb-..."           # HANDOFF_SLACK_BOT_TOKEN; scopes: slack-app-manifest.json (chat:write, im:write, im:history, channels:read, groups:read, users:read, users:read.email)
# signing_secret = "..."           # verifies button clicks (HANDOFF_SLACK_SIGNING_SECRET)

# [anthropic]                      # optional: model-written summaries (a template otherwise)
# base_url = "https://api.anthropic.com"
# api_key = "sk-ant-..."           # HANDOFF_ANTHROPIC_API_KEY
# model = "claude-haiku-4-5"

# [smtp]                           # optional: the email backup of each DM
# host = "smtp.example.com"
# port = 587
# security = "starttls"            # none, starttls or tls
# username = "handoff"
# password = ""                    # HANDOFF_SMTP_PASSWORD
# from = "Handoff <handoff@example.com>"

# [policy]                         # timeouts and retries of every provider call (milliseconds)
# timeout = 10000
# max_attempts = 4
# base_backoff = 250
# max_wait = 30000
# rolling_limit_wait = 10000
"#;

/// `handoff init DIR`: an editable starter (the connector settings, the
/// shipped pipelines and roster, a `.env.example` for secrets). Returns the
/// files written.
///
/// # Errors
///
/// When a file it would write exists already (nothing is overwritten:
/// nothing is written then), or writing fails.
pub fn init(dir: &Path, environment: &str) -> Result<Vec<PathBuf>> {
    let mut files: Vec<(PathBuf, &str)> =
        vec![(dir.join("handoff.toml"), STARTER_CONFIG), (dir.join(".env.example"), environment)];
    files.extend(FILES.iter().map(|(name, text)| (dir.join(DIR).join(name), *text)));
    let existing: Vec<String> =
        files.iter().filter(|(path, _)| path.exists()).map(|(path, _)| path.display().to_string()).collect();
    if !existing.is_empty() {
        anyhow::bail!(
            "{} exist already; init overwrites nothing (move them, or init another directory)",
            existing.join(", ")
        );
    }
    std::fs::create_dir_all(dir.join(DIR)).with_context(|| format!("creating {}", dir.join(DIR).display()))?;
    for (path, text) in &files {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_in_the_pipelines_directory_is_built_in_as_it_is() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pipelines");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = FILES.iter().map(|(n, _)| n.to_string()).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in);
        for (name, text) in FILES {
            assert_eq!(std::fs::read_to_string(dir.join(name)).unwrap(), *text, "{name}");
        }
    }

    #[test]
    fn init_writes_a_starter_that_loads_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let written = init(dir.path(), "# HANDOFF_SLACK_BOT_TOKEN=\n").unwrap();
        assert_eq!(written.len(), FILES.len() + 2);
        let config = crate::connectors::ConnectorsConfig::load(&dir.path().join("handoff.toml")).unwrap();
        assert_eq!(config, crate::connectors::ConnectorsConfig::default(), "all commented out");
        // Uncommented, every line is a setting the loader knows.
        let uncommented: String = STARTER_CONFIG
            .lines()
            .filter(|l| {
                l.starts_with("# [") || l.starts_with("# ") && l.contains(" = ") && !l.contains("auth = { flow = \"jwt")
            })
            .map(|l| {
                l.trim_start_matches("# ").split("   #").next().unwrap().split("  #").next().unwrap().to_string() + "\n"
            })
            .collect();
        let mut parsed: crate::connectors::ConnectorsConfig =
            toml::from_str(&uncommented).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
        parsed.apply_env(|name| (name == "HANDOFF_SALESFORCE_CLIENT_SECRET").then(|| "from-env".to_string()));
        assert!(parsed.missing().is_empty(), "{:?}", parsed.missing());
        let again = init(dir.path(), "").unwrap_err().to_string();
        assert!(again.contains("handoff.toml") && again.contains("overwrites nothing"), "{again}");
    }

    #[test]
    fn missing_default_files_come_from_the_binary_and_given_ones_win() {
        // Unit tests run in host/, which has no pipelines/ directory.
        assert!(!Path::new(DIR).exists());
        let data = tempfile::tempdir().unwrap();
        let (path, origin) = file(Path::new("pipelines/mql-handoff.json"), data.path()).unwrap();
        assert_eq!(origin, Origin::BuiltIn(data.path().join("shipped")));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), FILES[0].1);
        let given = data.path().join("mine.json");
        std::fs::write(&given, "{}").unwrap();
        assert_eq!(file(&given, data.path()).unwrap(), (given.clone(), Origin::Disk));
        let unknown = Path::new("pipelines/not-shipped.json");
        assert_eq!(file(unknown, data.path()).unwrap().0, unknown, "left to fail where it is read");
        assert!(directory(&data.path().join("nowhere"), data.path()).is_err(), "only the default falls back");
    }
}
