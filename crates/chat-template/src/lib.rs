//! Hugging Face chat templates: render them byte-for-byte like transformers, detect the model family, repair
//! templates for the Bedrock Converse API, and parse what a model writes back (text, reasoning, tool calls).
//!
//! Rendering uses `minijinja` configured like transformers' Jinja2 sandbox (`trim_blocks`, `lstrip_blocks`, loop
//! controls, Python string methods via `minijinja-contrib`'s pycompat) plus transformers' own globals and filters
//! (`raise_exception`, `strftime_now`, a `json.dumps`-compatible `tojson`).

mod error;
mod family;
mod fix;
pub mod grammar;
mod load;
pub mod parse;
mod pyjson;
mod render;
pub mod think;
mod tree;

/// Re-exported: `RenderRequest::now` is a `chrono::NaiveDateTime`.
pub use chrono;
pub use error::Error;
pub use family::{ConverseSupport, Family, ToolSyntax, converse_support, detect_family, detect_family_in_dir};
pub use fix::{CheckReport, FixOptions, FixOutcome, MOVED_SUFFIX, ORIGINAL_KEY, check, fix, template_for_family, undo};
pub use load::{SpecialTokens, TemplateSource, load_tokenizer_config};
pub use render::{ChatTemplate, Limits, RenderRequest};
