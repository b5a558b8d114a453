//! Splits inline `<think>…</think>` reasoning out of streamed text, with tags that may arrive split across chunks:
//! for text whose tool calls come some other way (a Converse stream's `toolUse` blocks) or not at all.
//!
//! It is [`OutputParser`] reading no tool calls, so the two cannot drift apart. Two rules differ from the parser's
//! (its `ThinkRules`): the whitespace after `</think>` is kept, and a stray `</think>` while answering is dropped.

use crate::ToolSyntax;
use crate::parse::{OutputParser, ParseEvent, ThinkRules};

/// A piece of split text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Answer text.
    Text(String),
    /// Reasoning text.
    Reasoning(String),
}

/// Incremental splitter. Holds back only a possible partial tag at the end of a chunk.
#[derive(Debug, Clone)]
pub struct ThinkSplitter {
    parser: OutputParser,
}

impl Default for ThinkSplitter {
    fn default() -> Self {
        ThinkSplitter::new(false)
    }
}

impl ThinkSplitter {
    /// A splitter; `starts_in_reasoning` for models whose prompt already opened `<think>` (DeepSeek-R1 templates).
    pub fn new(starts_in_reasoning: bool) -> Self {
        let rules = ThinkRules {
            tool_calls: false,
            trim_answer: false,
            drop_stray_close: true,
        };
        ThinkSplitter {
            parser: OutputParser::with_rules(ToolSyntax::None, starts_in_reasoning, rules),
        }
    }

    /// Feeds a chunk; returns the pieces that are certain.
    pub fn feed(&mut self, chunk: &str) -> Vec<Piece> {
        pieces(self.parser.feed(chunk))
    }

    /// Flushes what is held back.
    pub fn finish(&mut self) -> Vec<Piece> {
        pieces(self.parser.finish())
    }
}

fn pieces(events: Vec<ParseEvent>) -> Vec<Piece> {
    events
        .into_iter()
        .filter_map(|e| match e {
            ParseEvent::Text(t) => Some(Piece::Text(t)),
            ParseEvent::Reasoning(r) => Some(Piece::Reasoning(r)),
            // With `tool_calls: false` the parser has no tool-call marker to open one.
            ParseEvent::ToolCall { .. } => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
