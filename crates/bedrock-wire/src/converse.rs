//! Converse / ConverseStream request and response bodies (restJson1, Smithy member names).
//!
//! Unions (ContentBlock, ToolChoice, …) are externally tagged enums: `{"text": "hi"}`, `{"toolUse": {…}}`, exactly
//! the JSON the AWS SDKs send. Members an imported model cannot use (video, guardContent, …) still parse, carrying
//! their raw JSON, so that the server can refuse them with a ValidationException naming the member instead of a
//! parse error. Unknown top-level request fields are ignored.

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::WireError;

/// A Smithy `blob`: raw bytes, base64 (standard alphabet, padded) in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map(Blob)
            .map_err(|e| serde::de::Error::custom(format!("invalid base64 blob: {e}")))
    }
}

/// The role of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The person (or the tool results sent back for them).
    User,
    /// The model.
    Assistant,
    /// New in the 2023-09-30 model revision; a system turn inside `messages`.
    System,
}

impl Role {
    /// The lowercase name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What they say.
    pub content: Vec<ContentBlock>,
}

/// The `ContentBlock` union (set exactly one member).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    /// Plain text.
    Text(String),
    /// An image (user role only).
    Image(ImageBlock),
    /// A document (user role only).
    Document(DocumentBlock),
    /// A video; parsed but not supported by imported models.
    Video(Value),
    /// Audio; parsed but not supported by imported models.
    Audio(Value),
    /// A tool call the assistant made.
    ToolUse(ToolUseBlock),
    /// The result of a tool call, sent back in a user message.
    ToolResult(ToolResultBlock),
    /// Guardrail content; parsed but not supported.
    GuardContent(Value),
    /// A prompt-cache checkpoint; has no effect on generation and is skipped.
    CachePoint(Value),
    /// The model's reasoning.
    ReasoningContent(ReasoningContentBlock),
    /// Citations; parsed but not supported.
    CitationsContent(Value),
    /// Search results; parsed but not supported.
    SearchResult(Value),
}

impl ContentBlock {
    /// The union member name, as in JSON (`text`, `toolUse`, …).
    pub fn member_name(&self) -> &'static str {
        match self {
            ContentBlock::Text(_) => "text",
            ContentBlock::Image(_) => "image",
            ContentBlock::Document(_) => "document",
            ContentBlock::Video(_) => "video",
            ContentBlock::Audio(_) => "audio",
            ContentBlock::ToolUse(_) => "toolUse",
            ContentBlock::ToolResult(_) => "toolResult",
            ContentBlock::GuardContent(_) => "guardContent",
            ContentBlock::CachePoint(_) => "cachePoint",
            ContentBlock::ReasoningContent(_) => "reasoningContent",
            ContentBlock::CitationsContent(_) => "citationsContent",
            ContentBlock::SearchResult(_) => "searchResult",
        }
    }
}

/// `ImageBlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    /// Where the bytes are.
    pub source: ImageSource,
}

/// `ImageSource` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ImageSource {
    /// Inline bytes (base64 in JSON).
    Bytes(Blob),
    /// An S3 object.
    S3Location(S3Location),
}

/// `S3Location`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// `s3://bucket/key`.
    pub uri: String,
    /// Expected bucket owner account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_owner: Option<String>,
}

/// `DocumentBlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentBlock {
    /// `pdf`, `csv`, `doc`, `docx`, `xls`, `xlsx`, `html`, `txt` or `md`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Document name (1–200 characters).
    pub name: String,
    /// Where the content is.
    pub source: DocumentSource,
    /// Context for citations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Citation settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub citations: Option<Value>,
}

/// `DocumentSource` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DocumentSource {
    /// Inline bytes (base64 in JSON).
    Bytes(Blob),
    /// An S3 object.
    S3Location(S3Location),
    /// Inline text.
    Text(String),
    /// Structured content blocks (`[{"text": …}]`).
    Content(Vec<Value>),
}

/// `ToolUseBlock`: a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlock {
    /// Id pairing the call with its result (`[a-zA-Z0-9_.:-]{1,64}`).
    pub tool_use_id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON document (normally an object).
    pub input: Value,
    /// `server_tool_use` for server-side tools.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `ToolResultBlock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolResultBlock {
    /// The id of the `toolUse` this answers.
    pub tool_use_id: String,
    /// The result.
    pub content: Vec<ToolResultContentBlock>,
    /// Whether the tool succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ToolResultStatus>,
    /// Result type for server tools.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `ToolResultStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolResultStatus {
    /// The tool ran.
    Success,
    /// The tool failed; the content describes the error.
    Error,
}

/// `ToolResultContentBlock` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContentBlock {
    /// A JSON document.
    Json(Value),
    /// Text.
    Text(String),
    /// An image.
    Image(ImageBlock),
    /// A document.
    Document(DocumentBlock),
    /// A video; parsed but not supported.
    Video(Value),
    /// Search results; parsed but not supported.
    SearchResult(Value),
}

/// `ReasoningContentBlock` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningContentBlock {
    /// Readable reasoning.
    ReasoningText(ReasoningTextBlock),
    /// Encrypted reasoning (base64 in JSON).
    RedactedContent(Blob),
}

/// `ReasoningTextBlock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningTextBlock {
    /// The reasoning.
    pub text: String,
    /// A signature over the reasoning (Anthropic models); never produced here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// `SystemContentBlock` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemContentBlock {
    /// System prompt text.
    Text(String),
    /// Guardrail content; parsed but not supported.
    GuardContent(Value),
    /// A prompt-cache checkpoint; skipped.
    CachePoint(Value),
}

/// `InferenceConfiguration`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceConfig {
    /// Maximum tokens to generate (≥ 1); defaults to the model maximum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// 0..=1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Up to 2500 stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
}

/// `ToolConfiguration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolConfig {
    /// At least one tool.
    pub tools: Vec<Tool>,
    /// Defaults to `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// `Tool` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    /// A function the model may call.
    ToolSpec(ToolSpecification),
    /// A built-in tool of the service; not supported by imported models.
    SystemTool(Value),
    /// A prompt-cache checkpoint; skipped.
    CachePoint(Value),
}

/// `ToolSpecification`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolSpecification {
    /// `[a-zA-Z0-9_-]{1,64}`.
    pub name: String,
    /// What the tool does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema of the input.
    pub input_schema: ToolInputSchema,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `ToolInputSchema` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolInputSchema {
    /// A JSON Schema whose top level is an object.
    Json(Value),
}

impl ToolInputSchema {
    /// The schema document.
    pub fn json(&self) -> &Value {
        match self {
            ToolInputSchema::Json(v) => v,
        }
    }
}

/// `ToolChoice` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    /// The model decides (default).
    Auto(EmptyStruct),
    /// The model must call at least one tool.
    Any(EmptyStruct),
    /// The model must call this tool.
    Tool(SpecificToolChoice),
}

/// An empty structure, `{}` in JSON (`AutoToolChoice`, `AnyToolChoice`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EmptyStruct {}

/// `SpecificToolChoice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecificToolChoice {
    /// The tool to call.
    pub name: String,
}

/// `PerformanceConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerformanceConfig {
    /// `standard` or `optimized`.
    pub latency: String,
}

/// The Converse / ConverseStream request body (`modelId` travels in the URI).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseRequest {
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// System prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Vec<SystemContentBlock>>,
    /// Generation parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    /// Model-specific request fields (any JSON).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    /// JSON Pointers into the model's raw response to return.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_field_paths: Option<Vec<String>>,
    /// Guardrail settings; tolerated, not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_config: Option<Value>,
    /// Prompt-management variables; tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_variables: Option<Value>,
    /// Request metadata (1–16 entries); tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_metadata: Option<serde_json::Map<String, Value>>,
    /// Latency setting; tolerated and echoed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    /// Service tier; tolerated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Value>,
    /// Structured-output settings (`textFormat`: a JSON schema the answer must follow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_config: Option<Value>,
}

/// `StopReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The model finished its turn.
    EndTurn,
    /// The model called a tool.
    ToolUse,
    /// `maxTokens` was reached.
    MaxTokens,
    /// A stop sequence was generated.
    StopSequence,
    /// A guardrail intervened.
    GuardrailIntervened,
    /// Content was filtered.
    ContentFiltered,
    /// The model's output could not be parsed.
    MalformedModelOutput,
    /// A tool call could not be parsed.
    MalformedToolUse,
    /// The context window is full.
    ModelContextWindowExceeded,
}

impl StopReason {
    /// The wire value (`end_turn`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::ToolUse => "tool_use",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::GuardrailIntervened => "guardrail_intervened",
            StopReason::ContentFiltered => "content_filtered",
            StopReason::MalformedModelOutput => "malformed_model_output",
            StopReason::MalformedToolUse => "malformed_tool_use",
            StopReason::ModelContextWindowExceeded => "model_context_window_exceeded",
        }
    }
}

/// `TokenUsage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u32,
    /// Generated tokens.
    pub output_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
    /// Prompt tokens read from the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u32>,
    /// Prompt tokens written to the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<u32>,
}

impl TokenUsage {
    /// Usage with `totalTokens` = input + output (saturating).
    pub fn new(input_tokens: u32, output_tokens: u32) -> Self {
        TokenUsage {
            input_tokens,
            output_tokens,
            total_tokens: input_tokens.saturating_add(output_tokens),
            cache_read_input_tokens: None,
            cache_write_input_tokens: None,
        }
    }
}

/// `ConverseMetrics` / `ConverseStreamMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseMetrics {
    /// Time from request to the end of generation, in milliseconds.
    pub latency_ms: u64,
}

/// `ConverseOutput` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConverseOutput {
    /// The generated assistant message.
    Message(Message),
}

/// The Converse response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    /// The generated message.
    pub output: ConverseOutput,
    /// Why generation stopped.
    pub stop_reason: StopReason,
    /// Token counts.
    pub usage: TokenUsage,
    /// Latency.
    pub metrics: ConverseMetrics,
    /// Fields selected by `additionalModelResponseFieldPaths`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Value>,
    /// Guardrail / prompt-router trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    /// The performance configuration applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    /// The service tier applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Value>,
}

impl ConverseResponse {
    /// The generated message.
    pub fn message(&self) -> &Message {
        match &self.output {
            ConverseOutput::Message(m) => m,
        }
    }
}

/// Builds `additionalModelResponseFields` from the model's raw response and the request's
/// `additionalModelResponseFieldPaths` (JSON Pointers). Each pointer that resolves is copied into the result under
/// the same nested keys (`/a/b` → `{"a": {"b": …}}`); pointers that do not resolve are ignored, as the service does.
/// Returns `None` when nothing resolves.
pub fn select_response_fields(raw: &Value, pointers: &[String]) -> Option<Value> {
    let mut out = Value::Object(serde_json::Map::new());
    let mut any = false;
    for pointer in pointers {
        let Some(found) = raw.pointer(pointer) else {
            continue;
        };
        let keys: Vec<String> = pointer
            .split('/')
            .skip(1)
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
            .collect();
        let Some((last, parents)) = keys.split_last() else {
            continue;
        };
        let mut node = &mut out;
        for key in parents {
            let Value::Object(map) = node else { break };
            node = map
                .entry(key.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
        }
        if let Value::Object(map) = node {
            map.insert(last.clone(), found.clone());
            any = true;
        }
    }
    any.then_some(out)
}

/// Parses a Converse / ConverseStream request body. A parse failure names the member that failed
/// (`messages.1.content.0.toolUse.input`) in [`WireError::Json`].
pub fn parse_converse_request(body: &[u8]) -> Result<ConverseRequest, WireError> {
    parse_json(body)
}

/// Parses any JSON body into `T`, reporting the dotted path of the failing member.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| WireError::Json {
        path: dotted_path(e.path()),
        reason: e.inner().to_string(),
    })?;
    de.end().map_err(|e| WireError::Json {
        path: ".".to_owned(),
        reason: e.to_string(),
    })?;
    Ok(value)
}

fn dotted_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let parts: Vec<String> = path
        .iter()
        .map(|segment| match segment {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.clone(),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => "?".to_owned(),
        })
        .collect();
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join(".")
    }
}
