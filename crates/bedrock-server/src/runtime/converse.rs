//! Converse and ConverseStream: the request rendered with the model's chat template, the generation's pieces
//! assembled by `bedrock-wire`'s [`StreamAssembler`] into the response or the event stream.

use std::sync::Arc;
use std::time::Instant;

use axum::response::Response;
use bedrock_wire::invoke::InvokeParams;
use bedrock_wire::{Piece, StreamAssembler};
use bytes::Bytes;
use http::StatusCode;

use crate::error::{ApiError, json};
use crate::runtime::generation::{Finish, Generation, Sink, engine_request, streaming_response};
use crate::runtime::output::{Parser, output_mode};
use crate::runtime::resolve;
use crate::state::App;

/// Tokens a Converse answer may take when the request sets no `maxTokens`.
const DEFAULT_MAX_TOKENS: usize = 4096;

pub(crate) async fn converse(app: &Arc<App>, model_id: &str, body: &[u8], stream: bool) -> Result<Response, ApiError> {
    let started = Instant::now();
    let model = resolve(app, model_id)?;
    let req = bedrock_wire::parse_converse_request(body)?;
    let input = bedrock_wire::converse_to_template_input(&req)?;
    if !model.instruct_supported {
        return Err(ApiError::validation(
            "This model doesn't support the Converse API. Use InvokeModel with the model's native request format instead.",
        ));
    }
    let has_tools = input.tools.as_ref().is_some_and(|t| !t.is_empty());
    if has_tools && !model.converse_tools {
        return Err(ApiError::validation("This model doesn't support tool use."));
    }
    let stream_tools = app
        .config
        .model_stream_tools
        .iter()
        .find(|(name, _)| *name == model.name || *name == model.arn)
        .map_or(model.stream_tools, |(_, on)| *on);
    if stream && has_tools && !stream_tools {
        return Err(ApiError::validation(
            "This model doesn't support tool use in streaming mode.",
        ));
    }
    let loaded = app.runtime.get(&model).await?;
    let template = loaded.template.as_ref().ok_or_else(|| {
        ApiError::validation("This model has no chat template, so it cannot serve the Converse API. Use InvokeModel.")
    })?;
    let prompt = template
        .render(&chat_template::RenderRequest {
            messages: input.messages.clone(),
            tools: input.tools.clone(),
            add_generation_prompt: true,
            template_kwargs: serde_json::Map::new(),
            now: None,
        })
        .map_err(|e| ApiError::validation(format!("The model's chat template rejected the conversation: {e}")))?;
    let mode = output_mode(
        template.tool_syntax(),
        &input.tool_choice,
        input.tools.as_deref(),
        input.output.as_ref(),
    );
    let parser = Parser::new(template.tool_syntax(), &prompt, &mode);
    let ic = req.inference_config.clone().unwrap_or_default();
    let params = InvokeParams {
        max_tokens: ic.max_tokens,
        temperature: ic.temperature,
        top_p: ic.top_p,
        stop: ic.stop_sequences.clone().unwrap_or_default(),
        ..InvokeParams::default()
    };
    let gen_req = engine_request(&loaded, prompt, params, DEFAULT_MAX_TOKENS, mode.grammar());
    let generation = Generation::start(app, &model, loaded, gen_req, parser, started).await?;

    if stream {
        let body = generation.stream(ConverseStreamSink(StreamAssembler::new()));
        return Ok(streaming_response(
            body,
            bedrock_wire::eventstream::EVENT_STREAM_CONTENT_TYPE,
            &[],
        ));
    }
    let (pieces, finish) = generation.collect().await?;
    let mut asm = StreamAssembler::new();
    for p in pieces {
        asm.push(p);
    }
    let resp = asm.response(finish.converse_stop(), finish.token_usage(), finish.latency_ms);
    let v = serde_json::to_value(&resp).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(json(StatusCode::OK, &v))
}

/// ConverseStream's event-stream frames.
struct ConverseStreamSink(StreamAssembler);

fn frames(events: Vec<bedrock_wire::ConverseStreamEvent>) -> Vec<Bytes> {
    events.iter().filter_map(|e| e.to_frame().ok()).collect()
}

impl Sink for ConverseStreamSink {
    fn start(&mut self) -> Vec<Bytes> {
        frames(self.0.start())
    }
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Bytes> {
        pieces.into_iter().flat_map(|p| frames(self.0.push(p))).collect()
    }
    fn finish(&mut self, finish: &Finish) -> Vec<Bytes> {
        frames(
            self.0
                .finish(finish.converse_stop(), finish.token_usage(), finish.latency_ms),
        )
    }
    fn error(&mut self, e: &ApiError) -> Vec<Bytes> {
        vec![e.stream_frame()]
    }
}
