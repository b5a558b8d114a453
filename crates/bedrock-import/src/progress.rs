//! Progress reporting as a callback: the library says what happened, the caller draws bars or prints lines.

use std::time::Duration;

/// Something the import did: its steps ([`crate::import`]), the upload's files and bytes, the job's polls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Checksumming local files before upload; `bytes` more were read.
    Hashed {
        /// Bytes read since the last event.
        bytes: u64,
    },
    /// The plan is known: what is already there and what will be sent.
    Planned {
        /// Files in the upload.
        files: usize,
        /// Their total size.
        total_bytes: u64,
        /// Bytes that will actually be sent (not already present, not resumed).
        to_send: u64,
    },
    /// An object is already in the bucket with the same size and checksum.
    Skipped {
        /// The S3 key.
        key: String,
        /// Its size.
        bytes: u64,
    },
    /// Upload of one file begins; `resumed_bytes` are covered by parts of an interrupted upload.
    FileStarted {
        /// The S3 key.
        key: String,
        /// The file size.
        bytes: u64,
        /// Bytes already uploaded by an earlier, interrupted run.
        resumed_bytes: u64,
    },
    /// `bytes` more were sent and acknowledged.
    Sent {
        /// The S3 key.
        key: String,
        /// Bytes in this request.
        bytes: u64,
    },
    /// One file is uploaded and verified.
    FileDone {
        /// The S3 key.
        key: String,
    },
    /// Download of one file from the Hugging Face hub begins.
    DownloadStarted {
        /// The file in the repository.
        file: String,
        /// Its size.
        bytes: u64,
    },
    /// `bytes` more of a hub file are on disk (for a resumed file, the first event counts what an earlier run left).
    Downloaded {
        /// The file in the repository.
        file: String,
        /// Bytes received since the last event.
        bytes: u64,
    },
    /// The preflight's report of the source folder.
    Checked {
        /// The report.
        report: Box<model_folder::Report>,
    },
    /// The chat template was repaired (or found to need no change: `repair.outcome.changed` is false).
    Repaired {
        /// What the repair did.
        repair: Box<crate::Repair>,
        /// In a staged copy (the user's folder is unchanged).
        staged: bool,
    },
    /// The template could not be repaired; the folder is imported as it is.
    RepairFailed {
        /// Why.
        message: String,
    },
    /// The upload is done.
    Uploaded {
        /// What it did.
        summary: Box<crate::UploadSummary>,
    },
    /// An earlier identical run's job had failed; a new one is created.
    EarlierJobFailed {
        /// The failed job.
        job_arn: String,
    },
    /// The import job exists (created now, or an identical earlier run's).
    JobCreated {
        /// The job.
        job_arn: String,
    },
    /// The model is in the registry.
    Registered {
        /// Its name.
        name: String,
        /// The registry file.
        registry_file: std::path::PathBuf,
    },
    /// The import job's status, after each poll.
    Job {
        /// The job ARN.
        job_arn: String,
        /// `InProgress`, `Completed` or `Failed`.
        status: String,
        /// Time since the job was created (as far as we know).
        elapsed: Duration,
    },
}

/// Receives [`Event`]s. Called from the uploading task; keep it quick.
pub trait Progress: Send + Sync {
    /// One event.
    fn event(&self, event: Event);
}

/// No progress output.
impl Progress for () {
    fn event(&self, _event: Event) {}
}

impl<F: Fn(Event) + Send + Sync> Progress for F {
    fn event(&self, event: Event) {
        self(event)
    }
}
