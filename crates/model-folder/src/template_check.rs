//! The chat-template part of the preflight: is there a template, and will the imported model serve Converse (with
//! and without tools)? The prediction itself is `chat_template::converse_support`.

use std::path::Path;

use serde_json::Value;

use crate::arch::Accepted;
use crate::{Finding, Severity};

/// What the template check concluded.
pub(crate) struct TemplateVerdict {
    pub(crate) family: chat_template::Family,
    pub(crate) converse: bool,
    pub(crate) tools: bool,
}

pub(crate) fn check(
    dir: &Path,
    config: Option<&Value>,
    accepted: Option<&'static Accepted>,
    findings: &mut Vec<Finding>,
) -> TemplateVerdict {
    let mut add = |severity, code: &str, message: String, fix: Option<String>| {
        findings.push(Finding {
            severity,
            code: code.to_string(),
            message,
            fix,
        })
    };
    let fix_cmd = format!(
        "run `cmi template fix {}` (cmi import repairs a staged copy automatically)",
        dir.display()
    );
    let template = match chat_template::ChatTemplate::from_model_dir(dir) {
        Ok(t) => Some(t),
        Err(e) => {
            let missing = !has_template_source(dir);
            if missing {
                add(
                    Severity::Warning,
                    "missing-chat-template",
                    "no chat template (chat_template.jinja, chat_template.json or tokenizer_config.json `chat_template`): the imported model will not serve Converse".to_string(),
                    Some(fix_cmd.clone()),
                );
            } else {
                add(
                    Severity::Warning,
                    "invalid-chat-template",
                    format!("the chat template cannot be used: {e}"),
                    Some(fix_cmd.clone()),
                );
            }
            None
        }
    };
    let family = chat_template::detect_family(config, template.as_ref().map(|t| t.source()));
    let Some(template) = template else {
        return TemplateVerdict {
            family,
            converse: false,
            tools: false,
        };
    };
    let support = chat_template::converse_support(&template);
    let arch_converse = accepted.is_none_or(|a| a.converse);
    if !arch_converse {
        let mt = accepted.map(|a| a.model_type).unwrap_or("?");
        add(
            Severity::Info,
            "converse-unsupported-architecture",
            format!(
                "Bedrock does not serve Converse for imported `{mt}` models; use InvokeModel (cmi chat does this for you)"
            ),
            None,
        );
    } else if !support.converse {
        add(
            Severity::Warning,
            "template-not-converse",
            format!(
                "the chat template will not serve Converse: {}",
                support.reasons.join("; ")
            ),
            Some(fix_cmd.clone()),
        );
    } else if !support.tools {
        add(
            Severity::Warning,
            "template-no-tools",
            format!(
                "the chat template serves Converse but not tools{}",
                if support.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", support.reasons.join("; "))
                }
            ),
            Some(fix_cmd),
        );
    }
    TemplateVerdict {
        family,
        converse: arch_converse && support.converse,
        tools: arch_converse && support.converse && support.tools,
    }
}

fn has_template_source(dir: &Path) -> bool {
    if dir.join("chat_template.jinja").is_file() || dir.join("chat_template.json").is_file() {
        return true;
    }
    std::fs::read(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .is_some_and(|v| v.get("chat_template").is_some_and(|t| !t.is_null()))
}
