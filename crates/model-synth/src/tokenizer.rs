//! A real byte-level BPE tokenizer (GPT-2 byte alphabet, learned merges, family special tokens) written as
//! `tokenizer.json` in the format the `tokenizers` library (Rust and Python) loads.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::Family;

/// Text the merges are learned from: chat words, JSON punctuation and some non-ASCII text, so that tokenisation
/// produces multi-byte tokens and splits UTF-8 characters across tokens.
const CORPUS: &str = "the weather in paris is sunny today. what is the capital of france? the capital of \
france is paris. hello there, how are you? i am fine, thank you. please call the tool get_weather with \
the city name. {\"name\": \"get_weather\", \"arguments\": {\"city\": \"paris\"}} the answer is 42. \
you are a helpful assistant. the user asked about the weather and the assistant answered with the \
temperature in celsius. こんにちは世界 日本語のテキスト 🙂 café naïve résumé";

/// Number of merges learned from [`CORPUS`].
const MERGES: usize = 160;

/// The tokenizer of a tiny model: vocabulary, merges and special tokens.
#[derive(Debug, Clone)]
pub struct TinyTokenizer {
    family: Family,
    /// `(token, id)` for every regular token (bytes and merges).
    vocab: Vec<(String, u32)>,
    merges: Vec<(String, String)>,
    /// `(content, id, special)` of the added tokens.
    added: Vec<(String, u32, bool)>,
}

/// GPT-2's reversible byte → printable character mapping (`bytes_to_unicode`).
pub(crate) fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return char::from(b);
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    // 256 + n is at most 256 + 68, always a valid scalar value.
    char::from_u32(256 + n).unwrap_or('?')
}

fn special_tokens(family: Family) -> Vec<(&'static str, bool)> {
    match family {
        Family::Llama => vec![
            ("<|begin_of_text|>", true),
            ("<|end_of_text|>", true),
            ("<|start_header_id|>", true),
            ("<|end_header_id|>", true),
            ("<|eom_id|>", true),
            ("<|eot_id|>", true),
            ("<|python_tag|>", true),
            ("<|finetune_right_pad_id|>", true),
        ],
        Family::Mistral | Family::Mixtral => vec![
            ("<unk>", true),
            ("<s>", true),
            ("</s>", true),
            ("[INST]", true),
            ("[/INST]", true),
            ("[TOOL_CALLS]", true),
            ("[AVAILABLE_TOOLS]", true),
            ("[/AVAILABLE_TOOLS]", true),
            ("[TOOL_RESULTS]", true),
            ("[/TOOL_RESULTS]", true),
        ],
        Family::Qwen2 => vec![
            ("<|endoftext|>", true),
            ("<|im_start|>", true),
            ("<|im_end|>", true),
            ("<tool_call>", false),
            ("</tool_call>", false),
        ],
        Family::GptOss => vec![
            ("<|startoftext|>", true),
            ("<|endoftext|>", true),
            ("<|return|>", true),
            ("<|constrain|>", true),
            ("<|channel|>", true),
            ("<|start|>", true),
            ("<|end|>", true),
            ("<|message|>", true),
            ("<|call|>", true),
        ],
        Family::Qwen3 | Family::Qwen3Moe => vec![
            ("<|endoftext|>", true),
            ("<|im_start|>", true),
            ("<|im_end|>", true),
            ("<tool_call>", false),
            ("</tool_call>", false),
            ("<tool_response>", false),
            ("</tool_response>", false),
            ("<think>", false),
            ("</think>", false),
        ],
    }
}

/// Splits text into pre-tokens roughly as GPT-2's regex does (an optional leading space plus a run of letters,
/// digits or other symbols); only used to learn merges.
fn pre_tokens(text: &str) -> Vec<Vec<String>> {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Letter,
        Digit,
        Other,
    }
    let class = |c: char| {
        if c.is_alphabetic() {
            Class::Letter
        } else if c.is_numeric() {
            Class::Digit
        } else {
            Class::Other
        }
    };
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut cur_class = None;
    for c in text.chars() {
        if c == ' ' {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            cur.push(' ');
            cur_class = None;
            continue;
        }
        let k = class(c);
        if cur_class.is_some_and(|p| p != k) {
            words.push(std::mem::take(&mut cur));
        }
        cur.push(c);
        cur_class = Some(k);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
        .into_iter()
        .map(|w| w.bytes().map(|b| byte_char(b).to_string()).collect())
        .collect()
}

/// Learns `n` BPE merges from `text` (most frequent adjacent pair first, ties broken by the pair's text so the result
/// is deterministic). Hand-rolled: a dozen lines, and it keeps test-support free of a trainer dependency.
fn learn_merges(text: &str, n: usize) -> Vec<(String, String)> {
    let mut words = pre_tokens(text);
    let mut merges = Vec::with_capacity(n);
    for _ in 0..n {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for w in &words {
            for p in w.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += 1;
            }
        }
        // BTreeMap iterates in key order; max_by_key keeps the last maximum, so reverse to keep the first.
        let Some((best, count)) = counts.into_iter().rev().max_by_key(|(_, c)| *c) else {
            break;
        };
        if count < 2 {
            break;
        }
        let joined = format!("{}{}", best.0, best.1);
        for w in &mut words {
            let mut i = 0;
            while i + 1 < w.len() {
                if w[i] == best.0 && w[i + 1] == best.1 {
                    w[i] = joined.clone();
                    w.remove(i + 1);
                }
                i += 1;
            }
        }
        merges.push(best);
    }
    merges
}

impl TinyTokenizer {
    /// The tokenizer of `family`'s tiny model.
    pub fn new(family: Family) -> Self {
        let specials = special_tokens(family);
        // Mistral puts its control tokens first (ids 0..), Llama and Qwen after the regular vocabulary.
        let specials_first = matches!(family, Family::Mistral | Family::Mixtral);
        let offset = if specials_first { specials.len() as u32 } else { 0 };
        let mut vocab: Vec<(String, u32)> = (0..=255u8)
            .map(|b| (byte_char(b).to_string(), offset + u32::from(b)))
            .collect();
        let merges = learn_merges(CORPUS, MERGES);
        for (a, b) in &merges {
            let id = offset + vocab.len() as u32;
            vocab.push((format!("{a}{b}"), id));
        }
        let first_added = if specials_first { 0 } else { vocab.len() as u32 };
        let added = specials
            .iter()
            .enumerate()
            .map(|(i, (s, special))| (s.to_string(), first_added + i as u32, *special))
            .collect();
        TinyTokenizer {
            family,
            vocab,
            merges,
            added,
        }
    }

    /// Number of tokens (regular + added); equals `vocab_size` in `config.json`.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len() + self.added.len()
    }

    /// Id of an added token, if the family has it.
    pub fn special_id(&self, content: &str) -> Option<u32> {
        self.added.iter().find(|(s, _, _)| s == content).map(|(_, id, _)| *id)
    }

    fn id(&self, content: &str) -> u32 {
        // Only called with names from `special_tokens`, which always exist for the family.
        self.special_id(content).unwrap_or(0)
    }

    /// The BOS token name, if the family's tokenizer has one.
    pub fn bos_token(&self) -> Option<&'static str> {
        match self.family {
            Family::Llama => Some("<|begin_of_text|>"),
            Family::Mistral | Family::Mixtral => Some("<s>"),
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe | Family::GptOss => None,
        }
    }

    /// The BOS id (Qwen has none and reports `<|endoftext|>` like its config does; GPT-OSS names
    /// `<|startoftext|>` but never adds it).
    pub fn bos_id(&self) -> u32 {
        match self.family {
            Family::GptOss => self.id("<|startoftext|>"),
            _ => self.id(self.bos_token().unwrap_or("<|endoftext|>")),
        }
    }

    /// The chat EOS token (the one the template ends a turn with).
    pub fn eos_token(&self) -> &'static str {
        match self.family {
            Family::Llama => "<|eot_id|>",
            Family::Mistral | Family::Mixtral => "</s>",
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => "<|im_end|>",
            Family::GptOss => "<|return|>",
        }
    }

    /// EOS ids as `generation_config.json` lists them.
    pub fn eos_ids(&self) -> Vec<u32> {
        match self.family {
            Family::Llama => vec![self.id("<|end_of_text|>"), self.id("<|eom_id|>"), self.id("<|eot_id|>")],
            Family::Mistral | Family::Mixtral => vec![self.id("</s>")],
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => vec![self.id("<|im_end|>"), self.id("<|endoftext|>")],
            // As GPT-OSS's updated generation_config.json: <|return|>, <|endoftext|>, <|call|>.
            Family::GptOss => vec![self.id("<|return|>"), self.id("<|endoftext|>"), self.id("<|call|>")],
        }
    }

    /// The `tokenizer.json` document.
    pub fn tokenizer_json(&self) -> Value {
        // Added tokens placed before the regular vocabulary (Mistral) are also in the model's vocabulary, as in the
        // real files; those after it (Llama, Qwen) are appended by id.
        let first_regular = self.vocab.first().map_or(0, |v| v.1);
        let vocab: serde_json::Map<String, Value> = self
            .added
            .iter()
            .filter(|(_, id, _)| *id < first_regular)
            .map(|(t, id, _)| (t.clone(), json!(id)))
            .chain(self.vocab.iter().map(|(t, id)| (t.clone(), json!(id))))
            .collect();
        let merges: Vec<String> = self.merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
        let added: Vec<Value> = self
            .added
            .iter()
            .map(|(s, id, special)| {
                json!({"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": special})
            })
            .collect();
        let post_processor = match self.bos_token() {
            Some(bos) => {
                let bos_id = self.id(bos);
                json!({
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                    "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                             {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                    "special_tokens": {bos: {"id": bos, "ids": [bos_id], "tokens": [bos]}}
                })
            }
            None => {
                json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true})
            }
        };
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": post_processor,
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges
            }
        })
    }

    /// The `tokenizer_config.json` document, with `chat_template` embedded.
    pub fn tokenizer_config_json(&self, chat_template: &str) -> Value {
        let decoder: serde_json::Map<String, Value> = self
            .added
            .iter()
            .map(|(s, id, special)| {
                (
                    id.to_string(),
                    json!({"content": s, "lstrip": false, "normalized": false, "rstrip": false,
                           "single_word": false, "special": special}),
                )
            })
            .collect();
        let mut c = json!({
            "add_bos_token": self.bos_token().is_some(),
            "add_eos_token": false,
            "added_tokens_decoder": decoder,
            "bos_token": self.bos_token(),
            "chat_template": chat_template,
            "clean_up_tokenization_spaces": false,
            "eos_token": self.eos_token(),
            "model_max_length": 512,
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        let m = c.as_object_mut().expect("json! object literal");
        match self.family {
            Family::Mistral | Family::Mixtral => {
                m.insert("unk_token".into(), json!("<unk>"));
            }
            Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => {
                m.insert("pad_token".into(), json!("<|endoftext|>"));
            }
            Family::GptOss => {
                m.insert("bos_token".into(), json!("<|startoftext|>"));
                m.insert("pad_token".into(), json!("<|endoftext|>"));
            }
            Family::Llama => {}
        }
        c
    }

    /// The `generation_config.json` document.
    pub fn generation_config_json(&self) -> Value {
        let mut c = json!({
            "eos_token_id": self.eos_ids(),
            "do_sample": true,
            "temperature": 0.6,
            "top_p": 0.9,
        });
        if self.bos_token().is_some() {
            c["bos_token_id"] = json!(self.bos_id());
        }
        c
    }
}
