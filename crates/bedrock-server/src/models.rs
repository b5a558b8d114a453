//! The models loaded into the engine: a cold start answers `ModelNotReadyException` while the model loads in the
//! background (unless the server is warm), idle models are unloaded, and a model's quantisation is chosen per model.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use infer_engine::Quantize;

use crate::ServerConfig;
use crate::db::ModelRow;
use crate::error::ApiError;

/// How models are loaded (from [`crate::ServerConfig`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LoadSettings {
    /// A quantisation the engine runs, or `None` for the weights as stored.
    pub(crate) quantize: Option<Quantize>,
    pub(crate) max_batch: usize,
    pub(crate) max_queue: usize,
    /// Bytes of the engine's prefix cache (`None`: its default).
    pub(crate) prefix_cache_bytes: Option<usize>,
}

/// A model ready to serve.
pub(crate) struct Loaded {
    pub(crate) engine: infer_engine::Engine,
    pub(crate) template: Option<chat_template::ChatTemplate>,
    /// The quantisation it runs in (`None`: the weights as stored).
    quantize: Option<Quantize>,
}

impl Loaded {
    /// The tool-call syntax the model's template teaches.
    pub(crate) fn tool_syntax(&self) -> chat_template::ToolSyntax {
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
    /// `ServerConfig::model_quantize`, parsed: model name or ARN → quantisation (`None`: as stored).
    model_quantize: Vec<(String, Option<Quantize>)>,
}

impl std::fmt::Debug for Models {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Models")
            .field("warm", &self.warm)
            .finish_non_exhaustive()
    }
}

const NOT_READY: &str = "Model is not ready for inference. Wait and try your request again. Refer to https://docs.aws.amazon.com/bedrock/latest/userguide/invoke-imported-model.html#handle-model-not-ready-exception.";

/// The quantised-weights cache in an imported model's folder (the server's own copy, under the data directory): the
/// engine maps the blocks from it, or quantises and writes it when it is missing or made from something else (another
/// quantisation, other weights). One file per model, whatever its quantisation, so a change of setting replaces it
/// rather than adding another; it goes with the folder when the model is deleted or imported again.
pub(crate) const QUANTISED_CACHE: &str = "cmi-quantised.bin";

fn load_blocking(dir: &Path, settings: &LoadSettings) -> Result<Loaded, String> {
    let template = chat_template::ChatTemplate::from_model_dir(dir).ok();
    // Harmony (GPT-OSS) is framed by special tokens: the output's reader must see them, and a forced call's grammar
    // writes them.
    let text_tokens = match template.as_ref().map(chat_template::ChatTemplate::tool_syntax) {
        Some(chat_template::ToolSyntax::Harmony) => {
            chat_template::harmony::TOKENS.iter().map(|t| t.to_string()).collect()
        }
        _ => Vec::new(),
    };
    let opts = infer_engine::LoadOptions {
        quantize: settings.quantize,
        quantised_cache: settings.quantize.map(|_| dir.join(QUANTISED_CACHE)),
        max_batch: settings.max_batch,
        max_queue: settings.max_queue,
        prefix_cache_bytes: settings
            .prefix_cache_bytes
            .unwrap_or_else(infer_engine::default_prefix_cache_bytes),
        text_tokens,
        ..infer_engine::LoadOptions::default()
    };
    let engine = infer_engine::Engine::load(dir, opts).map_err(|e| e.to_string())?;
    Ok(Loaded {
        engine,
        template,
        quantize: settings.quantize,
    })
}

impl Models {
    /// The models of a server (its quantisation settings come typed: `ServerConfig` holds `Quantize`s).
    pub(crate) fn new(config: &ServerConfig) -> Self {
        Models {
            slots: Mutex::new(HashMap::new()),
            warm: config.warm,
            idle_unload: config.idle_unload,
            load: LoadSettings {
                quantize: config.quantize,
                max_batch: config.max_batch,
                max_queue: config.max_queue,
                prefix_cache_bytes: config
                    .prefix_cache_mb
                    .map(|mb| usize::try_from(mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)),
            },
            model_quantize: config.model_quantize.clone(),
        }
    }

    /// How a model loads: the server's settings, with the quantisation of a `model_quantize` entry for its name or
    /// ARN, else of its `cmi:quantize` import tag, else the server's own (`none` runs the weights as stored).
    pub(crate) fn settings_for(&self, name: &str, arn: &str, tag: Option<&str>) -> LoadSettings {
        let mut settings = self.load.clone();
        let configured = self
            .model_quantize
            .iter()
            .find(|(n, _)| n == name || n == arn)
            .map(|(_, q)| *q);
        // The tag was checked at CreateModelImportJob.
        let tagged = tag.and_then(|t| Quantize::parse_setting(t).ok());
        if let Some(q) = configured.or(tagged) {
            settings.quantize = q;
        }
        settings
    }

    /// The loaded models' ids, each with what its load did about quantisation.
    pub(crate) fn quantised_loads(&self) -> Vec<(String, infer_engine::QuantisedLoad)> {
        self.each_ready(|m| m.engine.quantised_load())
    }

    /// The loaded models' ids, each with its quantisation.
    pub(crate) fn loaded(&self) -> Vec<(String, Option<Quantize>)> {
        self.each_ready(|m| m.quantize)
    }

    /// The loaded models' ids, each with what its prefix cache holds and has saved.
    pub(crate) fn prefix_caches(&self) -> Vec<(String, infer_engine::PrefixCacheStats)> {
        self.each_ready(|m| m.engine.prefix_cache_stats())
    }

    /// `f` of every loaded model, with its id.
    fn each_ready<T>(&self, f: impl Fn(&Loaded) -> T) -> Vec<(String, T)> {
        self.lock()
            .iter()
            .filter_map(|(id, slot)| match slot {
                Slot::Ready { model, .. } => Some((id.clone(), f(model))),
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
    pub(crate) async fn get(&self, model: &ModelRow) -> Result<Arc<Loaded>, ApiError> {
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

    pub(crate) fn touch(&self, id: &str) {
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
    pub(crate) fn unload_idle(&self) {
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
