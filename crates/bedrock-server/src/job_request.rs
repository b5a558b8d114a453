//! What a CreateModelImportJob request says, read the same way by the control plane (which checks it) and by the import
//! job (which carries it out): the S3 URI of the model data and the `cmi:*` imported-model tags (whose names and
//! shapes are `bedrock_wire::control`'s; the quantisation's choices are the engine's).

use serde_json::Value;

use crate::error::ApiError;

use bedrock_wire::control::model_tag;
pub(crate) use bedrock_wire::control::{QUANTIZE_TAG, parse_s3_uri, stream_tools as stream_tools_from_request};

/// The `cmi:quantize` tag of a request, checked (`Ok(None)` without the tag).
pub(crate) fn quantize_from_request(request: &Value) -> Result<Option<String>, ApiError> {
    let Some(value) = model_tag(request, QUANTIZE_TAG) else {
        return Ok(None);
    };
    infer_engine::Quantize::parse_setting(value).map_err(|_| {
        ApiError::validation(format!(
            "The importedModelTags value {value:?} of {QUANTIZE_TAG} is not a quantisation the local Bedrock runs: expected one of {}.",
            infer_engine::Quantize::SETTINGS.join(", ")
        ))
    })?;
    Ok(Some(value.to_string()))
}
