//! SigV4 verification for the Bedrock routes (header and presigned-query forms).
//!
//! `s3s` verifies S3 requests but refuses other signing services, and `aws-sigv4` only signs; so the canonical request
//! is rebuilt here (hand-rolled: no library verifies SigV4 for arbitrary services) from exactly the headers the client
//! listed, and the signing key and HMAC come from `aws-sigv4`. Clients differ in how they encode the path (the Rust SDK
//! and botocore double-encode for non-S3 services), so both the received path and its re-encoding are tried.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sha2::{Digest as _, Sha256};

use crate::Credentials;

/// Why a request was refused; each maps to the error the real service sends (all HTTP 403).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No signature at all.
    Missing,
    /// The access key is not the server's.
    UnknownKey(String),
    /// The signature is malformed, wrong, or stale.
    Invalid(String),
}

impl AuthError {
    /// The error type the service answers with, and its message.
    pub(crate) fn kind_and_message(&self) -> (bedrock_wire::ErrorType, String) {
        use bedrock_wire::ErrorType;
        match self {
            AuthError::Missing => (
                ErrorType::MissingAuthenticationToken,
                "Missing Authentication Token".into(),
            ),
            AuthError::UnknownKey(k) => (
                ErrorType::UnrecognizedClient,
                format!(
                    "The security token included in the request is invalid (access key {k:?} is not this server's)"
                ),
            ),
            AuthError::Invalid(m) => (ErrorType::InvalidSignature, m.clone()),
        }
    }
}

/// Largest accepted difference between the request time and the server clock (as AWS: 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);

struct Parsed<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
    amz_date: String,
    presigned_expires: Option<u64>,
}

/// Verifies the request's signature against `creds`. `body` is the full request body.
pub(crate) fn verify(
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
    creds: &Credentials,
    now: SystemTime,
) -> Result<(), AuthError> {
    let query = uri.query().unwrap_or("");
    let query_pairs = parse_query(query);
    let presigned = query_pairs.iter().any(|(k, _)| k == "X-Amz-Signature");
    let auth_header = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let p = if let Some(h) = auth_header {
        parse_header(h, headers)?
    } else if presigned {
        parse_presigned(&query_pairs)?
    } else {
        return Err(AuthError::Missing);
    };
    if p.access_key != creds.access_key_id {
        return Err(AuthError::UnknownKey(p.access_key.to_string()));
    }
    let t = parse_amz_date(&p.amz_date).ok_or_else(|| {
        AuthError::Invalid(format!(
            "invalid X-Amz-Date {:?}: expected YYYYMMDDTHHMMSSZ",
            p.amz_date
        ))
    })?;
    if !p.amz_date.starts_with(p.date) {
        return Err(AuthError::Invalid(
            "credential scope date does not match X-Amz-Date".into(),
        ));
    }
    match p.presigned_expires {
        Some(exp) => {
            if now > t + Duration::from_secs(exp) {
                return Err(AuthError::Invalid(format!(
                    "Signature expired: {} + {exp}s is before now",
                    p.amz_date
                )));
            }
            if t > now + MAX_SKEW {
                return Err(AuthError::Invalid(format!(
                    "Signature not yet current: {} is in the future",
                    p.amz_date
                )));
            }
        }
        None => {
            let skew = now.duration_since(t).unwrap_or_else(|e| e.duration());
            if skew > MAX_SKEW {
                return Err(AuthError::Invalid(format!(
                    "Signature expired: {} is more than 5 minutes away from the server time",
                    p.amz_date
                )));
            }
        }
    }

    // Canonical headers from exactly the signed list.
    let mut canon_headers = String::new();
    for name in &p.signed_headers {
        let values = header_values(name, uri, headers);
        if values.is_empty() {
            return Err(AuthError::Invalid(format!(
                "signed header {name:?} is missing from the request"
            )));
        }
        canon_headers.push_str(name);
        canon_headers.push(':');
        canon_headers.push_str(&values.join(","));
        canon_headers.push('\n');
    }
    let signed_list = p.signed_headers.join(";");

    let canon_query = canonical_query(&query_pairs, presigned);

    let mut payload_hashes: Vec<String> = Vec::new();
    if let Some(h) = headers.get("x-amz-content-sha256").and_then(|v| v.to_str().ok()) {
        if h != "UNSIGNED-PAYLOAD" && !h.eq_ignore_ascii_case(&hex::encode(Sha256::digest(body))) {
            return Err(AuthError::Invalid(
                "x-amz-content-sha256 does not match the body".into(),
            ));
        }
        payload_hashes.push(h.to_string());
    } else {
        payload_hashes.push(hex::encode(Sha256::digest(body)));
        if presigned {
            payload_hashes.push("UNSIGNED-PAYLOAD".into());
        }
    }

    let raw_path = if uri.path().is_empty() { "/" } else { uri.path() };
    let paths = [raw_path.to_string(), uri_encode(raw_path, false)];

    let signing_key = aws_sigv4::sign::v4::generate_signing_key(&creds.secret_access_key, t, p.region, p.service);
    let scope = format!("{}/{}/{}/aws4_request", p.date, p.region, p.service);
    for path in &paths {
        for payload in &payload_hashes {
            let canonical = format!(
                "{method}\n{path}\n{canon_query}\n{canon_headers}\n{signed_list}\n{payload}",
                method = method.as_str()
            );
            let string_to_sign = format!(
                "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
                p.amz_date,
                hex::encode(Sha256::digest(canonical.as_bytes()))
            );
            let sig = aws_sigv4::sign::v4::calculate_signature(signing_key.as_ref(), string_to_sign.as_bytes());
            if constant_time_eq(sig.as_bytes(), p.signature.as_bytes()) {
                return Ok(());
            }
        }
    }
    Err(AuthError::Invalid(
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
            .into(),
    ))
}

/// The values of one signed header, as the canonical request takes them.
///
/// The request's authority is one value with two names. Over HTTP/2 the AWS SDK for JavaScript v3 signs the
/// `:authority` pseudo-header in place of `host` (bedrock-runtime's HTTP/2 handler), and AWS accepts it; over HTTP/2
/// an SDK that signed `host` may send no `host` header at all, the authority travelling in the URI. So either name
/// is answered from the request itself: the URI's authority (how hyper presents HTTP/2's `:authority`), else the
/// `host` header (HTTP/1.1). A value the client did not send is never made up: a request signed for another
/// authority, or with its authority changed after signing, still fails the signature.
fn header_values(name: &str, uri: &http::Uri, headers: &HeaderMap) -> Vec<String> {
    let sent: Vec<String> = if name.starts_with(':') {
        Vec::new()
    } else {
        headers
            .get_all(name)
            .iter()
            .map(|v| collapse_spaces(&String::from_utf8_lossy(v.as_bytes())))
            .collect()
    };
    if !sent.is_empty() || !(name == ":authority" || name == "host") {
        return sent;
    }
    let authority = uri.authority().map(|a| a.as_str().to_string()).or_else(|| {
        headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    authority.into_iter().collect()
}

fn parse_header<'a>(h: &'a str, headers: &HeaderMap) -> Result<Parsed<'a>, AuthError> {
    let rest = h
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| AuthError::Invalid(format!("unsupported authorization scheme in {:?}", truncate(h))))?;
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (credential, signed, signature) = match (credential, signed, signature) {
        (Some(c), Some(s), Some(g)) => (c, s, g),
        _ => {
            return Err(AuthError::Invalid(
                "authorization header lacks Credential, SignedHeaders or Signature".into(),
            ));
        }
    };
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| AuthError::Invalid("missing X-Amz-Date header".into()))?
        .to_string();
    let (access_key, date, region, service) = split_credential(credential)?;
    Ok(Parsed {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
        amz_date,
        presigned_expires: None,
    })
}

fn parse_presigned(q: &[(String, String)]) -> Result<Parsed<'_>, AuthError> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("X-Amz-Algorithm") != Some("AWS4-HMAC-SHA256") {
        return Err(AuthError::Invalid("X-Amz-Algorithm must be AWS4-HMAC-SHA256".into()));
    }
    let credential = get("X-Amz-Credential").ok_or_else(|| AuthError::Invalid("missing X-Amz-Credential".into()))?;
    let signed = get("X-Amz-SignedHeaders").ok_or_else(|| AuthError::Invalid("missing X-Amz-SignedHeaders".into()))?;
    let signature = get("X-Amz-Signature").ok_or_else(|| AuthError::Invalid("missing X-Amz-Signature".into()))?;
    let amz_date = get("X-Amz-Date")
        .ok_or_else(|| AuthError::Invalid("missing X-Amz-Date".into()))?
        .to_string();
    let expires: u64 = get("X-Amz-Expires")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v <= 604_800)
        .ok_or_else(|| AuthError::Invalid("X-Amz-Expires must be 1..=604800 seconds".into()))?;
    let (access_key, date, region, service) = split_credential(credential)?;
    Ok(Parsed {
        access_key,
        date,
        region,
        service,
        signed_headers: signed.split(';').collect(),
        signature,
        amz_date,
        presigned_expires: Some(expires),
    })
}

fn split_credential(c: &str) -> Result<(&str, &str, &str, &str), AuthError> {
    let parts: Vec<&str> = c.split('/').collect();
    match parts.as_slice() {
        [ak, date, region, service, "aws4_request"] => Ok((ak, date, region, service)),
        _ => Err(AuthError::Invalid(format!(
            "malformed credential scope {c:?}: expected AK/DATE/REGION/SERVICE/aws4_request"
        ))),
    }
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let dt = chrono::NaiveDateTime::parse_from_str(s, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(dt.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Splits a raw query string into percent-decoded pairs.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

fn canonical_query(pairs: &[(String, String)], presigned: bool) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| !(presigned && k == "X-Amz-Signature"))
        .map(|(k, v)| (uri_encode(k, true), uri_encode(v, true)))
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// SigV4 URI encoding: everything but unreserved characters (and `/` unless `encode_slash`) as `%XX`.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn collapse_spaces(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn truncate(s: &str) -> &str {
    s.get(..40).unwrap_or(s)
}
