//! `tokenizer.json` (byte-level BPE, or sentencepiece-style BPE with byte fallback, built with the `tokenizers`
//! crate) and `tokenizer_config.json` from GGUF metadata.

use std::path::Path;

use serde_json::{Map, Value as Json, json};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Merges, Vocab};
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::sequence::Sequence as PostSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior, Tokenizer,
};

use super::config::SpecialIds;
use super::meta::Meta;
use crate::Error;

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Llama 3's split regex (llama.cpp `pre` = `llama-bpe`), as in Meta's `tokenizer.json`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (llama.cpp `pre` = `qwen2`, `deepseek-r1-qwen`): single digits.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const SUPPORTED_PRE: &str =
    "gpt-2, default, smollm, llama-bpe, llama3, llama-v3, smaug-bpe, dbrx, qwen2, deepseek-r1-qwen or absent";

/// How text is split before BPE, from `tokenizer.ggml.pre`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreKind {
    /// GPT-2's regex (byte-level `use_regex`).
    Gpt2,
    /// Every digit on its own, then GPT-2's regex (SmolLM / cosmo2 tokenizer; llama.cpp `smollm`).
    SmolLm,
    /// Llama 3's regex; merges are skipped for whole-vocabulary words (`ignore_merges`), as in Meta's file.
    Llama3,
    /// Qwen2's regex.
    Qwen2,
}

impl PreKind {
    fn from_gguf(pre: Option<&str>) -> Result<PreKind, Error> {
        match pre {
            None | Some("gpt-2" | "gpt2" | "default") => Ok(PreKind::Gpt2),
            Some("smollm") => Ok(PreKind::SmolLm),
            Some("llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" | "dbrx") => Ok(PreKind::Llama3),
            Some("qwen2" | "deepseek-r1-qwen") => Ok(PreKind::Qwen2),
            Some(other) => Err(Error::UnsupportedTokenizer {
                key: "tokenizer.ggml.pre",
                value: other.to_owned(),
                expected: SUPPORTED_PRE,
            }),
        }
    }

    fn pre_tokenizer(self) -> Result<PreTokenizerWrapper, Error> {
        let split = |re: &str| -> Result<PreTokenizerWrapper, Error> {
            let split = Split::new(
                SplitPattern::Regex(re.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| Error::Tokenizer {
                message: format!("split regex: {e}"),
            })?;
            Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into())
        };
        match self {
            PreKind::Gpt2 => Ok(ByteLevel::new(false, true, true).into()),
            PreKind::SmolLm => {
                Ok(Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into())
            }
            PreKind::Llama3 => split(LLAMA3_SPLIT),
            PreKind::Qwen2 => split(QWEN2_SPLIT),
        }
    }
}

/// Which tokenizer model the GGUF describes (`tokenizer.ggml.model`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelKind {
    /// `gpt2`: byte-level BPE with merges, text split by `tokenizer.ggml.pre`'s rule.
    ByteLevel(PreKind),
    /// `llama`: sentencepiece BPE (Llama 2, Mistral, CodeLlama, ...): `▁` for spaces, byte-fallback tokens, merges
    /// recovered from the scores when the file has none.
    SentencePiece,
}

/// The GGUF vocabulary and special tokens, read once.
#[derive(Debug)]
pub(crate) struct GgufVocab {
    pub(crate) tokens: Vec<String>,
    token_types: Vec<i64>,
    merges: Vec<(String, String)>,
    kind: ModelKind,
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) unk: Option<u32>,
    pub(crate) pad: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    pub(crate) chat_template: Option<String>,
}

impl GgufVocab {
    pub(crate) fn read(meta: &Meta<'_>) -> Result<GgufVocab, Error> {
        let model = meta.str("tokenizer.ggml.model")?;
        let kind = match model {
            "gpt2" => ModelKind::ByteLevel(PreKind::from_gguf(meta.str_opt("tokenizer.ggml.pre")?)?),
            // Sentencepiece has no split regex (`pre` is `default` or absent).
            "llama" => ModelKind::SentencePiece,
            other => {
                return Err(Error::UnsupportedTokenizer {
                    key: "tokenizer.ggml.model",
                    value: other.to_owned(),
                    expected: "gpt2 (byte-level BPE) or llama (sentencepiece BPE)",
                });
            }
        };
        let tokens: Vec<String> = meta
            .str_array("tokenizer.ggml.tokens")?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if tokens.is_empty() || u32::try_from(tokens.len()).is_err() {
            return Err(Error::BadKey {
                key: "tokenizer.ggml.tokens".into(),
                expected: "between 1 and 2^32 tokens",
                found: format!("{} tokens", tokens.len()),
            });
        }
        let token_types = match meta.int_array_opt("tokenizer.ggml.token_type")? {
            Some(t) if t.len() != tokens.len() => {
                return Err(Error::BadKey {
                    key: "tokenizer.ggml.token_type".into(),
                    expected: "one type per token",
                    found: format!("{} types for {} tokens", t.len(), tokens.len()),
                });
            }
            Some(t) => t,
            None => vec![1; tokens.len()],
        };
        let merges = if kind == ModelKind::SentencePiece && !meta.contains("tokenizer.ggml.merges") {
            let scores = meta
                .f64_array_opt("tokenizer.ggml.scores")?
                .ok_or_else(|| Error::MissingKey {
                    key: "tokenizer.ggml.scores".into(),
                    expected: "the piece scores a sentencepiece vocabulary without merges is rebuilt from",
                })?;
            if scores.len() != tokens.len() {
                return Err(Error::BadKey {
                    key: "tokenizer.ggml.scores".into(),
                    expected: "one score per token",
                    found: format!("{} scores for {} tokens", scores.len(), tokens.len()),
                });
            }
            merges_from_scores(&tokens, &scores)
        } else {
            meta.str_array("tokenizer.ggml.merges")?
                .into_iter()
                .enumerate()
                .map(|(i, m)| match m.split_once(' ') {
                    Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains(' ') => {
                        Ok((a.to_owned(), b.to_owned()))
                    }
                    _ => Err(Error::BadKey {
                        key: format!("tokenizer.ggml.merges[{i}]"),
                        expected: "two tokens separated by one space",
                        found: format!("the string {m:?}"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        let id = |key: &str| -> Result<Option<u32>, Error> {
            match meta.u64_opt(key)? {
                None => Ok(None),
                Some(v) if (v as usize) < tokens.len() => Ok(Some(v as u32)),
                Some(v) => Err(Error::BadKey {
                    key: key.to_owned(),
                    expected: "a token id inside the vocabulary",
                    found: format!("{v} with {} tokens", tokens.len()),
                }),
            }
        };
        Ok(GgufVocab {
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            // llama.cpp (and transformers' GGUF loader) add BOS to a sentencepiece vocabulary that does not say.
            add_bos: meta
                .bool_opt("tokenizer.ggml.add_bos_token")?
                .unwrap_or(kind == ModelKind::SentencePiece),
            add_eos: meta.bool_opt("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            chat_template: meta.str_opt("tokenizer.chat_template")?.map(str::to_owned),
            tokens,
            token_types,
            merges,
            kind,
        })
    }

    pub(crate) fn special_ids(&self) -> SpecialIds {
        let mut stop = Vec::new();
        for id in [self.eos, self.eot, self.eom].into_iter().flatten() {
            if !stop.contains(&id) {
                stop.push(id);
            }
        }
        SpecialIds {
            bos: self.bos,
            eos: self.eos,
            pad: self.pad,
            stop,
        }
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize)).map(String::as_str)
    }

    /// Ids that become special added tokens: every control token, plus BOS/EOS/UNK/PAD/EOT/EOM whatever their type.
    fn is_special(&self, id: usize) -> bool {
        self.token_types[id] == TOKEN_TYPE_CONTROL
            || [self.bos, self.eos, self.unk, self.pad, self.eot, self.eom].contains(&u32::try_from(id).ok())
    }

    /// Builds the `tokenizers` tokenizer: byte-level BPE with the file's merges, control tokens as special added
    /// tokens, user-defined tokens as plain added tokens.
    pub(crate) fn build(&self) -> Result<Tokenizer, Error> {
        let err = |what: &str, e: tokenizers::Error| Error::Tokenizer {
            message: format!("{what}: {e}"),
        };
        let mut vocab = Vocab::default();
        for (i, t) in self.tokens.iter().enumerate() {
            // `i` fits in u32: `read` checked the vocabulary size.
            if let Some(prev) = vocab.insert(t.clone(), i as u32) {
                tracing::warn!(token = %t, first = prev, second = i, "duplicate token in the GGUF vocabulary; the last id wins");
            }
        }
        let spm = self.kind == ModelKind::SentencePiece;
        // Meta's Llama 3 file skips merges for whole-vocabulary words.
        let ignore_merges = self.kind == ModelKind::ByteLevel(PreKind::Llama3);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, self.merges.clone())
            .ignore_merges(ignore_merges)
            .fuse_unk(spm)
            .byte_fallback(spm)
            .build()
            .map_err(|e| err("BPE model from tokenizer.ggml.tokens and tokenizer.ggml.merges", e))?;
        let mut tok = Tokenizer::new(bpe);
        let byte_level_post: Option<PostProcessorWrapper> = if let ModelKind::ByteLevel(pre) = self.kind {
            tok.with_pre_tokenizer(Some(pre.pre_tokenizer()?));
            tok.with_decoder(Some(ByteLevelDecoder::default()));
            Some(ByteLevel::new(true, false, true).into())
        } else {
            // transformers' LlamaTokenizer: `▁` for spaces and one before the text, bytes for unknown characters;
            // decoding undoes both.
            tok.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::First, false)));
            let space = Replace::new("▁", " ").map_err(|e| err("decoder", e))?;
            let decoders: Vec<DecoderWrapper> = vec![
                space.into(),
                ByteFallback::default().into(),
                Fuse::default().into(),
                Strip::new(' ', 1, 0).into(),
            ];
            tok.with_decoder(Some(DecoderSequence::new(decoders)));
            None
        };
        let post = match (self.add_bos, self.token(self.bos)) {
            (true, Some(bos)) => {
                let bos_id = self.bos.unwrap_or_default();
                let template = TemplateProcessing::builder()
                    .try_single(format!("{bos}:0 $A:0"))
                    .and_then(|b| b.try_pair(format!("{bos}:0 $A:0 {bos}:1 $B:1")))
                    .map_err(|e| Error::Tokenizer {
                        message: format!("BOS template: {e}"),
                    })?
                    .special_tokens(vec![(bos.to_owned(), bos_id)])
                    .build()
                    .map_err(|e| Error::Tokenizer {
                        message: format!("BOS template: {e}"),
                    })?;
                match byte_level_post {
                    Some(b) => Some(PostSequence::new(vec![b, template.into()]).into()),
                    None => Some(template.into()),
                }
            }
            _ => byte_level_post,
        };
        tok.with_post_processor(post);

        let mut special = Vec::new();
        let mut plain = Vec::new();
        for (id, t) in self.tokens.iter().enumerate() {
            if self.is_special(id) {
                special.push(AddedToken::from(t.clone(), true).normalized(false));
            } else if self.token_types[id] == TOKEN_TYPE_USER_DEFINED {
                plain.push(AddedToken::from(t.clone(), false).normalized(false));
            }
        }
        tok.add_special_tokens(special).map_err(|e| err("special tokens", e))?;
        tok.add_tokens(plain).map_err(|e| err("added tokens", e))?;
        Ok(tok)
    }

    /// Writes `tokenizer.json` and reads it back, so a file the `tokenizers` crate cannot load is never left behind.
    pub(crate) fn write_tokenizer_json(&self, tok: &Tokenizer, path: &Path) -> Result<(), Error> {
        tok.save(path, true).map_err(|e| Error::Tokenizer {
            message: format!("writing {}: {e}", path.display()),
        })?;
        let back = Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            message: format!("reading back {}: {e}", path.display()),
        })?;
        if back.get_vocab_size(true) < self.tokens.len() {
            return Err(Error::Tokenizer {
                message: format!(
                    "{} has {} tokens (expected at least the {} GGUF tokens)",
                    path.display(),
                    back.get_vocab_size(true),
                    self.tokens.len()
                ),
            });
        }
        Ok(())
    }

    /// `tokenizer_config.json`: special tokens, `add_bos_token`, the chat template, `added_tokens_decoder`.
    pub(crate) fn tokenizer_config_json(&self, model_max_length: usize) -> Json {
        let mut c = Map::new();
        c.insert("add_bos_token".into(), json!(self.add_bos));
        c.insert("add_eos_token".into(), json!(self.add_eos));
        if matches!(self.kind, ModelKind::ByteLevel(_)) {
            // For LlamaTokenizerFast this key would force a conversion from a sentencepiece file we do not have.
            c.insert("add_prefix_space".into(), json!(false));
        }
        let mut decoder = Map::new();
        for (id, t) in self.tokens.iter().enumerate() {
            let special = self.is_special(id);
            if special || self.token_types[id] == TOKEN_TYPE_USER_DEFINED {
                decoder.insert(
                    id.to_string(),
                    json!({"content": t, "lstrip": false, "normalized": false, "rstrip": false,
                           "single_word": false, "special": special}),
                );
            }
        }
        c.insert("added_tokens_decoder".into(), Json::Object(decoder));
        c.insert("bos_token".into(), json!(self.token(self.bos)));
        if let Some(t) = &self.chat_template {
            c.insert("chat_template".into(), json!(t));
        }
        c.insert("clean_up_tokenization_spaces".into(), json!(false));
        c.insert("eos_token".into(), json!(self.token(self.eos)));
        c.insert("model_max_length".into(), json!(model_max_length));
        if let Some(pad) = self.token(self.pad) {
            c.insert("pad_token".into(), json!(pad));
        }
        let class = match self.kind {
            ModelKind::SentencePiece => "LlamaTokenizer",
            ModelKind::ByteLevel(PreKind::Gpt2 | PreKind::SmolLm) => "GPT2Tokenizer",
            ModelKind::ByteLevel(PreKind::Llama3 | PreKind::Qwen2) => "PreTrainedTokenizerFast",
        };
        c.insert("tokenizer_class".into(), json!(class));
        if let Some(unk) = self.token(self.unk) {
            c.insert("unk_token".into(), json!(unk));
        }
        Json::Object(c)
    }
}

/// The merges a sentencepiece vocabulary implies, as transformers' `generate_merges` recovers them for a GGUF
/// without `tokenizer.ggml.merges`: every split of a token into two tokens of the vocabulary, ordered by the score
/// of the token they make (best first), then by the lengths of the two halves (longer first), ties in vocabulary
/// order. Hand-rolled: the `tokenizers` crate builds BPE from merges but has no way to derive them.
fn merges_from_scores(tokens: &[String], scores: &[f64]) -> Merges {
    use std::collections::HashMap;
    // As Python dicts: the last id of a duplicated token, its first place, its last score.
    let mut id: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut score: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        if id.insert(t, i).is_none() {
            order.push(t);
        }
        score.insert(t, scores[i]);
    }
    // (left, right, sort key: the merged token's score and the halves' lengths in characters, as Python counts).
    let mut merges: Vec<(&str, &str, (f64, usize, usize))> = Vec::new();
    for t in order {
        let start = merges.len();
        let total = t.chars().count();
        for (chars, (at, _)) in t.char_indices().enumerate().skip(1) {
            let (l, r) = t.split_at(at);
            if id.contains_key(l) && id.contains_key(r) {
                merges.push((l, r, (score[t], chars, total - chars)));
            }
        }
        merges[start..].sort_by_key(|(l, r, _)| (id[l], id[r]));
    }
    // Python's stable `sorted(..., reverse=True)`: descending keys, equal keys in their first order.
    merges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_owned(), r.to_owned()))
        .collect()
}
