//! Constrained decoding: token masks from Lark grammars (llguidance) for tool calls and JSON output.
//!
//! Build one [`ConstraintFactory`] per tokenizer (it indexes the whole vocabulary, which is the expensive part) and
//! share it through an `Arc`; create a [`TokenConstraint`] per generated sequence from a Lark grammar in llguidance's
//! dialect (`%json{...}` embeds a JSON schema). Per step: [`TokenConstraint::mask_logits`], sample, then
//! [`TokenConstraint::commit`]; stop as on EOS once [`TokenConstraint::is_finished`].
//!
//! The grammars themselves (tool calls, JSON schemas, regexes, choices) are written by `chat_template::grammar`, their
//! one home; this crate only compiles them.
//!
//! ```ignore
//! let factory = Arc::new(ConstraintFactory::new(&tokenizer, &eos_ids)?);
//! let mut c = factory.constraint(&chat_template::grammar::json_lark(&schema))?;
//! while !c.is_finished() {
//!     let mut logits = model.forward(..);
//!     c.mask_logits(&mut logits)?;
//!     let token = sample(&logits);
//!     if eos_ids.contains(&token) { break; }
//!     c.commit(token)?;
//! }
//! ```

mod error;
mod vocab;

#[cfg(test)]
mod tests;

use llguidance::api::{StopReason, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory};
use toktrie::{SimpleVob, TokEnv};

pub use error::Error;

/// Compiles grammars against one tokenizer. Building it indexes the vocabulary (tens of milliseconds for a 50k
/// vocabulary); build it once per model and share it (it is `Send + Sync`).
pub struct ConstraintFactory {
    parsers: ParserFactory,
    env: TokEnv,
    eos: Vec<u32>,
}

impl std::fmt::Debug for ConstraintFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintFactory")
            .field("vocab_size", &self.vocab_size())
            .field("eos", &self.eos)
            .finish_non_exhaustive()
    }
}

impl ConstraintFactory {
    /// Indexes `tokenizer`'s vocabulary. `eos_token_ids` (from `generation_config.json`) are the tokens that end a
    /// sequence: the constraint allows them exactly where the grammar is complete.
    ///
    /// Special added tokens (`special: true`) are never matched by grammar text: a grammar reaches them only as
    /// llguidance special-token references (`<|eot_id|>`, `<[128008]>`), and JSON strings cannot contain them.
    /// Non-special added tokens (Qwen's `<tool_call>`) are their text.
    pub fn new(tokenizer: &tokenizers::Tokenizer, eos_token_ids: &[u32]) -> Result<Self, Error> {
        Self::with_text_tokens(tokenizer, eos_token_ids, &[])
    }

    /// Like [`ConstraintFactory::new`], but the special added tokens named in `text_tokens` are spelled as their text,
    /// so a grammar string literal matches them: for example `"[TOOL_CALLS] "` then lets a Mistral model write its
    /// single `[TOOL_CALLS]` control token, as it was trained to (the engine must then decode that token to its text).
    /// A name that is not an added token is [`Error::UnknownAddedToken`].
    pub fn with_text_tokens(
        tokenizer: &tokenizers::Tokenizer,
        eos_token_ids: &[u32],
        text_tokens: &[&str],
    ) -> Result<Self, Error> {
        let (env, spelling) = vocab::HfEnv::build(tokenizer, eos_token_ids, text_tokens)?;
        let mut parsers = ParserFactory::new_simple(&env).map_err(|e| Error::Factory { message: e.to_string() })?;
        // llguidance logs to stderr by default; a library must not.
        parsers.quiet();
        tracing::debug!(
            vocab_size = env.tok_trie().vocab_size(),
            ?spelling,
            eos = ?eos_token_ids,
            "constraint factory ready"
        );
        Ok(ConstraintFactory {
            parsers,
            env,
            eos: eos_token_ids.to_vec(),
        })
    }

    /// Number of token ids the constraint knows (the highest tokenizer id + 1). Logits rows may be longer (models
    /// pad their embedding); the extra positions are always masked.
    pub fn vocab_size(&self) -> usize {
        self.env.tok_trie().vocab_size()
    }

    /// The EOS ids given at construction.
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The bytes token `id` stands for (a special token as its name); empty for an unknown id.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        self.env.tok_trie().decode(&[id])
    }

    /// Compiles a Lark grammar (llguidance's dialect) into a fresh per-sequence constraint. A grammar that does not
    /// compile is an [`Error::Grammar`] carrying llguidance's explanation.
    pub fn constraint(&self, lark_grammar: &str) -> Result<TokenConstraint, Error> {
        let grammar = TopLevelGrammar::from_lark(lark_grammar.to_string());
        let parser = self
            .parsers
            .create_parser(grammar)
            .map_err(|e| Error::Grammar { message: e.to_string() })?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(message) = matcher.get_error() {
            return Err(Error::Grammar { message });
        }
        for warning in matcher.grammar_warnings() {
            tracing::warn!(%warning, "grammar warning");
        }
        Ok(TokenConstraint {
            matcher,
            env: self.env.clone(),
            eos: self.eos.clone(),
            generated: Vec::new(),
        })
    }
}

/// The grammar state of one generated sequence (`Send`; move it with the sequence).
pub struct TokenConstraint {
    matcher: Matcher,
    env: TokEnv,
    eos: Vec<u32>,
    /// Tokens committed so far (for error messages and [`TokenConstraint::generated_text`]).
    generated: Vec<u32>,
}

impl std::fmt::Debug for TokenConstraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConstraint")
            .field("generated", &self.generated_text())
            .field("finished", &self.is_finished())
            .finish_non_exhaustive()
    }
}

impl TokenConstraint {
    /// Sets every logit the grammar does not allow next to `f32::NEG_INFINITY`: tokens the grammar rejects, EOS
    /// while the grammar is incomplete, positions beyond the vocabulary. Once finished, only EOS stays allowed.
    /// Errors when the parser fails or when no allowed token fits in `logits`.
    pub fn mask_logits(&mut self, logits: &mut [f32]) -> Result<(), Error> {
        let mask = self.allowed()?;
        let words = mask.as_slice();
        let mut any = false;
        let mut rows = logits.chunks_mut(32);
        // `words` first: zip must not pull (and drop) a row once the words run out.
        for (&bits, row) in words.iter().zip(rows.by_ref()) {
            match bits {
                0 => row.fill(f32::NEG_INFINITY),
                u32::MAX => any = true,
                _ => {
                    for (bit, l) in row.iter_mut().enumerate() {
                        if bits & (1 << bit) == 0 {
                            *l = f32::NEG_INFINITY;
                        } else {
                            any = true;
                        }
                    }
                }
            }
        }
        // Positions past the vocabulary (a padded embedding) are never allowed.
        for row in rows {
            row.fill(f32::NEG_INFINITY);
        }
        if any {
            Ok(())
        } else {
            Err(Error::NoAllowedToken {
                logits_len: logits.len(),
                vocab_size: self.env.tok_trie().vocab_size(),
            })
        }
    }

    /// The set of tokens allowed next (what [`TokenConstraint::mask_logits`] applies).
    pub fn allowed_tokens(&mut self) -> Result<Vec<u32>, Error> {
        Ok(self.allowed()?.to_list())
    }

    fn allowed(&mut self) -> Result<SimpleVob, Error> {
        if self.is_finished() {
            return Ok(self.env.tok_trie().eos_token_set());
        }
        self.matcher.compute_mask().map_err(|e| self.parser_error(e))
    }

    /// Advances the grammar by the sampled `token`. A token the grammar does not allow here is an
    /// [`Error::TokenNotAllowed`] and leaves the state unchanged. Committing an EOS token where the grammar is complete
    /// finishes it; committing EOS after it finished is a no-op.
    pub fn commit(&mut self, token: u32) -> Result<(), Error> {
        let trie = self.env.tok_trie();
        let vocab_size = trie.vocab_size();
        if token as usize >= vocab_size {
            return Err(Error::TokenOutOfRange {
                what: "committed",
                id: token,
                vocab_size,
            });
        }
        let is_eos = self.eos.contains(&token);
        if self.is_finished() {
            return if is_eos {
                Ok(())
            } else {
                Err(Error::AlreadyFinished {
                    token,
                    text: trie.token_dbg(token),
                })
            };
        }
        self.check_usable()?;
        let allowed = if is_eos {
            self.matcher.is_accepting()
        } else {
            self.matcher.validate_tokens(&[token]).map(|n| n == 1)
        }
        .map_err(|e| self.parser_error(e))?;
        if !allowed {
            return Err(Error::TokenNotAllowed {
                token,
                text: trie.token_dbg(token),
                generated: self.generated_text(),
            });
        }
        self.matcher.consume_token(token).map_err(|e| self.parser_error(e))?;
        self.generated.push(token);
        Ok(())
    }

    /// Whether the grammar is complete and cannot be extended (or EOS was committed where it was complete): the
    /// caller stops the sequence as on EOS.
    pub fn is_finished(&self) -> bool {
        matches!(
            self.matcher.stop_reason(),
            StopReason::NoExtension | StopReason::NoExtensionBias | StopReason::EndOfSentence
        )
    }

    /// Whether the grammar would accept the sequence as it stands (EOS is allowed now).
    pub fn is_accepting(&mut self) -> Result<bool, Error> {
        if self.is_finished() {
            return Ok(true);
        }
        self.check_usable()?;
        self.matcher.is_accepting().map_err(|e| self.parser_error(e))
    }

    /// The text committed so far (special tokens by name, EOS included if committed).
    pub fn generated_text(&self) -> String {
        self.env.tok_trie().decode_str(&self.generated)
    }

    fn check_usable(&self) -> Result<(), Error> {
        match self.matcher.get_error() {
            Some(message) => Err(Error::Parser { message }),
            None => Ok(()),
        }
    }

    fn parser_error(&self, e: impl std::fmt::Display) -> Error {
        Error::Parser {
            message: self.matcher.get_error().unwrap_or_else(|| e.to_string()),
        }
    }
}
