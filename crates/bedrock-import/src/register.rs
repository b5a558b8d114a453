//! Writing the imported model into the user's model registry, in the form Bedrock Engineer users know.

use std::path::{Path, PathBuf};

use model_registry::{Availability, Category, ModelEntry, Registry};

use crate::Error;

/// Longest `maxTokensLimit` we register: Bedrock Engineer's examples use 4096–8192 for imported models.
const MAX_OUTPUT_TOKENS: u64 = 8192;

/// What to register.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Display name (`--name`).
    pub name: String,
    /// The imported model's ARN (`baseId`).
    pub model_arn: String,
    /// Provider (`meta`, `mistral`, `qwen`, …).
    pub provider: String,
    /// Region the model lives in.
    pub region: String,
    /// Context length from `config.json`.
    pub context_length: Option<u64>,
    /// Converse works (`instructSupported`).
    pub instruct_supported: bool,
    /// The template renders tools.
    pub tool_use: bool,
    /// The folder that was imported (its template drives the InvokeModel path).
    pub model_source: Option<PathBuf>,
    /// Architecture class.
    pub architecture: Option<String>,
}

/// The provider name users expect for a `model_type`.
pub fn provider_for(model_type: Option<&str>) -> &'static str {
    match model_type {
        Some("llama" | "mllama") => "meta",
        Some("mistral" | "mixtral") => "mistral",
        Some(t) if t.starts_with("qwen") => "qwen",
        Some("gpt_oss") => "openai",
        Some("t5") => "google",
        Some("gpt_bigcode") => "bigcode",
        _ => "custom",
    }
}

impl Registration {
    /// The registry entry: `category: text`, `supportsStreamingToolUse: false` (imported models do not stream with
    /// tools), `availability: { base: [region] }`, `maxTokensLimit` half the context (room for the prompt), at most
    /// 8192.
    pub fn entry(&self) -> ModelEntry {
        let mut e = ModelEntry::new(&self.model_arn, &self.name, &self.provider);
        e.category = Category::Text;
        e.tool_use = self.tool_use;
        e.max_tokens_limit = self
            .context_length
            .map(|c| (c / 2).clamp(1, MAX_OUTPUT_TOKENS))
            .unwrap_or(4096) as u32;
        e.supports_streaming_tool_use = Some(false);
        e.availability = Some(Availability {
            base: vec![self.region.clone()],
        });
        e.instruct_supported = Some(self.instruct_supported);
        e.model_source = self.model_source.as_ref().map(|p| p.display().to_string());
        e.architecture = self.architecture.clone();
        e.context_length = self.context_length.map(|c| c.min(u32::MAX as u64) as u32);
        e
    }
}

/// Adds (or replaces) the entry in the registry file; the file is rewritten atomically.
pub fn register(registry_file: &Path, r: &Registration) -> Result<ModelEntry, Error> {
    let mut registry = Registry::load(registry_file).map_err(Error::Registry)?;
    let entry = r.entry();
    registry.upsert(entry.clone()).map_err(Error::Registry)?;
    registry.save().map_err(Error::Registry)?;
    tracing::info!(name = %r.name, arn = %r.model_arn, file = %registry_file.display(), "model registered");
    Ok(entry)
}
