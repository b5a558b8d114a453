//! What a CreateModelImportJob request says, read the same way by the control plane (which checks it) and by the import
//! job (which carries it out): the S3 URI of the model data and the `cmi:*` imported-model tags.

use serde_json::Value;

use crate::error::ApiError;

/// `s3://[a-z0-9][-.a-z0-9]{1,61}[a-z0-9](/.*)?`, 1–1024. Returns (bucket, prefix).
pub(crate) fn parse_s3_uri(s: &str) -> Option<(String, String)> {
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

/// The tag that turns off ConverseStream-with-tools for a model (`importedModelTags`: `cmi:stream-tools` = `false`).
pub(crate) const STREAM_TOOLS_TAG: &str = "cmi:stream-tools";

/// The tag that sets how the local engine runs a model (`importedModelTags`: `cmi:quantize` = `q8_0`, `q4k`, `q4_0`,
/// or `none` for the weights as stored, whatever the server's `--quantize`).
pub(crate) const QUANTIZE_TAG: &str = "cmi:quantize";

/// The value of an imported-model tag of a CreateModelImportJob request.
fn model_tag<'a>(request: &'a Value, key: &str) -> Option<&'a str> {
    request
        .get("importedModelTags")
        .and_then(Value::as_array)?
        .iter()
        .find(|t| t.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|t| t.get("value").and_then(Value::as_str))
}

pub(crate) fn stream_tools_from_request(request: &Value) -> bool {
    !model_tag(request, STREAM_TOOLS_TAG).is_some_and(|v| v.eq_ignore_ascii_case("false"))
}

/// The `cmi:quantize` tag of a request, checked (`Ok(None)` without the tag).
pub(crate) fn quantize_from_request(request: &Value) -> Result<Option<String>, ApiError> {
    let Some(value) = model_tag(request, QUANTIZE_TAG) else {
        return Ok(None);
    };
    crate::runtime::models::parse_quantize_setting(value).map_err(|expected| {
        ApiError::validation(format!(
            "The importedModelTags value {value:?} of {QUANTIZE_TAG} is not a quantisation the local Bedrock runs: expected {expected}."
        ))
    })?;
    Ok(Some(value.to_string()))
}
