//! Lark grammars (llguidance's dialect) that constrain decoding: to a tool call in the syntax a template teaches,
//! written so that [`crate::parse::OutputParser`] reads back exactly what they allow, or to structured output (a JSON
//! schema, a regex, a choice). This is the one place a JSON schema becomes Lark; the engine's constraint crate only
//! compiles the grammar text.
//!
//! JSON payloads use `%json { schema }` with `x-guidance` separators `", "` / `": "` (what the templates show the
//! model via `tojson`); markers are string literals, so they match whether the tokenizer has them as text or the
//! engine decodes special tokens to their text.

use serde_json::{Value as Json, json};

use crate::ToolSyntax;
use crate::parse::{DS_CALL_BEGIN, DS_CALL_END, DS_CALLS_BEGIN, DS_CALLS_END, DS_SEP};

fn lark_str(s: &str) -> String {
    // A Lark string literal is a JSON string literal.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// Our llguidance JSON settings: the separators Python's `json.dumps` writes (what `tojson` shows the model in its
/// prompt, and what models saw in training), and no free whitespace, which keeps a small model from wandering into
/// endless whitespace.
fn x_guidance() -> serde_json::Map<String, Json> {
    [
        ("item_separator", json!(", ")),
        ("key_separator", json!(": ")),
        ("whitespace_flexible", json!(false)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

const X_GUIDANCE: &str = "x-guidance";

/// Bounds given to `number` / `integer` schemas that set none: JSON allows `1e99999`, which no parser (serde_json,
/// Python's `json`) reads back as a finite number, and a constrained small model does write such exponents. Integers
/// stay within the exactly representable range of an f64.
const NUMBER_BOUND: f64 = 1e15;
const INTEGER_BOUND: i64 = 9_007_199_254_740_991;

/// Calls `f` on `schema` and on every schema nested inside it (properties, items, combinators, definitions).
fn for_each_schema(schema: &mut Json, f: &mut dyn FnMut(&mut serde_json::Map<String, Json>)) {
    use serde_json::Value;
    let Some(obj) = schema.as_object_mut() else { return };
    f(obj);
    for (key, v) in obj.iter_mut() {
        match key.as_str() {
            "properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas" => {
                if let Some(m) = v.as_object_mut() {
                    m.values_mut().for_each(|s| for_each_schema(s, f));
                }
            }
            "items" | "additionalProperties" | "not" | "contains" | "if" | "then" | "else" | "additionalItems" => {
                match v {
                    Value::Array(a) => a.iter_mut().for_each(|s| for_each_schema(s, f)),
                    other => for_each_schema(other, f),
                }
            }
            "anyOf" | "oneOf" | "allOf" | "prefixItems" => {
                if let Some(a) = v.as_array_mut() {
                    a.iter_mut().for_each(|s| for_each_schema(s, f));
                }
            }
            _ => {}
        }
    }
}

/// Adds [`NUMBER_BOUND`] / [`INTEGER_BOUND`] limits to every unbounded numeric schema inside `schema`.
pub fn bound_numbers(schema: &mut Json) {
    use serde_json::Value;
    for_each_schema(schema, &mut |obj| {
        let types: Vec<String> = match obj.get("type") {
            Some(Value::String(t)) => vec![t.clone()],
            Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
            _ => vec![],
        };
        let integer_only = types.iter().any(|t| t == "integer") && !types.iter().any(|t| t == "number");
        if types.iter().any(|t| t == "number" || t == "integer") {
            let (lo, hi) = if integer_only {
                (Value::from(-INTEGER_BOUND), Value::from(INTEGER_BOUND))
            } else {
                (Value::from(-NUMBER_BOUND), Value::from(NUMBER_BOUND))
            };
            if !obj.contains_key("minimum") && !obj.contains_key("exclusiveMinimum") {
                obj.insert("minimum".into(), lo);
            }
            if !obj.contains_key("maximum") && !obj.contains_key("exclusiveMaximum") {
                obj.insert("maximum".into(), hi);
            }
        }
    });
}

/// Sets `additionalProperties: false` on every object schema inside `schema` that declares `properties` and says
/// nothing of other keys: a forced call is held to the properties its tool declares. JSON Schema's default allows
/// any other key, and the schemas agent frameworks generate (LangChain's `with_structured_output`, Strands' `@tool`,
/// pydantic's) never set it; constrained to such a schema, a small model goes on inventing keys (`temperature_f`,
/// `temperature_c_min`, …) until its token limit, and the call never closes. An object that declares no properties
/// (`{"type": "object"}`) stays open: nothing is declared to hold it to.
pub fn close_objects(schema: &mut Json) {
    for_each_schema(schema, &mut |obj| {
        if obj.contains_key("properties") && !obj.contains_key("additionalProperties") {
            obj.insert("additionalProperties".into(), Json::Bool(false));
        }
    });
}

/// `(name, parameters schema)` of each OpenAI-style tool (`{"type": "function", "function": {...}}`, or the bare
/// function object), filtered to `forced` when given.
fn functions<'a>(tools: &'a [Json], forced: Option<&str>) -> Vec<(&'a str, Json)> {
    let all = all_functions(tools);
    let picked: Vec<_> = all
        .iter()
        .filter(|(n, _)| forced.is_none_or(|f| f == *n))
        .cloned()
        .collect();
    // A forced name that is not among the tools constrains nothing more than "some tool".
    if picked.is_empty() { all } else { picked }
}

fn all_functions(tools: &[Json]) -> Vec<(&str, Json)> {
    tools
        .iter()
        .filter_map(|t| {
            let f = t.get("function").unwrap_or(t);
            let name = f.get("name")?.as_str()?;
            let mut params = f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            // A tool's own settings give way to the call's (see `call_guidance`).
            if let Some(o) = params.as_object_mut() {
                o.remove(X_GUIDANCE);
            }
            bound_numbers(&mut params);
            close_objects(&mut params);
            Some((name, params))
        })
        .collect()
}

/// Schema of one call object `{"name": <const>, <args_key>: <parameters>}`, keys in that order.
fn call_schema(name: &str, params: &Json, args_key: &str) -> Json {
    let mut props = serde_json::Map::new();
    props.insert("name".into(), json!({"const": name}));
    props.insert(args_key.into(), params.clone());
    json!({"type": "object", "properties": props, "required": ["name", args_key], "additionalProperties": false})
}

/// `schema` with our `x-guidance` settings filling the keys the caller's own `x-guidance` leaves out: a setting the
/// caller wrote is kept. (llguidance reads `x-guidance` whole and gives each missing key its own default, `","`,
/// `":"` and flexible whitespace, so without the merge a caller who sets one key would lose all of ours.)
fn caller_guidance(mut schema: Json) -> Json {
    if let Some(o) = schema.as_object_mut() {
        let entry = o.entry(X_GUIDANCE).or_insert_with(|| Json::Object(Default::default()));
        if let Some(theirs) = entry.as_object_mut() {
            for (k, v) in x_guidance() {
                theirs.entry(k).or_insert(v);
            }
        }
    }
    schema
}

/// `schema` with our `x-guidance` settings, whatever the tool's schema says: in a forced tool call ours win.
///
/// The call must close and be read back. Free whitespace (`whitespace_flexible`, a `whitespace_pattern`) lets a small
/// model pad a forced call until its token limit, which is the failure [`close_objects`] exists to prevent, and the
/// separators are the ones the template shows the model. A tool's `parameters` are its declaration to the model (a
/// Converse `toolSpec`), not decoding settings, and in the forms that wrap every tool in one `%json` (Hermes, Llama 3,
/// Mistral) llguidance reads only the outer `x-guidance`, so a per-tool setting could not be honoured there anyway:
/// the tool's own `x-guidance` is dropped in every syntax alike (`all_functions`).
fn call_guidance(mut schema: Json) -> Json {
    if let Some(o) = schema.as_object_mut() {
        o.insert(X_GUIDANCE.into(), Json::Object(x_guidance()));
    }
    schema
}

fn any_call_schema(fns: &[(&str, Json)], args_key: &str) -> Json {
    let alts: Vec<Json> = fns.iter().map(|(n, p)| call_schema(n, p, args_key)).collect();
    call_guidance(json!({"anyOf": alts}))
}

/// A grammar for exactly one tool call (or, for Mistral and DeepSeek, one or more) to one of `tools` (or to
/// `forced` only), in `syntax`. `ToolSyntax::None` uses the Hermes form, which `fix` teaches ChatML models.
pub fn tool_call_lark(syntax: ToolSyntax, tools: &[Json], forced: Option<&str>) -> String {
    let fns = functions(tools, forced);
    match syntax {
        ToolSyntax::Hermes | ToolSyntax::None => format!(
            "start: {} %json {} {}\n",
            lark_str("<tool_call>\n"),
            any_call_schema(&fns, "arguments"),
            lark_str("\n</tool_call>")
        ),
        ToolSyntax::Llama3Json => format!("start: %json {}\n", any_call_schema(&fns, "parameters")),
        ToolSyntax::MistralToolCalls => {
            let schema = call_guidance(json!({
                "type": "array", "minItems": 1,
                "items": {"anyOf": fns.iter().map(|(n, p)| call_schema(n, p, "arguments")).collect::<Vec<_>>()}
            }));
            format!("start: {} %json {}\n", lark_str("[TOOL_CALLS] "), schema)
        }
        ToolSyntax::Harmony => harmony_call_lark(&fns),
        ToolSyntax::DeepSeek => {
            let mut g = format!(
                "start: {} call ({} call)* {}\n",
                lark_str(DS_CALLS_BEGIN),
                lark_str("\n"),
                lark_str(DS_CALLS_END)
            );
            let names: Vec<String> = (0..fns.len()).map(|i| format!("call_{i}")).collect();
            g.push_str(&format!("call: {}\n", names.join(" | ")));
            for (i, (name, params)) in fns.iter().enumerate() {
                g.push_str(&format!(
                    "call_{i}: {} %json {} {}\n",
                    lark_str(&format!("{DS_CALL_BEGIN}function{DS_SEP}{name}\n```json\n")),
                    call_guidance(params.clone()),
                    lark_str(&format!("\n```{DS_CALL_END}"))
                ));
            }
            g
        }
    }
}

/// Tokens of the analysis message before a forced harmony call: GPT-OSS always reasons first, and the bound makes
/// sure the call comes.
pub const HARMONY_REASONING_TOKENS: usize = 256;

/// A forced call in harmony: the analysis message GPT-OSS always writes first (text without `<`, at most
/// [`HARMONY_REASONING_TOKENS`] tokens), then one commentary message to `functions.NAME` whose body is the JSON
/// arguments. The output continues the prompt's `<|start|>assistant`; the model ends the call with `<|call|>`, an
/// eos token, which the grammar allows once the JSON is complete.
fn harmony_call_lark(fns: &[(&str, Json)]) -> String {
    use crate::harmony::{CHANNEL, CONSTRAIN, END, FUNCTIONS, MESSAGE, START};
    let mut g = format!(
        "start: {} reasoning {} call\n",
        lark_str(&format!("{CHANNEL}analysis{MESSAGE}")),
        lark_str(&format!("{END}{START}assistant"))
    );
    g.push_str(&format!("reasoning[max_tokens={HARMONY_REASONING_TOKENS}]: /[^<]+/\n"));
    let names: Vec<String> = (0..fns.len()).map(|i| format!("call_{i}")).collect();
    g.push_str(&format!("call: {}\n", names.join(" | ")));
    for (i, (name, params)) in fns.iter().enumerate() {
        g.push_str(&format!(
            "call_{i}: {} %json {}\n",
            lark_str(&format!(
                "{CHANNEL}commentary to={FUNCTIONS}{name} {CONSTRAIN}json{MESSAGE}"
            )),
            call_guidance(params.clone())
        ));
    }
    g
}

/// A grammar whose whole output is one JSON value matching `schema`: `start: %json {...}`.
///
/// Numbers are bounded ([`bound_numbers`]); whitespace is the compact form Python's `json.dumps` writes, unless the
/// schema's own `x-guidance` sets otherwise: each key the caller set is kept, and ours fill the rest.
pub fn json_lark(schema: &Json) -> String {
    format!("start: {}\n", json_fragment(schema))
}

/// The `%json {...}` fragment of [`json_lark`], to embed in a larger grammar (for example a wrapper:
/// `start: "<answer>" %json {...} "</answer>"`). The same settings as [`json_lark`].
pub fn json_fragment(schema: &Json) -> String {
    let mut schema = match schema {
        // `true` accepts any JSON value; `%json` wants an object.
        Json::Bool(true) => json!({}),
        other => other.clone(),
    };
    bound_numbers(&mut schema);
    format!("%json {}", caller_guidance(schema))
}

/// A grammar for text that matches `pattern` (Rust `regex` syntax) in full.
pub fn regex_lark(pattern: &str) -> String {
    // A Lark regex literal ends at the first unescaped `/`; escaping one inside the pattern keeps its meaning.
    let mut escaped = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                escaped.push(c);
                if let Some(next) = chars.next() {
                    escaped.push(next);
                }
            }
            '/' => escaped.push_str("\\/"),
            _ => escaped.push(c),
        }
    }
    format!("start: /{escaped}/\n")
}

/// A grammar for exactly one of `choices`.
pub fn choice_lark(choices: &[String]) -> String {
    let alts: Vec<String> = choices.iter().map(|c| lark_str(c)).collect();
    format!("start: {}\n", alts.join(" | "))
}

#[cfg(test)]
mod tests;
