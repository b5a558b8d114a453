//! One registry entry ([`ModelEntry`]) and its inference profiles, in Bedrock Engineer's field names.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One model, with the fields of Bedrock Engineer's `models.ts` (camelCase on disk).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// The model: a foundation-model ID without the provider (`claude-sonnet-4-20250514-v1:0`, as `models.ts`
    /// writes it), a full ID (`anthropic.claude-…`), or an ARN (imported, custom, provisioned, prompt router, …).
    pub base_id: String,
    /// Display name; unique in the registry (case-insensitive).
    pub name: String,
    /// Provider (`anthropic`, `amazon`, `meta`, `deepseek`, …); also the middle part of full foundation IDs.
    pub provider: String,
    /// What the model produces.
    pub category: Category,
    /// Whether the model may be given tools.
    pub tool_use: bool,
    /// The largest `maxTokens` to request.
    pub max_tokens_limit: u32,
    /// `false` when ConverseStream refuses tools for this model: the agent then calls Converse and presents the result
    /// as a stream. Absent means `true`, as in Bedrock Engineer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_streaming_tool_use: Option<bool>,
    /// Whether the model accepts extended-thinking settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supports_thinking: Option<bool>,
    /// The guide's (older) region form: `{ base: ['us-east-1'] }`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    /// The current `models.ts` region form: one profile per way of calling the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_profiles: Option<Vec<InferenceProfile>>,
    /// For imported models: whether Bedrock serves Converse for it (`instructSupported` of GetImportedModel). `false`
    /// means chat goes through InvokeModel with the model's own chat template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruct_supported: Option<bool>,
    /// For imported models: the model folder the import read (a local path), whose chat template the InvokeModel path
    /// renders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_source: Option<String>,
    /// For imported models: the architecture Bedrock detected (`LlamaForCausalLM`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    /// Context window in tokens, when known; history is trimmed to fit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// Fields this version does not know. They are warned about when read and kept when written, never dropped.
    #[serde(flatten)]
    pub extra: IndexMap<String, Value>,
}

/// What a model produces (`models.ts` `ModelCategory`, plus the kinds Bedrock lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    /// Text generation (the only category `cmi chat` uses).
    Text,
    /// Image generation.
    Image,
    /// Video generation.
    Video,
    /// Embeddings.
    Embedding,
}

impl Category {
    /// The spelling on disk.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Text => "text",
            Category::Image => "image",
            Category::Video => "video",
            Category::Embedding => "embedding",
        }
    }
    /// Parses the spelling on disk.
    pub fn parse(s: &str) -> Option<Category> {
        Some(match s {
            "text" => Category::Text,
            "image" => Category::Image,
            "video" => Category::Video,
            "embedding" => Category::Embedding,
            _ => return None,
        })
    }
}

/// The guide's region form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    /// Regions where the model is called directly (no profile prefix).
    pub base: Vec<String>,
}

/// One way of calling a model: directly (`base`) or through a cross-region inference profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceProfile {
    /// The kind of profile.
    #[serde(rename = "type")]
    pub kind: ProfileType,
    /// Prefix put before the foundation-model ID (`us`, `eu`, …); absent for `base`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Regions the profile can be called from.
    pub regions: Vec<String>,
    /// Suffix of the display name (`(US)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_suffix: Option<String>,
}

impl InferenceProfile {
    /// The prefix to use: the explicit one, else the one the type implies.
    pub fn effective_prefix(&self) -> Option<&str> {
        self.prefix
            .as_deref()
            .filter(|p| !p.is_empty())
            .or(self.kind.default_prefix())
    }
}

/// Profile kinds: Bedrock Engineer's (`base`, `global`, `regional-us`, `regional-eu`, `regional-apac`, `jp`) plus the
/// Australian and GovCloud geographies Bedrock also has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileType {
    /// Called directly in one region, no prefix.
    #[serde(rename = "base")]
    Base,
    /// `global.` — all commercial regions.
    #[serde(rename = "global")]
    Global,
    /// `us.`
    #[serde(rename = "regional-us", alias = "us")]
    RegionalUs,
    /// `eu.`
    #[serde(rename = "regional-eu", alias = "eu")]
    RegionalEu,
    /// `apac.`
    #[serde(rename = "regional-apac", alias = "apac")]
    RegionalApac,
    /// `jp.`
    #[serde(rename = "jp", alias = "regional-jp")]
    Jp,
    /// `au.`
    #[serde(rename = "au", alias = "regional-au")]
    Au,
    /// `us-gov.`
    #[serde(rename = "us-gov", alias = "regional-us-gov")]
    UsGov,
}

impl ProfileType {
    /// Every accepted spelling, for error messages.
    pub const SPELLINGS: &'static [&'static str] = &[
        "base",
        "global",
        "regional-us",
        "regional-eu",
        "regional-apac",
        "jp",
        "au",
        "us-gov",
    ];

    /// Parses a spelling (aliases included).
    pub fn parse(s: &str) -> Option<ProfileType> {
        Some(match s {
            "base" => ProfileType::Base,
            "global" => ProfileType::Global,
            "regional-us" | "us" => ProfileType::RegionalUs,
            "regional-eu" | "eu" => ProfileType::RegionalEu,
            "regional-apac" | "apac" => ProfileType::RegionalApac,
            "jp" | "regional-jp" => ProfileType::Jp,
            "au" | "regional-au" => ProfileType::Au,
            "us-gov" | "regional-us-gov" => ProfileType::UsGov,
            _ => return None,
        })
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileType::Base => "base",
            ProfileType::Global => "global",
            ProfileType::RegionalUs => "regional-us",
            ProfileType::RegionalEu => "regional-eu",
            ProfileType::RegionalApac => "regional-apac",
            ProfileType::Jp => "jp",
            ProfileType::Au => "au",
            ProfileType::UsGov => "us-gov",
        }
    }

    /// The model-ID prefix the type implies.
    pub fn default_prefix(self) -> Option<&'static str> {
        match self {
            ProfileType::Base => None,
            ProfileType::Global => Some("global"),
            ProfileType::RegionalUs => Some("us"),
            ProfileType::RegionalEu => Some("eu"),
            ProfileType::RegionalApac => Some("apac"),
            ProfileType::Jp => Some("jp"),
            ProfileType::Au => Some("au"),
            ProfileType::UsGov => Some("us-gov"),
        }
    }

    /// Order of preference when several profiles serve a region: direct first, then the narrowest geography, global
    /// last (it may route outside the user's geography).
    fn rank(self) -> u8 {
        match self {
            ProfileType::Base => 0,
            ProfileType::Jp | ProfileType::Au | ProfileType::UsGov => 1,
            ProfileType::RegionalUs | ProfileType::RegionalEu | ProfileType::RegionalApac => 2,
            ProfileType::Global => 3,
        }
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The compiled-in catalogue.
    Builtin,
    /// The user's registry file.
    User,
}

/// A model ready to call: the ID to send, the entry it came from and the profile chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel {
    /// The `modelId` to send (ARNs as-is, foundation IDs with the profile prefix).
    pub model_id: String,
    /// The entry (a default one when the ID is not in the registry).
    pub entry: ModelEntry,
    /// The profile chosen, if any.
    pub profile: Option<InferenceProfile>,
    /// False when the ID was not in the registry and the entry holds defaults.
    pub registered: bool,
}

impl ModelEntry {
    /// A minimal text entry with defaults (tool use on, streaming tool use unknown) for an ID the registry lacks.
    pub fn new(base_id: impl Into<String>, name: impl Into<String>, provider: impl Into<String>) -> ModelEntry {
        ModelEntry {
            base_id: base_id.into(),
            name: name.into(),
            provider: provider.into(),
            category: Category::Text,
            tool_use: true,
            max_tokens_limit: 4096,
            supports_streaming_tool_use: None,
            supports_thinking: None,
            availability: None,
            inference_profiles: None,
            instruct_supported: None,
            model_source: None,
            architecture: None,
            context_length: None,
            extra: IndexMap::new(),
        }
    }

    /// The profiles, with the guide's `availability` form read as one `base` profile.
    pub fn profiles(&self) -> Vec<InferenceProfile> {
        if let Some(p) = &self.inference_profiles {
            return p.clone();
        }
        match &self.availability {
            Some(a) => vec![InferenceProfile {
                kind: ProfileType::Base,
                prefix: None,
                regions: a.base.clone(),
                display_suffix: None,
            }],
            None => vec![],
        }
    }

    /// Every region some profile serves, in first-seen order.
    pub fn regions(&self) -> Vec<String> {
        let mut out: Vec<String> = vec![];
        for p in self.profiles() {
            for r in p.regions {
                if !out.contains(&r) {
                    out.push(r);
                }
            }
        }
        out
    }

    /// Whether `baseId` is an ARN (any partition), which is sent as-is.
    pub fn is_arn(&self) -> bool {
        self.base_id.starts_with("arn:")
    }

    /// The full foundation-model ID without a profile prefix: `provider.baseId`, unless `baseId` already carries the
    /// provider (or is an ARN).
    pub fn foundation_id(&self) -> String {
        if self.is_arn() || self.base_id.starts_with(&format!("{}.", self.provider)) {
            self.base_id.clone()
        } else {
            format!("{}.{}", self.provider, self.base_id)
        }
    }

    /// The model ID to send through `profile`: ARNs as-is, else `prefix.provider.baseId` (Bedrock Engineer's
    /// `generateFullModelId`).
    pub fn model_id_for_profile(&self, profile: &InferenceProfile) -> String {
        if self.is_arn() {
            return self.base_id.clone();
        }
        match profile.effective_prefix() {
            Some(prefix) => format!("{prefix}.{}", self.foundation_id()),
            None => self.foundation_id(),
        }
    }

    /// The best profile serving `region` (direct first, global last).
    pub fn profile_for_region(&self, region: &str) -> Option<InferenceProfile> {
        let mut ps: Vec<InferenceProfile> = self
            .profiles()
            .into_iter()
            .filter(|p| p.regions.iter().any(|r| r == region))
            .collect();
        ps.sort_by_key(|p| p.kind.rank());
        ps.into_iter().next()
    }

    /// The model ID to send from `region`: ARNs as-is; foundation models through the best profile serving the region,
    /// `None` if none does.
    pub fn model_id_for_region(&self, region: &str) -> Option<String> {
        if self.is_arn() {
            return Some(self.base_id.clone());
        }
        self.profile_for_region(region).map(|p| self.model_id_for_profile(&p))
    }

    /// Whether ConverseStream may carry tools for this model (absent means yes).
    pub fn streams_with_tools(&self) -> bool {
        self.supports_streaming_tool_use != Some(false)
    }

    /// Whether the model is called through Converse (absent means yes); `false` selects the InvokeModel path.
    pub fn uses_converse(&self) -> bool {
        self.instruct_supported != Some(false)
    }
}
