//! The byte spelling of every token of a `tokenizers::Tokenizer`, and the `toktrie` environment llguidance runs on.
//!
//! Hand-rolled because the bridge crate `toktrie_hf_tokenizers` 1.9 pins `tokenizers` 0.21 (the workspace uses
//! 0.23) and `tokenizers` keeps its GPT-2 byte alphabet private; llguidance's own `tokenizer.json` reader panics
//! on some inputs instead of returning an error.

use std::collections::HashMap;

use serde_json::Value;
use tokenizers::Tokenizer;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

use crate::Error;

/// How the tokenizer spells text in its vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// Byte-level BPE (GPT-2, Llama 3, Qwen, SmolLM): every byte is one printable character of the GPT-2 alphabet.
    ByteLevel,
    /// SentencePiece style (Llama 2, Mistral): UTF-8 text with `space` standing for ' ', bytes as `<0xNN>` tokens.
    SentencePiece {
        /// The character that stands for a space (usually '▁').
        space: char,
    },
}

/// Reads the tokenizer's decoder to find out how tokens spell bytes.
pub(crate) fn spelling(tokenizer: &Tokenizer) -> Result<Spelling, Error> {
    let decoder = serde_json::to_value(tokenizer.get_decoder()).unwrap_or(Value::Null);
    let mut byte_level = false;
    let mut sentencepiece = false;
    let mut space = None;
    visit_decoder(&decoder, &mut |d| match d["type"].as_str() {
        Some("ByteLevel") => byte_level = true,
        Some("ByteFallback") => sentencepiece = true,
        Some("Metaspace") => {
            sentencepiece = true;
            if let Some(c) = single_char(&d["replacement"]) {
                space = Some(c);
            }
        }
        Some("Replace") if d["content"].as_str() == Some(" ") => {
            if let Some(c) = single_char(&d["pattern"]["String"]) {
                space = Some(c);
            }
        }
        _ => {}
    });
    if byte_level {
        Ok(Spelling::ByteLevel)
    } else if sentencepiece {
        Ok(Spelling::SentencePiece {
            space: space.unwrap_or('\u{2581}'),
        })
    } else {
        Err(Error::UnsupportedTokenizer {
            decoder: decoder.to_string(),
        })
    }
}

fn visit_decoder(d: &Value, f: &mut impl FnMut(&Value)) {
    f(d);
    if let Some(inner) = d["decoders"].as_array() {
        for d in inner {
            visit_decoder(d, f);
        }
    }
}

fn single_char(v: &Value) -> Option<char> {
    let mut chars = v.as_str()?.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// GPT-2's reversible byte ↔ printable character mapping (`bytes_to_unicode`), as char → byte.
fn gpt2_char_to_byte() -> HashMap<char, u8> {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    let mut next = 256u32;
    let mut map = HashMap::with_capacity(256);
    for b in 0..=255u8 {
        let c = if printable(b) {
            char::from(b)
        } else {
            // 256 + at most 68: always a valid scalar value.
            let c = char::from_u32(next).unwrap_or(char::REPLACEMENT_CHARACTER);
            next += 1;
            c
        };
        map.insert(c, b);
    }
    map
}

/// Parses a SentencePiece byte token `<0xNN>`.
fn byte_fallback_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The bytes every token id stands for: special added tokens are `0xFF` followed by their name (llguidance's marker,
/// so grammar text never matches them), other added tokens are their text, regular tokens are decoded from the
/// vocabulary's spelling. Ids the vocabulary skips, and tokens that cannot be spelled, are left empty: the constraint
/// never allows them.
pub(crate) fn token_bytes(tokenizer: &Tokenizer, spelling: Spelling) -> Vec<Vec<u8>> {
    let vocab = tokenizer.get_vocab(true);
    let added = tokenizer.get_added_tokens_decoder();
    let n_vocab = vocab
        .values()
        .chain(added.keys())
        .map(|&id| id as usize + 1)
        .max()
        .unwrap_or(0);
    let mut bytes = vec![Vec::new(); n_vocab];
    for (&id, token) in &added {
        let b = &mut bytes[id as usize];
        if token.special {
            b.push(TokTrie::SPECIAL_TOKEN_MARKER);
        }
        b.extend_from_slice(token.content.as_bytes());
    }
    let char_map = gpt2_char_to_byte();
    let mut unspellable = 0usize;
    for (name, id) in tokenizer.get_vocab(false) {
        if added.contains_key(&id) {
            continue;
        }
        let spelled = match spelling {
            Spelling::ByteLevel => name.chars().map(|c| char_map.get(&c).copied()).collect(),
            Spelling::SentencePiece { space } => Some(match byte_fallback_token(&name) {
                Some(b) => vec![b],
                None => name.replace(space, " ").into_bytes(),
            }),
        };
        match spelled {
            Some(b) => bytes[id as usize] = b,
            None => {
                unspellable += 1;
                tracing::debug!(id, token = %name, "token is not in the GPT-2 byte alphabet; never allowed");
            }
        }
    }
    if unspellable > 0 {
        tracing::warn!(
            unspellable,
            "tokens outside the GPT-2 byte alphabet are never allowed under a grammar"
        );
    }
    bytes
}

/// The `toktrie` environment: the token trie plus the Hugging Face tokenizer for the canonical tokenisation of text
/// llguidance forces.
pub(crate) struct HfEnv {
    trie: TokTrie,
    tokenizer: Tokenizer,
    canonical: bool,
}

impl HfEnv {
    /// Builds the environment; `eos` must be non-empty and inside the vocabulary. The special tokens named in
    /// `text_tokens` are spelled as their text (no marker), so grammar string literals match them.
    pub(crate) fn build(tokenizer: &Tokenizer, eos: &[u32], text_tokens: &[&str]) -> Result<(TokEnv, Spelling), Error> {
        let spelling = spelling(tokenizer)?;
        let mut words = token_bytes(tokenizer, spelling);
        for &name in text_tokens {
            let id = tokenizer
                .token_to_id(name)
                .filter(|&id| tokenizer.get_added_tokens_decoder().contains_key(&id))
                .ok_or_else(|| Error::UnknownAddedToken {
                    token: name.to_string(),
                })?;
            words[id as usize] = name.as_bytes().to_vec();
        }
        let vocab_size = words.len();
        let Some(&first_eos) = eos.first() else {
            return Err(Error::NoEosToken);
        };
        if let Some(&id) = eos.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(Error::TokenOutOfRange {
                what: "eos",
                id,
                vocab_size,
            });
        }
        // A vocabulary is far below u32::MAX entries (ids are u32).
        let info = TokRxInfo::new(vocab_size as u32, first_eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eos);
        let env = HfEnv {
            trie,
            tokenizer: tokenizer.clone(),
            // SentencePiece tokenizers prepend a space to every piece they encode, so their tokenisation of a
            // fragment is not the one the model would produce mid-text: let llguidance mask rather than force.
            canonical: spelling == Spelling::ByteLevel,
        };
        Ok((std::sync::Arc::new(env), spelling))
    }

    fn encode(&self, text: &str) -> Vec<TokenId> {
        let greedy = || self.trie.greedy_tokenize(text.as_bytes());
        if !self.canonical {
            return greedy();
        }
        match self.tokenizer.encode_fast(text, false) {
            // Keep the tokenizer's answer only when it spells exactly the text (an added special token in the text
            // or a normaliser would change it).
            Ok(enc) if self.trie.decode_raw(enc.get_ids()) == text.as_bytes() => enc.get_ids().to_vec(),
            Ok(_) => greedy(),
            Err(e) => {
                tracing::debug!(error = %e, "tokenizer failed on forced text; using greedy tokenisation");
                greedy()
            }
        }
    }
}

impl TokenizerEnv for HfEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |s| self.encode(s))
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }
}
