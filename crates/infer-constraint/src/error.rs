//! The crate's error type.

/// Everything that can go wrong while building or driving a token constraint.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tokenizer's decoder is neither byte-level (GPT-2 alphabet) nor SentencePiece-style byte fallback.
    #[error(
        "tokenizer decoder {decoder} is not supported for constrained decoding: expected ByteLevel, or ByteFallback/Metaspace"
    )]
    UnsupportedTokenizer {
        /// The decoder as the tokenizer describes it (`null` when it has none).
        decoder: String,
    },
    /// No end-of-sequence id was given.
    #[error("no eos token id given: expected at least one (generation_config.json eos_token_id)")]
    NoEosToken,
    /// A token id lies outside the tokenizer's vocabulary.
    #[error("{what} token id {id} is outside the vocabulary of {vocab_size} tokens")]
    TokenOutOfRange {
        /// What the id was given as (`eos`, `committed`).
        what: &'static str,
        /// The bad id.
        id: u32,
        /// Size of the tokenizer's vocabulary.
        vocab_size: usize,
    },
    /// A token named to be matched as text is not an added token of the tokenizer.
    #[error("token {token:?} is not an added token of the tokenizer: expected one of its added_tokens")]
    UnknownAddedToken {
        /// The name given.
        token: String,
    },
    /// llguidance could not index the vocabulary.
    #[error("cannot prepare the token index for constrained decoding: {message}")]
    Factory {
        /// llguidance's explanation.
        message: String,
    },
    /// The Lark grammar does not compile (syntax error, unknown rule, unsupported JSON schema keyword, ...).
    #[error("invalid grammar: {message}")]
    Grammar {
        /// llguidance's explanation, naming the rule, line or schema keyword at fault.
        message: String,
    },
    /// The sampled token is not allowed by the grammar at this point.
    #[error("token {token} ({text}) is not allowed by the grammar after {generated:?}")]
    TokenNotAllowed {
        /// The rejected id.
        token: u32,
        /// The token's text as the vocabulary spells it.
        text: String,
        /// Text generated under the constraint so far.
        generated: String,
    },
    /// A token other than EOS was committed after the grammar finished.
    #[error("token {token} ({text}) committed after the grammar finished: expected an eos token or nothing")]
    AlreadyFinished {
        /// The rejected id.
        token: u32,
        /// The token's text as the vocabulary spells it.
        text: String,
    },
    /// The grammar allows no token that the logits row can represent.
    #[error(
        "the grammar allows no token among the {logits_len} logits (vocabulary of {vocab_size} tokens): expected at least one"
    )]
    NoAllowedToken {
        /// Length of the logits row given to `mask_logits`.
        logits_len: usize,
        /// Size of the tokenizer's vocabulary.
        vocab_size: usize,
    },
    /// llguidance's parser failed or hit one of its limits while computing a mask.
    #[error("constraint parser failed: {message}")]
    Parser {
        /// llguidance's explanation.
        message: String,
    },
}
