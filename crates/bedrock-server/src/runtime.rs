//! The Bedrock runtime routes (Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream) and the loaded
//! models: cold starts answer `ModelNotReadyException` while the model loads in the background (unless the server is
//! warm), idle models are unloaded, and errors are sent the way the SDKs decode them (JSON with `x-amzn-ErrorType`
//! before the stream starts, event-stream exception messages after).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use bedrock_wire::converse::{StopReason, TokenUsage};
use bedrock_wire::invoke::{self as inv, FinishReason, InvokeFormat, InvokeRequest};
use bedrock_wire::{Piece, StreamAssembler, ToolChoiceRequest, ToolRequirement};
use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::{HeaderMap, StatusCode};

use crate::ServerConfig;
use crate::app::App;
use crate::db::ModelRow;
use crate::engine::{Engine, GenError, GenEvent, GenRequest, GenStop, LoadSettings};
use crate::error::{ApiError, json as json_response};
use crate::output::{OutputMode, Parser, output_mode};

/// A model ready to serve.
pub(crate) struct Loaded {
    engine: Engine,
    template: Option<chat_template::ChatTemplate>,
    /// The quantisation it runs in (`None`: the weights as stored).
    quantize: Option<String>,
}

impl Loaded {
    /// The tool-call syntax the model's template teaches.
    fn tool_syntax(&self) -> chat_template::ToolSyntax {
        self.template
            .as_ref()
            .map_or(chat_template::ToolSyntax::None, |t| t.tool_syntax())
    }
}

enum Slot {
    Loading(tokio::sync::watch::Receiver<Option<Result<Arc<Loaded>, String>>>),
    Ready { model: Arc<Loaded>, last_used: Instant },
}

/// Models loaded into the engine.
pub(crate) struct Models {
    slots: Mutex<HashMap<String, Slot>>,
    warm: bool,
    idle_unload: Duration,
    load: LoadSettings,
    /// `ServerConfig::model_quantize`: model name or ARN → quantisation.
    model_quantize: Vec<(String, String)>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("warm", &self.warm)
            .finish_non_exhaustive()
    }
}

const NOT_READY: &str = "Model is not ready for inference. Wait and try your request again. Refer to https://docs.aws.amazon.com/bedrock/latest/userguide/invoke-imported-model.html#handle-model-not-ready-exception.";

fn load_blocking(dir: &Path, settings: &LoadSettings) -> Result<Loaded, String> {
    let engine = Engine::load(dir, settings)?;
    let template = chat_template::ChatTemplate::from_model_dir(dir).ok();
    Ok(Loaded {
        engine,
        template,
        quantize: settings.quantize.clone(),
    })
}

impl Models {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Models {
            slots: Mutex::new(HashMap::new()),
            warm: config.warm,
            idle_unload: config.idle_unload,
            load: LoadSettings::new(config),
            model_quantize: config.model_quantize.clone(),
        }
    }

    /// How a model loads: the server's settings, with the quantisation of a `model_quantize` entry for its name or
    /// ARN, else of its `cmi:quantize` import tag, else the server's own (`none` runs the weights as stored).
    pub(crate) fn settings_for(&self, name: &str, arn: &str, tag: Option<&str>) -> LoadSettings {
        let mut settings = self.load.clone();
        let chosen = self
            .model_quantize
            .iter()
            .find(|(n, _)| n == name || n == arn)
            .map(|(_, q)| q.as_str())
            .or(tag);
        if let Some(q) = chosen {
            settings.quantize = (q != "none").then(|| q.to_string());
        }
        settings
    }

    /// The loaded models' ids, each with its quantisation.
    pub(crate) fn loaded(&self) -> Vec<(String, Option<String>)> {
        self.lock()
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Ready { model, .. } => Some((id.clone(), model.quantize.clone())),
                Slot::Loading(_) => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // A poisoned map is still a valid map (inserts and removes are single operations).
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// At import: proves the model loads; keeps it when the server is warm.
    pub(crate) async fn load_for_import(&self, id: &str, dir: &Path, settings: LoadSettings) -> Result<(), String> {
        let dir = dir.to_path_buf();
        let loaded = tokio::task::spawn_blocking(move || load_blocking(&dir, &settings))
            .await
            .map_err(|e| format!("Internal error while loading the model: {e}"))?
            .map_err(|e| format!("Amazon Bedrock could not load the model: {e}"))?;
        if self.warm {
            self.lock().insert(
                id.to_string(),
                Slot::Ready {
                    model: Arc::new(loaded),
                    last_used: Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// The loaded model, or `ModelNotReadyException` while it loads (warm servers wait instead).
    async fn get(&self, model: &ModelRow) -> Result<Arc<Loaded>, ApiError> {
        let mut rx = {
            let mut slots = self.lock();
            match slots.get_mut(&model.id) {
                Some(Slot::Ready { model, last_used }) => {
                    *last_used = Instant::now();
                    return Ok(model.clone());
                }
                Some(Slot::Loading(rx)) => {
                    let done = rx.borrow().clone();
                    match done {
                        Some(Ok(m)) => {
                            slots.insert(
                                model.id.clone(),
                                Slot::Ready {
                                    model: m.clone(),
                                    last_used: Instant::now(),
                                },
                            );
                            return Ok(m);
                        }
                        Some(Err(msg)) => {
                            slots.remove(&model.id);
                            return Err(ApiError::model_error(
                                format!("The model could not be loaded: {msg}"),
                                500,
                                &model.arn,
                            ));
                        }
                        None if !self.warm => return Err(ApiError::model_not_ready(NOT_READY)),
                        None => rx.clone(),
                    }
                }
                None => {
                    let (tx, rx) = tokio::sync::watch::channel(None);
                    slots.insert(model.id.clone(), Slot::Loading(rx.clone()));
                    let settings = self.settings_for(&model.name, &model.arn, model.quantize.as_deref());
                    let (dir, name) = (PathBuf::from(&model.dir), model.name.clone());
                    tracing::info!(model = %name, quantize = ?settings.quantize, "loading model (cold start)");
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let r = tokio::task::spawn_blocking(move || load_blocking(&dir, &settings))
                            .await
                            .unwrap_or_else(|e| Err(format!("loader panicked: {e}")))
                            .map(Arc::new);
                        tracing::info!(model = %name, ok = r.is_ok(), ms = started.elapsed().as_millis() as u64, "model load finished");
                        let _ = tx.send(Some(r));
                    });
                    if !self.warm {
                        return Err(ApiError::model_not_ready(NOT_READY));
                    }
                    rx
                }
            }
        };
        let _ = rx.wait_for(Option::is_some).await;
        let done = rx.borrow().clone();
        match done {
            Some(Ok(m)) => {
                self.lock().insert(
                    model.id.clone(),
                    Slot::Ready {
                        model: m.clone(),
                        last_used: Instant::now(),
                    },
                );
                Ok(m)
            }
            Some(Err(msg)) => {
                self.lock().remove(&model.id);
                Err(ApiError::model_error(
                    format!("The model could not be loaded: {msg}"),
                    500,
                    &model.arn,
                ))
            }
            None => Err(ApiError::internal("model loader vanished")),
        }
    }

    fn touch(&self, id: &str) {
        if let Some(Slot::Ready { last_used, .. }) = self.lock().get_mut(id) {
            *last_used = Instant::now();
        }
    }

    pub(crate) fn unload(&self, id: &str) {
        self.lock().remove(id);
    }

    pub(crate) fn unload_all(&self) {
        self.lock().clear();
    }

    /// Unloads models idle for longer than the configured time (never on warm servers).
    fn unload_idle(&self) {
        if self.warm {
            return;
        }
        let idle = self.idle_unload;
        self.lock().retain(|id, slot| match slot {
            // A model in use has a generation holding its own Arc, so dropping the slot never cuts a request short.
            Slot::Ready { last_used, .. } if last_used.elapsed() >= idle => {
                tracing::info!(model = %id, "unloading idle model");
                false
            }
            _ => true,
        });
    }
}

/// Starts the idle-unload sweeper.
pub(crate) fn start_background(app: &Arc<App>) {
    let weak = Arc::downgrade(app);
    let period = (app.config.idle_unload / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(period).await;
            let Some(app) = weak.upgrade() else { return };
            app.runtime.unload_idle();
        }
    });
}

fn wire_error(e: bedrock_wire::WireError) -> ApiError {
    let t = e.error_type();
    let status = StatusCode::from_u16(t.status()).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::new(status, t.name(), e.client_message())
}

/// Finds the imported model a runtime path names (percent-decoded ARN, name or id).
fn resolve(app: &App, model_id: &str) -> Result<ModelRow, ApiError> {
    if model_id.contains(":foundation-model/")
        || model_id.contains(":inference-profile/")
        || (!model_id.starts_with("arn:") && model_id.contains('.'))
    {
        return Err(ApiError::access_denied(format!(
            "You don't have access to the model with the specified model ID {model_id}: the local Bedrock serves imported models only."
        )));
    }
    if model_id.starts_with("arn:") && !model_id.contains(":imported-model/") {
        return Err(ApiError::validation(format!(
            "The provided model identifier {model_id} is invalid."
        )));
    }
    match app.db.model(model_id) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(ApiError::not_found(format!(
            "The model {model_id} was not found. Check the model ARN and try again."
        ))),
        Err(e) => {
            tracing::error!(error = %e, "state database failure");
            Err(ApiError::internal("internal error in the local Bedrock state database"))
        }
    }
}

pub(crate) async fn handle(app: &Arc<App>, model_id: &str, op: &str, headers: &HeaderMap, body: Bytes) -> Response {
    // Which API a client used, for whoever watches the log (the end-to-end tests check that models without Converse
    // are called only through InvokeModel).
    tracing::debug!(model = %model_id, operation = %op, "runtime request");
    let result = match op {
        "converse" => converse(app, model_id, &body, false).await,
        "converse-stream" => converse(app, model_id, &body, true).await,
        "invoke" => invoke(app, model_id, headers, &body, false).await,
        "invoke-with-response-stream" => invoke(app, model_id, headers, &body, true).await,
        other => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("unknown operation {other}"),
        )),
    };
    result.unwrap_or_else(|e| e.into_response())
}

pub(crate) fn tool_use_id() -> String {
    use rand::Rng as _;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..22)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect();
    format!("tooluse_{tail}")
}

/// One step of a running generation.
enum Step {
    Text {
        raw: String,
        pieces: Vec<Piece>,
    },
    Done {
        stop: GenStop,
        prompt_tokens: usize,
        completion_tokens: usize,
        tail: Vec<Piece>,
    },
    Failed(ApiError),
}

struct Run {
    events: BoxStream<'static, GenEvent>,
    /// The prompt's length in tokens, known before the first token (the Llama-format stream's first chunk says it).
    prompt_tokens: usize,
    parser: Parser,
    deadline: tokio::time::Instant,
    model_arn: String,
    _model: Arc<Loaded>,
    first_byte: Option<Duration>,
    started: Instant,
}

/// Default limit on generation time before `ModelTimeoutException`.
const MODEL_TIMEOUT: Duration = Duration::from_secs(300);

impl Run {
    async fn start(
        app: &App,
        model: &ModelRow,
        loaded: Arc<Loaded>,
        req: GenRequest,
        mode: &OutputMode,
    ) -> Result<Run, ApiError> {
        let parser = Parser::new(loaded.tool_syntax(), &req.prompt, mode);
        // Tokenising a long prompt and compiling a grammar (indexing the vocabulary, the first time) take long
        // enough to hold up the other requests of a runtime worker.
        let engine = loaded.clone();
        let started = tokio::task::spawn_blocking(move || engine.engine.generate(req))
            .await
            .map_err(|e| ApiError::internal(format!("starting the generation failed: {e}")))?;
        let (prompt_tokens, events) = started.map_err(|e| match e {
            GenError::QueueFull => {
                ApiError::throttling("Too many requests, please wait before trying again. The model's request queue is full.")
            }
            GenError::PromptTooLong { prompt_tokens, context_length } => ApiError::validation(format!(
                "Input is too long for requested model: the prompt has {prompt_tokens} tokens and the context window is {context_length}."
            )),
            GenError::Grammar(m) => ApiError::validation(format!(
                "The requested output format cannot be enforced: {m}. Correct the schema, regex or grammar and try again."
            )),
            GenError::Other(m) => ApiError::model_error(m, 500, &model.arn),
        })?;
        let timeout = app.config.model_timeout.unwrap_or(MODEL_TIMEOUT);
        Ok(Run {
            events,
            prompt_tokens,
            parser,
            deadline: tokio::time::Instant::now() + timeout,
            model_arn: model.arn.clone(),
            _model: loaded,
            first_byte: None,
            started: Instant::now(),
        })
    }

    async fn next(&mut self) -> Step {
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
            Err(()) => Step::Failed(ApiError::model_timeout(
                "Model has timed out in processing the request. Try your request again.",
            )),
            Ok(None) => Step::Failed(ApiError::model_error(
                "The model stopped without finishing the response.",
                500,
                &self.model_arn,
            )),
            Ok(Some(GenEvent::Delta(text))) => {
                self.first_byte.get_or_insert_with(|| self.started.elapsed());
                let pieces = self.parser.feed(&text);
                Step::Text { raw: text, pieces }
            }
            Ok(Some(GenEvent::Done {
                stop,
                prompt_tokens,
                completion_tokens,
            })) => Step::Done {
                stop,
                prompt_tokens,
                completion_tokens,
                tail: self.parser.finish(),
            },
            Ok(Some(GenEvent::Failed(m))) => Step::Failed(ApiError::model_error(m, 500, &self.model_arn)),
        }
    }
}

fn stop_reason(s: &GenStop) -> StopReason {
    match s {
        GenStop::EndTurn => StopReason::EndTurn,
        GenStop::MaxTokens => StopReason::MaxTokens,
        GenStop::StopSequence(_) => StopReason::StopSequence,
    }
}

fn u32c(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The event-stream exception for an error that happens after the stream started.
fn stream_exception(e: &ApiError) -> Bytes {
    let (member, body) = match e.code {
        "ThrottlingException" => ("throttlingException", bedrock_wire::ErrorBody::new(&e.message)),
        "ValidationException" => ("validationException", bedrock_wire::ErrorBody::new(&e.message)),
        "InternalServerException" => ("internalServerException", bedrock_wire::ErrorBody::new(&e.message)),
        _ => (
            "modelStreamErrorException",
            bedrock_wire::ErrorBody {
                message: e.message.clone(),
                original_status_code: Some(e.status.as_u16()),
                original_message: Some(e.message.clone()),
                resource_name: None,
            },
        ),
    };
    bedrock_wire::encode_exception_body(member, &body).unwrap_or_else(|_| Bytes::new())
}

fn event_stream_response(
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    extra: Option<(&'static str, &'static str)>,
) -> Response {
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<Bytes, std::convert::Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(bedrock_wire::eventstream::EVENT_STREAM_CONTENT_TYPE),
    );
    if let Some((k, v)) = extra {
        h.insert(k, http::HeaderValue::from_static(v));
    }
    resp
}

async fn converse(app: &Arc<App>, model_id: &str, body: &[u8], stream: bool) -> Result<Response, ApiError> {
    let started = Instant::now();
    let model = resolve(app, model_id)?;
    let req = bedrock_wire::parse_converse_request(body).map_err(wire_error)?;
    let input = bedrock_wire::converse_to_template_input(&req).map_err(wire_error)?;
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
    let ic = req.inference_config.clone().unwrap_or_default();
    let gen_req = GenRequest {
        prompt,
        max_tokens: ic
            .max_tokens
            .map(|n| n as usize)
            .unwrap_or(4096)
            .min(loaded.engine.context_length().max(1)),
        temperature: ic.temperature.unwrap_or(0.5),
        top_p: ic.top_p.unwrap_or(0.9),
        top_k: None,
        seed: None,
        stop: ic.stop_sequences.clone().unwrap_or_default(),
        grammar: mode.grammar(),
    };
    let mut run = Run::start(app, &model, loaded, gen_req, &mode).await?;
    let runtime_app = app.clone();
    let model_key = model.id.clone();

    if !stream {
        let mut asm = StreamAssembler::new();
        loop {
            match run.next().await {
                Step::Text { pieces, .. } => {
                    for p in pieces {
                        asm.push(p);
                    }
                }
                Step::Done {
                    stop,
                    prompt_tokens,
                    completion_tokens,
                    tail,
                } => {
                    for p in tail {
                        asm.push(p);
                    }
                    runtime_app.runtime.touch(&model_key);
                    let usage = TokenUsage::new(u32c(prompt_tokens), u32c(completion_tokens));
                    let resp = asm.response(stop_reason(&stop), usage, ms(started.elapsed()));
                    let v = serde_json::to_value(&resp).map_err(|e| ApiError::internal(e.to_string()))?;
                    return Ok(json_response(StatusCode::OK, &v));
                }
                Step::Failed(e) => return Err(e),
            }
        }
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut asm = StreamAssembler::new();
        let send_events = |events: Vec<bedrock_wire::ConverseStreamEvent>| -> Vec<Bytes> {
            events.iter().filter_map(|e| e.to_frame().ok()).collect()
        };
        for f in send_events(asm.start()) {
            if tx.send(f).await.is_err() {
                return;
            }
        }
        loop {
            let frames = match run.next().await {
                Step::Text { pieces, .. } => pieces
                    .into_iter()
                    .flat_map(|p| send_events(asm.push(p)))
                    .collect::<Vec<_>>(),
                Step::Done {
                    stop,
                    prompt_tokens,
                    completion_tokens,
                    tail,
                } => {
                    let mut frames: Vec<Bytes> = tail.into_iter().flat_map(|p| send_events(asm.push(p))).collect();
                    let usage = TokenUsage::new(u32c(prompt_tokens), u32c(completion_tokens));
                    frames.extend(send_events(asm.finish(
                        stop_reason(&stop),
                        usage,
                        ms(started.elapsed()),
                    )));
                    for f in frames {
                        if tx.send(f).await.is_err() {
                            return;
                        }
                    }
                    runtime_app.runtime.touch(&model_key);
                    return;
                }
                Step::Failed(e) => {
                    tracing::warn!(code = e.code, message = %e.message, "error in the middle of a stream");
                    let _ = tx.send(stream_exception(&e)).await;
                    return;
                }
            };
            for f in frames {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(event_stream_response(rx, None))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn finish_reason(stop: &GenStop) -> FinishReason {
    match stop {
        GenStop::MaxTokens => FinishReason::Length,
        _ => FinishReason::Stop,
    }
}

async fn invoke(
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
    let req = inv::parse_invoke_request(body).map_err(wire_error)?;
    let params = req.params();
    let _slot = app.invoke_slot().ok_or_else(|| {
        ApiError::quota(format!(
            "You have reached the quota of {} concurrent invocations of the local Bedrock. Reduce the number of concurrent requests and try again.",
            app.config.max_concurrent_requests
        ))
    })?;
    let structured = req.structured_output().map_err(wire_error)?;
    let loaded = app.runtime.get(&model).await?;
    let (prompt, choice, tools) = match &req {
        InvokeRequest::BedrockCompletion(r) => (r.prompt.clone(), ToolRequirement::Auto, None),
        InvokeRequest::OpenAiCompletion(r) => (r.prompt.clone(), ToolRequirement::Auto, None),
        InvokeRequest::OpenAiChat(r) => {
            let template = loaded.template.as_ref().ok_or_else(|| {
                ApiError::validation("The model has no chat template in tokenizer_config.json, so it cannot take messages. Send a prompt instead.")
            })?;
            let messages = r.template_messages().map_err(wire_error)?;
            // `tool_choice: "none"` answers without tools: they are not offered to the model at all.
            let (tools, choice) = match req.tool_choice().map_err(wire_error)? {
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
            (prompt, choice, tools)
        }
    };
    let mode = output_mode(loaded.tool_syntax(), &choice, tools.as_deref(), structured.as_ref());
    let gen_req = GenRequest {
        prompt,
        max_tokens: params
            .max_tokens
            .map(|n| n as usize)
            .unwrap_or(512)
            .min(loaded.engine.context_length().max(1)),
        temperature: params.temperature.unwrap_or(0.5),
        top_p: params.top_p.unwrap_or(0.9),
        top_k: params.top_k.map(|k| k as usize),
        seed: params.seed,
        stop: params.stop.clone(),
        grammar: mode.grammar(),
    };
    let format = req.format();
    let chat = matches!(format, InvokeFormat::OpenAiChat);
    let mut run = Run::start(app, &model, loaded, gen_req, &mode).await?;
    let id = format!(
        "{}-{}",
        if chat { "chatcmpl" } else { "cmpl" },
        crate::control::new_id()
    );
    let created = unix_now();
    let model_name = model.arn.clone();
    let runtime_app = app.clone();
    let model_key = model.id.clone();

    if !stream {
        let mut text = String::new();
        let mut pieces = Vec::new();
        loop {
            match run.next().await {
                Step::Text { raw, pieces: p } => {
                    text.push_str(&raw);
                    pieces.extend(p);
                }
                Step::Done {
                    stop,
                    prompt_tokens,
                    completion_tokens,
                    tail,
                } => {
                    pieces.extend(tail);
                    runtime_app.runtime.touch(&model_key);
                    let finish = finish_reason(&stop);
                    let (p, c) = (u32c(prompt_tokens), u32c(completion_tokens));
                    let v = match format {
                        InvokeFormat::BedrockCompletion => {
                            serde_json::to_value(inv::BedrockCompletionResponse::new(text, p, c, finish))
                        }
                        InvokeFormat::OpenAiCompletion => serde_json::to_value(inv::CompletionResponse::new(
                            id,
                            created,
                            Some(model_name),
                            text,
                            finish,
                            inv::OpenAiUsage::new(p, c),
                        )),
                        InvokeFormat::OpenAiChat => {
                            let (content, reasoning, calls) = chat_parts(pieces);
                            serde_json::to_value(inv::ChatCompletionResponse::new(
                                id,
                                created,
                                model_name,
                                content,
                                reasoning,
                                calls,
                                finish,
                                inv::OpenAiUsage::new(p, c),
                            ))
                        }
                    }
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                    let mut resp = json_response(StatusCode::OK, &v);
                    usage_headers(resp.headers_mut(), p, c, ms(started.elapsed()));
                    return Ok(resp);
                }
                Step::Failed(e) => return Err(e),
            }
        }
    }

    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut generated = 0u32;
        let mut first = true;
        loop {
            let chunk: Option<serde_json::Value> = match run.next().await {
                Step::Text { raw, pieces } => {
                    generated += 1;
                    match format {
                        // As Bedrock's Llama stream: the prompt's count in the first chunk, null after it.
                        InvokeFormat::BedrockCompletion => serde_json::to_value(inv::BedrockCompletionChunk {
                            generation: raw,
                            prompt_token_count: (generated == 1).then(|| u32c(run.prompt_tokens)),
                            generation_token_count: generated,
                            stop_reason: None,
                            invocation_metrics: None,
                        })
                        .ok(),
                        InvokeFormat::OpenAiCompletion => serde_json::to_value(inv::CompletionChunk::new(
                            id.clone(),
                            created,
                            Some(model_name.clone()),
                            raw,
                            None,
                        ))
                        .ok(),
                        InvokeFormat::OpenAiChat => {
                            let (content, reasoning, _) = chat_parts(pieces);
                            let delta = inv::ChatDelta {
                                role: first.then(|| "assistant".to_string()),
                                content,
                                reasoning_content: reasoning,
                                tool_calls: None,
                            };
                            first = false;
                            serde_json::to_value(inv::ChatCompletionChunk::new(
                                id.clone(),
                                created,
                                model_name.clone(),
                                delta,
                                None,
                            ))
                            .ok()
                        }
                    }
                }
                Step::Done {
                    stop,
                    prompt_tokens,
                    completion_tokens,
                    tail,
                } => {
                    let finish = finish_reason(&stop);
                    let metrics = inv::InvocationMetrics {
                        input_token_count: u32c(prompt_tokens),
                        output_token_count: u32c(completion_tokens),
                        invocation_latency: ms(started.elapsed()),
                        first_byte_latency: ms(run.first_byte.unwrap_or_else(|| started.elapsed())),
                    };
                    let last = match format {
                        InvokeFormat::BedrockCompletion => serde_json::to_value(inv::BedrockCompletionChunk {
                            generation: String::new(),
                            prompt_token_count: Some(u32c(prompt_tokens)),
                            generation_token_count: u32c(completion_tokens),
                            stop_reason: Some(finish.bedrock().to_string()),
                            invocation_metrics: Some(metrics),
                        }),
                        InvokeFormat::OpenAiCompletion => {
                            let mut c = inv::CompletionChunk::new(
                                id.clone(),
                                created,
                                Some(model_name.clone()),
                                String::new(),
                                Some(finish),
                            );
                            c.usage = Some(inv::OpenAiUsage::new(u32c(prompt_tokens), u32c(completion_tokens)));
                            c.invocation_metrics = Some(metrics);
                            serde_json::to_value(c)
                        }
                        InvokeFormat::OpenAiChat => {
                            let (content, reasoning, calls) = chat_parts(tail);
                            let tool_calls: Vec<serde_json::Value> = calls
                                .iter()
                                .enumerate()
                                .map(|(i, c)| inv::ChatCompletionChunk::tool_call_delta(u32c(i), c))
                                .collect();
                            let finish = if tool_calls.is_empty() {
                                finish
                            } else {
                                FinishReason::ToolCalls
                            };
                            let delta = inv::ChatDelta {
                                role: None,
                                content,
                                reasoning_content: reasoning,
                                tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                            };
                            let mut c = inv::ChatCompletionChunk::new(
                                id.clone(),
                                created,
                                model_name.clone(),
                                delta,
                                Some(finish),
                            );
                            c.usage = Some(inv::OpenAiUsage::new(u32c(prompt_tokens), u32c(completion_tokens)));
                            c.invocation_metrics = Some(metrics);
                            serde_json::to_value(c)
                        }
                    };
                    if let Ok(v) = last
                        && let Ok(frame) = bedrock_wire::eventstream::encode_chunk(v.to_string().as_bytes())
                    {
                        let _ = tx.send(frame).await;
                    }
                    runtime_app.runtime.touch(&model_key);
                    return;
                }
                Step::Failed(e) => {
                    let _ = tx.send(stream_exception(&e)).await;
                    return;
                }
            };
            if let Some(v) = chunk
                && let Ok(frame) = bedrock_wire::eventstream::encode_chunk(v.to_string().as_bytes())
                && tx.send(frame).await.is_err()
            {
                return;
            }
        }
    });
    Ok(event_stream_response(
        rx,
        Some(("x-amzn-bedrock-content-type", "application/json")),
    ))
}

/// The usage headers of an InvokeModel answer. They are not in the service model, but Bedrock sends them and clients
/// read usage from them (LiteLLM does, and without them reports its own estimate instead of the model's count).
/// A stream's answer has its headers before any token, so a stream carries the counts in its last chunk instead
/// (`amazon-bedrock-invocationMetrics`).
fn usage_headers(h: &mut HeaderMap, input_tokens: u32, output_tokens: u32, latency_ms: u64) {
    h.insert("x-amzn-bedrock-input-token-count", input_tokens.into());
    h.insert("x-amzn-bedrock-output-token-count", output_tokens.into());
    h.insert("x-amzn-bedrock-invocation-latency", latency_ms.into());
}

/// Splits pieces into OpenAI chat content, reasoning and tool calls.
fn chat_parts(pieces: Vec<Piece>) -> (Option<String>, Option<String>, Vec<inv::OpenAiToolCall>) {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for p in pieces {
        match p {
            Piece::Text(t) => content.push_str(&t),
            Piece::Reasoning(t) => reasoning.push_str(&t),
            Piece::ToolCall { id, name, input } => calls.push(inv::OpenAiToolCall::new(id, name, &input)),
        }
    }
    (
        (!content.is_empty()).then_some(content),
        (!reasoning.is_empty()).then_some(reasoning),
        calls,
    )
}
