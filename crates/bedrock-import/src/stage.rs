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

/// Repairs the template of `source` (the import's `names` only) in a copy beside `staging` (`<staging>-<key of the
/// files>`, the returned `dir`), or in `source` itself with `in_place`.
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
    // Each run builds its copy in a directory of its own and publishes it under a name that says what it was made
    // from (the files' names, sizes and modification times), so two imports of the same model at once never empty
    // or rewrite a copy the other is uploading: the second finds the first's, identical, and uses it.
    let mut key = 0u32;
    for name in names {
        let meta = std::fs::metadata(source.join(name)).map_err(|e| Error::io(source.join(name), e))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        key = crc32c::crc32c_append(key, format!("{name}\t{}\t{mtime}\n", meta.len()).as_bytes());
    }
    let base = staging.file_name().and_then(|n| n.to_str()).unwrap_or("model");
    let published = staging.with_file_name(format!("{base}-{key:08x}"));
    let building = staging.with_file_name(format!("{base}-{key:08x}.tmp-{}", std::process::id()));
    if building.exists() {
        std::fs::remove_dir_all(&building).map_err(|e| Error::io(&building, e))?;
    }
    std::fs::create_dir_all(&building).map_err(|e| Error::io(&building, e))?;
    let (mut linked, mut copied) = (0, 0);
    for name in names {
        // Resolve symlinks first (the Hugging Face cache's snapshots are symlinks into blobs/): a hard link to a
        // relative symlink would dangle in another directory.
        let from = source.join(name);
        let from = from.canonicalize().map_err(|e| Error::io(&from, e))?;
        let to = building.join(name);
        if !EDITED.contains(&name.as_str()) && std::fs::hard_link(&from, &to).is_ok() {
            linked += 1;
            continue;
        }
        std::fs::copy(&from, &to).map_err(|e| Error::io(&to, e))?;
        copied += 1;
    }
    let outcome = chat_template::fix(&building, &opts).map_err(|e| Error::Template {
        dir: building.clone(),
        source: e,
    })?;
    // Published whole, or already there from an identical run (then this one's copy goes).
    if std::fs::rename(&building, &published).is_err() && published.is_dir() {
        let _ = std::fs::remove_dir_all(&building);
    } else if !published.is_dir() {
        return Err(Error::io(
            &published,
            std::io::Error::other("the staged copy could not be moved into place"),
        ));
    }
    let staging = published.as_path();
    Ok(Repair {
        dir: staging.to_path_buf(),
        outcome,
        linked,
        copied,
    })
}
