//! Staged template repair: when the chat template will not serve Converse, copy the folder to a staging directory
//! (hard links for everything the fix does not touch, so a 16 GB model costs no space) and apply
//! `chat_template::fix` there. The user's folder is only edited with `in_place`.

use std::path::{Path, PathBuf};

use crate::Error;

/// Finding codes of `model_folder::check` that a template repair can clear.
const REPAIRABLE: &[&str] = &[
    "missing-chat-template",
    "invalid-chat-template",
    "template-not-converse",
    "template-no-tools",
];

/// Files the fix may rewrite or move: always copied, never linked (editing a hard link edits the original).
const EDITED: &[&str] = &["tokenizer_config.json", "chat_template.jinja", "chat_template.json"];

/// True when the report says the template keeps Converse (or tools) from working and the architecture could serve it.
pub fn needs_repair(report: &model_folder::Report) -> bool {
    report.find("converse-unsupported-architecture").is_none() && REPAIRABLE.iter().any(|c| report.find(c).is_some())
}

/// What a repair did.
#[derive(Debug, Clone)]
pub struct Repair {
    /// The folder to upload: the staging directory, or the source with `in_place`.
    pub dir: PathBuf,
    /// The fix's own account (family installed, diff, files moved aside).
    pub outcome: chat_template::FixOutcome,
    /// Files hard-linked into the staging directory.
    pub linked: usize,
    /// Files copied into it.
    pub copied: usize,
}

/// Repairs the template of `source` (the import's `names` only) in `staging` (emptied first), or in `source` itself
/// with `in_place`.
#[tracing::instrument(skip(names))]
pub fn repair(source: &Path, names: &[String], staging: &Path, in_place: bool) -> Result<Repair, Error> {
    let opts = chat_template::FixOptions::default();
    if in_place {
        let outcome = chat_template::fix(source, &opts).map_err(|e| Error::Template {
            dir: source.to_path_buf(),
            source: e,
        })?;
        return Ok(Repair {
            dir: source.to_path_buf(),
            outcome,
            linked: 0,
            copied: 0,
        });
    }
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    }
    std::fs::create_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    let (mut linked, mut copied) = (0, 0);
    for name in names {
        // Resolve symlinks first (the Hugging Face cache's snapshots are symlinks into blobs/): a hard link to a
        // relative symlink would dangle in another directory.
        let from = source.join(name);
        let from = from.canonicalize().map_err(|e| Error::io(&from, e))?;
        let to = staging.join(name);
        if !EDITED.contains(&name.as_str()) && std::fs::hard_link(&from, &to).is_ok() {
            linked += 1;
            continue;
        }
        std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        copied += 1;
    }
    let outcome = chat_template::fix(staging, &opts).map_err(|e| Error::Template {
        dir: staging.to_path_buf(),
        source: e,
    })?;
    tracing::info!(
        linked,
        copied,
        changed = outcome.changed,
        "template repaired in a staged copy"
    );
    Ok(Repair {
        dir: staging.to_path_buf(),
        outcome,
        linked,
        copied,
    })
}
