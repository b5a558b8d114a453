//! The embedded inference engine: loads a Hugging Face folder once and serves many generation requests at once with
//! continuous batching (one scheduler thread steps up to `max_batch` sequences together; new requests join between
//! steps; a dropped [`Generation`] frees its slot at once). Prompts that start as an earlier one did (a conversation
//! resent whole each turn) reuse its keys and values from a prefix cache bounded by
//! [`LoadOptions::prefix_cache_bytes`], and only the rest is computed.
//!
//! ```ignore
//! let engine = Engine::load(dir, LoadOptions::default())?;          // blocking: spawn_blocking in async code
//! let mut g = engine.generate(GenerateRequest::new("Hello"))?;
//! while let Some(ev) = g.next().await { ... }                        // Delta { text } ..., then Done { .. }
//! ```

mod prefix;
mod sampler;
mod scheduler;
mod text;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::task::{Context, Poll};

use infer_constraint::ConstraintFactory;
use infer_models::{CausalLm, Transformer};

pub use infer_models::{MODEL_TYPES, QuantisedLoad, Quantize, cap_simd, pin_thread_count, unsupported_architecture};
pub use prefix::{PrefixCacheStats, default_budget_bytes as default_prefix_cache_bytes};

/// The errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The model folder could not be loaded.
    #[error(transparent)]
    Model(#[from] infer_models::Error),
    /// `tokenizer.json` is missing or invalid.
    #[error("{path}: cannot load the tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// A JSON file of the folder (`generation_config.json`, `tokenizer_config.json`) cannot be read.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// The tokenizer has more tokens than the model's embedding.
    #[error("{path} has {tokenizer} tokens but config.json says vocab_size {config}; expected at most {config}")]
    VocabMismatch {
        path: PathBuf,
        tokenizer: usize,
        config: usize,
    },
    /// The prompt could not be tokenized.
    #[error("cannot tokenize the prompt: {0}")]
    Tokenize(String),
    /// The prompt is empty after tokenisation.
    #[error("the prompt is empty: expected at least one token")]
    EmptyPrompt,
    /// The prompt does not fit the context window.
    #[error("prompt of {prompt_tokens} tokens is too long: the context window is {context_length} tokens")]
    PromptTooLong {
        prompt_tokens: usize,
        context_length: usize,
    },
    /// Too many requests are waiting; try again later.
    #[error("the engine queue is full ({max_queue} requests waiting)")]
    QueueFull { max_queue: usize },
    /// The grammar does not compile (or the tokenizer cannot be indexed for constrained decoding).
    #[error("invalid grammar: {0}")]
    Grammar(String),
    /// The scheduler thread has stopped.
    #[error("the engine has stopped")]
    Stopped,
}

/// Options of [`Engine::load`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Quantise the weights at load time (`None`: run them as stored).
    pub quantize: Option<Quantize>,
    /// With `quantize`, the file the quantised blocks are kept in between loads: when it holds this model's blocks
    /// of that kind they are mapped and used in place (nothing is quantised), else the load quantises and writes it
    /// (atomically; a cache that cannot be written is logged, not an error). `None`: quantise at every load.
    pub quantised_cache: Option<PathBuf>,
    /// Sequences stepped together (continuous batching).
    pub max_batch: usize,
    /// Requests that may wait for a slot before [`Error::QueueFull`].
    pub max_queue: usize,
    /// Tokens one step feeds at most: longer prompts are fed in chunks (chunked prefill), so that running
    /// streams keep receiving tokens while a long prompt is read, and a step's attention scores stay small.
    pub step_tokens: usize,
    /// Bytes of keys and values of past sequences kept for prompts that start the same way (least recently used
    /// blocks evicted beyond it; below one block of 16 tokens, off). Default: [`default_prefix_cache_bytes`].
    pub prefix_cache_bytes: usize,
    /// Special added tokens the output spells as their text: the completion's text (which otherwise leaves special
    /// tokens out) has them, and a grammar's string literals match them. For formats whose structure is special
    /// tokens the reader of the output must see, such as GPT-OSS's harmony (`<|channel|>`, `<|message|>`, …). Names
    /// the tokenizer does not have as special added tokens are left out (they are text already, or absent).
    pub text_tokens: Vec<String>,
}

/// Default of [`LoadOptions::step_tokens`]: prompts of this size run at the batched speed (prefill throughput is
/// flat from about 128 rows on), and a 2-core step of 512 rows of SmolLM2-135M takes about 0.3 s.
pub const DEFAULT_STEP_TOKENS: usize = 512;

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            quantize: None,
            quantised_cache: None,
            max_batch: 8,
            max_queue: 64,
            step_tokens: DEFAULT_STEP_TOKENS,
            prefix_cache_bytes: default_prefix_cache_bytes(),
            text_tokens: Vec::new(),
        }
    }
}

/// Sampling parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// Nucleus sampling mass (1 = off).
    pub top_p: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Seed for reproducible sampling (`None`: random).
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            seed: None,
        }
    }
}

/// One generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The rendered prompt text (ignored when `prompt_tokens` is set).
    pub prompt: String,
    /// The prompt as token ids, used as they are instead of tokenising `prompt`.
    pub prompt_tokens: Option<Vec<u32>>,
    /// Let the tokenizer add its special tokens (e.g. BOS). Rendered chat templates usually contain them already.
    pub add_special_tokens: bool,
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampling: Sampling,
    /// Stop when the generated text contains one of these (matched on text, across token boundaries; not emitted).
    pub stop_sequences: Vec<String>,
    /// A Lark grammar (llguidance dialect) the output must follow.
    pub grammar: Option<String>,
}

impl GenerateRequest {
    /// A greedy request for the token ids `tokens` with 256 max tokens.
    pub fn from_tokens(tokens: Vec<u32>) -> Self {
        GenerateRequest {
            prompt_tokens: Some(tokens),
            ..GenerateRequest::new(String::new())
        }
    }

    /// A greedy request for `prompt` with 256 max tokens.
    pub fn new(prompt: impl Into<String>) -> Self {
        GenerateRequest {
            prompt: prompt.into(),
            prompt_tokens: None,
            add_special_tokens: false,
            max_tokens: 256,
            sampling: Sampling::default(),
            stop_sequences: Vec::new(),
            grammar: None,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// An EOS token (or the grammar completed).
    EndTurn,
    /// `max_tokens` reached (or the context window is full).
    MaxTokens,
    /// A stop sequence matched (the sequence itself is not part of the text).
    StopSequence(String),
}

/// What a [`Generation`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    /// More text (never half a UTF-8 character).
    Delta { text: String },
    /// The end; always the last event unless `Failed`.
    Done {
        stop_reason: StopReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        /// Prompt tokens whose keys and values came from the prefix cache instead of being computed.
        cached_tokens: usize,
    },
    /// The generation failed (the last event).
    Failed { message: String },
}

/// A running generation: a stream of [`EngineEvent`]s. Dropping it cancels the request and frees its slot.
pub struct Generation {
    rx: tokio::sync::mpsc::UnboundedReceiver<EngineEvent>,
    prompt_tokens: usize,
}

impl Generation {
    /// Tokens in the prompt.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Blocks for the next event (for synchronous callers; not inside an async runtime).
    pub fn blocking_next(&mut self) -> Option<EngineEvent> {
        self.rx.blocking_recv()
    }
}

impl futures::Stream for Generation {
    type Item = EngineEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<EngineEvent>> {
        self.rx.poll_recv(cx)
    }
}

pub(crate) struct Inner {
    pub(crate) model: Transformer,
    pub(crate) tokenizer: tokenizers::Tokenizer,
    pub(crate) eos_ids: Vec<u32>,
    /// Byte-fallback tokens, by id (see `text.rs`).
    pub(crate) byte_tokens: Vec<bool>,
    /// [`LoadOptions::text_tokens`] the tokenizer has as special added tokens: id and text.
    pub(crate) text_tokens: Vec<(u32, String)>,
    pub(crate) constraints: std::sync::OnceLock<Result<Arc<ConstraintFactory>, String>>,
    /// Sequences in the running batch (updated by the scheduler each step).
    pub(crate) active: std::sync::atomic::AtomicUsize,
    /// The most bytes the running batch's KV caches have held at once (updated by the scheduler each step).
    pub(crate) peak_kv_bytes: std::sync::atomic::AtomicU64,
    /// The prefix cache's statistics (updated by the scheduler, which owns the cache).
    pub(crate) prefix_stats: std::sync::Mutex<PrefixCacheStats>,
}

/// The engine: cheap to clone; the model is loaded once and shared.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    tx: SyncSender<scheduler::Job>,
    max_queue: usize,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("arch", &self.inner.model.config().arch_name)
            .field("context_length", &self.context_length())
            .finish_non_exhaustive()
    }
}

fn token_id(tok: &tokenizers::Tokenizer, v: &serde_json::Value) -> Option<u32> {
    let s = v
        .as_str()
        .or_else(|| v.get("content").and_then(serde_json::Value::as_str))?;
    tok.token_to_id(s)
}

impl Engine {
    /// Loads `dir` (blocking; call from `spawn_blocking`) and starts the scheduler thread.
    pub fn load(dir: &Path, opts: LoadOptions) -> Result<Engine, Error> {
        let model = infer_models::load_cached(dir, opts.quantize, opts.quantised_cache.as_deref())?;
        let tok_path = dir.join("tokenizer.json");
        let tokenizer = tokenizers::Tokenizer::from_file(&tok_path).map_err(|e| Error::Tokenizer {
            path: tok_path.clone(),
            message: e.to_string(),
        })?;
        let cfg = model.config();
        let n = tokenizer.get_vocab_size(true);
        if n > cfg.vocab_size {
            return Err(Error::VocabMismatch {
                path: tok_path,
                tokenizer: n,
                config: cfg.vocab_size,
            });
        }
        // EOS: generation_config.json (what transformers' generate uses), else config.json; plus the chat EOS token
        // of tokenizer_config.json.
        // Both files are optional; one that is there must be JSON.
        let read = |name: &str| -> Result<Option<serde_json::Value>, Error> {
            let path = dir.join(name);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(Error::File {
                        message: format!("cannot read it: {e}"),
                        path,
                    });
                }
            };
            serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::File {
                message: format!("not valid JSON: {e}; expected a JSON object"),
                path,
            })
        };
        let mut eos_ids = read("generation_config.json")?
            .map(|g| infer_models::eos_ids(&g))
            .unwrap_or_default();
        if eos_ids.is_empty() {
            eos_ids = cfg.eos_token_ids.clone();
        }
        if let Some(id) = read("tokenizer_config.json")?.and_then(|t| token_id(&tokenizer, &t["eos_token"]))
            && !eos_ids.contains(&id)
        {
            eos_ids.push(id);
        }
        tracing::info!(dir = %dir.display(), arch = %cfg.arch_name, ?eos_ids, quantize = ?opts.quantize, quantised = ?model.quantised_load(), prefix_cache_bytes = opts.prefix_cache_bytes, "engine loaded");
        let byte_tokens = text::byte_fallback_tokens(&tokenizer);
        let text_tokens: Vec<(u32, String)> = tokenizer
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special && opts.text_tokens.contains(&t.content))
            .map(|(id, t)| (id, t.content))
            .collect();
        let inner = Arc::new(Inner {
            model,
            byte_tokens,
            text_tokens,
            tokenizer,
            eos_ids,
            constraints: std::sync::OnceLock::new(),
            active: Default::default(),
            peak_kv_bytes: Default::default(),
            prefix_stats: Default::default(),
        });
        let tx = scheduler::start(
            inner.clone(),
            opts.max_batch.max(1),
            opts.max_queue,
            opts.step_tokens.max(1),
            opts.prefix_cache_bytes,
        )?;
        Ok(Engine {
            inner,
            tx,
            max_queue: opts.max_queue,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &tokenizers::Tokenizer {
        &self.inner.tokenizer
    }

    /// The context window (max_position_embeddings).
    pub fn context_length(&self) -> usize {
        self.inner.model.config().max_position_embeddings
    }

    /// The EOS ids generation stops on.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.inner.eos_ids
    }

    /// The model's config.
    pub fn model_config(&self) -> &infer_models::ModelConfig {
        self.inner.model.config()
    }

    /// Sequences in the running batch right now (waiting requests not included).
    pub fn active_sequences(&self) -> usize {
        self.inner.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of weights in the folder's safetensors files.
    pub fn weight_bytes(&self) -> u64 {
        self.inner.model.weight_bytes()
    }

    /// Bytes the weights take as the engine runs them (with a quantisation, less than [`Self::weight_bytes`]).
    pub fn held_weight_bytes(&self) -> u64 {
        self.inner.model.held_weight_bytes()
    }

    /// Bytes one decode step of one stream reads from the weights (see `Transformer::decode_read_bytes`).
    pub fn decode_read_bytes(&self) -> u64 {
        self.inner.model.decode_read_bytes()
    }

    /// What the load did about quantisation: matrices quantised, matrices mapped from the cache, cache written.
    pub fn quantised_load(&self) -> QuantisedLoad {
        self.inner.model.quantised_load()
    }

    /// Bytes of weight matrices held in memory rather than read in place from a mapped file (safetensors or the
    /// quantised-weights cache).
    pub fn heap_weight_bytes(&self) -> u64 {
        self.inner.model.heap_weight_bytes()
    }

    /// The most bytes the KV caches of the sequences running together have held at once, since the engine started.
    pub fn peak_kv_cache_bytes(&self) -> u64 {
        self.inner.peak_kv_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What the prefix cache holds and has saved so far (its budget is [`LoadOptions::prefix_cache_bytes`]).
    pub fn prefix_cache_stats(&self) -> PrefixCacheStats {
        self.inner.prefix_stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Queues a request. Fails at once with [`Error::PromptTooLong`], [`Error::QueueFull`] or [`Error::Grammar`].
    pub fn generate(&self, mut req: GenerateRequest) -> Result<Generation, Error> {
        let tokens = match req.prompt_tokens.take() {
            Some(tokens) => {
                let vocab = self.inner.model.config().vocab_size;
                if let Some(bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
                    return Err(Error::Tokenize(format!(
                        "prompt token id {bad} is past the vocabulary: expected ids below {vocab}"
                    )));
                }
                tokens
            }
            None => self
                .inner
                .tokenizer
                .encode(req.prompt.as_str(), req.add_special_tokens)
                .map_err(|e| Error::Tokenize(e.to_string()))?
                .get_ids()
                .to_vec(),
        };
        if tokens.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        let context_length = self.context_length();
        if tokens.len() >= context_length {
            return Err(Error::PromptTooLong {
                prompt_tokens: tokens.len(),
                context_length,
            });
        }
        let constraint = match &req.grammar {
            None => None,
            Some(g) => {
                let factory = self
                    .inner
                    .constraints
                    .get_or_init(|| {
                        let names: Vec<&str> = self.inner.text_tokens.iter().map(|(_, t)| t.as_str()).collect();
                        ConstraintFactory::with_text_tokens(&self.inner.tokenizer, &self.inner.eos_ids, &names)
                            .map(Arc::new)
                            .map_err(|e| e.to_string())
                    })
                    .clone()
                    .map_err(Error::Grammar)?;
                Some(factory.constraint(g).map_err(|e| Error::Grammar(e.to_string()))?)
            }
        };
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel();
        let prompt_tokens = tokens.len();
        let job = scheduler::Job {
            tokens,
            req,
            constraint,
            events: etx,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(Generation { rx: erx, prompt_tokens }),
            Err(TrySendError::Full(_)) => Err(Error::QueueFull {
                max_queue: self.max_queue,
            }),
            Err(TrySendError::Disconnected(_)) => Err(Error::Stopped),
        }
    }
}

#[cfg(test)]
mod tests;
