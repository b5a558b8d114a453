//! Finding and reading a model folder's chat template and special tokens (`tokenizer_config.json`,
//! `chat_template.jinja`, `chat_template.json`, `special_tokens_map.json`).

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::Error;

/// The special-token variables transformers passes to a template, in its order
/// (`SPECIAL_TOKENS_ATTRIBUTES`). A `None` token is not defined in the template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// `bos_token`.
    pub bos_token: Option<String>,
    /// `eos_token`.
    pub eos_token: Option<String>,
    /// `unk_token`.
    pub unk_token: Option<String>,
    /// `sep_token`.
    pub sep_token: Option<String>,
    /// `pad_token`.
    pub pad_token: Option<String>,
    /// `cls_token`.
    pub cls_token: Option<String>,
    /// `mask_token`.
    pub mask_token: Option<String>,
}

/// Names of the special-token attributes, in transformers' order.
pub(crate) const SPECIAL_TOKEN_NAMES: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

impl SpecialTokens {
    /// Reads the special tokens of a `tokenizer_config.json` (or `special_tokens_map.json`) object: each may be a
    /// plain string or an `AddedToken` object (`{"__type": "AddedToken", "content": ...}`).
    pub fn from_json(config: &Json) -> SpecialTokens {
        let mut t = SpecialTokens::default();
        for name in SPECIAL_TOKEN_NAMES {
            *t.slot_mut(name) = config.get(name).and_then(token_text);
        }
        t
    }

    fn slot_mut(&mut self, name: &str) -> &mut Option<String> {
        match name {
            "bos_token" => &mut self.bos_token,
            "eos_token" => &mut self.eos_token,
            "unk_token" => &mut self.unk_token,
            "sep_token" => &mut self.sep_token,
            "pad_token" => &mut self.pad_token,
            "cls_token" => &mut self.cls_token,
            _ => &mut self.mask_token,
        }
    }

    /// The defined tokens as `(variable name, text)`, in transformers' order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            &self.bos_token,
            &self.eos_token,
            &self.unk_token,
            &self.sep_token,
            &self.pad_token,
            &self.cls_token,
            &self.mask_token,
        ]
        .into_iter()
        .zip(SPECIAL_TOKEN_NAMES)
        .filter_map(|(v, n)| v.as_deref().map(|v| (n, v)))
    }

    /// Fills tokens missing here from `other`.
    fn fill_from(&mut self, other: &SpecialTokens) {
        for name in SPECIAL_TOKEN_NAMES {
            let theirs = other.clone().slot_mut(name).clone();
            let mine = self.slot_mut(name);
            if mine.is_none() {
                *mine = theirs;
            }
        }
    }
}

fn token_text(v: &Json) -> Option<String> {
    match v {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_owned),
        _ => None,
    }
}

/// Where a template came from and what it is: one template, or several named ones (`default`, `tool_use`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// A single template string.
    Single(String),
    /// Named templates, in file order.
    Named(Vec<(String, String)>),
}

impl TemplateSource {
    /// Parses the value of a `chat_template` key: a string or a list of `{name, template}`.
    pub(crate) fn from_json(path: &Path, field: &str, v: &Json) -> Result<TemplateSource, Error> {
        match v {
            Json::String(s) => Ok(TemplateSource::Single(s.clone())),
            Json::Array(items) => {
                let mut named = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let name = item.get("name").and_then(Json::as_str);
                    let template = item.get("template").and_then(Json::as_str);
                    match (name, template) {
                        (Some(n), Some(t)) => named.push((n.to_owned(), t.to_owned())),
                        _ => {
                            return Err(Error::Field {
                                path: path.to_owned(),
                                field: format!("{field}[{i}]"),
                                expected: "an object with string `name` and `template`",
                                found: short(item),
                            });
                        }
                    }
                }
                Ok(TemplateSource::Named(named))
            }
            other => Err(Error::Field {
                path: path.to_owned(),
                field: field.to_owned(),
                expected: "a string or a list of {name, template}",
                found: short(other),
            }),
        }
    }
}

pub(crate) fn short(v: &Json) -> String {
    let s = v.to_string();
    if s.chars().count() > 60 {
        format!("{}...", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// Reads a JSON file, reporting parse errors with file, line and column.
pub(crate) fn read_json(path: &Path) -> Result<Json, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))?;
    parse_json(path, &text)
}

pub(crate) fn parse_json(path: &Path, text: &str) -> Result<Json, Error> {
    serde_json::from_str(text).map_err(|e| Error::Json {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: e.to_string().split(" at line ").next().unwrap_or_default().to_owned(),
    })
}

/// Reads `tokenizer_config.json`; it must be a JSON object.
pub fn load_tokenizer_config(path: &Path) -> Result<Json, Error> {
    let v = read_json(path)?;
    if !v.is_object() {
        return Err(Error::Field {
            path: path.to_owned(),
            field: "(top level)".into(),
            expected: "a JSON object",
            found: short(&v),
        });
    }
    Ok(v)
}

/// Everything `from_model_dir` found in a folder.
pub(crate) struct Loaded {
    pub source: TemplateSource,
    pub special: SpecialTokens,
}

/// Finds the template the way transformers does: `chat_template.jinja` wins, then `chat_template.json`, then the
/// `chat_template` field of `tokenizer_config.json`. `additional_chat_templates/*.jinja` add named templates.
pub(crate) fn load_dir(dir: &Path) -> Result<Loaded, Error> {
    let mut looked_at: Vec<PathBuf> = Vec::new();
    let tc_path = dir.join("tokenizer_config.json");
    let config = if tc_path.is_file() {
        Some(load_tokenizer_config(&tc_path)?)
    } else {
        None
    };
    let mut special = config.as_ref().map(SpecialTokens::from_json).unwrap_or_default();
    let stm = dir.join("special_tokens_map.json");
    if stm.is_file() {
        special.fill_from(&SpecialTokens::from_json(&read_json(&stm)?));
    }

    let jinja = dir.join("chat_template.jinja");
    looked_at.push(jinja.clone());
    let mut source = if jinja.is_file() {
        let text = std::fs::read_to_string(&jinja).map_err(|e| Error::io("read", &jinja, e))?;
        Some(TemplateSource::Single(text))
    } else {
        None
    };
    if source.is_none() {
        let json = dir.join("chat_template.json");
        looked_at.push(json.clone());
        if json.is_file() {
            let v = read_json(&json)?;
            let t = v.get("chat_template").ok_or_else(|| Error::Field {
                path: json.clone(),
                field: "chat_template".into(),
                expected: "a string or a list of {name, template}",
                found: "nothing".into(),
            })?;
            source = Some(TemplateSource::from_json(&json, "chat_template", t)?);
        }
    }
    if source.is_none() {
        looked_at.push(tc_path.clone());
        if let Some(t) = config.as_ref().and_then(|c| c.get("chat_template"))
            && !t.is_null()
        {
            source = Some(TemplateSource::from_json(&tc_path, "chat_template", t)?);
        }
    }
    let extra_dir = dir.join("additional_chat_templates");
    if extra_dir.is_dir() {
        let mut extra = Vec::new();
        let rd = std::fs::read_dir(&extra_dir).map_err(|e| Error::io("read", &extra_dir, e))?;
        for entry in rd.flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "jinja") {
                let name = p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
                extra.push((name, text));
            }
        }
        extra.sort();
        if !extra.is_empty() {
            let mut named = match source.take() {
                Some(TemplateSource::Single(s)) => vec![("default".to_owned(), s)],
                Some(TemplateSource::Named(n)) => n,
                None => Vec::new(),
            };
            named.extend(extra);
            source = Some(TemplateSource::Named(named));
        }
    }
    match source {
        Some(source) => Ok(Loaded { source, special }),
        None => Err(Error::NoTemplate {
            dir: dir.to_owned(),
            looked_at,
        }),
    }
}
