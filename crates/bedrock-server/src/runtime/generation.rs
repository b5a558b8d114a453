//! The one generation path behind every runtime surface: a request goes to the engine, and what comes back is a single
//! stream of pieces (text, reasoning, tool calls, read by the output parser) and one finish (stop reason, counts,
//! times). The deadline (`ModelTimeoutException`), the engine's errors and the last-use time of the model are handled
//! here once; each surface (Converse, ConverseStream, InvokeModel and its stream, OpenAI Chat Completions and
//! Responses) is an adapter from this stream to its wire shape, assembled in `bedrock-wire`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bedrock_wire::Piece;
use bedrock_wire::invoke::InvokeParams;
use bytes::Bytes;
use futures::StreamExt as _;
use infer_engine::{EngineEvent, GenerateRequest, StopReason};

use crate::db::ModelRow;
use crate::error::ApiError;
use crate::models::Loaded;
use crate::runtime::output::Parser;
use crate::state::App;

/// Default limit on generation time before `ModelTimeoutException`.
const MODEL_TIMEOUT: Duration = Duration::from_secs(300);

/// How a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finish {
    pub(crate) stop: StopReason,
    pub(crate) prompt_tokens: u32,
    pub(crate) completion_tokens: u32,
    /// Milliseconds from the request's arrival to the end.
    pub(crate) latency_ms: u64,
    /// Milliseconds from the request's arrival to the first output.
    pub(crate) first_byte_ms: u64,
}

impl Finish {
    /// The finish in InvokeModel's terms.
    pub(crate) fn invoke(&self) -> bedrock_wire::InvokeFinish {
        bedrock_wire::InvokeFinish {
            reason: match self.stop {
                StopReason::MaxTokens => bedrock_wire::invoke::FinishReason::Length,
                _ => bedrock_wire::invoke::FinishReason::Stop,
            },
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            latency_ms: self.latency_ms,
            first_byte_ms: self.first_byte_ms,
        }
    }

    /// Converse's stop reason.
    pub(crate) fn converse_stop(&self) -> bedrock_wire::StopReason {
        match self.stop {
            StopReason::EndTurn => bedrock_wire::StopReason::EndTurn,
            StopReason::MaxTokens => bedrock_wire::StopReason::MaxTokens,
            StopReason::StopSequence(_) => bedrock_wire::StopReason::StopSequence,
        }
    }

    /// Converse's usage.
    pub(crate) fn token_usage(&self) -> bedrock_wire::TokenUsage {
        bedrock_wire::TokenUsage::new(self.prompt_tokens, self.completion_tokens)
    }
}

/// What a running generation yields next.
#[derive(Debug)]
pub(crate) enum Event {
    /// More output (possibly empty while the parser holds text back).
    Pieces(Vec<Piece>),
    /// The end; the last event.
    Finished(Finish),
}

/// A generation the engine runs for one request. Dropping it cancels the generation.
pub(crate) struct Generation {
    events: infer_engine::Generation,
    parser: Parser,
    deadline: tokio::time::Instant,
    started: Instant,
    first_byte: Option<Duration>,
    prompt_tokens: u32,
    app: Arc<App>,
    model: ModelRow,
    /// Held so that an idle unload never drops the model under a running generation.
    _loaded: Arc<Loaded>,
    /// The finish, held while the parser's tail is returned.
    pending: Option<Finish>,
    done: bool,
}

fn u32c(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The engine request for `prompt` with a request's generation settings: `default_max` tokens unless it set a limit
/// (capped to the model's context window), the service's sampling defaults (temperature 0.5, top-p 0.9), constrained
/// by `grammar` when given.
pub(crate) fn engine_request(
    loaded: &Loaded,
    prompt: String,
    params: InvokeParams,
    default_max: usize,
    grammar: Option<String>,
) -> GenerateRequest {
    GenerateRequest {
        prompt,
        prompt_tokens: None,
        // Chat templates write the BOS token themselves; raw InvokeModel prompts are sent as given.
        add_special_tokens: false,
        max_tokens: params
            .max_tokens
            .map_or(default_max, |n| n as usize)
            .min(loaded.engine.context_length().max(1)),
        sampling: infer_engine::Sampling {
            temperature: params.temperature.unwrap_or(0.5),
            top_p: params.top_p.unwrap_or(0.9),
            top_k: params.top_k.map(|k| k as usize),
            seed: params.seed,
        },
        stop_sequences: params.stop,
        grammar,
    }
}

impl Generation {
    /// Starts `req` on `loaded` (the model `model`), its output read by `parser`. `started` is when the request
    /// arrived (latencies count from it).
    pub(crate) async fn start(
        app: &Arc<App>,
        model: &ModelRow,
        loaded: Arc<Loaded>,
        req: GenerateRequest,
        parser: Parser,
        started: Instant,
    ) -> Result<Generation, ApiError> {
        // Tokenising a long prompt and compiling a grammar (indexing the vocabulary, the first time) take long
        // enough to hold up the other requests of a runtime worker.
        let engine = loaded.clone();
        let events = tokio::task::spawn_blocking(move || engine.engine.generate(req))
            .await
            .map_err(|e| ApiError::internal(format!("starting the generation failed: {e}")))?
            .map_err(|e| start_error(e, &model.arn))?;
        let timeout = app.config.model_timeout.unwrap_or(MODEL_TIMEOUT);
        Ok(Generation {
            prompt_tokens: u32c(events.prompt_tokens()),
            events,
            parser,
            deadline: tokio::time::Instant::now() + timeout,
            started,
            first_byte: None,
            app: app.clone(),
            model: model.clone(),
            _loaded: loaded,
            pending: None,
            done: false,
        })
    }

    /// The prompt's length in tokens, known before the first token.
    pub(crate) fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// The next pieces or the finish; `None` after the finish or an error.
    pub(crate) async fn next(&mut self) -> Option<Result<Event, ApiError>> {
        if let Some(finish) = self.pending.take() {
            self.done = true;
            return Some(Ok(Event::Finished(finish)));
        }
        if self.done {
            return None;
        }
        // The deadline is checked before the events too: `timeout_at` polls its future first, so events the engine
        // had already queued would otherwise keep coming past the limit (a fast model never timed out).
        let next = if tokio::time::Instant::now() >= self.deadline {
            Err(())
        } else {
            tokio::time::timeout_at(self.deadline, self.events.next())
                .await
                .map_err(drop)
        };
        match next {
            Err(()) => self.fail(ApiError::model_timeout(
                "Model has timed out in processing the request. Try your request again.",
            )),
            Ok(None) => self.fail(ApiError::model_error(
                "The model stopped without finishing the response.",
                500,
                &self.model.arn,
            )),
            Ok(Some(EngineEvent::Delta { text })) => {
                self.first_byte.get_or_insert_with(|| self.started.elapsed());
                Some(Ok(Event::Pieces(self.parser.feed(&text))))
            }
            Ok(Some(EngineEvent::Done {
                stop_reason,
                prompt_tokens,
                completion_tokens,
                ..
            })) => {
                self.app.runtime.touch(&self.model.id);
                let elapsed = self.started.elapsed();
                self.pending = Some(Finish {
                    stop: stop_reason,
                    prompt_tokens: u32c(prompt_tokens),
                    completion_tokens: u32c(completion_tokens),
                    latency_ms: ms(elapsed),
                    first_byte_ms: ms(self.first_byte.unwrap_or(elapsed)),
                });
                // What the parser held back comes out before the finish.
                Some(Ok(Event::Pieces(self.parser.finish())))
            }
            Ok(Some(EngineEvent::Failed { message })) => {
                let e = ApiError::model_error(message, 500, &self.model.arn);
                self.fail(e)
            }
        }
    }

    fn fail(&mut self, e: ApiError) -> Option<Result<Event, ApiError>> {
        self.done = true;
        Some(Err(e))
    }

    /// Runs to the end: every piece, and the finish.
    pub(crate) async fn collect(mut self) -> Result<(Vec<Piece>, Finish), ApiError> {
        let mut pieces = Vec::new();
        while let Some(event) = self.next().await {
            match event? {
                Event::Pieces(p) => pieces.extend(p),
                Event::Finished(finish) => return Ok((pieces, finish)),
            }
        }
        Err(ApiError::internal("the generation ended without a finish"))
    }

    /// Streams the generation as `sink` frames it, in a task of its own: the body of a streaming answer. A client
    /// that goes away drops the body, and with it the generation.
    pub(crate) fn stream(mut self, mut sink: impl Sink) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            let mut frames = sink.start();
            loop {
                for f in frames.drain(..) {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
                frames = match self.next().await {
                    None => return,
                    Some(Ok(Event::Pieces(p))) => sink.pieces(p),
                    Some(Ok(Event::Finished(finish))) => sink.finish(&finish),
                    Some(Err(e)) => {
                        tracing::warn!(code = %e.kind, message = %e.message, "error in the middle of a stream");
                        sink.error(&e)
                    }
                };
            }
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, std::convert::Infallible>);
        Body::from_stream(stream)
    }
}

/// A streaming surface's framing: what it sends at the start, for each piece, at the finish, and for an error after
/// the stream started.
pub(crate) trait Sink: Send + 'static {
    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<Bytes>;
    fn finish(&mut self, finish: &Finish) -> Vec<Bytes>;
    fn error(&mut self, e: &ApiError) -> Vec<Bytes>;
}

/// A response with `body` and a content type.
pub(crate) fn streaming_response(
    body: Body,
    content_type: &'static str,
    extra: &[(&'static str, &'static str)],
) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    for (k, v) in extra {
        h.insert(*k, http::HeaderValue::from_static(v));
    }
    resp
}

/// The error of a generation that could not start.
fn start_error(e: infer_engine::Error, model_arn: &str) -> ApiError {
    match e {
        infer_engine::Error::QueueFull { .. } => ApiError::throttling(
            "Too many requests, please wait before trying again. The model's request queue is full.",
        ),
        infer_engine::Error::PromptTooLong {
            prompt_tokens,
            context_length,
        } => ApiError::validation(format!(
            "Input is too long for requested model: the prompt has {prompt_tokens} tokens and the context window is {context_length}."
        )),
        infer_engine::Error::Grammar(m) => ApiError::validation(format!(
            "The requested output format cannot be enforced: {m}. Correct the schema, regex or grammar and try again."
        )),
        other => ApiError::model_error(other.to_string(), 500, model_arn),
    }
}
