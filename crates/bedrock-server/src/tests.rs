//! Unit tests of the server internals: S3 key checks, SigV4 verification, credentials.

use std::time::{Duration, SystemTime};

use crate::Credentials;
use crate::s3::check_target;
use crate::sigv4::{AuthError, verify};

#[test]
fn s3_keys_cannot_leave_the_bucket() {
    assert_eq!(
        check_target("/b/a/c.txt", None),
        Ok(Some(("b".into(), "a/c.txt".into())))
    );
    assert_eq!(check_target("/b", None), Ok(None));
    assert!(check_target("/b/..%2F..%2Fx", None).is_err());
    assert!(check_target("/b/a/../../x", None).is_err());
    assert!(check_target("/b/%2Fetc%2Fpasswd", None).is_err());
    assert!(check_target("/b/nul%00", None).is_err());
    let bad_copy = http::HeaderValue::from_static("/b/../../credentials");
    assert!(check_target("/b/ok", Some(&bad_copy)).is_err());
}

fn creds() -> Credentials {
    Credentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "secret/key".into(),
    }
}

/// Signs a request with `aws-sigv4` (as the SDKs do) and returns its parts.
fn signed(
    method: &str,
    uri: &str,
    body: &[u8],
    time: SystemTime,
    secret: &str,
    double: bool,
) -> http::Request<Vec<u8>> {
    use aws_sigv4::http_request::{PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, sign};
    let identity = aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, None, None, "t").into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = if double {
        PercentEncodingMode::Double
    } else {
        PercentEncodingMode::Single
    };
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(time)
        .settings(settings)
        .build()
        .expect("params")
        .into();
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1:8777")
        .header("content-type", "application/json")
        .body(body.to_vec())
        .expect("request");
    let headers = [("host", "127.0.0.1:8777"), ("content-type", "application/json")];
    let signable = SignableRequest::new(method, uri, headers.into_iter(), SignableBody::Bytes(body)).expect("signable");
    let (instructions, _) = sign(signable, &params).expect("sign").into_parts();
    instructions.apply_to_request_http1x(&mut req);
    req
}

fn check(req: &http::Request<Vec<u8>>, body: &[u8], now: SystemTime) -> Result<(), AuthError> {
    verify(req.method(), req.uri(), req.headers(), body, &creds(), now)
}

#[test]
fn sigv4_accepts_sdk_signatures_in_both_path_encodings() {
    let uri =
        "http://127.0.0.1:8777/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A000000000000%3Aimported-model%2Fabc/converse";
    let now = SystemTime::now();
    let body = br#"{"messages":[]}"#;
    for double in [true, false] {
        let req = signed("POST", uri, body, now, "secret/key", double);
        assert_eq!(check(&req, body, now), Ok(()), "double={double}");
    }
}

#[test]
fn sigv4_refuses_wrong_secret_tampered_body_stale_and_missing() {
    let uri = "http://127.0.0.1:8777/model-import-jobs?maxResults=2&nameContains=a%20b";
    let now = SystemTime::now();
    let body = b"{}";
    let good = signed("GET", uri, body, now, "secret/key", true);
    assert_eq!(check(&good, body, now), Ok(()));
    let bad = signed("GET", uri, body, now, "other", true);
    assert!(matches!(check(&bad, body, now), Err(AuthError::Invalid(_))));
    assert!(
        matches!(check(&good, b"{\"x\":1}", now), Err(AuthError::Invalid(_))),
        "tampered body accepted"
    );
    let later = now + Duration::from_secs(20 * 60);
    assert!(matches!(check(&good, body, later), Err(AuthError::Invalid(m)) if m.contains("expired")));
    let unsigned = http::Request::builder().uri(uri).body(Vec::new()).expect("request");
    assert_eq!(check(&unsigned, b"", now), Err(AuthError::Missing));
}

#[test]
fn credentials_round_trip_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(crate::read_credentials(dir.path()).expect("read"), None);
    let generated = crate::creds::resolve(dir.path(), None).expect("resolve");
    assert_eq!(generated.access_key_id.len(), 20);
    assert_eq!(generated.secret_access_key.len(), 40);
    assert_eq!(
        crate::read_credentials(dir.path()).expect("read"),
        Some(generated.clone())
    );
    // A second start reuses the pair; a configured pair replaces it.
    assert_eq!(crate::creds::resolve(dir.path(), None).expect("again"), generated);
    let mine = Credentials {
        access_key_id: "MINE".into(),
        secret_access_key: "S".into(),
    };
    assert_eq!(
        crate::creds::resolve(dir.path(), Some(&mine)).expect("configured"),
        mine
    );
    assert_eq!(crate::read_credentials(dir.path()).expect("read"), Some(mine));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("credentials"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn the_server_starts_with_every_quantisation_the_engine_runs() {
    for q in crate::Quantize::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = crate::ServerConfig::new(dir.path().to_path_buf());
        config.quantize = Some(q);
        let server = crate::start(config).await.unwrap_or_else(|e| panic!("{q}: {e}"));
        server.shutdown().await;
    }
}

/// Signs a POST the way the AWS SDK for JavaScript v3 does over HTTP/2: the canonical request names `:authority`
/// (written out here as the SigV4 specification defines it, not with the server's code) in place of `host`.
fn signed_with_authority(authority: &str, path: &str, body: &[u8], time: SystemTime, secret: &str) -> (String, String) {
    use sha2::{Digest as _, Sha256};
    let amz_date = chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y%m%dT%H%M%SZ")
        .to_string();
    let date = &amz_date[..8];
    let payload = hex::encode(Sha256::digest(body));
    let canonical = format!(
        "POST\n{path}\n\n:authority:{authority}\ncontent-type:application/json\nx-amz-date:{amz_date}\n\n:authority;content-type;x-amz-date\n{payload}"
    );
    let scope = format!("{date}/us-east-1/bedrock/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(secret, time, "us-east-1", "bedrock");
    let signature = aws_sigv4::sign::v4::calculate_signature(key.as_ref(), to_sign.as_bytes());
    (
        format!(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/{scope}, SignedHeaders=:authority;content-type;x-amz-date, Signature={signature}"
        ),
        amz_date,
    )
}

fn request(uri: &str, host: Option<&str>, auth: &str, amz_date: &str, body: &[u8]) -> http::Request<Vec<u8>> {
    let mut b = http::Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-amz-date", amz_date)
        .header("authorization", auth);
    if let Some(h) = host {
        b = b.header("host", h);
    }
    b.body(body.to_vec()).expect("request")
}

#[test]
fn sigv4_accepts_a_signed_authority_pseudo_header_in_either_protocol() {
    let now = SystemTime::now();
    let body = br#"{"messages":[]}"#;
    let path = "/model/my-model/converse";
    let (auth, date) = signed_with_authority("127.0.0.1:8777", path, body, now, "secret/key");
    // HTTP/2: hyper gives the `:authority` in the URI, and there is no host header.
    let h2 = request(&format!("http://127.0.0.1:8777{path}"), None, &auth, &date, body);
    assert_eq!(check(&h2, body, now), Ok(()));
    // HTTP/1.1: the authority is the host header.
    let h1 = request(path, Some("127.0.0.1:8777"), &auth, &date, body);
    assert_eq!(check(&h1, body, now), Ok(()));
}

#[test]
fn sigv4_refuses_a_signature_for_another_or_a_tampered_authority() {
    let now = SystemTime::now();
    let body = b"{}";
    let path = "/model/my-model/converse";
    // Signed for another server, sent to this one.
    let (auth, date) = signed_with_authority("bedrock-runtime.us-east-1.example:443", path, body, now, "secret/key");
    let h2 = request(&format!("http://127.0.0.1:8777{path}"), None, &auth, &date, body);
    assert!(matches!(check(&h2, body, now), Err(AuthError::Invalid(_))));
    // Signed for this server, the authority changed on the way.
    let (auth, date) = signed_with_authority("127.0.0.1:8777", path, body, now, "secret/key");
    let tampered = request(&format!("http://127.0.0.1:9999{path}"), None, &auth, &date, body);
    assert!(matches!(check(&tampered, body, now), Err(AuthError::Invalid(_))));
    let tampered = request(path, Some("127.0.0.1:9999"), &auth, &date, body);
    assert!(matches!(check(&tampered, body, now), Err(AuthError::Invalid(_))));
    // No authority at all.
    let none = request(path, None, &auth, &date, body);
    assert!(matches!(check(&none, body, now), Err(AuthError::Invalid(m)) if m.contains(":authority")));
}

#[test]
fn sigv4_takes_a_signed_host_from_the_uri_over_http2() {
    // An SDK that signs `host` over HTTP/2 sends the authority as `:authority` only.
    let uri = "http://127.0.0.1:8777/model/my-model/converse";
    let now = SystemTime::now();
    let body = b"{}";
    let mut req = signed("POST", uri, body, now, "secret/key", true);
    req.headers_mut().remove("host");
    assert_eq!(check(&req, body, now), Ok(()));
}
