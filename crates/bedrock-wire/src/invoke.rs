//! InvokeModel / InvokeModelWithResponseStream bodies for imported models (bedrock-cmi.md §3.6).
//!
//! The request format is chosen by the fields present, as the service does: `messages` selects the OpenAI chat
//! completion format, `prompt` + `max_tokens` the OpenAI (Mistral-style) completion format, and `prompt` otherwise
//! (normally with `max_gen_len`) the Bedrock (Llama-style) completion format.
//!
//! Response shapes:
//! - Bedrock completion: `{"generation", "prompt_token_count", "generation_token_count", "stop_reason", "logprobs"}`;
//! - OpenAI completion: `{"id", "object": "text_completion", "created", "model", "choices": [{"index", "text",
//!   "finish_reason", "logprobs"}], "usage"}`, plus `outputs: [{"text", "stop_reason"}]` — the field the Mistral
//!   import samples read (`outputs[0].text`) — so that clients written for either generation of imports work;
//! - OpenAI chat: `chat.completion`, tool calls as OpenAI `tool_calls` with string `arguments`.
//!
//! Streaming: each event is a `chunk` whose payload is `{"bytes": base64(json)}` (see
//! [`crate::eventstream::encode_chunk`]); the JSON inside is one of the `*Chunk` types below. The last chunk carries
//! `amazon-bedrock-invocationMetrics`. The exact chunk JSON of imported models is not documented (bedrock-cmi.md
//! §8.6); these shapes follow the foundation-model Llama stream and the OpenAI streaming format.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::WireError;
use crate::converse::parse_json;
use crate::structured::ToolRequirement;
use crate::structured::{StructuredOutput, ToolChoiceRequest, parse_tool_choice, structured_output_of};

/// A parsed InvokeModel request body.
#[derive(Debug, Clone, PartialEq)]
pub enum InvokeRequest {
    /// `prompt` (+ `max_gen_len`): Llama-style.
    BedrockCompletion(BedrockCompletionRequest),
    /// `prompt` + `max_tokens`: OpenAI completion / Mistral-style.
    OpenAiCompletion(OpenAiCompletionRequest),
    /// `messages`: OpenAI chat completion.
    OpenAiChat(ChatCompletionRequest),
}

/// Which response shape a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvokeFormat {
    /// Llama-style `generation`.
    BedrockCompletion,
    /// `text_completion` + `outputs`.
    OpenAiCompletion,
    /// `chat.completion`.
    OpenAiChat,
}

/// Either one string or a list of strings (OpenAI `stop`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// Llama-style request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BedrockCompletionRequest {
    /// The prompt, already templated by the caller.
    pub prompt: String,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_gen_len: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling (accepted, not in the Llama schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences (accepted, not in the Llama schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// Return per-token log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_logprobs: Option<bool>,
    /// `{"type": "json_object" | "json_schema", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Base64 images (Llama 3.2 vision foundation models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<Vec<String>>,
}

/// OpenAI completion / Mistral-style request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct OpenAiCompletionRequest {
    /// The prompt, already templated by the caller.
    pub prompt: String,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Log probabilities of the top tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    /// `{"type": "json_object" | "json_schema", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `{"json" | "regex" | "choice" | "grammar": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_outputs: Option<Value>,
    /// Accepted and ignored: the operation decides whether the answer streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// OpenAI chat completion request.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ChatCompletionRequest {
    /// OpenAI messages (`{"role", "content": string | [parts], "tool_calls"?, "tool_call_id"?}`), kept as JSON.
    pub messages: Vec<Value>,
    /// Maximum tokens to generate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Newer OpenAI name for `max_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// Top-k sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<OneOrMany>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// OpenAI function tools (`[{"type": "function", "function": {…}}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Value>>,
    /// `"auto"`, `"none"`, `"required"` or `{"type": "function", "function": {"name"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    /// `{"type": "json_object" | "json_schema", …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// `{"json" | "regex" | "choice" | "grammar": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_outputs: Option<Value>,
    /// Return log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Number of top log probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// Model name (ignored: the model is in the URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Accepted and ignored: the operation decides whether the answer streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// The generation settings common to every format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InvokeParams {
    /// Maximum tokens to generate, if the request set it.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Top-k sampling.
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Seed.
    pub seed: Option<u64>,
}

impl InvokeRequest {
    /// The response format the request selects.
    pub fn format(&self) -> InvokeFormat {
        match self {
            InvokeRequest::BedrockCompletion(_) => InvokeFormat::BedrockCompletion,
            InvokeRequest::OpenAiCompletion(_) => InvokeFormat::OpenAiCompletion,
            InvokeRequest::OpenAiChat(_) => InvokeFormat::OpenAiChat,
        }
    }

    /// The structured output the request asks for (`response_format`; `structured_outputs` in the OpenAI formats).
    pub fn structured_output(&self) -> Result<Option<StructuredOutput>, WireError> {
        match self {
            InvokeRequest::BedrockCompletion(r) => structured_output_of(r.response_format.as_ref(), None),
            InvokeRequest::OpenAiCompletion(r) => {
                structured_output_of(r.response_format.as_ref(), r.structured_outputs.as_ref())
            }
            InvokeRequest::OpenAiChat(r) => {
                structured_output_of(r.response_format.as_ref(), r.structured_outputs.as_ref())
            }
        }
    }

    /// What `tool_choice` asks for (chat requests; the completion formats take no tools).
    pub fn tool_choice(&self) -> Result<ToolChoiceRequest, WireError> {
        match self {
            InvokeRequest::OpenAiChat(r) => parse_tool_choice(r.tool_choice.as_ref(), r.tools.as_deref()),
            _ => Ok(ToolChoiceRequest::Tools(ToolRequirement::Auto)),
        }
    }

    /// Checks what [`parse_invoke_request`] checks beyond the body's shape: the generation settings, the structured
    /// output and `tool_choice`. For a request built rather than parsed (the Responses API's, mapped onto chat).
    pub fn check(&self) -> Result<(), WireError> {
        validate_params(&self.params())?;
        self.structured_output()?;
        self.tool_choice()?;
        Ok(())
    }

    /// The generation settings.
    pub fn params(&self) -> InvokeParams {
        match self {
            InvokeRequest::BedrockCompletion(r) => InvokeParams {
                max_tokens: r.max_gen_len,
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: r.top_k,
                stop: r.stop.as_ref().map(OneOrMany::to_vec).unwrap_or_default(),
                seed: None,
            },
            InvokeRequest::OpenAiCompletion(r) => InvokeParams {
                max_tokens: r.max_tokens,
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: r.top_k,
                stop: r.stop.as_ref().map(OneOrMany::to_vec).unwrap_or_default(),
                seed: r.seed,
            },
            InvokeRequest::OpenAiChat(r) => InvokeParams {
                max_tokens: r.max_completion_tokens.or(r.max_tokens),
                temperature: r.temperature,
                top_p: r.top_p,
                top_k: r.top_k,
                stop: r.stop.as_ref().map(OneOrMany::to_vec).unwrap_or_default(),
                seed: r.seed,
            },
        }
    }
}

fn malformed(reason: impl std::fmt::Display) -> WireError {
    WireError::validation(
        "",
        format!("Malformed input request: {reason}, please reformat your input and try again."),
    )
}

/// Parses an InvokeModel body and picks its format by the fields present.
pub fn parse_invoke_request(body: &[u8]) -> Result<InvokeRequest, WireError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("#: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(malformed("#: expected type: JSONObject, found: JSONArray or value"));
    };
    let request = if object.contains_key("messages") {
        InvokeRequest::OpenAiChat(parse_json(body).map_err(as_malformed)?)
    } else if !object.contains_key("prompt") {
        return Err(malformed("#: required key [prompt] not found"));
    } else if object.contains_key("max_tokens") {
        InvokeRequest::OpenAiCompletion(parse_json(body).map_err(as_malformed)?)
    } else {
        InvokeRequest::BedrockCompletion(parse_json(body).map_err(as_malformed)?)
    };
    request.check()?;
    Ok(request)
}

fn as_malformed(e: WireError) -> WireError {
    match e {
        WireError::Json { path, reason } => malformed(format!("#/{}: {reason}", path.replace('.', "/"))),
        other => other,
    }
}

fn validate_params(p: &InvokeParams) -> Result<(), WireError> {
    if p.max_tokens == Some(0) {
        return Err(malformed("#/max_tokens: 0 is not greater or equal to 1"));
    }
    if let Some(t) = p.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(malformed(format!("#/temperature: {t} is outside the range 0..2")));
    }
    if let Some(t) = p.top_p
        && !(0.0..=1.0).contains(&t)
    {
        return Err(malformed(format!("#/top_p: {t} is outside the range 0..1")));
    }
    Ok(())
}

impl ChatCompletionRequest {
    /// The messages as the chat template takes them: text-only content part lists become one string (parts joined
    /// with `\n`), `null` content is removed. Image parts are refused, since the local engine runs text models.
    pub fn template_messages(&self) -> Result<Vec<Value>, WireError> {
        let mut out = Vec::with_capacity(self.messages.len());
        for (i, message) in self.messages.iter().enumerate() {
            let Some(object) = message.as_object() else {
                return Err(malformed(format!("#/messages/{i}: expected type: JSONObject")));
            };
            if !object.get("role").is_some_and(Value::is_string) {
                return Err(malformed(format!("#/messages/{i}: required key [role] not found")));
            }
            let mut object = object.clone();
            match object.get("content") {
                Some(Value::Array(parts)) => {
                    let mut texts = Vec::with_capacity(parts.len());
                    for (j, part) in parts.iter().enumerate() {
                        match part.get("type").and_then(Value::as_str) {
                            Some("text") => {
                                texts.push(part.get("text").and_then(Value::as_str).unwrap_or_default().to_owned())
                            }
                            other => {
                                return Err(malformed(format!(
                                    "#/messages/{i}/content/{j}: content part type {} is not supported by this \
                                     model",
                                    other.unwrap_or("(missing)")
                                )));
                            }
                        }
                    }
                    object.insert("content".into(), Value::String(texts.join("\n")));
                }
                Some(Value::Null) => {
                    object.remove("content");
                }
                _ => {}
            }
            out.push(Value::Object(object));
        }
        if out.is_empty() {
            return Err(malformed("#/messages: expected minimum item count: 1, found: 0"));
        }
        Ok(out)
    }
}

/// Why generation ended, in the terms of the Invoke formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinishReason {
    /// End of turn or stop sequence.
    Stop,
    /// The token limit was reached.
    Length,
    /// The model called tools (chat format only).
    ToolCalls,
}

impl FinishReason {
    /// `stop_reason` of the Bedrock completion format and of `outputs[]`.
    pub fn bedrock(self) -> &'static str {
        match self {
            FinishReason::Stop | FinishReason::ToolCalls => "stop",
            FinishReason::Length => "length",
        }
    }

    /// `finish_reason` of the OpenAI formats.
    pub fn openai(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ToolCalls => "tool_calls",
        }
    }
}

/// Llama-style response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BedrockCompletionResponse {
    /// The generated text.
    pub generation: String,
    /// Prompt tokens.
    pub prompt_token_count: u32,
    /// Generated tokens.
    pub generation_token_count: u32,
    /// `stop` or `length`.
    pub stop_reason: String,
    /// Log probabilities when requested; `null` otherwise.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

impl BedrockCompletionResponse {
    /// A response without log probabilities.
    pub fn new(generation: String, prompt_tokens: u32, generated_tokens: u32, finish: FinishReason) -> Self {
        BedrockCompletionResponse {
            generation,
            prompt_token_count: prompt_tokens,
            generation_token_count: generated_tokens,
            stop_reason: finish.bedrock().to_owned(),
            logprobs: None,
        }
    }
}

/// OpenAI `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OpenAiUsage {
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Their sum.
    pub total_tokens: u32,
}

impl OpenAiUsage {
    /// Usage with the total computed (saturating).
    pub fn new(prompt_tokens: u32, completion_tokens: u32) -> Self {
        OpenAiUsage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens.saturating_add(completion_tokens),
        }
    }
}

/// One `choices[]` entry of a `text_completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChoice {
    /// Always 0 (one choice).
    pub index: u32,
    /// The generated text.
    pub text: String,
    /// `stop`, `length`, or `null` in a non-final stream chunk.
    pub finish_reason: Option<String>,
    /// Log probabilities; `null` unless requested.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// One `outputs[]` entry (the Mistral-style imported-model shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MistralOutput {
    /// The generated text.
    pub text: String,
    /// `stop` or `length`; `null` in a non-final stream chunk.
    pub stop_reason: Option<String>,
}

/// OpenAI completion response (`object: text_completion`), with the Mistral-style `outputs` alongside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionResponse {
    /// `cmpl-…`.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (absent in non-final stream chunks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
    /// The same text as `choices[0].text`, for clients of Mistral-style imports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<MistralOutput>>,
}

impl CompletionResponse {
    /// A complete (non-streaming) response.
    pub fn new(
        id: String,
        created: u64,
        model: Option<String>,
        text: String,
        finish: FinishReason,
        usage: OpenAiUsage,
    ) -> Self {
        CompletionResponse {
            id,
            object: "text_completion".to_owned(),
            created,
            model,
            choices: vec![CompletionChoice {
                index: 0,
                text: text.clone(),
                finish_reason: Some(finish.openai().to_owned()),
                logprobs: None,
            }],
            usage: Some(usage),
            outputs: Some(vec![MistralOutput {
                text,
                stop_reason: Some(finish.bedrock().to_owned()),
            }]),
        }
    }
}

/// An OpenAI tool call in a response (`arguments` is JSON *text*).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiToolCall {
    /// The call id.
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Name and arguments.
    pub function: OpenAiFunctionCall,
}

impl OpenAiToolCall {
    /// A function call with `arguments` serialized to JSON text.
    pub fn new(id: String, name: String, arguments: &Value) -> Self {
        OpenAiToolCall {
            id,
            kind: "function".to_owned(),
            function: OpenAiFunctionCall {
                name,
                arguments: arguments.to_string(),
            },
        }
    }
}

/// `function` of an OpenAI tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenAiFunctionCall {
    /// The tool's name.
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

/// The assistant message of a chat completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `assistant`.
    pub role: String,
    /// The text (`null` when the model only called tools).
    pub content: Option<String>,
    /// Reasoning text, when the model produced any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls, when the model made any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<OpenAiToolCall>>,
}

/// One `choices[]` entry of a `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The answer.
    pub message: ChatMessage,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: Option<String>,
    /// `null` unless requested.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// OpenAI chat completion response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionResponse {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: OpenAiUsage,
}

impl ChatCompletionResponse {
    /// A complete response. `finish` becomes `tool_calls` when there are tool calls and the model stopped normally.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: String,
        created: u64,
        model: String,
        content: Option<String>,
        reasoning: Option<String>,
        tool_calls: Vec<OpenAiToolCall>,
        finish: FinishReason,
        usage: OpenAiUsage,
    ) -> Self {
        let finish = if finish == FinishReason::Stop && !tool_calls.is_empty() {
            FinishReason::ToolCalls
        } else {
            finish
        };
        ChatCompletionResponse {
            id,
            object: "chat.completion".to_owned(),
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: ChatMessage {
                    role: "assistant".to_owned(),
                    content,
                    reasoning_content: reasoning,
                    tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                },
                finish_reason: Some(finish.openai().to_owned()),
                logprobs: None,
            }],
            usage,
        }
    }
}

/// `amazon-bedrock-invocationMetrics`, sent in the last stream chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationMetrics {
    /// Prompt tokens.
    pub input_token_count: u32,
    /// Generated tokens.
    pub output_token_count: u32,
    /// Total time in milliseconds.
    pub invocation_latency: u64,
    /// Time to the first chunk in milliseconds.
    pub first_byte_latency: u64,
}

/// The JSON key of [`InvocationMetrics`] in a chunk.
pub const INVOCATION_METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

/// A Llama-style stream chunk: `{"generation", "prompt_token_count", "generation_token_count", "stop_reason"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BedrockCompletionChunk {
    /// The text of this chunk.
    pub generation: String,
    /// Prompt tokens (first chunk only, `null` afterwards).
    pub prompt_token_count: Option<u32>,
    /// Tokens generated so far.
    pub generation_token_count: u32,
    /// `null` until the last chunk.
    pub stop_reason: Option<String>,
    /// Present in the last chunk.
    #[serde(
        default,
        rename = "amazon-bedrock-invocationMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    pub invocation_metrics: Option<InvocationMetrics>,
}

/// A streamed `text_completion` chunk (OpenAI completion format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionChunk {
    /// Same id in every chunk.
    pub id: String,
    /// `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// One choice with this chunk's text.
    pub choices: Vec<CompletionChoice>,
    /// Token counts, in the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
    /// Mistral-style mirror of the chunk's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<MistralOutput>>,
    /// Present in the last chunk.
    #[serde(
        default,
        rename = "amazon-bedrock-invocationMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    pub invocation_metrics: Option<InvocationMetrics>,
}

impl CompletionChunk {
    /// A chunk with `text`; `finish` is set on the last chunk only.
    pub fn new(id: String, created: u64, model: Option<String>, text: String, finish: Option<FinishReason>) -> Self {
        CompletionChunk {
            id,
            object: "text_completion".to_owned(),
            created,
            model,
            choices: vec![CompletionChoice {
                index: 0,
                text: text.clone(),
                finish_reason: finish.map(|f| f.openai().to_owned()),
                logprobs: None,
            }],
            usage: None,
            outputs: Some(vec![MistralOutput {
                text,
                stop_reason: finish.map(|f| f.bedrock().to_owned()),
            }]),
            invocation_metrics: None,
        }
    }
}

/// A streamed `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatCompletionChunk {
    /// Same id in every chunk.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model id.
    pub model: String,
    /// One choice with this chunk's delta.
    pub choices: Vec<ChatChunkChoice>,
    /// Token counts, in the last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<OpenAiUsage>,
    /// Present in the last chunk.
    #[serde(
        default,
        rename = "amazon-bedrock-invocationMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    pub invocation_metrics: Option<InvocationMetrics>,
}

/// `choices[]` of a chat chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What this chunk adds.
    pub delta: ChatDelta,
    /// `null` until the last chunk.
    pub finish_reason: Option<String>,
    /// `null` unless requested.
    #[serde(default)]
    pub logprobs: Option<Value>,
}

/// `delta` of a chat chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ChatDelta {
    /// `assistant`, in the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Text to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Reasoning to append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool calls (each complete, with its `index`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
}

impl ChatCompletionChunk {
    /// A chunk carrying `delta`; `finish` is set on the last chunk only.
    pub fn new(id: String, created: u64, model: String, delta: ChatDelta, finish: Option<FinishReason>) -> Self {
        ChatCompletionChunk {
            id,
            object: "chat.completion.chunk".to_owned(),
            created,
            model,
            choices: vec![ChatChunkChoice {
                index: 0,
                delta,
                finish_reason: finish.map(|f| f.openai().to_owned()),
                logprobs: None,
            }],
            usage: None,
            invocation_metrics: None,
        }
    }

    /// The streamed form of a tool call: `{"index", "id", "type": "function", "function": {"name", "arguments"}}`.
    pub fn tool_call_delta(index: u32, call: &OpenAiToolCall) -> Value {
        serde_json::json!({
            "index": index,
            "id": call.id,
            "type": call.kind,
            "function": {"name": call.function.name, "arguments": call.function.arguments},
        })
    }
}
