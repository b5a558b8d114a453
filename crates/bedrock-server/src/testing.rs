//! Test helpers (cargo feature `testing`): a local Bedrock in a temporary directory, real AWS SDK clients pointed at
//! it, and the upload + `CreateModelImportJob` flow for a model folder.
//!
//! Every helper panics with a message naming what failed instead of returning an error: they are for tests, where the
//! panic is the failure report. Normal builds do not compile this module.

use std::path::Path;
use std::time::Duration;

use aws_sdk_bedrock::operation::get_model_import_job::GetModelImportJobOutput;
use aws_sdk_bedrock::types::{ModelDataSource, ModelImportJobStatus, S3DataSource};

use crate::{RunningServer, ServerConfig};

/// A server in its own temporary data directory (both dropped together).
#[derive(Debug)]
pub struct TestServer {
    /// The running server.
    pub server: RunningServer,
    /// Its data directory.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with default settings; `warm` turns cold starts off.
    pub async fn start(warm: bool) -> TestServer {
        Self::start_with(|c| c.warm = warm).await
    }

    /// Starts a server after `configure` has adjusted the default configuration.
    pub async fn start_with(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let server = start_in(dir.path(), configure).await;
        TestServer { server, dir }
    }
}

impl std::ops::Deref for TestServer {
    type Target = RunningServer;
    fn deref(&self) -> &RunningServer {
        &self.server
    }
}

/// Starts a server on `data_dir` (for restart tests) after `configure` has adjusted the default configuration.
pub async fn start_in(data_dir: &Path, configure: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut cfg = ServerConfig::new(data_dir.to_path_buf());
    configure(&mut cfg);
    crate::start(cfg).await.expect("local Bedrock starts")
}

/// SDK credentials for an access key pair.
pub fn sdk_credentials(access_key_id: &str, secret_access_key: &str) -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(access_key_id, secret_access_key, None, None, "cmi-testing")
}

/// The credentials `server` accepts, as SDK credentials.
pub fn server_credentials(server: &RunningServer) -> aws_credential_types::Credentials {
    let c = server.credentials();
    sdk_credentials(&c.access_key_id, &c.secret_access_key)
}

/// An S3 client (path-style) for `endpoint_url`.
pub fn s3_client(endpoint_url: &str, region: &str, creds: aws_credential_types::Credentials) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(region.to_string()))
        .endpoint_url(endpoint_url)
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// A Bedrock control-plane client for `endpoint_url`.
pub fn bedrock_client(
    endpoint_url: &str,
    region: &str,
    creds: aws_credential_types::Credentials,
) -> aws_sdk_bedrock::Client {
    let conf = aws_sdk_bedrock::Config::builder()
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrock::config::Region::new(region.to_string()))
        .endpoint_url(endpoint_url)
        .credentials_provider(creds)
        .build();
    aws_sdk_bedrock::Client::from_conf(conf)
}

/// A Bedrock runtime client for `endpoint_url` making up to `max_attempts` attempts per call (200–500 ms backoff).
pub fn runtime_client(
    endpoint_url: &str,
    region: &str,
    creds: aws_credential_types::Credentials,
    max_attempts: u32,
) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(region.to_string()))
        .endpoint_url(endpoint_url)
        .credentials_provider(creds)
        .retry_config(
            aws_sdk_bedrockruntime::config::retry::RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_millis(500)),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// An S3 client for `server`, with the credentials it accepts.
pub fn s3(server: &RunningServer) -> aws_sdk_s3::Client {
    s3_client(&server.endpoint_url(), server.region(), server_credentials(server))
}

/// A Bedrock control-plane client for `server`, with the credentials it accepts.
pub fn bedrock(server: &RunningServer) -> aws_sdk_bedrock::Client {
    bedrock_client(&server.endpoint_url(), server.region(), server_credentials(server))
}

/// A Bedrock runtime client for `server` making up to `max_attempts` attempts per call.
pub fn runtime(server: &RunningServer, max_attempts: u32) -> aws_sdk_bedrockruntime::Client {
    runtime_client(
        &server.endpoint_url(),
        server.region(),
        server_credentials(server),
        max_attempts,
    )
}

/// Sets `max_position_embeddings` in `dir/config.json` (tiny test models declare a short context; their rotary
/// positions run at any length).
pub fn set_context_length(dir: &Path, tokens: u64) {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    cfg["max_position_embeddings"] = serde_json::json!(tokens);
    let text = serde_json::to_vec_pretty(&cfg).unwrap_or_else(|e| panic!("serialising {}: {e}", path.display()));
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Uploads every file of `dir` (not recursive) to `s3://bucket/prefix/`.
pub async fn upload_dir(s3: &aws_sdk_s3::Client, dir: &Path, bucket: &str, prefix: &str) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    for e in entries {
        let path = e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let body = aws_sdk_s3::primitives::ByteStream::from_path(&path)
            .await
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        s3.put_object()
            .bucket(bucket)
            .key(format!("{prefix}/{name}"))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutObject s3://{bucket}/{prefix}/{name}: {e:?}"));
    }
}

/// Polls a job until it leaves `InProgress` (at most 60 s).
pub async fn wait_job(br: &aws_sdk_bedrock::Client, job_arn: &str) -> GetModelImportJobOutput {
    for _ in 0..600 {
        let j = br
            .get_model_import_job()
            .job_identifier(job_arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetModelImportJob {job_arn}: {e:?}"));
        if j.status() != Some(&ModelImportJobStatus::InProgress) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("import job {job_arn} did not finish in 60 s");
}

/// Creates `bucket` if needed, uploads `dir` to `s3://bucket/name/` and runs an import job named `NAME-job` for model
/// `name`; returns the job ARN and the job as it ended (completed or failed).
pub async fn run_import_job(
    server: &RunningServer,
    dir: &Path,
    bucket: &str,
    name: &str,
) -> (String, GetModelImportJobOutput) {
    run_import_job_tagged(server, dir, bucket, name, &[]).await
}

/// [`run_import_job`] with `importedModelTags` (`cmi:quantize`, `cmi:stream-tools`, …).
pub async fn run_import_job_tagged(
    server: &RunningServer,
    dir: &Path,
    bucket: &str,
    name: &str,
    tags: &[(&str, &str)],
) -> (String, GetModelImportJobOutput) {
    let job_arn = create_import_job(server, dir, bucket, name, tags)
        .await
        .unwrap_or_else(|e| panic!("CreateModelImportJob {name}: {e:?}"));
    let job = wait_job(&bedrock(server), &job_arn).await;
    (job_arn, job)
}

/// Uploads `dir` and sends CreateModelImportJob with `tags`; returns the job ARN or the service's error.
pub async fn create_import_job(
    server: &RunningServer,
    dir: &Path,
    bucket: &str,
    name: &str,
    tags: &[(&str, &str)],
) -> Result<
    String,
    aws_sdk_bedrock::error::SdkError<aws_sdk_bedrock::operation::create_model_import_job::CreateModelImportJobError>,
> {
    let s3 = s3(server);
    // An existing bucket is fine (several models per bucket).
    let _ = s3.create_bucket().bucket(bucket).send().await;
    upload_dir(&s3, dir, bucket, name).await;
    let br = bedrock(server);
    let source = S3DataSource::builder()
        .s3_uri(format!("s3://{bucket}/{name}/"))
        .build()
        .expect("an S3 URI is the only required member");
    let mut call = br
        .create_model_import_job()
        .job_name(format!("{name}-job"))
        .imported_model_name(name)
        .role_arn("arn:aws:iam::123456789012:role/ImportRole")
        .model_data_source(ModelDataSource::S3DataSource(source));
    for (k, v) in tags {
        call = call.imported_model_tags(
            aws_sdk_bedrock::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .expect("key and value are set"),
        );
    }
    Ok(call.send().await?.job_arn)
}

/// A model imported by [`import_dir`].
#[derive(Debug, Clone)]
pub struct ImportedModel {
    /// The imported model's name.
    pub name: String,
    /// Its ARN (`arn:aws:bedrock:REGION:ACCOUNT:imported-model/ID`).
    pub model_arn: String,
    /// The import job's ARN.
    pub job_arn: String,
    /// `instructSupported` as GetImportedModel reports it.
    pub instruct_supported: Option<bool>,
}

/// Uploads `dir` to `s3://bucket/name/` and imports it as `name`; panics unless the job completes.
pub async fn import_dir(server: &RunningServer, dir: &Path, bucket: &str, name: &str) -> ImportedModel {
    let (job_arn, job) = run_import_job(server, dir, bucket, name).await;
    assert_eq!(
        job.status(),
        Some(&ModelImportJobStatus::Completed),
        "import of {name} failed: {:?}",
        job.failure_message()
    );
    let m = bedrock(server)
        .get_imported_model()
        .model_identifier(name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetImportedModel {name}: {e:?}"));
    ImportedModel {
        name: name.to_string(),
        model_arn: m.model_arn().unwrap_or_default().to_string(),
        job_arn,
        instruct_supported: m.instruct_supported(),
    }
}
