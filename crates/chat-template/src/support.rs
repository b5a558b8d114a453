//! What a model folder's template supports, found by rendering it: its family (with `config.json`) and the Converse
//! support prediction (Bedrock's `instructSupported`, and tools).

use std::path::Path;

use serde_json::{Value as Json, json};

use crate::{ChatTemplate, Error, Family, RenderRequest, ToolSyntax, detect_family};

/// Detects the family of a model folder (`config.json` + the template `from_model_dir` finds, if any).
pub fn detect_family_in_dir(dir: &Path) -> Result<Family, Error> {
    let cfg_path = dir.join("config.json");
    let config = if cfg_path.is_file() {
        Some(crate::load::read_json(&cfg_path)?)
    } else {
        None
    };
    let template = match ChatTemplate::from_model_dir(dir) {
        Ok(t) => Some(t),
        Err(Error::NoTemplate { .. }) => None,
        Err(e) => return Err(e),
    };
    Ok(detect_family(config.as_ref(), template.as_ref().map(|t| t.source())))
}

/// Whether the Converse API can work with a template (Bedrock's `instructSupported`), with and without tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConverseSupport {
    /// A system + multi-turn conversation renders and ends with an open assistant turn.
    pub converse: bool,
    /// Tool definitions reach the prompt and an assistant tool call + tool result render.
    pub tools: bool,
    /// Why either is false, plus notes (e.g. a template that ignores `add_generation_prompt`, as Mistral's do).
    pub reasons: Vec<String>,
}

fn probe_tools() -> Vec<Json> {
    vec![json!({"type": "function", "function": {
        "name": "cmi_probe_lookup",
        "description": "Look up a probe value.",
        "parameters": {"type": "object", "properties": {"key": {"type": "string", "description": "Key"}},
                       "required": ["key"]}}})]
}

/// Predicts Converse support by rendering probe conversations, the way Bedrock would use the template.
pub fn converse_support(t: &ChatTemplate) -> ConverseSupport {
    let mut reasons = Vec::new();
    let now = chrono::NaiveDate::from_ymd_opt(2025, 1, 15).and_then(|d| d.and_hms_opt(12, 0, 0));
    let base = |messages: Vec<Json>, tools: Option<Vec<Json>>| RenderRequest {
        messages,
        tools,
        add_generation_prompt: true,
        template_kwargs: serde_json::Map::new(),
        now,
    };
    let user_marker = "cmi-probe-user-7f3a";
    let system_marker = "cmi-probe-system-91c2";
    let chat = vec![
        json!({"role": "system", "content": system_marker}),
        json!({"role": "user", "content": "Hello"}),
        json!({"role": "assistant", "content": "Hi there."}),
        json!({"role": "user", "content": user_marker}),
    ];
    let mut converse = true;
    match t.render(&base(chat.clone(), None)) {
        Ok(out) => {
            if !out.contains(user_marker) {
                converse = false;
                reasons.push("the rendered prompt does not contain the last user message".into());
            }
            if !out.contains(system_marker) {
                converse = false;
                reasons.push("the template drops the system prompt".into());
            }
            let without = t.render(&RenderRequest {
                add_generation_prompt: false,
                ..base(chat.clone(), None)
            });
            if without.is_ok_and(|w| w == out) {
                reasons.push(
                    "add_generation_prompt adds nothing: the model is not told to answer as the assistant".into(),
                );
            }
        }
        Err(e) => {
            converse = false;
            reasons.push(format!("a system + multi-turn conversation does not render: {e}"));
        }
    }

    let mut tools = converse;
    if t.tool_syntax() == ToolSyntax::None {
        tools = false;
        reasons.push("the template does not teach a tool-call format".into());
    }
    let asking = vec![
        json!({"role": "system", "content": system_marker}),
        json!({"role": "user", "content": user_marker}),
    ];
    match t.render(&base(asking, Some(probe_tools()))) {
        Ok(out) if out.contains("cmi_probe_lookup") => {}
        Ok(_) => {
            tools = false;
            reasons.push("tool definitions passed as `tools` do not appear in the prompt".into());
        }
        Err(e) => {
            tools = false;
            reasons.push(format!("a conversation with tools does not render: {e}"));
        }
    }
    let round_trip = vec![
        json!({"role": "system", "content": system_marker}),
        json!({"role": "user", "content": user_marker}),
        // Content "" (not absent): what OpenAI-style clients send with tool calls; some templates (Qwen3) need it.
        json!({"role": "assistant", "content": "", "tool_calls": [{"id": "call0A1b2", "type": "function",
            "function": {"name": "cmi_probe_lookup", "arguments": {"key": "k"}}}]}),
        json!({"role": "tool", "tool_call_id": "call0A1b2", "name": "cmi_probe_lookup",
            "content": "cmi-probe-result-55e1"}),
    ];
    match t.render(&base(round_trip, Some(probe_tools()))) {
        Ok(out) => {
            if !out.contains("cmi-probe-result-55e1") {
                tools = false;
                reasons.push("tool results (role `tool`) do not appear in the prompt".into());
            }
            if out.matches("cmi_probe_lookup").count() < 2 {
                tools = false;
                reasons.push("the assistant's earlier tool call does not appear in the prompt".into());
            }
        }
        Err(e) => {
            tools = false;
            reasons.push(format!(
                "an assistant tool call followed by a tool result does not render: {e}"
            ));
        }
    }
    reasons.dedup();
    ConverseSupport {
        converse,
        tools,
        reasons,
    }
}
