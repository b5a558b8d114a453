//! Model families (from `config.json` and template fingerprints) and the tool-call syntax a template teaches: facts
//! read from text, with no rendering (that is [`crate::support`]'s).

use std::fmt;
use std::str::FromStr;

use serde_json::Value as Json;

/// A chat-model family as far as prompting and tool calls are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Family {
    /// Llama 2 chat (`[INST] <<SYS>>`).
    Llama2,
    /// CodeLlama Instruct (Llama 2 format, `| trim`).
    CodeLlama,
    /// Llama 3 / 3-Instruct without tool support in the template.
    Llama3,
    /// Llama 3.1 / 3.3 (JSON tool calls, `<|python_tag|>`).
    Llama31,
    /// Llama 3.2 (like 3.1, date from `strftime_now`).
    Llama32,
    /// Mistral 7B Instruct v0.1 / v0.2 (no tool tokens).
    Mistral,
    /// Mistral v0.3 / Large with `[AVAILABLE_TOOLS]` / `[TOOL_CALLS]`.
    MistralV3,
    /// Mistral NeMo (tekken: no spaces after control tokens).
    MistralNemo,
    /// Mixtral 8x7B Instruct.
    Mixtral,
    /// Qwen2 / Qwen2.5 (ChatML + Hermes `<tool_call>`).
    Qwen2,
    /// Qwen3 (ChatML, `<think>`, Hermes tools).
    Qwen3,
    /// DeepSeek-R1-Distill-Llama.
    DeepSeekR1DistillLlama,
    /// DeepSeek-R1-Distill-Qwen.
    DeepSeekR1DistillQwen,
    /// Plain ChatML (`<|im_start|>`), e.g. SmolLM2.
    ChatMl,
    /// StarCoder2 / GPTBigCode instruct (`### Instruction`).
    StarCoder2,
    /// T5 / Flan-T5 (encoder-decoder, no chat template).
    T5,
    /// GPT-OSS (OpenAI's harmony format: `<|start|>`/`<|channel|>`/`<|message|>`, tool calls to `functions.NAME`).
    GptOss,
    /// Not recognised.
    Unknown,
}

const FAMILY_NAMES: &[(Family, &str)] = &[
    (Family::Llama2, "llama2"),
    (Family::CodeLlama, "codellama"),
    (Family::Llama3, "llama3"),
    (Family::Llama31, "llama3.1"),
    (Family::Llama32, "llama3.2"),
    (Family::Mistral, "mistral"),
    (Family::MistralV3, "mistral-v0.3"),
    (Family::MistralNemo, "mistral-nemo"),
    (Family::Mixtral, "mixtral"),
    (Family::Qwen2, "qwen2"),
    (Family::Qwen3, "qwen3"),
    (Family::DeepSeekR1DistillLlama, "deepseek-r1-distill-llama"),
    (Family::DeepSeekR1DistillQwen, "deepseek-r1-distill-qwen"),
    (Family::ChatMl, "chatml"),
    (Family::StarCoder2, "starcoder2"),
    (Family::T5, "t5"),
    (Family::GptOss, "gpt-oss"),
    (Family::Unknown, "unknown"),
];

impl Family {
    /// Every family, in a stable order.
    pub fn all() -> impl Iterator<Item = Family> {
        FAMILY_NAMES.iter().map(|(f, _)| *f)
    }

    /// The canonical name (`llama3.1`, `qwen2`, `chatml`, ...).
    pub fn name(self) -> &'static str {
        FAMILY_NAMES
            .iter()
            .find(|(f, _)| *f == self)
            .map_or("unknown", |(_, n)| n)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Family {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        let alias = match norm.as_str() {
            "llama-2" | "llama2-chat" => "llama2",
            "code-llama" => "codellama",
            "llama-3" => "llama3",
            "llama3.3" | "llama-3.1" | "llama-3.3" | "llama31" => "llama3.1",
            "llama-3.2" | "llama32" => "llama3.2",
            "mistral-v0.1" | "mistral-v0.2" => "mistral",
            "mistral-v3" | "mistral-large" => "mistral-v0.3",
            "nemo" => "mistral-nemo",
            "qwen2.5" | "qwen" => "qwen2",
            "deepseek-r1-distill" | "deepseek-r1" | "deepseek" => "deepseek-r1-distill-llama",
            "smollm2" | "smollm" | "hermes" => "chatml",
            "gpt-bigcode" | "gptbigcode" | "starcoder" => "starcoder2",
            "flan-t5" => "t5",
            "harmony" | "gptoss" => "gpt-oss",
            other => other,
        };
        FAMILY_NAMES
            .iter()
            .find(|(_, n)| *n == alias)
            .map(|(f, _)| *f)
            .ok_or_else(|| {
                format!(
                    "unknown family `{s}`; expected one of: {}",
                    FAMILY_NAMES.iter().map(|(_, n)| *n).collect::<Vec<_>>().join(", ")
                )
            })
    }
}

/// How a model prompted with a template writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolSyntax {
    /// Llama 3.1+: a bare JSON object `{"name": .., "parameters": ..}` (optionally after `<|python_tag|>`).
    Llama3Json,
    /// Hermes / Qwen: `<tool_call>\n{"name": .., "arguments": ..}\n</tool_call>`.
    Hermes,
    /// Mistral: `[TOOL_CALLS] [{"name": .., "arguments": ..}, ...]`.
    MistralToolCalls,
    /// OpenAI harmony (GPT-OSS): `<|start|>assistant<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>{..}<|call|>`.
    Harmony,
    /// DeepSeek: `<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME\n```json\n{..}\n```<｜tool▁call▁end｜>...`.
    DeepSeek,
    /// The template does not teach tool calls.
    None,
}

impl ToolSyntax {
    /// Reads a template's text for the tool-call convention it teaches.
    pub fn from_template(src: &str) -> ToolSyntax {
        if is_harmony(src) {
            ToolSyntax::Harmony
        } else if src.contains("<tool_call>") {
            ToolSyntax::Hermes
        } else if src.contains("[TOOL_CALLS]") {
            ToolSyntax::MistralToolCalls
        } else if src.contains("tool▁call▁begin") || src.contains("tool▁calls▁begin") {
            ToolSyntax::DeepSeek
        } else if src.contains("<|python_tag|>")
            || (src.contains("<|start_header_id|>") && src.contains("\"parameters\""))
        {
            ToolSyntax::Llama3Json
        } else {
            ToolSyntax::None
        }
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            ToolSyntax::Llama3Json => "llama3-json",
            ToolSyntax::Hermes => "hermes",
            ToolSyntax::MistralToolCalls => "mistral",
            ToolSyntax::DeepSeek => "deepseek",
            ToolSyntax::Harmony => "harmony",
            ToolSyntax::None => "none",
        }
    }
}

impl fmt::Display for ToolSyntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a template writes OpenAI's harmony format (GPT-OSS): messages framed by `<|start|>` and `<|message|>`,
/// with a `<|channel|>` in the header.
fn is_harmony(src: &str) -> bool {
    src.contains("<|channel|>") && src.contains("<|start|>") && src.contains("<|message|>")
}

fn config_str<'a>(config: Option<&'a Json>, key: &str) -> Option<&'a str> {
    config.and_then(|c| c.get(key)).and_then(Json::as_str)
}

fn architectures(config: Option<&Json>) -> Vec<String> {
    config
        .and_then(|c| c.get("architectures"))
        .and_then(Json::as_array)
        .map(|a| a.iter().filter_map(Json::as_str).map(str::to_ascii_lowercase).collect())
        .unwrap_or_default()
}

/// Detects the family from `config.json` (`model_type`, `architectures`, vocabulary) and the template's text.
/// The template wins where it is specific (a DeepSeek or Llama 3.1 template on a Llama model says more than
/// `model_type: llama`).
pub fn detect_family(config_json: Option<&Json>, template: Option<&str>) -> Family {
    let model_type = config_str(config_json, "model_type").unwrap_or("").to_ascii_lowercase();
    let archs = architectures(config_json);
    let arch_has = |s: &str| archs.iter().any(|a| a.contains(s));
    let vocab = config_json
        .and_then(|c| c.get("vocab_size"))
        .and_then(Json::as_u64)
        .unwrap_or(0);
    let qwen_based = model_type.starts_with("qwen") || arch_has("qwen");

    if model_type == "t5" || model_type == "mt5" || arch_has("t5forconditional") {
        return Family::T5;
    }
    if let Some(t) = template {
        if is_harmony(t) {
            return Family::GptOss;
        }
        if t.contains("<｜Assistant｜>") || t.contains("<｜User｜>") {
            return if qwen_based {
                Family::DeepSeekR1DistillQwen
            } else {
                Family::DeepSeekR1DistillLlama
            };
        }
        if t.contains("<|start_header_id|>") {
            return if t.contains("<|python_tag|>") || t.contains("Environment: ipython") {
                if t.contains("strftime_now") {
                    Family::Llama32
                } else {
                    Family::Llama31
                }
            } else {
                Family::Llama3
            };
        }
        if t.contains("[INST]") {
            if t.contains("<<SYS>>") {
                return if t.contains("| trim + ' [/INST]'") || vocab == 32016 {
                    Family::CodeLlama
                } else {
                    Family::Llama2
                };
            }
            if model_type == "mixtral" || arch_has("mixtral") {
                return Family::Mixtral;
            }
            if t.contains("[AVAILABLE_TOOLS]") || t.contains("[TOOL_CALLS]") {
                return if t.contains("\"[INST]\" + message") || t.contains("[AVAILABLE_TOOLS][") {
                    Family::MistralNemo
                } else {
                    Family::MistralV3
                };
            }
            return Family::Mistral;
        }
        if t.contains("<|im_start|>") {
            // Qwen3-MoE (`qwen3_moe`) shares dense Qwen3's template.
            if t.contains("<think>") || t.contains("enable_thinking") || model_type.starts_with("qwen3") {
                return Family::Qwen3;
            }
            if qwen_based || t.contains("You are Qwen") {
                return Family::Qwen2;
            }
            return Family::ChatMl;
        }
        if t.contains("### Instruction") || t.contains("### Response") {
            return Family::StarCoder2;
        }
    }
    match model_type.as_str() {
        "llama" => {
            if vocab >= 128_000 {
                Family::Llama31
            } else if vocab == 32016 {
                Family::CodeLlama
            } else if vocab == 49152 {
                // SmolLM2 is a Llama architecture with a ChatML vocabulary.
                Family::ChatMl
            } else {
                Family::Llama2
            }
        }
        "mistral" => {
            if vocab >= 131_072 {
                Family::MistralNemo
            } else if vocab == 32768 {
                Family::MistralV3
            } else {
                Family::Mistral
            }
        }
        "mixtral" => Family::Mixtral,
        "qwen2" => Family::Qwen2,
        "qwen3" | "qwen3_moe" => Family::Qwen3,
        "gpt_oss" => Family::GptOss,
        "starcoder2" | "gpt_bigcode" => Family::StarCoder2,
        _ if arch_has("llama") => Family::Llama2,
        _ if arch_has("mistral") => Family::Mistral,
        _ => Family::Unknown,
    }
}

#[cfg(test)]
mod tests;
