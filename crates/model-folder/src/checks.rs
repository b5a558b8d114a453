//! The individual checks behind [`crate::check`], each adding findings to one list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::arch::{self, Dims, Layout};
use crate::header::{self, Header};
use crate::{Error, Finding, Report, Severity};

/// Context length limit: CMI wants `max_position_embeddings` "below 128K"; Llama 3.1's 131072 imports, so the bound is
/// inclusive.
pub const MAX_CONTEXT: u64 = 128 * 1024;
/// Weight size limit for text models ("under 200 GB").
pub const MAX_TEXT_BYTES: u64 = 200 * 1000 * 1000 * 1000;
/// Weight size limit for multimodal models ("under 100 GB").
pub const MAX_MULTIMODAL_BYTES: u64 = 100 * 1000 * 1000 * 1000;

/// Tokenizer classes the CMI user guide lists (with or without the `Fast` suffix).
const TOKENIZER_CLASSES: &[&str] = &[
    "T5Tokenizer",
    "LlamaTokenizer",
    "CodeLlamaTokenizer",
    "GPT2Tokenizer",
    "GPTNeoXTokenizer",
    "PreTrainedTokenizer",
    "Qwen2Tokenizer",
];

/// GPT-OSS's `generation_config.json` must carry these eos ids (the two-id file breaks invocation).
const GPT_OSS_EOS: [u64; 3] = [200002, 199999, 200012];

const INDEX_FILE: &str = "model.safetensors.index.json";

struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, severity: Severity, code: &str, message: impl Into<String>, fix: Option<String>) {
        self.0.push(Finding {
            severity,
            code: code.to_string(),
            message: message.into(),
            fix,
        });
    }
    fn error(&mut self, code: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Severity::Error, code, message, Some(fix.into()));
    }
    fn warning(&mut self, code: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.add(Severity::Warning, code, message, Some(fix.into()));
    }
    fn info(&mut self, code: &str, message: impl Into<String>) {
        self.add(Severity::Info, code, message, None);
    }
}

/// Top-level file names in `dir` (hidden files skipped), sorted.
fn list(dir: &Path) -> Result<Vec<String>, Error> {
    let md = std::fs::metadata(dir).map_err(|_| Error::NotADirectory {
        path: dir.to_path_buf(),
    })?;
    if !md.is_dir() {
        return Err(Error::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follow symlinks (the Hugging Face cache's snapshot folders are all symlinks).
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_file()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

pub(crate) fn wanted(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".safetensors", ".json", ".jinja", ".model", ".tiktoken"]
        .iter()
        .any(|ext| lower.ends_with(ext))
        || lower == "merges.txt"
        || lower == "vocab.txt"
}

pub(crate) fn import_files(dir: &Path) -> Result<Vec<String>, Error> {
    Ok(list(dir)?.into_iter().filter(|n| wanted(n)).collect())
}

fn read_json(dir: &Path, name: &str, f: &mut Findings) -> Option<Value> {
    let path = dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            f.error(
                "unreadable-file",
                format!("{name}: {e}"),
                format!("make {} readable", path.display()),
            );
            return None;
        }
    };
    match serde_json::from_slice::<Value>(&text) {
        Ok(v) if v.is_object() => Some(v),
        Ok(_) => {
            f.error(
                "invalid-json",
                format!("{name} is not a JSON object"),
                format!("restore {name} from the original repository"),
            );
            None
        }
        Err(e) => {
            f.error(
                "invalid-json",
                format!("{name} is not valid JSON: {e}"),
                format!("restore {name} from the original repository"),
            );
            None
        }
    }
}

pub(crate) fn run(dir: &Path) -> Result<Report, Error> {
    let names = list(dir)?;
    let has = |n: &str| names.iter().any(|x| x == n);
    let mut f = Findings(Vec::new());

    // config.json and the architecture.
    let config = read_json(dir, "config.json", &mut f);
    if config.is_none() && !has("config.json") {
        f.error(
            "missing-config",
            "config.json is missing: this is not a Hugging Face model folder",
            "point at the folder holding config.json (a snapshot of the Hugging Face repository)",
        );
    }
    let model_type = config
        .as_ref()
        .and_then(|c| c.get("model_type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let class = config
        .as_ref()
        .and_then(|c| c.get("architectures"))
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(str::to_string);
    let architecture = class.clone().or_else(|| model_type.clone());
    let accepted = check_architecture(config.as_ref(), model_type.as_deref(), class.as_deref(), &mut f);

    // Weights.
    let weight_files: Vec<&String> = names.iter().filter(|n| n.ends_with(".safetensors")).collect();
    let mut weight_bytes = 0u64;
    for name in &weight_files {
        weight_bytes += std::fs::metadata(dir.join(name)).map(|m| m.len()).unwrap_or(0);
    }
    if weight_files.is_empty() {
        let other: Vec<&String> = names
            .iter()
            .filter(|n| {
                [".bin", ".pt", ".pth", ".gguf", ".ckpt", ".h5", ".msgpack"]
                    .iter()
                    .any(|e| n.ends_with(e))
            })
            .collect();
        if other.is_empty() {
            f.error(
                "missing-weights",
                "no *.safetensors weight files",
                "download the model's .safetensors files into the folder",
            );
        } else {
            f.error(
                "weights-not-safetensors",
                format!("weights are not in safetensors format ({})", join(other.iter().map(|s| s.as_str()))),
                "convert them: `cmi convert gguf FILE OUT_DIR` for GGUF, or transformers `save_pretrained(dir, safe_serialization=True)`",
            );
        }
    }
    let mut headers: BTreeMap<String, Header> = BTreeMap::new();
    for name in &weight_files {
        match header::read_header(&dir.join(name)) {
            Ok(h) => {
                headers.insert((*name).clone(), h);
            }
            Err(e) => f.error(
                "invalid-safetensors",
                format!("{name}: unreadable safetensors header: {e}"),
                format!("download {name} again (it is damaged or incomplete)"),
            ),
        }
    }
    check_index(dir, has(INDEX_FILE), &weight_files, &headers, &mut f);
    let tensors: BTreeMap<&str, (&str, &header::Tensor)> = headers
        .iter()
        .flat_map(|(file, h)| h.tensors.iter().map(move |(n, t)| (n.as_str(), (file.as_str(), t))))
        .collect();
    let tensor_count = headers.values().map(|h| h.tensors.len()).sum();
    check_dtypes(config.as_ref(), &tensors, &mut f);
    if let (Some(config), Some(mt)) = (config.as_ref(), model_type.as_deref())
        && let Some(layout) = Layout::for_model_type(mt)
        && headers.len() == weight_files.len()
        && !weight_files.is_empty()
    {
        check_tensors(layout, config, &tensors, &mut f);
    }
    let limit = if accepted.is_some_and(|a| a.multimodal) {
        MAX_MULTIMODAL_BYTES
    } else {
        MAX_TEXT_BYTES
    };
    if weight_bytes >= limit {
        f.error(
            "weights-too-large",
            format!(
                "weights total {} bytes ({:.1} GB); Custom Model Import takes under {} GB for {} models",
                weight_bytes,
                weight_bytes as f64 / 1e9,
                limit / 1_000_000_000,
                if limit == MAX_MULTIMODAL_BYTES {
                    "multimodal"
                } else {
                    "text"
                }
            ),
            "import a smaller variant of the model",
        );
    }

    // Context length.
    let context_length = config.as_ref().and_then(context_length_of);
    match (config.as_ref(), context_length) {
        (Some(_), Some(n)) if n > MAX_CONTEXT => f.error(
            "context-too-long",
            format!(
                "config.json: max_position_embeddings is {n}; Custom Model Import takes at most {MAX_CONTEXT} (128K)"
            ),
            format!("set max_position_embeddings to {MAX_CONTEXT} or less in config.json"),
        ),
        (Some(_), None) => f.warning(
            "missing-context-length",
            "config.json has no max_position_embeddings",
            "add max_position_embeddings (the context length the model was trained for) to config.json",
        ),
        _ => {}
    }
    if let Some(c) = config.as_ref() {
        check_config_details(c, model_type.as_deref(), &mut f);
    }

    // Tokenizer.
    let tokenizer_config = read_json(dir, "tokenizer_config.json", &mut f);
    check_tokenizer(dir, &names, tokenizer_config.as_ref(), config.as_ref(), &mut f);

    // Chat template and Converse.
    let tmpl = crate::template_check::check(dir, config.as_ref(), accepted, &mut f.0);

    // GPT-OSS generation config.
    if model_type.as_deref() == Some("gpt_oss") {
        check_gpt_oss(dir, &mut f);
    }

    let mut findings = f.0;
    findings.sort_by_key(|x| x.severity);
    Ok(Report {
        findings,
        architecture,
        model_type,
        family: tmpl.family,
        context_length,
        weight_bytes,
        tensor_count,
        instruct_supported: tmpl.converse,
        converse_tools: tmpl.tools,
        files: names.into_iter().filter(|n| wanted(n)).collect(),
    })
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

fn check_architecture(
    config: Option<&Value>,
    model_type: Option<&str>,
    class: Option<&str>,
    f: &mut Findings,
) -> Option<&'static arch::Accepted> {
    config?;
    let Some(mt) = model_type else {
        f.error(
            "missing-model-type",
            "config.json has no model_type, so the architecture cannot be detected",
            "add the model_type of the base model (for example \"llama\") to config.json",
        );
        return None;
    };
    let Some(acc) = arch::accepted(mt) else {
        f.error(
            "unsupported-architecture",
            format!(
                "architecture `{mt}` is not supported by Custom Model Import (supported: {})",
                arch::accepted_names()
            ),
            "import a model of a supported architecture (a fine-tune of Llama, Mistral, Mixtral or Qwen, for example)",
        );
        return None;
    };
    match class {
        None => f.warning(
            "missing-architectures",
            "config.json has no `architectures` list",
            format!("add \"architectures\": [\"{}\"] to config.json", acc.classes[0]),
        ),
        Some(c) if !acc.classes.contains(&c) => {
            let embedding = c.ends_with("Model") || c.contains("ForSequenceClassification") || c.contains("Embedding");
            if embedding {
                f.error(
                    "embedding-model",
                    format!("config.json: `{c}` is an embedding or classification head; Custom Model Import takes text generation models only"),
                    format!("import the generation model (`{}`)", acc.classes[0]),
                );
            } else {
                f.error(
                    "unsupported-architecture",
                    format!(
                        "config.json: architecture class `{c}` is not supported for model_type `{mt}` (expected {})",
                        acc.classes.join(" or ")
                    ),
                    format!("use a checkpoint saved as {}", acc.classes[0]),
                );
            }
        }
        Some(_) => {}
    }
    Some(acc)
}

fn check_index(
    dir: &Path,
    has_index: bool,
    weight_files: &[&String],
    headers: &BTreeMap<String, Header>,
    f: &mut Findings,
) {
    if !has_index {
        if weight_files.len() > 1 {
            f.error(
                "missing-index",
                format!("{} weight files but no {INDEX_FILE}", weight_files.len()),
                format!("download {INDEX_FILE} from the original repository"),
            );
        }
        return;
    }
    let mut scratch = Findings(Vec::new());
    let Some(index) = read_json(dir, INDEX_FILE, &mut scratch) else {
        f.0.extend(scratch.0);
        return;
    };
    let Some(map) = index.get("weight_map").and_then(Value::as_object) else {
        f.error(
            "invalid-index",
            format!("{INDEX_FILE} has no weight_map object"),
            format!("download {INDEX_FILE} again"),
        );
        return;
    };
    let mut missing_files = BTreeSet::new();
    let mut not_in_file = Vec::new();
    for (tensor, file) in map {
        let Some(file) = file.as_str() else {
            f.error(
                "invalid-index",
                format!("{INDEX_FILE}: weight_map[\"{tensor}\"] is not a file name"),
                format!("download {INDEX_FILE} again"),
            );
            continue;
        };
        if !weight_files.iter().any(|w| *w == file) {
            missing_files.insert(file.to_string());
            continue;
        }
        if let Some(h) = headers.get(file)
            && !h.tensors.contains_key(tensor)
        {
            not_in_file.push(format!("{tensor} (in {file})"));
        }
    }
    for file in &missing_files {
        f.error(
            "missing-shard",
            format!("{INDEX_FILE} names {file}, which is not in the folder"),
            format!("download {file} (the download is incomplete)"),
        );
    }
    if !not_in_file.is_empty() {
        f.error(
            "index-shard-mismatch",
            format!(
                "{} tensors listed in {INDEX_FILE} are not in the file it names: {}",
                not_in_file.len(),
                preview(&not_in_file)
            ),
            "download the weight files and the index again from the same revision",
        );
    }
    let mut unlisted = Vec::new();
    for (file, h) in headers {
        for t in h.tensors.keys() {
            if map.get(t).and_then(Value::as_str) != Some(file.as_str()) && !map.contains_key(t) {
                unlisted.push(format!("{t} (in {file})"));
            }
        }
    }
    if !unlisted.is_empty() {
        f.warning(
            "tensor-not-in-index",
            format!(
                "{} tensors are not listed in {INDEX_FILE}: {}",
                unlisted.len(),
                preview(&unlisted)
            ),
            "download the index again from the same revision as the weights",
        );
    }
    let stray: Vec<&str> = weight_files
        .iter()
        .filter(|w| !map.values().any(|v| v.as_str() == Some(w.as_str())))
        .map(|w| w.as_str())
        .collect();
    if !stray.is_empty() {
        f.warning(
            "stray-weight-file",
            format!("weight files not referenced by {INDEX_FILE}: {}", stray.join(", ")),
            "remove them from the folder (they would be uploaded and may confuse the import)",
        );
    }
    if let Some(total) = index
        .get("metadata")
        .and_then(|m| m.get("total_size"))
        .and_then(Value::as_u64)
    {
        let actual: u64 = headers.values().flat_map(|h| h.tensors.values()).map(|t| t.bytes).sum();
        if missing_files.is_empty() && headers.len() == weight_files.len() && total != actual {
            f.warning(
                "index-size-mismatch",
                format!("{INDEX_FILE}: metadata.total_size is {total} bytes but the tensors hold {actual}"),
                "download the index again from the same revision as the weights",
            );
        }
    }
}

fn preview(items: &[String]) -> String {
    const SHOW: usize = 5;
    let mut s = items.iter().take(SHOW).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > SHOW {
        s.push_str(&format!(", … ({} more)", items.len() - SHOW));
    }
    s
}

fn check_dtypes(config: Option<&Value>, tensors: &BTreeMap<&str, (&str, &header::Tensor)>, f: &mut Findings) {
    use safetensors::Dtype;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut odd = Vec::new();
    // GPT-OSS is published with its experts in MXFP4 (`*_blocks` and `*_scales`, U8), which Custom Model Import
    // takes as they are.
    let mxfp4 = config.is_some_and(|c| {
        c.get("model_type").and_then(Value::as_str) == Some("gpt_oss")
            && c.pointer("/quantization_config/quant_method").and_then(Value::as_str) == Some("mxfp4")
    });
    for (name, (_, t)) in tensors {
        if mxfp4 && t.dtype == Dtype::U8 && (name.ends_with("_blocks") || name.ends_with("_scales")) {
            continue;
        }
        counts
            .entry(format!("{:?}", t.dtype))
            .and_modify(|c| *c += 1)
            .or_insert(1);
        if !matches!(t.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            odd.push(format!("{name} ({:?})", t.dtype));
        }
    }
    if !odd.is_empty() {
        f.error(
            "unsupported-dtype",
            format!(
                "{} tensors are not F32, F16 or BF16 (quantized checkpoints do not import): {}",
                odd.len(),
                preview(&odd)
            ),
            "import the unquantized (fp16/bf16) checkpoint of the model",
        );
    }
    let float: Vec<&String> = counts
        .keys()
        .filter(|k| ["F32", "F16", "BF16"].contains(&k.as_str()))
        .collect();
    if float.len() > 1 {
        f.info(
            "mixed-dtypes",
            format!(
                "weights mix dtypes: {}",
                counts
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    let declared = config
        .and_then(|c| c.get("torch_dtype").or_else(|| c.get("dtype")))
        .and_then(Value::as_str)
        .map(|s| s.trim_start_matches("torch.").to_string());
    if let Some(d) = declared {
        let expect = match d.as_str() {
            "float32" => "F32",
            "float16" => "F16",
            "bfloat16" => "BF16",
            _ => return,
        };
        // The dtype most weights use.
        if let Some((main, _)) = counts.iter().max_by_key(|(_, c)| **c)
            && main != expect
        {
            f.warning(
                "dtype-mismatch",
                format!("config.json says torch_dtype {d}, but most weights are {main}"),
                format!(
                    "set torch_dtype in config.json to the weights' dtype ({})",
                    dtype_name(main)
                ),
            );
        }
    }
}

fn dtype_name(st: &str) -> &'static str {
    match st {
        "F32" => "float32",
        "F16" => "float16",
        _ => "bfloat16",
    }
}

fn check_tensors(layout: Layout, config: &Value, tensors: &BTreeMap<&str, (&str, &header::Tensor)>, f: &mut Findings) {
    let dims = match Dims::from_config(layout, config) {
        Ok(d) => d,
        Err(bad) => {
            for arch::BadKey(key, value) in bad {
                let msg = match value {
                    None => format!("config.json has no `{key}`"),
                    Some(v) => format!("config.json: `{key}` is {v}, expected a positive integer"),
                };
                f.error(
                    "invalid-config",
                    msg,
                    format!("restore `{key}` from the base model's config.json"),
                );
            }
            return;
        }
    };
    if dims.heads % dims.kv_heads != 0 {
        f.error(
            "invalid-config",
            format!(
                "config.json: num_attention_heads {} is not a multiple of num_key_value_heads {}",
                dims.heads, dims.kv_heads
            ),
            "restore the attention head counts from the base model's config.json",
        );
    }
    let expected = arch::expected_tensors(layout, &dims);
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for e in &expected {
        match tensors.get(e.name.as_str()) {
            None if e.optional => {}
            None => missing.push(e.name.clone()),
            Some((file, t)) if t.shape != e.shape => wrong.push(format!(
                "{} in {file} is {:?}, config.json implies {:?}",
                e.name, t.shape, e.shape
            )),
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        f.error(
            "missing-tensor",
            format!(
                "{} tensors the {} architecture needs are missing: {}",
                missing.len(),
                config_type(config),
                preview(&missing)
            ),
            "download every weight file of the model (the folder is incomplete or from another architecture)",
        );
    }
    if !wrong.is_empty() {
        f.error(
            "shape-mismatch",
            format!("{} tensors do not match config.json: {}", wrong.len(), preview(&wrong)),
            "use the config.json that was saved with these weights (hidden size, heads, layers, vocab or intermediate size differ)",
        );
    }
    let known: BTreeSet<&str> = expected.iter().map(|e| e.name.as_str()).collect();
    let extra: Vec<String> = tensors
        .keys()
        .filter(|n| !known.contains(**n) && !n.ends_with("rotary_emb.inv_freq"))
        .map(|n| n.to_string())
        .collect();
    if !extra.is_empty() {
        // Layers beyond num_hidden_layers are a classic sign of a config/weights mix-up.
        f.warning(
            "unexpected-tensor",
            format!(
                "{} tensors are not part of the {} architecture per config.json: {}",
                extra.len(),
                config_type(config),
                preview(&extra)
            ),
            "check that config.json belongs to these weights (extra layers, adapters or a different architecture)",
        );
    }
}

fn config_type(config: &Value) -> &str {
    config.get("model_type").and_then(Value::as_str).unwrap_or("?")
}

fn context_length_of(config: &Value) -> Option<u64> {
    [
        "max_position_embeddings",
        "n_positions",
        "max_sequence_length",
        "seq_length",
    ]
    .iter()
    .find_map(|k| config.get(*k).and_then(Value::as_u64))
    .or_else(|| config.get("text_config").and_then(context_length_of))
}

fn check_config_details(config: &Value, model_type: Option<&str>, f: &mut Findings) {
    // transformers 5 writes `rope_parameters` instead of top-level `rope_theta`; Bedrock runs transformers 4.51.3.
    if config.get("rope_parameters").is_some() && config.get("rope_theta").is_none() && model_type != Some("t5") {
        let theta = config.get("rope_parameters").and_then(|r| r.get("rope_theta")).cloned();
        f.warning(
            "transformers-5-config",
            "config.json has `rope_parameters` but no top-level `rope_theta` (saved by transformers 5); Bedrock runs transformers 4.51.3, which would use the default rope_theta",
            match theta {
                Some(t) => format!("add \"rope_theta\": {t} to config.json"),
                None => "add the model's rope_theta at the top level of config.json".to_string(),
            },
        );
    }
    if let Some(v) = config.get("transformers_version").and_then(Value::as_str)
        && v.split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|major| major >= 5)
    {
        f.info(
            "transformers-version",
            format!("config.json was saved by transformers {v}; Bedrock runs 4.51.3"),
        );
    }
    if model_type == Some("llama")
        && let Some(rs) = config.get("rope_scaling").filter(|v| v.is_object())
        && rs.get("rope_type").or_else(|| rs.get("type")).and_then(Value::as_str) == Some("llama3")
    {
        f.info(
            "rope-scaling-override",
            "Bedrock overrides Llama 3 rope_scaling with factor 8, low/high freq factors 1/4, original context 8192",
        );
    }
}

fn check_tokenizer(dir: &Path, names: &[String], tc: Option<&Value>, config: Option<&Value>, f: &mut Findings) {
    let has = |n: &str| names.iter().any(|x| x == n);
    if !has("tokenizer_config.json") {
        f.error(
            "missing-tokenizer-config",
            "tokenizer_config.json is missing",
            "download tokenizer_config.json from the model's repository",
        );
    }
    let class = tc.and_then(|t| t.get("tokenizer_class")).and_then(Value::as_str);
    let slow_needs_model = class.is_some_and(|c| !c.ends_with("Fast") && (c.contains("Llama") || c.contains("T5")));
    if !has("tokenizer.json") {
        if has("tokenizer.model") {
            f.warning(
                "missing-tokenizer-json",
                "tokenizer.json is missing (only tokenizer.model); Custom Model Import lists tokenizer.json among the required files",
                "download tokenizer.json from the model's repository, or save the tokenizer with transformers (`tokenizer.save_pretrained(dir)`)",
            );
        } else {
            f.error(
                "missing-tokenizer",
                "neither tokenizer.json nor tokenizer.model is present",
                "download tokenizer.json (and tokenizer.model if the repository has one) from the model's repository",
            );
        }
    } else if slow_needs_model && !has("tokenizer.model") {
        f.warning(
            "missing-tokenizer-model",
            format!(
                "tokenizer_class is {} (a SentencePiece tokenizer) but tokenizer.model is missing",
                class.unwrap_or("?")
            ),
            "download tokenizer.model, or set tokenizer_class to the Fast variant",
        );
    }
    match class {
        None if tc.is_some() => f.warning(
            "missing-tokenizer-class",
            "tokenizer_config.json has no tokenizer_class",
            "add \"tokenizer_class\": \"PreTrainedTokenizerFast\" to tokenizer_config.json",
        ),
        Some(c) if !TOKENIZER_CLASSES.contains(&c.strip_suffix("Fast").unwrap_or(c)) => f.error(
            "unsupported-tokenizer-class",
            format!("tokenizer_config.json: tokenizer_class `{c}` is not one Custom Model Import accepts ({}, with or without Fast)", TOKENIZER_CLASSES.join(", ")),
            "set tokenizer_class to \"PreTrainedTokenizerFast\" when tokenizer.json is present",
        ),
        _ => {}
    }
    // Token ids past the embedding table crash at inference.
    if has("tokenizer.json")
        && let Some(vocab) = config.and_then(|c| c.get("vocab_size")).and_then(Value::as_u64)
        && let Some(max_id) = tokenizer_max_id(&dir.join("tokenizer.json"))
        && max_id >= vocab
    {
        f.error(
            "vocab-mismatch",
            format!("tokenizer.json has token id {max_id}, but config.json vocab_size is {vocab}"),
            "use the tokenizer saved with these weights, or resize the embeddings",
        );
    }
}

/// The highest token id in tokenizer.json (vocabulary and added tokens). Parsing the whole file costs a few ms even
/// for 150K-token vocabularies.
fn tokenizer_max_id(path: &Path) -> Option<u64> {
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let vocab_max = match v.get("model").and_then(|m| m.get("vocab")) {
        Some(Value::Object(m)) => m.values().filter_map(Value::as_u64).max(),
        // Unigram: a list of [piece, score]; ids are positions.
        Some(Value::Array(a)) => (a.len() as u64).checked_sub(1),
        _ => None,
    };
    let added_max = v
        .get("added_tokens")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().filter_map(|t| t.get("id").and_then(Value::as_u64)).max());
    vocab_max.max(added_max)
}

/// The ids GPT-OSS's generation config must list: `<|return|>`, `<|endoftext|>` and `<|call|>` as the folder's
/// tokenizer numbers them ([`GPT_OSS_EOS`], the published tokenizer's, when it does not name all three).
fn gpt_oss_eos(dir: &Path) -> Vec<u64> {
    let mut scratch = Findings(Vec::new());
    let ids: Option<Vec<u64>> = read_json(dir, "tokenizer.json", &mut scratch).and_then(|t| {
        let added = t.get("added_tokens")?.as_array()?.clone();
        ["<|return|>", "<|endoftext|>", "<|call|>"]
            .iter()
            .map(|name| {
                added
                    .iter()
                    .find(|a| a.get("content").and_then(Value::as_str) == Some(name))
                    .and_then(|a| a.get("id").and_then(Value::as_u64))
            })
            .collect()
    });
    ids.unwrap_or_else(|| GPT_OSS_EOS.to_vec())
}

fn check_gpt_oss(dir: &Path, f: &mut Findings) {
    let mut scratch = Findings(Vec::new());
    let want_ids = gpt_oss_eos(dir);
    let fix = format!(
        "set \"eos_token_id\": {want_ids:?} in generation_config.json (the updated file from the model's repository)"
    );
    match read_json(dir, "generation_config.json", &mut scratch) {
        None => f.error(
            "gpt-oss-generation-config",
            "GPT-OSS needs generation_config.json with three eos ids; it is missing",
            fix,
        ),
        Some(g) => {
            let ids: Vec<u64> = match g.get("eos_token_id") {
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_u64).collect(),
                Some(Value::Number(n)) => n.as_u64().into_iter().collect(),
                _ => Vec::new(),
            };
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            let mut want = want_ids.clone();
            want.sort_unstable();
            if sorted != want {
                f.error(
                    "gpt-oss-generation-config",
                    format!("generation_config.json: eos_token_id is {ids:?}; GPT-OSS on Bedrock needs {want_ids:?} (<|return|>, <|endoftext|>, <|call|>; the older file causes errors at invocation)"),
                    fix,
                );
            }
        }
    }
}
