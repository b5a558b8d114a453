//! The upload journal: local checksums (so a re-run does not re-read unchanged files) and the multipart uploads in
//! flight with their acknowledged parts (so a killed run resumes where it stopped). A small JSON file, rewritten
//! atomically (temp file + rename) after every change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The journal's contents.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Journal {
    /// Checksums of local files by absolute path, valid while size and mtime match.
    #[serde(default)]
    pub(crate) files: BTreeMap<String, FileSum>,
    /// Multipart uploads in flight, by `bucket/key`.
    #[serde(default)]
    pub(crate) uploads: BTreeMap<String, OpenUpload>,
}

/// A local file's checksum and the stat it was taken with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct FileSum {
    pub(crate) size: u64,
    pub(crate) mtime_ns: u128,
    pub(crate) crc32c: u32,
}

/// An interrupted (or running) multipart upload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct OpenUpload {
    pub(crate) upload_id: String,
    /// Size and CRC32C of the file it uploads: a different file means the parts are useless.
    pub(crate) size: u64,
    pub(crate) crc32c: u32,
    pub(crate) part_size: u64,
    /// Acknowledged parts: number → (ETag, part CRC32C).
    #[serde(default)]
    pub(crate) parts: BTreeMap<i32, DonePart>,
}

/// One acknowledged part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct DonePart {
    pub(crate) etag: Option<String>,
    pub(crate) crc32c: u32,
}

/// A journal bound to its file (or to nothing: then it lives in memory only).
#[derive(Debug)]
pub(crate) struct JournalFile {
    path: Option<PathBuf>,
    pub(crate) data: Journal,
}

impl JournalFile {
    /// Loads the journal; a missing file is an empty journal.
    pub(crate) fn load(path: Option<&Path>) -> Result<JournalFile, Error> {
        let Some(path) = path else {
            return Ok(JournalFile {
                path: None,
                data: Journal::default(),
            });
        };
        let data = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| Error::Journal {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Journal::default(),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(JournalFile {
            path: Some(path.to_path_buf()),
            data,
        })
    }

    /// Writes the journal atomically.
    pub(crate) fn save(&self) -> Result<(), Error> {
        let Some(path) = &self.path else { return Ok(()) };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = path.with_extension("json.tmp");
        // Serializing plain maps of strings and integers cannot fail.
        let bytes = serde_json::to_vec_pretty(&self.data).expect("journal serializes");
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    }
}

/// Modification time in nanoseconds since the epoch (0 when the platform has none).
pub(crate) fn mtime_ns(md: &std::fs::Metadata) -> u128 {
    md.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
