//! The OpenAI-compatible surfaces Bedrock serves on bedrock-runtime (bedrock-cmi.md §9): Chat Completions
//! (`POST /v1/chat/completions`, also under `/openai/v1`) and the Responses API (`POST /openai/v1/responses`). The
//! `model` member names the model (an imported model's ARN or name); the answers and their server-sent-event streams
//! are OpenAI's shapes, and errors are OpenAI's `{"error": …}` bodies with the same statuses, which the OpenAI SDKs
//! turn into their typed errors.
//!
//! Chat Completions is InvokeModel's chat format with the model in the body: the same request reading
//! ([`super::invoke::prepare`]) and the same assembler. Responses takes `input` (a string or a list of messages and
//! function-call items), `instructions`, function `tools` and `text.format`, and is mapped onto that same request.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use bedrock_wire::invoke::{ChatCompletionRequest, InvokeFormat, InvokeRequest};
use bedrock_wire::{InvokeAssembler, Piece};
use bytes::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use crate::error::{ApiError, json as json_response};
use crate::ids::{new_id, unix_now};
use crate::runtime::generation::{Finish, Generation, Sink, streaming_response};
use crate::runtime::invoke::prepare;
use crate::runtime::resolve;
use crate::state::{App, InvokeSlot};

/// Tokens an answer may take when the request sets no limit.
const DEFAULT_MAX_TOKENS: usize = 4096;

/// The paths of the OpenAI surfaces, and which each is.
pub(crate) fn surface(path: &str) -> Option<Surface> {
    match path {
        "/v1/chat/completions" | "/openai/v1/chat/completions" => Some(Surface::ChatCompletions),
        "/openai/v1/responses" | "/v1/responses" => Some(Surface::Responses),
        _ => None,
    }
}

/// An OpenAI-compatible surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    ChatCompletions,
    Responses,
}

/// Answers a request to `surface`, with OpenAI's error shape on failure.
pub(crate) async fn handle(app: &Arc<App>, surface: Surface, body: &[u8]) -> Response {
    let result = match surface {
        Surface::ChatCompletions => chat_completions(app, body).await,
        Surface::Responses => responses(app, body).await,
    };
    result.unwrap_or_else(|e| e.openai_response())
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::validation(format!("The request body is not valid JSON: {e}.")))?;
    if !v.is_object() {
        return Err(ApiError::validation("The request body must be a JSON object."));
    }
    Ok(v)
}

fn model_of(v: &Value) -> Result<&str, ApiError> {
    v.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::validation("The request must name a model in `model` (an imported model's ARN or name).")
        })
}

/// Starts the generation of an InvokeModel chat-format request on the model `model_id`, holding an invocation slot
/// for as long as the caller keeps it.
async fn generate(
    app: &Arc<App>,
    model_id: &str,
    req: &InvokeRequest,
    started: Instant,
) -> Result<(Generation, InvokeSlot), ApiError> {
    let model = resolve(app, model_id)?;
    let slot = app.invoke_slot()?;
    let loaded = app.runtime.get(&model).await?;
    let (gen_req, parser) = prepare(&loaded, req, DEFAULT_MAX_TOKENS)?;
    let generation = Generation::start(app, &model, loaded, gen_req, parser, started).await?;
    Ok((generation, slot))
}

async fn chat_completions(app: &Arc<App>, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let v = parse_body(body)?;
    let model_id = model_of(&v)?.to_string();
    let req = bedrock_wire::parse_invoke_request(body)?;
    if req.format() != InvokeFormat::OpenAiChat {
        return Err(ApiError::validation("A chat completion needs `messages`."));
    }
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = v
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let (generation, _slot) = generate(app, &model_id, &req, started).await?;
    let asm = InvokeAssembler::new(
        InvokeFormat::OpenAiChat,
        format!("chatcmpl-{}", new_id()),
        unix_now(),
        model_id,
        generation.prompt_tokens(),
    );
    if stream {
        let body = generation.stream(ChatSse { asm, include_usage });
        return Ok(streaming_response(
            body,
            "text/event-stream",
            &[("cache-control", "no-cache")],
        ));
    }
    let (pieces, finish) = generation.collect().await?;
    let mut asm = asm;
    asm.push(pieces);
    Ok(json_response(StatusCode::OK, &asm.response(&finish.invoke())))
}

/// One server-sent event carrying `v`.
fn sse(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// One named server-sent event (the Responses stream names its events).
fn sse_named(event: &str, v: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {v}\n\n"))
}

/// The error OpenAI streams send in place of a chunk.
fn sse_error(e: &ApiError) -> Bytes {
    sse(&json!({"error": {"message": e.message, "type": "api_error", "code": e.kind.name()}}))
}

/// Chat Completions' stream: `chat.completion.chunk` events, the finish, the usage when asked for, `[DONE]`.
struct ChatSse {
    asm: InvokeAssembler,
    include_usage: bool,
}

impl Sink for ChatSse {
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Bytes> {
        self.asm
            .push(pieces)
            .map(|c| sse(&strip_metrics(c)))
            .into_iter()
            .collect()
    }
    fn finish(&mut self, finish: &Finish) -> Vec<Bytes> {
        let mut out: Vec<Bytes> = self
            .asm
            .openai_finish_chunks(&finish.invoke(), self.include_usage)
            .iter()
            .map(sse)
            .collect();
        out.push(Bytes::from_static(b"data: [DONE]\n\n"));
        out
    }
    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![sse_error(e)]
    }
}

/// OpenAI's chunks carry no Bedrock invocation metrics.
fn strip_metrics(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove(bedrock_wire::invoke::INVOCATION_METRICS_KEY);
    }
    v
}

/// A Responses API request as the chat request it is: `instructions` a system message, `input` a user message or a
/// list of message, `function_call` and `function_call_output` items; function tools in the chat shape;
/// `text.format` a `response_format`; `max_output_tokens` the token limit.
fn responses_to_chat(v: &Value) -> Result<ChatCompletionRequest, ApiError> {
    let mut messages = Vec::new();
    if let Some(i) = v.get("instructions").and_then(Value::as_str) {
        messages.push(json!({"role": "system", "content": i}));
    }
    match v.get("input") {
        Some(Value::String(s)) => messages.push(json!({"role": "user", "content": s})),
        Some(Value::Array(items)) => {
            for (n, item) in items.iter().enumerate() {
                messages.push(response_item(item).ok_or_else(|| {
                    ApiError::validation(format!(
                        "input[{n}] is not a message, function_call or function_call_output item: {item}"
                    ))
                })?);
            }
        }
        _ => {
            return Err(ApiError::validation(
                "The request needs `input`: a string or a list of items.",
            ));
        }
    }
    let tools: Option<Vec<Value>> = v.get("tools").and_then(Value::as_array).map(|ts| {
        ts.iter()
            .filter(|t| t.get("type").and_then(Value::as_str) == Some("function"))
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.get("name").cloned().unwrap_or(Value::Null),
                    "description": t.get("description").cloned().unwrap_or(Value::Null),
                    "parameters": t.get("parameters").cloned().unwrap_or_else(|| json!({"type": "object"})),
                }})
            })
            .collect()
    });
    let tool_choice = v.get("tool_choice").map(|c| match c {
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}})
        }
        other => other.clone(),
    });
    let response_format = v
        .pointer("/text/format")
        .map(|f| match f.get("type").and_then(Value::as_str) {
            Some("json_schema") => json!({"type": "json_schema", "json_schema": {
                "name": f.get("name").cloned().unwrap_or_else(|| "answer".into()),
                "schema": f.get("schema").cloned().unwrap_or_else(|| json!({})),
                "strict": f.get("strict").cloned().unwrap_or(Value::Bool(false)),
            }}),
            _ => f.clone(),
        });
    let response_format = response_format.filter(|f| f.get("type").and_then(Value::as_str) != Some("text"));
    let as_u32 = |k: &str| v.get(k).and_then(Value::as_u64).and_then(|n| u32::try_from(n).ok());
    let as_f32 = |k: &str| v.get(k).and_then(Value::as_f64).map(|n| n as f32);
    Ok(ChatCompletionRequest {
        messages,
        max_tokens: as_u32("max_output_tokens"),
        temperature: as_f32("temperature"),
        top_p: as_f32("top_p"),
        tools: tools.filter(|t| !t.is_empty()),
        tool_choice,
        response_format,
        ..ChatCompletionRequest::default()
    })
}

/// One Responses input item as a chat message.
fn response_item(item: &Value) -> Option<Value> {
    let kind = item.get("type").and_then(Value::as_str).unwrap_or("message");
    match kind {
        "message" => {
            let role = item.get("role")?.as_str()?;
            let content = match item.get("content")? {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => return None,
            };
            let role = if role == "developer" { "system" } else { role };
            Some(json!({"role": role, "content": content}))
        }
        "function_call" => Some(json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": item.get("call_id")?, "type": "function",
            "function": {"name": item.get("name")?, "arguments": item.get("arguments")?},
        }]})),
        "function_call_output" => Some(json!({
            "role": "tool", "tool_call_id": item.get("call_id")?, "content": item.get("output")?,
        })),
        _ => None,
    }
}

async fn responses(app: &Arc<App>, body: &[u8]) -> Result<Response, ApiError> {
    let started = Instant::now();
    let v = parse_body(body)?;
    let model_id = model_of(&v)?.to_string();
    let req = InvokeRequest::OpenAiChat(responses_to_chat(&v)?);
    req.check()?;
    let stream = v.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let (generation, _slot) = generate(app, &model_id, &req, started).await?;
    let response = ResponseBuilder::new(&model_id);
    if stream {
        let body = generation.stream(ResponsesSse {
            builder: response,
            text_open: false,
            sequence: 0,
        });
        return Ok(streaming_response(
            body,
            "text/event-stream",
            &[("cache-control", "no-cache")],
        ));
    }
    let (pieces, finish) = generation.collect().await?;
    let mut response = response;
    for p in pieces {
        response.push(p);
    }
    Ok(json_response(StatusCode::OK, &response.done(&finish)))
}

/// A Responses API `response` object, built from pieces.
struct ResponseBuilder {
    id: String,
    created: u64,
    model: String,
    reasoning: String,
    text: String,
    calls: Vec<Value>,
    message_id: String,
}

impl ResponseBuilder {
    fn new(model: &str) -> Self {
        ResponseBuilder {
            id: format!("resp_{}", new_id()),
            created: unix_now(),
            model: model.to_string(),
            reasoning: String::new(),
            text: String::new(),
            calls: Vec::new(),
            message_id: format!("msg_{}", new_id()),
        }
    }

    /// Adds a piece; returns the function-call item it makes, if it is one.
    fn push(&mut self, p: Piece) -> Option<Value> {
        match p {
            Piece::Text(t) => self.text.push_str(&t),
            Piece::Reasoning(t) => self.reasoning.push_str(&t),
            Piece::ToolCall { id, name, input } => {
                let item = json!({"type": "function_call", "id": format!("fc_{}", new_id()), "call_id": id,
                    "name": name, "arguments": input.to_string(), "status": "completed"});
                self.calls.push(item.clone());
                return Some(item);
            }
        }
        None
    }

    fn message(&self) -> Value {
        json!({"type": "message", "id": self.message_id, "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": self.text, "annotations": []}]})
    }

    fn object(&self, status: &str, output: Vec<Value>, usage: Value, incomplete: Value) -> Value {
        json!({"id": self.id, "object": "response", "created_at": self.created, "status": status,
            "model": self.model, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
            "tools": [], "incomplete_details": incomplete, "error": null, "usage": usage})
    }

    fn done(&self, finish: &Finish) -> Value {
        let mut output = Vec::new();
        if !self.reasoning.is_empty() {
            output.push(
                json!({"type": "reasoning", "id": format!("rs_{}", self.message_id), "summary": [],
                "content": [{"type": "reasoning_text", "text": self.reasoning}]}),
            );
        }
        if !self.text.is_empty() || self.calls.is_empty() {
            output.push(self.message());
        }
        output.extend(self.calls.iter().cloned());
        let (status, incomplete) = match finish.stop {
            infer_engine::StopReason::MaxTokens => ("incomplete", json!({"reason": "max_output_tokens"})),
            _ => ("completed", Value::Null),
        };
        let usage = json!({"input_tokens": finish.prompt_tokens, "output_tokens": finish.completion_tokens,
            "total_tokens": finish.prompt_tokens.saturating_add(finish.completion_tokens),
            "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}});
        self.object(status, output, usage, incomplete)
    }
}

/// The Responses API's stream: `response.created`, the message's text as `response.output_text.delta` events,
/// each function call as an output item, and `response.completed` with the whole response.
struct ResponsesSse {
    builder: ResponseBuilder,
    text_open: bool,
    sequence: u64,
}

impl ResponsesSse {
    fn event(&mut self, kind: &str, mut v: Value) -> Bytes {
        v["type"] = kind.into();
        v["sequence_number"] = self.sequence.into();
        self.sequence += 1;
        sse_named(kind, &v)
    }
}

impl Sink for ResponsesSse {
    fn start(&mut self) -> Vec<Bytes> {
        let created = self.builder.object("in_progress", Vec::new(), Value::Null, Value::Null);
        vec![self.event("response.created", json!({"response": created}))]
    }
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Bytes> {
        let mut out = Vec::new();
        for p in pieces {
            if let Piece::Text(t) = &p
                && !t.is_empty()
            {
                if !self.text_open {
                    self.text_open = true;
                    let item = json!({"type": "message", "id": self.builder.message_id, "status": "in_progress",
                        "role": "assistant", "content": []});
                    out.push(self.event("response.output_item.added", json!({"output_index": 0, "item": item})));
                    let part = json!({"type": "output_text", "text": "", "annotations": []});
                    out.push(self.event(
                        "response.content_part.added",
                        json!({"item_id": self.builder.message_id, "output_index": 0, "content_index": 0, "part": part}),
                    ));
                }
                let delta = json!({"item_id": self.builder.message_id, "output_index": 0, "content_index": 0,
                    "delta": t, "logprobs": []});
                out.push(self.event("response.output_text.delta", delta));
            }
            if let Some(item) = self.builder.push(p) {
                let index = usize::from(self.text_open) + self.builder.calls.len() - 1;
                out.push(self.event(
                    "response.output_item.added",
                    json!({"output_index": index, "item": item}),
                ));
                out.push(self.event(
                    "response.output_item.done",
                    json!({"output_index": index, "item": item}),
                ));
            }
        }
        out
    }
    fn finish(&mut self, finish: &Finish) -> Vec<Bytes> {
        let mut out = Vec::new();
        if self.text_open {
            let text = self.builder.text.clone();
            let id = self.builder.message_id.clone();
            out.push(self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
            ));
            let part = json!({"type": "output_text", "text": text, "annotations": []});
            out.push(self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": 0, "content_index": 0, "part": part}),
            ));
            let item = self.builder.message();
            out.push(self.event("response.output_item.done", json!({"output_index": 0, "item": item})));
        }
        let done = self.builder.done(finish);
        let kind = if done["status"] == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        out.push(self.event(kind, json!({"response": done})));
        out
    }
    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![self.event(
            "error",
            json!({"code": e.kind.name(), "message": e.message, "param": null}),
        )]
    }
}
