//! Hugging Face chat templates: render them byte-for-byte like transformers, detect the model family, repair
//! templates for the Bedrock Converse API, and parse what a model writes back (text, reasoning, tool calls).
//!
//! Rendering uses `minijinja` configured like transformers' Jinja2 sandbox (`trim_blocks`, `lstrip_blocks`, loop
//! controls, Python string methods via `minijinja-contrib`'s pycompat) plus transformers' own globals and filters
//! (`raise_exception`, `strftime_now`, a `json.dumps`-compatible `tojson`).

/// Real chat templates, byte-exact from the conformance corpus: the ones `fix` installs, and the ones generated
/// models carry (`model-synth`).
pub mod templates {
    /// Llama 3.1 Instruct (tool definitions in the first user message, JSON calls).
    pub const LLAMA_3_1: &str = include_str!("templates/llama-3.1-8b-instruct.jinja");
    /// Qwen2.5 Instruct (`<tool_call>` JSON).
    pub const QWEN_2_5: &str = include_str!("templates/qwen2.5-7b-instruct.jinja");
    /// Qwen3 (`<think>` reasoning, `<tool_call>` JSON).
    pub const QWEN_3: &str = include_str!("templates/qwen3-0.6b.jinja");
    /// Mistral 7B Instruct v0.3 (`[TOOL_CALLS]`).
    pub const MISTRAL_V3: &str = include_str!("templates/mistral-7b-instruct-v0.3.jinja");
    /// GPT-OSS 20B (OpenAI's harmony format): `chat_template.jinja` of the Hugging Face repository `openai/gpt-oss-20b`
    /// as of its commit cbf31f62664d4b1360b3a78427f7b3c3ed8f0fa8 ("Update chat_template.jinja (#94)"), byte-exact.
    pub const GPT_OSS: &str = include_str!("templates/gpt-oss-20b.jinja");
}

mod error;
mod family;
mod fix;
pub mod grammar;
mod load;
pub mod parse;
mod pyjson;
mod render;
mod support;
pub mod think;
mod tree;

/// Re-exported: `RenderRequest::now` is a `chrono::NaiveDateTime`.
pub use chrono;
pub use error::Error;
pub use family::{Family, ToolSyntax, detect_family};
pub use fix::{CheckReport, FixOptions, FixOutcome, MOVED_SUFFIX, ORIGINAL_KEY, check, fix, template_for_family, undo};
pub use load::{SpecialTokens, TemplateSource, load_tokenizer_config};
/// Harmony (GPT-OSS), read by the output parser: its control tokens and [`harmony::HarmonyParser`].
pub use parse::harmony;
pub use render::{ChatTemplate, Limits, RenderRequest};
pub use support::{ConverseSupport, converse_support, detect_family_in_dir};
