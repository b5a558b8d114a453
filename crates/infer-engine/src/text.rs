//! Incremental detokenisation and stop sequences.
//!
//! The text of a completion is always `tokenizer.decode(all completion tokens)`; a delta is released only when that
//! text does not end in a replacement character (half a UTF-8 character) and extends what was already sent, so the
//! concatenated deltas are exactly what decoding the whole sequence gives. Stop sequences are matched on this text,
//! so they are found across token boundaries; text that could be the start of a stop sequence is held back.
//!
//! Byte-fallback tokens (`<0xE3>`, in sentencepiece-style vocabularies) need one more rule. The decoder turns a run
//! of them into text only as a whole: valid UTF-8 becomes its characters, anything else becomes one U+FFFD per byte,
//! the run's ASCII bytes included. So `<0x0A>` decodes to a newline until a stray continuation byte follows it and
//! turns both into U+FFFD; text that ends in a run of byte tokens is final only once a token that is not a byte ends
//! the run (or the generation ends), and is held until then.
//!
//! Decoding the whole completion after every token would cost time growing with its length. After each token only a
//! window is decoded, from the token where the last released text began (so that a decoder which treats the first
//! token of its input apart, like sentencepiece's leading-space strip, sees the same first token in both decodes):
//! the text the window adds beyond what its first part decoded to is appended to the text so far. Where the window
//! does not extend its first part's text, the whole completion is decoded instead, and the final text of a
//! generation is always the whole decode.

/// The text state of one sequence.
pub(crate) struct TextState {
    stops: Vec<String>,
    /// Decoded text of the whole completion, as of the last complete decode.
    text: String,
    /// Bytes of `text` already emitted.
    sent: usize,
    /// Token where the decode window starts.
    window: usize,
    /// Tokens of the completion whose decode is `text[..read_len]`.
    read: usize,
    read_len: usize,
}

/// What [`TextState::update`] found.
pub(crate) struct Update {
    pub(crate) delta: String,
    pub(crate) stop: Option<String>,
}

impl Update {
    /// Nothing to release yet.
    fn nothing() -> Self {
        Update {
            delta: String::new(),
            stop: None,
        }
    }
}

impl TextState {
    pub(crate) fn new(stops: Vec<String>) -> Self {
        TextState {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            text: String::new(),
            sent: 0,
            window: 0,
            read: 0,
            read_len: 0,
        }
    }

    /// After a generated token, the last of `ids` (the completion so far): `last_is_byte` when it is a byte-fallback
    /// token (see the module comment), in which case nothing is final yet and nothing is decoded. `decode` decodes a
    /// run of the completion's tokens.
    pub(crate) fn after_token(&mut self, last_is_byte: bool, ids: &[u32], decode: impl Fn(&[u32]) -> String) -> Update {
        if last_is_byte {
            return Update::nothing();
        }
        let base = decode(&ids[self.window..self.read]);
        let grown = decode(&ids[self.window..]);
        let whole = match grown.strip_prefix(base.as_str()) {
            Some(added) => {
                let mut whole = String::with_capacity(self.text.len() + added.len());
                whole.push_str(&self.text[..self.read_len]);
                whole.push_str(added);
                whole
            }
            None => decode(ids),
        };
        let complete = !whole.ends_with('\u{FFFD}');
        let up = self.update(whole, false);
        if complete {
            // Text up to here is final: the next window starts at this token.
            self.window = self.read;
            self.read = ids.len();
            self.read_len = self.text.len();
        }
        up
    }

    /// Takes the decode of the whole completion so far; returns the text that can be released now.
    pub(crate) fn update(&mut self, decoded: String, final_: bool) -> Update {
        if !final_ && decoded.ends_with('\u{FFFD}') {
            return Update::nothing();
        }
        if !decoded.starts_with(&self.text[..self.sent]) {
            // The decoder rewrote text already sent (it should not for byte-level BPE); keep going from here.
            tracing::warn!("detokeniser changed text that was already streamed");
            self.sent = decoded.len().min(self.sent);
            while !decoded.is_char_boundary(self.sent) {
                self.sent -= 1;
            }
        }
        self.text = decoded;
        // A stop sequence may start in text held back earlier, so search from the earliest place it could begin.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        let found = self
            .stops
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| (from + i, s)))
            .min_by_key(|(i, _)| *i);
        if let Some((at, s)) = found {
            let at = at.max(self.sent);
            let delta = self.text[self.sent..at].to_string();
            self.sent = at;
            return Update {
                delta,
                stop: Some(s.clone()),
            };
        }
        let mut end = self.text.len();
        if !final_ {
            // Hold back the longest suffix that is a proper prefix of a stop sequence.
            for s in &self.stops {
                for (k, _) in s.char_indices().skip(1) {
                    if self.text.ends_with(&s[..k]) {
                        end = end.min(self.text.len() - k);
                    }
                }
            }
        }
        let end = end.max(self.sent);
        let delta = self.text[self.sent..end].to_string();
        self.sent = end;
        Update { delta, stop: None }
    }
}

/// Which token ids are byte-fallback tokens (`<0x00>` … `<0xFF>`), indexed by id.
pub(crate) fn byte_fallback_tokens(tokenizer: &tokenizers::Tokenizer) -> Vec<bool> {
    let vocab = tokenizer.get_vocab(true);
    let mut bytes = vec![false; tokenizer.get_vocab_size(true)];
    for (piece, id) in vocab {
        let b = piece.as_bytes();
        let is_byte = b.len() == 6
            && b.starts_with(b"<0x")
            && b[5] == b'>'
            && b[3].is_ascii_hexdigit()
            && b[4].is_ascii_hexdigit();
        if is_byte && let Some(slot) = bytes.get_mut(id as usize) {
            *slot = true;
        }
    }
    bytes
}
