//! Structured-output requests, read and validated: what the generated text must be (a JSON object, JSON matching a
//! schema, a regular expression, one of several strings, a grammar), and the OpenAI `tool_choice`.
//!
//! The fields and their shapes (Bedrock user guide, "advanced API features" of imported models; the Converse
//! `OutputConfig` of the Bedrock Runtime API reference):
//! - `response_format` (all three InvokeModel formats): `{"type": "text" | "json_object" | "json_schema",
//!   "json_schema": {"name", "schema", "strict"}}`;
//! - `structured_outputs` (the two OpenAI formats): exactly one of `json` (a schema, object or JSON text), `regex`,
//!   `choice` (strings), `grammar` (a Lark grammar), `json_object: true`;
//! - Converse `outputConfig`: `{"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema":
//!   "<JSON text>", "name", "description"}}}}`.
//!
//! Errors name the member and what was expected, in the `Malformed input request: #/…` shape Bedrock uses for
//! InvokeModel bodies, and as a `ValidationException` naming the member for Converse.

use serde_json::Value;

use crate::WireError;

/// Which tool call a request requires: Converse's `toolChoice`, the OpenAI `tool_choice` (declared here, beside the
/// parser of the latter, so that `template` depends on `structured` and not back).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolRequirement {
    /// The model may answer with text or call tools (`auto`, the default).
    #[default]
    Auto,
    /// The model must call at least one tool (`any`).
    Any,
    /// The model must call this tool (`tool`).
    Named(String),
}

/// What the generated text must be.
#[derive(Debug, Clone, PartialEq)]
pub enum StructuredOutput {
    /// Any JSON object.
    JsonObject,
    /// JSON that validates against this schema.
    JsonSchema(Value),
    /// Text that matches this regular expression in full.
    Regex(String),
    /// Exactly one of these strings.
    Choice(Vec<String>),
    /// Text that this Lark grammar (llguidance's dialect) accepts.
    Grammar(String),
}

/// What an OpenAI chat request's `tool_choice` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoiceRequest {
    /// `"none"`: answer in text; the tools are not offered.
    None,
    /// `"auto"` (the default), `"required"` or a named function.
    Tools(ToolRequirement),
}

fn malformed(path: &str, reason: impl std::fmt::Display) -> WireError {
    WireError::validation(
        path.trim_start_matches("#/").replace('/', "."),
        format!("Malformed input request: {path}: {reason}, please reformat your input and try again."),
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn schema_value(v: &Value, path: &str) -> Result<Value, WireError> {
    let schema = match v {
        Value::String(s) => serde_json::from_str(s).map_err(|e| {
            malformed(
                path,
                format!("the schema is not valid JSON ({e}): expected a JSON schema"),
            )
        })?,
        other => other.clone(),
    };
    match schema {
        Value::Object(_) | Value::Bool(true) => Ok(schema),
        other => Err(malformed(
            path,
            format!("expected a JSON schema (an object), found {}", kind(&other)),
        )),
    }
}

/// Reads `response_format` (`None` for absent or `{"type": "text"}`).
pub fn parse_response_format(v: &Value) -> Result<Option<StructuredOutput>, WireError> {
    const P: &str = "#/response_format";
    let Some(obj) = v.as_object() else {
        return Err(malformed(P, format!("expected type: JSONObject, found: {}", kind(v))));
    };
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(malformed(
                &format!("{P}/type"),
                format!("expected a string, found {}", kind(other)),
            ));
        }
        None => return Err(malformed(P, "required key [type] not found")),
    };
    match ty {
        "text" => Ok(None),
        "json_object" => Ok(Some(StructuredOutput::JsonObject)),
        "json_schema" => {
            let Some(js) = obj.get("json_schema") else {
                return Err(malformed(P, "required key [json_schema] not found (type json_schema)"));
            };
            let Some(schema) = js.get("schema") else {
                return Err(malformed(
                    &format!("{P}/json_schema"),
                    "required key [schema] not found",
                ));
            };
            Ok(Some(StructuredOutput::JsonSchema(schema_value(
                schema,
                &format!("{P}/json_schema/schema"),
            )?)))
        }
        other => Err(malformed(
            &format!("{P}/type"),
            format!("{other:?} is not a valid value: expected text, json_object or json_schema"),
        )),
    }
}

/// The `structured_outputs` members that select a format; the others (`disable_fallback`, `whitespace_pattern`, …)
/// tune a backend and are accepted without effect.
const FORMAT_KEYS: [&str; 5] = ["json", "regex", "choice", "grammar", "json_object"];

/// Reads `structured_outputs` (`None` when it selects nothing).
pub fn parse_structured_outputs(v: &Value) -> Result<Option<StructuredOutput>, WireError> {
    const P: &str = "#/structured_outputs";
    let Some(obj) = v.as_object() else {
        return Err(malformed(P, format!("expected type: JSONObject, found: {}", kind(v))));
    };
    let set: Vec<&str> = FORMAT_KEYS
        .iter()
        .copied()
        .filter(|k| obj.get(*k).is_some_and(|v| !v.is_null() && *v != Value::Bool(false)))
        .collect();
    let key = match set.as_slice() {
        [] => return Ok(None),
        [one] => *one,
        many => {
            return Err(malformed(
                P,
                format!(
                    "only one of json, regex, choice, grammar, json_object may be set, found {}",
                    many.join(", ")
                ),
            ));
        }
    };
    let v = &obj[key];
    let path = format!("{P}/{key}");
    let string = |v: &Value| -> Result<String, WireError> {
        match v {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::String(_) => Err(malformed(&path, "expected a non-empty string")),
            other => Err(malformed(&path, format!("expected a string, found {}", kind(other)))),
        }
    };
    Ok(Some(match key {
        "json" => StructuredOutput::JsonSchema(schema_value(v, &path)?),
        "regex" => StructuredOutput::Regex(string(v)?),
        "grammar" => StructuredOutput::Grammar(string(v)?),
        "json_object" => match v {
            Value::Bool(true) => StructuredOutput::JsonObject,
            other => return Err(malformed(&path, format!("expected true, found {other}"))),
        },
        _ => {
            let Some(items) = v.as_array().filter(|a| !a.is_empty()) else {
                return Err(malformed(
                    &path,
                    format!("expected a non-empty array of strings, found {v}"),
                ));
            };
            let mut choices = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(s) if !s.is_empty() => choices.push(s.clone()),
                    other => {
                        return Err(malformed(
                            &format!("{path}/{i}"),
                            format!("expected a non-empty string, found {other}"),
                        ));
                    }
                }
            }
            StructuredOutput::Choice(choices)
        }
    }))
}

/// The one structured output a request asks for through `response_format` and `structured_outputs`.
pub fn structured_output_of(
    response_format: Option<&Value>,
    structured_outputs: Option<&Value>,
) -> Result<Option<StructuredOutput>, WireError> {
    let a = response_format.map(parse_response_format).transpose()?.flatten();
    let b = structured_outputs.map(parse_structured_outputs).transpose()?.flatten();
    match (a, b) {
        (Some(_), Some(_)) => Err(malformed(
            "#",
            "response_format and structured_outputs both select an output format: expected at most one",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// Reads an OpenAI chat request's `tool_choice` against its tools (`[{"type": "function", "function": {"name"}}]`).
pub fn parse_tool_choice(v: Option<&Value>, tools: Option<&[Value]>) -> Result<ToolChoiceRequest, WireError> {
    const P: &str = "#/tool_choice";
    let names: Vec<&str> = tools
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.get("function").unwrap_or(t).get("name").and_then(Value::as_str))
        .collect();
    let choice = match v {
        None | Some(Value::Null) => return Ok(ToolChoiceRequest::Tools(ToolRequirement::Auto)),
        Some(Value::String(s)) => match s.as_str() {
            "none" => return Ok(ToolChoiceRequest::None),
            "auto" => return Ok(ToolChoiceRequest::Tools(ToolRequirement::Auto)),
            "required" => ToolRequirement::Any,
            other => {
                return Err(malformed(
                    P,
                    format!("{other:?} is not a valid value: expected none, auto, required or a function"),
                ));
            }
        },
        Some(obj @ Value::Object(_)) => {
            // `{"type": "function", "function": {"name"}}`, or the flat `{"type": "function", "name"}`.
            let name = obj
                .get("function")
                .and_then(|f| f.get("name"))
                .or_else(|| obj.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(P, "expected {\"type\": \"function\", \"function\": {\"name\": NAME}}"))?;
            if !names.contains(&name) {
                return Err(malformed(
                    &format!("{P}/function/name"),
                    format!("{name:?} is not one of the request's tools ({})", names.join(", ")),
                ));
            }
            ToolRequirement::Named(name.to_owned())
        }
        Some(other) => {
            return Err(malformed(
                P,
                format!("expected a string or an object, found {}", kind(other)),
            ));
        }
    };
    if names.is_empty() {
        return Err(malformed(P, "a tool call is required but the request has no tools"));
    }
    Ok(ToolChoiceRequest::Tools(choice))
}

/// Reads a Converse request's `outputConfig` (`None` without a `textFormat`).
pub fn parse_output_config(v: &Value) -> Result<Option<StructuredOutput>, WireError> {
    let invalid = |field: &str, what: String| {
        WireError::validation(
            field,
            format!("The value at {field} is invalid: {what}. Correct the request and try again."),
        )
    };
    let Some(format) = v.get("textFormat").filter(|f| !f.is_null()) else {
        return Ok(None);
    };
    match format.get("type").and_then(Value::as_str) {
        Some("json_schema") => {}
        Some(other) => {
            return Err(invalid(
                "outputConfig.textFormat.type",
                format!("{other:?}, expected json_schema"),
            ));
        }
        None => {
            return Err(invalid(
                "outputConfig.textFormat.type",
                "missing, expected json_schema".into(),
            ));
        }
    }
    let Some(schema) = format.pointer("/structure/jsonSchema/schema") else {
        return Err(invalid(
            "outputConfig.textFormat.structure.jsonSchema.schema",
            "missing, expected a JSON schema as a string".into(),
        ));
    };
    let Some(text) = schema.as_str() else {
        return Err(invalid(
            "outputConfig.textFormat.structure.jsonSchema.schema",
            format!("a {}, expected a JSON schema as a string", kind(schema)),
        ));
    };
    let parsed: Value = serde_json::from_str(text).map_err(|e| {
        invalid(
            "outputConfig.textFormat.structure.jsonSchema.schema",
            format!("not valid JSON ({e}), expected a JSON schema"),
        )
    })?;
    if !parsed.is_object() {
        return Err(invalid(
            "outputConfig.textFormat.structure.jsonSchema.schema",
            format!("a JSON {}, expected a JSON schema object", kind(&parsed)),
        ));
    }
    Ok(Some(StructuredOutput::JsonSchema(parsed)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn msg(e: WireError) -> String {
        e.client_message()
    }

    #[test]
    fn response_format_shapes() {
        assert_eq!(parse_response_format(&json!({"type": "text"})).unwrap(), None);
        assert_eq!(
            parse_response_format(&json!({"type": "json_object"})).unwrap(),
            Some(StructuredOutput::JsonObject)
        );
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        assert_eq!(
            parse_response_format(&json!({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}))
                .unwrap(),
            Some(StructuredOutput::JsonSchema(schema.clone()))
        );
        // The schema may come as JSON text.
        assert_eq!(
            parse_response_format(&json!({"type": "json_schema", "json_schema": {"schema": schema.to_string()}}))
                .unwrap(),
            Some(StructuredOutput::JsonSchema(schema))
        );
        let e = msg(parse_response_format(&json!({"type": "yaml"})).unwrap_err());
        assert!(
            e.contains("#/response_format/type") && e.contains("\"yaml\"") && e.contains("json_schema"),
            "{e}"
        );
        let e = msg(parse_response_format(&json!({"type": "json_schema"})).unwrap_err());
        assert!(e.contains("[json_schema] not found"), "{e}");
        let e = msg(parse_response_format(&json!({"type": "json_schema", "json_schema": {"schema": 3}})).unwrap_err());
        assert!(
            e.contains("#/response_format/json_schema/schema") && e.contains("number"),
            "{e}"
        );
    }

    #[test]
    fn structured_outputs_take_exactly_one_format() {
        let so = |v| parse_structured_outputs(&v);
        assert_eq!(
            so(json!({"regex": "[0-9]+"})).unwrap(),
            Some(StructuredOutput::Regex("[0-9]+".into()))
        );
        assert_eq!(
            so(json!({"choice": ["yes", "no"], "disable_fallback": true})).unwrap(),
            Some(StructuredOutput::Choice(vec!["yes".into(), "no".into()]))
        );
        assert_eq!(
            so(json!({"grammar": "start: \"a\""})).unwrap(),
            Some(StructuredOutput::Grammar("start: \"a\"".into()))
        );
        assert_eq!(
            so(json!({"json_object": true})).unwrap(),
            Some(StructuredOutput::JsonObject)
        );
        assert_eq!(so(json!({"whitespace_pattern": " "})).unwrap(), None);
        let e = msg(so(json!({"regex": "a", "choice": ["b"]})).unwrap_err());
        assert!(e.contains("found regex, choice"), "{e}");
        let e = msg(so(json!({"choice": ["a", 3]})).unwrap_err());
        assert!(e.contains("#/structured_outputs/choice/1") && e.contains('3'), "{e}");
        let e = msg(so(json!({"json": "{not json"})).unwrap_err());
        assert!(
            e.contains("#/structured_outputs/json") && e.contains("not valid JSON"),
            "{e}"
        );
        let e =
            msg(structured_output_of(Some(&json!({"type": "json_object"})), Some(&json!({"regex": "a"}))).unwrap_err());
        assert!(e.contains("both"), "{e}");
    }

    #[test]
    fn tool_choice_against_the_tools() {
        let tools = vec![json!({"type": "function", "function": {"name": "get_weather", "parameters": {}}})];
        let tc = |v: Value| parse_tool_choice(Some(&v), Some(&tools));
        assert_eq!(
            tc(json!("auto")).unwrap(),
            ToolChoiceRequest::Tools(ToolRequirement::Auto)
        );
        assert_eq!(tc(json!("none")).unwrap(), ToolChoiceRequest::None);
        assert_eq!(
            tc(json!("required")).unwrap(),
            ToolChoiceRequest::Tools(ToolRequirement::Any)
        );
        assert_eq!(
            tc(json!({"type": "function", "function": {"name": "get_weather"}})).unwrap(),
            ToolChoiceRequest::Tools(ToolRequirement::Named("get_weather".into()))
        );
        assert_eq!(
            tc(json!({"type": "function", "name": "get_weather"})).unwrap(),
            ToolChoiceRequest::Tools(ToolRequirement::Named("get_weather".into()))
        );
        let e = msg(tc(json!({"type": "function", "function": {"name": "nope"}})).unwrap_err());
        assert!(e.contains("\"nope\"") && e.contains("get_weather"), "{e}");
        let e = msg(parse_tool_choice(Some(&json!("required")), None).unwrap_err());
        assert!(e.contains("no tools"), "{e}");
        let e = msg(tc(json!("always")).unwrap_err());
        assert!(e.contains("\"always\""), "{e}");
    }

    #[test]
    fn converse_output_config() {
        let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
        let cfg = json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {
            "schema": schema.to_string(), "name": "count"}}}});
        assert_eq!(
            parse_output_config(&cfg).unwrap(),
            Some(StructuredOutput::JsonSchema(schema))
        );
        assert_eq!(parse_output_config(&json!({})).unwrap(), None);
        let bad = json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{oops"}}}});
        let e = msg(parse_output_config(&bad).unwrap_err());
        assert!(
            e.contains("outputConfig.textFormat.structure.jsonSchema.schema") && e.contains("not valid JSON"),
            "{e}"
        );
        let e = msg(parse_output_config(&json!({"textFormat": {"type": "xml"}})).unwrap_err());
        assert!(e.contains("\"xml\""), "{e}");
    }
}
