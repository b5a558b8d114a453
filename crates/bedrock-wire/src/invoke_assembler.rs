//! [`InvokeAssembler`]: one place that turns generated pieces into InvokeModel's answer in each body format, as the
//! chunks of InvokeModelWithResponseStream or as the whole InvokeModel body, so that the two answer alike; and the
//! OpenAI chat chunks that Bedrock's Chat Completions surface streams too.
//!
//! What each format returns (bedrock-cmi.md §3.6):
//! - BedrockCompletion: the text as written. Stream chunks `{"generation", "prompt_token_count" (first chunk only),
//!   "generation_token_count" (chunks so far), "stop_reason": null}`; the last `{"generation": "", …, "stop_reason",
//!   "amazon-bedrock-invocationMetrics"}`.
//! - OpenAICompletion: the text as written, in `choices[0].text` and the Mistral-style `outputs[0].text`.
//! - OpenAIChatCompletion: the text, `reasoning_content` and `tool_calls` read from it. The first chunk carries
//!   `role`; a tool call is streamed whole, with its `index`, when the parser has read it; the last chunk has
//!   `finish_reason` (`tool_calls` when there were calls and the model stopped by itself) and `usage`.

use serde_json::Value;

use crate::Piece;
use crate::invoke::{
    BedrockCompletionChunk, BedrockCompletionResponse, ChatCompletionChunk, ChatCompletionResponse, ChatDelta,
    CompletionChunk, CompletionResponse, FinishReason, InvocationMetrics, InvokeFormat, OpenAiToolCall, OpenAiUsage,
};

/// How a generation ended, with its counts and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvokeFinish {
    /// Why it ended.
    pub reason: FinishReason,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub completion_tokens: u32,
    /// Milliseconds from the request to the end.
    pub latency_ms: u64,
    /// Milliseconds from the request to the first output.
    pub first_byte_ms: u64,
}

impl InvokeFinish {
    fn metrics(&self) -> InvocationMetrics {
        InvocationMetrics {
            input_token_count: self.prompt_tokens,
            output_token_count: self.completion_tokens,
            invocation_latency: self.latency_ms,
            first_byte_latency: self.first_byte_ms,
        }
    }

    fn usage(&self) -> OpenAiUsage {
        OpenAiUsage::new(self.prompt_tokens, self.completion_tokens)
    }
}

/// Builds an InvokeModel answer from pieces, returning the stream chunk each push makes.
#[derive(Debug)]
pub struct InvokeAssembler {
    format: InvokeFormat,
    id: String,
    created: u64,
    model: String,
    /// The whole text so far (completion formats: all of the output; chat: the visible text).
    text: String,
    reasoning: String,
    calls: Vec<OpenAiToolCall>,
    /// Chunks returned so far.
    chunks: u32,
    /// The prompt's tokens, for the first Llama-format chunk.
    prompt_tokens: u32,
}

impl InvokeAssembler {
    /// An assembler for `format`; `id` (`chatcmpl-…`, `cmpl-…`), `created` (Unix seconds) and `model` are repeated in
    /// every OpenAI-shaped chunk. `prompt_tokens` is the prompt's length, which the first Llama-format chunk says.
    pub fn new(format: InvokeFormat, id: String, created: u64, model: String, prompt_tokens: u32) -> Self {
        InvokeAssembler {
            format,
            id,
            created,
            model,
            text: String::new(),
            reasoning: String::new(),
            calls: Vec::new(),
            chunks: 0,
            prompt_tokens,
        }
    }

    /// The `id` prefix of a format's answers: `chatcmpl` for chat, `cmpl` for the completion formats.
    pub fn id_prefix(format: InvokeFormat) -> &'static str {
        match format {
            InvokeFormat::OpenAiChat => "chatcmpl",
            _ => "cmpl",
        }
    }

    /// Adds pieces; returns the stream chunk they make, or `None` when they add nothing.
    pub fn push(&mut self, pieces: Vec<Piece>) -> Option<Value> {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut calls = Vec::new();
        for p in pieces {
            match p {
                Piece::Text(t) => text.push_str(&t),
                Piece::Reasoning(t) => reasoning.push_str(&t),
                Piece::ToolCall { id, name, input } => calls.push(OpenAiToolCall::new(id, name, &input)),
            }
        }
        if self.format != InvokeFormat::OpenAiChat {
            // The completion formats return the output as written.
            text.insert_str(0, &reasoning);
            if text.is_empty() {
                return None;
            }
        } else if text.is_empty() && reasoning.is_empty() && calls.is_empty() && self.chunks > 0 {
            return None;
        }
        self.chunks += 1;
        self.text.push_str(&text);
        self.reasoning.push_str(&reasoning);
        let first_call = self.calls.len();
        self.calls.extend(calls);
        let chunk = match self.format {
            InvokeFormat::BedrockCompletion => to_value(&BedrockCompletionChunk {
                generation: text,
                prompt_token_count: (self.chunks == 1).then_some(self.prompt_tokens),
                generation_token_count: self.chunks,
                stop_reason: None,
                invocation_metrics: None,
            }),
            InvokeFormat::OpenAiCompletion => to_value(&CompletionChunk::new(
                self.id.clone(),
                self.created,
                Some(self.model.clone()),
                text,
                None,
            )),
            InvokeFormat::OpenAiChat => {
                let delta = ChatDelta {
                    role: (self.chunks == 1).then(|| "assistant".to_owned()),
                    content: (!text.is_empty()).then_some(text),
                    reasoning_content: (!reasoning.is_empty()).then_some(reasoning),
                    tool_calls: self.call_deltas(first_call),
                };
                to_value(&ChatCompletionChunk::new(
                    self.id.clone(),
                    self.created,
                    self.model.clone(),
                    delta,
                    None,
                ))
            }
        };
        Some(chunk)
    }

    fn call_deltas(&self, from: usize) -> Option<Vec<Value>> {
        let deltas: Vec<Value> = self.calls[from..]
            .iter()
            .enumerate()
            .map(|(i, c)| ChatCompletionChunk::tool_call_delta(u32::try_from(from + i).unwrap_or(u32::MAX), c))
            .collect();
        (!deltas.is_empty()).then_some(deltas)
    }

    /// The finish reason the answer reports: `tool_calls` when the chat answer has calls and the model stopped by
    /// itself.
    fn reason(&self, finish: &InvokeFinish) -> FinishReason {
        if self.format == InvokeFormat::OpenAiChat && !self.calls.is_empty() && finish.reason == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            finish.reason
        }
    }

    /// The last stream chunk: the finish reason, the counts and `amazon-bedrock-invocationMetrics`.
    pub fn finish_chunk(&mut self, finish: &InvokeFinish) -> Value {
        let reason = self.reason(finish);
        match self.format {
            InvokeFormat::BedrockCompletion => to_value(&BedrockCompletionChunk {
                generation: String::new(),
                prompt_token_count: Some(finish.prompt_tokens),
                generation_token_count: finish.completion_tokens,
                stop_reason: Some(reason.bedrock().to_owned()),
                invocation_metrics: Some(finish.metrics()),
            }),
            InvokeFormat::OpenAiCompletion => {
                let mut c = CompletionChunk::new(
                    self.id.clone(),
                    self.created,
                    Some(self.model.clone()),
                    String::new(),
                    Some(reason),
                );
                c.usage = Some(finish.usage());
                c.invocation_metrics = Some(finish.metrics());
                to_value(&c)
            }
            InvokeFormat::OpenAiChat => {
                let mut c = self.chat_finish(reason);
                c.usage = Some(finish.usage());
                c.invocation_metrics = Some(finish.metrics());
                to_value(&c)
            }
        }
    }

    /// The last chat chunk with only its finish reason (what OpenAI's own stream ends with); no usage, no metrics.
    fn chat_finish(&self, reason: FinishReason) -> ChatCompletionChunk {
        ChatCompletionChunk::new(
            self.id.clone(),
            self.created,
            self.model.clone(),
            ChatDelta::default(),
            Some(reason),
        )
    }

    /// The OpenAI Chat Completions stream's ending: the chunk with the finish reason, then (when the client asked
    /// for it with `stream_options.include_usage`) a chunk with no choices and the usage, as OpenAI sends them.
    pub fn openai_finish_chunks(&self, finish: &InvokeFinish, include_usage: bool) -> Vec<Value> {
        let last = self.chat_finish(self.reason(finish));
        let mut out = vec![to_value(&last)];
        if include_usage {
            let mut usage = last;
            usage.choices.clear();
            usage.usage = Some(finish.usage());
            out.push(to_value(&usage));
        }
        out
    }

    /// The whole (non-streaming) answer, from everything pushed.
    pub fn response(self, finish: &InvokeFinish) -> Value {
        let reason = self.reason(finish);
        match self.format {
            InvokeFormat::BedrockCompletion => to_value(&BedrockCompletionResponse::new(
                self.text,
                finish.prompt_tokens,
                finish.completion_tokens,
                reason,
            )),
            InvokeFormat::OpenAiCompletion => to_value(&CompletionResponse::new(
                self.id,
                self.created,
                Some(self.model),
                self.text,
                reason,
                finish.usage(),
            )),
            InvokeFormat::OpenAiChat => to_value(&ChatCompletionResponse::new(
                self.id,
                self.created,
                self.model,
                (!self.text.is_empty()).then_some(self.text),
                (!self.reasoning.is_empty()).then_some(self.reasoning),
                self.calls,
                reason,
                finish.usage(),
            )),
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // The wire shapes are structs of strings, numbers and JSON values: serialising them cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}
