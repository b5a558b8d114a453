//! What an upload did: its objects with their sizes and checksums, and the content digest that names the import job.

use std::time::Duration;

use sha2::Digest as _;

/// One uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Its key.
    pub key: String,
    /// Its size.
    pub size: u64,
    /// Its CRC32C (base64).
    pub crc32c: String,
}

/// What an upload did.
#[derive(Debug, Clone)]
pub struct UploadSummary {
    /// Files in the plan.
    pub files: usize,
    /// Files already present (same size and checksum), not sent.
    pub files_skipped: usize,
    /// Total size of the plan.
    pub bytes_total: u64,
    /// Bytes sent in this run.
    pub bytes_sent: u64,
    /// Bytes of skipped files.
    pub bytes_skipped: u64,
    /// Bytes covered by parts of interrupted uploads, not sent again.
    pub bytes_resumed: u64,
    /// Requests carrying data (`PutObject` + `UploadPart`) in this run.
    pub parts_sent: usize,
    /// Parts reused from interrupted uploads.
    pub parts_resumed: usize,
    /// Wall time, checksumming included.
    pub elapsed: Duration,
    /// Every object with its size and checksum, sorted by key.
    pub manifest: Vec<ManifestEntry>,
}

impl UploadSummary {
    /// SHA-256 (hex) of the manifest: identifies the uploaded content.
    pub fn digest(&self) -> String {
        let mut h = sha2::Sha256::new();
        for e in &self.manifest {
            h.update(format!("{}\t{}\t{}\n", e.key, e.size, e.crc32c).as_bytes());
        }
        hex::encode(h.finalize())
    }
}
