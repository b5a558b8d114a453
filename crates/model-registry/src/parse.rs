//! Text → entries: JSON5 (so a `models.ts` object literal pastes as written), field-by-field conversion and
//! validation, every problem located by file, line and field.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use crate::entry::{Availability, Category, InferenceProfile, ModelEntry, ProfileType};
use crate::error::{Error, Problem, Problems, Severity};
use crate::id::{self, ModelId};
use crate::positions::Positions;
use crate::regions;

/// Entries read from a text, with every problem found (errors and warnings).
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The entries that converted (entries with errors may be missing).
    pub entries: Vec<ModelEntry>,
    /// Errors and warnings, in input order.
    pub problems: Problems,
}

impl Parsed {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.errors().next().is_some()
    }
}

/// Fields Bedrock Engineer's `ModelConfig` has that the registry keeps without using; not warned about.
const KEPT_FIELDS: &[&str] = &["pricing", "cache"];

/// Fields the registry understands.
const KNOWN_FIELDS: &[&str] = &[
    "baseId",
    "name",
    "provider",
    "category",
    "toolUse",
    "maxTokensLimit",
    "supportsStreamingToolUse",
    "supportsThinking",
    "availability",
    "inferenceProfiles",
    "instructSupported",
    "modelSource",
    "architecture",
    "contextLength",
];

/// Parses registry text: one entry object, an array of entries, or `{ models: [...] }`, in JSON or JSON5 (single
/// quotes, unquoted keys, comments and trailing commas, as in `models.ts`). A trailing `,` or `;` after the last
/// entry, as left by copying from a TypeScript array, is ignored. `origin` names the file in problems.
///
/// Returns `Err` only when the text cannot be parsed at all; invalid entries are reported in [`Parsed::problems`].
pub fn parse_entries(text: &str, origin: Option<&Path>) -> Result<Parsed, Error> {
    let origin_s = origin
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<input>".to_string());
    let trimmed = text.trim_end().trim_end_matches([',', ';']);
    let root: Value = json5::from_str(trimmed).map_err(|e| {
        let (line, column, message) = match &e {
            json5::Error::Message { msg, location } => {
                let (l, c) = location.as_ref().map(|l| (l.line, l.column)).unwrap_or((1, 1));
                (l, c, msg.clone())
            }
        };
        Error::Syntax {
            origin: origin_s.clone(),
            line,
            column,
            message,
        }
    })?;
    let positions = Positions::index(trimmed);
    let items: Vec<(String, &Value)> = match &root {
        Value::Array(a) => a.iter().enumerate().map(|(i, v)| (i.to_string(), v)).collect(),
        Value::Object(o) => match o.get("models") {
            Some(Value::Array(a)) => a.iter().enumerate().map(|(i, v)| (format!("models.{i}"), v)).collect(),
            _ => vec![(String::new(), &root)],
        },
        other => {
            return Err(Error::Syntax {
                origin: origin_s,
                line: 1,
                column: 1,
                message: format!("expected a model object or an array of them, got {}", kind(other)),
            });
        }
    };

    let mut out = Parsed::default();
    let mut seen: IndexMap<String, Option<usize>> = IndexMap::new();
    for (n, (path, value)) in items.into_iter().enumerate() {
        let mut cx = Cx {
            origin: Some(origin_s.clone()),
            positions: Some(&positions),
            path,
            entry: format!("#{}", n + 1),
        };
        let Some(obj) = value.as_object() else {
            out.problems.0.push(cx.problem(
                Severity::Error,
                "",
                format!("expected a model object, got {}", kind(value)),
            ));
            continue;
        };
        if let Some(Value::String(name)) = obj.get("name") {
            cx.entry = name.clone();
        }
        let (entry, mut problems) = convert(obj, &cx);
        if let Some(e) = entry {
            problems.extend(validate_entry(
                &e,
                cx.origin.as_deref(),
                Some((cx.positions.unwrap_or(&positions), &cx.path)),
            ));
            let key = e.name.to_lowercase();
            if let Some(first) = seen.get(&key) {
                let at = first
                    .map(|l| format!(" (first defined on line {l})"))
                    .unwrap_or_default();
                problems.push(cx.problem(Severity::Error, "name", format!("duplicate name `{}`{at}", e.name)));
            } else {
                seen.insert(key, cx.line("name"));
                out.entries.push(e);
            }
        }
        out.problems.0.extend(problems);
    }
    Ok(out)
}

/// Where the entry being converted lives, to locate problems.
struct Cx<'a> {
    origin: Option<String>,
    positions: Option<&'a Positions>,
    /// Path of the entry in the document.
    path: String,
    /// The entry's name, or `#N`.
    entry: String,
}

impl Cx<'_> {
    fn line(&self, field: &str) -> Option<usize> {
        let p = self.positions?;
        let field_path = field.replace('[', ".").replace(']', "");
        let full = match (self.path.is_empty(), field_path.is_empty()) {
            (true, _) => field_path,
            (false, true) => self.path.clone(),
            (false, false) => format!("{}.{field_path}", self.path),
        };
        p.line(&full)
    }

    fn problem(&self, severity: Severity, field: &str, message: String) -> Problem {
        Problem {
            severity,
            origin: self.origin.clone(),
            line: self.line(field),
            entry: self.entry.clone(),
            field: field.to_string(),
            message,
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Field-by-field conversion, so each wrong field gets its own located problem (serde would stop at the first).
fn convert(obj: &Map<String, Value>, cx: &Cx<'_>) -> (Option<ModelEntry>, Vec<Problem>) {
    let mut problems = vec![];
    let mut err = |field: &str, msg: String| problems.push(cx.problem(Severity::Error, field, msg));

    let string = |field: &str, required: bool, err: &mut dyn FnMut(&str, String)| -> Option<String> {
        match obj.get(field) {
            None | Some(Value::Null) if required => {
                err(field, "missing (expected a string)".into());
                None
            }
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if required && s.trim().is_empty() => {
                err(field, "must not be empty".into());
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                err(field, format!("expected a string, got {}", kind(v)));
                None
            }
        }
    };
    let boolean = |field: &str, required: bool, err: &mut dyn FnMut(&str, String)| -> Option<bool> {
        match obj.get(field) {
            None | Some(Value::Null) => {
                if required {
                    err(field, "missing (expected true or false)".into());
                }
                None
            }
            Some(Value::Bool(b)) => Some(*b),
            Some(v) => {
                err(field, format!("expected true or false, got {}", kind(v)));
                None
            }
        }
    };

    let base_id = string("baseId", true, &mut err);
    let name = string("name", true, &mut err);
    let provider = string("provider", true, &mut err);
    let category = match string("category", true, &mut err) {
        Some(c) => match Category::parse(&c) {
            Some(c) => Some(c),
            None => {
                err(
                    "category",
                    format!("unknown category `{c}` (expected one of: text, image, video, embedding)"),
                );
                None
            }
        },
        None => None,
    };
    let tool_use = boolean("toolUse", true, &mut err);
    let max_tokens_limit = match obj.get("maxTokensLimit") {
        None | Some(Value::Null) => {
            err(
                "maxTokensLimit",
                "missing (expected a positive whole number, e.g. 4096)".into(),
            );
            None
        }
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => {
                err("maxTokensLimit", "must be at least 1, got 0".into());
                None
            }
            Some(v) if v <= u64::from(u32::MAX) => Some(v as u32),
            _ => {
                err("maxTokensLimit", format!("expected a positive whole number, got {n}"));
                None
            }
        },
        Some(v) => {
            err(
                "maxTokensLimit",
                format!("expected a positive whole number, got {}", kind(v)),
            );
            None
        }
    };
    let supports_streaming_tool_use = boolean("supportsStreamingToolUse", false, &mut err);
    let supports_thinking = boolean("supportsThinking", false, &mut err);
    let instruct_supported = boolean("instructSupported", false, &mut err);
    let model_source = string("modelSource", false, &mut err);
    let architecture = string("architecture", false, &mut err);
    let context_length = match obj.get("contextLength") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v > 0 && v <= u64::from(u32::MAX)) => {
            n.as_u64().map(|v| v as u32)
        }
        Some(v) => {
            err("contextLength", format!("expected a positive whole number, got {v}"));
            None
        }
    };

    let availability = match obj.get("availability") {
        None | Some(Value::Null) => None,
        Some(Value::Object(a)) => match a.get("base") {
            Some(Value::Array(rs)) => regions_list(rs, "availability.base", &mut err).map(|base| Availability { base }),
            Some(v) => {
                err(
                    "availability.base",
                    format!("expected an array of regions, got {}", kind(v)),
                );
                None
            }
            None => {
                err(
                    "availability.base",
                    "missing (expected `{ base: ['us-east-1'] }`)".into(),
                );
                None
            }
        },
        Some(v) => {
            err(
                "availability",
                format!("expected an object like `{{ base: ['us-east-1'] }}`, got {}", kind(v)),
            );
            None
        }
    };
    let inference_profiles = match obj.get("inferenceProfiles") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ps)) => {
            let mut out = vec![];
            for (i, p) in ps.iter().enumerate() {
                let f = |sub: &str| format!("inferenceProfiles[{i}]{sub}");
                let Some(p) = p.as_object() else {
                    err(&f(""), format!("expected an object, got {}", kind(p)));
                    continue;
                };
                let kind_ = match p.get("type") {
                    Some(Value::String(t)) => match ProfileType::parse(t) {
                        Some(k) => Some(k),
                        None => {
                            err(
                                &f(".type"),
                                format!(
                                    "unknown profile type `{t}` (expected one of: {})",
                                    ProfileType::SPELLINGS.join(", ")
                                ),
                            );
                            None
                        }
                    },
                    Some(v) => {
                        err(&f(".type"), format!("expected a string, got {}", kind(v)));
                        None
                    }
                    None => {
                        err(&f(".type"), "missing (expected `base`, `regional-us`, …)".into());
                        None
                    }
                };
                let regions = match p.get("regions") {
                    Some(Value::Array(rs)) => regions_list(rs, &f(".regions"), &mut err),
                    Some(v) => {
                        err(&f(".regions"), format!("expected an array of regions, got {}", kind(v)));
                        None
                    }
                    None => {
                        err(&f(".regions"), "missing (expected an array of regions)".into());
                        None
                    }
                };
                let opt = |k: &str, err: &mut dyn FnMut(&str, String)| match p.get(k) {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(v) => {
                        err(&f(&format!(".{k}")), format!("expected a string, got {}", kind(v)));
                        None
                    }
                };
                let prefix = opt("prefix", &mut err);
                let display_suffix = opt("displaySuffix", &mut err);
                for k in p.keys() {
                    if !["type", "prefix", "regions", "displaySuffix"].contains(&k.as_str()) {
                        err(
                            &f(&format!(".{k}")),
                            format!("unknown field `{k}` in an inference profile"),
                        );
                    }
                }
                if let (Some(kind), Some(regions)) = (kind_, regions) {
                    out.push(InferenceProfile {
                        kind,
                        prefix,
                        regions,
                        display_suffix,
                    });
                }
            }
            Some(out)
        }
        Some(v) => {
            err("inferenceProfiles", format!("expected an array, got {}", kind(v)));
            None
        }
    };
    if !obj.contains_key("availability") && !obj.contains_key("inferenceProfiles") {
        err(
            "inferenceProfiles",
            "missing: give `inferenceProfiles: [{ type: 'base', regions: ['us-east-1'] }]` or the guide's `availability: { base: ['us-east-1'] }`".into(),
        );
    }

    let mut extra = IndexMap::new();
    for (k, v) in obj {
        if KNOWN_FIELDS.contains(&k.as_str()) {
            continue;
        }
        if !KEPT_FIELDS.contains(&k.as_str()) {
            problems.push(cx.problem(
                Severity::Warning,
                k,
                format!("unknown field `{k}` (kept as written, but `cmi` does not use it; check the spelling)"),
            ));
        }
        extra.insert(k.clone(), v.clone());
    }

    let entry = match (base_id, name, provider, category, tool_use, max_tokens_limit) {
        (Some(base_id), Some(name), Some(provider), Some(category), Some(tool_use), Some(max_tokens_limit))
            if !problems.iter().any(|p| p.severity == Severity::Error) =>
        {
            Some(ModelEntry {
                base_id,
                name,
                provider,
                category,
                tool_use,
                max_tokens_limit,
                supports_streaming_tool_use,
                supports_thinking,
                availability,
                inference_profiles,
                instruct_supported,
                model_source,
                architecture,
                context_length,
                extra,
            })
        }
        _ => None,
    };
    (entry, problems)
}

fn regions_list(rs: &[Value], field: &str, err: &mut dyn FnMut(&str, String)) -> Option<Vec<String>> {
    let mut out = vec![];
    let mut ok = true;
    for (i, r) in rs.iter().enumerate() {
        match r {
            Value::String(s) => out.push(s.clone()),
            v => {
                err(
                    &format!("{field}[{i}]"),
                    format!("expected a region name, got {}", kind(v)),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// Semantic checks on a converted entry: regions exist and serve the model, the ID is well formed, placeholders are
/// pointed out. `at` locates problems in parsed text.
pub(crate) fn validate_entry(e: &ModelEntry, origin: Option<&str>, at: Option<(&Positions, &str)>) -> Vec<Problem> {
    let cx = Cx {
        origin: origin.map(str::to_string),
        positions: at.map(|a| a.0),
        path: at.map(|a| a.1.to_string()).unwrap_or_default(),
        entry: e.name.clone(),
    };
    let mut out = vec![];
    if e.name.trim().is_empty() {
        out.push(cx.problem(Severity::Error, "name", "must not be empty".into()));
    }
    if e.max_tokens_limit == 0 {
        out.push(cx.problem(Severity::Error, "maxTokensLimit", "must be at least 1, got 0".into()));
    }
    if e.base_id.trim().is_empty() {
        out.push(cx.problem(Severity::Error, "baseId", "must not be empty".into()));
    }

    // Regions: each must be a Bedrock region, and each profile needs at least one.
    if e.inference_profiles.is_none() && e.availability.is_none() {
        out.push(cx.problem(
            Severity::Error,
            "inferenceProfiles",
            "missing: the model is not served in any region".into(),
        ));
    }
    for (i, p) in e.profiles().iter().enumerate() {
        let field = |j: Option<usize>| match (e.inference_profiles.is_some(), j) {
            (true, Some(j)) => format!("inferenceProfiles[{i}].regions[{j}]"),
            (true, None) => format!("inferenceProfiles[{i}].regions"),
            (false, Some(j)) => format!("availability.base[{j}]"),
            (false, None) => "availability.base".to_string(),
        };
        if p.regions.is_empty() {
            out.push(cx.problem(
                Severity::Error,
                &field(None),
                "no regions: the model would be served nowhere".into(),
            ));
        }
        for (j, r) in p.regions.iter().enumerate() {
            if !regions::is_bedrock_region(r) {
                let hint = regions::closest(r)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                out.push(cx.problem(
                    Severity::Error,
                    &field(Some(j)),
                    format!("region `{r}` is not served by Bedrock{hint}"),
                ));
            }
        }
    }

    // The ID.
    let id_problem = |msg: String, sev: Severity| cx.problem(sev, "baseId", msg);
    if e.is_arn() {
        let placeholders = id::placeholders(&e.base_id);
        if !placeholders.is_empty() {
            out.push(id_problem(
                format!(
                    "still holds the guide's placeholder{} {}: replace with your 12-digit AWS account ID and the imported model's ID (`cmi models sync` adds imported models with their real ARNs)",
                    if placeholders.len() > 1 { "s" } else { "" },
                    placeholders.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" and ")
                ),
                Severity::Warning,
            ));
        }
        let arn = if placeholders.is_empty() {
            id::classify(&e.base_id).map(|m| m.arn().cloned())
        } else {
            Ok(id::parse_arn_lenient(&e.base_id))
        };
        match arn {
            Err(err) => out.push(id_problem(err.to_string(), Severity::Error)),
            Ok(Some(arn)) if !arn.region.is_empty() => {
                let served = e.regions();
                if !served.is_empty() && !served.contains(&arn.region) {
                    out.push(cx.problem(
                        Severity::Error,
                        profiles_field_name(e),
                        format!(
                            "region not served: the ARN lives in {} but the entry lists {}; an ARN is callable only in its own region",
                            arn.region,
                            served.join(", ")
                        ),
                    ));
                }
                if arn.resource.kind == "imported-model" && !regions::CMI_REGIONS.contains(&arn.region.as_str()) {
                    out.push(cx.problem(
                        Severity::Warning,
                        "baseId",
                        format!(
                            "Custom Model Import is not offered in {} (it is in {}); fine for a local Bedrock",
                            arn.region,
                            regions::CMI_REGIONS.join(", ")
                        ),
                    ));
                }
            }
            Ok(_) => {}
        }
    } else {
        match id::classify(&e.foundation_id()) {
            Ok(ModelId::Name { .. }) | Err(_) => out.push(id_problem(
                format!(
                    "`{}` is neither an ARN nor a foundation-model ID (`provider.model-v1:0`; with `provider: '{}'` write `baseId` without the provider, as models.ts does)",
                    e.base_id, e.provider
                ),
                Severity::Error,
            )),
            Ok(ModelId::InferenceProfile { .. }) => out.push(id_problem(
                format!(
                    "`{}` already carries a cross-region prefix; write the ID without it and list the profile in `inferenceProfiles`",
                    e.base_id
                ),
                Severity::Error,
            )),
            Ok(_) => {}
        }
    }
    out
}

fn profiles_field_name(e: &ModelEntry) -> &'static str {
    if e.inference_profiles.is_some() {
        "inferenceProfiles"
    } else {
        "availability"
    }
}
