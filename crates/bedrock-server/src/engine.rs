//! The one place that talks to the inference engine (`infer-engine`), so the runtime routes depend only on these
//! small types: a loaded model, a generation request, and the events a generation yields.

use std::path::Path;

use futures::stream::BoxStream;

/// Whether this build embeds the engine (false until `infer-engine` provides `Engine::load`).
pub(crate) const AVAILABLE: bool = false;

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
    Done { stop: GenStop, prompt_tokens: usize, completion_tokens: usize },
    Failed(String),
}

/// Why a generation could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GenError {
    QueueFull,
    PromptTooLong { prompt_tokens: usize, context_length: usize },
    Other(String),
}

/// A model loaded into the engine.
#[derive(Debug)]
pub(crate) struct Engine {
    context_length: usize,
}

impl Engine {
    /// Loads a model folder (blocking; call from `spawn_blocking`).
    pub(crate) fn load(dir: &Path, quantize: Option<&str>) -> Result<Engine, String> {
        let _ = (dir, quantize);
        Err("the embedded inference engine is not part of this build yet".into())
    }

    pub(crate) fn context_length(&self) -> usize {
        self.context_length
    }

    /// Starts a generation; dropping the stream cancels it.
    pub(crate) fn generate(&self, req: GenRequest) -> Result<BoxStream<'static, GenEvent>, GenError> {
        let _ = req;
        Err(GenError::Other("the embedded inference engine is not part of this build yet".into()))
    }
}
