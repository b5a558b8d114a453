//! The model-import control plane's contract (CreateModelImportJob): the shapes its names, ARNs, S3 URIs, tokens and
//! tags must have, and the `cmi:*` imported-model tags the tool sets and the local Bedrock reads.
//!
//! The patterns are the service model's (botocore `bedrock/2023-04-20/service-2.json`), checked by hand because no
//! regex crate is in the workspace; each has its constraint text as the service words it, for the error.

use serde_json::Value;

/// `importedModelTags` key: a digest of the uploaded content (`cmi import` names its job after it).
pub const CONTENT_TAG: &str = "cmi:content";

/// `importedModelTags` key: how the local engine runs the model (`q8_0`, `q4k`, `q4_0`, or `none` for the weights as
/// stored, whatever the server's `--quantize`). Amazon Bedrock keeps the tag and runs the model as it always does.
pub const QUANTIZE_TAG: &str = "cmi:quantize";

/// `importedModelTags` key: `false` turns off ConverseStream-with-tools for the model on the local Bedrock.
pub const STREAM_TOOLS_TAG: &str = "cmi:stream-tools";

/// A member that fails its constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The value as sent (`null` when missing).
    pub value: String,
    /// The member's path (`jobName`, `importedModelTags.key`, …).
    pub member: String,
    /// The constraint, as the service words it.
    pub constraint: &'static str,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "1 validation error detected: Value '{}' at '{}' failed to satisfy constraint: {}",
            self.value, self.member, self.constraint
        )
    }
}

impl std::error::Error for Invalid {}

fn invalid(value: &str, member: &str, constraint: &'static str) -> Invalid {
    Invalid {
        value: value.to_string(),
        member: member.to_string(),
        constraint,
    }
}

fn alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `jobName`'s constraint.
pub const JOB_NAME: &str =
    "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9\\+\\-\\.])* and length 1-63";
/// `importedModelName`'s constraint.
pub const MODEL_NAME: &str = "Member must satisfy regular expression pattern: ([0-9a-zA-Z][_-]?)+ and length 1-63";
/// `roleArn`'s constraint.
pub const ROLE_ARN: &str =
    "Member must satisfy regular expression pattern: ^arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+$";
/// `modelDataSource.s3DataSource.s3Uri`'s constraint.
pub const S3_URI: &str =
    "Member must satisfy regular expression pattern: ^s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/.*)?$";
/// `clientRequestToken`'s constraint.
pub const CLIENT_TOKEN: &str = "Member must satisfy regular expression pattern: ^[a-zA-Z0-9](-*[a-zA-Z0-9])*$";
/// A tag key's or value's constraint.
pub const TAG_TEXT: &str = "Member must satisfy regular expression pattern: ^[a-zA-Z0-9\\s._:/=+@-]*$";

/// `[a-zA-Z0-9](-*[a-zA-Z0-9\+\-\.])*`, 1–63.
pub fn valid_job_name(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.starts_with(alnum) && s.chars().all(|c| alnum(c) || "+-.".contains(c))
}

/// `([0-9a-zA-Z][_-]?)+`, 1–63: letters and digits, optionally separated by single `-` or `_`.
pub fn valid_model_name(s: &str) -> bool {
    if !(1..=63).contains(&s.len()) || !s.starts_with(alnum) {
        return false;
    }
    let mut prev_sep = false;
    for c in s.chars() {
        let sep = c == '_' || c == '-';
        if !(alnum(c) || sep) || (sep && prev_sep) {
            return false;
        }
        prev_sep = sep;
    }
    true
}

/// `arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+`, up to 2048.
pub fn valid_role_arn(s: &str) -> bool {
    if s.len() > 2048 {
        return false;
    }
    let Some(rest) = s.strip_prefix("arn:aws") else {
        return false;
    };
    let rest = match rest.strip_prefix('-') {
        Some(r) => match r.split_once(':') {
            Some((p, r)) if !p.is_empty() => r,
            _ => return false,
        },
        None => match rest.strip_prefix(':') {
            Some(r) => r,
            None => return false,
        },
    };
    let Some(rest) = rest.strip_prefix("iam::") else {
        return false;
    };
    let Some((acct, role)) = rest.split_once(":role/") else {
        return false;
    };
    (acct.is_empty() || (acct.len() == 12 && acct.chars().all(|c| c.is_ascii_digit()))) && !role.is_empty()
}

/// `[a-zA-Z0-9](-*[a-zA-Z0-9])*`, 1–256.
pub fn valid_client_token(s: &str) -> bool {
    (1..=256).contains(&s.len())
        && s.starts_with(alnum)
        && s.ends_with(alnum)
        && s.chars().all(|c| alnum(c) || c == '-')
}

/// `s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/.*)?`, 1–1024. Returns (bucket, prefix).
pub fn parse_s3_uri(s: &str) -> Option<(String, String)> {
    if s.len() > 1024 {
        return None;
    }
    let rest = s.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok_bucket = (3..=63).contains(&bucket.len())
        && bucket.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    ok_bucket.then(|| (bucket.to_string(), prefix.to_string()))
}

/// Checks a list of `{key, value}` tags (`jobTags`, `importedModelTags`): at most 200, keys 1–128 and values up to
/// 256 characters of [`TAG_TEXT`]. A member that is absent is fine; one that is not a list is `Err(None)`.
pub fn check_tags(body: &Value, member: &str) -> Result<(), Option<Invalid>> {
    let Some(tags) = body.get(member) else { return Ok(()) };
    let Some(list) = tags.as_array() else {
        return Err(None);
    };
    if list.len() > 200 {
        return Err(Some(invalid(
            &list.len().to_string(),
            member,
            "Member must have length less than or equal to 200",
        )));
    }
    let ok_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || "._:/=+@-".contains(c))
    };
    for t in list {
        let k = t.get("key").and_then(Value::as_str).unwrap_or("");
        if !(1..=128).contains(&k.len()) || !ok_chars(k) {
            return Err(Some(invalid(k, &format!("{member}.key"), TAG_TEXT)));
        }
        match t.get("value").and_then(Value::as_str) {
            Some(v) if v.len() <= 256 && ok_chars(v) => {}
            v => return Err(Some(invalid(v.unwrap_or("null"), &format!("{member}.value"), TAG_TEXT))),
        }
    }
    Ok(())
}

/// The value of an imported-model tag of a CreateModelImportJob request.
pub fn model_tag<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request
        .get("importedModelTags")
        .and_then(Value::as_array)?
        .iter()
        .find(|t| t.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|t| t.get("value").and_then(Value::as_str))
}

/// Whether a request leaves ConverseStream-with-tools on ([`STREAM_TOOLS_TAG`] is not `false`).
pub fn stream_tools(request: &Value) -> bool {
    !model_tag(request, STREAM_TOOLS_TAG).is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_arns_and_uris_follow_the_service_patterns() {
        assert!(valid_job_name("my-job.v1+x"));
        assert!(!valid_job_name("-starts-with-dash"));
        assert!(!valid_job_name("has space"));
        assert!(!valid_job_name(&"a".repeat(64)));
        assert!(valid_model_name("my_model-1"));
        assert!(!valid_model_name("double__sep"));
        assert!(!valid_model_name("_lead"));
        assert!(!valid_model_name("dot.not.allowed"));
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/Import"));
        assert!(valid_role_arn("arn:aws-cn:iam::123456789012:role/x/y"));
        assert!(valid_role_arn("arn:aws:iam:::role/NoAccount"));
        assert!(!valid_role_arn("arn:aws:iam::12345:role/short-account"));
        assert!(!valid_role_arn("arn:aws:s3:::bucket"));
        assert!(!valid_role_arn("arn:aws-:iam::123456789012:role/x"));
        assert!(valid_client_token("a-b-c1"));
        assert!(!valid_client_token("ends-"));
        assert_eq!(
            parse_s3_uri("s3://my-bucket/models/x/"),
            Some(("my-bucket".into(), "models/x/".into()))
        );
        assert_eq!(
            parse_s3_uri("s3://my-bucket"),
            Some(("my-bucket".into(), String::new()))
        );
        assert_eq!(parse_s3_uri("s3://ab/x"), None);
        assert_eq!(parse_s3_uri("s3://Upper/x"), None);
        assert_eq!(parse_s3_uri("https://bucket/x"), None);
    }

    #[test]
    fn tags_are_checked_and_read() {
        let ok = serde_json::json!({"importedModelTags": [{"key": QUANTIZE_TAG, "value": "q4k"},
                                                          {"key": STREAM_TOOLS_TAG, "value": "FALSE"}]});
        assert_eq!(check_tags(&ok, "importedModelTags"), Ok(()));
        assert_eq!(model_tag(&ok, QUANTIZE_TAG), Some("q4k"));
        assert!(!stream_tools(&ok));
        assert!(stream_tools(&serde_json::json!({})));
        let bad = serde_json::json!({"jobTags": [{"key": "a*b", "value": "v"}]});
        let e = check_tags(&bad, "jobTags").unwrap_err().unwrap();
        assert_eq!((e.value.as_str(), e.member.as_str()), ("a*b", "jobTags.key"));
        assert_eq!(check_tags(&serde_json::json!({"jobTags": 3}), "jobTags"), Err(None));
    }
}
