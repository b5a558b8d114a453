//! The one place that talks to the inference engine (`infer-engine`), so the runtime routes depend only on these
//! small types: a loaded model, a generation request, and the events a generation yields.

use std::path::Path;

use futures::stream::BoxStream;

/// Generation settings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GenRequest {
    pub(crate) prompt: String,
    pub(crate) max_tokens: usize,
    pub(crate) temperature: f32,
    pub(crate) top_p: f32,
    pub(crate) top_k: Option<usize>,
    pub(crate) seed: Option<u64>,
    pub(crate) stop: Vec<String>,
    /// Lark grammar for constrained decoding.
    pub(crate) grammar: Option<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GenStop {
    EndTurn,
    MaxTokens,
    StopSequence(String),
}

/// What a generation yields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GenEvent {
    Delta(String),
    Done {
        stop: GenStop,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(String),
}

/// Why a generation could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GenError {
    QueueFull,
    PromptTooLong {
        prompt_tokens: usize,
        context_length: usize,
    },
    /// The grammar (a structured output or a tool schema) does not compile.
    Grammar(String),
    Other(String),
}

/// What a quantisation setting may say: one the engine runs, or `none` for the weights as stored.
pub(crate) const QUANTIZE_CHOICES: &str = "q8_0, q4k, q4_0 or none";

/// Checks a quantisation setting (`Err` carries what is expected).
pub(crate) fn check_quantize(value: &str) -> Result<(), &'static str> {
    if value == "none" || value.parse::<infer_engine::Quantize>().is_ok() {
        Ok(())
    } else {
        Err(QUANTIZE_CHOICES)
    }
}

/// How models are loaded (from [`crate::ServerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadSettings {
    /// A quantisation the engine runs, or `None` for the weights as stored (a per-model `none` is resolved before:
    /// `Models::settings_for`).
    pub(crate) quantize: Option<String>,
    pub(crate) max_batch: usize,
    pub(crate) max_queue: usize,
}

impl LoadSettings {
    pub(crate) fn new(config: &crate::ServerConfig) -> Self {
        LoadSettings {
            quantize: config.quantize.clone(),
            max_batch: config.max_batch,
            max_queue: config.max_queue,
        }
    }
}

/// A model loaded into the engine.
#[derive(Debug)]
pub(crate) struct Engine {
    inner: infer_engine::Engine,
}

impl Engine {
    /// Loads a model folder (blocking; call from `spawn_blocking`).
    pub(crate) fn load(dir: &Path, settings: &LoadSettings) -> Result<Engine, String> {
        let quantize = match settings.quantize.as_deref() {
            None => None,
            Some(q) => Some(
                q.parse::<infer_engine::Quantize>()
                    .map_err(|e| format!("invalid quantisation {q:?}: {e}"))?,
            ),
        };
        let opts = infer_engine::LoadOptions {
            quantize,
            max_batch: settings.max_batch,
            max_queue: settings.max_queue,
            ..infer_engine::LoadOptions::default()
        };
        let inner = infer_engine::Engine::load(dir, opts).map_err(|e| e.to_string())?;
        Ok(Engine { inner })
    }

    pub(crate) fn context_length(&self) -> usize {
        self.inner.context_length()
    }

    /// Starts a generation; dropping the stream cancels it. Also returns the prompt's length in tokens.
    pub(crate) fn generate(&self, req: GenRequest) -> Result<(usize, BoxStream<'static, GenEvent>), GenError> {
        use futures::StreamExt as _;
        let r = infer_engine::GenerateRequest {
            prompt: req.prompt,
            prompt_tokens: None,
            // Chat templates write the BOS token themselves; raw InvokeModel prompts are sent as given.
            add_special_tokens: false,
            max_tokens: req.max_tokens,
            sampling: infer_engine::Sampling {
                temperature: req.temperature,
                top_p: req.top_p,
                top_k: req.top_k,
                seed: req.seed,
            },
            stop_sequences: req.stop,
            grammar: req.grammar,
        };
        let generation = self.inner.generate(r).map_err(|e| match e {
            infer_engine::Error::QueueFull { .. } => GenError::QueueFull,
            infer_engine::Error::PromptTooLong {
                prompt_tokens,
                context_length,
            } => GenError::PromptTooLong {
                prompt_tokens,
                context_length,
            },
            infer_engine::Error::Grammar(m) => GenError::Grammar(m),
            other => GenError::Other(other.to_string()),
        })?;
        let prompt_tokens = generation.prompt_tokens();
        let events = generation
            .map(|e| match e {
                infer_engine::EngineEvent::Delta { text } => GenEvent::Delta(text),
                infer_engine::EngineEvent::Done {
                    stop_reason,
                    prompt_tokens,
                    completion_tokens,
                } => GenEvent::Done {
                    stop: match stop_reason {
                        infer_engine::StopReason::EndTurn => GenStop::EndTurn,
                        infer_engine::StopReason::MaxTokens => GenStop::MaxTokens,
                        infer_engine::StopReason::StopSequence(s) => GenStop::StopSequence(s),
                    },
                    prompt_tokens,
                    completion_tokens,
                },
                infer_engine::EngineEvent::Failed { message } => GenEvent::Failed(message),
            })
            .boxed();
        Ok((prompt_tokens, events))
    }
}
