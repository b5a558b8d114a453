//! From a checked model folder (or a Hugging Face repo id, downloaded into the hub cache) to an imported, registered Bedrock model: upload planning and S3 multipart upload
//! (parallel, bounded memory, sync semantics, resume, full-object CRC32C), the Custom Model Import job (idempotent
//! create, polling with backoff), staged template repair and registration in the model registry.
//!
//! The library takes built SDK clients and plain settings; it never reads the environment or draws progress bars
//! (progress is a [`Progress`] callback).

mod bucket;
mod checksum;
mod error;
mod hub;
mod job;
mod journal;
mod pipeline;
mod progress;
mod register;
mod stage;
mod summary;
mod upload;

pub use bucket::ensure_bucket;
pub use checksum::crc32c_base64;
pub use error::{BoxError, Error};
pub use hub::{DEFAULT_ENDPOINT, Downloaded, HubSettings, HubSource, download};
pub use job::{
    ImportedModel, JobInfo, JobRequest, JobStatus, PollSettings, client_request_token, create_job, get_imported_model,
    get_job, job_name_for, list_jobs, validate_model_name, validate_role_arn, wait_for_job,
};
pub use pipeline::{
    ImportSettings, Imported, Outcome, Pending, StateDirs, Target, import, preflight, register_completed, warm,
};
pub use progress::{Event, Progress};
pub use register::{Registration, provider_for, register};
pub use stage::{Repair, needs_repair, repair};
pub use summary::{ManifestEntry, UploadSummary};
pub use upload::{CRC_METADATA_KEY, PlannedFile, Retry, UploadPlan, UploadSettings, Uploader};

#[cfg(test)]
mod tests;
