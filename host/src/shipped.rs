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
