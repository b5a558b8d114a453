//! The Custom Model Import job: name and ARN checks, `CreateModelImportJob` with an idempotency token, polling with
//! backoff until `Completed` or `Failed`, job listing, and the imported model's details.

use std::time::{Duration, Instant, SystemTime};

use aws_sdk_bedrock::Client;
use aws_sdk_bedrock::types::{ModelDataSource, ModelImportJobStatus, S3DataSource, Tag};
use sha2::Digest;

use crate::Error;
use crate::progress::{Event, Progress};

/// Checks a role ARN against the form the API accepts: `arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+`, at most 2048
/// characters (`bedrock_wire::control`'s pattern).
pub fn validate_role_arn(arn: &str) -> Result<(), Error> {
    if bedrock_wire::control::valid_role_arn(arn) {
        Ok(())
    } else {
        Err(Error::InvalidRoleArn { arn: arn.to_string() })
    }
}

/// Checks an imported-model name: 1–63 characters of `([0-9a-zA-Z][_-]?)+` (letters and digits, single `_` or `-`
/// between them).
pub fn validate_model_name(name: &str) -> Result<(), Error> {
    if bedrock_wire::control::valid_model_name(name) {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "model name",
            name: name.to_string(),
            expected: "1-63 letters and digits, optionally separated by single '-' or '_'",
        })
    }
}

/// A job name derived from the model name and the uploaded content (`[a-zA-Z0-9](-*[a-zA-Z0-9+\-.])*`, ≤ 63).
pub fn job_name_for(model_name: &str, content_digest: &str) -> String {
    let base: String = model_name
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .take(50)
        .collect();
    let base = base.trim_end_matches('-');
    let short: String = content_digest
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect();
    format!("{base}-{short}")
}

/// A `clientRequestToken` that is the same for the same model name, location and content, so a re-run after a
/// crash gets the job it already created instead of a second one. `attempt` distinguishes deliberate retries.
pub fn client_request_token(model_name: &str, s3_uri: &str, content_digest: &str, attempt: u32) -> String {
    let mut h = sha2::Sha256::new();
    h.update(format!("{model_name}\n{s3_uri}\n{content_digest}\n{attempt}").as_bytes());
    format!("cmi-{}", &hex::encode(h.finalize())[..40])
}

/// What to create.
#[derive(Debug, Clone)]
pub struct JobRequest {
    /// Job name.
    pub job_name: String,
    /// Name of the imported model.
    pub model_name: String,
    /// The role Bedrock assumes to read the bucket (required by AWS, optional for a local Bedrock).
    pub role_arn: Option<String>,
    /// `s3://bucket/prefix/`.
    pub s3_uri: String,
    /// Idempotency token.
    pub client_request_token: Option<String>,
    /// Tags for the imported model.
    pub model_tags: Vec<(String, String)>,
}

/// Status of an import job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobStatus {
    /// Still running.
    InProgress,
    /// Done; the model exists.
    Completed,
    /// Failed; see `failure_message`.
    Failed,
    /// A value this client does not know.
    Other(String),
}

impl JobStatus {
    fn from_sdk(s: Option<&ModelImportJobStatus>) -> JobStatus {
        match s {
            Some(ModelImportJobStatus::InProgress) => JobStatus::InProgress,
            Some(ModelImportJobStatus::Completed) => JobStatus::Completed,
            Some(ModelImportJobStatus::Failed) => JobStatus::Failed,
            Some(other) => JobStatus::Other(other.as_str().to_string()),
            None => JobStatus::Other("unknown".to_string()),
        }
    }

    /// The API's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Other(s) => s,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An import job as the API describes it.
#[derive(Debug, Clone)]
pub struct JobInfo {
    /// Job ARN.
    pub job_arn: String,
    /// Job name.
    pub job_name: Option<String>,
    /// Imported model name.
    pub model_name: Option<String>,
    /// Imported model ARN (once completed).
    pub model_arn: Option<String>,
    /// Status.
    pub status: JobStatus,
    /// Why it failed.
    pub failure_message: Option<String>,
    /// When it was created.
    pub creation_time: Option<SystemTime>,
    /// When it ended.
    pub end_time: Option<SystemTime>,
    /// Where it read the model from.
    pub s3_uri: Option<String>,
}

fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(*t).ok())
}

/// Creates the job; returns its ARN.
#[tracing::instrument(skip_all, fields(job_name = %req.job_name, model_name = %req.model_name))]
pub async fn create_job(client: &Client, req: &JobRequest) -> Result<String, Error> {
    validate_model_name(&req.model_name)?;
    if let Some(arn) = &req.role_arn {
        validate_role_arn(arn)?;
    }
    let source = ModelDataSource::S3DataSource(
        S3DataSource::builder()
            .s3_uri(&req.s3_uri)
            .build()
            .map_err(|e| Error::build("CreateModelImportJob", e))?,
    );
    let mut call = client
        .create_model_import_job()
        .job_name(&req.job_name)
        .imported_model_name(&req.model_name)
        .set_role_arn(req.role_arn.clone())
        .model_data_source(source)
        .set_client_request_token(req.client_request_token.clone());
    for (k, v) in &req.model_tags {
        let tag = Tag::builder()
            .key(k)
            .value(v)
            .build()
            .map_err(|e| Error::build("CreateModelImportJob", e))?;
        call = call.imported_model_tags(tag);
    }
    let out = call
        .send()
        .await
        .map_err(|e| Error::bedrock("CreateModelImportJob", Some(&req.job_name), e))?;
    let arn = out.job_arn().to_string();
    tracing::info!(job_arn = %arn, "import job created");
    Ok(arn)
}

/// The job's current state (`id` = ARN or name).
pub async fn get_job(client: &Client, id: &str) -> Result<JobInfo, Error> {
    let out = client
        .get_model_import_job()
        .job_identifier(id)
        .send()
        .await
        .map_err(|e| Error::bedrock("GetModelImportJob", Some(id), e))?;
    let s3_uri = match out.model_data_source() {
        Some(ModelDataSource::S3DataSource(s)) => Some(s.s3_uri().to_string()),
        _ => None,
    };
    Ok(JobInfo {
        job_arn: out.job_arn().map(str::to_string).unwrap_or_else(|| id.to_string()),
        job_name: out.job_name().map(str::to_string),
        model_name: out.imported_model_name().map(str::to_string),
        model_arn: out.imported_model_arn().map(str::to_string),
        status: JobStatus::from_sdk(out.status()),
        failure_message: out.failure_message().map(str::to_string),
        creation_time: time(out.creation_time()),
        end_time: time(out.end_time()),
        s3_uri,
    })
}

/// Import jobs, newest first (all pages, up to `limit`).
pub async fn list_jobs(client: &Client, limit: usize) -> Result<Vec<JobInfo>, Error> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_model_import_jobs()
            .sort_by(aws_sdk_bedrock::types::SortJobsBy::CreationTime)
            .sort_order(aws_sdk_bedrock::types::SortOrder::Descending)
            .max_results(100)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| Error::bedrock("ListModelImportJobs", None, e))?;
        for s in page.model_import_job_summaries() {
            out.push(JobInfo {
                job_arn: s.job_arn().to_string(),
                job_name: Some(s.job_name().to_string()),
                model_name: s.imported_model_name().map(str::to_string),
                model_arn: s.imported_model_arn().map(str::to_string),
                status: JobStatus::from_sdk(Some(s.status())),
                failure_message: None,
                creation_time: time(Some(s.creation_time())),
                end_time: time(s.end_time()),
                s3_uri: None,
            });
        }
        token = page.next_token().map(str::to_string);
        if token.is_none() || out.len() >= limit {
            break;
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// How to poll.
#[derive(Debug, Clone)]
pub struct PollSettings {
    /// First wait.
    pub initial: Duration,
    /// Longest wait between polls.
    pub max: Duration,
    /// Growth of the wait after each poll.
    pub factor: f64,
    /// Give up after this long (`None`: wait as long as it takes; imports of big models take hours).
    pub timeout: Option<Duration>,
}

impl Default for PollSettings {
    /// 2 s, growing by 1.5× up to 30 s, no timeout.
    fn default() -> Self {
        PollSettings {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(30),
            factor: 1.5,
            timeout: None,
        }
    }
}

/// Transient failures in a row that [`wait_for_job`] rides out (at up to 2 s apart).
const MAX_UNANSWERED_POLLS: u32 = 15;

/// Polls until the job completes (`Ok`) or fails (`Err(Error::JobFailed)` with the `failureMessage`).
#[tracing::instrument(skip_all, fields(job_arn = %job_arn))]
pub async fn wait_for_job(
    client: &Client,
    job_arn: &str,
    poll: &PollSettings,
    progress: &dyn Progress,
) -> Result<JobInfo, Error> {
    let started = Instant::now();
    let mut wait = poll.initial;
    // Polls that got no answer in a row: a server restarting (the local Bedrock killed and started again) is waited
    // out, a server gone for good is not.
    let mut unanswered = 0u32;
    loop {
        let info = match get_job(client, job_arn).await {
            Ok(info) => {
                unanswered = 0;
                info
            }
            Err(e) if e.is_transient() && unanswered < MAX_UNANSWERED_POLLS => {
                unanswered += 1;
                tracing::warn!(error = %e, attempt = unanswered, "polling the import job failed; trying again");
                tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let elapsed = info
            .creation_time
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_else(|| started.elapsed());
        progress.event(Event::Job {
            job_arn: job_arn.to_string(),
            status: info.status.to_string(),
            elapsed,
        });
        tracing::debug!(status = %info.status, "import job status");
        match info.status {
            JobStatus::Completed => return Ok(info),
            JobStatus::Failed => {
                return Err(Error::JobFailed {
                    job_arn: job_arn.to_string(),
                    message: info
                        .failure_message
                        .clone()
                        .unwrap_or_else(|| "no failure message".to_string()),
                });
            }
            _ => {}
        }
        if let Some(limit) = poll.timeout
            && started.elapsed() + wait > limit
        {
            return Err(Error::JobTimeout {
                job_arn: job_arn.to_string(),
                status: info.status.to_string(),
                waited_secs: started.elapsed().as_secs(),
            });
        }
        tokio::time::sleep(wait).await;
        wait = wait.mul_f64(poll.factor).min(poll.max);
    }
}

/// What Bedrock says about an imported model.
#[derive(Debug, Clone)]
pub struct ImportedModel {
    /// Its ARN.
    pub model_arn: String,
    /// Its name.
    pub model_name: Option<String>,
    /// Converse works (`instructSupported`).
    pub instruct_supported: Option<bool>,
    /// `modelArchitecture`.
    pub architecture: Option<String>,
}

/// `GetImportedModel` (`id` = ARN or name).
pub async fn get_imported_model(client: &Client, id: &str) -> Result<ImportedModel, Error> {
    let out = client
        .get_imported_model()
        .model_identifier(id)
        .send()
        .await
        .map_err(|e| Error::bedrock("GetImportedModel", Some(id), e))?;
    Ok(ImportedModel {
        model_arn: out.model_arn().map(str::to_string).unwrap_or_else(|| id.to_string()),
        model_name: out.model_name().map(str::to_string),
        instruct_supported: out.instruct_supported(),
        architecture: out.model_architecture().map(str::to_string),
    })
}
