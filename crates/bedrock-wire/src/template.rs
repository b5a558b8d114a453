//! Converse requests in the message shape Hugging Face chat templates take (the OpenAI chat format that
//! transformers' `apply_chat_template` documents), plus the Converse validation rules Bedrock applies first.
//!
//! Mapping:
//! - `system` blocks → a first `{"role": "system", "content": …}` message (texts joined with `\n`);
//! - user / assistant text blocks → `content` (joined with `\n`); `document` blocks with a text source become
//!   text; `cachePoint` blocks are skipped;
//! - assistant `toolUse` → `tool_calls: [{"id", "type": "function", "function": {"name", "arguments": <object>}}]`;
//! - assistant `reasoningContent` → `reasoning_content`;
//! - user `toolResult` → one `{"role": "tool", "tool_call_id", "name", "content"}` message each (text blocks
//!   joined, JSON blocks as compact JSON text), followed by a user message with the turn's text if any;
//! - `toolSpec` tools → `{"type": "function", "function": {"name", "description", "parameters"}}`.
//!
//! Error texts reproduce Bedrock's ValidationException wording where it is known (the alternation, first-message
//! and blank-text messages are quoted by users in public bug reports); the others are ours, in the same style, and
//! always name the member (`messages.2.content.0`).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::WireError;
use crate::converse::{
    ContentBlock, ConverseRequest, DocumentSource, ReasoningContentBlock, Role, SystemContentBlock, Tool, ToolChoice,
    ToolResultContentBlock,
};
use crate::structured::ToolRequirement;

/// What the chat template needs from a Converse request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateInput {
    /// Messages in the HF / OpenAI shape.
    pub messages: Vec<Value>,
    /// Tools in the OpenAI function shape, `None` without `toolConfig`.
    pub tools: Option<Vec<Value>>,
    /// What `toolChoice` demands.
    pub tool_choice: ToolRequirement,
    /// The structured output `outputConfig.textFormat` asks for.
    pub output: Option<crate::structured::StructuredOutput>,
}

const ALTERNATE: &str = "A conversation must alternate between user and assistant roles. Make sure the \
                         conversation alternates between user and assistant roles and try again.";
const START_WITH_USER: &str = "A conversation must start with a user message. Try again with a \
                               conversation that starts with a user message.";
const END_WITH_USER: &str = "The model that you are using requires the last turn in the conversation to \
                             be a user message. Add a user message to the conversation and try again.";
const TOOL_CONFIG_REQUIRED: &str =
    "The toolConfig field must be defined when using toolUse and toolResult content blocks.";

/// Validates a Converse request and converts it for the chat template.
pub fn converse_to_template_input(req: &ConverseRequest) -> Result<TemplateInput, WireError> {
    validate_inference_config(req)?;
    validate_request_extras(req)?;
    let (tools, tool_choice) = convert_tools(req)?;
    let mut messages = Vec::new();

    let mut system_texts = Vec::new();
    for (i, block) in req.system.iter().flatten().enumerate() {
        match block {
            SystemContentBlock::Text(t) => {
                if t.trim().is_empty() {
                    return Err(WireError::validation(
                        format!("system.{i}.text"),
                        format!(
                            "The text field in the SystemContentBlock object at system.{i} is blank. \
                             Add text to the text field, and try again."
                        ),
                    ));
                }
                system_texts.push(t.as_str());
            }
            SystemContentBlock::CachePoint(_) => {}
            SystemContentBlock::GuardContent(_) => {
                return Err(unsupported(format!("system.{i}"), "guardContent"));
            }
        }
    }
    if !system_texts.is_empty() {
        messages.push(json!({"role": "system", "content": system_texts.join("\n")}));
    }

    if req.messages.is_empty() {
        return Err(WireError::validation(
            "messages",
            "The messages field is empty. Add at least one user message to the messages field and try again.",
        ));
    }

    // Tool calls of the latest assistant turn, by id, to pair results with calls and name the tool.
    let mut last_calls: Vec<(String, String)> = Vec::new();
    let mut previous: Option<Role> = None;
    let uses_tools = req.messages.iter().any(|m| {
        m.content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)))
    });
    if uses_tools && req.tool_config.is_none() {
        return Err(WireError::validation("toolConfig", TOOL_CONFIG_REQUIRED));
    }

    for (i, message) in req.messages.iter().enumerate() {
        let path = format!("messages.{i}");
        if message.content.is_empty() {
            return Err(WireError::validation(
                format!("{path}.content"),
                format!(
                    "The content field in the Message object at {path} is empty. Add a ContentBlock object \
                     to the content field and try again."
                ),
            ));
        }
        match message.role {
            Role::System => {
                let text = collect_text(&path, message.role, &message.content)?;
                messages.push(json!({"role": "system", "content": text.text}));
                continue;
            }
            Role::User if previous.is_none() => {}
            Role::Assistant if previous.is_none() => {
                return Err(WireError::validation(path, START_WITH_USER));
            }
            role if previous == Some(role) => {
                return Err(WireError::validation(path, ALTERNATE));
            }
            _ => {}
        }
        previous = Some(message.role);

        match message.role {
            Role::Assistant => {
                let parts = collect_text(&path, message.role, &message.content)?;
                let mut out = Map::new();
                out.insert("role".into(), "assistant".into());
                // Key order as in the corpus conversations (c07, c17): templates that `tojson` a message see it.
                if let Some(r) = parts.reasoning {
                    out.insert("reasoning_content".into(), r.into());
                }
                out.insert("content".into(), parts.text.into());
                last_calls.clear();
                let mut calls = Vec::new();
                for (j, block) in message.content.iter().enumerate() {
                    if let ContentBlock::ToolUse(t) = block {
                        let block_path = format!("{path}.content.{j}.toolUse");
                        if last_calls.iter().any(|(id, _)| *id == t.tool_use_id) {
                            return Err(WireError::validation(
                                block_path,
                                format!(
                                    "The toolUseId {} at {path}.content.{j} is used by more than one toolUse \
                                     block in the message. Use unique ids and try again.",
                                    t.tool_use_id
                                ),
                            ));
                        }
                        last_calls.push((t.tool_use_id.clone(), t.name.clone()));
                        calls.push(json!({
                            "id": t.tool_use_id,
                            "type": "function",
                            "function": {"name": t.name, "arguments": t.input},
                        }));
                    }
                }
                if !calls.is_empty() {
                    out.insert("tool_calls".into(), Value::Array(calls));
                }
                messages.push(Value::Object(out));
            }
            Role::User => {
                let mut answered = HashSet::new();
                for (j, block) in message.content.iter().enumerate() {
                    let ContentBlock::ToolResult(r) = block else {
                        continue;
                    };
                    let block_path = format!("{path}.content.{j}");
                    let Some((_, name)) = last_calls.iter().find(|(id, _)| *id == r.tool_use_id) else {
                        if answered.len() >= last_calls.len() {
                            return Err(WireError::validation(
                                format!("{path}.content"),
                                format!(
                                    "The number of toolResult blocks at {path}.content exceeds the number of \
                                     toolUse blocks of previous turn."
                                ),
                            ));
                        }
                        return Err(WireError::validation(
                            block_path,
                            format!(
                                "The toolUseId {} of the toolResult at {path}.content.{j} does not match any \
                                 toolUse block of the previous turn.",
                                r.tool_use_id
                            ),
                        ));
                    };
                    if !answered.insert(r.tool_use_id.clone()) {
                        return Err(WireError::validation(
                            block_path,
                            format!(
                                "The toolUseId {} at {path}.content.{j} is answered by more than one toolResult \
                                 block. Use one toolResult per toolUse and try again.",
                                r.tool_use_id
                            ),
                        ));
                    }
                    let content = tool_result_text(&block_path, &r.content)?;
                    messages.push(json!({
                        "role": "tool",
                        "tool_call_id": r.tool_use_id,
                        "name": name,
                        "content": content,
                    }));
                }
                if answered.len() < last_calls.len() {
                    let missing: Vec<&str> = last_calls
                        .iter()
                        .filter(|(id, _)| !answered.contains(id))
                        .map(|(id, _)| id.as_str())
                        .collect();
                    return Err(WireError::validation(
                        format!("{path}.content"),
                        format!(
                            "Expected toolResult blocks at {path}.content for the following Ids: {}",
                            missing.join(", ")
                        ),
                    ));
                }
                last_calls.clear();
                let parts = collect_text(&path, message.role, &message.content)?;
                if !parts.text.is_empty() || answered.is_empty() {
                    messages.push(json!({"role": "user", "content": parts.text}));
                }
            }
            Role::System => unreachable!("handled above"),
        }
    }

    if previous == Some(Role::Assistant) {
        return Err(WireError::validation(
            format!("messages.{}", req.messages.len() - 1),
            END_WITH_USER,
        ));
    }
    if previous.is_none() {
        return Err(WireError::validation("messages", START_WITH_USER));
    }

    let output = match &req.output_config {
        Some(config) => crate::structured::parse_output_config(config)?,
        None => None,
    };
    Ok(TemplateInput {
        messages,
        tools,
        tool_choice,
        output,
    })
}

struct TextParts {
    text: String,
    reasoning: Option<String>,
}

/// Joins the text-like blocks of a message; rejects blocks the role may not carry or imported models cannot read.
fn collect_text(path: &str, role: Role, content: &[ContentBlock]) -> Result<TextParts, WireError> {
    let mut texts: Vec<String> = Vec::new();
    let mut reasoning: Option<String> = None;
    for (j, block) in content.iter().enumerate() {
        let block_path = format!("{path}.content.{j}");
        match block {
            ContentBlock::Text(t) => {
                if t.trim().is_empty() {
                    return Err(WireError::validation(
                        block_path.clone(),
                        format!(
                            "The text field in the ContentBlock object at {block_path} is blank. Add text to \
                             the text field, and try again."
                        ),
                    ));
                }
                texts.push(t.clone());
            }
            ContentBlock::Document(d) => {
                if role != Role::User {
                    return Err(user_only(block_path, role, "document"));
                }
                texts.push(document_text(&block_path, d)?);
            }
            ContentBlock::Image(_) => {
                if role != Role::User {
                    return Err(user_only(block_path, role, "image"));
                }
                return Err(unsupported(block_path, "image"));
            }
            ContentBlock::ToolUse(_) if role != Role::Assistant => {
                return Err(WireError::validation(
                    block_path.clone(),
                    format!(
                        "The toolUse block at {block_path} is only allowed in an assistant message. Move it \
                         and try again."
                    ),
                ));
            }
            ContentBlock::ToolResult(_) if role != Role::User => {
                return Err(WireError::validation(
                    block_path.clone(),
                    format!(
                        "The toolResult block at {block_path} is only allowed in a user message. Move it and \
                         try again."
                    ),
                ));
            }
            ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_) | ContentBlock::CachePoint(_) => {}
            ContentBlock::ReasoningContent(r) => {
                if role != Role::Assistant {
                    return Err(WireError::validation(
                        block_path.clone(),
                        format!(
                            "The reasoningContent block at {block_path} is only allowed in an assistant \
                             message. Remove it and try again."
                        ),
                    ));
                }
                if let ReasoningContentBlock::ReasoningText(t) = r {
                    let acc = reasoning.get_or_insert_with(String::new);
                    acc.push_str(&t.text);
                }
                // Redacted reasoning is opaque and cannot be shown to the model; it is dropped.
            }
            other => return Err(unsupported(block_path, other.member_name())),
        }
    }
    Ok(TextParts {
        text: texts.join("\n"),
        reasoning,
    })
}

fn document_text(path: &str, d: &crate::converse::DocumentBlock) -> Result<String, WireError> {
    const TEXT_FORMATS: [&str; 5] = ["txt", "md", "csv", "html", "json"];
    let body = match &d.source {
        DocumentSource::Text(t) => t.clone(),
        DocumentSource::Content(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n"),
        DocumentSource::Bytes(b) if d.format.as_deref().is_some_and(|f| TEXT_FORMATS.contains(&f)) => {
            String::from_utf8(b.0.clone()).map_err(|_| {
                WireError::validation(
                    format!("{path}.document.source.bytes"),
                    format!(
                        "The document at {path} is not valid UTF-8 text for format {}. Fix the document and \
                         try again.",
                        d.format.as_deref().unwrap_or_default()
                    ),
                )
            })?
        }
        DocumentSource::Bytes(_) => {
            return Err(WireError::validation(
                format!("{path}.document.format"),
                format!(
                    "This model doesn't support documents of format {} at {path}. Send txt, md, csv, html or \
                     json documents, or text, and try again.",
                    d.format.as_deref().unwrap_or("(none)")
                ),
            ));
        }
        DocumentSource::S3Location(_) => {
            return Err(WireError::validation(
                format!("{path}.document.source.s3Location"),
                format!(
                    "This model doesn't support S3 document sources at {path}. Send the document bytes and \
                     try again."
                ),
            ));
        }
    };
    Ok(format!("{}:\n{}", d.name, body))
}

/// The `content` string of a `role: tool` message.
fn tool_result_text(path: &str, content: &[ToolResultContentBlock]) -> Result<String, WireError> {
    let mut parts = Vec::with_capacity(content.len());
    for (k, block) in content.iter().enumerate() {
        match block {
            ToolResultContentBlock::Text(t) => parts.push(t.clone()),
            ToolResultContentBlock::Json(v) => parts.push(v.to_string()),
            ToolResultContentBlock::Document(d) => {
                parts.push(document_text(&format!("{path}.toolResult.content.{k}"), d)?)
            }
            ToolResultContentBlock::Image(_) => {
                return Err(unsupported(format!("{path}.toolResult.content.{k}"), "image"));
            }
            ToolResultContentBlock::Video(_) => {
                return Err(unsupported(format!("{path}.toolResult.content.{k}"), "video"));
            }
            ToolResultContentBlock::SearchResult(_) => {
                return Err(unsupported(format!("{path}.toolResult.content.{k}"), "searchResult"));
            }
        }
    }
    Ok(parts.join("\n"))
}

fn user_only(path: String, role: Role, member: &str) -> WireError {
    WireError::validation(
        path.clone(),
        format!(
            "The {member} block at {path} is not allowed in a {} message. Images and documents are only \
             allowed in user messages.",
            role.as_str()
        ),
    )
}

fn unsupported(path: String, member: &str) -> WireError {
    WireError::validation(
        path.clone(),
        format!("This model doesn't support the {member} content block at {path}. Remove it and try again."),
    )
}

fn constraint(path: &str, value: impl std::fmt::Display, constraint: &str) -> WireError {
    WireError::validation(
        path,
        format!("1 validation error detected: Value '{value}' at '{path}' failed to satisfy constraint: {constraint}"),
    )
}

fn validate_inference_config(req: &ConverseRequest) -> Result<(), WireError> {
    let Some(c) = &req.inference_config else {
        return Ok(());
    };
    if let Some(m) = c.max_tokens
        && m < 1
    {
        return Err(constraint(
            "inferenceConfig.maxTokens",
            m,
            "Member must have value greater than or equal to 1",
        ));
    }
    for (name, value) in [("temperature", c.temperature), ("topP", c.top_p)] {
        if let Some(v) = value
            && !(0.0..=1.0).contains(&v)
        {
            let path = format!("inferenceConfig.{name}");
            return Err(constraint(
                &path,
                v,
                if v < 0.0 {
                    "Member must have value greater than or equal to 0"
                } else {
                    "Member must have value less than or equal to 1"
                },
            ));
        }
    }
    if let Some(stops) = &c.stop_sequences {
        if stops.len() > 2500 {
            return Err(constraint(
                "inferenceConfig.stopSequences",
                stops.len(),
                "Member must have length less than or equal to 2500",
            ));
        }
        if let Some(i) = stops.iter().position(String::is_empty) {
            return Err(constraint(
                &format!("inferenceConfig.stopSequences.{}.member", i + 1),
                "",
                "Member must have length greater than or equal to 1",
            ));
        }
    }
    Ok(())
}

/// `additionalModelResponseFieldPaths` (≤ 10 JSON Pointers; an empty or malformed one is a 400) and
/// `requestMetadata` (1–16 entries).
fn validate_request_extras(req: &ConverseRequest) -> Result<(), WireError> {
    if let Some(paths) = &req.additional_model_response_field_paths {
        if paths.len() > 10 {
            return Err(constraint(
                "additionalModelResponseFieldPaths",
                paths.len(),
                "Member must have length less than or equal to 10",
            ));
        }
        for (i, p) in paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(WireError::validation(
                    format!("additionalModelResponseFieldPaths.{i}"),
                    format!(
                        "The JSON Pointer '{p}' at additionalModelResponseFieldPaths.{i} is empty or malformed. \
                         Use a pointer such as /stop_sequence and try again."
                    ),
                ));
            }
        }
    }
    if let Some(meta) = &req.request_metadata
        && !(1..=16).contains(&meta.len())
    {
        return Err(constraint(
            "requestMetadata",
            meta.len(),
            "Member must have between 1 and 16 entries",
        ));
    }
    Ok(())
}

fn valid_tool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn convert_tools(req: &ConverseRequest) -> Result<(Option<Vec<Value>>, ToolRequirement), WireError> {
    let Some(config) = &req.tool_config else {
        return Ok((None, ToolRequirement::Auto));
    };
    if config.tools.is_empty() {
        return Err(constraint(
            "toolConfig.tools",
            "[]",
            "Member must have length greater than or equal to 1",
        ));
    }
    let mut out = Vec::with_capacity(config.tools.len());
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, tool) in config.tools.iter().enumerate() {
        let spec = match tool {
            Tool::ToolSpec(spec) => spec,
            Tool::CachePoint(_) => continue,
            Tool::SystemTool(_) => {
                return Err(WireError::validation(
                    format!("toolConfig.tools.{i}.systemTool"),
                    format!(
                        "This model doesn't support the systemTool at toolConfig.tools.{i}. Remove it and try \
                         again."
                    ),
                ));
            }
        };
        if !valid_tool_name(&spec.name) {
            return Err(constraint(
                &format!("toolConfig.tools.{}.member.toolSpec.name", i + 1),
                &spec.name,
                "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]{1,64}",
            ));
        }
        if let Some(first) = names.insert(&spec.name, i) {
            return Err(WireError::validation(
                format!("toolConfig.tools.{i}.toolSpec.name"),
                format!(
                    "The tool name {} at toolConfig.tools.{i} is already used by toolConfig.tools.{first}. \
                     Use unique tool names and try again.",
                    spec.name
                ),
            ));
        }
        let schema = spec.input_schema.json();
        let is_object = schema.is_object() && schema.get("type").is_none_or(|t| t.as_str() == Some("object"));
        if !is_object {
            return Err(WireError::validation(
                format!("toolConfig.tools.{i}.toolSpec.inputSchema.json"),
                format!(
                    "The inputSchema of the tool {} at toolConfig.tools.{i} must be a JSON Schema whose \
                     top-level type is object.",
                    spec.name
                ),
            ));
        }
        let mut function = Map::new();
        function.insert("name".into(), spec.name.clone().into());
        if let Some(d) = &spec.description {
            function.insert("description".into(), d.clone().into());
        }
        function.insert("parameters".into(), schema.clone());
        out.push(json!({"type": "function", "function": function}));
    }
    let requirement = match &config.tool_choice {
        None | Some(ToolChoice::Auto(_)) => ToolRequirement::Auto,
        Some(ToolChoice::Any(_)) => ToolRequirement::Any,
        Some(ToolChoice::Tool(t)) => {
            if !names.contains_key(t.name.as_str()) {
                return Err(WireError::validation(
                    "toolConfig.toolChoice.tool.name",
                    format!(
                        "The tool {} named by toolConfig.toolChoice.tool is not defined in toolConfig.tools. \
                         Define the tool and try again.",
                        t.name
                    ),
                ));
            }
            ToolRequirement::Named(t.name.clone())
        }
    };
    Ok((Some(out), requirement))
}
