//! InvokeModel and InvokeModelWithResponseStream in the three body formats of imported models: the request's prompt
//! (or its messages, rendered with the model's chat template), the generation's pieces assembled by `bedrock-wire`'s
//! [`InvokeAssembler`] into the whole body or the stream's chunks.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use bedrock_wire::invoke::InvokeRequest;
use bedrock_wire::{InvokeAssembler, Piece, ToolChoiceRequest, ToolRequirement};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::error::{ApiError, json};
use crate::ids::{new_id, unix_now};
use crate::models::Loaded;
use crate::runtime::generation::{Finish, Generation, Sink, engine_request, streaming_response};
use crate::runtime::output::{OutputMode, Parser, output_mode};
use crate::runtime::resolve;
use crate::state::App;

/// Tokens an InvokeModel answer may take when the request sets no limit.
const DEFAULT_MAX_TOKENS: usize = 512;

pub(crate) async fn invoke(
    app: &Arc<App>,
    model_id: &str,
    headers: &HeaderMap,
    body: &[u8],
    stream: bool,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let model = resolve(app, model_id)?;
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
        && !ct.starts_with("application/json")
    {
        return Err(ApiError::validation(format!(
            "Content type {ct} is not supported: use application/json."
        )));
    }
    let req = bedrock_wire::parse_invoke_request(body)?;
    let _slot = app.invoke_slot()?;
    let loaded = app.runtime.get(&model).await?;
    let (gen_req, parser) = prepare(&loaded, &req, DEFAULT_MAX_TOKENS)?;
    let format = req.format();
    let generation = Generation::start(app, &model, loaded, gen_req, parser, started).await?;
    let asm = InvokeAssembler::new(
        format,
        format!("{}-{}", InvokeAssembler::id_prefix(format), new_id()),
        unix_now(),
        model.arn.clone(),
        generation.prompt_tokens(),
    );

    if stream {
        let body = generation.stream(InvokeStreamSink(asm));
        return Ok(streaming_response(
            body,
            bedrock_wire::eventstream::EVENT_STREAM_CONTENT_TYPE,
            &[("x-amzn-bedrock-content-type", "application/json")],
        ));
    }
    let (pieces, finish) = generation.collect().await?;
    let mut asm = asm;
    asm.push(pieces);
    let mut resp = json(StatusCode::OK, &asm.response(&finish.invoke()));
    usage_headers(resp.headers_mut(), &finish);
    Ok(resp)
}

/// The engine request and the output parser of an InvokeModel body (also the OpenAI Chat Completions body, which is
/// its chat format): the completion formats send their prompt as given and return the output as written; the chat
/// format renders its messages (and tools) with the model's template and reads reasoning and tool calls back.
pub(crate) fn prepare(
    loaded: &Loaded,
    req: &InvokeRequest,
    default_max: usize,
) -> Result<(infer_engine::GenerateRequest, Parser), ApiError> {
    let structured = req.structured_output()?;
    let (prompt, mode, parser) = match req {
        InvokeRequest::BedrockCompletion(r) => completion(loaded, &r.prompt, structured.as_ref()),
        InvokeRequest::OpenAiCompletion(r) => completion(loaded, &r.prompt, structured.as_ref()),
        InvokeRequest::OpenAiChat(r) => {
            let template = loaded.template.as_ref().ok_or_else(|| {
                ApiError::validation("The model has no chat template in tokenizer_config.json, so it cannot take messages. Send a prompt instead.")
            })?;
            let messages = r.template_messages()?;
            // `tool_choice: "none"` answers without tools: they are not offered to the model at all.
            let (tools, choice) = match req.tool_choice()? {
                ToolChoiceRequest::None => (None, ToolRequirement::Auto),
                ToolChoiceRequest::Tools(choice) => (r.tools.clone(), choice),
            };
            let prompt = template
                .render(&chat_template::RenderRequest {
                    messages,
                    tools: tools.clone(),
                    add_generation_prompt: true,
                    template_kwargs: serde_json::Map::new(),
                    now: None,
                })
                .map_err(|e| ApiError::validation(format!("The model's chat template rejected the messages: {e}")))?;
            let mode = output_mode(loaded.tool_syntax(), &choice, tools.as_deref(), structured.as_ref());
            let parser = Parser::new(loaded.tool_syntax(), &prompt, &mode);
            (prompt, mode, parser)
        }
    };
    let gen_req = engine_request(loaded, prompt, req.params(), default_max, mode.grammar());
    Ok((gen_req, parser))
}

/// A completion format's prompt, its output mode (free, or the structured output asked for) and a parser that passes
/// the output through as written.
fn completion(
    loaded: &Loaded,
    prompt: &str,
    structured: Option<&bedrock_wire::StructuredOutput>,
) -> (String, OutputMode, Parser) {
    let mode = output_mode(loaded.tool_syntax(), &ToolRequirement::Auto, None, structured);
    (prompt.to_string(), mode, Parser::as_written())
}

/// The usage headers of an InvokeModel answer. They are not in the service model, but Bedrock sends them and clients
/// read usage from them (LiteLLM does, and without them reports its own estimate instead of the model's count).
/// A stream's answer has its headers before any token, so a stream carries the counts in its last chunk instead
/// (`amazon-bedrock-invocationMetrics`).
fn usage_headers(h: &mut HeaderMap, finish: &Finish) {
    h.insert("x-amzn-bedrock-input-token-count", finish.prompt_tokens.into());
    h.insert("x-amzn-bedrock-output-token-count", finish.completion_tokens.into());
    h.insert("x-amzn-bedrock-invocation-latency", finish.latency_ms.into());
}

/// InvokeModelWithResponseStream's chunk events.
struct InvokeStreamSink(InvokeAssembler);

fn chunk(v: &serde_json::Value) -> Option<Bytes> {
    bedrock_wire::eventstream::encode_chunk(v.to_string().as_bytes()).ok()
}

impl Sink for InvokeStreamSink {
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Bytes> {
        self.0.push(pieces).as_ref().and_then(chunk).into_iter().collect()
    }
    fn finish(&mut self, finish: &Finish) -> Vec<Bytes> {
        chunk(&self.0.finish_chunk(&finish.invoke())).into_iter().collect()
    }
    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![e.stream_frame()]
    }
}
