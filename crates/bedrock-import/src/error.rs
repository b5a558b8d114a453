//! The crate's one error type.

use std::path::PathBuf;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::RequestId;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A boxed SDK error (kept as the source so `Caused by:` chains show the service's own message).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while uploading, importing or registering a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An S3 call failed.
    #[error("s3 {op} on s3://{bucket}/{key}: {message}")]
    S3 {
        /// The operation (`PutObject`, `UploadPart`, …).
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The key (empty for bucket operations).
        key: String,
        /// The service's message, with the error code and request id when there is one.
        message: String,
        /// S3 answered `NoSuchUpload`: the multipart upload is gone (completed, aborted or expired).
        no_such_upload: bool,
        /// Whether trying again may succeed: the request never got an answer (connection refused or reset, timeout)
        /// or the service said it failed on its side (5xx, `SlowDown`, `RequestTimeout`).
        transient: bool,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The bucket does not exist (and `create_bucket` was not asked for).
    #[error("bucket `{bucket}` does not exist")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
    },
    /// The bucket lives in another region than the import job.
    #[error(
        "bucket `{bucket}` is in {bucket_region}, but the import runs in {region}: Custom Model Import reads from a bucket in its own region"
    )]
    BucketInOtherRegion {
        /// The bucket.
        bucket: String,
        /// Where it is.
        bucket_region: String,
        /// Where the import runs.
        region: String,
    },
    /// The uploaded object's checksum differs from the local file's.
    #[error("checksum mismatch for s3://{bucket}/{key}: local CRC32C {local}, stored {remote}")]
    ChecksumMismatch {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Base64 CRC32C of the local file.
        local: String,
        /// What S3 reports.
        remote: String,
    },
    /// The local file changed while it was being uploaded.
    #[error("{path} changed during the upload (CRC32C was {before}, now {after})")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Checksum when planned.
        before: String,
        /// Checksum of the bytes sent.
        after: String,
    },
    /// A file is too big for a multipart upload with the configured part size.
    #[error("{path}: {size} bytes cannot be uploaded in at most 10000 parts of at most 5 GiB")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The upload journal (resume state) is unreadable.
    #[error("upload journal {path}: {source}")]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A role ARN of the wrong form.
    #[error("invalid role ARN `{arn}`: expected arn:aws:iam::<12-digit account>:role/<name>")]
    InvalidRoleArn {
        /// What was given.
        arn: String,
    },
    /// Real AWS needs a service role.
    #[error("a role ARN is required to import into AWS (the role Bedrock assumes to read the bucket)")]
    RoleArnRequired,
    /// A model or job name Bedrock would reject.
    #[error("invalid {what} `{name}`: {expected}")]
    InvalidName {
        /// `model name` or `job name`.
        what: &'static str,
        /// What was given.
        name: String,
        /// The rule.
        expected: &'static str,
    },
    /// A Bedrock control-plane call failed.
    #[error("bedrock {op}{}: {message}", id.as_ref().map(|i| format!(" {i}")).unwrap_or_default())]
    Bedrock {
        /// The operation (`CreateModelImportJob`, …).
        op: &'static str,
        /// The job or model the call was about.
        id: Option<String>,
        /// The service's message, with the error code and request id when there is one.
        message: String,
        /// Whether trying again may succeed (as for [`Error::S3`]).
        transient: bool,
        /// The SDK error.
        #[source]
        source: BoxError,
    },
    /// The import job ended in `Failed`.
    #[error("import job {job_arn} failed: {message}")]
    JobFailed {
        /// The job.
        job_arn: String,
        /// Its `failureMessage`.
        message: String,
    },
    /// The job did not finish within the time allowed.
    #[error("import job {job_arn} still {status} after {waited_secs} s")]
    JobTimeout {
        /// The job.
        job_arn: String,
        /// Its last status.
        status: String,
        /// How long we waited.
        waited_secs: u64,
    },
    /// An import into AWS names no bucket (only the local Bedrock has a default one).
    #[error("no bucket given: an import into AWS uploads to a bucket of yours in the import's region")]
    BucketRequired,
    /// The model still answered `ModelNotReadyException` when warming gave up.
    #[error("{model_arn} still not ready after {waited_secs} s")]
    NotReady {
        /// The model.
        model_arn: String,
        /// How long we called it.
        waited_secs: u64,
    },
    /// A response lacked a member the API documents as present.
    #[error("bedrock {op}: the response has no `{member}`")]
    MissingMember {
        /// The operation.
        op: &'static str,
        /// The member.
        member: &'static str,
    },
    /// The model folder failed preflight.
    #[error("{dir}: the model folder has {count} error(s); run `cmi import check` for the list")]
    Preflight {
        /// The folder.
        dir: PathBuf,
        /// How many errors.
        count: usize,
    },
    /// Reading the model folder failed.
    #[error(transparent)]
    ModelFolder(#[from] model_folder::Error),
    /// Repairing the chat template failed.
    #[error("repairing the chat template in {dir}: {source}")]
    Template {
        /// The (staged) folder.
        dir: PathBuf,
        /// The template error.
        #[source]
        source: chat_template::Error,
    },
    /// Writing the model registry failed.
    #[error("model registry: {0}")]
    Registry(#[source] model_registry::Error),
    /// Downloading from the Hugging Face hub failed.
    #[error("hugging face `{repo}`{}: {message}", file.as_ref().map(|f| format!(" file `{f}`")).unwrap_or_default())]
    Hub {
        /// The repo id.
        repo: String,
        /// The file, when one failed.
        file: Option<String>,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn s3<E>(op: &'static str, bucket: &str, key: &str, err: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        let no_such_upload = err.code() == Some("NoSuchUpload");
        let transient = sdk_transient(&err);
        Error::S3 {
            op,
            bucket: bucket.to_string(),
            key: key.to_string(),
            message: sdk_message(&err),
            no_such_upload,
            transient,
            source: Box::new(err),
        }
    }

    /// True for an S3 or Bedrock failure that trying again may cure (see [`Error::S3`]'s `transient`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::S3 { transient: true, .. } | Error::Bedrock { transient: true, .. }
        )
    }

    /// True when S3 answered that the multipart upload does not exist (completed, aborted or expired): the one
    /// answer that proves an interrupted upload cannot be continued.
    pub fn is_no_such_upload(&self) -> bool {
        matches!(
            self,
            Error::S3 {
                no_such_upload: true,
                ..
            }
        )
    }

    pub(crate) fn bedrock<E>(op: &'static str, id: Option<&str>, err: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    {
        Error::Bedrock {
            op,
            id: id.map(str::to_string),
            message: sdk_message(&err),
            transient: sdk_transient(&err),
            source: Box::new(err),
        }
    }

    /// A builder error (a required member missing): no service metadata.
    pub(crate) fn build(op: &'static str, err: aws_smithy_types::error::operation::BuildError) -> Self {
        Error::Bedrock {
            op,
            id: None,
            message: err.to_string(),
            transient: false,
            source: Box::new(err),
        }
    }
}

/// Whether an SDK failure may pass when tried again: no answer came (connection refused or reset, a timeout, a
/// response that could not be read), or the service failed on its side (5xx, throttling).
fn sdk_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => true,
        SdkError::ServiceError(s) => {
            s.raw().status().is_server_error()
                || matches!(
                    s.err().code(),
                    Some(
                        "SlowDown"
                            | "RequestTimeout"
                            | "InternalError"
                            | "ServiceUnavailable"
                            | "Throttling"
                            | "ThrottlingException"
                    )
                )
        }
        _ => false,
    }
}

/// `Code: message (request id …)` for service errors; the error's own chain for transport and credential errors.
fn sdk_message<E>(err: &E) -> String
where
    E: std::error::Error + ProvideErrorMetadata + RequestId,
{
    let mut s = match (err.code(), err.message()) {
        (Some(code), Some(msg)) => format!("{code}: {msg}"),
        (Some(code), None) => code.to_string(),
        (None, Some(msg)) => msg.to_string(),
        (None, None) => {
            // Walk the sources: "dispatch failure: io error: connection refused", without Debug dumps.
            let mut parts = vec![err.to_string()];
            let mut cur = err.source();
            while let Some(c) = cur {
                let t = c.to_string();
                if !parts.contains(&t) {
                    parts.push(t);
                }
                cur = c.source();
            }
            parts.join(": ")
        }
    };
    if let Some(id) = err.request_id() {
        s.push_str(&format!(" (request id {id})"));
    }
    s
}
