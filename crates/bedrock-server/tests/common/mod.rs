//! Helpers shared by the integration tests: a server in a temporary directory and SDK clients pointed at it.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::Duration;

use aws_credential_types::Credentials;
use bedrock_server::{RunningServer, ServerConfig};

pub struct Local {
    pub server: RunningServer,
    pub dir: tempfile::TempDir,
}

pub async fn start(warm: bool) -> Local {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start_in(dir.path(), warm).await;
    Local { server, dir }
}

pub async fn start_in(dir: &Path, warm: bool) -> RunningServer {
    let mut cfg = ServerConfig::new(dir.to_path_buf());
    cfg.warm = warm;
    bedrock_server::start(cfg).await.expect("server starts")
}

pub fn sdk_creds(ak: &str, sk: &str) -> Credentials {
    Credentials::new(ak, sk, None, None, "test")
}

pub fn s3(server: &RunningServer) -> aws_sdk_s3::Client {
    let c = server.credentials();
    s3_with(server, sdk_creds(&c.access_key_id, &c.secret_access_key))
}

pub fn s3_with(server: &RunningServer, creds: Credentials) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(server.region().to_string()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(creds)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn bedrock(server: &RunningServer) -> aws_sdk_bedrock::Client {
    let c = server.credentials();
    bedrock_with(server, sdk_creds(&c.access_key_id, &c.secret_access_key))
}

pub fn bedrock_with(server: &RunningServer, creds: Credentials) -> aws_sdk_bedrock::Client {
    let conf = aws_sdk_bedrock::Config::builder()
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrock::config::Region::new(server.region().to_string()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(creds)
        .build();
    aws_sdk_bedrock::Client::from_conf(conf)
}

pub fn runtime(server: &RunningServer, max_attempts: u32) -> aws_sdk_bedrockruntime::Client {
    let c = server.credentials();
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(server.region().to_string()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(sdk_creds(&c.access_key_id, &c.secret_access_key))
        .retry_config(
            aws_sdk_bedrockruntime::config::retry::RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_millis(500)),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// Uploads every file of `dir` to `s3://bucket/prefix/`.
pub async fn upload_dir(s3: &aws_sdk_s3::Client, dir: &Path, bucket: &str, prefix: &str) {
    for e in std::fs::read_dir(dir).expect("read model dir") {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let body = aws_sdk_s3::primitives::ByteStream::from_path(e.path())
            .await
            .expect("bytestream");
        s3.put_object()
            .bucket(bucket)
            .key(format!("{prefix}/{name}"))
            .body(body)
            .send()
            .await
            .expect("put_object");
    }
}

/// Creates a bucket, uploads a tiny model and runs an import job; returns (job ARN, final job status).
pub async fn import(
    server: &RunningServer,
    family: test_support::Family,
    bucket: &str,
    name: &str,
) -> (
    String,
    aws_sdk_bedrock::operation::get_model_import_job::GetModelImportJobOutput,
) {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), family).expect("tiny model");
    import_dir(server, model.path(), bucket, name).await
}

pub async fn import_dir(
    server: &RunningServer,
    dir: &Path,
    bucket: &str,
    name: &str,
) -> (
    String,
    aws_sdk_bedrock::operation::get_model_import_job::GetModelImportJobOutput,
) {
    let s3 = s3(server);
    let _ = s3.create_bucket().bucket(bucket).send().await;
    upload_dir(&s3, dir, bucket, name).await;
    let br = bedrock(server);
    let arn = br
        .create_model_import_job()
        .job_name(format!("{name}-job"))
        .imported_model_name(name)
        .role_arn("arn:aws:iam::123456789012:role/ImportRole")
        .model_data_source(aws_sdk_bedrock::types::ModelDataSource::S3DataSource(
            aws_sdk_bedrock::types::S3DataSource::builder()
                .s3_uri(format!("s3://{bucket}/{name}/"))
                .build()
                .expect("s3 source"),
        ))
        .send()
        .await
        .expect("create job")
        .job_arn;
    let job = wait_job(&br, &arn).await;
    (arn, job)
}

pub async fn wait_job(
    br: &aws_sdk_bedrock::Client,
    arn: &str,
) -> aws_sdk_bedrock::operation::get_model_import_job::GetModelImportJobOutput {
    for _ in 0..600 {
        let j = br
            .get_model_import_job()
            .job_identifier(arn)
            .send()
            .await
            .expect("get job");
        if j.status() != Some(&aws_sdk_bedrock::types::ModelImportJobStatus::InProgress) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("job {arn} did not finish in 60 s");
}

/// A raw HTTP/1.1 request (optionally SigV4-signed for `service` at `time`); returns status, headers and body.
pub async fn raw(
    server: &RunningServer,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    sign: Option<Sign>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let url = format!("{}{path_and_query}", server.endpoint_url());
    let mut req = http::Request::builder().method(method).uri(&url);
    let host = server.endpoint_url().trim_start_matches("http://").to_string();
    req = req.header("host", &host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.clone()).expect("request");
    if let Some(s) = sign {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
        let identity = sdk_creds(&s.access_key, &s.secret_key).into();
        let mut settings = SigningSettings::default();
        if s.service == "s3" {
            settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
            settings.percent_encoding_mode = aws_sigv4::http_request::PercentEncodingMode::Single;
            settings.uri_path_normalization_mode = aws_sigv4::http_request::UriPathNormalizationMode::Disabled;
        }
        if s.presigned {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(server.region())
            .name(s.service)
            .time(s.time)
            .settings(settings)
            .build()
            .expect("signing params")
            .into();
        let hdrs: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().expect("ascii header").to_string()))
            .collect();
        let signable = SignableRequest::new(
            method,
            url.clone(),
            hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(&body),
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut req);
    }
    let stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, http_body_util::Full<bytes::Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("handshake");
    tokio::spawn(conn);
    let req = req.map(|b| http_body_util::Full::new(bytes::Bytes::from(b)));
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes().to_vec();
    (status, headers, body)
}

pub struct Sign {
    pub access_key: String,
    pub secret_key: String,
    pub service: &'static str,
    pub time: std::time::SystemTime,
    pub presigned: bool,
}

impl Sign {
    pub fn good(server: &RunningServer, service: &'static str) -> Sign {
        let c = server.credentials();
        Sign {
            access_key: c.access_key_id.clone(),
            secret_key: c.secret_access_key.clone(),
            service,
            time: std::time::SystemTime::now(),
            presigned: false,
        }
    }
}
