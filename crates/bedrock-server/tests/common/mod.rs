//! Helpers shared by the integration tests: `bedrock_server::testing` (a server in a temporary directory, SDK clients,
//! imports), tiny generated models, and raw signed HTTP requests.
#![allow(dead_code, unreachable_pub, unused_imports)]

use std::path::Path;
use std::time::Duration;

use aws_sdk_bedrock::operation::get_model_import_job::GetModelImportJobOutput;
use bedrock_server::RunningServer;
pub use bedrock_server::testing::{
    TestServer, bedrock, bedrock_client, create_import_job, run_import_job, run_import_job_tagged, runtime, s3,
    s3_client, sdk_credentials, server_credentials, start_in, upload_dir, wait_job,
};

/// A server in a temporary directory; `warm` turns cold starts off.
pub async fn start(warm: bool) -> TestServer {
    TestServer::start(warm).await
}

/// Creates a bucket, uploads a tiny model of `family` and runs an import job; returns (job ARN, final job status).
pub async fn import(
    server: &RunningServer,
    family: test_support::Family,
    bucket: &str,
    name: &str,
) -> (String, GetModelImportJobOutput) {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), family).expect("tiny model");
    run_import_job(server, model.path(), bucket, name).await
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
    let req = signed(
        &server.endpoint_url(),
        server.region(),
        method,
        path_and_query,
        headers,
        body,
        sign,
    );
    let host = server.endpoint_url().trim_start_matches("http://").to_string();
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

/// The request's bytes on the wire (HTTP/1.1, with a Content-Length), for tests that send part of them.
pub fn wire_bytes(req: &http::Request<Vec<u8>>) -> Vec<u8> {
    let mut out = format!(
        "{} {} HTTP/1.1\r\n",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/")
    )
    .into_bytes();
    for (k, v) in req.headers() {
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !req.headers().contains_key("content-length") {
        out.extend_from_slice(format!("content-length: {}\r\n", req.body().len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(req.body());
    out
}

/// A request to `endpoint` (optionally SigV4-signed for `service` at `time`), not sent.
pub fn signed(
    endpoint: &str,
    region: &str,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    sign: Option<Sign>,
) -> http::Request<Vec<u8>> {
    let url = format!("{endpoint}{path_and_query}");
    let mut req = http::Request::builder().method(method).uri(&url);
    let host = endpoint.trim_start_matches("http://").to_string();
    req = req.header("host", &host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut req = req.body(body.clone()).expect("request");
    if let Some(s) = sign {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
        let identity = sdk_credentials(&s.access_key, &s.secret_key).into();
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
            .region(region)
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
        let signable_body = match s.payload {
            Some(p) => SignableBody::Precomputed(p.to_string()),
            None => SignableBody::Bytes(&body),
        };
        let signable = SignableRequest::new(
            method,
            url.clone(),
            hdrs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            signable_body,
        )
        .expect("signable");
        let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
        instructions.apply_to_request_http1x(&mut req);
    }
    req
}

pub struct Sign {
    pub access_key: String,
    pub secret_key: String,
    pub service: &'static str,
    pub time: std::time::SystemTime,
    pub presigned: bool,
    /// The payload hash to sign instead of the body's SHA-256 (e.g. `STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
    pub payload: Option<&'static str>,
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
            payload: None,
        }
    }
}
