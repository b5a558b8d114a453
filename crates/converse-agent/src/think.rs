//! Splits inline `<think>…</think>` reasoning out of streamed text, with tags that may arrive split across chunks.

/// A piece of split text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
}

/// Incremental splitter. Holds back only a possible partial tag at the end of a chunk.
#[derive(Debug, Clone, Default)]
pub struct ThinkSplitter {
    in_think: bool,
    pending: String,
}

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

impl ThinkSplitter {
    /// A splitter; `starts_in_reasoning` for models whose prompt already opened `<think>` (DeepSeek-R1 templates).
    pub fn new(starts_in_reasoning: bool) -> Self {
        ThinkSplitter {
            in_think: starts_in_reasoning,
            pending: String::new(),
        }
    }

    /// Feeds a chunk; returns the pieces that are certain.
    pub fn feed(&mut self, chunk: &str) -> Vec<Piece> {
        self.pending.push_str(chunk);
        let mut out = vec![];
        loop {
            let tag = if self.in_think { CLOSE } else { OPEN };
            if let Some(pos) = self.pending.find(tag) {
                let before: String = self.pending[..pos].to_string();
                self.emit(&mut out, before);
                self.pending.drain(..pos + tag.len());
                self.in_think = !self.in_think;
                continue;
            }
            // A stray closing tag while answering (the prompt opened thinking and the model closed it): what came
            // before was reasoning, but it has been shown already; drop the tag.
            if !self.in_think
                && let Some(pos) = self.pending.find(CLOSE)
            {
                let before: String = self.pending[..pos].to_string();
                self.emit(&mut out, before);
                self.pending.drain(..pos + CLOSE.len());
                continue;
            }
            // Keep back the longest suffix that could start a tag.
            let keep = partial_tag_suffix(&self.pending, tag).max(if self.in_think {
                0
            } else {
                partial_tag_suffix(&self.pending, CLOSE)
            });
            let cut = self.pending.len() - keep;
            let ready: String = self.pending[..cut].to_string();
            self.emit(&mut out, ready);
            self.pending.drain(..cut);
            return out;
        }
    }

    /// Flushes what is held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = vec![];
        let rest = std::mem::take(&mut self.pending);
        self.emit(&mut out, rest);
        out
    }

    fn emit(&self, out: &mut Vec<Piece>, s: String) {
        if s.is_empty() {
            return;
        }
        let piece = if self.in_think {
            Piece::Reasoning(s)
        } else {
            Piece::Text(s)
        };
        match (out.last_mut(), &piece) {
            (Some(Piece::Text(a)), Piece::Text(b)) | (Some(Piece::Reasoning(a)), Piece::Reasoning(b)) => a.push_str(b),
            _ => out.push(piece),
        }
    }
}

/// Length of the longest suffix of `s` that is a proper prefix of `tag`.
fn partial_tag_suffix(s: &str, tag: &str) -> usize {
    (1..tag.len())
        .rev()
        .find(|&n| s.len() >= n && s.is_char_boundary(s.len() - n) && tag.starts_with(&s[s.len() - n..]))
        .unwrap_or(0)
}
